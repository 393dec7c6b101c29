import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The one HTTP/1.1 server behind the control socket (ControlServer.swift) and the
/// metrics endpoint (MetricsServer.swift): NIO's HTTP/1 pipeline under an
/// `NIOAsyncChannel`, one task per connection, each request read and answered in turn.
///
/// Why this rather than Hummingbird 2: several things the control API promises sit
/// below Hummingbird's request/response API. Its HTTP/1 channel answers a request that
/// does not parse with a fixed empty 400 (ours is the API's JSON error), and it has
/// its own views of the connection limit and idle timeout (ours: over the limit is
/// closed at once; the idle timer never cuts a client waiting for its answer). The rest
/// (413 with the body drained, answers written piece by piece as the client reads:
/// chunked on HTTP/1.1, until the close on HTTP/1.0, with a Content-Length when they
/// fit in one piece; the unix socket's mode 0600 from its first instant) would be ours
/// either way. Two routes do not pay for the most of a minute it adds to a clean build
/// (shared/NOTES.md).
public final class HTTPServer: Sendable {
    public enum Endpoint: Sendable, CustomStringConvertible {
        /// A unix socket, mode 0600, replacing a stale socket file but never a live one.
        case unix(path: String)
        /// A TCP address; port 0 binds a free port (see `port`).
        case tcp(host: String, port: Int)

        public var description: String {
            switch self {
            case .unix(let path): return path
            case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            }
        }
    }

    public struct Limits: Sendable {
        /// Larger bodies get 413 and the connection is closed.
        public var maxBodyBytes: Int
        /// Connections over this are closed at once.
        public var maxConnections: Int
        /// A connection idle (or trickling) this long is closed, unless its client is
        /// waiting for an answer.
        public var idleTimeout: TimeAmount
        public init(maxBodyBytes: Int, maxConnections: Int, idleTimeout: TimeAmount) {
            self.maxBodyBytes = maxBodyBytes; self.maxConnections = maxConnections; self.idleTimeout = idleTimeout
        }
    }

    public struct Request: Sendable {
        public var head: HTTPRequestHead
        public var body: Data
    }

    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var contentType: String
        public var body: Body
        /// Further headers (Allow on a 405).
        public var headers: [(String, String)] = []
        /// Close the connection after this answer whatever the request asked.
        public var close = false
        /// Runs once the answer is out (or the client went away): `Agent.returnFreedMemory`
        /// after answers that made and freed much more than they hold.
        public var whenSent: (@Sendable () -> Void)?

        public enum Body: Sendable {
            case bytes(ByteBuffer)
            /// Made piece by piece as the client takes them (see `Pieces`).
            case pieces(Pieces)
            /// Pieces that come when they come (a capture's packets), each written as
            /// soon as it is there; chunked, and the connection closes after it.
            case stream(Stream)
        }

        public init(status: HTTPResponseStatus, contentType: String, body: Body) {
            self.status = status; self.contentType = contentType; self.body = body
        }
    }

    /// A body made in pieces, each when the one before it is on its way to the client:
    /// a slow client slows the making instead of making the agent buffer the rest.
    public struct Pieces: Sendable {
        /// The next piece, nil at the end.
        public var next: @Sendable () -> String?
        /// The rest is not wanted (the client went away): release what makes it.
        public var drop: @Sendable () -> Void
        public init(next: @escaping @Sendable () -> String?, drop: @escaping @Sendable () -> Void = {}) {
            self.next = next; self.drop = drop
        }
    }

    /// A body whose pieces the server waits for (`Body.stream`): `next` returns the next
    /// piece when there is one, nil at the end. The server asks for the next piece only
    /// once the one before is on its way to the client, so a slow client makes the
    /// producer queue (or drop) rather than the server buffer. `drop` is called once
    /// when the rest is not wanted (the client went away, or the server stops): it
    /// must make `next` return nil soon.
    public struct Stream: Sendable {
        public var next: @Sendable () async -> ByteBuffer?
        /// true: the server stops; false: the client went away.
        public var drop: @Sendable (_ serverStopping: Bool) -> Void
        public init(next: @escaping @Sendable () async -> ByteBuffer?, drop: @escaping @Sendable (_ serverStopping: Bool) -> Void) {
            self.next = next; self.drop = drop
        }
    }

    public typealias Handler = @Sendable (Request) async -> Response

    public let endpoint: Endpoint
    public let limits: Limits
    /// What the log calls this server ("control API", "metrics endpoint").
    private let name: String
    private let group: EventLoopGroup
    private let logger: Logger
    private let handler: Handler
    /// The answer to a request refused before it reaches `handler` (400: it does not
    /// parse as HTTP; 413: its body is too large), the reason in words.
    private let refusal: @Sendable (HTTPResponseStatus, String) -> Response

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    typealias Listener = NIOAsyncChannel<Connection, Never>

    private struct State {
        var listener: Channel?
        var connections: [ObjectIdentifier: Channel] = [:]
        var stopping = false
        /// The accept loop (`start`).
        var serving: Task<Void, Error>?
        /// Bound by `bindNow`, served by the next `start`.
        var prebound: Listener?
        /// Streamed answers in progress, dropped when the server stops (they would
        /// otherwise keep a graceful shutdown waiting for their end).
        var streams: [ObjectIdentifier: Stream] = [:]
    }
    private let state = NIOLockedValueBox(State())

    /// `group`: NIO's shared one by default.
    public init(
        name: String, endpoint: Endpoint, limits: Limits, group: EventLoopGroup? = nil,
        logger: Logger, refusal: @escaping @Sendable (HTTPResponseStatus, String) -> Response,
        handler: @escaping Handler
    ) {
        self.name = name; self.endpoint = endpoint; self.limits = limits; self.logger = logger
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
        self.refusal = refusal; self.handler = handler
    }

    /// Connections open now.
    public var activeConnections: Int { state.withLockedValue { $0.connections.count } }

    /// The bound TCP port (useful with port 0); nil before binding or for a unix socket.
    public var port: Int? { state.withLockedValue { $0.listener?.localAddress?.port } }

    // MARK: - Lifecycle

    /// Binds, then serves until graceful shutdown (stop accepting, let answers in
    /// progress finish, close idle connections) or cancellation (close everything).
    public func run() async throws {
        let serving = try await start()
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await serving.value
            } onGracefulShutdown: {
                self.quiesce()
            }
        } onCancel: {
            self.closeAll()
        }
    }

    /// Binds, then serves on a task of its own until `stop` (or `run`'s shutdown).
    /// Its own task, awaited by `run`, rather than a child of it: cancelling the accept
    /// loop would drop connections NIO accepted but the loop had not taken yet, and
    /// NIO requires each connection to be closed through `executeThenClose`. Closing the
    /// channels ends it just as well.
    @discardableResult
    public func start() async throws -> Task<Void, Error> {
        let prebound = state.withLockedValue { s in
            defer { s.prebound = nil }
            return s.prebound
        }
        let listener: Listener
        if let prebound { listener = prebound } else { listener = try await bind() }
        let task = Task { try await self.serve(listener) }
        state.withLockedValue { $0.serving = task }
        return task
    }

    /// Binds now and serves from the next `start` or `run`: the agent binds its socket
    /// and port before it loads the datapath, so one it cannot have stops it before
    /// the kernel is touched. Connections made in between wait in the backlog.
    public func bindNow() async throws {
        let listener = try await bind()
        state.withLockedValue { $0.prebound = listener }
    }

    /// Lets go of what `bindNow` bound when it will never be served (a start that
    /// failed after it): the listener closes and a socket file goes with it.
    public func unbind() async {
        let prebound = state.withLockedValue { s in
            defer { s.prebound = nil; s.listener = nil }
            return s.prebound
        }
        guard let prebound else { return }
        // Through executeThenClose, as NIO requires, and so are the connections the
        // backlog already accepted (a client that connected while the agent started):
        // dropping them unclosed ends the process ("Deinited NIOAsyncWriter").
        try? await prebound.executeThenClose { inbound in
            prebound.channel.close(promise: nil)
            for try await connection in inbound {
                try? await connection.executeThenClose { _, _ in }
            }
        }
        if case .unix(let path) = endpoint { unlink(path) }
    }

    /// Stops accepting, lets answers in progress finish and waits for every connection.
    public func stop() async {
        quiesce()
        _ = await state.withLockedValue { $0.serving }?.result
    }

    /// `stop` without waiting, for teardown code that cannot await.
    public func stopWithoutWaiting() {
        quiesce()
    }

    /// Stop accepting; connections close once their answer in progress is out (NIO's
    /// pipeline handler does this on `ChannelShouldQuiesceEvent`).
    private func quiesce() {
        // Once: the pipeline handler takes one such event per connection.
        let (listener, connections, streams) = state.withLockedValue { s -> (Channel?, [Channel], [Stream]) in
            guard !s.stopping else { return (nil, [], []) }
            s.stopping = true
            return (s.listener, Array(s.connections.values), Array(s.streams.values))
        }
        for stream in streams { stream.drop(true) }
        listener?.close(promise: nil)
        for c in connections { c.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }

    private func closeAll() {
        let (listener, connections) = state.withLockedValue { s in
            s.stopping = true
            return (s.listener, Array(s.connections.values))
        }
        listener?.close(promise: nil)
        for c in connections { c.close(promise: nil) }
    }

    // MARK: - Binding

    private func bind() async throws -> Listener {
        let limits = self.limits
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: false)
        let initializer: @Sendable (Channel) -> EventLoopFuture<Connection> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(IdleStateHandler(allTimeout: limits.idleTimeout))
                try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: false)
                try sync.addHandler(IdleCloser())
                return try Connection(wrappingChannelSynchronously: channel)
            }
        }
        let listener: Listener
        switch endpoint {
        case .unix(let path):
            try SocketPath.prepare(path)
            let fd = try SocketPath.bind(path)
            do {
                listener = try await bootstrap.bind(fd, childChannelInitializer: initializer)
            } catch {
                // Not closed here: NIO closes a socket it took and failed to register.
                unlink(path)
                throw ServerError("cannot listen on \(path): \(Self.describe(error))")
            }
        case .tcp(let host, let port):
            do {
                listener = try await bootstrap.serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: host, port: port, childChannelInitializer: initializer)
            } catch {
                throw ServerError("cannot listen on \(endpoint): \(Self.describe(error))")
            }
        }
        state.withLockedValue { $0.listener = listener.channel }
        var address = endpoint.description
        if case .tcp(let host, _) = endpoint, let bound = port {
            address = HTTPServer.Endpoint.tcp(host: host, port: bound).description
        }
        logger.info("\(name) listening", metadata: ["address": "\(address)"])
        return listener
    }

    /// An error of bind or listen as an operator reads it ("address already in use"),
    /// not as NIO spells it (`bind(descriptor:ptr:bytes:): Address already in use (errno: 98)`).
    static func describe(_ error: Error) -> String {
        if let e = error as? IOError { return describe(errno: e.errnoCode) }
        if let e = error as? SocketAddressError, case .unknown(let host, _) = e { return "cannot resolve \(host)" }
        if let e = error as? ServerError { return e.message }
        return "\(error)"
    }

    static func describe(errno code: Int32) -> String {
        switch code {
        case EADDRINUSE: return "address already in use"
        case EADDRNOTAVAIL: return "no interface of this host has that address"
        case EACCES: return "permission denied"
        default:
            let text = String(cString: strerror(code))
            return text.prefix(1).lowercased() + text.dropFirst()
        }
    }

    // MARK: - Serving

    private func serve(_ listener: Listener) async throws {
        defer {
            if case .unix(let path) = endpoint { unlink(path) }
        }
        try await listener.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in inbound {
                    let id = ObjectIdentifier(connection.channel)
                    let admitted = state.withLockedValue { s -> Bool in
                        guard !s.stopping, s.connections.count < limits.maxConnections else { return false }
                        s.connections[id] = connection.channel
                        return true
                    }
                    guard admitted else {
                        if !state.withLockedValue({ $0.stopping }) {
                            logger.warning("\(name) connection refused: limit of \(limits.maxConnections) reached")
                        }
                        group.addTask { try? await connection.executeThenClose { _, _ in } }
                        continue
                    }
                    group.addTask {
                        defer { _ = self.state.withLockedValue { $0.connections.removeValue(forKey: id) } }
                        try? await self.serve(connection)
                    }
                }
            }
        }
    }

    /// One connection: requests in turn, each read whole (bounded), answered, then the
    /// next, until either side closes.
    private func serve(_ connection: Connection) async throws {
        try await connection.executeThenClose { inbound, outbound in
            var parts = inbound.makeAsyncIterator()
            var answered = false
            do {
                while true {
                    answered = false
                    guard case .head(let head)? = try await parts.next() else { return }
                    var body = ByteBuffer()
                    var tooLarge = false
                    var discarded = 0
                    func reject() async throws {
                        tooLarge = true
                        discarded = body.readableBytes
                        body = ByteBuffer()
                        var r = self.refusal(.payloadTooLarge, "request body larger than \(self.limits.maxBodyBytes) bytes")
                        r.close = true
                        _ = try await self.write(r, to: head, outbound, connection.channel)
                        answered = true
                    }
                    if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > limits.maxBodyBytes {
                        try await reject()
                    }
                    readBody: while true {
                        switch try await parts.next() {
                        case .body(var chunk)?:
                            if tooLarge {
                                // Drained so that the client can read the 413 (closing with unread
                                // data resets the connection); bounded, then cut off.
                                discarded += chunk.readableBytes
                                if discarded > 4 * limits.maxBodyBytes { return }
                            } else if body.readableBytes + chunk.readableBytes > limits.maxBodyBytes {
                                try await reject()
                            } else {
                                body.writeBuffer(&chunk)
                            }
                        case .end?:
                            break readBody
                        case .head?, nil:
                            return
                        }
                    }
                    if tooLarge { return }
                    let request = Request(head: head, body: Data(body.readableBytesView))
                    // A large document leaves a buffer of its size: not kept while it is
                    // applied, nor for the connection's next request.
                    body = ByteBuffer()
                    let response = await handler(request)
                    let keepAlive = try await write(response, to: head, outbound, connection.channel)
                    if !keepAlive { return }
                }
            } catch let error as HTTPParserError where !answered && connection.channel.isActive {
                // Answered only when nothing was answered for this request yet, and not
                // for the partial request of a connection being closed (the decoder's
                // complaint about its end); closed after.
                var r = refusal(.badRequest, "malformed HTTP request (\(error))")
                r.close = true
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
                _ = try? await write(r, to: head, outbound, connection.channel)
            }
        }
    }

    /// Writes `response` to the request `head`; returns whether the connection stays open.
    private func write(
        _ response: Response, to head: HTTPRequestHead, _ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
        _ channel: Channel
    ) async throws -> Bool {
        defer { response.whenSent?() }
        var headers = HTTPHeaders([("Content-Type", response.contentType)])
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        let version = head.version
        let withBody = head.method != .HEAD

        if case .stream(let stream) = response.body {
            return try await writeStream(stream, response, headers, head, outbound, channel)
        }
        // A body made in pieces that fits in one goes out with a Content-Length.
        let first: ByteBuffer, second: String?, rest: Pieces?
        switch response.body {
        case .stream: preconditionFailure("written above")
        case .bytes(let bytes):
            (first, second, rest) = (bytes, nil, nil)
        case .pieces(let pieces):
            first = ByteBuffer(string: pieces.next() ?? "")
            second = pieces.next()
            rest = second == nil ? nil : pieces
        }
        // Without a length: chunked from HTTP/1.1 on, until the close before it.
        let chunked = version.major > 1 || (version.major == 1 && version.minor >= 1)
        let keepAlive = head.isKeepAlive && !response.close && (rest == nil || chunked)
        if rest == nil { headers.add(name: "Content-Length", value: String(first.readableBytes)) }
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")

        try await outbound.write(.head(HTTPResponseHead(version: version, status: response.status, headers: headers)))
        if withBody {
            try await outbound.write(.body(.byteBuffer(first)))
            if let rest {
                do {
                    // Each piece is made once the channel takes more: the writer waits while
                    // the socket's buffer is over its high watermark.
                    var piece = second
                    while let text = piece {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: text))))
                        piece = rest.next()
                    }
                } catch {
                    rest.drop()
                    throw error
                }
            }
        } else {
            rest?.drop()
        }
        // The end through the channel itself, whose future completes when everything
        // before it is in the socket: closing the channel earlier would drop what is
        // still queued (the async writer says only that the channel took it).
        try await channel.writeAndFlush(HTTPServerResponsePart.end(nil)).get()
        return keepAlive
    }

    /// A `Body.stream` answer: the head at once (the client learns the request was
    /// taken), then each piece as it comes; chunked from HTTP/1.1 on, until the close
    /// before it; the connection closes after it. The stream is dropped when the
    /// connection closes under it (the client went away while nothing was to be
    /// written, so no write would fail to tell) or the server stops.
    private func writeStream(
        _ stream: Stream, _ response: Response, _ headersIn: HTTPHeaders, _ head: HTTPRequestHead,
        _ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, _ channel: Channel
    ) async throws -> Bool {
        var headers = headersIn
        headers.add(name: "Connection", value: "close")
        channel.closeFuture.whenComplete { _ in stream.drop(false) }
        let stopping = state.withLockedValue { s -> Bool in
            if !s.stopping { s.streams[ObjectIdentifier(channel)] = stream }
            return s.stopping
        }
        defer { _ = state.withLockedValue { $0.streams.removeValue(forKey: ObjectIdentifier(channel)) } }
        if stopping { stream.drop(true) }
        do {
            try await outbound.write(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers)))
            if head.method != .HEAD {
                while let piece = await stream.next() {
                    try await outbound.write(.body(.byteBuffer(piece)))
                }
            } else {
                stream.drop(false)
            }
        } catch {
            stream.drop(false)
            throw error
        }
        try await channel.writeAndFlush(HTTPServerResponsePart.end(nil)).get()
        return false
    }
}

/// Closes a connection that the idle timer reports, unless its client is waiting for
/// an answer (an apply can take a while on a loaded host): from a request's end to
/// its answer's end.
final class IdleCloser: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var answering = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) { answering = true }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { answering = false }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if !answering { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

public struct ServerError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
