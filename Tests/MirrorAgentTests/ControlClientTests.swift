import Foundation
import MirrorAPI
import MirrorTestSupport
import Testing

/// The control client against a fake agent on a unix socket that answers with
/// exactly the bytes a test gives it, then closes. An answer that ends before the
/// HTTP framing says it is whole (Content-Length, the last chunk, the end of the
/// headers) must be an error, never a short body handed on as the answer.
@Suite("Control client: truncated answers")
struct ControlClientTests {
    /// Accepts one connection on `path`, reads the request's head, writes `answer`
    /// and closes. Returns once the socket listens.
    static func fakeAgent(at path: String, answer: [UInt8]) throws -> Thread {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientTestError("socket: \(errno)") }
        guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0, listen(fd, 1) == 0 else {
            close(fd)
            throw ClientTestError("bind/listen on \(path): \(errno)")
        }
        let thread = Thread {
            defer { close(fd) }
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }
            defer { close(c) }
            var request: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while !request.ends(with: [13, 10, 13, 10]) {
                let n = read(c, &buf, buf.count)
                if n <= 0 { return }
                request += buf[0..<n]
            }
            var off = 0
            while off < answer.count {
                let n = answer[off...].withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                off += n
            }
        }
        thread.start()
        return thread
    }

    /// What the client makes of `answer` to GET /v1/status.
    static func send(_ answer: String) async throws -> Result<ControlClient.Response, Error> {
        let dir = try TempDir()
        let path = dir.path + "/fake.sock"
        _ = try fakeAgent(at: path, answer: Array(answer.utf8))
        return try await offThread {
            Result { try ControlClient(socketPath: path, timeout: 5).send(method: "GET", path: APIPath.status) }
        }
    }

    static let whole = #"{"generation":1,"changed":true,"vnis":{}}"#

    @Test(arguments: [
        // Shorter than its Content-Length (here even valid JSON, had it been taken as whole).
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n\(whole)",
        "HTTP/1.1 200 OK\r\nContent-Length: \(whole.utf8.count)\r\n\r\n\(whole.prefix(10))",
        "HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: 90\r\n\r\n{\"error\":{\"message\":\"the document",
        // A chunked body cut before its last (zero) chunk.
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\(String(whole.utf8.count, radix: 16))\r\n\(whole)\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"generation\"",
        // The connection closed in the middle of the headers.
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Le",
        "HTTP/1.1 200 OK\r\n",
    ])
    func aTruncatedAnswerIsAClearError(_ answer: String) async throws {
        switch try await Self.send(answer) {
        case .success(let r):
            Issue.record(
                "a truncated answer was taken as whole: HTTP \(r.status), \(r.body.count) bytes: \(String(decoding: r.body, as: UTF8.self))"
            )
        case .failure(let e):
            guard let e = e as? ControlClient.ClientError, case .badResponse = e else {
                Issue.record("expected ClientError.badResponse, got \(e)"); return
            }
            #expect("\(e)".contains("ends early") || "\(e)".contains("closed"), "\(e)")
        }
    }

    /// agentctl does not print what it got as if it were the agent's status: a body
    /// that happens to be whole JSON but is shorter than announced is still cut.
    @Test func agentctlSaysTheAnswerWasCutAndExitsOne() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: AgentctlTests.binary))
        let dir = try TempDir()
        let path = dir.path + "/fake.sock"
        let status =
            #"{"datapath":"memory","datapathGeneration":0,"datapathLoaded":true,"enabledSessions":0,"generation":0,"sessions":0,"sources":[],"version":"0.1.0"}"#
        _ = try Self.fakeAgent(
            at: path, answer: Array("HTTP/1.1 200 OK\r\nContent-Length: \(status.utf8.count + 40)\r\n\r\n\(status)".utf8))
        let r = try await AgentctlTests.agentctl(["status"], socket: path)
        #expect(r.status == 1 && r.out.isEmpty, "\(r.out)")
        #expect(r.err.contains("ends early") && r.err.split(separator: "\n").count == 1, "\(r.err)")
    }

    @Test func aWholeAnswerIsReadAsItsContentLengthSays() async throws {
        let r = try await Self.send("HTTP/1.1 200 OK\r\nContent-Length: \(Self.whole.utf8.count)\r\n\r\n\(Self.whole)").get()
        #expect(r.status == 200 && String(decoding: r.body, as: UTF8.self) == Self.whole)
        // Without a length the body runs to the close (HTTP/1.0 and streamed answers).
        let e = try await Self.send("HTTP/1.0 200 OK\r\n\r\n\(Self.whole)").get()
        #expect(String(decoding: e.body, as: UTF8.self) == Self.whole)
    }

    @Test func aContentLengthThatIsNotANumberIsRefused() async throws {
        for value in ["abc", "-1", "12, 13"] {
            let r = try await Self.send("HTTP/1.1 200 OK\r\nContent-Length: \(value)\r\n\r\n\(Self.whole)")
            #expect(throws: ControlClient.ClientError.self, "Content-Length: \(value)") { try r.get() }
        }
    }
}

struct ClientTestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

extension Array where Element == UInt8 {
    fileprivate func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
