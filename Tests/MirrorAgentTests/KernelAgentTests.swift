import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

/// The built mirror-agent with the kernel datapath, inside a test network namespace
/// (nsenter --net only, so the bpffs it mounts under the temp dir is the host's
/// mount namespace's and is unmounted at the end).
@Suite("mirror-agent on the kernel datapath (root)", .enabled(if: isRoot, "needs root"), .serialized)
struct KernelAgentTests {
    static var agentBinary: String {
        Binaries.path("mirror-agent") ?? "mirror-agent (not built)"
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
            process.arguments =
                ["--net=\(ns.path)", KernelAgentTests.agentBinary] + extra
                + [
                    "--socket", dir.path + "/agent.sock", "--state-dir", dir.path + "/state", "--bpffs", dir.path + "/bpffs",
                    "--log-level", "debug",
                ]
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
    /// `program`: which of ours (the classifier's mirror_tc_*, stage 2's mirror_encap).
    static func filterCount(_ ns: TestNetns, _ dev: String, _ hook: String, program: String = " mirror_tc") -> Int {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../e2e/hooks.py").standardized.path
        let out = (try? Command.run("ip", "netns", "exec", ns.name, "python3", script, dev, hook)) ?? ""
        return out.split(separator: "\n").filter { $0.contains(program) }.count
    }

    /// Stage 2 programs on the mirror device's egress.
    static func stageTwoCount(_ ns: TestNetns) -> Int { filterCount(ns, "mirror0", "egress", program: "mirror_encap") }

    /// A namespace with `interfaces` (veth, up), the built agent on the kernel datapath
    /// in it, `Fixtures.valid` applied. `stop()` stops the agent and unmounts its bpffs.
    struct Started {
        let ns: TestNetns
        let dir: TempDir
        let agent: RunningAgent
        let client: ControlClient
        func stop() {
            agent.stop()
            _ = try? Command.run("umount", dir.path + "/bpffs")
        }
    }

    static func startedWithFixture(interfaces: [String] = ["tap-vm1"]) throws -> Started {
        try #require(FileManager.default.isExecutableFile(atPath: Self.agentBinary))
        let ns = try TestNetns()
        let dir = try TempDir()
        try ns.ip("link", "set", "lo", "up")
        for dev in interfaces {
            try ns.ip("link", "add", dev, "type", "veth", "peer", "name", "peer" + dev.dropFirst(3))
            try ns.ip("link", "set", dev, "up")
        }
        let client = ControlClient(socketPath: dir.path + "/agent.sock", timeout: 10)
        let agent = try RunningAgent(ns: ns, dir: dir, extra: ["run", "--datapath", "kernel"])
        let started = Started(ns: ns, dir: dir, agent: agent, client: client)
        guard Self.waitUntil(10, { Self.status(client) != nil }) else {
            started.stop()
            throw TestSupportError("agent did not come up: \(agent.logText)")
        }
        let _: ApplyResponse = try client.call("POST", APIPath.apply, body: Array(Fixtures.valid.utf8))
        return started
    }

    @Test func attachesExplainsSurvivesARestartAndCleansUp() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.agentBinary))
        let ns = try TestNetns()
        let dir = try TempDir()
        defer { _ = try? Command.run("umount", dir.path + "/bpffs") }
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
            #expect(
                Self.waitUntil(5) {
                    let s = Self.status(client)?.sources.first { $0.id == "vm2" }
                    return s?.state == .attached && s?.ifindex != before
                })
            #expect(Self.filterCount(ns, "tap-vm2", "ingress") == 1)
            #expect(Self.filterCount(ns, "tap-vm2", "egress") == 1)
        }

        // explain: the oracle and the loaded program agree.
        let req = ExplainRequest(
            source: "vm1", direction: .inbound,
            packet: PacketSpec(protocol: "tcp", src: "203.0.113.5:40000", dst: "192.0.2.10:80"))
        let ex: ExplainResponse = try client.call("POST", APIPath.explain, json: req)
        #expect(ex.oracle.mirrored)
        #expect(ex.kernel?.mirrored == true)
        #expect(ex.kernel?.session == ex.oracle.session)
        #expect(ex.agree == true, "\(ex.kernelNote ?? "")")
        let miss = ExplainRequest(
            source: "vm1", direction: .inbound,
            packet: PacketSpec(protocol: "udp", src: "203.0.113.5:53", dst: "192.0.2.10:53"))
        let ex2: ExplainResponse = try client.call("POST", APIPath.explain, json: miss)
        #expect(ex2.agree == true)
        let ctl = URL(fileURLWithPath: Self.agentBinary).deletingLastPathComponent().appendingPathComponent("agentctl").path
        let out = try Command.run(
            ctl, "--socket", dir.path + "/agent.sock", "explain", "--source", "vm1", "--direction", "outbound",
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
        let cleanup = try Command.result([
            "nsenter", "--net=\(ns.path)", Self.agentBinary, "cleanup", "--socket", dir.path + "/agent.sock",
            "--state-dir", dir.path + "/state", "--bpffs", dir.path + "/bpffs", "--datapath", "kernel",
        ])
        #expect(cleanup.status == 0, "\(cleanup.stderr)")
        #expect(Self.filterCount(ns, "tap-vm1", "ingress") == 0)
        #expect(Self.filterCount(ns, "tap-vm2", "egress") == 0)
        #expect((try? ns.ip("link", "show", "mirror0")) == nil)
        // (maps.debug and progs.debug are the kernel's own bpf_preload iterators in a fresh mount.)
        let pins = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/bpffs")) ?? [])
            .filter { !$0.hasSuffix(".debug") }
        #expect(pins.isEmpty, "\(pins)")
    }

    /// Two policies for one enforced source (so every apply runs nft): the same
    /// security group, and a session whose filter takes inbound TCP to `port`.
    static func enforcedDocument(port: Int) -> String {
        """
        {
          "securityGroups": [ { "id": "sg", "rules": [
            { "direction": "ingress", "priority": 1, "action": "allow", "ethertype": "ipv4", "protocol": "all" },
            { "direction": "egress", "priority": 1, "action": "allow", "ethertype": "ipv4", "protocol": "all" } ] } ],
          "filters": [ { "id": "web", "inbound": [ { "priority": 1, "action": "accept", "ethertype": "ipv4",
                                                     "protocol": "tcp", "destinationPorts": "\(port)" } ] } ],
          "targets": [ { "id": "t1", "type": "nic", "address": "198.51.100.2" } ],
          "sources": [ { "id": "vm1", "interface": "tap-vm1", "securityGroups": ["sg"], "enforce": true } ],
          "sessions": [ { "id": "s1", "priority": 1, "filter": "web", "sources": ["vm1"], "target": "t1" } ]
        }
        """
    }

    /// SPEC §7 (all or nothing) with enforcement: an apply flips the kernel to the new
    /// policy before nft replaces the host's rules. When nft then fails, the agent
    /// answers that nothing changed, so the kernel must run the old policy again.
    /// Here nft checks (`-c`) pass and the change itself fails, as when the host's
    /// rule set changed in between; BPF_PROG_TEST_RUN (explain) shows which policy runs.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft"), "needs nft"))
    func anNftFailureAfterTheFlipLeavesTheOldPolicyInTheKernel() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.agentBinary))
        let ns = try TestNetns()
        let dir = try TempDir()
        defer { _ = try? Command.run("umount", dir.path + "/bpffs") }
        try ns.ip("link", "set", "lo", "up")
        try ns.ip("link", "add", "tap-vm1", "type", "veth", "peer", "name", "peer-vm1")
        try ns.ip("link", "set", "tap-vm1", "up")
        let failFlag = dir.path + "/nft-fails"
        let nft = dir.path + "/nft"
        try """
        #!/bin/sh
        # nft for this test: checks pass through; a change fails while \(failFlag) exists.
        for a in "$@"; do [ "$a" = "-c" ] && exec /usr/sbin/nft "$@"; done
        if [ -e \(failFlag) ]; then cat >/dev/null; echo "Error: simulated failure after the check" >&2; exit 1; fi
        exec /usr/sbin/nft "$@"

        """.write(toFile: nft, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: nft)
        let client = ControlClient(socketPath: dir.path + "/agent.sock", timeout: 10)
        let agent = try RunningAgent(ns: ns, dir: dir, extra: ["run", "--datapath", "kernel", "--nft", nft])
        defer { agent.stop() }
        try #require(Self.waitUntil { Self.status(client) != nil }, "agent did not come up: \(agent.logText)")

        func explain(port: Int) throws -> ExplainResponse {
            try client.call(
                "POST", APIPath.explain,
                json: ExplainRequest(
                    source: "vm1", direction: .inbound,
                    packet: PacketSpec(protocol: "tcp", src: "203.0.113.5:40000", dst: "192.0.2.10:\(port)")))
        }
        let _: ApplyResponse = try client.call("POST", APIPath.apply, body: Array(Self.enforcedDocument(port: 80).utf8))
        #expect(try explain(port: 80).kernel?.session == "s1")
        let rules = try Command.run("ip", "netns", "exec", ns.name, "nft", "list", "table", "inet", "mirror_enforce")
        #expect(rules.contains("tap-vm1"))

        FileManager.default.createFile(atPath: failFlag, contents: nil)
        let refused = try client.send(method: "POST", path: APIPath.apply, body: Array(Self.enforcedDocument(port: 443).utf8))
        let answer = String(decoding: refused.body, as: UTF8.self)
        #expect(refused.status == 500, "\(answer)")
        #expect(answer.contains("nothing was changed") && answer.contains("simulated failure"), "\(answer)")
        #expect(Self.status(client)?.generation == 1)
        // The kernel runs the old policy: port 80 mirrored, 443 not, as the agent says.
        let old80 = try explain(port: 80), old443 = try explain(port: 443)
        #expect(old80.kernel?.mirrored == true && old80.kernel?.session == "s1", "\(old80.kernel?.explanation ?? "")")
        #expect(old443.kernel?.mirrored == false, "\(old443.kernel?.explanation ?? "")")
        #expect(old80.agree == true && old443.agree == true)
        #expect(try Command.run("ip", "netns", "exec", ns.name, "nft", "list", "table", "inet", "mirror_enforce") == rules)

        // nft works again: the same change goes through, on the slot it had written.
        unlink(failFlag)
        let applied: ApplyResponse = try client.call("POST", APIPath.apply, body: Array(Self.enforcedDocument(port: 443).utf8))
        #expect(applied.generation == 2)
        let new80 = try explain(port: 80), new443 = try explain(port: 443)
        #expect(new80.kernel?.mirrored == false && new443.kernel?.session == "s1")
        #expect(new80.agree == true && new443.agree == true)
    }

    /// A daemon that cannot load its datapath mirrors nothing: it must not run as if it
    /// did. With the default (automatic means kernel) and with --datapath kernel it
    /// exits non-zero and says why; here the bpffs path is a regular file.
    @Test func refusesToStartWhenTheKernelDatapathCannotLoad() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.agentBinary))
        let ns = try TestNetns()
        let dir = try TempDir()
        try ns.ip("link", "set", "lo", "up")  // so that only the datapath can stop it
        FileManager.default.createFile(atPath: dir.path + "/bpffs", contents: Data("not a directory\n".utf8))
        for extra in [[], ["--datapath", "automatic"], ["--datapath", "kernel"]] {
            let agent = try RunningAgent(ns: ns, dir: dir, extra: extra)
            defer { agent.stop() }
            let exited = Self.waitUntil(30) { !agent.process.isRunning }
            #expect(exited, "mirror-agent \(extra) kept running without a datapath: \(agent.logText)")
            guard exited else { continue }
            let log = agent.logText
            #expect(agent.process.terminationStatus != 0)
            #expect(log.contains("cannot start") && log.contains("kernel datapath") && log.contains(dir.path + "/bpffs"), "\(log)")
            #expect(log.contains("--datapath memory"), "\(log)")
            #expect(!FileManager.default.fileExists(atPath: dir.path + "/agent.sock"))
            try? FileManager.default.removeItem(atPath: dir.path + "/agent.log")
        }
    }

    /// One owner: a second agent on the same pins, and a cleanup given the running
    /// agent's bpffs and state directory but not its socket, refuse before they change
    /// anything; the running agent keeps its sources attached and its policy.
    @Test func aSecondOwnerOfThePinsOrACleanupFromUnderTheAgentChangesNothing() throws {
        let started = try Self.startedWithFixture()
        defer { started.stop() }
        let (ns, dir, client) = (started.ns, started.dir, started.client)
        #expect(Self.filterCount(ns, "tap-vm1", "ingress") == 1)

        let other = dir.path + "/other"
        // A second agent: its own socket, state and metrics port, the first one's bpffs.
        let second = try Command.result([
            "timeout", "20", "nsenter", "--net=\(ns.path)", Self.agentBinary, "run", "--datapath", "kernel",
            "--socket", other + ".sock", "--state-dir", other + "-state", "--bpffs", dir.path + "/bpffs",
            "--metrics-address", "127.0.0.1:19469",
        ])
        #expect(second.status != 0 && second.status != 124, "a second agent on the same bpffs ran: \(second.stderr)")
        #expect(second.stderr.contains("in use by another mirror-agent"), "\(second.stderr)")
        // cleanup with --socket forgotten: the socket probe cannot see the agent, the locks can.
        let cleanup = try Command.result([
            "nsenter", "--net=\(ns.path)", Self.agentBinary, "cleanup", "--socket", other + ".sock",
            "--state-dir", dir.path + "/state", "--bpffs", dir.path + "/bpffs",
        ])
        #expect(cleanup.status != 0, "cleanup ran from under the agent: \(cleanup.stderr)")
        #expect(cleanup.stderr.contains("in use by another mirror-agent"), "\(cleanup.stderr)")

        // A second agent on the first one's state directory (with --reset-state), with a
        // bpffs of its own: refused before it loads anything or moves the state aside.
        let third = try Command.result([
            "timeout", "20", "nsenter", "--net=\(ns.path)", Self.agentBinary, "run", "--datapath", "kernel",
            "--reset-state", "--socket", other + "3.sock", "--state-dir", dir.path + "/state",
            "--bpffs", other + "-bpffs", "--metrics-address", "127.0.0.1:19470",
        ])
        #expect(third.status != 0 && third.status != 124, "a second agent on the same state ran: \(third.stderr)")
        #expect(third.stderr.contains("in use by another mirror-agent"), "\(third.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.path + "/state/state.json"))
        #expect(!FileManager.default.fileExists(atPath: other + "-bpffs"), "it went as far as the bpffs")
        #expect(Self.stageTwoCount(ns) == 1)

        // A second agent with directories of its own in the same namespace, on the same
        // mirror device: refused before it puts a second stage 2 there.
        let fourth = try Command.result([
            "timeout", "20", "nsenter", "--net=\(ns.path)", Self.agentBinary, "run", "--datapath", "kernel",
            "--socket", other + "4.sock", "--state-dir", other + "4-state", "--bpffs", other + "4-bpffs",
            "--metrics-address", "127.0.0.1:19471",
        ])
        defer { _ = try? Command.run("umount", other + "4-bpffs") }
        #expect(fourth.status != 0 && fourth.status != 124, "a second agent on the same mirror device ran: \(fourth.stderr)")
        #expect(fourth.stderr.contains("already carries another agent's stage 2"), "\(fourth.stderr)")
        #expect(Self.stageTwoCount(ns) == 1)

        let st = try #require(Self.status(client))
        #expect(st.generation == 1)
        #expect(st.sources.first { $0.id == "vm1" }?.state == .attached)
        #expect(Self.filterCount(ns, "tap-vm1", "ingress") == 1)
        #expect(Self.filterCount(ns, "tap-vm1", "egress") == 1)
        #expect((try? ns.ip("link", "show", "mirror0")) != nil)
    }

    /// A source's interface renamed is no longer that source: detached and pending
    /// under the old name, attached again when a link takes the name back.
    @Test func aRenamedInterfaceIsDetachedAndPendingUntilItsNameReturns() throws {
        let started = try Self.startedWithFixture(interfaces: ["tap-vm1", "tap-vm2"])
        defer { started.stop() }
        let (ns, client) = (started.ns, started.client)
        #expect(Self.status(client)?.sources.first { $0.id == "vm1" }?.state == .attached)

        try ns.ip("link", "set", "tap-vm1", "name", "tap-vm1-old")
        #expect(
            Self.waitUntil(5) { Self.status(client)?.sources.first { $0.id == "vm1" }?.state == .pending },
            "\(String(describing: Self.status(client)?.sources))")
        #expect(Self.filterCount(ns, "tap-vm1-old", "ingress") == 0)
        #expect(Self.filterCount(ns, "tap-vm1-old", "egress") == 0)
        #expect(Self.status(client)?.sources.first { $0.id == "vm2" }?.state == .attached)

        try ns.ip("link", "set", "tap-vm1-old", "name", "tap-vm1")
        #expect(Self.waitUntil(5) { Self.status(client)?.sources.first { $0.id == "vm1" }?.state == .attached })
        #expect(Self.filterCount(ns, "tap-vm1", "ingress") == 1)
        #expect(Self.filterCount(ns, "tap-vm1", "egress") == 1)
    }

    /// Stage 2's device and program are the agent's: deleted or detached by someone
    /// else, they are put back within a second or two, counted, and status says so.
    @Test func aDeletedMirrorDeviceOrADetachedStageTwoIsRepaired() throws {
        let started = try Self.startedWithFixture()
        defer { started.stop() }
        let (ns, dir, client, agent) = (started.ns, started.dir, started.client, started.agent)
        #expect(Self.status(client)?.health == "ok")
        func stageTwo() -> Int { Self.stageTwoCount(ns) }
        #expect(stageTwo() == 1)

        try ns.ip("link", "del", "mirror0")
        #expect(Self.waitUntil(3) { Self.status(client)?.repairs?["mirror_device"] == 1 }, "\(agent.logText)")
        #expect((try? ns.ip("-d", "link", "show", "mirror0"))?.contains("external") == true)
        #expect(stageTwo() == 1)
        #expect(Self.status(client)?.health == "ok")

        // Stage 2's link unpinned: its last reference, so the program leaves the hook.
        let index = try #require(Int(try ns.ip("-o", "link", "show", "mirror0").prefix(while: { $0 != ":" })))
        let pin = dir.path + "/bpffs/\(MapLayout.directoryName(MapLayout.compiled))/links/tcx-\(index)-egress"
        if FileManager.default.fileExists(atPath: pin) {
            try FileManager.default.removeItem(atPath: pin)
            #expect(Self.waitUntil(3) { Self.status(client)?.repairs?["encap_program"] == 1 }, "\(agent.logText)")
            #expect(Self.waitUntil(2) { stageTwo() == 1 })
        }
        // A map's pin removed: pinned again, so that the next agent adopts the same map.
        try FileManager.default.removeItem(atPath: dir.path + "/bpffs/\(MapLayout.directoryName(MapLayout.compiled))/mirror_policy")
        #expect(Self.waitUntil(3) { Self.status(client)?.repairs?["pins"] == 1 }, "\(agent.logText)")
        #expect(FileManager.default.fileExists(atPath: dir.path + "/bpffs/\(MapLayout.directoryName(MapLayout.compiled))/mirror_policy"))
        #expect(Self.status(client)?.sources.first { $0.id == "vm1" }?.state == .attached)
        let metrics = try ns.exec("curl", "-sS", "--max-time", "5", "http://127.0.0.1:9469/metrics")
        #expect(metrics.contains(#"mirror_agent_repairs_total{what="mirror_device"} 1"#), "\(metrics.prefix(300))")
    }

    /// A state file that no longer validates stops the agent before it touches the
    /// kernel: on a fresh host no mirror device, segmenter or pins are left behind.
    @Test func aStateThatDoesNotValidateStopsTheAgentBeforeTheKernelIsTouched() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.agentBinary))
        let ns = try TestNetns()
        let dir = try TempDir()
        defer { _ = try? Command.run("umount", dir.path + "/bpffs") }
        try ns.ip("link", "set", "lo", "up")
        try FileManager.default.createDirectory(atPath: dir.path + "/state", withIntermediateDirectories: true)
        let broken =
            #"{"document":{"sessions":[{"id":"s1","priority":1,"filter":"nope","sources":["vm1"],"target":"t1"}]},"#
            + #""formatVersion":1,"generation":3,"vnis":{}}"#
        try Data(broken.utf8).write(to: URL(fileURLWithPath: dir.path + "/state/state.json"))
        let agent = try RunningAgent(ns: ns, dir: dir, extra: ["run", "--datapath", "kernel"])
        defer { agent.stop() }
        #expect(Self.waitUntil(20) { !agent.process.isRunning }, "the agent ran on a state that does not validate")
        #expect(agent.logText.contains("no longer validates"), "\(agent.logText)")
        #expect((try? ns.ip("link", "show", "mirror0")) == nil, "mirror0 was made: \(agent.logText)")
        #expect((try? ns.ip("link", "show", "mirseg0")) == nil)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/bpffs/mirror_active"))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/bpffs/\(MapLayout.directoryName(MapLayout.compiled))"))
        // The socket it had bound before reading its state is gone with it.
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/agent.sock"))
    }

}
