import CMirrorABI
import MirrorCore

/// The policies of an image, one per source interface and direction that has rules,
/// stored as what each is made of: its source, its prefilter, and per session the
/// session's slot and its filter direction's compiled rules, which all the sessions
/// of one filter share. An entry's `mirror_policy` value (up to 30 rules, 2.7 KB) is
/// built when it is read, and the maps are written one entry at a time. At 20,000
/// sessions the built values were 36 MB, alive through every apply until the maps
/// were written; this is well under 1 MB.
public struct PolicyList: RandomAccessCollection, @unchecked Sendable {
    /// One filter direction's rules in evaluation order, session slot 0, and what
    /// the prefilter needs of them.
    struct RuleList {
        var rules: [mirror_rule]
        var needsPorts: Bool
        var src: (lo: UInt16, hi: UInt16), dst: (lo: UInt16, hi: UInt16)
        var bounds: MatchBounds
    }
    struct Part {
        var list: Int32
        var sessionSlot: UInt16
        /// A disabled session's rules: flagged MIRROR_RULE_DISABLED (bpf/mirror_consts.h).
        var disabled: Bool
    }
    struct Entry {
        var sourceID: String
        var ifindex: UInt32
        var direction: Direction
        var sourceSlot: UInt16
        var ruleCount: UInt8
        var needsPorts: Bool
        var src: (lo: UInt16, hi: UInt16), dst: (lo: UInt16, hi: UInt16)
        var bounds: MatchBounds
        var parts: Range<Int>
    }

    private var lists: [RuleList] = []
    private var parts: [Part] = []
    private var entries: [Entry] = []

    public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { entries.count }

    public subscript(i: Int) -> PolicyEntry {
        let e = entries[i]
        var value = mirror_policy()
        value.source_slot = e.sourceSlot
        value.rule_count = e.ruleCount
        value.needs_ports = e.needsPorts ? 1 : 0
        value.src_port_lo = e.src.lo; value.src_port_hi = e.src.hi
        value.dst_port_lo = e.dst.lo; value.dst_port_hi = e.dst.hi
        e.bounds.write(into: &value)
        withUnsafeMutableBytes(of: &value.rules) { raw in
            let buf = raw.bindMemory(to: mirror_rule.self)
            var n = 0
            for p in parts[e.parts] {
                for var r in lists[Int(p.list)].rules {
                    r.session_slot = p.sessionSlot
                    if p.disabled { r.flags |= UInt8(MIRROR_RULE_DISABLED.rawValue) }
                    buf[n] = r
                    n += 1
                }
            }
        }
        return PolicyEntry(sourceID: e.sourceID, ifindex: e.ifindex, direction: e.direction, value: value)
    }

    /// Registers one filter direction's compiled rules (evaluation order, any session
    /// slot: `append` sets it), for the entries that use them.
    mutating func addRuleList(_ rules: [mirror_rule]) -> Int32 {
        lists.append(
            RuleList(
                rules: rules,
                needsPorts: rules.allSatisfy { UInt32($0.match_mask) & UInt32(MIRROR_KEY_PORTS) != 0 },
                src: (rules.map(\.src_port_min).min() ?? 0, rules.map(\.src_port_max).max() ?? 0xffff),
                dst: (rules.map(\.dst_port_min).min() ?? 0, rules.map(\.dst_port_max).max() ?? 0xffff),
                bounds: rules.reduce(into: MatchBounds()) { $0.add($1) }))
        return Int32(lists.count - 1)
    }

    /// Adds the policy of one source interface and direction: the rules of `sessions`
    /// (rule list, session slot), in that order. No rules: no entry, so the classifier
    /// stops at the lookup (SPEC §8: unmatched traffic pays almost nothing).
    mutating func append(
        sourceID: String, ifindex: UInt32, direction: Direction, sourceSlot: UInt16,
        sessions: [(list: Int32, sessionSlot: UInt16, disabled: Bool)]
    ) throws(CompileError) {
        let used = sessions.filter { !lists[Int($0.list)].rules.isEmpty }
        guard !used.isEmpty else { return }
        let count = used.reduce(0) { $0 + lists[Int($1.list)].rules.count }
        guard count <= Int(MAX_RULES_PER_POLICY) else {
            throw CompileError("source \(sourceID): more than \(MAX_RULES_PER_POLICY) \(direction) rules")
        }
        // The prefilter: a necessary condition for any of the rules to match.
        let ls = used.map { lists[Int($0.list)] }
        let start = parts.count
        parts.append(contentsOf: used.map { Part(list: $0.list, sessionSlot: $0.sessionSlot, disabled: $0.disabled) })
        entries.append(
            Entry(
                sourceID: sourceID, ifindex: ifindex, direction: direction, sourceSlot: sourceSlot,
                ruleCount: UInt8(count), needsPorts: ls.allSatisfy(\.needsPorts),
                src: (ls.map(\.src.lo).min()!, ls.map(\.src.hi).max()!),
                dst: (ls.map(\.dst.lo).min()!, ls.map(\.dst.hi).max()!),
                bounds: ls.reduce(into: MatchBounds()) { $0.add($1.bounds) },
                parts: start..<parts.count))
    }

    mutating func reserveCapacity(_ n: Int) {
        entries.reserveCapacity(n)
        parts.reserveCapacity(n * 2)
    }
}

/// The least and greatest protocol and addresses some rules can match (the classifier's
/// `policy_may_match`, bpf/mirror_structs.h): a necessary condition for any of them to
/// match, so that traffic outside skips the rule walk whatever field the rules differ
/// by. IPv6 addresses are bounded by their first 64 bits.
struct MatchBounds {
    typealias Bound<T> = (lo: T, hi: T)
    var protocols: Bound<UInt16>?
    var v4Source: Bound<UInt32>?, v4Destination: Bound<UInt32>?
    var v6Source: Bound<UInt64>?, v6Destination: Bound<UInt64>?

    static func widen<T: Comparable>(_ a: Bound<T>?, _ b: Bound<T>) -> Bound<T> {
        guard let a else { return b }
        return (min(a.lo, b.lo), max(a.hi, b.hi))
    }

    mutating func add(_ r: mirror_rule) {
        let proto: Bound<UInt16> =
            UInt32(r.match_mask) & UInt32(MIRROR_KEY_PROTOCOL_KNOWN) != 0
            ? (r.match_value & UInt16(MIRROR_KEY_PROTOCOL), r.match_value & UInt16(MIRROR_KEY_PROTOCOL))
            : (0, UInt16(MIRROR_PROTO_UNKNOWN))
        protocols = Self.widen(protocols, proto)
        // Masks are CIDR prefixes: a rule matches [address, address | ~mask].
        func v4(_ a: UInt32, _ m: UInt32) -> Bound<UInt32> {
            let lo = UInt32(bigEndian: a), mask = UInt32(bigEndian: m)
            return (lo, lo | ~mask)
        }
        func v6(_ a0: UInt32, _ a1: UInt32, _ m0: UInt32, _ m1: UInt32) -> Bound<UInt64> {
            let lo = UInt64(UInt32(bigEndian: a0)) << 32 | UInt64(UInt32(bigEndian: a1))
            let mask = UInt64(UInt32(bigEndian: m0)) << 32 | UInt64(UInt32(bigEndian: m1))
            return (lo, lo | ~mask)
        }
        if UInt32(r.flags) & MIRROR_RULE_IPV6.rawValue != 0 {
            v6Source = Self.widen(v6Source, v6(r.src_addr_be, r.src_addr6_be.0, r.src_mask_be, r.src_mask6_be.0))
            v6Destination = Self.widen(v6Destination, v6(r.dst_addr_be, r.dst_addr6_be.0, r.dst_mask_be, r.dst_mask6_be.0))
        } else {
            v4Source = Self.widen(v4Source, v4(r.src_addr_be, r.src_mask_be))
            v4Destination = Self.widen(v4Destination, v4(r.dst_addr_be, r.dst_mask_be))
        }
    }

    mutating func add(_ b: MatchBounds) {
        if let p = b.protocols { protocols = Self.widen(protocols, p) }
        if let s = b.v4Source, let d = b.v4Destination {
            v4Source = Self.widen(v4Source, s); v4Destination = Self.widen(v4Destination, d)
        }
        if let s = b.v6Source, let d = b.v6Destination {
            v6Source = Self.widen(v6Source, s); v6Destination = Self.widen(v6Destination, d)
        }
    }

    func write(into v: inout mirror_policy) {
        let p = protocols ?? (0, UInt16(MIRROR_PROTO_UNKNOWN))
        v.protocol_lo = p.lo; v.protocol_hi = p.hi
        v.families = 0
        if let s = v4Source, let d = v4Destination {
            v.families |= UInt8(MIRROR_POLICY_IPV4)
            (v.v4_src_lo, v.v4_src_hi, v.v4_dst_lo, v.v4_dst_hi) = (s.lo, s.hi, d.lo, d.hi)
        }
        if let s = v6Source, let d = v6Destination {
            v.families |= UInt8(MIRROR_POLICY_IPV6)
            (v.v6_src_lo, v.v6_src_hi, v.v6_dst_lo, v.v6_dst_hi) = (s.lo, s.hi, d.lo, d.hi)
        }
    }
}
