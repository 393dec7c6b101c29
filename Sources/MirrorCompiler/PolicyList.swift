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
                dst: (rules.map(\.dst_port_min).min() ?? 0, rules.map(\.dst_port_max).max() ?? 0xffff)))
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
                parts: start..<parts.count))
    }

    mutating func reserveCapacity(_ n: Int) {
        entries.reserveCapacity(n)
        parts.reserveCapacity(n * 2)
    }
}
