import CLibbpf
import CMirrorABI

/// What stage 2 needs to push outer headers toward one collector itself, or that
/// nothing can reach it (bpf/mirror_abi.h, "Encapsulation templates").
public struct EncapTemplate: Hashable, Sendable {
    public enum State: Hashable, Sendable {
        /// Next-hop MAC known: stage 2 redirects the copy.
        case resolved
        /// Next hop not resolved yet: stage 2 drops the copy and counts it
        /// (neighbor_unresolved) while the kernel resolves the agent's managed entry.
        case unresolved
        /// No route: stage 2 drops the copy and counts it (never as sent).
        case noRoute
    }
    /// Addresses in network order (4 or 16 bytes, the collector's family), MACs 6 bytes.
    public var collector: [UInt8], source: [UInt8], nextHop: [UInt8]
    public var sourceMAC: [UInt8], nextHopMAC: [UInt8]
    public var ifindex: UInt32
    public var state: State
    public init(
        collector: [UInt8], source: [UInt8] = [], nextHop: [UInt8] = [], sourceMAC: [UInt8] = [], nextHopMAC: [UInt8] = [],
        ifindex: UInt32 = 0, state: State
    ) {
        self.collector = collector; self.source = source; self.nextHop = nextHop
        self.sourceMAC = sourceMAC; self.nextHopMAC = nextHopMAC
        self.ifindex = ifindex; self.state = state
    }

    /// The map key: the collector address as mirror_target.backends_be holds it.
    var key: mirror_encap_template_key {
        var k = mirror_encap_template_key()
        withUnsafeMutableBytes(of: &k.addr_be) { $0.copyBytes(from: collector.prefix(16)) }
        return k
    }

    var abi: mirror_encap_template {
        var v = mirror_encap_template()
        v.ifindex = ifindex
        v.family = collector.count == 16 ? 6 : 4
        switch state {
        case .resolved: v.state = UInt8(MIRROR_PATH_RESOLVED.rawValue)
        case .unresolved: v.state = UInt8(MIRROR_PATH_UNRESOLVED.rawValue)
        case .noRoute: v.state = UInt8(MIRROR_PATH_NONE.rawValue)
        }
        withUnsafeMutableBytes(of: &v.src_be) { $0.copyBytes(from: source.prefix(16)) }
        withUnsafeMutableBytes(of: &v.nexthop_be) { $0.copyBytes(from: nextHop.prefix(16)) }
        withUnsafeMutableBytes(of: &v.dst_mac) { $0.copyBytes(from: nextHopMAC.prefix(6)) }
        withUnsafeMutableBytes(of: &v.src_mac) { $0.copyBytes(from: sourceMAC.prefix(6)) }
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
        /// No route toward the collector (nothing left); the next hop not resolved
        /// (nothing left either: never queued where the kernel could drop it unseen).
        public var droppedNoRoute: UInt64 = 0, droppedNeighborUnresolved: UInt64 = 0
        /// SPEC §10: dropped because no collector of the target was healthy.
        public var droppedTargetUnhealthy: UInt64 = 0
        /// Vxlan copies handed to the VXLAN device (collectors whose route the template
        /// cannot describe): not in `sent`, the device may still drop them.
        public var sentDevice: UInt64 = 0
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
            droppedNoRoute &+= v.dropped_no_route; droppedNeighborUnresolved &+= v.dropped_neighbor_unresolved
            droppedTargetUnhealthy &+= v.dropped_target_unhealthy; sentDevice &+= v.sent_device
        }
    }

    /// The CPUs summed for `sessionSlot` (or MIRROR_ENCAP_STATS_NOT_COPY).
    public func encapCounters(sessionSlot: UInt32) throws(DatapathError) -> EncapCounters {
        var c = EncapCounters()
        for v in try perCPU(.encapStats, key: sessionSlot, as: mirror_encap_stats.self) { c.add(v) }
        return c
    }

    /// Replaces the encapsulation templates (bpf/mirror_abi.h) with `templates`, keyed
    /// by collector address: each written in one update, then the addresses no
    /// longer present deleted.
    public func setEncapTemplates(_ templates: [EncapTemplate]) throws(DatapathError) {
        let fd = try mapFD(.encapTemplates)
        try replaceSlot(
            fd, templates.lazy.map { ($0.key, $0.abi) },
            what: { k in "write the encapsulation template for collector \(withUnsafeBytes(of: k.addr_be) { Array($0) })" },
            inSlot: { _ in true },
            id: { k in withUnsafeBytes(of: k.addr_be) { $0.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 } }
            })
    }

    /// The counters of no session (key MIRROR_ENCAP_STATS_NOT_COPY): frames dropped on
    /// the mirror device (`droppedNotCopy`) and on the segmenter
    /// (`droppedSegmenterNotCopy`) because they were not copies.
    public func encapNotCopyCounters() throws(DatapathError) -> EncapCounters {
        try encapCounters(sessionSlot: UInt32(MIRROR_ENCAP_STATS_NOT_COPY))
    }
}
