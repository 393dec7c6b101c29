import CMirrorABI
import MirrorCore

/// One (source interface, direction) entry of the policy map. The generation slot
/// of its key is chosen when the image is written (`key(slot:)`).
public struct PolicyEntry: @unchecked Sendable {
    public var sourceID: String
    public var ifindex: UInt32
    public var direction: Direction
    public var value: mirror_policy

    public func key(slot: UInt8) -> mirror_policy_key {
        var k = mirror_policy_key()
        k.ifindex = ifindex
        k.slot = slot
        k.direction = direction.abi
        return k
    }

    /// The flattened rules, in evaluation order.
    public var rules: [mirror_rule] {
        var v = value
        let n = Int(v.rule_count)
        return withUnsafeBytes(of: &v.rules) { Array($0.bindMemory(to: mirror_rule.self).prefix(n)) }
    }
}

/// What a (session slot, direction, rule index) of the image stands for: used to
/// turn a datapath verdict or a rule counter back into spec nouns.
public struct RuleInfo: Hashable, Sendable {
    public var sessionID: String
    public var filterID: String
    public var direction: Direction
    public var priority: Int
    public var action: RuleAction
}

public struct RuleKey: Hashable, Sendable {
    public var sessionSlot: UInt16
    public var direction: Direction
    public var ruleIndex: UInt8
    public init(sessionSlot: UInt16, direction: Direction, ruleIndex: UInt8) {
        self.sessionSlot = sessionSlot; self.direction = direction; self.ruleIndex = ruleIndex
    }
}

/// Every rule of the image by (session slot, direction, index), stored per session:
/// a session's ids plus its filter's ordered (priority, action) lists, which all the
/// sessions of one filter share. 20,000 sessions at 20 rules each would be 400,000
/// dictionary entries of two strings each (about 60 MB); this is about 1 MB.
public struct RuleTable: Sequence, Sendable {
    public struct Rule: Hashable, Sendable {
        public var priority: Int
        public var action: RuleAction
    }
    struct SessionRules: Sendable {
        var sessionID: String
        var filterID: String
        var inbound: [Rule]
        var outbound: [Rule]
        func rules(_ d: Direction) -> [Rule] { d == .inbound ? inbound : outbound }
    }
    private var bySlot: [UInt16: SessionRules] = [:]
    /// Rules of all sessions and directions.
    public private(set) var count = 0

    public init() {}

    mutating func reserveCapacity(_ n: Int) { bySlot.reserveCapacity(n) }

    /// Records a session's rules (each direction in evaluation order).
    mutating func set(sessionSlot: UInt16, sessionID: String, filterID: String, inbound: [Rule], outbound: [Rule]) {
        let old = bySlot.updateValue(
            SessionRules(sessionID: sessionID, filterID: filterID, inbound: inbound, outbound: outbound),
            forKey: sessionSlot)
        count += inbound.count + outbound.count - (old.map { $0.inbound.count + $0.outbound.count } ?? 0)
    }

    public subscript(key: RuleKey) -> RuleInfo? {
        guard let s = bySlot[key.sessionSlot] else { return nil }
        let rules = s.rules(key.direction)
        guard Int(key.ruleIndex) < rules.count else { return nil }
        let r = rules[Int(key.ruleIndex)]
        return RuleInfo(sessionID: s.sessionID, filterID: s.filterID, direction: key.direction, priority: r.priority, action: r.action)
    }

    /// Every key, by session slot, then direction (ABI order), then index.
    public var keys: [RuleKey] { map(\.key) }

    /// Key order as positions, for random access (`entry(at:_:)`): the session slots
    /// in ascending order with the position of each one's first rule.
    public struct Positions: Sendable {
        fileprivate var slots: [UInt16] = []
        /// One more than `slots`: the last is the number of rules.
        fileprivate var starts: [Int] = [0]
        public var count: Int { starts[starts.count - 1] }
        public init() {}
    }

    public func positions() -> Positions {
        var p = Positions()
        p.slots = bySlot.keys.sorted()
        p.starts.reserveCapacity(p.slots.count + 1)
        for slot in p.slots {
            let s = bySlot[slot]!
            p.starts.append(p.starts[p.starts.count - 1] + s.inbound.count + s.outbound.count)
        }
        return p
    }

    /// The rule at `position` of key order (0 ..< positions.count), as the iterator yields it.
    public func entry(at position: Int, _ positions: Positions) -> (key: RuleKey, value: RuleInfo) {
        // The last slot whose first rule is at or before `position`.
        var lo = 0, hi = positions.slots.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if positions.starts[mid] <= position { lo = mid } else { hi = mid - 1 }
        }
        let slot = positions.slots[lo]
        let s = bySlot[slot]!
        var offset = position - positions.starts[lo]
        for d in Self.directions {
            let rules = s.rules(d)
            if offset < rules.count {
                return (
                    RuleKey(sessionSlot: slot, direction: d, ruleIndex: UInt8(offset)),
                    RuleInfo(
                        sessionID: s.sessionID, filterID: s.filterID, direction: d,
                        priority: rules[offset].priority, action: rules[offset].action)
                )
            }
            offset -= rules.count
        }
        preconditionFailure("rule position \(position) beyond its session's rules")
    }

    /// Directions in ABI order: the order of a session's rules in key order.
    private static let directions = Direction.allCases.sorted { $0.abi < $1.abi }

    /// In key order (session slot, direction in ABI order, rule index).
    public func makeIterator() -> AnyIterator<(key: RuleKey, value: RuleInfo)> {
        let p = positions()
        var i = 0
        return AnyIterator {
            guard i < p.count else { return nil }
            defer { i += 1 }
            return entry(at: i, p)
        }
    }
}

/// Everything one generation of the datapath needs, as ABI structs, independent of
/// the generation slot it will be written to. Pure data: `Datapath.apply` writes it.
public struct MapImage: @unchecked Sendable {
    public var policies = PolicyList()
    /// Key: stable session slot.
    public var sessions: [UInt16: mirror_session] = [:]
    /// Key: target index (position in the document's targets).
    public var targets: [UInt32: mirror_target] = [:]
    public var rules = RuleTable()
    public var slots = SlotAssignment()
    /// Sources left out because their interface did not resolve to an ifindex.
    public var unresolvedSources: [String] = []
    /// Security groups and network ACLs (SPEC §5): SecurityCompiler.swift.
    public var security: [SecurityEntry] = []
    /// SPEC §10: mirror_target_health's down_mask by target index, for the targets
    /// with a collector down (every other index is written 0: all healthy).
    public var targetHealth: [UInt32: UInt32] = [:]

    public init() {}

    public func policy(ifindex: UInt32, direction: Direction) -> PolicyEntry? {
        policies.first { $0.ifindex == ifindex && $0.direction == direction }
    }

    public func sessionID(slot: UInt16) -> String? {
        slots.sessions.first { $0.value == slot }?.key
    }
}

extension Direction {
    /// enum mirror_direction.
    public var abi: UInt8 { self == .inbound ? UInt8(MIRROR_DIR_INBOUND.rawValue) : UInt8(MIRROR_DIR_OUTBOUND.rawValue) }
}

/// The compiler: a validated document → map image, byte-exact through the
/// ABI structs. Pure: the caller resolves interfaces and path MTUs.
public enum Compiler {
    public struct Input {
        /// A validated document whose sessions all have a `vni` (run the VNI assigner first).
        public var document: Document
        public var slots: SlotAssignment
        /// Host-side interface name → ifindex; nil = not present (the source is skipped).
        public var interfaceIndex: (String) -> UInt32?
        /// Underlay path MTU toward a collector (SPEC §6).
        public var pathMTU: (IPAddress) -> Int
        /// SPEC §10: the collectors of a target (by id) its health check found down.
        public var unhealthy: (String) -> Set<IPAddress>

        public init(
            document: Document, slots: SlotAssignment, interfaceIndex: @escaping (String) -> UInt32?,
            pathMTU: @escaping (IPAddress) -> Int = { _ in 1500 },
            unhealthy: @escaping (String) -> Set<IPAddress> = { _ in [] }
        ) {
            self.document = document; self.slots = slots
            self.interfaceIndex = interfaceIndex; self.pathMTU = pathMTU; self.unhealthy = unhealthy
        }
    }

    public static func compile(_ input: Input) throws(CompileError) -> MapImage {
        let doc = input.document
        var image = MapImage()
        image.slots = input.slots
        let filters = Dictionary(doc.filters.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let targetIndex = Dictionary(
            doc.targets.enumerated().map { ($0.element.id, UInt32($0.offset)) },
            uniquingKeysWith: { a, _ in a })

        // Targets, by position.
        for (i, t) in doc.targets.enumerated() {
            image.targets[UInt32(i)] = try target(t, pathMTU: input.pathMTU)
        }
        image.targetHealth = targetHealth(doc, unhealthy: input.unhealthy)

        // Each filter direction sorted and compiled once; a policy copies these and
        // sets each rule's session slot.
        // `list`: the rules as registered with the image's policies, which copy them
        // per source with each session's slot.
        struct CompiledDirection { var rules: [Rule]; var list: Int32; var table: [RuleTable.Rule] }
        var compiledCache: [String: [Direction: CompiledDirection]] = [:]
        func compiled(_ f: Filter, _ d: Direction) -> CompiledDirection {
            if let c = compiledCache[f.id]?[d] { return c }
            let rules = orderedRules(f.rules(d))
            let abi = rules.enumerated().map { rule($0.element, sessionSlot: 0, ruleIndex: UInt8(truncatingIfNeeded: $0.offset)) }
            let c = CompiledDirection(
                rules: rules, list: image.policies.addRuleList(abi),
                table: rules.map { RuleTable.Rule(priority: $0.priority, action: $0.action) })
            compiledCache[f.id, default: [:]][d] = c
            return c
        }
        image.rules.reserveCapacity(doc.sessions.count)
        image.policies.reserveCapacity(doc.sources.count * Direction.allCases.count)
        // Sessions, by stable slot.
        for s in doc.sessions {
            guard let slot = input.slots.sessions[s.id] else { throw CompileError("session \(s.id): no slot assigned") }
            guard let vni = s.vni, Quota.vni.contains(vni) else { throw CompileError("session \(s.id): no vni (assign one first)") }
            guard let ti = targetIndex[s.target] else { throw CompileError("session \(s.id): unknown target \(s.target)") }
            var v = mirror_session()
            v.vni = UInt32(vni)
            v.target_index = ti
            v.packet_length = UInt16(clamping: s.packetLength ?? 0)
            v.enabled = s.isEnabled ? 1 : 0
            if let t = image.targets[ti] {
                limits(s, target: t, encapsulation: doc.targets[Int(ti)].effectiveEncapsulation, into: &v)
            }
            image.sessions[slot] = v
            // Rule table for every session (also disabled ones: counters, explain).
            guard let f = filters[s.filter] else { throw CompileError("session \(s.id): unknown filter \(s.filter)") }
            // Compiled first: `compiled` registers new rule lists with the image.
            let inbound = compiled(f, .inbound).table, outbound = compiled(f, .outbound).table
            image.rules.set(sessionSlot: slot, sessionID: s.id, filterID: f.id, inbound: inbound, outbound: outbound)
        }

        // Policies: per source interface and direction, the enabled sessions' rules
        // flattened in evaluation order (SPEC §4), sessions as Oracle orders them; then
        // the disabled sessions' rules, in the same order, flagged: they decide nothing
        // and only say why a packet was not mirrored (session_disabled).
        let sessionsOfSource = Oracle.sessionsBySource(document: doc)
        var seenIfindex: [UInt32: String] = [:]
        for src in doc.sources {
            guard let ifindex = input.interfaceIndex(src.interface) else {
                image.unresolvedSources.append(src.id)
                continue
            }
            if let other = seenIfindex[ifindex] {
                throw CompileError("sources \(other) and \(src.id) share interface \(src.interface)")
            }
            seenIfindex[ifindex] = src.id
            guard let sourceSlot = input.slots.sources[src.id] else { throw CompileError("source \(src.id): no slot assigned") }
            let ofSource = sessionsOfSource[src.id] ?? []
            let sessions = ofSource.filter(\.isEnabled) + ofSource.filter { !$0.isEnabled }
            guard sessions.count <= Int(MAX_SESSIONS_PER_SOURCE) else {
                throw CompileError("source \(src.id): more than \(MAX_SESSIONS_PER_SOURCE) sessions")
            }
            for d in Direction.allCases {
                var parts: [(list: Int32, sessionSlot: UInt16, disabled: Bool)] = []
                for s in sessions {
                    guard let f = filters[s.filter], let slot = input.slots.sessions[s.id] else { continue }
                    let c = compiled(f, d)
                    guard c.rules.count <= Int(MAX_RULES_PER_DIRECTION) else {
                        throw CompileError("filter \(f.id): more than \(MAX_RULES_PER_DIRECTION) \(d) rules")
                    }
                    parts.append((c.list, slot, !s.isEnabled))
                }
                // No rules for this direction: no entry at all (PolicyList.append).
                try image.policies.append(sourceID: src.id, ifindex: ifindex, direction: d, sourceSlot: sourceSlot, sessions: parts)
            }
        }
        image.security = try SecurityCompiler.entries(doc, slots: input.slots, interfaceIndex: input.interfaceIndex)
        return image
    }

    /// SPEC §10 (bpf/limits.h): the session's sampling and rate limit, and what one of
    /// its copies puts on the wire for the bit limits (its session's and the host's):
    /// the inner frame cut as stage 2 will cut it, plus the outer headers of the
    /// target's family (the IPv6 ones for a target that mixes families: stage 1 does
    /// not know the backend, so it charges the larger).
    static func limits(
        _ s: Session, target t: mirror_target, encapsulation: Encapsulation, into v: inout mirror_session
    ) {
        v.sample_one_in = UInt16(clamping: s.sampleOneIn ?? 1)
        v.packet_cost_ns = cost(per: 1_000_000_000, s.rateLimit?.packetsPerSecond)
        v.bit_cost_fs = cost(per: 1_000_000_000_000_000, s.rateLimit?.bitsPerSecond)
        v.copy_overhead = UInt8(overhead(encapsulation, ipv6: t.family != 4))
        let lengths = [s.packetLength ?? 0, Int(t.max_inner_len)].filter { $0 > 0 }
        v.copy_max_len = UInt16(clamping: lengths.min() ?? 0)
    }

    /// What one unit costs at `rate` units a second, in 1/`per` s, rounded (bpf
    /// mirror_session.packet_cost_ns, bit_cost_fs); 0 for no limit.
    public static func cost(per: UInt64, _ rate: Int?) -> UInt64 {
        guard let rate, rate > 0 else { return 0 }
        let r = UInt64(rate)
        return max(1, (per + r / 2) / r)
    }

    /// Ascending priority; ties (refused by validation) keep document order, as the oracle does.
    public static func orderedRules(_ rules: [Rule]) -> [Rule] {
        rules.enumerated().sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }.map(\.element)
    }

    static func rule(_ r: Rule, sessionSlot: UInt16, ruleIndex: UInt8) -> mirror_rule {
        var m = mirror_rule()
        var flags: UInt32 = 0
        if r.action == .accept { flags |= MIRROR_RULE_ACCEPT.rawValue }
        if r.ethertype == .ipv6 { flags |= MIRROR_RULE_IPV6.rawValue }
        if case .number(let n) = r.protocol { m.protocol = n }
        let sp = r.sourcePorts ?? .all, dp = r.destinationPorts ?? .all
        (m.match_mask, m.match_value) = matchKey(r.ethertype, r.protocol, sp, dp)
        m.src_port_min = sp.lower; m.src_port_max = sp.upper
        m.dst_port_min = dp.lower; m.dst_port_max = dp.upper
        let (sa, sm) = addressAndMask(r.source)
        let (da, dm) = addressAndMask(r.destination)
        m.src_addr_be = sa.0; m.src_mask_be = sm.0; m.dst_addr_be = da.0; m.dst_mask_be = dm.0
        m.src_addr6_be = (sa.1, sa.2, sa.3); m.src_mask6_be = (sm.1, sm.2, sm.3)
        m.dst_addr6_be = (da.1, da.2, da.3); m.dst_mask6_be = (dm.1, dm.2, dm.3)
        m.session_slot = sessionSlot
        m.priority = UInt16(clamping: r.priority)
        m.rule_index = ruleIndex
        m.flags = UInt8(flags)
        return m
    }

    typealias Words = (UInt32, UInt32, UInt32, UInt32)

    /// Network-order words of the masked network address and of the mask; a missing
    /// CIDR or /0 has mask 0 (matches every address, as the oracle's `addressMatches`).
    /// The one-comparison key of a rule (filter, ACL or security group):
    /// (packet key & mask) == value holds the family always, the protocol when it is
    /// not `all`, and "ports visible" when a port range is not `all` (SPEC §4).
    static func matchKey(
        _ ethertype: Ethertype, _ proto: ProtocolSpec, _ sourcePorts: PortRange,
        _ destinationPorts: PortRange
    ) -> (mask: UInt16, value: UInt16) {
        var mask = UInt32(MIRROR_KEY_IPV4 | MIRROR_KEY_IPV6)
        var value = UInt32(ethertype == .ipv6 ? MIRROR_KEY_IPV6 : MIRROR_KEY_IPV4)
        if case .number(let n) = proto {
            mask |= UInt32(MIRROR_KEY_PROTOCOL_KNOWN | MIRROR_KEY_PROTOCOL)
            value |= UInt32(MIRROR_KEY_PROTOCOL_KNOWN) | UInt32(n)
        }
        if !sourcePorts.isAll || !destinationPorts.isAll {
            mask |= UInt32(MIRROR_KEY_PORTS)
            value |= UInt32(MIRROR_KEY_PORTS)
        }
        return (UInt16(mask), UInt16(value))
    }

    static func addressAndMask(_ cidr: CIDR?) -> (Words, Words) {
        guard let cidr, cidr.prefixLength > 0 else { return ((0, 0, 0, 0), (0, 0, 0, 0)) }
        var addr = [UInt8](repeating: 0, count: 16), mask = [UInt8](repeating: 0, count: 16)
        let bytes = cidr.address.bytes
        let width = bytes.count * 8
        let p = min(cidr.prefixLength, width)
        for i in 0..<bytes.count {
            let bits = max(0, min(8, p - 8 * i))
            let m: UInt8 = bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            mask[i] = m
            addr[i] = bytes[i] & m
        }
        return (networkWords(addr), networkWords(mask))
    }

    /// 16 bytes in network order → 4 words whose memory holds those bytes.
    static func networkWords(_ b: [UInt8]) -> Words {
        func w(_ i: Int) -> UInt32 {
            (UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])).bigEndian
        }
        return (w(0), w(4), w(8), w(12))
    }

    /// SPEC §10: mirror_target_health's down_mask of each target with a collector
    /// down, by target index: bit i for the i-th collector address. Only targets with
    /// a healthCheck can have one (the others are never probed).
    public static func targetHealth(_ doc: Document, unhealthy: (String) -> Set<IPAddress>) -> [UInt32: UInt32] {
        var out: [UInt32: UInt32] = [:]
        for (i, t) in doc.targets.enumerated() where t.healthCheck != nil {
            let down = unhealthy(t.id)
            guard !down.isEmpty else { continue }
            var mask: UInt32 = 0
            for (b, a) in t.collectorAddresses.enumerated() where down.contains(a) { mask |= 1 << UInt32(b) }
            if mask != 0 { out[UInt32(i)] = mask }
        }
        return out
    }

    /// SPEC §6, §11: what a copy adds to the path (outer IP, tunnel headers, the
    /// inner Ethernet header), by encapsulation and outer family.
    public static func overhead(_ e: Encapsulation, ipv6: Bool) -> Int {
        switch e {
        case .vxlan: return Int(ipv6 ? MIRROR_VXLAN_OVERHEAD_IPV6 : MIRROR_VXLAN_OVERHEAD_IPV4)
        case .geneve: return Int(ipv6 ? MIRROR_GENEVE_OVERHEAD_IPV6 : MIRROR_GENEVE_OVERHEAD_IPV4)
        case .erspan: return Int(ipv6 ? MIRROR_ERSPAN_OVERHEAD_IPV6 : MIRROR_ERSPAN_OVERHEAD_IPV4)
        }
    }

    static func encapsulationABI(_ e: Encapsulation) -> mirror_encapsulation {
        switch e {
        case .vxlan: return MIRROR_ENCAP_VXLAN
        case .geneve: return MIRROR_ENCAP_GENEVE
        case .erspan: return MIRROR_ENCAP_ERSPAN
        }
    }

    static func target(_ t: Target, pathMTU: (IPAddress) -> Int) throws(CompileError) -> mirror_target {
        let addresses = t.collectorAddresses
        guard !addresses.isEmpty, addresses.count <= Int(MAX_BACKENDS) else {
            throw CompileError("target \(t.id): needs 1 to \(MAX_BACKENDS) collector addresses")
        }
        var v = mirror_target()
        v.kind = UInt8(t.type == .nic ? MIRROR_TARGET_NIC.rawValue : MIRROR_TARGET_LOAD_BALANCER.rawValue)
        let anyV6 = addresses.contains { $0.ethertype == .ipv6 }
        let allV6 = addresses.allSatisfy { $0.ethertype == .ipv6 }
        v.family = allV6 ? 6 : (anyV6 ? 0 : 4)
        for (i, a) in addresses.enumerated() where a.ethertype == .ipv6 { v.backend_v6_mask |= 1 << UInt32(i) }
        v.backend_count = UInt8(addresses.count)
        let mtu = addresses.map(pathMTU).min() ?? 1500
        v.path_mtu = UInt16(clamping: mtu)
        v.encapsulation = UInt8(encapsulationABI(t.effectiveEncapsulation).rawValue)
        let overhead = Self.overhead(t.effectiveEncapsulation, ipv6: anyV6)
        // SPEC §6: the overhead counts the inner Ethernet header, so the inner frame
        // (from its Ethernet header) may be mtu - overhead + 14 bytes.
        v.max_inner_len = UInt16(clamping: max(0, mtu - overhead + 14))
        withUnsafeMutableBytes(of: &v.backends_be) { raw in
            let words = raw.bindMemory(to: UInt32.self)
            for (i, a) in addresses.enumerated() {
                var b = a.bytes
                if b.count == 4 { b += [UInt8](repeating: 0, count: 12) }
                let w = networkWords(b)
                words[4 * i] = w.0; words[4 * i + 1] = w.1; words[4 * i + 2] = w.2; words[4 * i + 3] = w.3
            }
        }
        return v
    }
}
