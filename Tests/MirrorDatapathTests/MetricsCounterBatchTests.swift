import CLibbpf
import CMirrorABI
import Foundation
import MirrorCore
import Testing

@testable import MirrorDatapath

/// The batched counter reads (CounterBatch.swift) return what per-key lookups return,
/// across chunk boundaries, with every CPU summed.
@Suite("Metrics: batched per-CPU counter reads (root)", .enabled(if: geteuid() == 0, "needs root to load BPF maps"))
struct MetricsCounterBatchTests {
    /// Writes `perCPU` values (one per possible CPU) of `T` at `key` of `map`.
    func write<T>(_ dp: BPFDatapath, _ map: ClassifierMap, key: UInt32, _ values: [T]) throws {
        let stride = (MemoryLayout<T>.size + 7) / 8 * 8
        var buf = [UInt8](repeating: 0, count: stride * values.count)
        buf.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: v, toByteOffset: i * stride, as: T.self) }
        }
        var k = key
        let fd = try dp.mapFD(map)
        let rc = buf.withUnsafeMutableBytes { bpf_map_update_elem(fd, &k, $0.baseAddress, UInt64(BPF_ANY)) }
        #expect(rc == 0)
    }

    @Test func batchedReadsEqualPerKeyReadsAcrossChunks() throws {
        let dp = try BPFDatapath(pinDirectory: nil)
        defer { dp.close() }
        let cpus = Int(libbpf_num_possible_cpus())
        // Rule hits: 400,000 keys at the session quota, more than one batch chunk.
        let ruleKeys: [UInt32] = [0, 1, 19, 20, 262_143, 262_144, 262_145, 399_999]
        for (n, k) in ruleKeys.enumerated() {
            try write(dp, .ruleStats, key: k, (0..<cpus).map { c in mirror_rule_stats(hits: UInt64(1000 * n + c + 1)) })
        }
        let hits = try dp.allRuleHits(sessionSlots: Int(MAX_SESSIONS))
        #expect(hits.count == Int(MIRROR_RULE_STATS_ENTRIES))
        func expected(_ n: Int) -> UInt64 {
            var total: UInt64 = 0
            for c in 0..<cpus { total += UInt64(1000 * n + c + 1) }
            return total
        }
        var all: UInt64 = 0
        for (n, k) in ruleKeys.enumerated() {
            #expect(hits[Int(k)] == expected(n))
            all += expected(n)
        }
        let sum: UInt64 = hits.reduce(0, +)
        #expect(sum == all)

        // Sessions, sources and encap: same as the per-key readers.
        for slot in [0, 3, 7] as [UInt32] {
            try write(
                dp, .sessionStats, key: slot,
                (0..<cpus).map { _ in
                    var v = mirror_session_stats()
                    v.packets = UInt64(slot) + 1; v.bytes = 100; v.skipped_rate_limit = UInt64(slot)
                    return v
                })
            var e = mirror_encap_stats()
            e.sent = UInt64(slot) + 2; e.truncated_mtu = 1; e.dropped_tunnel_key = 3
            try write(dp, .encapStats, key: slot, Array(repeating: e, count: cpus))
            var s = mirror_source_stats()
            s.seen = 5; s.no_match = UInt64(slot); s.clone_errors = 1
            try write(dp, .sourceStats, key: slot, Array(repeating: s, count: cpus))
        }
        let sessions = try dp.allSessionCounters(sessionSlots: 8)
        let encap = try dp.allEncapCounters(sessionSlots: 8)
        let sources = try dp.allSourceCounters(sourceSlots: 4)
        for slot in 0..<8 {
            #expect(sessions[slot] == (try dp.sessionCounters(sessionSlot: UInt16(slot))))
            #expect(encap[slot] == (try dp.encapCounters(sessionSlot: UInt32(slot))))
        }
        #expect(sessions[3].packets == UInt64(4 * cpus) && sessions[3].skippedRateLimit == UInt64(3 * cpus))
        for slot in 0..<4 {
            for d in Direction.allCases {
                let k = BPFDatapath.sourceStatsKey(sourceSlot: UInt16(slot), direction: d)
                #expect(sources[k] == (try dp.sourceCounters(sourceSlot: UInt16(slot), direction: d)))
            }
        }
        #expect(try dp.allSessionCounters(sessionSlots: 0).isEmpty)
    }

    /// A freed session slot starts from zero for its next owner, stage 2's counters too
    /// (the continuity takes a slot with a new owner for cleared).
    @Test func clearingAFreedSessionSlotClearsItsEncapsulationCounters() throws {
        let dp = try BPFDatapath(pinDirectory: nil)
        defer { dp.close() }
        let cpus = Int(libbpf_num_possible_cpus())
        var e = mirror_encap_stats()
        e.sent = 4; e.segmented = 2; e.truncated_gso = 1; e.dropped_no_target = 3
        for slot in [2, 3] as [UInt32] { try write(dp, .encapStats, key: slot, Array(repeating: e, count: cpus)) }
        try dp.clearCounters(sessionSlots: [3], sourceSlots: [])
        #expect(try dp.encapCounters(sessionSlot: 3) == BPFDatapath.EncapCounters())
        #expect(try dp.encapCounters(sessionSlot: 2).sent == UInt64(4 * cpus))
    }

    /// The established connections are the flows not idle past MIRROR_FLOW_IDLE_NS,
    /// read in batches across more than one chunk.
    @Test func establishedFlowsAreTheRememberedFlowsNotIdle() throws {
        let dp = try BPFDatapath(pinDirectory: nil)
        defer { dp.close() }
        #expect(try dp.establishedFlowCount() == 0)
        func flow(_ i: Int) -> BPFDatapath.Flow {
            BPFDatapath.Flow(
                ifindex: 7, local: IPAddress("192.0.2.10")!, remote: IPAddress("198.51.100.\(i % 250 + 1)")!,
                protocol: 6, localPort: UInt16(1024 + i), remotePort: 80)
        }
        for i in 0..<5000 { try dp.recordFlow(flow(i)) }
        for i in 5000..<5003 { try dp.recordFlow(flow(i), idleFor: UInt64(MIRROR_FLOW_IDLE_NS) + 1_000_000_000) }
        #expect(try dp.flowCount() == 5003)
        #expect(try dp.establishedFlowCount() == 5000)
        try dp.clearFlows()
        #expect(try dp.establishedFlowCount() == 0)
    }
}
