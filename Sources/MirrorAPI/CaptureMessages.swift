import Foundation
import MirrorCore

// `agentctl capture` (SPEC §11) over the control socket:
//   POST   /v1/captures       body: CaptureRequest -> 200, a stream of capture frames
//                             (below) until the capture ends: `started` first, then
//                             `packet`s, then `summary`, then the answer ends.
//   DELETE /v1/captures/{id}  -> CaptureStopResponse; the capture's stream ends with
//                             its summary (agentctl sends it on Ctrl-C).
// A refused capture (unknown session or source, both or neither given, no kernel
// datapath, too many captures) is an ordinary APIError answer, before any frame.

extension APIPath {
    public static let captures = "/v1/captures"
    public static func capture(_ id: String) -> String { "/v1/captures/\(percentEncode(id))" }
}

/// What to capture: exactly one of `session` and `source`; `direction` limits either
/// to one direction (default: both). The capture ends after `count` packets, after
/// `duration` seconds, or when stopped, whichever comes first.
public struct CaptureRequest: Hashable, Sendable, Codable {
    public var session: String?
    public var source: String?
    public var direction: Direction?
    public var count: Int?
    public var duration: Double?
    /// Bytes of each packet to keep, 1...maxSnaplen (default maxSnaplen).
    public var snaplen: Int?

    /// bpf/mirror_consts.h MIRROR_CAPTURE_MAX_SNAPLEN (a test checks they agree).
    public static let maxSnaplen = 16384

    public init(
        session: String? = nil, source: String? = nil, direction: Direction? = nil, count: Int? = nil, duration: Double? = nil,
        snaplen: Int? = nil
    ) {
        self.session = session; self.source = source; self.direction = direction; self.count = count
        self.duration = duration; self.snaplen = snaplen
    }

    /// What is wrong with the request, each with its field; empty when it is valid.
    /// Whether the ids exist is the agent's to say.
    public var problems: [FieldError] {
        var out: [FieldError] = []
        switch (session, source) {
        case (nil, nil): out.append(FieldError(path: "session", message: "give a session or a source"))
        case (.some, .some): out.append(FieldError(path: "source", message: "give a session or a source, not both"))
        default: break
        }
        if let count, count < 1 { out.append(FieldError(path: "count", message: "must be at least 1")) }
        if let duration, !(duration > 0 && duration <= 31_536_000) {
            out.append(FieldError(path: "duration", message: "must be more than 0 seconds (at most a year)"))
        }
        if let snaplen, snaplen < 1 || snaplen > Self.maxSnaplen {
            out.append(FieldError(path: "snaplen", message: "must be 1-\(Self.maxSnaplen)"))
        }
        return out
    }
}

/// The first frame: what the capture takes.
public struct CaptureStarted: Hashable, Sendable, Codable {
    /// The capture's id, for DELETE /v1/captures/{id}.
    public var id: String
    public var session: String?
    public var source: String?
    public var directions: [Direction]
    public var snaplen: Int
    /// The sources and directions it covers now (a pcapng interface each).
    public var interfaces: [CaptureInterface]

    public init(
        id: String, session: String?, source: String?, directions: [Direction], snaplen: Int, interfaces: [CaptureInterface]
    ) {
        self.id = id; self.session = session; self.source = source; self.directions = directions; self.snaplen = snaplen
        self.interfaces = interfaces
    }
}

/// A source and direction (its host-side interface for the description).
public struct CaptureInterface: Hashable, Sendable, Codable {
    public var source: String
    public var interface: String
    public var direction: Direction
    public init(source: String, interface: String, direction: Direction) {
        self.source = source; self.interface = interface; self.direction = direction
    }
}

extension CapturePacket {
    public var captureInterface: CaptureInterface { CaptureInterface(source: source, interface: interface, direction: direction) }
}

/// The last frame, and the JSON summary `agentctl capture -o json` prints.
public struct CaptureSummary: Hashable, Sendable, Codable {
    public var id: String
    /// Packets handed to the client.
    public var packets: Int
    /// Packets the capture wanted and lost: `lostInKernel` + `lostInAgent`.
    public var lost: Int
    /// The datapath's ring was full (its reader fell behind).
    public var lostInKernel: Int
    /// The agent's queue for this capture was full (the client read too slowly).
    public var lostInAgent: Int
    /// `count`, `duration`, `stopped` (DELETE, Ctrl-C), `client_gone` or `agent_stopping`.
    public var ended: String

    public init(id: String, packets: Int, lostInKernel: Int, lostInAgent: Int, ended: String) {
        self.id = id; self.packets = packets; self.lost = lostInKernel + lostInAgent
        self.lostInKernel = lostInKernel; self.lostInAgent = lostInAgent; self.ended = ended
    }
}

public struct CaptureStopResponse: Hashable, Sendable, Codable {
    public var id: String
    public init(id: String) { self.id = id }
}

/// The frames of a capture stream: a 4-byte big-endian payload length, a kind byte,
/// the payload. `started` and `summary` carry JSON; a packet is binary: timestamp
/// (8 bytes), length (4), direction (1: 0 inbound, 1 outbound), rule priority (2),
/// then source, interface, session and filter as 2-byte length + UTF-8, then the
/// packet bytes to the end of the frame. All integers big-endian.
public enum CaptureFrame: Hashable, Sendable {
    case started(CaptureStarted)
    case packet(CapturePacket)
    case summary(CaptureSummary)

    enum Kind: UInt8 { case started = 1, packet = 2, summary = 3 }

    static func json<T: Encodable>(_ value: T) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        // Strings, numbers and arrays of them: they always encode.
        return (try? e.encode(value)).map { [UInt8]($0) } ?? Array("{}".utf8)
    }

    public func encoded() -> [UInt8] {
        var payload: [UInt8] = []
        let kind: Kind
        switch self {
        case .started(let s):
            kind = .started
            payload = Self.json(s)
        case .summary(let s):
            kind = .summary
            payload = Self.json(s)
        case .packet(let p):
            kind = .packet
            payload.reserveCapacity(40 + p.data.count)
            payload.be(p.timestampNs, 8)
            payload.be(UInt64(UInt32(clamping: p.length)), 4)
            payload.append(p.direction == .inbound ? 0 : 1)
            payload.be(UInt64(UInt16(clamping: p.rulePriority)), 2)
            for s in [p.source, p.interface, p.session, p.filter] {
                let bytes = Array(s.utf8.prefix(Int(UInt16.max)))
                payload.be(UInt64(bytes.count), 2)
                payload += bytes
            }
            payload += p.data
        }
        var out: [UInt8] = []
        out.reserveCapacity(5 + payload.count)
        out.be(UInt64(payload.count), 4)
        out.append(kind.rawValue)
        out += payload
        return out
    }
}

/// Turns a byte stream into frames, whatever pieces the bytes come in.
public struct CaptureFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    /// A frame larger than this is refused (a packet frame is at most ~16.5 KiB).
    public static let maxFrame = 1 << 20

    public struct Malformed: Error, CustomStringConvertible {
        public var description: String
    }

    public init() {}

    /// Adds bytes; returns the frames they complete.
    public mutating func feed(_ bytes: [UInt8]) throws -> [CaptureFrame] {
        buffer += bytes
        var out: [CaptureFrame] = []
        while buffer.count - start >= 5 {
            let length = Int(buffer.readBE(at: start, 4))
            guard length <= Self.maxFrame else { throw Malformed(description: "a capture frame of \(length) bytes") }
            guard buffer.count - start >= 5 + length else { break }
            let kind = buffer[start + 4]
            let payload = Array(buffer[(start + 5)..<(start + 5 + length)])
            start += 5 + length
            out.append(try Self.frame(kind, payload))
        }
        if start > 0 && start * 2 >= buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return out
    }

    /// Bytes received that do not make a whole frame yet.
    public var pending: Int { buffer.count - start }

    static func frame(_ kind: UInt8, _ p: [UInt8]) throws -> CaptureFrame {
        switch CaptureFrame.Kind(rawValue: kind) {
        case .started?:
            return .started(try decodeJSON(CaptureStarted.self, p))
        case .summary?:
            return .summary(try decodeJSON(CaptureSummary.self, p))
        case .packet?:
            guard p.count >= 15 else { throw Malformed(description: "a packet frame of \(p.count) bytes") }
            var i = 15
            var strings: [String] = []
            for _ in 0..<4 {
                guard p.count - i >= 2 else { throw Malformed(description: "a packet frame cut in its names") }
                let n = Int(p.readBE(at: i, 2))
                i += 2
                guard p.count - i >= n else { throw Malformed(description: "a packet frame cut in its names") }
                strings.append(String(decoding: p[i..<(i + n)], as: UTF8.self))
                i += n
            }
            return .packet(
                CapturePacket(
                    timestampNs: p.readBE(at: 0, 8), source: strings[0], interface: strings[1],
                    direction: p[12] == 0 ? .inbound : .outbound, session: strings[2], filter: strings[3],
                    rulePriority: Int(p.readBE(at: 13, 2)), length: Int(p.readBE(at: 8, 4)), data: Array(p[i...])))
        case nil:
            throw Malformed(description: "a capture frame of unknown kind \(kind)")
        }
    }

    static func decodeJSON<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(bytes)) } catch {
            throw Malformed(description: "a \(type) frame that does not decode: \(error)")
        }
    }
}

extension [UInt8] {
    fileprivate mutating func be(_ v: UInt64, _ bytes: Int) {
        for i in (0..<bytes).reversed() { append(UInt8((v >> (8 * UInt64(i))) & 0xff)) }
    }
    fileprivate func readBE(at offset: Int, _ bytes: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<bytes { v = v << 8 | UInt64(self[offset + i]) }
        return v
    }
}
