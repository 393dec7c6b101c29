import CLibbpf
import CMirrorABI

// Counters of stage 2 (bpf/encap.bpf.c): the `encap_stats` per-CPU array, key =
// session slot; key MIRROR_ENCAP_STATS_NOT_COPY counts frames on the mirror device
// that were not copies. Read by the agent's metrics (issue 5).
extension Datapath {
    public struct EncapCounters: Hashable, Sendable {
        public var sent: UInt64 = 0, sentBytes: UInt64 = 0
        public var truncatedPacketLength: UInt64 = 0, truncatedMTU: UInt64 = 0, truncatedGSO: UInt64 = 0
        public var droppedNoSession: UInt64 = 0, droppedNoTarget: UInt64 = 0
        public var droppedTruncate: UInt64 = 0, droppedTunnelKey: UInt64 = 0, droppedNotCopy: UInt64 = 0
        /// GSO copies handed to the segmenter (Segmenter.swift); frames on it that were not copies.
        public var segmented: UInt64 = 0, droppedSegmenterNotCopy: UInt64 = 0
        public init() {}
    }

    /// The CPUs summed for `sessionSlot` (or MIRROR_ENCAP_STATS_NOT_COPY).
    public func encapCounters(sessionSlot: UInt32) throws(DatapathError) -> EncapCounters {
        var c = EncapCounters()
        for v in try perCPU("encap_stats", key: sessionSlot, as: mirror_encap_stats.self) {
            c.sent &+= v.sent; c.sentBytes &+= v.sent_bytes
            c.truncatedPacketLength &+= v.truncated_packet_length; c.truncatedMTU &+= v.truncated_mtu
            c.truncatedGSO &+= v.truncated_gso
            c.droppedNoSession &+= v.dropped_no_session; c.droppedNoTarget &+= v.dropped_no_target
            c.droppedTruncate &+= v.dropped_truncate; c.droppedTunnelKey &+= v.dropped_tunnel_key
            c.droppedNotCopy &+= v.dropped_not_copy
            c.segmented &+= v.segmented; c.droppedSegmenterNotCopy &+= v.dropped_segmenter_not_copy
        }
        return c
    }

    /// Frames dropped on the mirror device because they were not copies.
    public func encapNotCopyDrops() throws(DatapathError) -> UInt64 {
        try encapCounters(sessionSlot: UInt32(MIRROR_ENCAP_STATS_NOT_COPY)).droppedNotCopy
    }
}
