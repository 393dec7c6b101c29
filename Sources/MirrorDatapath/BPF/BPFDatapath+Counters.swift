import CLibbpf
import CMirrorABI
import Foundation
import Glibc
import MirrorCompiler
import MirrorCore

/// Per-key counter reads and the clearing of freed slots (whole ranges: CounterBatch.swift).
extension BPFDatapath {
    // MARK: counters

    public struct SourceCounters: Hashable, Sendable {
        public var seen: UInt64 = 0, mirrored: UInt64 = 0, rejected: UInt64 = 0
        public var noMatch: UInt64 = 0, notIP: UInt64 = 0, cloneErrors: UInt64 = 0
        public var sessionDisabled: UInt64 = 0
    }

    public struct SessionCounters: Hashable, Sendable {
        public var packets: UInt64 = 0, bytes: UInt64 = 0
        /// SPEC §10: of `packets`, those no copy was made of (bpf/limits.h).
        public var skippedSampledOut: UInt64 = 0, skippedRateLimit: UInt64 = 0, skippedHostBudget: UInt64 = 0

        mutating func add(_ v: mirror_session_stats) {
            packets &+= v.packets; bytes &+= v.bytes
            skippedSampledOut &+= v.skipped_sampled_out; skippedRateLimit &+= v.skipped_rate_limit
            skippedHostBudget &+= v.skipped_host_budget
        }
    }

    /// Per-CPU values of a PERCPU_ARRAY entry, each `T`.
    func perCPU<T>(_ map: ClassifierMap, key: UInt32, as: T.Type) throws(DatapathError) -> [T] {
        let cpus = Int(libbpf_num_possible_cpus())
        guard cpus > 0 else { throw DatapathError("count possible CPUs", errno: -Int32(cpus)) }
        let stride = (MemoryLayout<T>.size + 7) / 8 * 8
        var buf = [UInt8](repeating: 0, count: stride * cpus)
        var k = key
        let fd = try mapFD(map)
        let rc = buf.withUnsafeMutableBytes { bpf_map_lookup_elem(fd, &k, $0.baseAddress) }
        try DatapathError.check(rc, "read \(map.rawValue)[\(key)]")
        return (0..<cpus).map { i in buf.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * stride, as: T.self) } }
    }

    public func sessionCounters(sessionSlot: UInt16) throws(DatapathError) -> SessionCounters {
        var c = SessionCounters()
        for v in try perCPU(.sessionStats, key: UInt32(sessionSlot), as: mirror_session_stats.self) {
            c.add(v)
        }
        return c
    }

    public func ruleHits(sessionSlot: UInt16, direction: Direction, ruleIndex: UInt8) throws(DatapathError) -> UInt64 {
        let key = mirror_rule_stats_key(UInt32(sessionSlot), UInt32(direction.abi), UInt32(ruleIndex))
        return try perCPU(.ruleStats, key: key, as: mirror_rule_stats.self).reduce(0) { $0 &+ $1.hits }
    }

    public func sourceCounters(sourceSlot: UInt16, direction: Direction) throws(DatapathError) -> SourceCounters {
        var c = SourceCounters()
        let key = mirror_source_stats_key(UInt32(sourceSlot), UInt32(direction.abi))
        for v in try perCPU(.sourceStats, key: key, as: mirror_source_stats.self) {
            c.seen &+= v.seen; c.mirrored &+= v.mirrored; c.rejected &+= v.rejected
            c.noMatch &+= v.no_match; c.notIP &+= v.not_ip; c.cloneErrors &+= v.clone_errors
            c.sessionDisabled &+= v.session_disabled
        }
        return c
    }

    /// Zeroes the counters of slots that were freed, before new ids take them over.
    public func clearCounters(sessionSlots: [UInt16], sourceSlots: [UInt16]) throws(DatapathError) {
        func zero(_ map: ClassifierMap, _ key: UInt32, valueSize: Int) throws(DatapathError) {
            let cpus = Int(libbpf_num_possible_cpus())
            var buf = [UInt8](repeating: 0, count: (valueSize + 7) / 8 * 8 * max(1, cpus))
            var k = key
            let fd = try mapFD(map)
            let rc = buf.withUnsafeMutableBytes { bpf_map_update_elem(fd, &k, $0.baseAddress, UInt64(BPF_ANY)) }
            try DatapathError.check(rc, "clear \(map.rawValue)[\(key)]")
        }
        for s in sessionSlots {
            try zero(.sessionStats, UInt32(s), valueSize: MemoryLayout<mirror_session_stats>.size)
            // Stage 2's counters of the slot too: the metrics take a slot with a new
            // owner for cleared, and would show the old session's copies as the new one's.
            try zero(.encapStats, UInt32(s), valueSize: MemoryLayout<mirror_encap_stats>.size)
            // SPEC §10: a new session in the slot starts with a full bucket, not the
            // old one's debt.
            var k = UInt32(s)
            var bucket = mirror_limiter()
            try DatapathError.check(
                bpf_map_update_elem(try mapFD(.limiter), &k, &bucket, UInt64(BPF_ANY)), "clear mirror_limiter[\(s)]")
            for d in Direction.allCases {
                for r in 0..<UInt32(MAX_RULES_PER_DIRECTION) {
                    try zero(
                        .ruleStats, mirror_rule_stats_key(UInt32(s), UInt32(d.abi), r),
                        valueSize: MemoryLayout<mirror_rule_stats>.size)
                }
            }
        }
        try clearSecurityCounters(sourceSlots: sourceSlots)
        for s in sourceSlots {
            for d in Direction.allCases {
                try zero(
                    .sourceStats, mirror_source_stats_key(UInt32(s), UInt32(d.abi)),
                    valueSize: MemoryLayout<mirror_source_stats>.size)
            }
        }
    }
}
