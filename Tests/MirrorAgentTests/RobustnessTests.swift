import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorTestSupport
import Testing

/// SPEC §8: bad input gets a clear error, never a crash, and never changes state.
@Suite("Control API robustness")
struct RobustnessTests {
    /// Deterministic generator (SplitMix64) so a failure can be replayed.
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    static func mutate(_ text: String, _ rng: inout Rng) -> String {
        var b = Array(text.utf8)
        switch rng.int(5) {
        case 0: b = Array(b.prefix(rng.int(b.count + 1)))  // truncate
        case 1: for _ in 0..<1 + rng.int(8) where !b.isEmpty { b[rng.int(b.count)] = UInt8(rng.int(256)) }
        case 2: if !b.isEmpty { b.remove(at: rng.int(b.count)) }
        case 3:
            let tokens = ["null", "-1", "99999999999999999999", "\"\"", "[]", "{}", "true", "1e400", "\"\\u0000\""]
            let t = Array(tokens[rng.int(tokens.count)].utf8)
            b.insert(contentsOf: t, at: rng.int(b.count + 1))
        default: b += b.prefix(rng.int(b.count + 1))
        }
        return String(decoding: b, as: UTF8.self)
    }

    @Test func mutatedRequestsNeverCrashTheAgentOrChangeRejectedState() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let session = #"{"id": "s9", "priority": 9, "filter": "f1", "sources": ["vm2"], "target": "t1", "enabled": false}"#
        let rng = Rng(state: 0x6167_742d_6675_7a7a)
        let routes: [(String, String, String)] = [
            ("POST", APIPath.apply, Fixtures.valid),
            ("POST", APIPath.kind(.sessions), session),
            ("PUT", APIPath.object(.sessions, "s1"), session.replacingOccurrences(of: "s9", with: "s1")),
            (
                "POST", APIPath.explain,
                #"{"source": "vm1", "direction": "inbound", "packet": {"protocol": "tcp", "src": "192.0.2.1:1", "dst": "192.0.2.2:80"}}"#
            ),
        ]
        let cases = 400
        let results = try await offThread { () -> [Int] in
            var statuses: [Int] = []
            var rng = rng
            for i in 0..<cases {
                let (method, path, body) = routes[i % routes.count]
                let mutated = Self.mutate(body, &rng)
                let before = try t.client.call("GET", APIPath.document, as: AnyJSON.self)
                let r = try t.client.send(method: method, path: path, body: Array(mutated.utf8))
                statuses.append(r.status)
                if r.status >= 400, try t.client.call("GET", APIPath.document, as: AnyJSON.self) != before {
                    statuses.append(-2)  // a rejected request changed the state
                }
                // Every answer is JSON; errors have the documented shape.
                if r.status >= 400 {
                    let e = try JSONDecoder().decode(APIError.self, from: Data(r.body))
                    if e.message.isEmpty { statuses.append(-1) }
                }
            }
            return statuses
        }
        #expect(!results.contains(-1))
        #expect(!results.contains(-2))
        #expect(!results.contains(500))
        #expect(results.allSatisfy { (200..<500).contains($0) })
        // The agent still answers, and its documents all validate.
        let st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.datapathLoaded)
        let doc: AnyJSON = try await t.call("GET", APIPath.document)
        if case .failure(let e) = DocumentParser.parse(json: doc.value) { Issue.record("applied document invalid: \(e)") }
    }

    @Test func rawProtocolGarbageGetsAnErrorOrAClose() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        let garbage = [
            "GARBAGE\r\n\r\n", "GET /v1/status HTTP/9.9\r\n\r\n", "POST /v1/apply HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            "POST /v1/apply HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", String(repeating: "A", count: 100_000),
        ]
        let path = t.socketPath
        for g in garbage {
            try await offThread {
                let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                _ = withUnixAddress(path) { connect(fd, $0, $1) }
                var tv = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                _ = Array(g.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                shutdown(fd, Int32(SHUT_WR))
                var buf = [UInt8](repeating: 0, count: 4096)
                _ = read(fd, &buf, buf.count)  // an error answer or EOF; must not hang past the timeout
            }
        }
        let (s, _) = try await t.request("GET", APIPath.status)
        #expect(s == 200)
    }

    @Test func idleConnectionsAreClosed() async throws {
        let dir = try TempDir()
        let t = try await TestAgent(dir: dir)
        defer { t.stopNow() }
        // The harness uses a 5 s idle timeout; a client that sends half a request and
        // stalls is cut off.
        let path = t.socketPath
        let closedAfter = try await offThread { () -> Double in
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            _ = withUnixAddress(path) { connect(fd, $0, $1) }
            _ = Array("POST /v1/apply HTTP/1.1\r\nContent-Length: 100\r\n\r\n{".utf8).withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            let start = Date()
            var tv = timeval(tv_sec: 20, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var buf = [UInt8](repeating: 0, count: 256)
            while read(fd, &buf, buf.count) > 0 {}
            return Date().timeIntervalSince(start)
        }
        #expect(closedAfter < 15)
        let server = t.server
        let drained = try await offThread { () -> Bool in
            for _ in 0..<100 where server.activeConnections != 0 { usleep(20_000) }
            return server.activeConnections == 0
        }
        #expect(drained)
    }
}
