import Foundation
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

/// SPEC §5 in the kernel: security groups and network ACLs (bpf/security.h)
/// against the oracle (`SecurityPolicy`), through BPF_PROG_TEST_RUN.
enum SecurityDifferential {
    /// What the kernel should say for the oracle's decision `d`: the verdict outcome
    /// and, for suppression, the group/ACL and rule.
    static func agrees(_ d: Decision, kernel raw: UInt32, image: MapImage, ifindex: UInt32, direction: Direction) -> Bool {
        let v = Verdict(raw)
        switch d.reason {
        case .suppressedBySecurityGroup, .suppressedByAcl:
            guard let s = SecurityVerdict(raw: raw), s.bySecurityGroup == (d.reason == .suppressedBySecurityGroup) else { return false }
            return s.suppression(in: image, ifindex: ifindex, direction: direction) == d.suppression
        default:
            guard SecurityVerdict(raw: raw) == nil else { return false }
            var want = Differential.expected(d)
            if image.policy(ifindex: ifindex, direction: direction) == nil && want.0 != .accept && want.0 != .reject {
                want = (.noPolicy, nil, nil)
            }
            guard v.outcome == want.0 else { return false }
            guard v.decided else { return true }
            let info = image.rules[RuleKey(sessionSlot: v.sessionSlot, direction: direction, ruleIndex: v.ruleIndex)]
            return info?.sessionID == want.session && info?.priority == want.priority
        }
    }

    /// A document whose only filter holds the source's ACL and group rules as filter
    /// rules: RandomFrames then makes packets that hit them (allowed and denied).
    static func probe(_ doc: Document, source: Source) -> Document {
        var rules: [Rule] = []
        if let acl = doc.networkAcls.first(where: { $0.id == source.networkAcl }) {
            for r in acl.inbound + acl.outbound {
                rules.append(
                    Rule(
                        priority: 1, action: .accept, ethertype: r.ethertype, protocol: r.protocol, source: r.source,
                        destination: r.destination, sourcePorts: r.sourcePorts, destinationPorts: r.destinationPorts))
            }
        }
        for g in doc.securityGroups where (source.securityGroups ?? []).contains(g.id) {
            for r in g.rules {
                rules.append(
                    Rule(
                        priority: 1, action: .accept, ethertype: r.ethertype, protocol: r.protocol,
                        source: r.direction == .ingress ? r.remote : nil,
                        destination: r.direction == .egress ? r.remote : nil, destinationPorts: r.ports))
            }
        }
        var p = doc
        if !rules.isEmpty { p.filters = [Filter(id: "probe", inbound: rules)] }
        return p
    }

    static func label(_ raw: UInt32) -> String {
        guard let s = SecurityVerdict(raw: raw) else { return String(describing: Verdict(raw).outcome) }
        return s.bySecurityGroup ? "suppressedBySecurityGroup" : "suppressedByAcl"
    }

    static func frame(_ p: PacketDescription) -> [UInt8] { FrameBuilder.frame(for: p) }

    static func tcp(_ src: String, _ sport: UInt16, _ dst: String, _ dport: UInt16) -> PacketDescription {
        let s = IPAddress(src)!
        return PacketDescription(
            ethertype: s.ethertype, protocol: 6, source: s, destination: IPAddress(dst)!,
            sourcePort: sport, destinationPort: dport)
    }
}

extension KernelTests {
    @Suite struct SecurityDifferentialTests {
        @Test func kernelSecurityGroupsAndAclsAgreeWithTheOracleOnNewConnections() throws {
            let documents = 200, packetsPerDocument = 300
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                dp.slotGracePeriod = .zero
                var rng = SeededRandom(seed: 0x5ec_9a0c)
                var slots = SlotAssignment()
                var stats = RandomFrames.Stats()
                var outcomes: [String: Int] = [:]
                var failures = 0, compared = 0, refused = 0
                for _ in 0..<documents {
                    let doc = RandomDocuments.document(using: &rng, options: .init(securityPolicy: true))
                    slots = try SlotAssignment.assign(document: doc, previous: slots)
                    let ifindexes = Differential.interfaceIndexes(doc)
                    let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { ifindexes[$0] }))
                    try dp.apply(image)
                    for _ in 0..<packetsPerDocument {
                        guard let source = rng.pick(doc.sources) else { break }
                        let direction: Direction = rng.chance(0.5) ? .inbound : .outbound
                        let basis = rng.chance(0.5) ? SecurityDifferential.probe(doc, source: source) : doc
                        let frame = RandomFrames.frame(for: basis, using: &rng, stats: &stats)
                        let parsed = PacketParser.describe(frame: frame)
                        let oracle = Oracle.decide(document: doc, source: source.id, direction: direction, packet: parsed)
                        let ifindex = ifindexes[source.interface]!
                        let raw: UInt32
                        do {
                            raw = try dp.testRun(.test(direction), frame: frame, mark: ifindex).retval
                        } catch let e as DatapathError where e.errno == EINVAL && Differential.kernelRefuses(frame) {
                            refused += 1
                            continue
                        }
                        compared += 1
                        outcomes[SecurityDifferential.label(raw), default: 0] += 1
                        if !SecurityDifferential.agrees(oracle, kernel: raw, image: image, ifindex: ifindex, direction: direction) {
                            failures += 1
                            if failures <= 5 {
                                let enc = JSONEncoder()
                                enc.outputFormatting = [.sortedKeys]
                                let json = (try? enc.encode(doc)).map { String(decoding: $0, as: UTF8.self) } ?? "?"
                                print(
                                    """
                                    SECURITY DISAGREEMENT source \(source.id) \(direction)
                                      parsed: \(parsed)
                                      oracle: \(oracle.explanation) \(String(describing: oracle.suppression))
                                      kernel: \(SecurityDifferential.label(raw)) \(Verdict(raw)) \(String(describing: SecurityVerdict(raw: raw)))
                                      frame:  \(frame.hex)
                                      document: \(json)
                                    """)
                            }
                        }
                    }
                }
                // The test programs never open connections: every packet above was new.
                #expect(try dp.flowCount() == 0)
                print(
                    "security differential: \(compared) packets over \(documents) documents, \(failures) disagreements, "
                        + "\(refused) refused; kernel outcomes \(outcomes.sorted { $0.key < $1.key }); \(stats)")
                #expect(compared >= 50_000)
                #expect(failures == 0)
                #expect((outcomes["suppressedBySecurityGroup"] ?? 0) > 1000)
                #expect((outcomes["suppressedByAcl"] ?? 0) > 1000)
                #expect((outcomes["accept"] ?? 0) > 1000)
            }
        }

        /// SPEC §5 stateful: the reply of an allowed inbound connection is allowed
        /// outbound without an egress rule; a reply-looking packet with no connection
        /// is not; the ACL (stateless) still applies to established packets.
        @Test func establishedConnectionsPassTheGroupsButNotTheAcl() throws {
            var doc = Document()
            doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.10"))]
            doc.filters = [
                Filter(
                    id: "all",
                    inbound: [
                        Rule(priority: 1, action: .accept, ethertype: .ipv4),
                        Rule(priority: 2, action: .accept, ethertype: .ipv6),
                    ],
                    outbound: [
                        Rule(priority: 1, action: .accept, ethertype: .ipv4),
                        Rule(priority: 2, action: .accept, ethertype: .ipv6),
                    ])
            ]
            doc.securityGroups = [
                SecurityGroup(
                    id: "web",
                    rules: [
                        SecurityGroupRule(
                            direction: .ingress, priority: 10, action: .allow, ethertype: .ipv4, protocol: .tcp,
                            remote: CIDR(address: IPAddress("198.18.0.0")!, prefixLength: 15), ports: PortRange(80, 80)),
                        SecurityGroupRule(
                            direction: .ingress, priority: 11, action: .allow, ethertype: .ipv6, protocol: .tcp,
                            remote: CIDR(address: IPAddress("2001:db8::")!, prefixLength: 32), ports: PortRange(80, 80)),
                    ])
            ]
            doc.networkAcls = [
                NetworkAcl(
                    id: "edge",
                    inbound: [
                        AclRule(priority: 1, action: .allow, ethertype: .ipv4), AclRule(priority: 2, action: .allow, ethertype: .ipv6),
                    ],
                    outbound: [
                        AclRule(
                            priority: 1, action: .deny, ethertype: .ipv4,
                            destination: CIDR(address: IPAddress("198.18.9.0")!, prefixLength: 24)),
                        AclRule(priority: 2, action: .allow, ethertype: .ipv4), AclRule(priority: 3, action: .allow, ethertype: .ipv6),
                    ])
            ]
            doc.sources = [Source(id: "vm", interface: "tap0", securityGroups: ["web"], networkAcl: "edge")]
            doc.sessions = [Session(id: "s", priority: 1, filter: "all", sources: ["vm"], target: "t", vni: 7)]
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                var slots = SlotAssignment()
                let image = try Docs.compile(doc, slots: &slots, ifindex: 100)
                try dp.apply(image)
                func check(_ p: PacketDescription, _ d: Direction, _ c: ConnectionState, _ want: Decision.Reason) throws {
                    let raw = try dp.testRun(.test(d), frame: SecurityDifferential.frame(p), mark: 100).retval
                    let oracle = Oracle.decide(document: doc, source: "vm", direction: d, packet: p, connection: c)
                    #expect(oracle.reason == want, "oracle \(p) \(d) \(c): \(oracle.explanation)")
                    #expect(
                        SecurityDifferential.agrees(oracle, kernel: raw, image: image, ifindex: 100, direction: d),
                        "kernel \(Verdict(raw)) vs oracle \(oracle.explanation) for \(p) \(d) \(c)")
                }
                for (vm, peer, far) in [("198.19.0.5", "198.18.1.1", "198.18.9.9"), ("2001:db8:1::5", "2001:db8:2::1", "2001:db8:9::9")] {
                    let request = SecurityDifferential.tcp(peer, 40000, vm, 80)
                    let reply = SecurityDifferential.tcp(vm, 80, peer, 40000)
                    try check(request, .inbound, .new, .accepted)
                    // No connection behind it (the test run never records one): egress has no rule.
                    try check(reply, .outbound, .new, .suppressedBySecurityGroup)
                    try dp.recordFlow(
                        .init(
                            ifindex: 100, local: IPAddress(vm)!, remote: IPAddress(peer)!, protocol: 6,
                            localPort: 80, remotePort: 40000))
                    try check(reply, .outbound, .established, .accepted)
                    try check(request, .inbound, .established, .accepted)
                    // Another port pair is still no connection.
                    try check(SecurityDifferential.tcp(vm, 80, peer, 40001), .outbound, .new, .suppressedBySecurityGroup)
                    // The ACL is stateless: an established flow toward a denied remote is dropped by it.
                    if IPAddress(vm)!.ethertype == .ipv4 {
                        try dp.recordFlow(
                            .init(
                                ifindex: 100, local: IPAddress(vm)!, remote: IPAddress(far)!, protocol: 6,
                                localPort: 80, remotePort: 40000))
                        try check(SecurityDifferential.tcp(vm, 80, far, 40000), .outbound, .established, .suppressedByAcl)
                    }
                }
                // A connection on another source device is not this one's.
                try dp.clearFlows()
                try dp.recordFlow(
                    .init(
                        ifindex: 101, local: IPAddress("198.19.0.5")!, remote: IPAddress("198.18.1.1")!,
                        protocol: 6, localPort: 80, remotePort: 40000))
                try check(SecurityDifferential.tcp("198.19.0.5", 80, "198.18.1.1", 40000), .outbound, .new, .suppressedBySecurityGroup)
                try dp.clearFlows()
                #expect(try dp.flowCount() == 0)
            }
        }

        /// The chosen quotas fit the map value: 5 groups of 100 rules and 20 ACL
        /// rules per direction, decided by the very last rule of each.
        @Test func groupsAndAclAtTheirQuotasAreEvaluatedToTheLastRule() throws {
            var doc = Document()
            doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.10"))]
            doc.filters = [Filter(id: "all", inbound: [Rule(priority: 1, action: .accept, ethertype: .ipv4)])]
            // Priorities 1..100 in each group; every rule misses except group 4's priority 100.
            doc.securityGroups = (0..<Quota.securityGroupsPerSource).map { g in
                SecurityGroup(
                    id: "g\(g)",
                    rules: (1...Quota.rulesPerSecurityGroup).map { p in
                        SecurityGroupRule(
                            direction: .ingress, priority: p, action: .allow, ethertype: .ipv4, protocol: .tcp,
                            remote: nil, ports: g == 4 && p == 100 ? PortRange(443, 443) : PortRange(1, 2))
                    })
            }
            doc.networkAcls = [
                NetworkAcl(
                    id: "a",
                    inbound: (1...Quota.rulesPerAclDirection).map { p in
                        AclRule(
                            priority: p, action: .allow, ethertype: .ipv4, protocol: .tcp,
                            destinationPorts: p == Quota.rulesPerAclDirection ? PortRange(400, 500) : PortRange(1, 2))
                    })
            ]
            doc.sources = [Source(id: "vm", interface: "tap0", securityGroups: doc.securityGroups.map(\.id), networkAcl: "a")]
            doc.sessions = [Session(id: "s", priority: 1, filter: "all", sources: ["vm"], target: "t", vni: 7)]
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                var slots = SlotAssignment()
                let image = try Docs.compile(doc, slots: &slots, ifindex: 100)
                #expect(image.security.first { $0.direction == .inbound }?.groupRules.count == 500)
                try dp.apply(image)
                for (port, want) in [(UInt16(443), Decision.Reason.accepted), (450, .suppressedBySecurityGroup), (80, .suppressedByAcl)] {
                    let p = SecurityDifferential.tcp("198.18.1.1", 40000, "198.19.0.5", port)
                    let raw = try dp.testRun(.test(.inbound), frame: SecurityDifferential.frame(p), mark: 100).retval
                    let oracle = Oracle.decide(document: doc, source: "vm", direction: .inbound, packet: p)
                    #expect(oracle.reason == want, "\(oracle.explanation)")
                    #expect(
                        SecurityDifferential.agrees(oracle, kernel: raw, image: image, ifindex: 100, direction: .inbound),
                        "port \(port): kernel \(Verdict(raw)) vs \(oracle.explanation)")
                }
                // The worst case, for the record: a new flow decided by the 500th group rule.
                let worst = SecurityDifferential.frame(SecurityDifferential.tcp("198.18.1.1", 40000, "198.19.0.5", 443))
                let t = try dp.testRun(.test(.inbound), frame: worst, mark: 100, repeat: 2000)
                let nop = try dp.testRun(.testNop, frame: worst, mark: 100, repeat: 2000)
                try dp.recordFlow(
                    .init(
                        ifindex: 100, local: IPAddress("198.19.0.5")!, remote: IPAddress("198.18.1.1")!,
                        protocol: 6, localPort: 443, remotePort: 40000))
                let known = try dp.testRun(.test(.inbound), frame: worst, mark: 100, repeat: 2000)
                try dp.clearFlows()
                print(
                    "security groups at quota: a new flow decided by the last of 500 rules ~\(t.durationNs) ns/packet, "
                        + "an established one ~\(known.durationNs) ns (test-run baseline \(nop.durationNs) ns)")
            }
        }
    }
}

extension KernelTests {
    @Suite struct SecurityRelatedICMPTests {
        /// An ICMP error quoting `quoted` (an IP packet, from its IP header on):
        /// Ethernet + outer IP + ICMP header (type/code) + the quoted packet.
        static func icmpError(from src: String, to dst: String, type: UInt8, code: UInt8, quoting quoted: PacketDescription) -> [UInt8] {
            let outer = IPAddress(src)!
            let inner = Array(FrameBuilder.frame(for: quoted).dropFirst(14))
            let icmp: [UInt8] = [type, code, 0, 0, 0, 0, 0x05, 0xdc] + inner
            var f: [UInt8] = [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]
            if outer.ethertype == .ipv4 {
                f += [0x08, 0x00, 0x45, 0, UInt8((20 + icmp.count) >> 8), UInt8((20 + icmp.count) & 0xff), 0, 1, 0, 0, 64, 1, 0, 0]
                f += outer.bytes + IPAddress(dst)!.bytes
            } else {
                f += [0x86, 0xdd, 0x60, 0, 0, 0, UInt8(icmp.count >> 8), UInt8(icmp.count & 0xff), 58, 64]
                f += outer.bytes + IPAddress(dst)!.bytes
            }
            return f + icmp
        }

        /// SPEC §5: an ICMP error (path MTU, unreachable) about an allowed connection
        /// is part of it ("related"): not suppressed though no rule allows ICMP; the
        /// same error about no known connection is judged as ICMP and dropped.
        @Test func icmpErrorsOfAnAllowedConnectionAreNotSuppressed() throws {
            var doc = Document()
            doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.10"))]
            doc.filters = [
                Filter(
                    id: "all",
                    inbound: [
                        Rule(priority: 1, action: .accept, ethertype: .ipv4),
                        Rule(priority: 2, action: .accept, ethertype: .ipv6),
                    ],
                    outbound: [
                        Rule(priority: 1, action: .accept, ethertype: .ipv4),
                        Rule(priority: 2, action: .accept, ethertype: .ipv6),
                    ])
            ]
            // Only TCP 443 out and UDP 53 in; nothing for ICMP.
            doc.securityGroups = [
                SecurityGroup(
                    id: "g",
                    rules: [
                        SecurityGroupRule(
                            direction: .egress, priority: 1, action: .allow, ethertype: .ipv4, protocol: .tcp, ports: PortRange(443, 443)),
                        SecurityGroupRule(
                            direction: .egress, priority: 2, action: .allow, ethertype: .ipv6, protocol: .tcp, ports: PortRange(443, 443)),
                        SecurityGroupRule(
                            direction: .ingress, priority: 3, action: .allow, ethertype: .ipv4, protocol: .udp, ports: PortRange(53, 53)),
                    ])
            ]
            doc.sources = [Source(id: "vm", interface: "tap0", securityGroups: ["g"])]
            doc.sessions = [Session(id: "s", priority: 1, filter: "all", sources: ["vm"], target: "t", vni: 7)]
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                var slots = SlotAssignment()
                let image = try Docs.compile(doc, slots: &slots, ifindex: 100)
                try dp.apply(image)
                func verdict(_ f: [UInt8], _ d: Direction) throws -> String {
                    SecurityDifferential.label(try dp.testRun(.test(d), frame: f, mark: 100).retval)
                }
                // Fragmentation needed from a router, about the VM's TCP to 443 (v4), and packet too big (v6).
                let tcp4 = SecurityDifferential.tcp("198.19.0.5", 50000, "198.18.7.7", 443)
                let tcp6 = SecurityDifferential.tcp("2001:db8:1::5", 50000, "2001:db8:7::7", 443)
                let frag4 = Self.icmpError(from: "198.18.0.1", to: "198.19.0.5", type: 3, code: 4, quoting: tcp4)
                let big6 = Self.icmpError(from: "2001:db8::1", to: "2001:db8:1::5", type: 2, code: 0, quoting: tcp6)
                #expect(try verdict(frag4, .inbound) == "suppressedBySecurityGroup")
                #expect(try verdict(big6, .inbound) == "suppressedBySecurityGroup")
                try dp.recordFlow(
                    .init(
                        ifindex: 100, local: IPAddress("198.19.0.5")!, remote: IPAddress("198.18.7.7")!,
                        protocol: 6, localPort: 50000, remotePort: 443))
                try dp.recordFlow(
                    .init(
                        ifindex: 100, local: IPAddress("2001:db8:1::5")!, remote: IPAddress("2001:db8:7::7")!,
                        protocol: 6, localPort: 50000, remotePort: 443))
                #expect(try verdict(frag4, .inbound) == "accept")
                #expect(try verdict(big6, .inbound) == "accept")
                // The VM's port unreachable about an allowed inbound UDP query: outbound, related.
                let query = PacketDescription(
                    ethertype: .ipv4, protocol: 17, source: IPAddress("198.18.7.7"),
                    destination: IPAddress("198.19.0.5"), sourcePort: 40000, destinationPort: 53)
                let unreachable = Self.icmpError(from: "198.19.0.5", to: "198.18.7.7", type: 3, code: 3, quoting: query)
                #expect(try verdict(unreachable, .outbound) == "suppressedBySecurityGroup")
                try dp.recordFlow(
                    .init(
                        ifindex: 100, local: IPAddress("198.19.0.5")!, remote: IPAddress("198.18.7.7")!,
                        protocol: 17, localPort: 53, remotePort: 40000))
                #expect(try verdict(unreachable, .outbound) == "accept")
                // An echo reply is no error: a flow of its own, which nobody opened.
                let echo = PacketDescription(
                    ethertype: .ipv4, protocol: 1, source: IPAddress("198.18.7.7"), destination: IPAddress("198.19.0.5"))
                #expect(try verdict(FrameBuilder.frame(for: echo), .inbound) == "suppressedBySecurityGroup")
                try dp.clearFlows()
            }
        }
    }
}
