import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorTestSupport
import Testing

/// The built agentctl binary against an in-process agent.
@Suite("agentctl end to end")
struct AgentctlTests {
    static var binary: String {
        Binaries.path("agentctl") ?? "agentctl (not built)"
    }

    struct Run { var status: Int32; var out: String; var err: String }

    static func agentctl(_ args: [String], socket: String?, user: String? = nil, binary: String = AgentctlTests.binary) async throws -> Run
    {
        try await offThread {
            var env = ProcessInfo.processInfo.environment
            env[ControlClient.socketEnvironment] = socket
            let command = user.map { ["/usr/sbin/runuser", "-u", $0, "--", binary] } ?? [binary]
            let r = try Command.result(command + args, environment: env)
            return Run(status: r.status, out: r.stdout, err: r.stderr)
        }
    }

    func write(_ dir: TempDir, _ name: String, _ text: String) throws -> String {
        let path = dir.path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func applyGetCrudEnableDisableStatus() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build agentctl first: \(Self.binary)")
        let t = try await TestAgent(interfaces: ["tap-vm1": 3])
        defer { t.stopNow() }
        let sock = t.socketPath
        let doc = try write(t.dir, "doc.json", Fixtures.valid)

        var r = try await Self.agentctl(["apply", "-f", doc], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("generation 1"))

        r = try await Self.agentctl(["get", "sessions"], socket: sock)
        #expect(r.status == 0)
        let lines = r.out.split(separator: "\n")
        #expect(lines.first?.hasPrefix("ID  ") == true)
        #expect(lines.count == 3)
        #expect(lines[2].contains("4242"))

        r = try await Self.agentctl(["get", "sessions", "s2", "-o", "json"], socket: sock)
        #expect(r.status == 0)
        let s2 = try JSONParser.parse(r.out).get()
        #expect(s2["vni"] == .int(4242))

        // --socket on the command line wins over the environment.
        r = try await Self.agentctl(["get", "targets", "--socket", sock], socket: "/nonexistent.sock")
        #expect(r.status == 0)
        // ... before the command too (as scripts write it).
        r = try await Self.agentctl(["--socket", sock, "get", "targets"], socket: "/nonexistent.sock")
        #expect(r.status == 0, "\(r.err)")
        r = try await Self.agentctl(["--socket", sock, "session", "enable", "s2"], socket: nil)
        #expect(r.status == 0, "\(r.err)")

        let target = try write(t.dir, "t2.json", #"{"id": "t2", "type": "nic", "address": "198.51.100.9"}"#)
        r = try await Self.agentctl(["create", "targets", "-f", target], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        let session = try write(t.dir, "s1.json", #"{"id": "s1", "priority": 3, "filter": "f1", "sources": ["vm1"], "target": "t2"}"#)
        r = try await Self.agentctl(["update", "sessions", "-f", session], socket: sock)
        #expect(r.status == 0, "\(r.err)")

        r = try await Self.agentctl(["session", "disable", "s1"], socket: sock)
        #expect(r.status == 0)
        #expect(t.datapath.appliedDocument.sessions.first { $0.id == "s1" }?.isEnabled == false)
        r = try await Self.agentctl(["session", "enable", "s1"], socket: sock)
        #expect(r.status == 0)

        r = try await Self.agentctl(["delete", "sessions", "s2"], socket: sock)
        #expect(r.status == 0)

        // explain without -f: the agent answers from the live policy.
        r = try await Self.agentctl(
            [
                "explain", "--source", "vm1", "--direction", "inbound", "--protocol", "tcp",
                "--src", "203.0.113.5:40000", "--dst", "192.0.2.10:80",
            ], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("oracle: mirrored by session s1"))
        #expect(r.out.contains("kernel: no decision"))
        r = try await Self.agentctl(["explain", "--source", "vm1", "--direction", "outbound", "--non-ip", "-o", "json"], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        let ex = try JSONParser.parse(r.out).get()
        #expect(ex["oracle"]?["reason"] == .string("not_ip"))
        r = try await Self.agentctl(["explain", "--source", "ghost", "--direction", "inbound", "--non-ip"], socket: sock)
        #expect(r.status == 1)
        #expect(r.err.contains("ghost"))

        r = try await Self.agentctl(["status"], socket: sock)
        #expect(r.status == 0)
        #expect(r.out.contains("tap-vm1"))
        #expect(r.out.contains("attached"))
        #expect(r.out.contains("pending"))
        r = try await Self.agentctl(["status", "-o", "json"], socket: sock)
        let st = try JSONParser.parse(r.out).get()
        #expect(st["sessions"] == .int(1))
    }

    /// Create and update per kind "from a JSON file or flags".
    @Test func createAndUpdateFromFlags() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build agentctl first: \(Self.binary)")
        let t = try await TestAgent(interfaces: ["tap-vm1": 3, "tap-vm3": 5])
        defer { t.stopNow() }
        let sock = t.socketPath
        var r = try await Self.agentctl(["apply", "-f", try write(t.dir, "doc.json", Fixtures.valid)], socket: sock)
        #expect(r.status == 0, "\(r.err)")

        r = try await Self.agentctl(["create", "sources", "vm3", "--interface", "tap-vm3"], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        r = try await Self.agentctl(
            [
                "create", "targets", "t2", "--type", "loadBalancer",
                "--backend", "198.51.100.7", "--backend", "198.51.100.8", "--encapsulation", "geneve",
            ], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        let target: AnyJSON = try await t.call("GET", APIPath.object(.targets, "t2"))
        #expect(target.value["object"]?["encapsulation"] == .string("geneve"))
        r = try await Self.agentctl(
            [
                "create", "sessions", "s3", "--priority", "3", "--filter", "f1", "--source", "vm3",
                "--target", "t2", "--vni", "77", "--packet-length", "96",
            ], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        var s: AnyJSON = try await t.call("GET", APIPath.object(.sessions, "s3"))
        var o = s.value["object"]
        #expect(o?["priority"] == .int(3) && o?["vni"] == .int(77) && o?["packetLength"] == .int(96))
        #expect(o?["sources"] == .array([.string("vm3")]) && o?["target"] == .string("t2"))

        // Flags change only the fields given.
        r = try await Self.agentctl(["update", "sessions", "s3", "--priority", "4", "--enabled", "false"], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        s = try await t.call("GET", APIPath.object(.sessions, "s3"))
        o = s.value["object"]
        #expect(o?["priority"] == .int(4) && o?["enabled"] == .bool(false) && o?["vni"] == .int(77) && o?["filter"] == .string("f1"))

        // Refusals: one clear line, non-zero, nothing changed.
        let before: AnyJSON = try await t.call("GET", APIPath.document)
        for (args, says) in [
            (["create", "filters", "f9", "--priority", "1"], "-f FILE"),
            (["create", "sessions", "s9", "--interface", "tap-vm1"], "--interface does not apply to sessions"),
            (["create", "sessions", "-f", "/dev/null", "--priority", "1"], "not both"),
            (["create", "sessions"], "-f FILE or as flags"),
            (["create", "sessions", "s9", "--priority", "x"], "priority"),
        ] {
            r = try await Self.agentctl(args, socket: sock)
            #expect(r.status != 0, "\(args)")
            #expect(r.err.contains(says), "\(args): \(r.err)")
        }
        // The agent's own validation still speaks for what flags cannot know.
        r = try await Self.agentctl(
            [
                "create", "sessions", "s9", "--priority", "9", "--filter", "nope", "--source", "vm1",
                "--target", "t1",
            ], socket: sock)
        #expect(r.status != 0)
        #expect(r.err.contains("nope"), "\(r.err)")
        let after: AnyJSON = try await t.call("GET", APIPath.document)
        #expect(after == before)
    }

    /// One JSON form of a decision: `explain -o json` offline (-f) and the agent's
    /// oracle answer for the same document and packet hold the same members and
    /// values (the agent's are sorted). Before, the agent left out a suppression's
    /// `rulePriority` when no rule matched and the offline form wrote null.
    @Test func explainJSONIsTheSameDecisionOfflineAndFromTheAgent() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/security-groups.json").path
        let t = try await TestAgent(interfaces: ["tap-vm1": 3])
        defer { t.stopNow() }
        var r = try await Self.agentctl(["apply", "-f", example], socket: t.socketPath)
        #expect(r.status == 0, "\(r.err)")
        func sortedMembers(_ v: JSONValue) -> JSONValue {
            switch v {
            case .object(let m): return .object(m.map { ($0.key, sortedMembers($0.value)) }.sorted { $0.0 < $1.0 })
            case .array(let a): return .array(a.map(sortedMembers))
            default: return v
            }
        }
        let packets = [
            ["--direction", "inbound", "--protocol", "tcp", "--src", "198.51.100.77:40000", "--dst", "192.0.2.10:80"],  // default deny
            ["--direction", "outbound", "--protocol", "udp", "--src", "192.0.2.10:52000", "--dst", "203.0.113.10:5000"],
            ["--direction", "inbound", "--protocol", "tcp", "--src", "203.0.113.200:40000", "--dst", "192.0.2.10:80"],
            ["--direction", "inbound", "--protocol", "tcp", "--src", "203.0.113.5:40000", "--dst", "192.0.2.10:80"],
            ["--direction", "inbound", "--protocol", "udp", "--src", "203.0.113.10:40000", "--dst", "192.0.2.10:9"],
            ["--direction", "outbound", "--non-ip"],
        ]
        for p in packets {
            r = try await Self.agentctl(["explain", "--source", "vm1", "-o", "json"] + p, socket: t.socketPath)
            #expect(r.status == 0, "\(p): \(r.err)")
            let agent = try JSONParser.parse(r.out).get()
            r = try await Self.agentctl(["explain", "-f", example, "--source", "vm1", "-o", "json"] + p, socket: nil)
            #expect(r.status == 0, "\(p): \(r.err)")
            let offline = try JSONParser.parse(r.out).get()
            #expect(agent["oracle"].map(sortedMembers) == sortedMembers(offline), "\(p)")
        }
    }

    @Test func refusalsAreOneClearLineAndNonZero() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        let t = try await TestAgent()
        defer { t.stopNow() }
        let sock = t.socketPath

        // Invalid document: every path, exit 1, nothing applied.
        let bad = try write(t.dir, "bad.json", Fixtures.invalid)
        var r = try await Self.agentctl(["apply", "-f", bad], socket: sock)
        #expect(r.status == 1)
        #expect(r.err.contains("sessions[0].priority"))
        #expect(r.err.contains("sessions[1].target"))
        #expect(t.datapath.appliedDocument == Document())

        // Not JSON.
        let notJSON = try write(t.dir, "x.json", "{\"filters\": ")
        r = try await Self.agentctl(["apply", "-f", notJSON], socket: sock)
        #expect(r.status == 1)
        #expect(r.err.split(separator: "\n").count == 1)
        #expect(r.err.contains("not valid JSON"))

        // Agent not running.
        r = try await Self.agentctl(["status"], socket: t.dir.path + "/none.sock")
        #expect(r.status == 1)
        #expect(r.err.split(separator: "\n").count == 1)
        #expect(r.err.contains("cannot reach mirror-agent"))

        // Unknown object.
        r = try await Self.agentctl(["get", "sessions", "ghost"], socket: sock)
        #expect(r.status == 1)
        #expect(r.err.contains("not found"))
    }

    /// `-o json` on apply, create, update and delete: a refusal is JSON on stdout
    /// with the `{path, message}` errors `validate -o json` prints, and nothing on
    /// stderr; the text form says the same in lines.
    @Test func mutationsPrintTheirRefusalsAsJSONWithOutputJSON() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        let t = try await TestAgent(interfaces: ["tap-vm1": 3])
        defer { t.stopNow() }
        let sock = t.socketPath
        let doc = try write(t.dir, "doc.json", Fixtures.valid)
        var r = try await Self.agentctl(["apply", "-f", doc], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        let invalid = try write(t.dir, "invalid.json", Fixtures.invalid)
        let notJSON = try write(t.dir, "x.json", "{\"filters\": ")

        func refusal(_ args: [String], socket: String? = nil) async throws -> (status: Int?, message: String, paths: [String]) {
            let r = try await Self.agentctl(args + ["-o", "json"], socket: socket ?? sock)
            #expect(r.status == 1, "\(args): \(r.err)")
            #expect(r.err.isEmpty, "\(args): \(r.err)")
            let v = try JSONParser.parse(r.out).get()
            let errors = v["errors"]?.arrayValue ?? []
            // Each error just as `validate -o json` writes one.
            #expect(errors.allSatisfy { $0.members?.map(\.key) == ["path", "message"] }, "\(args): \(r.out)")
            return (v["status"]?.intValue, v["message"]?.stringValue ?? "", errors.compactMap { $0["path"]?.stringValue })
        }
        var x = try await refusal(["apply", "-f", invalid])
        #expect(x.status == 422, "\(x)")
        let validated = try JSONParser.parse(try await Self.agentctl(["validate", "-f", invalid, "-o", "json"], socket: nil).out).get()
        #expect(x.paths == (validated["errors"]?.arrayValue ?? []).compactMap { $0["path"]?.stringValue })
        x = try await refusal(["create", "sources", "bad", "--interface", "a/b"])
        #expect(x.status == 422 && x.paths == ["sources[id=bad].interface"], "\(x)")
        x = try await refusal(["update", "sessions", "s2", "--priority", "1"])
        #expect(x.status == 422 && x.paths == ["sessions[id=s2].priority"], "\(x)")
        x = try await refusal(["delete", "filters", "f1"])
        #expect(x.status == 409 && x.message == "filter f1 is used by sessions s1, s2; delete or change them first", "\(x)")
        #expect(x.paths == ["sessions[id=s1].filter", "sessions[id=s2].filter"])
        x = try await refusal(["delete", "sessions", "ghost"])
        #expect(x.status == 404 && x.paths.isEmpty && x.message.contains("ghost"), "\(x)")
        x = try await refusal(["apply", "-f", notJSON])
        #expect(x.status == nil && x.paths == ["document"], "\(x)")
        x = try await refusal(["apply", "-f", doc], socket: t.dir.path + "/none.sock")
        #expect(x.status == nil && x.message.contains("cannot reach mirror-agent") && x.paths.isEmpty, "\(x)")

        r = try await Self.agentctl(["delete", "filters", "f1"], socket: sock)
        #expect(r.status == 1)
        #expect(r.err.contains("filter f1 is used by sessions s1, s2; delete or change them first"), "\(r.err)")
        #expect(r.err.contains("  sessions[id=s1].filter: refers to filter f1"), "\(r.err)")
        #expect(t.datapath.appliedDocument.filters.map(\.id) == ["f1"])
    }

    @Test func applyDryRunPrintsWhatWouldChangeAndChangesNothing() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        let t = try await TestAgent()
        defer { t.stopNow() }
        let sock = t.socketPath
        var r = try await Self.agentctl(["apply", "-f", try write(t.dir, "doc.json", Fixtures.valid)], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        let before: AnyJSON = try await t.call("GET", APIPath.document)
        let next = try JSONParser.parse(Fixtures.valid).get()
            .setting("sources", .array([.object([("id", .string("vm1")), ("interface", .string("tap-vm1"))])]))
            .setting(
                "sessions",
                .array([
                    .object([
                        ("id", .string("s1")), ("priority", .int(7)), ("filter", .string("f1")),
                        ("sources", .array([.string("vm1")])), ("target", .string("t1")),
                    ])
                ]))
        let file = try write(t.dir, "next.json", next.serialized(pretty: true))

        r = try await Self.agentctl(["apply", "--dry-run", "-f", file], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines.first == "dry run of \(file) against generation 1; nothing was applied", "\(r.out)")
        #expect(
            Array(lines.dropFirst()) == [
                "  change  session s1", "  remove  source vm2", "  remove  session s2",
                "would add 0, change 1, remove 2",
            ], "\(r.out)")
        r = try await Self.agentctl(["apply", "--dry-run", "-f", file, "-o", "json"], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        let plan = try JSONParser.parse(r.out).get()
        #expect(plan["dryRun"] == .bool(true) && plan["changed"] == .bool(true))
        #expect(plan["changes"]?["sessions"]?["removed"] == .array([.string("s2")]))
        r = try await Self.agentctl(["apply", "--dry-run", "-f", try write(t.dir, "same.json", Fixtures.valid)], socket: sock)
        #expect(r.out.contains("no changes"), "\(r.out)")
        r = try await Self.agentctl(["apply", "--dry-run", "-f", try write(t.dir, "bad.json", Fixtures.invalid)], socket: sock)
        #expect(r.status == 1 && r.err.contains("sessions[0].priority"), "\(r.err)")

        let after: AnyJSON = try await t.call("GET", APIPath.document)
        #expect(after == before)
        let st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.generation == 1 && st.sessions == 2)
    }

    /// `script` runs agentctl on a pseudo-terminal: standard input and output are terminals.
    static func atTerminal(_ args: [String]) async throws -> Run {
        try await offThread {
            let line = ([binary] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            let r = try Command.result(["/usr/bin/script", "-qec", line, "/dev/null"])
            return Run(status: r.status, out: r.stdout, err: r.stderr)
        }
    }

    /// A document without sessions over a policy with sessions stops all mirroring:
    /// at a terminal agentctl wants --force for it; a script (no terminal) is not asked.
    @Test func applyThatRemovesEverySessionAsksForForceOnlyAtATerminal() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "util-linux script(1) gives agentctl a terminal")
        let t = try await TestAgent()
        defer { t.stopNow() }
        let sock = t.socketPath
        let doc = try write(t.dir, "doc.json", Fixtures.valid)
        let empty = try write(
            t.dir, "empty.json", try JSONParser.parse(Fixtures.valid).get().setting("sessions", .array([])).serialized(pretty: true))
        var r = try await Self.agentctl(["apply", "-f", doc], socket: sock)
        #expect(r.status == 0, "\(r.err)")

        r = try await Self.atTerminal(["apply", "-f", empty, "--socket", sock])
        #expect(r.status == 1, "\(r.out)")
        #expect(r.out.contains("removes every session (2 in force: s1, s2)") && r.out.contains("--force"), "\(r.out)")
        #expect(t.datapath.appliedDocument.sessions.count == 2)
        // Nothing to lose: a document that keeps sessions, or a policy without any, is not asked about.
        r = try await Self.atTerminal(["apply", "-f", doc, "--socket", sock])
        #expect(r.status == 0, "\(r.out)")

        r = try await Self.atTerminal(["apply", "--force", "-f", empty, "--socket", sock])
        #expect(r.status == 0, "\(r.out)")
        #expect(t.datapath.appliedDocument.sessions.isEmpty)
        r = try await Self.atTerminal(["apply", "-f", empty, "--socket", sock])
        #expect(r.status == 0, "\(r.out)")

        r = try await Self.agentctl(["apply", "-f", doc], socket: sock)
        #expect(r.status == 0, "\(r.err)")
        r = try await Self.agentctl(["apply", "-f", empty], socket: sock)
        #expect(r.status == 0, "a script is not asked: \(r.err)")
        #expect(t.datapath.appliedDocument.sessions.isEmpty)
    }

    @Test func statsWatchRedrawsInPlaceOnlyOnATerminal() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/script"))
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let clear = "\u{1B}[H\u{1B}[2J"
        var r = try await Self.atTerminal(["stats", "--watch", "--interval", "0.1", "--count", "3", "--socket", t.socketPath])
        #expect(r.status == 0, "\(r.out)")
        #expect(r.out.components(separatedBy: clear).count - 1 == 3, "\(r.out)")
        #expect(r.out.contains("Every 0.1s: agentctl stats"), "\(r.out)")
        r = try await Self.agentctl(["stats", "--watch", "--interval", "0.1", "--count", "3"], socket: t.socketPath)
        #expect(r.status == 0, "\(r.err)")
        #expect(!r.out.contains("\u{1B}"), "\(r.out)")
        #expect(r.out.components(separatedBy: "generation 1, datapath memory").count - 1 == 3, "\(r.out)")
    }

    /// The agent stops and starts again under a running `stats --watch`: the failed
    /// polls are one line each and the watch picks the agent up again.
    @Test func statsWatchKeepsGoingWhileTheAgentRestarts() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        let dir = try TempDir()
        let first = try await TestAgent(dir: dir)
        var firstRunning = true
        defer { if firstRunning { first.stopNow() } }
        _ = try await first.request("POST", APIPath.apply, Fixtures.valid)
        let outPath = dir.path + "/watch.out", errPath = dir.path + "/watch.err"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = [
            "-c", #"exec "$0" --socket "$1" stats --watch --interval 0.2 > "$2" 2> "$3""#, Self.binary, first.socketPath, outPath, errPath,
        ]
        try p.run()
        // SIGKILL: the child inherits this test thread's signal mask, in which SIGTERM is blocked.
        func stopWatching() { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        defer { stopWatching() }
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        func polls() -> Int { text(outPath).components(separatedBy: "generation 1, datapath memory").count - 1 }
        func waitFor(_ what: String, _ done: () -> Bool) async throws {
            for _ in 0..<300 where !done() { try await Task.sleep(for: .milliseconds(100)) }
            try #require(done(), "waited 30 s for \(what); out: \(text(outPath)) err: \(text(errPath))")
        }
        try await waitFor("the first poll") { polls() >= 1 }
        await first.stop()
        firstRunning = false
        try await waitFor("a failed poll") { text(errPath).contains("agent not answering") }
        #expect(p.isRunning, "\(text(errPath))")
        let before = polls()
        let second = try await TestAgent(dir: dir)
        defer { second.stopNow() }
        try await waitFor("a poll of the restarted agent") { polls() > before }
        stopWatching()
        let failed = text(errPath).split(separator: "\n")
        #expect(
            !failed.isEmpty && failed.allSatisfy { $0.hasPrefix("agent not answering") && $0.hasSuffix("; retrying every 0.2s") },
            "\(failed)")
    }

    @Test func nonRootUserGetsPermissionDenied() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary))
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") else { return }
        let t = try await TestAgent()
        defer { t.stopNow() }
        // Let "nobody" reach the directory and run a copy of the binary: only the
        // socket's own mode (0600) stands in the way.
        chmod(t.dir.path, 0o755)
        let copy = t.dir.path + "/agentctl"
        try FileManager.default.copyItem(atPath: Self.binary, toPath: copy)
        chmod(copy, 0o755)
        let r = try await Self.agentctl(["status"], socket: t.socketPath, user: "nobody", binary: copy)
        #expect(r.status == 1)
        #expect(r.err.contains("permission denied"))
        #expect(r.err.split(separator: "\n").count == 1)
    }
}
