import CLibbpf
import CMirrorABI
import Glibc
import MirrorCompiler
import MirrorCore

/// Security groups and network ACLs (SPEC §5): the `mirror_security`
/// entries of an image, the connection table of the stateful groups
/// (`mirror_flows`, see bpf/security.h for why it is ours and not conntrack) and
/// the suppression counters.
extension BPFDatapath {
    /// Writes the image's security entries into generation `slot`, then deletes that
    /// slot's stale entries. Called by `apply` before the flip, like the policies.
    func writeSecurity(_ image: MapImage, slot: UInt8) throws(DatapathError) {
        let sourceOfIfindex = { (k: mirror_security_key) in image.security.first { $0.ifindex == k.ifindex }?.sourceID ?? "?" }
        try replaceSlot(
            try mapFD(.security), image.security.lazy.map { entry in (entry.key(slot: slot), entry.value) },
            what: { "write security groups/ACL of source \(sourceOfIfindex($0)) (ifindex \($0.ifindex), direction \($0.direction))" },
            inSlot: { $0.slot == slot }, id: Self.securityKeyID)
    }

    static func securityKeyID(_ k: mirror_security_key) -> UInt64 {
        UInt64(k.ifindex) << 16 | UInt64(k.slot) << 8 | UInt64(k.direction)
    }

    // MARK: counters

    public struct SecurityCounters: Hashable, Sendable {
        public var suppressedBySecurityGroup: UInt64 = 0
        public var suppressedByAcl: UInt64 = 0
        /// Packets the groups allowed as part of a known connection.
        public var established: UInt64 = 0
        public init() {}
    }

    public func securityCounters(sourceSlot: UInt16, direction: Direction) throws(DatapathError) -> SecurityCounters {
        var c = SecurityCounters()
        let key = mirror_source_stats_key(UInt32(sourceSlot), UInt32(direction.abi))
        for v in try perCPU(.securityStats, key: key, as: mirror_security_stats.self) {
            c.suppressedBySecurityGroup &+= v.suppressed_by_security_group
            c.suppressedByAcl &+= v.suppressed_by_acl
            c.established &+= v.established
        }
        return c
    }

    func clearSecurityCounters(sourceSlots: [UInt16]) throws(DatapathError) {
        let cpus = max(1, Int(libbpf_num_possible_cpus()))
        let fd = try mapFD(.securityStats)
        for s in sourceSlots {
            for d in Direction.allCases {
                var k = mirror_source_stats_key(UInt32(s), UInt32(d.abi))
                var buf = [UInt8](repeating: 0, count: (MemoryLayout<mirror_security_stats>.size + 7) / 8 * 8 * cpus)
                let rc = buf.withUnsafeMutableBytes { bpf_map_update_elem(fd, &k, $0.baseAddress, UInt64(BPF_ANY)) }
                try DatapathError.check(rc, "clear security_stats[\(k)]")
            }
        }
    }

    // MARK: connections

    /// A connection of the stateful security groups, seen from the ENI.
    public struct Flow: Hashable, Sendable {
        public var ifindex: UInt32
        public var local: IPAddress
        public var remote: IPAddress
        public var `protocol`: UInt8
        public var localPort: UInt16
        public var remotePort: UInt16
        public init(
            ifindex: UInt32, local: IPAddress, remote: IPAddress, protocol: UInt8,
            localPort: UInt16 = 0, remotePort: UInt16 = 0
        ) {
            self.ifindex = ifindex; self.local = local; self.remote = remote; self.protocol = `protocol`
            self.localPort = localPort; self.remotePort = remotePort
        }

        var key: mirror_flow_key {
            var k = mirror_flow_key()
            func words(_ a: IPAddress) -> (UInt32, UInt32, UInt32, UInt32) {
                var b = a.bytes
                if b.count == 4 { b += [UInt8](repeating: 0, count: 12) }
                func w(_ i: Int) -> UInt32 {
                    (UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])).bigEndian
                }
                return (w(0), w(4), w(8), w(12))
            }
            k.local_be = words(local)
            k.remote_be = words(remote)
            k.local_port = localPort
            k.remote_port = remotePort
            k.ifindex = ifindex
            k.family = local.ethertype == .ipv6 ? 6 : 4
            k.protocol = `protocol`
            return k
        }
    }

    /// Marks `flow` established now, as the attached programs do when the groups
    /// allow a connection's first packet (tests of the established path); with
    /// `idleFor`, as if its last packet was that many nanoseconds ago.
    public func recordFlow(_ flow: Flow, idleFor: UInt64 = 0) throws(DatapathError) {
        var k = flow.key
        var v = mirror_flow()
        v.last_seen_ns = Self.monotonicNanoseconds() &- idleFor
        try DatapathError.check(bpf_map_update_elem(try mapFD(.flows), &k, &v, UInt64(BPF_ANY)), "record flow")
    }

    /// The clock of bpf_ktime_get_ns.
    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The number of remembered connections, idle ones included.
    public func flowCount() throws(DatapathError) -> Int {
        try keys(try mapFD(.flows), as: mirror_flow_key.self).count
    }

    /// The connections the groups hold as established now: entries of mirror_flows
    /// whose last packet is at most MIRROR_FLOW_IDLE_NS old. An idle entry stays in the
    /// LRU map until it is evicted, but bpf/security.h no longer takes it for a
    /// connection, so it is not counted. Read for every scrape, so in batches: a few
    /// syscalls for the map's 65,536 entries, not one or two per entry.
    public func establishedFlowCount() throws(DatapathError) -> Int {
        let fd = try mapFD(.flows)
        var lastSeen: [UInt64] = []
        let chunk = 4096
        var keys = [UInt8](repeating: 0, count: chunk * MemoryLayout<mirror_flow_key>.stride)
        var values = [mirror_flow](repeating: mirror_flow(), count: chunk)
        var cursor: UInt32 = 0  // the hash map's batch token: a bucket index
        var first = true
        while true {
            var got = UInt32(chunk)
            let rc = keys.withUnsafeMutableBytes { k in
                values.withUnsafeMutableBytes { v in
                    withUnsafeMutablePointer(to: &cursor) { c in
                        bpf_map_lookup_batch(
                            fd, first ? nil : UnsafeMutableRawPointer(c), UnsafeMutableRawPointer(c),
                            k.baseAddress, v.baseAddress, &got, nil)
                    }
                }
            }
            let err = rc < 0 ? (rc == -1 ? Glibc.errno : -rc) : 0
            if err != 0 && err != ENOENT {
                if first && (err == EINVAL || err == 524 /* ENOTSUPP (kernel-internal) */ || err == EOPNOTSUPP) {
                    lastSeen = try flowsOneByOne(fd)
                    break
                }
                throw DatapathError("batch read \(ClassifierMap.flows.rawValue)", errno: err)
            }
            lastSeen += values.prefix(Int(min(got, UInt32(chunk)))).map(\.last_seen_ns)
            if err == ENOENT || got == 0 { break }
            first = false
        }
        let now = Self.monotonicNanoseconds()
        // Written after the clock was read: as live as can be.
        return lastSeen.filter { $0 >= now || now - $0 <= UInt64(MIRROR_FLOW_IDLE_NS) }.count
    }

    /// `last_seen_ns` of every flow, by key (kernels without batch lookups).
    private func flowsOneByOne(_ fd: Int32) throws(DatapathError) -> [UInt64] {
        var out: [UInt64] = []
        for key in try keys(fd, as: mirror_flow_key.self) {
            var k = key
            var v = mirror_flow()
            // Gone since it was listed (evicted, or the LRU map reused it): not a flow.
            if bpf_map_lookup_elem(fd, &k, &v) == 0 { out.append(v.last_seen_ns) }
        }
        return out
    }

    /// Forgets every connection (tests).
    public func clearFlows() throws(DatapathError) {
        let fd = try mapFD(.flows)
        for key in try keys(fd, as: mirror_flow_key.self) {
            var k = key
            _ = bpf_map_delete_elem(fd, &k)
        }
    }
}

/// A suppression verdict of the test programs (SPEC §5, bpf/mirror_abi.h
/// MIRROR_OUTCOME_SUPPRESSED_*), decoded from the raw return value.
public struct SecurityVerdict: Hashable, Sendable {
    public var bySecurityGroup: Bool
    /// The deciding rule's priority; 0 = no rule matched (default deny).
    public var priority: UInt16
    /// Security groups: the group's position in the source's `securityGroups`.
    public var groupIndex: UInt8

    /// nil when `raw` is not a suppression.
    public init?(raw: UInt32) {
        let outcome = mirror_verdict_outcome(raw)
        guard
            outcome == MIRROR_OUTCOME_SUPPRESSED_BY_SECURITY_GROUP.rawValue
                || outcome == MIRROR_OUTCOME_SUPPRESSED_BY_ACL.rawValue
        else { return nil }
        bySecurityGroup = outcome == MIRROR_OUTCOME_SUPPRESSED_BY_SECURITY_GROUP.rawValue
        // The priority rides in the session slot bits, the group index in the rule index bits.
        priority = UInt16(mirror_verdict_session_slot(raw))
        groupIndex = UInt8(mirror_verdict_rule_index(raw))
    }

    /// Which security group or ACL and rule, in the oracle's terms; nil when `image`
    /// has no security entry for the source and direction.
    public func suppression(in image: MapImage, ifindex: UInt32, direction: Direction) -> Decision.Suppression? {
        guard let entry = image.security.first(where: { $0.ifindex == ifindex && $0.direction == direction }) else {
            return nil
        }
        return entry.suppression(bySecurityGroup: bySecurityGroup, priority: priority, groupIndex: groupIndex)
    }
}
