import Foundation
import MirrorAPI
import MirrorCore
import Testing

@testable import MirrorAgent

/// GET /v1/stats is written by hand, in pieces (StatsJSON.swift), not by JSONEncoder:
/// at the quotas JSONEncoder took the agent from 42 to 372 MiB for every `agentctl stats`.
@Suite("Stats JSON: written in pieces, the same as JSONEncoder's")
struct StatsJSONTests {
    static func sample() -> StatsResponse {
        var s1 = SessionStats(
            session: "s\"1\\/é", packets: 11, bytes: 1100, copiesSent: 10, copiesSentBytes: 900,
            truncated: ["mtu": 2, "packet_length": 1],
            dropped: ["session_gone": 0, "no_target": 3, "truncate_failed": 4, "encapsulation_failed": 5])
        s1.copiesSentDirect = 7; s1.copiesSegmented = 8; s1.copiesTruncatedGSO = 9; s1.copiesSentDevice = 10
        let s2 = SessionStats(session: "s2\n\t\u{1}")
        let rules = (0..<300).map {
            RuleStats(
                session: $0 % 2 == 0 ? "s\"1\\/é" : "s2\n\t\u{1}", filter: "f/\($0 % 7)", direction: $0 % 3 == 0 ? .inbound : .outbound,
                priority: $0, action: $0 % 5 == 0 ? .reject : .accept, hits: UInt64($0) * 1_000_000_007)
        }
        var sources = [
            SourceStats(
                source: "vm1", interface: "tap-vm1", state: .attached, direction: .inbound, seen: 9, mirrored: 1,
                notMirrored: ["no_match": 2, "rejected": 3, "not_ip": 4, "clone_failed": 5, "suppressed_by_acl": 6]),
            SourceStats(source: "vm\u{7f}2", interface: "tap-vm2", state: .pending, direction: .outbound),
        ]
        sources[0].established = 10
        var st = StatsResponse(
            generation: 42, datapath: "kernel", countersAvailable: true, time: 1_764_320_000.25,
            sessions: [s1, s2], rules: rules, sources: sources, mirrorDeviceForeignDropped: UInt64.max)
        st.segmenterForeignDropped = 11; st.securityFlows = 12
        return st
    }

    @Test func theTextIsJSONEncodersInContentAndKeyOrder() throws {
        for st in [Self.sample(), StatsResponse(generation: 0, datapath: "memory", countersAvailable: false, time: 0)] {
            let text = StatsJSON.text(st, rules: .init(st.rules))
            #expect(try JSONDecoder().decode(StatsResponse.self, from: Data(text.utf8)) == st)
            // The core's strict parser keeps member order and exact numbers: the same tree
            // as JSONEncoder's sorted output.
            let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
            let encoded = try e.encode(st)
            let reference = try JSONParser.parse(Array(encoded)).get()
            #expect(try JSONParser.parse(Array(text.utf8)).get() == reference, "\(text)\n\(String(decoding: encoded, as: UTF8.self))")
        }
    }

    @Test func piecesAreWholeInTurnAndAboutTheirSize() throws {
        let st = Self.sample()
        let whole = StatsJSON.text(st, rules: .init(st.rules))
        for size in [1, 64, 1000, 1 << 20] {
            let pieces = Array(StatsJSON.pieces(st, rules: .init(st.rules), pieceBytes: size))
            #expect(pieces.joined() == whole)
            #expect(pieces.dropLast().allSatisfy { $0.utf8.count >= size })
            if size >= whole.utf8.count { #expect(pieces.count == 1) }
        }
    }
}

@Suite("Stats filters: ?session=ID&source=ID")
struct StatsFilterTests {
    @Test func aFilterKeepsTheNamedAndLeavesOtherKindsOut() {
        let st = StatsJSONTests.sample()
        let rules = MetricsSnapshot.RuleSeries(st.rules)
        let s2 = "s2\n\t\u{1}"
        var (out, r) = StatsFilter(sessions: [s2]).apply(st, rules)
        #expect(out.sessions.map(\.session) == [s2])
        #expect(Array(r) == st.rules.filter { $0.session == s2 } && r.count == 150)
        #expect(out.sources.isEmpty && out.rules.isEmpty)
        (out, r) = StatsFilter(sources: ["vm1"]).apply(st, rules)
        #expect(out.sessions.isEmpty && r.isEmpty)
        #expect(out.sources.map(\.source) == ["vm1"])
        (out, r) = StatsFilter(sessions: [s2], sources: ["vm1"]).apply(st, rules)
        #expect(out.sessions.count == 1 && r.count == 150 && out.sources.count == 1)
        #expect(out.generation == st.generation && out.time == st.time)
    }

    /// Ids go percent-encoded into the query; what no policy in force has, or a
    /// parameter the API does not know, is refused by name.
    @Test func theQueryIsCheckedAgainstThePolicyInForce() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        #expect(StatsPath.stats(sessions: ["s 1", "s2"], sources: ["vm1"]) == "/v1/stats?session=s%201&session=s2&source=vm1")
        var (status, body) = try await t.request("GET", StatsPath.stats(sessions: ["s1"], sources: ["vm2"]))
        #expect(status == 200, "\(body)")
        (status, body) = try await t.request("GET", StatsPath.stats(sessions: ["nope"], sources: []))
        #expect(status == 404 && body.contains("no session 'nope' in the policy in force"), "\(body)")
        (status, body) = try await t.request("GET", StatsPath.stats(sessions: [], sources: ["vm9"]))
        #expect(status == 404 && body.contains("no source 'vm9'"), "\(body)")
        (status, body) = try await t.request("GET", "/v1/stats?sessions=s1")
        #expect(status == 400 && body.contains("unknown query parameter 'sessions'"), "\(body)")
        (status, body) = try await t.request("GET", "/v1/stats?session=")
        #expect(status == 400 && body.contains("bad query item"), "\(body)")
        (status, _) = try await t.request("GET", "/v1/stats?")
        #expect(status == 200)

        let r = try await AgentctlTests.agentctl(["stats", "--session", "nope"], socket: t.socketPath)
        #expect(r.status != 0 && r.err.contains("no session 'nope'"), "\(r.err)")
    }
}

@Suite("Stats over the control socket: a large answer is streamed")
struct StatsStreamingTests {
    /// Pieces of 8 bytes: even the in-memory agent's answer is streamed. agentctl's
    /// client must read it whole (chunked on HTTP/1.1), and a raw HTTP/1.0 client
    /// gets it delimited by the close.
    @Test func aStreamedAnswerArrivesWholeChunkedOrCloseDelimited() async throws {
        let t = try await TestAgent(pieceBytes: 8)
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let expected = await t.agent.stats()
        let got: StatsResponse = try await t.call("GET", StatsPath.stats)
        #expect(
            got.generation == expected.generation && got.datapath == expected.datapath
                && got.countersAvailable == expected.countersAvailable)

        for version in ["1.1", "1.0"] {
            let raw = try await Self.raw(t.socketPath, "GET \(StatsPath.stats) HTTP/\(version)\r\nHost: a\r\n\r\n")
            let text = String(decoding: raw, as: UTF8.self)
            let head = text.components(separatedBy: "\r\n\r\n")[0].lowercased()
            #expect(head.hasPrefix("http/\(version) 200"))
            #expect(!head.contains("content-length"))
            #expect(head.contains("transfer-encoding: chunked") == (version == "1.1"))
            let body = try ControlClient.parse(raw).body
            let decoded = try JSONDecoder().decode(StatsResponse.self, from: Data(body))
            #expect(decoded.generation == expected.generation && decoded.datapath == expected.datapath)
        }
    }

    /// Writes a request and reads until the agent closes.
    static func raw(_ path: String, _ request: String) async throws -> [UInt8] {
        try await offThread {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                let b = Array(path.utf8); raw.copyBytes(from: b); raw[b.count] = 0
            }
            var tv = timeval(tv_sec: 10, tv_usec: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { throw StateError("connect: \(errno)") }
            let req = Array(request.utf8)
            guard write(fd, req, req.count) == req.count else { throw StateError("write: \(errno)") }
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &buf, buf.count)
                if n <= 0 { break }
                out += buf[0..<n]
            }
            return out
        }
    }
}

@Suite("Control client: chunked answers")
struct ChunkedAnswerTests {
    static func answer(_ body: String) -> [UInt8] {
        Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n\(body)".utf8)
    }

    @Test func chunksAreJoinedExtensionsAndTrailersIgnored() throws {
        let r = try ControlClient.parse(Self.answer("3\r\n{\"a\r\nB;ext=1\r\n\":12345678}\r\n0\r\nX-Trailer: 1\r\n\r\n"))
        #expect(String(decoding: r.body, as: UTF8.self) == "{\"a\":12345678}")
    }

    @Test func aTruncatedOrMalformedChunkedAnswerIsAClearError() {
        for body in ["5\r\nabc", "3\r\nabc", "zz\r\nabc\r\n0\r\n\r\n", "3\r\nabcd\r\n0\r\n\r\n", "-1\r\n\r\n"] {
            #expect(throws: ControlClient.ClientError.self) { try ControlClient.parse(Self.answer(body)) }
        }
    }
}
