import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// GET /metrics over HTTP/1.1 on TCP (issue 5, SPEC §7): the Prometheus text
/// exposition of `render()` (by default the agent's `metricsSnapshot`). Counters are
/// read at scrape time; nothing polls in the background.
public final class MetricsServer: @unchecked Sendable {
    public let host: String
    public let requestedPort: Int
    private let group: EventLoopGroup
    private let logger: Logger
    private let render: @Sendable () async -> String
    private var channel: Channel?

    public init(host: String, port: Int, group: EventLoopGroup, logger: Logger,
                render: @escaping @Sendable () async -> String) {
        self.host = host; self.requestedPort = port; self.group = group; self.logger = logger; self.render = render
    }

    public convenience init(agent: Agent, host: String, port: Int, group: EventLoopGroup, logger: Logger) {
        self.init(host: host, port: port, group: group, logger: logger) {
            let text = MetricsRenderer.render(await agent.metricsSnapshot())
            // A scrape of hundreds of thousands of series frees as much as an apply.
            Agent.returnFreedMemory()
            return text
        }
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
        let render = self.render
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 32)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                do {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: .seconds(60)))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try sync.addHandler(MetricsHTTPHandler(render: render))
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

    private let render: @Sendable () async -> String
    private var head: HTTPRequestHead?

    init(render: @escaping @Sendable () async -> String) { self.render = render }

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
            let render = self.render
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let promise = context.eventLoop.makePromise(of: String.self)
            promise.completeWithTask { await render() }
            promise.futureResult.whenSuccess { text in
                let (handler, context) = bound.value
                handler.respond(context, h, status: .ok, type: MetricsRenderer.contentType, body: text)
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, status: HTTPResponseStatus, type: String, body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: h.isKeepAlive ? "keep-alive" : "close")
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
        if h.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !h.isKeepAlive { done.whenComplete { _ in context.close(promise: nil) } }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
