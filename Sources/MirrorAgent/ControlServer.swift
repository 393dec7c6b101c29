import Foundation
import Logging
import MirrorAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The control API: HTTP/1.1 + JSON on a unix socket (SPEC §7). The socket
/// is mode 0600 (root only): whoever can write to it controls mirroring.
public final class ControlServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var socketPath: String
        /// Larger bodies get 413 and the connection is closed.
        public var maxBodyBytes: Int
        /// Connections over this are closed at once.
        public var maxConnections: Int
        /// A connection idle (or trickling) this long is closed.
        public var idleTimeout: TimeAmount
        public init(socketPath: String, maxBodyBytes: Int = 4 << 20, maxConnections: Int = 64,
                    idleTimeout: TimeAmount = .seconds(30)) {
            self.socketPath = socketPath; self.maxBodyBytes = maxBodyBytes
            self.maxConnections = maxConnections; self.idleTimeout = idleTimeout
        }
    }

    public let configuration: Configuration
    private let router: Router
    private let group: EventLoopGroup
    private let logger: Logger
    private let connections = NIOLockedValueBox(0)
    private var channel: Channel?

    public init(router: Router, configuration: Configuration, group: EventLoopGroup, logger: Logger) {
        self.router = router; self.configuration = configuration; self.group = group; self.logger = logger
    }

    /// Binds the socket. Refuses when another agent answers on it; removes a stale one.
    public func start() throws {
        let path = configuration.socketPath
        try SocketPath.prepare(path)
        let router = self.router, config = configuration, connections = self.connections, logger = self.logger
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .childChannelInitializer { channel in
                let admitted = connections.withLockedValue { n -> Bool in
                    guard n < config.maxConnections else { return false }
                    n += 1
                    return true
                }
                guard admitted else {
                    logger.warning("control connection refused: limit of \(config.maxConnections) reached")
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in connections.withLockedValue { $0 -= 1 } }
                // The initializer runs on the channel's event loop.
                do {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: config.idleTimeout))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: false)
                    try sync.addHandler(ProtocolErrorHandler())
                    try sync.addHandler(HTTPHandler(router: router, maxBodyBytes: config.maxBodyBytes))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: false)

        // The socket file is created by bind(); a restrictive umask makes it 0600 from
        // its first instant, and chmod below makes it so whatever umask did.
        // umask is per process: serialise with other servers in this process (tests).
        let bound: Channel
        do {
            bound = try Self.umaskLock.withLock {
                let old = umask(0o177)
                defer { umask(old) }
                return try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false).wait()
            }
        } catch {
            throw ServerError("cannot listen on \(path): \(error)")
        }
        guard chmod(path, 0o600) == 0 else {
            let e = String(cString: strerror(errno))
            try? bound.close().wait()
            throw ServerError("cannot set mode 0600 on \(path): \(e)")
        }
        channel = bound
        logger.info("control API listening", metadata: ["socket": "\(path)"])
    }

    /// Stops listening and removes the socket file.
    public func stop() async {
        if let channel {
            try? await channel.close()
            self.channel = nil
            unlink(configuration.socketPath)
        }
    }

    /// `stop` for callers that cannot await (not on an event loop thread).
    public func stopBlocking() {
        if let channel {
            try? channel.close().wait()
            self.channel = nil
            unlink(configuration.socketPath)
        }
    }

    public var activeConnections: Int { connections.withLockedValue { $0 } }

    private static let umaskLock = NIOLock()
}

public struct ServerError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Socket file housekeeping before bind.
enum SocketPath {
    static func prepare(_ path: String) throws {
        guard path.utf8.count < 108 else { throw ServerError("socket path \(path) is longer than 107 bytes") }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
            } catch { throw ServerError("cannot create socket directory \(dir): \(error.localizedDescription)") }
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw ServerError("\(path) exists and is not a socket; refusing to replace it")
        }
        switch probe(path) {
        case 0:
            throw ServerError("another agent is already answering on \(path); refusing to start a second one")
        case ECONNREFUSED, ENOENT:
            // A socket file left by an agent that did not stop cleanly.
            guard unlink(path) == 0 || errno == ENOENT else {
                throw ServerError("cannot remove stale socket \(path): \(String(cString: strerror(errno)))")
            }
        case let e:
            throw ServerError("cannot check existing socket \(path): \(String(cString: strerror(e)))")
        }
    }

    /// 0 when something accepts connections on `path`, else the connect errno.
    static func probe(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return rc == 0 ? 0 : errno
    }
}

/// Answers a request that does not parse as HTTP (unknown method, bad header, bad
/// chunking) with the API's JSON error shape, then lets the connection close.
/// NIO's own `HTTPServerProtocolErrorHandler` does the same with an empty body; the
/// control API promises every error as JSON, so this is that handler with a body.
final class ProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responding = false

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let parserError = error as? HTTPParserError else { context.fireErrorCaught(error); return }
        // Only when no other answer has started; the decoder closes the channel next.
        if !responding {
            let body = Router.error(.badRequest("malformed HTTP request (\(parserError))")).body
            let headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(body.count)),
                                       ("Connection", "close")])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))),
                          promise: nil)
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let h) where h.status.code >= 200: responding = true
        case .end: responding = false
        default: break
        }
        context.write(data, promise: promise)
    }
}

/// One HTTP connection: collects a request (bounded), routes it, answers JSON.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: Router
    private let maxBodyBytes: Int
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var rejected = false
    private var discarded = 0
    /// Requests being answered: the idle timer cuts off silent clients, never a
    /// client waiting for its answer (an apply can take a while on a loaded host).
    private var inFlight = 0

    init(router: Router, maxBodyBytes: Int) { self.router = router; self.maxBodyBytes = maxBodyBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h; body.clear(); rejected = false
            if let len = h.headers.first(name: "content-length").flatMap(Int.init), len > maxBodyBytes {
                reject(context, h)
            }
        case .body(var chunk):
            guard let h = head else { return }
            if rejected {
                // Drain what the client still sends so that it can read the 413 (closing
                // with unread data resets the connection); bounded, then cut off.
                discarded += chunk.readableBytes
                if discarded > 4 * maxBodyBytes { context.close(promise: nil) }
                return
            }
            if body.readableBytes + chunk.readableBytes > maxBodyBytes { reject(context, h); return }
            body.writeBuffer(&chunk)
        case .end:
            if rejected { context.close(promise: nil); return }
            guard let h = head else { return }
            head = nil
            let bytes = Data(body.readableBytesView)
            // A large document leaves a buffer of its size: let it go rather than keep
            // it for the connection's next request.
            let large = body.capacity >= 1 << 20
            if large { body = ByteBuffer() } else { body.clear() }
            let router = self.router
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let promise = context.eventLoop.makePromise(of: Router.Response.self)
            inFlight += 1
            promise.completeWithTask { await router.handle(method: h.method.rawValue, uri: h.uri, body: bytes) }
            promise.futureResult.whenSuccess { response in
                let (handler, context) = bound.value
                if let pieces = response.pieces {
                    let loop = context.eventLoop
                    Task {
                        await Self.stream(pieces, status: response.status, h, loop: loop, bound: bound)
                        loop.execute { bound.value.0.inFlight -= 1 }
                        // The answer's pieces are free now.
                        Agent.returnFreedMemory()
                    }
                    return
                }
                handler.inFlight -= 1
                handler.respond(context, h, status: response.status, body: response.body, keepAlive: h.isKeepAlive)
                // The request's body, its parse and the copies made while applying it are
                // free now (the agent's own trim ran while they were still held), or
                // those of a large answer, or what making the answer took.
                if large || response.trimAfter || response.body.count >= 1 << 20 { Agent.returnFreedMemory() }
            }
        }
    }

    /// Sends a body in pieces (`writeBodyPieces`). No length is known up front: HTTP/1.1
    /// gets the body chunked (NIO's framing), HTTP/1.0 until the close; the connection
    /// is closed after it either way.
    private static func stream(_ pieces: Router.Pieces, status: Int, _ h: HTTPRequestHead, loop: EventLoop,
                               bound: NIOLoopBound<(HTTPHandler, ChannelHandlerContext)>) async {
        do {
            try await loop.submit {
                let (handler, context) = bound.value
                let headers = HTTPHeaders([("Content-Type", "application/json"), ("Connection", "close")])
                context.write(handler.wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: HTTPResponseStatus(statusCode: status),
                                                                             headers: headers))), promise: nil)
            }.get()
            try await writeBodyPieces({ pieces.nextPiece() }, close: true, loop: loop, bound: bound)
        } catch {
            // The client went away mid-body: nothing to answer.
            pieces.drop()
            loop.execute { bound.value.1.close(promise: nil) }
        }
    }

    private func reject(_ context: ChannelHandlerContext, _ h: HTTPRequestHead) {
        rejected = true
        discarded = body.readableBytes
        body.clear()
        let r = Router.error(APIError(status: 413, "request body larger than \(maxBodyBytes) bytes"))
        // Closed when the request ends (see .end), not now.
        respond(context, h, status: r.status, body: r.body, keepAlive: true, closeAfter: false)
    }

    func respond(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, status: Int, body: Data, keepAlive: Bool,
                 closeAfter: Bool? = nil) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: keepAlive && closeAfter == nil ? "keep-alive" : "close")
        let responseHead = HTTPResponseHead(version: h.version, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if closeAfter ?? !keepAlive { done.whenComplete { _ in context.close(promise: nil) } }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if inFlight == 0 { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
