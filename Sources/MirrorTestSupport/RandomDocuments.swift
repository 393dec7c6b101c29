import MirrorCore

/// Random VALID documents and random packets biased to hit their rules, for property
/// tests against the oracle and for the kernel differential test. Every document this
/// returns passes `DocumentParser` validation (a core test asserts it).
///
/// Addresses come only from documentation and benchmarking ranges: sources and rule
/// CIDRs from 198.18.0.0/15 and 2001:db8::/32, collectors from 192.0.2.0/24 and
/// 203.0.113.0/24 (and 2001:db8:ffff::/48).
public enum RandomDocuments {
    public struct Options: Sendable {
        /// Also generate security groups and network ACLs and attach them to sources.
        public var securityPolicy: Bool
        /// Probability that a session is given an explicit `vni`; the rest have `vni: nil`
        /// (run `VNIAssigner` to fill them). 1 = every session has one.
        public var explicitVNIProbability: Double
        public var maxSessions: Int
        public var maxSources: Int
        /// At most `Quota.rulesPerFilterDirection`.
        public var maxRulesPerDirection: Int

        public init(
            securityPolicy: Bool = false, explicitVNIProbability: Double = 1,
            maxSessions: Int = 8, maxSources: Int = 4, maxRulesPerDirection: Int = Quota.rulesPerFilterDirection
        ) {
            self.securityPolicy = securityPolicy
            self.explicitVNIProbability = explicitVNIProbability
            self.maxSessions = maxSessions
            self.maxSources = maxSources
            self.maxRulesPerDirection = min(max(0, maxRulesPerDirection), Quota.rulesPerFilterDirection)
        }
        public static let `default` = Options()
    }

    // MARK: documents

    public static func document(using rng: inout SeededRandom) -> Document {
        document(using: &rng, options: .default)
    }

    public static func document(using rng: inout SeededRandom, options: Options) -> Document {
        var doc = Document()

        // Filters: up to 10 rules per direction, drawn from a small pool of CIDRs and
        // ports so rules overlap and packets often match several of them.
        let filterCount = rng.int(1...4)
        for f in 0..<filterCount {
            doc.filters.append(
                Filter(
                    id: "filter-\(f)", description: rng.chance(0.2) ? "random filter \(f)" : nil,
                    inbound: rules(using: &rng, max: options.maxRulesPerDirection),
                    outbound: rules(using: &rng, max: options.maxRulesPerDirection)))
        }

        // Targets: collectors never collide with source addresses (different ranges).
        var usedCollectors = Set<IPAddress>()
        let targetCount = rng.int(1...3)
        for t in 0..<targetCount {
            if rng.chance(0.6) {
                let a = freshCollector(&rng, &usedCollectors)
                doc.targets.append(Target(id: "target-\(t)", type: .nic, address: a))
            } else {
                let n = rng.int(1...4)
                let backends = (0..<n).map { _ in freshCollector(&rng, &usedCollectors) }
                doc.targets.append(Target(id: "target-\(t)", type: .loadBalancer, backends: backends))
            }
        }

        // Security groups and ACLs (SPEC §5).
        if options.securityPolicy {
            for g in 0..<rng.int(1...3) {
                var used = Set<Int>()
                let rules: [SecurityGroupRule] = (0..<rng.int(0...6)).map { _ in
                    let e: Ethertype = rng.chance(0.7) ? .ipv4 : .ipv6
                    let p = protocolFor(e, &rng)
                    return SecurityGroupRule(
                        direction: rng.chance(0.5) ? .ingress : .egress,
                        priority: uniquePriority(1...100, &used, &rng),
                        action: rng.chance(0.7) ? .allow : .deny, ethertype: e, protocol: p,
                        remote: maybeCIDR(e, &rng),
                        ports: p.hasPorts ? maybePorts(&rng) : nil)
                }
                doc.securityGroups.append(SecurityGroup(id: "sg-\(g)", rules: rules))
            }
            for a in 0..<rng.int(1...2) {
                doc.networkAcls.append(NetworkAcl(id: "acl-\(a)", inbound: aclRules(&rng), outbound: aclRules(&rng)))
            }
        }

        // Sources: ENI addresses inside the rule CIDR pools so traffic to/from them matches.
        let sourceCount = rng.int(1...max(1, options.maxSources))
        var usedSourceAddresses = Set<IPAddress>()
        for s in 0..<sourceCount {
            var addresses: [IPAddress]? = nil
            if rng.chance(0.7) {
                var list: [IPAddress] = []
                for _ in 0..<rng.int(1...2) {
                    let a = rng.chance(0.7) ? randomV4(&rng) : randomV6(&rng)
                    if usedSourceAddresses.insert(a).inserted { list.append(a) }
                }
                addresses = list
            }
            var groups: [String]? = nil
            var acl: String? = nil
            if options.securityPolicy {
                if rng.chance(0.6) {
                    let ids = doc.securityGroups.map(\.id)
                    groups = Array(ids.shuffled(using: &rng).prefix(rng.int(1...ids.count)))
                }
                if rng.chance(0.5) { acl = rng.pick(doc.networkAcls.map(\.id)) }
            }
            doc.sources.append(
                Source(
                    id: "source-\(s)", interface: "tap\(s)", addresses: addresses,
                    securityGroups: groups, networkAcl: acl,
                    enforce: rng.chance(0.2) ? rng.chance(0.5) : nil))
        }

        // Sessions: several share sources (at most 3 sessions per source, SPEC §3).
        // Priorities are distinct across the document, so sessions sharing a source
        // never tie; they are drawn from a small range so their order is scrambled.
        var perSource = [String: Int]()
        var priorities = Set<Int>()
        var vnis = Set<Int>()
        let sessionCount = rng.int(1...max(1, options.maxSessions))
        for i in 0..<sessionCount {
            let candidates = doc.sources.map(\.id).filter { perSource[$0, default: 0] < Quota.sessionsPerSource }
            if candidates.isEmpty { break }
            let chosen = Array(candidates.shuffled(using: &rng).prefix(rng.int(1...min(3, candidates.count))))
            for s in chosen { perSource[s, default: 0] += 1 }
            var vni: Int? = nil
            if rng.chance(options.explicitVNIProbability) {
                repeat { vni = rng.int(1...5000) } while !vnis.insert(vni!).inserted
            }
            doc.sessions.append(
                Session(
                    id: "session-\(i)", priority: uniquePriority(1...64, &priorities, &rng),
                    filter: rng.pick(doc.filters.map(\.id)) ?? "filter-0", sources: chosen,
                    target: rng.pick(doc.targets.map(\.id)) ?? "target-0", vni: vni,
                    enabled: rng.chance(0.8) ? (rng.chance(0.5) ? true : nil) : false,
                    packetLength: rng.chance(0.2) ? rng.int(Quota.packetLength) : nil))
        }
        return doc
    }

    static func rules(using rng: inout SeededRandom, max: Int) -> [Rule] {
        var used = Set<Int>()
        return (0..<rng.int(0...max)).map { _ in
            let e: Ethertype = rng.chance(0.65) ? .ipv4 : .ipv6
            let p = protocolFor(e, &rng)
            return Rule(
                priority: uniquePriority(1...40, &used, &rng), action: rng.chance(0.6) ? .accept : .reject,
                ethertype: e, protocol: p, source: maybeCIDR(e, &rng), destination: maybeCIDR(e, &rng),
                sourcePorts: p.hasPorts ? maybePorts(&rng) : nil,
                destinationPorts: p.hasPorts ? maybePorts(&rng) : nil)
        }
    }

    static func aclRules(_ rng: inout SeededRandom) -> [AclRule] {
        var used = Set<Int>()
        return (0..<rng.int(0...6)).map { _ in
            let e: Ethertype = rng.chance(0.7) ? .ipv4 : .ipv6
            let p = protocolFor(e, &rng)
            return AclRule(
                priority: uniquePriority(1...50, &used, &rng), action: rng.chance(0.75) ? .allow : .deny,
                ethertype: e, protocol: p, source: maybeCIDR(e, &rng), destination: maybeCIDR(e, &rng),
                sourcePorts: p.hasPorts ? maybePorts(&rng) : nil,
                destinationPorts: p.hasPorts ? maybePorts(&rng) : nil)
        }
    }

    static func uniquePriority(_ range: ClosedRange<Int>, _ used: inout Set<Int>, _ rng: inout SeededRandom) -> Int {
        // Callers never ask for more priorities than the range holds.
        for _ in 0..<1000 {
            let p = rng.int(range)
            if used.insert(p).inserted { return p }
        }
        let p = range.first { !used.contains($0) } ?? range.upperBound
        used.insert(p)
        return p
    }

    /// tcp/udp by name or number, `all`, the family's ICMP, or another number (GRE).
    static func protocolFor(_ e: Ethertype, _ rng: inout SeededRandom) -> ProtocolSpec {
        switch rng.int(0...9) {
        case 0, 1: return .all
        case 2, 3, 4: return .tcp
        case 5, 6: return .udp
        case 7: return e == .ipv4 ? .icmp : .icmpv6
        case 8: return .number(47)
        default: return rng.chance(0.5) ? .number(6) : .number(17)
        }
    }

    /// Prefixes nest inside each other (198.18.0.0/15 ⊃ /16 ⊃ /24 ⊃ /28 ⊃ /32) so
    /// rules overlap. nil = every address of the family.
    static func maybeCIDR(_ e: Ethertype, _ rng: inout SeededRandom) -> CIDR? {
        if rng.chance(0.3) { return nil }
        if e == .ipv4 {
            if rng.chance(0.05) { return CIDR.all(.ipv4) }
            let prefix = rng.pick([15, 16, 24, 24, 28, 30, 32])!
            return CIDR(address: CIDR.masked(randomV4(&rng), prefix), prefixLength: prefix)
        }
        if rng.chance(0.05) { return CIDR.all(.ipv6) }
        let prefix = rng.pick([32, 48, 64, 120, 126, 128])!
        return CIDR(address: CIDR.masked(randomV6(&rng), prefix), prefixLength: prefix)
    }

    static let portEdges: [UInt16] = [0, 1, 22, 53, 80, 443, 1023, 1024, 8080, 10000, 10001, 65535]

    static func maybePorts(_ rng: inout SeededRandom) -> PortRange? {
        switch rng.int(0...5) {
        case 0: return nil
        case 1: return .all
        case 2: let p = rng.pick(portEdges)!; return PortRange(p, p)
        default:
            let a = rng.pick(portEdges)!, b = rng.pick(portEdges)!
            return PortRange(min(a, b), max(a, b))
        }
    }

    /// 198.18.0.0/15, concentrated in a few /24s and low host numbers so that
    /// independently drawn addresses and CIDRs often coincide.
    static func randomV4(_ rng: inout SeededRandom) -> IPAddress {
        let third = UInt32(rng.pick([0, 1, 2, 255])!)
        let second = UInt32(rng.chance(0.8) ? 18 : 19)
        let host = UInt32(rng.chance(0.7) ? rng.int(0...15) : rng.int(0...255))
        return .v4(198 << 24 | second << 16 | third << 8 | host)
    }

    static func randomV6(_ rng: inout SeededRandom) -> IPAddress {
        var b: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 12)
        b[5] = UInt8(rng.int(0...2))
        b[7] = UInt8(rng.int(0...1))
        b[15] = UInt8(rng.chance(0.7) ? rng.int(0...15) : rng.int(0...255))
        return .v6(b)
    }

    static func freshCollector(_ rng: inout SeededRandom, _ used: inout Set<IPAddress>) -> IPAddress {
        while true {
            let a: IPAddress
            if rng.chance(0.8) {
                let net: UInt32 = rng.chance(0.5) ? (192 << 24 | 0 << 16 | 2 << 8) : (203 << 24 | 0 << 16 | 113 << 8)
                a = .v4(net | UInt32(rng.int(1...254)))
            } else {
                a = .v6([0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff] + Array(repeating: 0, count: 9) + [UInt8(rng.int(1...255))])
            }
            if used.insert(a).inserted { return a }
        }
    }

    // MARK: packets

    /// A packet biased to hit the document's rules: usually built from one of its rules
    /// (addresses inside its CIDRs, ports at or next to its range edges), sometimes
    /// a later fragment, sometimes non-IP, sometimes unrelated.
    public static func packet(for document: Document, using rng: inout SeededRandom) -> PacketDescription {
        if rng.chance(0.04) { return .notIP }
        let allRules = document.filters.flatMap { $0.inbound + $0.outbound }
            .map {
                (
                    e: $0.ethertype, p: $0.protocol, s: $0.source, d: $0.destination,
                    sp: $0.sourcePorts, dp: $0.destinationPorts
                )
            }
        let e: Ethertype
        var proto: UInt8?
        var src: IPAddress, dst: IPAddress
        var sport: UInt16?, dport: UInt16?
        if let r = rng.chance(0.85) ? rng.pick(allRules) : nil {
            e = r.e
            proto = protocolNumber(r.p, e, &rng)
            src = address(in: r.s, e, &rng)
            dst = address(in: r.d, e, &rng)
            sport = port(near: r.sp, &rng)
            dport = port(near: r.dp, &rng)
        } else {
            e = rng.chance(0.6) ? .ipv4 : .ipv6
            proto = protocolNumber(.all, e, &rng)
            src = e == .ipv4 ? randomV4(&rng) : randomV6(&rng)
            dst = e == .ipv4 ? randomV4(&rng) : randomV6(&rng)
            sport = rng.pick(portEdges)
            dport = rng.pick(portEdges)
        }
        // Packets from or to a source ENI's own address, as real traffic is.
        if rng.chance(0.3), let a = rng.pick(document.sources.flatMap { $0.addresses ?? [] }.filter { $0.ethertype == e }) {
            if rng.chance(0.5) { src = a } else { dst = a }
        }
        if rng.chance(0.05) { proto = nil }  // transport not found (long IPv6 extension chain)
        var later = false
        if rng.chance(0.1) { later = true }
        if later || !(proto == 6 || proto == 17) { sport = nil; dport = nil }
        return PacketDescription(
            ethertype: e, protocol: proto, source: src, destination: dst,
            sourcePort: sport, destinationPort: dport, laterFragment: later)
    }

    static func protocolNumber(_ p: ProtocolSpec, _ e: Ethertype, _ rng: inout SeededRandom) -> UInt8 {
        if case .number(let n) = p, rng.chance(0.85) { return n }
        return rng.pick([6, 6, 17, 17, e == .ipv4 ? 1 : 58, 47, 132])!
    }

    /// Inside the CIDR most of the time; otherwise just outside or anywhere.
    static func address(in cidr: CIDR?, _ e: Ethertype, _ rng: inout SeededRandom) -> IPAddress {
        let any = e == .ipv4 ? randomV4(&rng) : randomV6(&rng)
        guard let cidr, cidr.ethertype == e, rng.chance(0.85) else { return any }
        // Keep the network bits, take host bits from a random address.
        switch (cidr.address, any) {
        case (.v4(let net), .v4(let r)):
            let p = cidr.prefixLength
            let mask: UInt32 = p == 0 ? 0 : ~UInt32(0) << UInt32(32 - p)
            var host = r & ~mask
            if rng.chance(0.2) { host = rng.chance(0.5) ? 0 : ~mask }  // range edges
            return .v4(net | host)
        case (.v6(let net), .v6(let r)):
            var b = net
            for i in 0..<16 {
                let bits = max(0, min(8, cidr.prefixLength - 8 * i))
                let mask: UInt8 = bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
                b[i] = (net[i] & mask) | (r[i] & ~mask)
            }
            return .v6(b)
        default:
            return any
        }
    }

    /// A port at, just inside or just outside the range's edges.
    static func port(near range: PortRange?, _ rng: inout SeededRandom) -> UInt16 {
        guard let range, !range.isAll, rng.chance(0.9) else { return rng.pick(portEdges)! }
        switch rng.int(0...4) {
        case 0: return range.lower
        case 1: return range.upper
        case 2: return range.lower == 0 ? 0 : range.lower - 1
        case 3: return range.upper == 65535 ? 65535 : range.upper + 1
        default: return UInt16(rng.int(Int(range.lower)...Int(range.upper)))
        }
    }
}
