import MirrorCore

/// Region documents (SPEC §9) for tests and benchmarks: random small ones for
/// property tests, and one deterministic region at the region quotas.
public enum RegionDocuments {
    /// A random valid region (at most 10 sessions, so a nic target's quota holds): a `RandomDocuments` document whose sources are spread
    /// over 1...`maxHosts` hosts (`hv-0`, `hv-1`, ...). Some interface names repeat on
    /// different hosts, as on real hypervisors.
    public static func random(
        using rng: inout SeededRandom, maxHosts: Int = 4,
        options: RandomDocuments.Options = .init(securityPolicy: true, explicitVNIProbability: 0.5, maxSessions: 10, maxSources: 10)
    ) -> RegionDocument {
        var doc = RandomDocuments.document(using: &rng, options: options)
        let hostCount = rng.int(1...max(1, maxHosts))
        var hosts: [String: String] = [:]
        var perHost: [String: Int] = [:]
        for i in doc.sources.indices {
            let h = "hv-\(rng.int(0...(hostCount - 1)))"
            hosts[doc.sources[i].id] = h
            // Interfaces are per host: number them per host so they repeat across hosts.
            doc.sources[i].interface = "tap\(perHost[h, default: 0])"
            perHost[h, default: 0] += 1
        }
        return RegionDocument(document: doc, hosts: hosts)
    }

    /// A region at the quotas of SPEC §9 by default: `sessions` sessions of 10
    /// sources each (the §3 maximum), every source in two sessions, `sources` sources
    /// spread round-robin over `hosts` hosts (so each session spans 10 hosts), one
    /// filter with `rulesPerDirection` inbound and outbound rules and one nic target
    /// per session, 1,000 security groups and 100 network ACLs on the sources.
    public static func atQuotas(
        sessions: Int = Quota.sessionsPerRegion, sources: Int = Quota.sourcesPerRegion, hosts: Int = 1000,
        rulesPerDirection: Int = 2
    ) -> RegionDocument {
        var doc = Document()
        let groups = min(1000, max(1, sources))
        let acls = min(100, max(1, sources))
        for g in 0..<groups {
            doc.securityGroups.append(
                SecurityGroup(
                    id: "sg-\(g)",
                    rules: [
                        SecurityGroupRule(direction: .ingress, priority: 1, action: .allow, ethertype: .ipv4, protocol: .tcp),
                        SecurityGroupRule(direction: .egress, priority: 1, action: .allow, ethertype: .ipv4),
                    ]))
        }
        for a in 0..<acls {
            let rule = AclRule(priority: 1, action: .allow, ethertype: .ipv4)
            doc.networkAcls.append(NetworkAcl(id: "acl-\(a)", inbound: [rule], outbound: [rule]))
        }
        var hostOf: [String: String] = [:]
        hostOf.reserveCapacity(sources)
        for i in 0..<sources {
            let id = "src-\(i)"
            hostOf[id] = "hv-\(i % hosts)"
            doc.sources.append(
                Source(
                    id: id, interface: "tap\(i / hosts)", addresses: [.v4(0xC612_0000 &+ UInt32(i + 1))],
                    securityGroups: i % 3 == 0 ? ["sg-\(i % groups)"] : nil, networkAcl: i % 5 == 0 ? "acl-\(i % acls)" : nil))
        }
        let half = max(1, sessions / 2)
        for k in 0..<sessions {
            let rules = (0..<rulesPerDirection).map { r in
                Rule(
                    priority: r + 1, action: r % 4 == 3 ? .reject : .accept, ethertype: .ipv4, protocol: .tcp,
                    source: CIDR(address: .v4(0xC612_0000 | UInt32(r) << 8), prefixLength: 24),
                    destinationPorts: PortRange(UInt16(1000 + r), UInt16(2000 + r)))
            }
            doc.filters.append(Filter(id: "filter-\(k)", inbound: rules, outbound: rules))
            // Collectors from 2001:db8:ffff::/48, away from every source address.
            var collector = [UInt8](repeating: 0, count: 16)
            collector[0...5] = [0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff]
            collector[14] = UInt8((k + 1) >> 8 & 0xFF)
            collector[15] = UInt8((k + 1) & 0xFF)
            collector[13] = UInt8((k + 1) >> 16 & 0xFF)
            doc.targets.append(Target(id: "target-\(k)", type: .nic, address: .v6(collector)))
            // Session k and k + half share their sources (two sessions per source,
            // distinct priorities); consecutive sources sit on consecutive hosts.
            let first = (k % half) * 10
            var srcs: [String] = []
            for j in 0..<10 where !srcs.contains("src-\((first + j) % max(1, sources))") {
                srcs.append("src-\((first + j) % max(1, sources))")
            }
            doc.sessions.append(
                Session(
                    id: "session-\(k)", priority: k < half ? 1 : 2, filter: "filter-\(k)", sources: srcs,
                    target: "target-\(k)", vni: k + 1))
        }
        return RegionDocument(document: doc, hosts: hostOf)
    }
}
