import CMirrorABI
import Foundation
import Logging
import MirrorAPI
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import NIOPosix
import Testing

@testable import MirrorAgent

/// The declared families (MetricFamily.swift) against a real scrape of GET /metrics:
/// every declared family is in it, with HELP and TYPE as declared, and everything in
/// it is declared, with the declared labels and reasons.
@Suite("Metrics: a scrape shows exactly the declared families")
struct MetricFamilyTests {
    /// One exposition, parsed strictly enough to see what a family is made of.
    struct Exposition {
        struct Sample { var name: String, labels: [(String, String)], value: String, family: String? }
        var help: [String: String] = [:]
        var type: [String: String] = [:]
        var samples: [Sample] = []
        var problems: [String] = []

        init(_ text: String) {
            var current: String?  // the family whose header came last
            for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) where !line.isEmpty {
                if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                    let rest = line.dropFirst(7)
                    guard let space = rest.firstIndex(of: " ") else { problems.append("bad header: \(line)"); continue }
                    let name = String(rest[..<space]), value = String(rest[rest.index(after: space)...])
                    if line.hasPrefix("# HELP ") {
                        if help[name] != nil { problems.append("two HELP lines for \(name)") }
                        help[name] = value
                        current = name
                    } else {
                        if current != name { problems.append("TYPE of \(name) not right after its HELP") }
                        type[name] = value
                    }
                    continue
                }
                guard let s = Self.sample(line) else { problems.append("unparsable: \(line)"); continue }
                samples.append(Sample(name: s.name, labels: s.labels, value: s.value, family: current))
            }
        }

        /// `name{a="x",b="y"} value`, label values unescaped.
        static func sample(_ line: String) -> (name: String, labels: [(String, String)], value: String)? {
            let c = Array(line)
            var i = 0
            while i < c.count && c[i] != "{" && c[i] != " " { i += 1 }
            let name = String(c[..<i])
            var labels: [(String, String)] = []
            if i < c.count && c[i] == "{" {
                i += 1
                while i < c.count && c[i] != "}" {
                    var key = ""
                    while i < c.count && c[i] != "=" { key.append(c[i]); i += 1 }
                    guard i + 1 < c.count, c[i + 1] == "\"" else { return nil }
                    i += 2
                    var value = ""
                    while i < c.count && c[i] != "\"" {
                        if c[i] == "\\" && i + 1 < c.count {
                            value.append(c[i + 1] == "n" ? "\n" : c[i + 1]); i += 2
                        } else {
                            value.append(c[i]); i += 1
                        }
                    }
                    guard i < c.count else { return nil }
                    i += 1
                    labels.append((key, value))
                    if i < c.count && c[i] == "," { i += 1 }
                }
                guard i < c.count else { return nil }
                i += 1
            }
            guard i < c.count, c[i] == " " else { return nil }
            return (name, labels, String(c[(i + 1)...]))
        }
    }

    /// Counters as a kernel datapath reads them for a small policy, every field set.
    static func counters() throws -> DatapathCounters {
        var doc = Document()
        doc.targets = [Target(id: "t1", type: .nic, address: IPAddress("198.51.100.2"))]
        doc.sources = [Source(id: "vm1", interface: "tap-vm1"), Source(id: "vm2", interface: "tap-vm2")]
        doc.filters = [
            Filter(
                id: "f\"1", inbound: [Rule(priority: 1, action: .accept, ethertype: .ipv4)],
                outbound: [Rule(priority: 2, action: .reject, ethertype: .ipv4, protocol: .udp)])
        ]
        doc.sessions = [
            Session(id: "s1", priority: 1, filter: "f\"1", sources: ["vm1"], target: "t1", vni: 1),
            Session(id: "s\n2", priority: 2, filter: "f\"1", sources: ["vm1", "vm2"], target: "t1", vni: 2),
        ]
        let slots = try SlotAssignment.assign(document: doc)
        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { $0 == "tap-vm1" ? 7 : 8 }))
        var c = DatapathCounters()
        for (n, s) in doc.sessions.enumerated() {
            var x = DatapathCounters.Session(slot: slots.sessions[s.id]!, id: s.id)
            let b = UInt64(100 * (n + 1))
            x.packets = b + 1; x.bytes = b + 2; x.copiesSent = b + 3; x.copiesSentBytes = b + 4; x.copiesSentDirect = b + 5
            x.truncatedPacketLength = b + 6; x.truncatedMTU = b + 7
            x.droppedSessionGone = b + 8; x.droppedNoTarget = b + 9; x.droppedTruncate = b + 10; x.droppedEncapsulation = b + 11
            x.segmented = b + 12; x.truncatedGSO = b + 13; x.droppedNoRoute = b + 14
            x.droppedNeighborUnresolved = b + 15; x.copiesSentDevice = b + 16
            c.sessions.append(x)
        }
        c.rules = .init(table: image.rules, hits: Array(1...UInt64(4 * Int(MAX_RULES_PER_DIRECTION))))
        for (n, s) in doc.sources.enumerated() {
            for d in Direction.allCases {
                var x = DatapathCounters.Source(slot: slots.sources[s.id]!, id: s.id, interface: s.interface, direction: d)
                let b = UInt64(1000 * (n + 1) + 100 * Int(d.abi))
                x.seen = b + 1; x.mirrored = b + 2; x.noMatch = b + 3; x.rejected = b + 4; x.notIP = b + 5; x.cloneErrors = b + 6
                x.suppressedBySecurityGroup = b + 7; x.suppressedByAcl = b + 8; x.established = b + 9
                c.sources.append(x)
            }
        }
        c.foreignDropped = 5; c.segmenterForeignDropped = 6; c.securityFlows = 7
        return c
    }

    /// The declared family a sample belongs to: its own name, or a histogram's with
    /// the _bucket, _sum or _count suffix.
    static func family(of name: String) -> MetricFamily? {
        if let f = MetricFamily.all.first(where: { $0.name == name }) { return f }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if let f = MetricFamily.all.first(where: { $0.name == base && $0.type == .histogram }) { return f }
        }
        return nil
    }

    @Test func everyDeclaredFamilyIsScrapedAsDeclaredAndNothingUndeclaredIs() async throws {
        let t = try await TestAgent(interfaces: ["tap-vm1": 7])
        t.datapath.setCounters(try Self.counters())
        let server = MetricsServer(agent: t.agent, host: "127.0.0.1", port: 0, logger: Logger(label: "test"))
        try await server.start()
        defer { server.stopWithoutWaiting(); t.stopNow() }
        let port = try #require(server.port)
        let (status, _) = try await t.request("POST", APIPath.apply, Fixtures.valid)
        #expect(status == 200)
        let (head, body) = try await offThread { try MetricsEndpointTests.get(port: port, path: "/metrics") }
        #expect(head.hasPrefix("HTTP/1.1 200"))

        let e = Exposition(body)
        #expect(e.problems == [])
        let declared = Set(MetricFamily.all.map(\.name))
        #expect(
            Set(e.type.keys) == declared,
            "scraped, not declared: \(Set(e.type.keys).subtracting(declared)); declared, not scraped: \(declared.subtracting(e.type.keys))")
        #expect(Set(e.help.keys) == declared)
        for f in MetricFamily.all {
            #expect(e.help[f.name] == MetricsRenderer.escapeHelp(f.help), "HELP of \(f.name)")
            #expect(e.type[f.name] == f.type.rawValue, "TYPE of \(f.name)")
            #expect(e.samples.contains { $0.family == f.name }, "\(f.name) has no sample")
        }
        var reasons: [String: Set<String>] = [:]
        for s in e.samples {
            guard let f = Self.family(of: s.name) else { Issue.record("undeclared series \(s.name)"); continue }
            #expect(s.family == f.name, "\(s.name) is not under its family's header")
            let names = s.labels.map(\.0)
            #expect(
                names == (s.name.hasSuffix("_bucket") && f.type == .histogram ? f.labels + ["le"] : f.labels),
                "labels of \(s.name): \(names)")
            if let r = s.labels.first(where: { $0.0 == "reason" })?.1 {
                #expect(f.reasons.contains(r), "\(s.name): undeclared reason \(r)")
                reasons[f.name, default: []].insert(r)
            }
        }
        // This datapath counts every reason: each declared one shows up.
        for f in MetricFamily.all where !f.reasons.isEmpty {
            #expect(reasons[f.name] == Set(f.reasons), "\(f.name)")
        }
        if hasPromtool { #expect(try promtoolProblems(body) == "") }
    }

    /// README's Metrics section names every family, so that a new one is documented.
    @Test func theReadmeNamesEveryDeclaredFamily() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let start = try #require(text.range(of: "\n## Metrics\n"))
        let rest = text[start.upperBound...]
        let section = rest.range(of: "\n## ").map { rest[..<$0.lowerBound] } ?? rest
        for f in MetricFamily.all {
            #expect(section.contains("`\(f.name)`") || section.contains("`\(f.name){"), "README's Metrics section does not name \(f.name)")
        }
    }
}
