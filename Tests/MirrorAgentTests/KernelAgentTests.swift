import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import Testing

/// The built mirror-agent with the kernel datapath, inside a test network namespace
/// (nsenter --net only, so the bpffs it mounts under the temp dir is the host's
/// mount namespace's and is unmounted at the end).
@Suite("mirror-agent on the kernel datapath (root)", .enabled(if: isRoot, "needs root"), .serialized)
struct KernelAgentTests {
    static var agentBinary: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("mirror-agent").path
    }

    final class RunningAgent {
        let process = Process()
        let log: String
        init(ns: TestNetns, dir: TempDir, extra: [String] = []) throws {
            log = dir.path + "/agent.log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            handle.seekToEndOfFile()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            process.arguments = ["--net=\(ns.path)", KernelAgentTests.agentBinary] + extra
                + ["--socket", dir.path + "/agent.sock", "--state-dir", dir.path + "/state", "--bpffs", dir.path + "/bpffs",
                   "--log-level", "debug"]
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }
        func stop() {
            guard process.isRunning else { return }
            process.terminate()  // SIGTERM
            process.waitUntilExit()
        }
        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    }

    static func waitUntil(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline { if condition() { return true }; usleep(50_000) }
        return false
    }

    static func status(_ client: ControlClient) -> StatusResponse? {
        try? client.call("GET", APIPath.status, as: StatusResponse.self)
    }

    /// Our programs on one hook, tcx links and clsact filters together (Tests/e2e/hooks.py
    /// asks the kernel: BPF_PROG_QUERY and `tc filter show`).
    static func filterCount(_ ns: TestNetns, _ dev: String, _ hook: String) -> Int {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../e2e/hooks.py").standardized.path
        let out = (try? run("ip", "netns", "exec", ns.name, "python3", script, dev, hook)) ?? ""
        return out.split(separator: "\n").filter { $0.contains(" mirror_tc") }.count
    }

    @Test func attachesExplainsSurvivesARestartAndCleansUp() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.agentBinary))
        let ns = try TestNetns()
        let dir = try TempDir()
        defer { _ = try? run("umount", dir.path + "/bpffs") }
        try ns.ip("link", "set", "lo", "up")
        try ns.ip("link", "add", "tap-vm1", "type", "veth", "peer", "name", "peer-vm1")
        try ns.ip("link", "set", "tap-vm1", "up")
        try ns.ip("link", "set", "peer-vm1", "up")
        let client = ControlClient(socketPath: dir.path + "/agent.sock", timeout: 10)

        var agent: RunningAgent? = try RunningAgent(ns: ns, dir: dir, extra: ["run", "--datapath", "kernel"])
        try #require(Self.waitUntil { Self.status(client) != nil }, "agent did not come up: \(agent?.logText ?? "")")
        var st = try #require(Self.status(client))
        #expect(st.datapath == "kernel")
        #expect(st.datapathLoaded)
        #expect(st.mirrorDevice == "mirror0")
        let dev = try ns.ip("-d", "link", "show", "mirror0")
        #expect(dev.contains("external"))

        let _: ApplyResponse = try client.call("POST", APIPath.apply, body: Array(Fixtures.valid.utf8))
        st = try #require(Self.status(client))
        #expect(st.sources.first { $0.id == "vm1" }?.state == .attached)
        #expect(st.sources.first { $0.id == "vm2" }?.state == .pending)
        #expect(Self.filterCount(ns, "tap-vm1", "ingress") == 1)
        #expect(Self.filterCount(ns, "tap-vm1", "egress") == 1)

        // The missing interface appears: attached through the link monitor.
        try ns.ip("link", "add", "tap-vm2", "type", "veth", "peer", "name", "peer-vm2")
        #expect(Self.waitUntil(5) { Self.status(client)?.sources.first { $0.id == "vm2" }?.state == .attached })
        #expect(Self.filterCount(ns, "tap-vm2", "egress") == 1)

        // Churn: deleted and re-created (new ifindex) a few times, re-attached each time.
        for _ in 0..<3 {
            let before = Self.status(client)?.sources.first { $0.id == "vm2" }?.ifindex
            try ns.ip("link", "del", "tap-vm2")
            #expect(Self.waitUntil(5) { Self.status(client)?.sources.first { $0.id == "vm2" }?.state == .pending })
            try ns.ip("link", "add", "tap-vm2", "type", "veth", "peer", "name", "peer-vm2")
            #expect(Self.waitUntil(5) {
                let s = Self.status(client)?.sources.first { $0.id == "vm2" }
                return s?.state == .attached && s?.ifindex != before
            })
            #expect(Self.filterCount(ns, "tap-vm2", "ingress") == 1)
            #expect(Self.filterCount(ns, "tap-vm2", "egress") == 1)
        }

        // explain: the oracle and the loaded program agree.
        let req = ExplainRequest(source: "vm1", direction: .inbound,
                                 packet: PacketSpec(protocol: "tcp", src: "203.0.113.5:40000", dst: "192.0.2.10:80"))
        let ex: ExplainResponse = try client.call("POST", APIPath.explain, json: req)
        #expect(ex.oracle.mirrored)
        #expect(ex.kernel?.mirrored == true)
        #expect(ex.kernel?.session == ex.oracle.session)
        #expect(ex.agree == true, "\(ex.kernelNote ?? "")")
        let miss = ExplainRequest(source: "vm1", direction: .inbound,
                                  packet: PacketSpec(protocol: "udp", src: "203.0.113.5:53", dst: "192.0.2.10:53"))
        let ex2: ExplainResponse = try client.call("POST", APIPath.explain, json: miss)
        #expect(ex2.agree == true)
        let ctl = URL(fileURLWithPath: Self.agentBinary).deletingLastPathComponent().appendingPathComponent("agentctl").path
        let out = try run(ctl, "--socket", dir.path + "/agent.sock", "explain", "--source", "vm1", "--direction", "outbound",
                          "--protocol", "udp", "--src", "192.0.2.10:4000", "--dst", "198.51.100.7:53")
        #expect(out.contains("kernel: kernel: mirrored") || out.contains("agree:  yes"), "\(out)")

        // Stop: filters stay (mirroring goes on); restart adopts them without duplicates.
        agent?.stop()
        #expect(Self.filterCount(ns, "tap-vm1", "ingress") == 1)
        agent = try RunningAgent(ns: ns, dir: dir, extra: ["--datapath", "kernel"])
        try #require(Self.waitUntil { Self.status(client) != nil }, "agent did not restart: \(agent?.logText ?? "")")
        st = try #require(Self.status(client))
        #expect(st.generation == 1)
        #expect(st.sources.allSatisfy { $0.state == .attached })
        #expect(Self.filterCount(ns, "tap-vm1", "ingress") == 1)
        #expect(Self.filterCount(ns, "tap-vm1", "egress") == 1)
        agent?.stop()

        // cleanup removes filters, the mirror device and the pins.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        p.arguments = ["--net=\(ns.path)", Self.agentBinary, "cleanup", "--socket", dir.path + "/agent.sock",
                       "--state-dir", dir.path + "/state", "--bpffs", dir.path + "/bpffs", "--datapath", "kernel"]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(Self.filterCount(ns, "tap-vm1", "ingress") == 0)
        #expect(Self.filterCount(ns, "tap-vm2", "egress") == 0)
        #expect((try? ns.ip("link", "show", "mirror0")) == nil)
        // (maps.debug and progs.debug are the kernel's own bpf_preload iterators in a fresh mount.)
        let pins = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/bpffs")) ?? [])
            .filter { !$0.hasSuffix(".debug") }
        #expect(pins.isEmpty, "\(pins)")
    }
}
