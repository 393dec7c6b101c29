import CMirrorABI
import MirrorCore

/// The direct-mapped index the classifier reads before the policy map
/// (bpf/mirror_abi.h, `mirror_prefilter`): per bucket (ifindex modulo
/// MIRROR_PREFILTER_BUCKETS) up to MIRROR_PREFILTER_WAYS sources with their
/// policies' source slot and prefilter, so that traffic a prefilter turns away
/// costs no hash lookup. Derived from the policies alone; a source that finds
/// its bucket full stays only in the policy map, and the bucket is marked
/// `overflow` so that the classifier looks there.
public enum PrefilterIndex {
    public static let bucketCount = Int(MIRROR_PREFILTER_BUCKETS)

    public static func bucket(ofIfindex ifindex: UInt32) -> Int { Int(ifindex) & (bucketCount - 1) }

    /// The non-empty buckets of one generation, by bucket number. Ways go to the
    /// lowest ifindexes of a bucket, so the result does not depend on the order
    /// of `policies`.
    public static func buckets(_ policies: some Sequence<PolicyEntry>) -> [Int: mirror_prefilter_bucket] {
        // Only the few bytes each bucket needs: a policy value is 2.7 KB, and a
        // 20,000-session image holds 13,000 of them.
        var byIfindex: [UInt32: [(direction: Int, entry: mirror_prefilter)]] = [:]
        byIfindex.reserveCapacity(policies.underestimatedCount)
        for p in policies {
            byIfindex[p.ifindex, default: []].append((Int(p.direction.abi), entry(p.value)))
        }
        var out: [Int: mirror_prefilter_bucket] = [:]
        for ifindex in byIfindex.keys.sorted() {
            let b = bucket(ofIfindex: ifindex)
            var value = out[b] ?? mirror_prefilter_bucket()
            let way = withUnsafeBytes(of: value.ifindex) { raw in
                raw.bindMemory(to: UInt32.self).firstIndex(of: 0)
            }
            guard let way else {
                value.overflow = 1
                out[b] = value
                continue
            }
            withUnsafeMutableBytes(of: &value.ifindex) { $0.bindMemory(to: UInt32.self)[way] = ifindex }
            for p in byIfindex[ifindex] ?? [] { set(&value, way: way, direction: p.direction, p.entry) }
            out[b] = value
        }
        return out
    }

    /// What a bucket tells the classifier about one source interface and direction.
    public enum Reading: Equatable {
        case prefilter(sourceSlot: UInt16, needsPorts: Bool, src: ClosedRange<UInt16>, dst: ClosedRange<UInt16>)
        case noPolicy
        case policyMap  // the bucket overflowed: only mirror_policy can tell
    }

    /// The Swift twin of the classifier's reading of a bucket (classify.bpf.c).
    public static func read(_ bucket: mirror_prefilter_bucket, ifindex: UInt32, direction: Direction) -> Reading {
        let way = withUnsafeBytes(of: bucket.ifindex) { $0.bindMemory(to: UInt32.self).firstIndex(of: ifindex) }
        guard let way, ifindex != 0 else { return bucket.overflow != 0 ? .policyMap : .noPolicy }
        let e = withUnsafeBytes(of: bucket.entry) { raw in
            raw.bindMemory(to: mirror_prefilter.self)[way * Int(MIRROR_DIRECTIONS) + Int(direction.abi)]
        }
        guard e.flags & UInt8(MIRROR_PREFILTER_POLICY.rawValue) != 0 else { return .noPolicy }
        return .prefilter(
            sourceSlot: e.source_slot, needsPorts: e.flags & UInt8(MIRROR_PREFILTER_NEEDS_PORTS.rawValue) != 0,
            src: e.src_port_lo...max(e.src_port_lo, e.src_port_hi),
            dst: e.dst_port_lo...max(e.dst_port_lo, e.dst_port_hi))
    }

    static func entry(_ v: borrowing mirror_policy) -> mirror_prefilter {
        var e = mirror_prefilter()
        e.src_port_lo = v.src_port_lo
        e.src_port_hi = v.src_port_hi
        e.dst_port_lo = v.dst_port_lo
        e.dst_port_hi = v.dst_port_hi
        e.source_slot = v.source_slot
        e.flags = UInt8(MIRROR_PREFILTER_POLICY.rawValue) | (v.needs_ports != 0 ? UInt8(MIRROR_PREFILTER_NEEDS_PORTS.rawValue) : 0)
        if v.families & UInt8(MIRROR_POLICY_IPV4) != 0 { e.flags |= UInt8(MIRROR_PREFILTER_IPV4.rawValue) }
        if v.families & UInt8(MIRROR_POLICY_IPV6) != 0 { e.flags |= UInt8(MIRROR_PREFILTER_IPV6.rawValue) }
        e.protocol_lo = v.protocol_lo
        e.protocol_hi = v.protocol_hi
        (e.v4_src_lo, e.v4_src_hi, e.v4_dst_lo, e.v4_dst_hi) = (v.v4_src_lo, v.v4_src_hi, v.v4_dst_lo, v.v4_dst_hi)
        (e.v6_src_lo, e.v6_src_hi, e.v6_dst_lo, e.v6_dst_hi) = (v.v6_src_lo, v.v6_src_hi, v.v6_dst_lo, v.v6_dst_hi)
        return e
    }

    static func set(_ b: inout mirror_prefilter_bucket, way: Int, direction: Int, _ e: mirror_prefilter) {
        withUnsafeMutableBytes(of: &b.entry) { raw in
            raw.bindMemory(to: mirror_prefilter.self)[way * Int(MIRROR_DIRECTIONS) + direction] = e
        }
    }
}
