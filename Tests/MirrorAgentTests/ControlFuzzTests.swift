import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorTestSupport
import Testing

/// 100,000 generated requests through the real control server (NIO,
/// unix socket, keep-alive) into the agent. Every answer is a documented error or a
/// success, never a 500 or a hang; after every rejected request the agent's applied
/// document and generation are exactly what they were before it. Meanwhile slow
/// clients trickle bytes (the body and connection bounds have their own tests in
/// ControlAPITests and RobustnessTests). The agent here runs on the in-memory datapath (kernel applies are covered by
/// the e2e cases); everything from the socket to the committed state is the real code.
@Suite("Control socket fuzz")
struct ControlFuzzTests {
    /// One persistent HTTP/1.1 connection (the agent keeps connections alive).
    /// Plain POSIX: the fuzzer must be able to send what no well-behaved client sends.
    final class Connection {
        let path: String
        var fd: Int32 = -1
        var reconnects = 0
        init(path: String) { self.path = path }
        deinit { if fd >= 0 { close(fd) } }

        func connectIfNeeded() throws {
            guard fd < 0 else { return }
            fd = try FuzzSocket.connect(path, timeout: 10)
            reconnects += 1
        }

        /// Sends raw request bytes, returns (status, body, closed by the agent).
        func roundTrip(_ request: [UInt8]) throws -> (Int, [UInt8]) {
            try connectIfNeeded()
            FuzzSocket.sendAll(fd, request)
            var data: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            var headerEnd: Int?
            var length = 0
            var closeAfter = false
            while true {
                if let h = headerEnd, data.count >= h + length { break }
                let n = read(fd, &buf, buf.count)
                if n <= 0 {
                    if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw StateError("the agent did not answer within 10 s") }
                    if headerEnd != nil || !data.isEmpty { closeAfter = true; break }
                    throw StateError("the agent closed the connection without an answer")
                }
                data += buf[0..<n]
                if headerEnd == nil, let e = FuzzSocket.headerEnd(data) {
                    headerEnd = e
                    let head = String(decoding: data[..<e], as: UTF8.self).lowercased()
                    for line in head.split(separator: "\r\n") {
                        if line.hasPrefix("content-length:") { length = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) ?? 0 }
                        if line.hasPrefix("connection:") && line.contains("close") { closeAfter = true }
                    }
                    if request.starts(with: Array("HEAD ".utf8)) { length = 0 }  // a HEAD answer has no body
                }
            }
            guard let h = headerEnd else { throw StateError("no HTTP header in \(data.count) bytes") }
            let statusLine = String(decoding: data[..<h], as: UTF8.self).split(separator: " ")
            guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw StateError("bad status line") }
            if closeAfter { close(fd); fd = -1 }
            return (status, Array(data[(h + 4)...].prefix(length)))
        }
    }

    enum FuzzSocket {
        static func connect(_ path: String, timeout: Int) throws -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let rc = withUnixAddress(path) { Glibc.connect(fd, $0, $1) }
            guard rc == 0 else { close(fd); throw StateError("connect: \(String(cString: strerror(errno)))") }
            var tv = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }

        static func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
            var off = 0
            while off < bytes.count {
                let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }  // the agent may close early (413): its answer is still read
                off += n
            }
        }

        static func headerEnd(_ d: [UInt8]) -> Int? {
            guard d.count >= 4 else { return nil }
            for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
            return nil
        }
    }

    /// The request generators. Each returns a category name (for the summary) and the
    /// raw request.
    struct Generator {
        var rng: SeededRandom
        let bases: [(method: String, path: String, body: JSONValue)]
        let maxBody: Int

        static func request(_ method: String, _ path: String, _ body: [UInt8]?, extraHeaders: String = "") -> [UInt8] {
            var head = "\(method) \(path) HTTP/1.1\r\nHost: fuzz\r\n\(extraHeaders)"
            if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
            return Array((head + "\r\n").utf8) + (body ?? [])
        }

        mutating func anyValue(depth: Int = 0) -> JSONValue {
            switch rng.int(0...(depth > 2 ? 5 : 7)) {
            case 0: return .null
            case 1: return .bool(rng.chance(0.5))
            case 2: return .int(Int64(bitPattern: rng.next()))
            case 3: return .double(rng.pick([1e308, -1e-308, 0.5, -0.0, 4294967296.5, 1e20])!)
            case 4:
                return .string(
                    rng.pick([
                        "", "x", "\u{0}", "∞", "198.51.100.2", "0.0.0.0/0", "2001:db8::/129", "80-79", "all",
                        String(repeating: "a", count: 5000),
                    ])!)
            case 5: return .int(rng.pick([0, -1, 65536, 16_777_216, 32767, Int64.max, Int64.min])!)
            case 6: return .array((0..<rng.int(0...3)).map { _ in anyValue(depth: depth + 1) })
            default:
                return .object(
                    (0..<rng.int(0...3)).map { i in
                        (key: ["id", "priority", "x\(i)", "sessions"][i % 4], value: anyValue(depth: depth + 1))
                    })
            }
        }

        /// Replaces one random node of `v` (keys kept) with a value of another kind.
        mutating func retype(_ v: JSONValue) -> JSONValue {
            switch v {
            case .object(let members) where !members.isEmpty && rng.chance(0.8):
                var m = members
                let i = rng.int(0...(m.count - 1))
                m[i].value = retype(m[i].value)
                return .object(m)
            case .array(let items) where !items.isEmpty && rng.chance(0.8):
                var a = items
                let i = rng.int(0...(a.count - 1))
                a[i] = retype(a[i])
                return .array(a)
            default:
                var r = anyValue()
                for _ in 0..<4 where r.kindName == v.kindName { r = anyValue() }
                return r
            }
        }

        /// Byte-level damage of a serialized body.
        mutating func mutateBytes(_ text: [UInt8]) -> [UInt8] {
            var b = text
            switch rng.int(0...5) {
            case 0: b = Array(b.prefix(rng.int(0...b.count)))
            case 1: for _ in 0..<rng.int(1...8) where !b.isEmpty { b[rng.int(0...(b.count - 1))] = UInt8(rng.int(0...255)) }
            case 2: if !b.isEmpty { b.remove(at: rng.int(0...(b.count - 1))) }
            case 3:
                let t = Array(
                    rng.pick([
                        "null", "-1", "99999999999999999999", "\"\"", "[]", "{}", "true", "1e400", "\"\\u0000\"",
                        "\"\\ud800\"", ",", ":", "\"id\": \"dup\"",
                    ])!.utf8)
                b.insert(contentsOf: t, at: rng.int(0...b.count))
            case 4: b += b.prefix(rng.int(0...b.count))
            default:
                let invalidUTF8: [UInt8] = [0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80]
                b.insert(contentsOf: invalidUTF8.prefix(rng.int(1...invalidUTF8.count)), at: rng.int(0...b.count))
            }
            return b
        }

        mutating func next() -> (String, [UInt8]) {
            let base = bases[rng.int(0...(bases.count - 1))]
            let roll = rng.int(0...99)
            switch roll {
            case 0..<35:
                return ("bytes", Self.request(base.method, base.path, mutateBytes(Array(base.body.serialized(pretty: false).utf8))))
            case 35..<60:
                return ("types", Self.request(base.method, base.path, Array(retype(base.body).serialized(pretty: false).utf8)))
            case 60..<68:
                // Huge values: long strings and long arrays in the right places.
                var body = base.body
                if case .object(var m) = body, !m.isEmpty {
                    let i = rng.int(0...(m.count - 1))
                    m[i].value =
                        rng.chance(0.5)
                        ? .string(String(repeating: "9", count: rng.int(1000...60000)))
                        : .array(Array(repeating: m[i].value, count: rng.int(100...2000)))
                    body = .object(m)
                }
                let bytes = Array(body.serialized(pretty: false).utf8)
                return ("huge", Self.request(base.method, base.path, Array(bytes.prefix(maxBody))))
            case 68..<74:
                // Deep nesting, around and far beyond the parser's bound.
                let depth = rng.pick([JSONParser.maxDepth - 1, JSONParser.maxDepth, JSONParser.maxDepth + 1, 1000, 50_000])!
                let open = rng.chance(0.5) ? "[" : "{\"a\":"
                let close = open == "[" ? "]" : "}"
                var s = String(repeating: open, count: depth) + "1" + String(repeating: close, count: depth)
                if rng.chance(0.3) { s = String(repeating: open, count: depth) }  // never closed
                let b = Array(s.utf8)
                return ("nesting", Self.request(base.method, base.path, Array(b.prefix(maxBody))))
            case 74..<82:
                // Whole random documents, valid or lightly broken, to apply.
                var options = RandomDocuments.Options.default
                options.maxSessions = 6
                let doc = RandomDocuments.document(using: &rng, options: options)
                var body = DocumentEncoding.encode(doc)
                if rng.chance(0.5) { body = retype(body) }
                return ("documents", Self.request("POST", APIPath.apply, Array(body.serialized(pretty: false).utf8)))
            case 82..<90:
                // Wrong methods, paths and encodings.
                let method = rng.pick(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"])!
                let path = rng.pick([
                    "/", "/v1", "/v2/status", "/v1/sessions/%zz", "/v1/sessions/" + String(repeating: "s", count: 3000),
                    "/v1/nothing", "/v1/sessions/s1/enable/x", "/v1/sessions/%00", "/v1/status?x=%", "/v1//status",
                    "/v1/sessions/nope/enable", "/v1/filters/nope", "/v1/apply",
                ])!
                // (HEAD answers carry no body, by HTTP's rules.)
                return (method == "HEAD" ? "routes-head" : "routes", Self.request(method, path, rng.chance(0.5) ? Array("{}".utf8) : nil))
            case 90..<96:
                // Header-level lies: a body longer or shorter than declared is framed by
                // Content-Length, so the extra bytes start the next request.
                let body = Array(base.body.serialized(pretty: false).utf8)
                let lie = rng.pick(["Content-Length: 0\r\n", "Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n"])!
                var head = "\(base.method) \(base.path) HTTP/1.1\r\nHost: fuzz\r\n\(lie)Connection: close\r\n\r\n"
                if lie.hasPrefix("Transfer") { head += "\(String(body.count, radix: 16))\r\n" }
                var bytes = Array(head.utf8) + body
                if lie.hasPrefix("Transfer") { bytes += Array("\r\n0\r\n\r\n".utf8) }
                return ("framing", bytes)
            default:
                // Over the body bound: 413, connection closed.
                let body = [UInt8](repeating: UInt8(ascii: " "), count: maxBody + 1 + rng.int(0...1000))
                return ("oversized", Self.request(base.method, base.path, body))
            }
        }
    }

    /// Blocks the calling (non-cooperative) thread until an async call to the agent returns.
    static func wait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            box.value = await body(); done.signal()
        }
        done.wait()
        return box.value!
    }

    final class ResultBox<T>: @unchecked Sendable { var value: T? }

    @Test func oneHundredThousandGeneratedRequestsNeverCrashAndRejectedOnesChangeNothing() async throws {
        let maxBody = 64 << 10
        let t = try await TestAgent(interfaces: ["tap-vm1": 11, "tap-vm2": 12], maxBodyBytes: maxBody, maxConnections: 32)
        defer { t.stopNow() }
        #expect(try await t.request("POST", APIPath.apply, Fixtures.valid).0 == 200)

        let session: JSONValue = try JSONParser.parse(
            Array(
                #"{"id": "s9", "priority": 9, "filter": "f1", "sources": ["vm2"], "target": "t1", "enabled": false}"#.utf8)
        ).get()
        let explain = try JSONParser.parse(
            Array(
                #"{"source": "vm1", "direction": "inbound", "packet": {"protocol": "tcp", "src": "192.0.2.1:1", "dst": "192.0.2.2:80"}}"#
                    .utf8)
        ).get()
        let filter = try JSONParser.parse(
            Array(
                #"{"id": "f2", "inbound": [{"priority": 5, "action": "reject", "ethertype": "ipv6", "protocol": "udp", "sourcePorts": "1-1024"}]}"#
                    .utf8)
        ).get()
        let bases: [(method: String, path: String, body: JSONValue)] = [
            ("POST", APIPath.apply, try JSONParser.parse(Array(Fixtures.valid.utf8)).get()),
            ("POST", APIPath.kind(.sessions), session),
            ("PUT", APIPath.object(.sessions, "s1"), session),
            ("POST", APIPath.kind(.filters), filter),
            ("PUT", APIPath.object(.filters, "f1"), filter),
            ("POST", APIPath.explain, explain),
        ]
        let total = 100_000
        let agent = t.agent
        let path = t.socketPath

        // Slow clients for the whole run: each trickles a valid request a byte at a time.
        let stop = ResultBox<Bool>(); stop.value = false
        let slow = (0..<6).map { i in
            Thread {
                while stop.value == false {
                    guard let fd = try? FuzzSocket.connect(path, timeout: 10) else { usleep(100_000); continue }
                    let req = Generator.request("GET", APIPath.status, nil)
                    for b in req where stop.value == false {
                        if Glibc.send(fd, [b], 1, Int32(MSG_NOSIGNAL)) <= 0 { break }
                        usleep(UInt32(50_000 + i * 20_000))
                    }
                    close(fd)
                }
            }
        }
        slow.forEach { $0.start() }
        defer { stop.value = true }

        struct Outcome: Sendable {
            var byCategory: [String: [Int: Int]] = [:]
            var failures: [String] = []
            var reconnects = 0
            var accepted = 0
        }
        let outcome = try await offThread { () -> Outcome in
            var out = Outcome()
            var gen = Generator(rng: SeededRandom(seed: 0x6675_7a7a_3130_306b), bases: bases, maxBody: maxBody)
            let conn = Connection(path: path)
            var before = Self.wait { (await agent.currentGeneration(), await agent.appliedDocument()) }
            for i in 0..<total {
                let (category, request) = gen.next()
                let status: Int, body: [UInt8]
                do { (status, body) = try conn.roundTrip(request) } catch {
                    out.failures.append("#\(i) \(category): \(error)")
                    if out.failures.count > 20 { break }
                    if conn.fd >= 0 { close(conn.fd); conn.fd = -1 }
                    continue
                }
                out.byCategory[category, default: [:]][status, default: 0] += 1
                let after = Self.wait { (await agent.currentGeneration(), await agent.appliedDocument()) }
                if status >= 400 {
                    if after.0 != before.0 || after.1 != before.1 {
                        out.failures.append("#\(i) \(category): rejected with \(status) but the state changed")
                    }
                    let e = try? JSONDecoder().decode(APIError.self, from: Data(body))
                    if category != "routes-head", e == nil || e!.message.isEmpty {
                        out.failures.append(
                            "#\(i) \(category): \(status) without a documented error body: \(String(decoding: body.prefix(200), as: UTF8.self)) for \(String(decoding: request.prefix(60), as: UTF8.self).debugDescription)"
                        )
                    }
                } else if after.0 != before.0 {
                    out.accepted += 1
                }
                if !(200..<500).contains(status) { out.failures.append("#\(i) \(category): status \(status)") }
                before = after
                if out.failures.count > 20 { break }
            }
            out.reconnects = conn.reconnects
            return out
        }
        stop.value = true

        let served = outcome.byCategory.values.reduce(0) { $0 + $1.values.reduce(0, +) }
        let summary = outcome.byCategory.keys.sorted().map { k in
            "\(k): " + outcome.byCategory[k]!.keys.sorted().map { "\($0)×\(outcome.byCategory[k]![$0]!)" }.joined(separator: " ")
        }
        print(
            "control fuzz: \(served) requests answered, \(outcome.accepted) changed the state, \(outcome.reconnects) connections; "
                + summary.joined(separator: "; "))
        #expect(outcome.failures.isEmpty, "\(outcome.failures.prefix(20).joined(separator: "\n"))")
        #expect(served == total)
        // Rejections dominate, but some generated documents and mutations are valid.
        #expect(outcome.accepted > 100)
        // The agent is still healthy, and what it holds validates.
        let st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.datapathLoaded)
        let doc: AnyJSON = try await t.call("GET", APIPath.document)
        if case .failure(let e) = DocumentParser.parse(json: doc.value) { Issue.record("applied document invalid: \(e)") }
        // Slow clients were cut off by the idle timeout, not allowed to pile up.
        #expect(t.server.activeConnections <= 32)
    }
}
