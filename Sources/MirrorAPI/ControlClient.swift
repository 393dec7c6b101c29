import Foundation
import MirrorCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A tiny blocking HTTP/1.1 client over the agent's unix socket, shared by agentctl
/// and the tests. Deliberately plain POSIX sockets rather than SwiftNIO: agentctl makes
/// one request per run, must start fast and stay small, and an event loop buys it
/// nothing. One request per connection (`Connection: close`), read to EOF.
public struct ControlClient: Sendable {
    public static let defaultSocket = "/run/mirror-agent/agent.sock"
    public static let socketEnvironment = "MIRROR_AGENT_SOCKET"

    public var socketPath: String
    /// Send and receive timeout, seconds.
    public var timeout: Int

    public init(socketPath: String, timeout: Int = 30) { self.socketPath = socketPath; self.timeout = timeout }

    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    /// One line each, for agentctl to print as is.
    public enum ClientError: Error, CustomStringConvertible {
        case unreachable(String, Int32)
        case permissionDenied(String)
        case io(String)
        case badResponse(String)
        /// The agent answered with an error (its status is the answer's).
        case api(APIError)

        public var description: String {
            switch self {
            case .unreachable(let path, let e):
                return
                    "cannot reach mirror-agent at \(path): \(String(cString: strerror(e))) (is the agent running? set --socket or \(ControlClient.socketEnvironment))"
            case .permissionDenied(let path):
                return "permission denied on \(path): the control socket is root-only (run agentctl as root)"
            case .io(let m): return m
            case .badResponse(let m): return "unexpected answer from mirror-agent: \(m)"
            case .api(let e):
                return (["mirror-agent: \(e.message) (HTTP \(e.status))"] + e.errors.map { "  \($0)" }).joined(separator: "\n")
            }
        }
    }

    /// Sends one request; any HTTP status is returned (the caller decides).
    public func send(method: String, path: String, body: [UInt8]? = nil) throws -> Response {
        let fd = try connected()
        defer { close(fd) }
        try writeAll(fd, Self.request(method: method, path: path, body: body))

        var received: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw ClientError.io("mirror-agent did not answer within \(timeout) s") }
                // An agent that answered early and closed (e.g. 413) may reset the rest.
                if errno == ECONNRESET && !received.isEmpty { break }
                throw ClientError.io("reading from \(socketPath): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            received += buf[0..<n]
        }
        return try Self.parse(received)
    }

    static func request(method: String, path: String, body: [UInt8]?) -> [UInt8] {
        var request = "\(method) \(path) HTTP/1.1\r\nHost: mirror-agent\r\nConnection: close\r\nAccept: application/json\r\n"
        if let body { request += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        request += "\r\n"
        var bytes = Array(request.utf8)
        if let body { bytes += body }
        return bytes
    }

    /// A socket connected to the agent, with `timeout` on sends and receives.
    func connected() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw ClientError.io("socket path \(socketPath) is too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            if e == EACCES || e == EPERM { throw ClientError.permissionDenied(socketPath) }
            throw ClientError.unreachable(socketPath, e)
        }
        return fd
    }

    func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            // MSG_NOSIGNAL: an agent that closed early must not kill agentctl with SIGPIPE.
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                // The agent may close early (e.g. 413 on an oversized body): read its answer.
                if errno == EPIPE || errno == ECONNRESET { return }
                throw ClientError.io("writing to \(socketPath): \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    /// The answer read to EOF (`Connection: close`). Its framing says where the body
    /// ends: an answer that stops before that (an agent that died or was cut off
    /// mid-answer) is an error, never a shorter body taken as the whole answer.
    public static func parse(_ data: [UInt8]) throws -> Response {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard let end = data.indices.first(where: { i in i + 4 <= data.count && Array(data[i..<i + 4]) == sep }) else {
            throw ClientError.badResponse(
                data.isEmpty
                    ? "the connection closed without an answer"
                    : "the connection closed in the middle of the answer's headers")
        }
        let head = String(decoding: data[..<end], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw ClientError.badResponse("bad status line '\(lines.first ?? "")'")
        }
        var contentLength: Int?
        var chunked = false
        for line in lines.dropFirst() {
            let kv = line.split(separator: ":", maxSplits: 1)
            guard kv.count == 2 else { continue }
            let name = kv[0].lowercased(), value = kv[1].trimmingCharacters(in: .whitespaces)
            if name == "content-length" {
                guard !value.isEmpty, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(value),
                    contentLength == nil || contentLength == n
                else {
                    throw ClientError.badResponse("bad Content-Length '\(value.prefix(40))'")
                }
                contentLength = n
            } else if name == "transfer-encoding" {
                // A large answer (GET /v1/stats at the quotas) is sent in pieces.
                guard value.lowercased() == "chunked" else {
                    throw ClientError.badResponse("unsupported Transfer-Encoding '\(value.prefix(40))'")
                }
                chunked = true
            }
        }
        let body = data[(end + 4)...]
        // RFC 9112 §6.3: chunked framing wins over a Content-Length; without either,
        // the body runs to the close (HTTP/1.0 streamed answers).
        if chunked { return Response(status: status, body: try dechunk(Array(body))) }
        if let n = contentLength {
            guard body.count >= n else {
                throw ClientError.badResponse("the answer ends early: \(body.count) of its \(n) bytes (Content-Length) arrived")
            }
            return Response(status: status, body: Array(body.prefix(n)))
        }
        return Response(status: status, body: Array(body))
    }

    /// The body of a `Transfer-Encoding: chunked` answer (RFC 9112 §7.1): size lines in
    /// hex (extensions ignored), each chunk followed by CRLF, a 0 chunk last (trailers ignored).
    static func dechunk(_ data: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count)
        var i = 0
        while true {
            var lineEnd = i
            while lineEnd + 1 < data.count && !(data[lineEnd] == 13 && data[lineEnd + 1] == 10) { lineEnd += 1 }
            guard lineEnd + 1 < data.count else { throw ClientError.badResponse("the chunked answer ends early, before its last chunk") }
            let line = String(decoding: data[i..<lineEnd], as: UTF8.self)
            let sizeText = line.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .trimmingCharacters(in: .whitespaces)
            guard let size = Int(sizeText, radix: 16), size >= 0 else {
                throw ClientError.badResponse("bad chunk size '\(line.prefix(20))'")
            }
            i = lineEnd + 2
            if size == 0 { return out }
            guard size <= data.count - i, data.count - i - size >= 2 else {
                throw ClientError.badResponse("the chunked answer ends early, in the middle of a chunk")
            }
            guard data[i + size] == 13, data[i + size + 1] == 10 else {
                throw ClientError.badResponse("a chunk of the answer is longer than its size line says")
            }
            out += data[i..<(i + size)]
            i += size + 2
        }
    }

    /// Sends a request and decodes a 2xx answer as `T` (through the core's parser for
    /// `JSONValueDecodable` answers, which keep member order); an error answer throws `.api`.
    public func call<T: Decodable>(_ method: String, _ path: String, body: [UInt8]? = nil, as: T.Type = T.self) throws -> T {
        let r = try send(method: method, path: path, body: body)
        guard (200..<300).contains(r.status) else { throw ClientError.api(APIError.decode(status: r.status, body: r.body)) }
        do {
            if let ordered = T.self as? JSONValueDecodable.Type {
                guard let value = try ordered.init(json: JSONParser.parse(r.body).get()) as? T else {
                    throw AnswerShapeError("not a \(T.self)")
                }
                return value
            }
            return try JSONDecoder().decode(T.self, from: Data(r.body))
        } catch {
            throw ClientError.badResponse("cannot decode \(T.self): \(error)")
        }
    }

    public func call<T: Decodable, B: Encodable>(_ method: String, _ path: String, json: B, as: T.Type = T.self) throws -> T {
        let body: Data
        do { body = try JSONEncoder().encode(json) } catch { throw ClientError.io("cannot encode the request: \(error)") }
        return try call(method, path, body: [UInt8](body), as: T.self)
    }
}
