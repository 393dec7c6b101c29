import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// GET /metrics over HTTP/1.1 on TCP (SPEC §7): the Prometheus text
/// exposition of `render()` (by default the agent's `metricsSnapshot`). Counters are
/// read at scrape time; nothing polls in the background.
///
/// A body that fits one chunk goes out with a Content-Length. A larger one (the
/// quotas' 400,000 rule counters make about 68 MB) is rendered piece by piece as the
/// client takes it, with chunked transfer encoding (HTTP/1.0: until the connection
/// closes), so the agent never holds the whole text.
public final class MetricsServer: @unchecked Sendable {
    public let host: String
    public let requestedPort: Int
    private let group: EventLoopGroup
    private let logger: Logger
    private let render: @Sendable () async -> MetricsRenderer.Chunks
    private let finished: @Sendable () -> Void
    private var channel: Channel?

    /// `finished` runs after each response to GET /metrics has been sent.
    public init(host: String, port: Int, group: EventLoopGroup, logger: Logger,
                render: @escaping @Sendable () async -> MetricsRenderer.Chunks, finished: @escaping @Sendable () -> Void = {}) {
        self.host = host; self.requestedPort = port; self.group = group; self.logger = logger
        self.render = render; self.finished = finished
    }

    public convenience init(agent: Agent, host: String, port: Int, group: EventLoopGroup, logger: Logger,
                            chunkBytes: Int = 1 << 18) {
        self.init(host: host, port: port, group: group, logger: logger,
                  render: { MetricsRenderer.Chunks(await agent.metricsSnapshot(), chunkBytes: chunkBytes) },
                  // A scrape of hundreds of thousands of series frees as much as an apply.
                  finished: { Agent.returnFreedMemory() })
    }

    /// "HOST:PORT" (IPv6 as "[::1]:PORT") into its parts.
    public static func parse(address: String) -> (host: String, port: Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }

    /// The bound port (useful with port 0).
    public var port: Int? { channel?.localAddress?.port }

    public func start() throws {
        let render = self.render, finished = self.finished
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 32)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                do {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: .seconds(60)))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try sync.addHandler(MetricsHTTPHandler(render: render, finished: finished))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: requestedPort).wait()
        } catch {
            throw ServerError("cannot serve metrics on \(host):\(requestedPort): \(error)")
        }
        logger.info("metrics endpoint listening", metadata: ["address": "\(host):\(port ?? requestedPort)", "path": "/metrics"])
    }

    public func stop() async {
        if let channel { try? await channel.close() }
        channel = nil
    }

    public func stopBlocking() {
        if let channel { try? channel.close().wait() }
        channel = nil
    }
}

final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () async -> MetricsRenderer.Chunks
    private let finished: @Sendable () -> Void
    private var head: HTTPRequestHead?

    init(render: @escaping @Sendable () async -> MetricsRenderer.Chunks, finished: @escaping @Sendable () -> Void) {
        self.render = render; self.finished = finished
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break  // a scrape has no body; ignore whatever comes
        case .end:
            guard let h = head else { return }
            head = nil
            let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
            guard path == "/metrics" else {
                respond(context, h, status: .notFound, type: "text/plain; charset=utf-8", body: "not found: only GET /metrics is served here\n")
                return
            }
            guard h.method == .GET || h.method == .HEAD else {
                respond(context, h, status: .methodNotAllowed, type: "text/plain; charset=utf-8", body: "use GET\n")
                return
            }
            let render = self.render, finished = self.finished
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            Task {
                await Self.send(render: render, h, loop: loop, bound: bound)
                // After the response is out and the rendering's memory released.
                finished()
            }
        }
    }

    private static func send(render: @Sendable () async -> MetricsRenderer.Chunks, _ h: HTTPRequestHead, loop: EventLoop,
                             bound: NIOLoopBound<(MetricsHTTPHandler, ChannelHandlerContext)>) async {
        var chunks = await render()
        let first = chunks.next() ?? ""
        guard let second = chunks.next() else {
            loop.execute {
                let (handler, context) = bound.value
                handler.respond(context, h, status: .ok, type: MetricsRenderer.contentType, body: first)
            }
            return
        }
        // Larger than a chunk: stream it, each piece rendered once the one
        // before it is in the socket (a slow client slows the rendering, it
        // does not make the agent buffer the rest).
        do {
            try await loop.submit {
                let (handler, context) = bound.value
                handler.writeHead(context, h, status: .ok, type: MetricsRenderer.contentType, length: nil)
            }.get()
            var queued = [second, first]
            try await writeBodyPieces({ h.method == .HEAD ? nil : queued.popLast() ?? chunks.next() },
                                      close: !h.isKeepAlive || !Self.chunked(h.version), loop: loop, bound: bound)
        } catch {
            // The client went away mid-body: nothing to answer.
            loop.execute { bound.value.1.close(promise: nil) }
        }
    }

    /// Whether a body of unknown length can be sent chunked (HTTP/1.1 and later).
    static func chunked(_ v: HTTPVersion) -> Bool { v.major > 1 || (v.major == 1 && v.minor >= 1) }

    private func writeHead(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, status: HTTPResponseStatus, type: String, length: Int?) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        if let length { headers.add(name: "Content-Length", value: String(length)) }
        // Without a length, HTTP/1.0 ends the body by closing the connection.
        let keepAlive = h.isKeepAlive && (length != nil || Self.chunked(h.version))
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
    }

    private func respond(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, status: HTTPResponseStatus, type: String, body: String) {
        writeHead(context, h, status: status, type: type, length: body.utf8.count)
        if h.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !h.isKeepAlive { done.whenComplete { _ in context.close(promise: nil) } }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
