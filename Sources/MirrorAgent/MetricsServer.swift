import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// One probe's answer: 200 with `detail` when `ok`, else 503 with it.
public struct Probe: Hashable, Sendable {
    public var ok: Bool
    public var detail: String
    public init(ok: Bool, detail: String) { self.ok = ok; self.detail = detail }
}

/// GET /metrics over HTTP/1.1 on TCP (SPEC §7), served by `HTTPServer`: the
/// Prometheus text exposition of `render()` (by default the agent's
/// `metricsSnapshot`). Counters are read at scrape time; nothing polls in the background.
///
/// A body that fits one chunk goes out with a Content-Length. A larger one (the
/// quotas' 400,000 rule counters make about 68 MB) is rendered piece by piece as the
/// client takes it, with chunked transfer encoding (HTTP/1.0: until the connection
/// closes), so the agent never holds the whole text.
public final class MetricsServer: Service {
    public let host: String
    public let requestedPort: Int
    private let server: HTTPServer

    /// `finished` runs after each response to GET /metrics has been sent. `healthz`
    /// and `readyz` answer GET /healthz and GET /readyz (issue 18: the liveness and
    /// readiness probes of the DaemonSet).
    public init(
        host: String, port: Int, group: EventLoopGroup? = nil, logger: Logger,
        render: @escaping @Sendable () async -> MetricsRenderer.Chunks, finished: @escaping @Sendable () -> Void = {},
        healthz: @escaping @Sendable () async -> Probe = { Probe(ok: true, detail: "ok") },
        readyz: @escaping @Sendable () async -> Probe = { Probe(ok: true, detail: "ready") }
    ) {
        self.host = host; self.requestedPort = port
        // A scrape has no body; a connection or two per Prometheus server.
        let limits = HTTPServer.Limits(maxBodyBytes: 64 << 10, maxConnections: 64, idleTimeout: .seconds(60))
        server = HTTPServer(
            name: "metrics endpoint", endpoint: .tcp(host: host, port: port), limits: limits,
            group: group, logger: logger,
            refusal: { status, message in Self.text(status, message + "\n") },
            handler: { request in
                await Self.handle(request, render: render, finished: finished, healthz: healthz, readyz: readyz)
            })
    }

    /// `rules`: which per-rule series a scrape carries (`--metrics-rules`).
    public convenience init(
        agent: Agent, host: String, port: Int, group: EventLoopGroup? = nil, logger: Logger,
        chunkBytes: Int = 1 << 18, rules: MetricsSnapshot.RuleSeriesShown = .counted
    ) {
        self.init(
            host: host, port: port, group: group, logger: logger,
            render: {
                var snapshot = await agent.metricsSnapshot()
                snapshot.rulesShown = rules
                return MetricsRenderer.Chunks(snapshot, chunkBytes: chunkBytes)
            },
            // A scrape of hundreds of thousands of series frees as much as an apply.
            finished: { Agent.returnFreedMemory() },
            healthz: { await agent.liveness() }, readyz: { await agent.readiness() })
    }

    /// "HOST:PORT" (IPv6 as "[::1]:PORT") into its parts.
    public static func parse(address: String) -> (host: String, port: Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }

    /// The bound port (useful with port 0).
    public var port: Int? { server.port }

    /// Binds (throwing, in words, when it cannot: "cannot listen on 127.0.0.1:9469:
    /// address already in use") and serves until graceful shutdown.
    public func run() async throws { try await server.run() }
    /// `run` for callers without a ServiceGroup (tests), until `stop`.
    public func start() async throws { try await server.start() }
    public func stop() async { await server.stop() }
    /// Binds before the agent loads its datapath; `run` then serves (HTTPServer.bindNow).
    public func bindNow() async throws { try await server.bindNow() }
    /// A start that failed after `bindNow`: let go of the socket or port.
    public func unbind() async { await server.unbind() }
    public func stopWithoutWaiting() { server.stopWithoutWaiting() }

    private static func handle(
        _ request: HTTPServer.Request, render: @Sendable () async -> MetricsRenderer.Chunks,
        finished: @escaping @Sendable () -> Void, healthz: @Sendable () async -> Probe, readyz: @Sendable () async -> Probe
    ) async -> HTTPServer.Response {
        let h = request.head
        let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
        guard ["/metrics", "/healthz", "/readyz"].contains(path) else {
            return text(.notFound, "not found: only GET /metrics, /healthz and /readyz are served here\n")
        }
        guard h.method == .GET || h.method == .HEAD else {
            var answer = text(.methodNotAllowed, "use GET\n")
            answer.headers = [("Allow", "GET, HEAD")]
            return answer
        }
        if path != "/metrics" {
            let probe = await (path == "/healthz" ? healthz() : readyz())
            return text(probe.ok ? .ok : .serviceUnavailable, probe.detail + "\n")
        }
        let chunks = ChunkSource(await render())
        var answer = HTTPServer.Response(
            status: .ok, contentType: MetricsRenderer.contentType,
            body: .pieces(.init(next: { chunks.next() }, drop: { chunks.drop() })))
        // After the response is out and the rendering's memory released.
        answer.whenSent = {
            chunks.drop(); finished()
        }
        return answer
    }

    private static func text(_ status: HTTPResponseStatus, _ body: String) -> HTTPServer.Response {
        HTTPServer.Response(status: status, contentType: "text/plain; charset=utf-8", body: .bytes(ByteBuffer(string: body)))
    }

    /// The renderer's chunks, taken by one connection's task at a time.
    private final class ChunkSource: @unchecked Sendable {
        private var chunks: MetricsRenderer.Chunks?
        init(_ chunks: MetricsRenderer.Chunks) { self.chunks = chunks }
        func next() -> String? { chunks?.next() }
        func drop() { chunks = nil }
    }
}
