import Foundation
import MirrorCore
import MirrorTestSupport
import Testing

// Runs the built `agentctl` (it sits next to the test bundle in the build products
// directory) on the examples and on bad files and bad command-line values.

private struct Run { var status: Int32; var stdout: String; var stderr: String }

private func agentctl(_ args: [String], stdin: String? = nil) throws -> Run {
    guard let path = Binaries.path("agentctl") else {
        Issue.record("agentctl not found next to \(CommandLine.arguments[0]): build it first (swift build)")
        return Run(status: -1, stdout: "", stderr: "")
    }
    let r = try Command.result([path] + args, stdin: stdin, directory: repositoryRoot.path)
    return Run(status: r.status, stdout: r.stdout, stderr: r.stderr)
}

private func temporaryFile(_ text: String) throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("agentctl-test-\(UUID().uuidString).json")
    try Data(text.utf8).write(to: url)
    return url.path
}

private func noStackTrace(_ r: Run) -> Bool {
    !(r.stderr + r.stdout).contains("Fatal error") && !(r.stderr + r.stdout).contains("Stack dump") && r.status != 132 && r.status != 134
}

@Test(.serialized, arguments: ["seed-filter.json", "two-sessions.json"])
func agentctlValidateAcceptsTheExamples(_ name: String) throws {
    let r = try agentctl(["validate", "-f", "examples/\(name)"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("valid"))
    let j = try agentctl(["validate", "-f", "examples/\(name)", "-o", "json"])
    #expect(j.status == 0)
    #expect(try JSONParser.parse(j.stdout).get() == .object([("valid", .bool(true)), ("errors", .array([]))]))
}

@Test func agentctlValidateRefusesABadFileWithPathPreciseMessages() throws {
    let bad = DocumentEncoding.encode(baseDocument())
        .setting("sessions[1].priority", num(40000))
        .setting("filters[0].inbound[0].source", str("198.51.100.1/24"))
        .setting("sources[0].interfase", str("x"))
    let path = try temporaryFile(bad.serialized(pretty: true))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let r = try agentctl(["validate", "-f", path])
    #expect(r.status == 1)
    #expect(r.stderr.contains("sessions[1].priority: 40000 is out of range"))
    #expect(r.stderr.contains("filters[0].inbound[0].source: 198.51.100.1/24 has host bits set"))
    #expect(r.stderr.contains("sources[0].interfase: unknown field \"interfase\"; did you mean \"interface\"?"))

    let j = try agentctl(["validate", "-f", path, "-o", "json"])
    #expect(j.status == 1)
    let v = try JSONParser.parse(j.stdout).get()
    #expect(v["valid"] == .bool(false))
    guard case .array(let errs)? = v["errors"] else { Issue.record("no errors array"); return }
    let paths = errs.compactMap { e -> String? in if case .string(let p)? = e["path"] { return p } else { return nil } }
    #expect(Set(paths) == ["sessions[1].priority", "filters[0].inbound[0].source", "sources[0].interfase"])
}

@Test func agentctlValidateRefusesInvalidJSON() throws {
    let path = try temporaryFile("{\"filters\": [")
    defer { try? FileManager.default.removeItem(atPath: path) }
    let r = try agentctl(["validate", "-f", path])
    #expect(r.status == 1)
    #expect(r.stderr.contains("document: invalid JSON"))
    #expect(noStackTrace(r))
}

@Test func agentctlExplainPrintsTheDecisionJSON() throws {
    let r = try agentctl([
        "explain", "-f", "examples/two-sessions.json", "--source", "web-eni", "--direction", "inbound",
        "--protocol", "tcp", "--src", "[2001:db8::7]:5555", "--dst", "[2001:db8:1::10]:80", "-o", "json",
    ])
    #expect(r.status == 0, "\(r.stderr)")
    let v = try JSONParser.parse(r.stdout).get()
    #expect(v["mirrored"] == .bool(true))
    #expect(v["session"] == .string("session-b"))
    #expect(v["reason"] == .string("accepted"))
    #expect(v["tried"] == .array([.string("session-a"), .string("session-b")]))
    #expect(v["rule"]?["priority"] == .int(2))

    let seed = try agentctl([
        "explain", "-f", "examples/seed-filter.json", "--source", "web-eni", "--direction", "outbound",
        "--protocol", "udp", "--src", "192.168.0.5:53", "--dst", "10.2.0.9:53",
    ])
    #expect(seed.status == 0)
    #expect(seed.stdout.contains("rejects"))

    let arp = try agentctl([
        "explain", "-f", "examples/seed-filter.json", "--source", "web-eni", "--direction", "inbound",
        "--non-ip", "-o", "json",
    ])
    #expect(arp.status == 0)
    #expect(try JSONParser.parse(arp.stdout).get()["reason"] == .string("not_ip"))

    let frag = try agentctl([
        "explain", "-f", "examples/seed-filter.json", "--source", "web-eni", "--direction", "inbound",
        "--protocol", "6", "--src", "172.16.0.1", "--dst", "10.0.0.3", "--fragment", "later", "-o", "json",
    ])
    #expect(frag.status == 0)
    #expect(try JSONParser.parse(frag.stdout).get()["reason"] == .string("no_match"))
}

@Test func agentctlBadCommandLineValuesAreUsageErrorsWithoutStackTraces() throws {
    let base = ["explain", "-f", "examples/seed-filter.json", "--source", "web-eni"]
    let cases: [[String]] = [
        base + ["--direction", "sideways", "--protocol", "tcp", "--src", "192.0.2.1:1", "--dst", "192.0.2.2:2"],
        base + ["--direction", "inbound", "--protocol", "tcp", "--src", "192.0.2.1:99999", "--dst", "192.0.2.2:2"],
        base + ["--direction", "inbound", "--protocol", "bogus", "--src", "192.0.2.1:1", "--dst", "192.0.2.2:2"],
        base + ["--direction", "inbound", "--protocol", "tcp", "--src", "192.0.2.1:1", "--dst", "[2001:db8::1]:2"],
        base + ["--direction", "inbound", "--protocol", "tcp", "--src", "192.0.2.1:1", "--dst", "192.0.2.2:2", "--fragment", "middle"],
        base + ["--direction", "inbound", "--protocol", "tcp", "--src", "192.0.2.1:1", "--dst", "192.0.2.2:2", "-o", "yaml"],
        ["explain", "-f", "examples/seed-filter.json", "--source", "nope", "--direction", "inbound", "--non-ip"],
        ["validate"],
        ["validate", "-f", "/nonexistent/file.json"],
        ["validate", "-f", "examples/seed-filter.json", "--bogus-flag"],
        ["frobnicate"],
    ]
    for args in cases {
        let r = try agentctl(args)
        #expect(r.status == 2, "\(args): \(r.status) \(r.stderr)")
        #expect(r.stderr.contains("Error"), "\(args): \(r.stderr)")
        #expect(noStackTrace(r), "\(args)")
    }
}

@Test func agentctlValidateReadsStandardInputForDash() throws {
    let ok = try agentctl(["validate", "-f", "-"], stdin: DocumentEncoding.text(baseDocument()))
    #expect(ok.status == 0, "\(ok.stderr)")
    let bad = try agentctl(["validate", "-f", "-", "-o", "json"], stdin: "{\"sessionz\": []}")
    #expect(bad.status == 1)
    #expect(bad.stdout.contains("did you mean"))
}

/// Files that are not what a command takes get told what they probably are, before
/// any agent is asked (the socket named here does not exist).
@Test func agentctlSaysWhenAFileIsYAMLAWholeDocumentOrOneObject() throws {
    let yaml = try temporaryFile("# the demo, in YAML\nfilters:\n  - id: f1\n")
    let notJSON = try temporaryFile("{\"filters\": [")
    let session = try temporaryFile(#"{"id": "s1", "priority": 1, "filter": "f1", "sources": ["vm1"], "target": "t1"}"#)
    defer { for f in [yaml, notJSON, session] { try? FileManager.default.removeItem(atPath: f) } }
    let noAgent = ["--socket", "/nonexistent/agent.sock"]

    var r = try agentctl(["validate", "-f", yaml])
    #expect(r.status == 1)
    #expect(
        r.stderr.contains("document: invalid JSON") && r.stderr.contains("this looks like YAML: agentctl reads JSON only"), "\(r.stderr)")
    r = try agentctl(["validate", "-f", yaml, "-o", "json"])
    #expect(r.status == 1)
    guard case .array(let errors)? = try JSONParser.parse(r.stdout).get()["errors"], errors.count == 1,
        case .string(let path)? = errors[0]["path"], case .string(let message)? = errors[0]["message"]
    else {
        Issue.record("not one error: \(r.stdout)"); return
    }
    #expect(
        path == "document" && message.hasPrefix("invalid JSON at line 1")
            && message.hasSuffix("; this looks like YAML: agentctl reads JSON only (convert it first)"),
        "\(r.stdout)")
    r = try agentctl(["apply", "-f", yaml] + noAgent)
    #expect(r.status == 1 && r.stderr.contains("this looks like YAML"), "\(r.stderr)")
    r = try agentctl(["create", "sessions", "-f", yaml] + noAgent)
    #expect(r.status == 1 && r.stderr.contains("this looks like YAML"), "\(r.stderr)")
    r = try agentctl(["validate", "-f", notJSON])
    #expect(r.status == 1 && !r.stderr.contains("YAML"), "\(r.stderr)")

    for command in [["create", "sessions"], ["update", "sessions", "s1"]] {
        r = try agentctl(command + ["-f", "examples/demo.json"] + noAgent)
        #expect(r.status == 1, "\(command)")
        #expect(
            r.stderr.contains(
                "examples/demo.json is a whole document (it has \"filters\", \"targets\", \"sources\", \"sessions\"), not one session")
                && r.stderr.contains("use agentctl apply -f examples/demo.json"), "\(command): \(r.stderr)")
        #expect(!r.stderr.contains("cannot reach"), "\(r.stderr)")
    }
    r = try agentctl(["apply", "-f", session] + noAgent)
    #expect(r.status == 1)
    #expect(r.stderr.contains("is one object (it has an \"id\"), not a whole document: use agentctl create KIND -f"), "\(r.stderr)")
    r = try agentctl(["apply", "-f", session, "-o", "json"] + noAgent)
    #expect(r.status == 1 && r.stderr.isEmpty)
    guard case .string(let said)? = try JSONParser.parse(r.stdout).get()["message"] else { Issue.record("\(r.stdout)"); return }
    #expect(said.contains("is one object"))
}

@Test func agentctlVersionPrintsTheRelease() throws {
    let r = try agentctl(["--version"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
        r.stdout.range(of: #"^agentctl [0-9]+\.[0-9]+\.[0-9]+ \(control API v[0-9]+\)\n$"#, options: .regularExpression) != nil,
        "\(r.stdout)")
}
