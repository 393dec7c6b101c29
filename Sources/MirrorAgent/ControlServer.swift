import Foundation
import Logging
import MirrorAPI
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// The control API: HTTP/1.1 + JSON on a unix socket (SPEC §7), served by
/// `HTTPServer`. The socket is mode 0600 (root only): whoever can write to it
/// controls mirroring. Every error, including a request that is not HTTP, is the
/// API's JSON error shape.
public final class ControlServer: Service {
    public struct Configuration: Sendable {
        public var socketPath: String
        /// Larger bodies get 413 and the connection is closed.
        public var maxBodyBytes: Int
        /// Connections over this are closed at once.
        public var maxConnections: Int
        /// A connection idle (or trickling) this long is closed.
        public var idleTimeout: TimeAmount
        public init(
            socketPath: String, maxBodyBytes: Int = 4 << 20, maxConnections: Int = 64,
            idleTimeout: TimeAmount = .seconds(30)
        ) {
            self.socketPath = socketPath; self.maxBodyBytes = maxBodyBytes
            self.maxConnections = maxConnections; self.idleTimeout = idleTimeout
        }
    }

    public let configuration: Configuration
    private let server: HTTPServer

    public init(router: Router, configuration: Configuration, group: EventLoopGroup? = nil, logger: Logger) {
        self.configuration = configuration
        let limits = HTTPServer.Limits(
            maxBodyBytes: configuration.maxBodyBytes, maxConnections: configuration.maxConnections,
            idleTimeout: configuration.idleTimeout)
        server = HTTPServer(
            name: "control API", endpoint: .unix(path: configuration.socketPath), limits: limits,
            group: group, logger: logger,
            refusal: { status, message in Self.answer(Router.error(APIError(status: Int(status.code), message))) },
            handler: { request in await Self.handle(request, router: router) })
    }

    /// Binds the socket (refusing when another agent answers on it, removing a stale
    /// one) and serves until graceful shutdown; the socket file goes with it.
    public func run() async throws { try await server.run() }
    /// `run` for callers without a ServiceGroup (tests), until `stop`.
    public func start() async throws { try await server.start() }
    public func stop() async { await server.stop() }
    /// Binds before the agent loads its datapath; `run` then serves (HTTPServer.bindNow).
    public func bindNow() async throws { try await server.bindNow() }
    /// A start that failed after `bindNow`: let go of the socket or port.
    public func unbind() async { await server.unbind() }
    public func stopWithoutWaiting() { server.stopWithoutWaiting() }
    public var activeConnections: Int { server.activeConnections }

    private static func handle(_ request: HTTPServer.Request, router: Router) async -> HTTPServer.Response {
        let head = request.head
        // The request's body, its parse and the copies made while applying it are free
        // once answered (the agent's own trim ran while they were still held).
        let large = request.body.count >= 1 << 20
        var answer = answer(await router.handle(method: head.method.rawValue, uri: head.uri, body: request.body))
        if large { answer.whenSent = { Agent.returnFreedMemory() } }
        return answer
    }

    private static func answer(_ r: Router.Response) -> HTTPServer.Response {
        let type = "application/json"
        if let stream = r.stream {
            // MirrorAPI/CaptureMessages.swift's frames.
            var answer = HTTPServer.Response(
                status: HTTPResponseStatus(statusCode: r.status), contentType: "application/octet-stream",
                body: .stream(
                    .init(
                        next: { await stream.next().map { ByteBuffer(bytes: $0) } },
                        drop: { serverStopping in stream.drop(serverStopping) })))
            answer.close = true
            return answer
        }
        if let pieces = r.pieces {
            var answer = HTTPServer.Response(
                status: HTTPResponseStatus(statusCode: r.status), contentType: type,
                body: .pieces(.init(next: { pieces.nextPiece() }, drop: { pieces.drop() })))
            answer.close = true
            // The answer's pieces are free now.
            answer.whenSent = { Agent.returnFreedMemory() }
            return answer
        }
        var answer = HTTPServer.Response(
            status: HTTPResponseStatus(statusCode: r.status), contentType: type,
            body: .bytes(ByteBuffer(bytes: r.body)))
        // What making a large answer took, or the answer itself.
        if r.trimAfter || r.body.count >= 1 << 20 { answer.whenSent = { Agent.returnFreedMemory() } }
        return answer
    }
}
