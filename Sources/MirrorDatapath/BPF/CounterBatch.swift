import CLibbpf
import CMirrorABI
import Glibc
import MirrorCompiler
import MirrorCore

// Whole-range counter reads for the agent's metrics: one
// BPF_MAP_LOOKUP_BATCH per few thousand keys instead of one lookup per key. Slots
// are dense from 0 (the lowest free slot is taken), so reading keys 0..<n covers
// every live slot. At 2,000 sessions a scrape went from ~50k syscalls to ~30.
extension BPFDatapath {
    /// Per key in 0..<n of PERCPU_ARRAY `map`, the CPUs' values summed by `sum`.
    /// Falls back to one lookup per key when the kernel has no batch lookups.
    func perCPURange<T, S>(
        _ map: ClassifierMap, count n: UInt32, as: T.Type, zero: S,
        sum: (inout S, T) -> Void
    ) throws(DatapathError) -> [S] {
        guard n > 0 else { return [] }
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { throw DatapathError("count possible CPUs", errno: -Int32(cpus)) }
        let stride = (MemoryLayout<T>.size + 7) / 8 * 8
        let fd = try mapFD(map)
        var out = [S](repeating: zero, count: Int(n))
        let chunk = UInt32(max(1, min(Int(n), (1 << 22) / max(1, stride * cpus))))  // ~4 MiB of values per call
        var keys = [UInt32](repeating: 0, count: Int(chunk))
        var values = [UInt8](repeating: 0, count: Int(chunk) * stride * cpus)
        var next: UInt32 = 0  // first key not read yet
        var cursor: UInt32 = 0  // the batch cursor: the last key read
        while next < n {
            var got = min(chunk, n - next)
            let rc = keys.withUnsafeMutableBytes { k in
                values.withUnsafeMutableBytes { v in
                    withUnsafeMutablePointer(to: &cursor) { c in
                        // The kernel continues after *in_batch (array maps); NULL = from key 0.
                        bpf_map_lookup_batch(
                            fd, next == 0 ? nil : UnsafeMutableRawPointer(c), UnsafeMutableRawPointer(c),
                            k.baseAddress, v.baseAddress, &got, nil)
                    }
                }
            }
            let err = rc < 0 ? (rc == -1 ? Glibc.errno : -rc) : 0
            if err != 0 && err != ENOENT {
                if next == 0 && (err == EINVAL || err == 524 /* ENOTSUPP (kernel-internal) */ || err == EOPNOTSUPP) {
                    return try perCPUEach(map, count: n, as: T.self, zero: zero, sum: sum)
                }
                throw DatapathError("batch read \(map.rawValue) from key \(next)", errno: err)
            }
            values.withUnsafeBytes { raw in
                for i in 0..<Int(got) {
                    let key = keys[i]
                    guard key < n else { continue }
                    var s = zero
                    for c in 0..<cpus {
                        sum(&s, raw.loadUnaligned(fromByteOffset: (i * cpus + c) * stride, as: T.self))
                    }
                    out[Int(key)] = s
                }
            }
            if got == 0 || err == ENOENT { break }
            next = cursor &+ 1
        }
        return out
    }

    private func perCPUEach<T, S>(
        _ map: ClassifierMap, count n: UInt32, as: T.Type, zero: S,
        sum: (inout S, T) -> Void
    ) throws(DatapathError) -> [S] {
        var out: [S] = []
        out.reserveCapacity(Int(n))
        for key in 0..<n {
            var s = zero
            for v in try perCPU(map, key: key, as: T.self) { sum(&s, v) }
            out.append(s)
        }
        return out
    }

    /// Index of a rule in `allRuleHits` (bpf/mirror_abi.h mirror_rule_stats_key).
    public static func ruleStatsKey(sessionSlot: UInt16, direction: Direction, ruleIndex: UInt8) -> Int {
        Int(mirror_rule_stats_key(UInt32(sessionSlot), UInt32(direction.abi), UInt32(ruleIndex)))
    }

    /// Index of a source direction in `allSourceCounters`/`allSecurityCounters`.
    public static func sourceStatsKey(sourceSlot: UInt16, direction: Direction) -> Int {
        Int(mirror_source_stats_key(UInt32(sourceSlot), UInt32(direction.abi)))
    }

    /// session_stats of slots 0..<sessionSlots, indexed by slot.
    public func allSessionCounters(sessionSlots: Int) throws(DatapathError) -> [SessionCounters] {
        try perCPURange(.sessionStats, count: UInt32(sessionSlots), as: mirror_session_stats.self, zero: SessionCounters()) {
            $0.add($1)
        }
    }

    /// rule_stats of session slots 0..<sessionSlots, indexed by mirror_rule_stats_key.
    public func allRuleHits(sessionSlots: Int) throws(DatapathError) -> [UInt64] {
        let n = UInt32(sessionSlots) * UInt32(MIRROR_DIRECTIONS) * UInt32(MAX_RULES_PER_DIRECTION)
        return try perCPURange(.ruleStats, count: n, as: mirror_rule_stats.self, zero: UInt64(0)) { $0 &+= $1.hits }
    }

    /// source_stats of source slots 0..<sourceSlots, indexed by mirror_source_stats_key.
    public func allSourceCounters(sourceSlots: Int) throws(DatapathError) -> [SourceCounters] {
        try perCPURange(
            .sourceStats, count: UInt32(sourceSlots * Int(MIRROR_DIRECTIONS)), as: mirror_source_stats.self,
            zero: SourceCounters()
        ) {
            $0.seen &+= $1.seen; $0.mirrored &+= $1.mirrored; $0.rejected &+= $1.rejected
            $0.noMatch &+= $1.no_match; $0.notIP &+= $1.not_ip; $0.cloneErrors &+= $1.clone_errors
            $0.sessionDisabled &+= $1.session_disabled
        }
    }

    /// security_stats of source slots 0..<sourceSlots, indexed by mirror_source_stats_key.
    public func allSecurityCounters(sourceSlots: Int) throws(DatapathError) -> [SecurityCounters] {
        try perCPURange(
            .securityStats, count: UInt32(sourceSlots * Int(MIRROR_DIRECTIONS)), as: mirror_security_stats.self,
            zero: SecurityCounters()
        ) {
            $0.suppressedBySecurityGroup &+= $1.suppressed_by_security_group
            $0.suppressedByAcl &+= $1.suppressed_by_acl
            $0.established &+= $1.established
        }
    }

    /// encap_stats of session slots 0..<sessionSlots, indexed by slot.
    public func allEncapCounters(sessionSlots: Int) throws(DatapathError) -> [EncapCounters] {
        try perCPURange(.encapStats, count: UInt32(sessionSlots), as: mirror_encap_stats.self, zero: EncapCounters()) {
            $0.add($1)
        }
    }
}
