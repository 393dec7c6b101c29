import Foundation
import Logging
import MirrorAPI
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

@testable import MirrorAgent

/// Issue 18: GET /healthz and GET /readyz on the metrics address, for the
/// DaemonSet's liveness and readiness probes.
@Suite("Probes: /healthz and /readyz on the metrics address")
struct ProbeTests {
    static func probe(_ port: Int, _ path: String, method: String = "GET") async throws -> (status: Int, body: String) {
        let (head, body) = try await offThread { try MetricsEndpointTests.get(port: port, path: path, method: method) }
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, body)
    }

    @Test func readyOnlyOnceThePolicyIsInForceAndTheDatapathLoaded() async throws {
        // An agent made but not started: alive, not ready.
        let dir = try TempDir()
        let datapath = InMemoryDatapath(interfaces: [:])
        let idle = Agent(store: StateStore(directory: dir.path + "/state"), datapath: datapath)
        let early = MetricsServer(agent: idle, host: "127.0.0.1", port: 0, logger: Logger(label: "test"))
        try await early.start()
        let earlyPort = try #require(early.port)
        #expect(try await Self.probe(earlyPort, "/healthz") == (200, "ok\n"))
        let notYet = try await Self.probe(earlyPort, "/readyz")
        #expect(notYet.status == 503)
        #expect(notYet.body.contains("not ready: the agent has not put its policy in force yet"), "\(notYet.body)")
        #expect(notYet.body.contains("datapath is not loaded"), "\(notYet.body)")
        await early.stop()

        // Started: the (empty) restored policy is in force.
        let t = try await TestAgent(interfaces: ["tap-vm1": 7])
        let server = MetricsServer(agent: t.agent, host: "127.0.0.1", port: 0, logger: Logger(label: "test"))
        try await server.start()
        defer { server.stopWithoutWaiting(); t.stopNow() }
        let port = try #require(server.port)
        #expect(try await Self.probe(port, "/readyz") == (200, "ready: generation 0, 0 sessions, 0 of 0 sources attached\n"))
        let (applied, _) = try await t.request("POST", APIPath.apply, Fixtures.valid)
        #expect(applied == 200)
        let ready = try await Self.probe(port, "/readyz")
        #expect(ready.status == 200)
        #expect(ready.body.hasPrefix("ready: generation 1,"), "\(ready.body)")
        #expect(ready.body.contains("1 of 2 sources attached"), "a pending source is not a reason: \(ready.body)")
        // HEAD answers the same status without a body.
        #expect(try await Self.probe(port, "/readyz", method: "HEAD").status == 200)

        // Another service (fleet mode) can hold readiness, and release it.
        await t.agent.setNotReady("fleet", reason: "no document from etcd yet")
        let held = try await Self.probe(port, "/readyz")
        #expect(held == (503, "not ready: fleet: no document from etcd yet\n"))
        await t.agent.setNotReady("fleet", reason: nil)
        #expect(try await Self.probe(port, "/readyz").status == 200)

        // The datapath gone: not ready, still alive.
        t.datapath.shutdown()
        let gone = try await Self.probe(port, "/readyz")
        #expect(gone.status == 503 && gone.body.contains("the memory datapath is not loaded"), "\(gone.body)")
        #expect(try await Self.probe(port, "/healthz").status == 200)

        let other = try await Self.probe(port, "/ready")
        #expect(other.status == 404 && other.body.contains("/healthz and /readyz"))
        #expect(try await Self.probe(port, "/healthz", method: "POST").status == 405)
    }
}
