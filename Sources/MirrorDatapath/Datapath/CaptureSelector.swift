import CMirrorABI
import MirrorCore

/// What one capture takes (SPEC §11, `agentctl capture`): what a session mirrors, or
/// what a source mirrors, in the given directions, up to `snaplen` bytes of each packet.
public struct CaptureSelector: Hashable, Sendable {
    /// Exactly one of `session` and `source` (the agent checks).
    public var session: String?
    public var source: String?
    public var directions: Set<Direction>
    public var snaplen: Int

    /// Captures at once (bpf/mirror_consts.h MIRROR_MAX_CAPTURES).
    public static let maxCaptures = Int(MIRROR_MAX_CAPTURES)
    /// The most bytes of a packet a capture takes (MIRROR_CAPTURE_MAX_SNAPLEN).
    public static let maxSnaplen = Int(MIRROR_CAPTURE_MAX_SNAPLEN)

    public init(session: String? = nil, source: String? = nil, directions: Set<Direction> = Set(Direction.allCases), snaplen: Int) {
        self.session = session; self.source = source; self.directions = directions; self.snaplen = snaplen
    }
}

/// A packet the datapath mirrored while captures wanted it, and which captures.
public struct CapturedPacket: Sendable {
    /// The capture numbers (bits) that want it.
    public var captures: UInt32
    /// Its timestamp is the wall clock, converted from the kernel's monotonic clock
    /// when the packet was read.
    public var packet: CapturePacket

    public init(captures: UInt32, packet: CapturePacket) {
        self.captures = captures; self.packet = packet
    }
}

/// One capture number's counters in the kernel, since the datapath made its maps.
public struct CaptureCounters: Hashable, Sendable {
    /// Handed to the ring.
    public var records: UInt64 = 0
    /// Wanted but the ring was full: its reader was too slow.
    public var lost: UInt64 = 0
    public init(records: UInt64 = 0, lost: UInt64 = 0) { self.records = records; self.lost = lost }
}

/// Why a datapath cannot capture.
public struct CaptureUnavailable: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension Datapath {
    public func setCaptures(_ captures: [Int: CaptureSelector], sink: @escaping @Sendable ([CapturedPacket]) -> Void) throws {
        throw CaptureUnavailable(
            "capture needs the kernel datapath; this agent runs the \(kind) datapath, which mirrors nothing")
    }

    public func captureCounters() throws -> [CaptureCounters] {
        throw CaptureUnavailable("capture needs the kernel datapath; this agent runs the \(kind) datapath")
    }
}
