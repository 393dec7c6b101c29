import Foundation
import Glibc
import Logging
import MirrorAPI
import MirrorCore
import Testing

@testable import MirrorAgent

/// SPEC §10 in the agent: HealthCheckService probes the collectors of targets with a
/// healthCheck (real TCP probes on loopback), the agent keeps their states, hands
/// the unhealthy ones to the datapath and shows them in status and metrics.
@Suite struct HealthCheckServiceTests {
    /// A listener on 127.0.0.1 (any port); ::1 has none, so its connects are refused.
    static func listener() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard fd >= 0, ok else { throw AgentTestError("listener: \(errno)") }
        return (fd, Int(UInt16(bigEndian: sin.sin_port)))
    }

    struct AgentTestError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    func collectors(_ t: TestAgent) async -> [String: String] {
        var out: [String: String] = [:]
        for target in await t.agent.status().targets ?? [] { for c in target.collectors { out["\(target.id)/\(c.address)"] = c.health } }
        return out
    }

    func waitFor(_ t: TestAgent, _ want: [String: String]) async throws {
        for _ in 0..<100 {
            if await collectors(t) == want { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("collectors never became \(want); they are \(await collectors(t))")
    }

    @Test func probesMarkTheCollectorThatRefusesUnhealthyAndAnApplyWithoutTheCheckStopsIt() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        let l = try Self.listener()
        defer { close(l.fd) }
        let doc = """
            {"targets": [
              {"id": "lb", "type": "loadBalancer", "backends": ["127.0.0.1", "::1"],
               "healthCheck": {"protocol": "tcp", "port": \(l.port), "intervalMs": 100, "unhealthyThreshold": 2, "healthyThreshold": 1}},
              {"id": "plain", "type": "nic", "address": "127.0.0.2"}]}
            """
        let (status, body) = try await t.request("POST", APIPath.apply, doc)
        #expect(status == 200, "\(body)")
        // Before any probe: healthy (copies flow until probes say otherwise).
        #expect(await collectors(t) == ["lb/127.0.0.1": "healthy", "lb/::1": "healthy", "plain/127.0.0.2": "unchecked"])
        let service = HealthCheckService(agent: t.agent, logger: Logger(label: "test-health"))
        let probing = Task { await service.probeAll() }
        defer { probing.cancel() }

        try await waitFor(t, ["lb/127.0.0.1": "healthy", "lb/::1": "unhealthy", "plain/127.0.0.2": "unchecked"])
        #expect(t.datapath.unhealthyCollectors == ["lb": [IPAddress("::1")!]])
        let lb = try #require(await t.agent.status().targets?.first { $0.id == "lb" })
        #expect(lb.collectors.first { $0.address == "::1" }?.lastError?.contains("refused") == true)
        let up = await t.agent.metricsSnapshot().backends
        #expect(up.map { "\($0.target)/\($0.backend)=\($0.up)" }.sorted() == ["lb/127.0.0.1=true", "lb/::1=false", "plain/127.0.0.2=true"])

        // The check removed: nothing is probed, every collector gets copies again.
        let plain = doc.replacingOccurrences(
            of:
                #""healthCheck": {"protocol": "tcp", "port": \#(l.port), "intervalMs": 100, "unhealthyThreshold": 2, "healthyThreshold": 1}"#,
            with: #""description": "no check""#)
        let (status2, body2) = try await t.request("POST", APIPath.apply, plain)
        #expect(status2 == 200, "\(body2)")
        #expect(await collectors(t) == ["lb/127.0.0.1": "unchecked", "lb/::1": "unchecked", "plain/127.0.0.2": "unchecked"])
        #expect(t.datapath.unhealthyCollectors.isEmpty)
        #expect(await t.agent.healthPlan(since: nil)?.probes.isEmpty == true)
    }
}
