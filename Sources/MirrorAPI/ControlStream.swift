import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An answer read as it arrives instead of to its end: `agentctl capture` (POST
/// /v1/captures) streams for as long as the capture runs. The body comes out as it
/// is received, with the chunked framing taken off; `read` waits at most its timeout,
/// so the caller can look at its own signals in between. An error answer (any status
/// but 2xx) is read whole and thrown as `ControlClient.ClientError.api`.
public final class ControlStream {
    private var fd: Int32
    public let status: Int
    private var raw: [UInt8] = []
    private let chunked: Bool
    /// Body bytes still to come when the answer has a Content-Length.
    private var remaining: Int?
    private var state = ChunkState.size
    public private(set) var ended = false

    enum ChunkState: Equatable {
        case size
        case data(Int)
        case dataEnd
        case done
    }

    public init(_ client: ControlClient, method: String, path: String, body: [UInt8]?) throws {
        fd = try client.connected()
        do {
            try client.writeAll(fd, ControlClient.request(method: method, path: path, body: body))
            // The head within the client's timeout (the agent answers at once).
            var received: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            var headEnd: Int?
            while headEnd == nil {
                let n = Glibc.read(fd, &buf, buf.count)
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK {
                        throw ControlClient.ClientError.io("mirror-agent did not answer within \(client.timeout) s")
                    }
                    throw ControlClient.ClientError.io("reading from \(client.socketPath): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                received += buf[0..<n]
                headEnd = Self.headEnd(received)
            }
            guard let end = headEnd else { throw ControlClient.ClientError.badResponse("the connection closed without an answer") }
            let head = String(decoding: received[..<end], as: UTF8.self)
            let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
            let parts = lines.first?.split(separator: " ") ?? []
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
                throw ControlClient.ClientError.badResponse("bad status line '\(lines.first ?? "")'")
            }
            self.status = status
            var chunked = false
            var length: Int?
            for line in lines.dropFirst() {
                let kv = line.split(separator: ":", maxSplits: 1)
                guard kv.count == 2 else { continue }
                let name = kv[0].lowercased(), value = kv[1].trimmingCharacters(in: .whitespaces)
                if name == "transfer-encoding" && value.lowercased() == "chunked" { chunked = true }
                if name == "content-length" { length = Int(value) }
            }
            self.chunked = chunked
            remaining = chunked ? nil : length
            guard (200..<300).contains(status) else {
                // An error answer: read whole and thrown.
                while true {
                    let n = Glibc.read(fd, &buf, buf.count)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    received += buf[0..<n]
                }
                let whole = try ControlClient.parse(received)
                throw ControlClient.ClientError.api(APIError.decode(status: whole.status, body: whole.body))
            }
            raw = Array(received[(end + 4)...])
        } catch {
            Glibc.close(fd)
            fd = -1
            throw error
        }
    }

    deinit { close() }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    static func headEnd(_ data: [UInt8]) -> Int? {
        guard data.count >= 4 else { return nil }
        for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// Body bytes received since the last call: waits up to `timeoutMs` for some, and
    /// returns [] when none came; nil once the answer has ended.
    public func read(timeoutMs: Int32) throws -> [UInt8]? {
        if ended { return nil }
        var out = try take()
        if !out.isEmpty || ended { return out.isEmpty && ended ? nil : out }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = Glibc.poll(&p, 1, timeoutMs)
        if ready <= 0 { return [] }  // timeout, or a signal: the caller looks and comes back
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = Glibc.read(fd, &buf, buf.count)
        if n < 0 {
            if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { return [] }
            throw ControlClient.ClientError.io("reading the answer: \(String(cString: strerror(errno)))")
        }
        if n == 0 {
            // The close: the end of an answer without framing; anything else ended early.
            if chunked || (remaining ?? 0) > 0 {
                throw ControlClient.ClientError.badResponse("the agent closed the connection in the middle of the answer")
            }
            ended = true
            return nil
        }
        raw += buf[0..<n]
        out = try take()
        return out
    }

    /// The body bytes in `raw`, framing removed.
    private func take() throws -> [UInt8] {
        guard chunked else {
            var out = raw
            raw = []
            if let r = remaining {
                if out.count > r { out = Array(out.prefix(r)) }
                remaining = r - out.count
                if remaining == 0 { ended = true }
            }
            return out
        }
        var out: [UInt8] = []
        var i = 0
        loop: while true {
            switch state {
            case .done:
                ended = true
                break loop
            case .size:
                var j = i
                while j + 1 < raw.count && !(raw[j] == 13 && raw[j + 1] == 10) { j += 1 }
                guard j + 1 < raw.count else {
                    if raw.count - i > 1024 { throw ControlClient.ClientError.badResponse("a chunk size line that does not end") }
                    break loop
                }
                let line = String(decoding: raw[i..<j], as: UTF8.self)
                let text = line.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0]
                    .trimmingCharacters(in: .whitespaces)
                guard let size = Int(text, radix: 16), size >= 0 else {
                    throw ControlClient.ClientError.badResponse("bad chunk size '\(line.prefix(20))'")
                }
                i = j + 2
                // After the last chunk only trailers (ignored) and the close follow.
                state = size == 0 ? .done : .data(size)
            case .data(let n):
                let take = min(n, raw.count - i)
                guard take > 0 else { break loop }
                out += raw[i..<(i + take)]
                i += take
                state = n - take == 0 ? .dataEnd : .data(n - take)
            case .dataEnd:
                guard raw.count - i >= 2 else { break loop }
                guard raw[i] == 13, raw[i + 1] == 10 else {
                    throw ControlClient.ClientError.badResponse("a chunk of the answer is longer than its size line says")
                }
                i += 2
                state = .size
            }
        }
        raw.removeFirst(i)
        return out
    }
}
