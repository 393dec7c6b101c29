import CLibbpf
import CMirrorABI

/// What stage 2 needs to push outer headers toward one IPv4 collector itself
/// (bpf/mirror_abi.h, "Encapsulation templates").
public struct EncapTemplate: Hashable, Sendable {
    /// Addresses in network order (4 bytes), MACs 6 bytes.
    public var collector: [UInt8], source: [UInt8]
    public var sourceMAC: [UInt8], nextHopMAC: [UInt8]
    public var ifindex: UInt32
    public var port: UInt16
    public init(collector: [UInt8], source: [UInt8], sourceMAC: [UInt8], nextHopMAC: [UInt8], ifindex: UInt32, port: UInt16) {
        self.collector = collector; self.source = source; self.sourceMAC = sourceMAC; self.nextHopMAC = nextHopMAC
        self.ifindex = ifindex; self.port = port
    }

    /// The map key: the collector address as the packet carries it.
    var collectorKey: UInt32 { collector.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } }

    var abi: mirror_encap_template {
        var v = mirror_encap_template()
        v.ifindex = ifindex
        v.src_ipv4_be = source.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        withUnsafeMutableBytes(of: &v.dst_mac) { $0.copyBytes(from: nextHopMAC.prefix(6)) }
        withUnsafeMutableBytes(of: &v.src_mac) { $0.copyBytes(from: sourceMAC.prefix(6)) }
        v.dst_port = port
        return v
    }
}

// Counters of stage 2 (bpf/encap.bpf.c): the `encap_stats` per-CPU array, key =
// session slot; key MIRROR_ENCAP_STATS_NOT_COPY counts frames on the mirror device
// that were not copies. Read by the agent's metrics.
extension BPFDatapath {
    public struct EncapCounters: Hashable, Sendable {
        public var sent: UInt64 = 0, sentBytes: UInt64 = 0
        public var truncatedPacketLength: UInt64 = 0, truncatedMTU: UInt64 = 0, truncatedGSO: UInt64 = 0
        public var droppedNoSession: UInt64 = 0, droppedNoTarget: UInt64 = 0
        public var droppedTruncate: UInt64 = 0, droppedTunnelKey: UInt64 = 0, droppedNotCopy: UInt64 = 0
        /// GSO copies handed to the segmenter (Segmenter.swift); frames on it that were not copies.
        public var segmented: UInt64 = 0, droppedSegmenterNotCopy: UInt64 = 0
        /// Of `sent`: encapsulated by stage 2 from a template (the direct path); its failures.
        public var sentDirect: UInt64 = 0, droppedEncapDirect: UInt64 = 0
        /// SPEC §10: dropped because no collector of the target was healthy.
        public var droppedTargetUnhealthy: UInt64 = 0
        public init() {}

        /// Adds one CPU's values (the only place that maps the ABI fields).
        mutating func add(_ v: mirror_encap_stats) {
            sent &+= v.sent; sentBytes &+= v.sent_bytes
            truncatedPacketLength &+= v.truncated_packet_length; truncatedMTU &+= v.truncated_mtu
            truncatedGSO &+= v.truncated_gso
            droppedNoSession &+= v.dropped_no_session; droppedNoTarget &+= v.dropped_no_target
            droppedTruncate &+= v.dropped_truncate; droppedTunnelKey &+= v.dropped_tunnel_key
            droppedNotCopy &+= v.dropped_not_copy
            segmented &+= v.segmented; droppedSegmenterNotCopy &+= v.dropped_segmenter_not_copy
            sentDirect &+= v.sent_direct; droppedEncapDirect &+= v.dropped_encap_direct
            droppedTargetUnhealthy &+= v.dropped_target_unhealthy
        }
    }

    /// The CPUs summed for `sessionSlot` (or MIRROR_ENCAP_STATS_NOT_COPY).
    public func encapCounters(sessionSlot: UInt32) throws(DatapathError) -> EncapCounters {
        var c = EncapCounters()
        for v in try perCPU(.encapStats, key: sessionSlot, as: mirror_encap_stats.self) { c.add(v) }
        return c
    }

    /// Replaces the encapsulation templates (bpf/mirror_abi.h) with `templates`, keyed
    /// by IPv4 collector address in network order: each written in one update, then
    /// the addresses no longer present deleted.
    public func setEncapTemplates(_ templates: [EncapTemplate]) throws(DatapathError) {
        let fd = try mapFD(.encapTemplates)
        try replaceSlot(
            fd, templates.lazy.map { ($0.collectorKey, $0.abi) },
            what: { "write the encapsulation template for collector key \($0)" },
            inSlot: { _ in true }, id: { UInt64($0) })
    }

    /// The counters of no session (key MIRROR_ENCAP_STATS_NOT_COPY): frames dropped on
    /// the mirror device (`droppedNotCopy`) and on the segmenter
    /// (`droppedSegmenterNotCopy`) because they were not copies.
    public func encapNotCopyCounters() throws(DatapathError) -> EncapCounters {
        try encapCounters(sessionSlot: UInt32(MIRROR_ENCAP_STATS_NOT_COPY))
    }
}
