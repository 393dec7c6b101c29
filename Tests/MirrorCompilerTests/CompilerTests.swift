import CMirrorABI
import MirrorCore
import MirrorTestSupport
import Testing

@testable import MirrorCompiler

@Suite struct CompilerTests {
    @Test func abiConstantsEqualTheQuotas() {
        #expect(Int(MAX_SESSIONS_PER_SOURCE) == Quota.sessionsPerSource)
        #expect(Int(MAX_RULES_PER_DIRECTION) == Quota.rulesPerFilterDirection)
        #expect(Int(MAX_SESSIONS) == Quota.sessionsPerAgent)
        #expect(Int(MAX_SOURCES) == Quota.sourcesPerAgent)
        #expect(Int(MAX_BACKENDS) == Quota.backendsPerLoadBalancer)
        #expect(Int(MAX_TARGETS) == Quota.targetsPerAgent)
        #expect(Int(MAX_RULES_PER_POLICY) == Quota.sessionsPerSource * Quota.rulesPerFilterDirection)
        #expect(Int(MIRROR_RULE_STATS_ENTRIES) == Quota.sessionsPerAgent * 2 * Quota.rulesPerFilterDirection)
        #expect(Int(MIRROR_SOURCE_STATS_ENTRIES) == Quota.sourcesPerAgent * 2)
        #expect(MemoryLayout<mirror_rule>.size == 88)
        #expect(MemoryLayout<mirror_policy_key>.size == 8)
    }

    static func cidr(_ s: String) -> CIDR {
        let p = s.split(separator: "/")
        return CIDR(address: IPAddress(String(p[0]))!, prefixLength: Int(p[1])!)
    }

    /// SPEC §4 seed example 3: sessions A (priority 1) and B (2) on one source. Disabled
    /// sessions are left out; the list is A's rules by priority, then B's.
    @Test func policyFlattensEnabledSessionsInPriorityOrderThenDisabledOnes() throws {
        var doc = Document()
        doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1"))]
        doc.sources = [Source(id: "eni", interface: "tap0")]
        doc.filters = [
            Filter(
                id: "fa",
                inbound: [
                    Rule(priority: 9, action: .reject, ethertype: .ipv4),
                    Rule(
                        priority: 2, action: .accept, ethertype: .ipv4, protocol: .tcp,
                        source: Self.cidr("172.16.0.0/24"), destination: Self.cidr("10.0.0.3/32"),
                        sourcePorts: PortRange(10000, 10001), destinationPorts: PortRange(80, 80)),
                ]),
            Filter(
                id: "fb",
                inbound: [
                    Rule(
                        priority: 1, action: .accept, ethertype: .ipv6, protocol: .all,
                        source: Self.cidr("2001:db8::/33"))
                ]),
            Filter(id: "fc", inbound: [Rule(priority: 1, action: .accept, ethertype: .ipv4)]),
        ]
        doc.sessions = [
            Session(id: "B", priority: 2, filter: "fb", sources: ["eni"], target: "t", vni: 2),
            Session(id: "A", priority: 1, filter: "fa", sources: ["eni"], target: "t", vni: 1, packetLength: 128),
            Session(id: "C", priority: 3, filter: "fc", sources: ["eni"], target: "t", vni: 3, enabled: false),
        ]
        let slots = try SlotAssignment.assign(document: doc)
        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { $0 == "tap0" ? 7 : nil }))
        #expect(image.policies.count == 1)  // outbound has no rules: no entry
        let p = try #require(image.policy(ifindex: 7, direction: .inbound))
        #expect(p.key(slot: 1).slot == 1 && p.key(slot: 1).ifindex == 7 && p.key(slot: 1).direction == 0)
        let rules = p.rules
        // A, B, then the disabled C, flagged: it decides nothing, only names session_disabled.
        #expect(rules.map(\.priority) == [2, 9, 1, 1])
        #expect(
            rules.map(\.session_slot) == [slots.sessions["A"]!, slots.sessions["A"]!, slots.sessions["B"]!, slots.sessions["C"]!])
        #expect(rules.map(\.rule_index) == [0, 1, 0, 0])
        let disabled = UInt8(MIRROR_RULE_DISABLED.rawValue)
        #expect(rules.map { $0.flags & disabled != 0 } == [false, false, false, true])
        // The seed's example rule, byte for byte.
        let r = rules[0]
        #expect(r.flags == UInt8(MIRROR_RULE_ACCEPT.rawValue))
        #expect(
            r.match_mask == UInt16(MIRROR_KEY_IPV4 | MIRROR_KEY_IPV6 | MIRROR_KEY_PROTOCOL_KNOWN | MIRROR_KEY_PROTOCOL | MIRROR_KEY_PORTS))
        #expect(r.match_value == UInt16(MIRROR_KEY_IPV4 | MIRROR_KEY_PROTOCOL_KNOWN | MIRROR_KEY_PORTS | 6))
        #expect(withUnsafeBytes(of: r.src_addr_be) { Array($0) } == [172, 16, 0, 0])
        #expect(withUnsafeBytes(of: r.src_mask_be) { Array($0) } == [255, 255, 255, 0])
        #expect(withUnsafeBytes(of: r.dst_addr_be) { Array($0) } == [10, 0, 0, 3])
        #expect((r.src_port_min, r.src_port_max, r.dst_port_min, r.dst_port_max) == (10000, 10001, 80, 80))
        // IPv6 /33: word 0 full, word 1 one bit.
        let v6 = rules[2]
        #expect(v6.flags == UInt8(MIRROR_RULE_ACCEPT.rawValue | MIRROR_RULE_IPV6.rawValue))
        #expect(withUnsafeBytes(of: v6.src_mask_be) { Array($0) } == [255, 255, 255, 255])
        #expect(withUnsafeBytes(of: v6.src_mask6_be) { Array($0) } == [128] + [UInt8](repeating: 0, count: 11))
        #expect(v6.match_mask == UInt16(MIRROR_KEY_IPV4 | MIRROR_KEY_IPV6))
        // Sessions: all three, with vni, target and packetLength.
        #expect(image.sessions[slots.sessions["A"]!]?.vni == 1)
        #expect(image.sessions[slots.sessions["A"]!]?.packet_length == 128)
        #expect(image.sessions[slots.sessions["C"]!]?.enabled == 0)
        #expect(image.rules[RuleKey(sessionSlot: slots.sessions["A"]!, direction: .inbound, ruleIndex: 1)]?.priority == 9)
    }

    /// The policy's prefilter (bpf/mirror_abi.h): the union bounds of the rules' port
    /// ranges, and whether every rule needs ports. One rule that leaves ports open
    /// opens the bounds; the kernel differential tests check that skipping by them
    /// never changes a decision.
    @Test func policyPrefilterBoundsThePortsEveryRuleCanMatch() throws {
        func policy(_ rules: [Rule]) throws -> mirror_policy {
            var doc = Document()
            doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1"))]
            doc.sources = [Source(id: "eni", interface: "tap0")]
            doc.filters = [Filter(id: "f", outbound: rules)]
            doc.sessions = [Session(id: "s", priority: 1, filter: "f", sources: ["eni"], target: "t", vni: 1)]
            let image = try Compiler.compile(
                .init(
                    document: doc, slots: try SlotAssignment.assign(document: doc),
                    interfaceIndex: { _ in 7 }))
            return try #require(image.policy(ifindex: 7, direction: .outbound)).value
        }
        let udp = (1...10).map {
            Rule(
                priority: $0, action: .accept, ethertype: .ipv4, protocol: .udp,
                destinationPorts: PortRange(UInt16(6000 + $0), UInt16(6000 + $0)))
        }
        let p = try policy(udp)
        #expect(p.needs_ports == 1)
        #expect((p.dst_port_lo, p.dst_port_hi, p.src_port_lo, p.src_port_hi) == (6001, 6010, 0, 65535))
        let open = try policy(udp.prefix(9) + [Rule(priority: 31, action: .reject, ethertype: .ipv6)])
        #expect(open.needs_ports == 0)
        #expect((open.dst_port_lo, open.dst_port_hi) == (0, 65535))
        let bySource = try policy([
            Rule(priority: 1, action: .accept, ethertype: .ipv4, protocol: .tcp, sourcePorts: PortRange(443, 443)),
            Rule(priority: 2, action: .accept, ethertype: .ipv4, protocol: .tcp, sourcePorts: PortRange(80, 80)),
        ])
        #expect(bySource.needs_ports == 1)
        #expect((bySource.src_port_lo, bySource.src_port_hi, bySource.dst_port_lo, bySource.dst_port_hi) == (80, 443, 0, 65535))

        // Issue 20: rules that differ by address or protocol bound those too, per
        // family; IPv6 by the first 64 bits of the address.
        func cidr(_ a: String, _ n: Int) -> CIDR { CIDR(address: IPAddress(a)!, prefixLength: n) }
        let byAddress = try policy(
            (1...9).map { Rule(priority: $0, action: .accept, ethertype: .ipv4, protocol: .udp, source: cidr("198.18.0.\($0)", 32)) }
                + [Rule(priority: 10, action: .reject, ethertype: .ipv6, protocol: .tcp, destination: cidr("2001:db8:ff::", 48))])
        #expect(byAddress.families == UInt8(MIRROR_POLICY_IPV4 | MIRROR_POLICY_IPV6))
        #expect((byAddress.protocol_lo, byAddress.protocol_hi) == (6, 17))
        #expect((byAddress.v4_src_lo, byAddress.v4_src_hi) == (0xC612_0001, 0xC612_0009))
        #expect((byAddress.v4_dst_lo, byAddress.v4_dst_hi) == (0, 0xFFFF_FFFF))
        #expect((byAddress.v6_src_lo, byAddress.v6_src_hi) == (0, UInt64.max))
        #expect((byAddress.v6_dst_lo, byAddress.v6_dst_hi) == (0x2001_0DB8_00FF_0000, 0x2001_0DB8_00FF_FFFF))
        let v4Only = try policy([Rule(priority: 1, action: .accept, ethertype: .ipv4, destination: cidr("198.19.7.0", 24))])
        #expect(v4Only.families == UInt8(MIRROR_POLICY_IPV4))
        #expect((v4Only.protocol_lo, v4Only.protocol_hi) == (0, UInt16(MIRROR_PROTO_UNKNOWN)))
        #expect((v4Only.v4_dst_lo, v4Only.v4_dst_hi) == (0xC613_0700, 0xC613_07FF))
    }

    @Test func targetsCarryBackendsAndTheMTULimit() throws {
        var doc = Document()
        doc.targets = [Target(id: "lb", type: .loadBalancer, backends: [IPAddress("192.0.2.1")!, IPAddress("2001:db8::9")!])]
        let image = try Compiler.compile(
            .init(
                document: doc, slots: SlotAssignment(), interfaceIndex: { _ in nil },
                pathMTU: { _ in 1500 }))
        let t = try #require(image.targets[0])
        #expect(t.kind == UInt8(MIRROR_TARGET_LOAD_BALANCER.rawValue))
        #expect(t.backend_count == 2 && t.family == 0 && t.backend_v6_mask == 2)
        #expect(t.path_mtu == 1500 && t.max_inner_len == 1500 - 70 + 14)
        let words = withUnsafeBytes(of: t.backends_be) { Array($0) }
        #expect(Array(words[0..<4]) == [192, 0, 2, 1])
        #expect(Array(words[16..<18]) == [0x20, 0x01])
    }

    /// SPEC §10: a session's limits and what one copy costs on the wire, from its
    /// target (family → overhead) and its packetLength; none of it without the fields.
    @Test func sessionsCarryTheirLimitsAndTheirCopysWireSize() throws {
        var doc = Document()
        doc.targets = [
            Target(id: "v4", type: .nic, address: IPAddress("192.0.2.1")),
            Target(id: "mixed", type: .loadBalancer, backends: [IPAddress("192.0.2.1")!, IPAddress("2001:db8::9")!]),
        ]
        doc.filters = [Filter(id: "f", inbound: [Rule(priority: 1, action: .accept, ethertype: .ipv4)])]
        doc.sources = [Source(id: "s", interface: "tap0")]
        doc.sessions = [
            Session(id: "plain", priority: 1, filter: "f", sources: ["s"], target: "v4", vni: 1),
            Session(
                id: "limited", priority: 2, filter: "f", sources: ["s"], target: "v4", vni: 2, packetLength: 200,
                rateLimit: RateLimit(packetsPerSecond: 1000, bitsPerSecond: 50_000_000), sampleOneIn: 10),
            Session(
                id: "mixed", priority: 3, filter: "f", sources: ["s"], target: "mixed", vni: 3,
                rateLimit: RateLimit(bitsPerSecond: 8000)),
        ]
        let slots = try SlotAssignment.assign(document: doc, previous: SlotAssignment())
        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in 7 }, pathMTU: { _ in 1500 }))
        let plain = try #require(image.sessions[slots.sessions["plain"]!])
        #expect(plain.sample_one_in == 1 && plain.packet_cost_ns == 0 && plain.bit_cost_fs == 0)
        #expect(plain.copy_overhead == 50 && plain.copy_max_len == 1500 - 50 + 14)
        let limited = try #require(image.sessions[slots.sessions["limited"]!])
        #expect(limited.sample_one_in == 10 && limited.packet_cost_ns == 1_000_000 && limited.bit_cost_fs == 20_000_000)
        #expect(limited.copy_overhead == 50 && limited.copy_max_len == 200)
        let mixed = try #require(image.sessions[slots.sessions["mixed"]!])
        #expect(mixed.copy_overhead == 70 && mixed.copy_max_len == 1500 - 70 + 14 && mixed.bit_cost_fs == 125_000_000_000)
        // Rounded to the nearest unit, never 0 (0 means no limit).
        #expect(Compiler.cost(per: 1_000_000_000, 3) == 333_333_333 && Compiler.cost(per: 1_000_000_000, 2_000_000_000) == 1)
    }

    @Test func slotsAreStableAcrossAppliesAndReused() throws {
        var doc = Document()
        doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1"))]
        doc.filters = [Filter(id: "f")]
        doc.sources = [Source(id: "a", interface: "tap0"), Source(id: "b", interface: "tap1")]
        doc.sessions = [
            Session(id: "x", priority: 1, filter: "f", sources: ["a"], target: "t", vni: 1),
            Session(id: "y", priority: 2, filter: "f", sources: ["b"], target: "t", vni: 2),
        ]
        let first = try SlotAssignment.assign(document: doc)
        #expect(first.sessions == ["x": 0, "y": 1])
        doc.sessions.removeFirst()
        doc.sessions.append(Session(id: "z", priority: 3, filter: "f", sources: ["a"], target: "t", vni: 3))
        let second = try SlotAssignment.assign(document: doc, previous: first)
        #expect(second.sessions == ["y": 1, "z": 0])
        #expect(second.freed(comparedTo: first).sessions == [0])
    }

    @Test func unresolvedInterfacesAreReportedAndMissingVNIsRefused() throws {
        var doc = Document()
        doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1"))]
        doc.filters = [Filter(id: "f", inbound: [Rule(priority: 1, action: .accept, ethertype: .ipv4)])]
        doc.sources = [Source(id: "a", interface: "gone0")]
        doc.sessions = [Session(id: "x", priority: 1, filter: "f", sources: ["a"], target: "t", vni: 1)]
        let slots = try SlotAssignment.assign(document: doc)
        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in nil }))
        #expect(image.unresolvedSources == ["a"] && image.policies.isEmpty)
        doc.sessions[0].vni = nil
        #expect(throws: CompileError.self) {
            try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in 1 }))
        }
    }
}

/// The policies are stored as parts (per session: its slot and its filter direction's
/// compiled rules) and each `mirror_policy` is built when read. Over random documents,
/// every value read must be what SPEC §4 says, byte for byte: the enabled sessions of
/// the source in Oracle order, each session's rules by priority with its slot and their
/// index, and a prefilter that bounds them all; and there is an entry exactly for each
/// present source and direction with rules.
@Suite struct PolicyListTests {
    @Test func everyPolicyReadIsItsSessionsRulesFlattenedWithItsPrefilter() throws {
        var rng = SeededRandom(seed: 0x9011c1e5)
        var checked = 0
        for _ in 0..<150 {
            let doc = RandomDocuments.document(using: &rng)
            let slots = try SlotAssignment.assign(document: doc)
            // Every fourth source's interface is absent: it gets no entry.
            var present: [String: UInt32] = [:]
            for (i, src) in doc.sources.enumerated() where i % 4 != 3 { present[src.interface] = UInt32(100 + i) }
            let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { present[$0] }))
            var filters: [String: Filter] = [:]
            for f in doc.filters { filters[f.id] = f }
            let bySource = Oracle.sessionsBySource(document: doc)
            var expectedEntries = 0
            for src in doc.sources {
                guard let ifindex = present[src.interface] else { continue }
                for d in Direction.allCases {
                    // The enabled sessions' rules in order, then the disabled ones', flagged.
                    var want: [mirror_rule] = []
                    let sessions = bySource[src.id] ?? []
                    for s in sessions.filter(\.isEnabled) + sessions.filter({ !$0.isEnabled }) {
                        let rules = Compiler.orderedRules(filters[s.filter]!.rules(d))
                        for (i, r) in rules.enumerated() {
                            var m = Compiler.rule(r, sessionSlot: slots.sessions[s.id]!, ruleIndex: UInt8(i))
                            if !s.isEnabled { m.flags |= UInt8(MIRROR_RULE_DISABLED.rawValue) }
                            want.append(m)
                        }
                    }
                    let entry = image.policy(ifindex: ifindex, direction: d)
                    if want.isEmpty { #expect(entry == nil); continue }
                    expectedEntries += 1
                    let e = try #require(entry)
                    #expect(e.sourceID == src.id)
                    #expect(e.value.source_slot == slots.sources[src.id]!)
                    #expect(Int(e.value.rule_count) == want.count)
                    let got = e.rules
                    #expect(got.count == want.count)
                    for (g, w) in zip(got, want) {
                        #expect(withUnsafeBytes(of: g) { Array($0) } == withUnsafeBytes(of: w) { Array($0) })
                    }
                    let ports = UInt32(MIRROR_KEY_PORTS)
                    #expect((e.value.needs_ports == 1) == want.allSatisfy { UInt32($0.match_mask) & ports != 0 })
                    #expect(e.value.src_port_lo == want.map(\.src_port_min).min()!)
                    #expect(e.value.src_port_hi == want.map(\.src_port_max).max()!)
                    #expect(e.value.dst_port_lo == want.map(\.dst_port_min).min()!)
                    #expect(e.value.dst_port_hi == want.map(\.dst_port_max).max()!)
                    checked += 1
                }
            }
            #expect(image.policies.count == expectedEntries)
        }
        #expect(checked > 300)
    }
}
