import MirrorCore
import Testing

// SPEC §3: for each quota, a document exactly at the limit validates and one over the
// limit fails, naming the quota and the path of the first element over it.

private func ip4(_ n: Int) -> IPAddress { .v4(UInt32(198) << 24 | UInt32(18) << 16 | UInt32(n & 0xFFFF)) }

/// `n` sources named s0…, on tap0…
private func sources(_ n: Int) -> [Source] { (0..<n).map { Source(id: "s\($0)", interface: "tap\($0)") } }

private func expectQuota(
    _ atLimit: Document, _ over: Document, path: String, quota: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(DocumentParser.validate(atLimit) == [], "at the limit must validate", sourceLocation: sourceLocation)
    let errs = DocumentParser.validate(over)
    #expect(
        errs.contains { $0.path == path && $0.message.contains(quota) },
        "expected \(path) naming \(quota), got \(errs.prefix(5))", sourceLocation: sourceLocation)
}

@Test func quotaSourcesPerSessionIsTen() {
    var doc = Document(
        filters: [Filter(id: "f")], targets: [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1")!)],
        sources: sources(11))
    doc.sessions = [Session(id: "x", priority: 1, filter: "f", sources: (0..<10).map { "s\($0)" }, target: "t")]
    var over = doc
    over.sessions[0].sources.append("s10")
    expectQuota(doc, over, path: "sessions[0].sources[10]", quota: "sources per session")
}

@Test func quotaSessionsPerSourceIsThree() {
    var doc = Document(
        filters: [Filter(id: "f")], targets: [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1")!)],
        sources: sources(1))
    doc.sessions = (1...3).map { Session(id: "x\($0)", priority: $0, filter: "f", sources: ["s0"], target: "t") }
    var over = doc
    over.sessions.append(Session(id: "x4", priority: 4, filter: "f", sources: ["s0"], target: "t"))
    expectQuota(doc, over, path: "sessions[3].sources[0]", quota: "sessions per source")
}

@Test func quotaTargetsPerSessionIsOne() {
    let json = baseJSON().setting("sessions[0].target", .array([str("t1"), str("lb")]))
    #expect(errors(json).contains { $0.path == "sessions[0].target" && $0.message.contains("targets per session") })
}

@Test func quotaFiltersPerSessionIsOne() {
    let json = baseJSON().setting("sessions[0].filter", .array([str("f1"), str("f2")]))
    #expect(errors(json).contains { $0.path == "sessions[0].filter" && $0.message.contains("filters per session") })
}

private func sessionsOnTarget(_ n: Int, _ target: Target) -> Document {
    Document(
        filters: [Filter(id: "f")], targets: [target], sources: sources(n),
        sessions: (0..<n).map { Session(id: "x\($0)", priority: 1, filter: "f", sources: ["s\($0)"], target: target.id) })
}

@Test func quotaSessionsPerNicTargetIsTen() {
    let t = Target(id: "t", type: .nic, address: IPAddress("192.0.2.1")!)
    expectQuota(sessionsOnTarget(10, t), sessionsOnTarget(11, t), path: "sessions[10].target", quota: "sessions per target")
}

@Test func quotaSessionsPerLoadBalancerTargetIsTwoHundred() {
    let t = Target(id: "t", type: .loadBalancer, backends: [IPAddress("192.0.2.1")!])
    expectQuota(sessionsOnTarget(200, t), sessionsOnTarget(201, t), path: "sessions[200].target", quota: "sessions per target")
}

/// `n` sessions on filter "f", spread over load-balancer targets of 200 sessions each.
private func sessionsOnFilter(_ n: Int, filters: Int = 1) -> Document {
    let targets = (0..<(n + 199) / 200).map { Target(id: "t\($0)", type: .loadBalancer, backends: [IPAddress("192.0.2.1")!]) }
    let srcs = (0..<(n + 2) / 3).map { Source(id: "s\($0)", interface: "t\($0)") }
    return Document(
        filters: (0..<filters).map { Filter(id: "f\($0)") }, targets: targets, sources: srcs,
        sessions: (0..<n).map {
            Session(id: "x\($0)", priority: $0 % 3 + 1, filter: "f\($0 / 1000)", sources: ["s\($0 / 3)"], target: "t\($0 / 200)")
        })
}

@Test func quotaSessionsPerFilterIsOneThousand() {
    var over = sessionsOnFilter(1000)
    over.targets.append(Target(id: "extra-t", type: .nic, address: IPAddress("192.0.2.2")!))
    over.sources.append(Source(id: "extra-s", interface: "extra"))
    over.sessions.append(Session(id: "extra", priority: 1, filter: "f0", sources: ["extra-s"], target: "extra-t"))
    expectQuota(sessionsOnFilter(1000), over, path: "sessions[1000].filter", quota: "sessions per filter")
}

@Test func quotaSessionsPerAgentIsTwentyThousand() {
    let atLimit = sessionsOnFilter(20000, filters: 20)
    var over = atLimit
    over.filters.append(Filter(id: "f20"))
    over.targets.append(Target(id: "extra-t", type: .nic, address: IPAddress("192.0.2.2")!))
    over.sources.append(Source(id: "extra-s", interface: "extra"))
    over.sessions.append(Session(id: "extra", priority: 1, filter: "f20", sources: ["extra-s"], target: "extra-t"))
    expectQuota(atLimit, over, path: "sessions[20000]", quota: "sessions per agent")
}

private func rules(_ n: Int) -> [Rule] { (1...n).map { Rule(priority: $0, action: .accept, ethertype: .ipv4) } }

@Test func quotaRulesPerFilterIsTenInboundPlusTenOutbound() {
    let atLimit = Document(filters: [Filter(id: "f", inbound: rules(10), outbound: rules(10))])
    expectQuota(
        atLimit, Document(filters: [Filter(id: "f", inbound: rules(11), outbound: rules(10))]),
        path: "filters[0].inbound[10]", quota: "rules per filter")
    expectQuota(
        atLimit, Document(filters: [Filter(id: "f", inbound: rules(10), outbound: rules(11))]),
        path: "filters[0].outbound[10]", quota: "rules per filter")
}

@Test func quotaBackendsPerLoadBalancerIsSixteen() {
    let b = (1...17).map { IPAddress.v4(UInt32(192) << 24 | UInt32(2) << 8 | UInt32($0)) }
    expectQuota(
        Document(targets: [Target(id: "t", type: .loadBalancer, backends: Array(b.prefix(16)))]),
        Document(targets: [Target(id: "t", type: .loadBalancer, backends: b)]),
        path: "targets[0].backends[16]", quota: "backends per load balancer")
}

@Test func chosenQuotaSecurityGroupsPerSourceIsFive() {
    let groups = (0..<6).map { SecurityGroup(id: "g\($0)") }
    let atLimit = Document(
        sources: [Source(id: "s", interface: "tap0", securityGroups: (0..<5).map { "g\($0)" })],
        securityGroups: groups)
    var over = atLimit
    over.sources[0].securityGroups?.append("g5")
    expectQuota(atLimit, over, path: "sources[0].securityGroups[5]", quota: "security groups per source")
}

@Test func chosenQuotaRulesPerSecurityGroupIsOneHundred() {
    let ingress = (1...100).map { SecurityGroupRule(direction: .ingress, priority: $0, action: .allow, ethertype: .ipv4) }
    let atLimit = Document(securityGroups: [SecurityGroup(id: "g", rules: ingress)])
    var over = atLimit
    over.securityGroups[0].rules.append(SecurityGroupRule(direction: .egress, priority: 1, action: .allow, ethertype: .ipv4))
    expectQuota(atLimit, over, path: "securityGroups[0].rules[100]", quota: "rules per security group")
}

@Test func chosenQuotaRulesPerAclDirectionIsTwenty() {
    let r = (1...21).map { AclRule(priority: $0, action: .allow, ethertype: .ipv4) }
    let atLimit = Document(networkAcls: [NetworkAcl(id: "a", inbound: Array(r.prefix(20)), outbound: Array(r.prefix(20)))])
    expectQuota(
        atLimit, Document(networkAcls: [NetworkAcl(id: "a", inbound: r, outbound: Array(r.prefix(20)))]),
        path: "networkAcls[0].inbound[20]", quota: "rules per network ACL direction")
    expectQuota(
        atLimit, Document(networkAcls: [NetworkAcl(id: "a", inbound: Array(r.prefix(20)), outbound: r)]),
        path: "networkAcls[0].outbound[20]", quota: "rules per network ACL direction")
}

@Test func chosenQuotaSourcesPerAgent() {
    let n = Quota.sourcesPerAgent
    expectQuota(
        Document(sources: sources(n)), Document(sources: sources(n + 1)),
        path: "sources[\(n)]", quota: "sources per agent")
}

@Test func chosenQuotaFiltersPerAgent() {
    let n = Quota.filtersPerAgent
    let f = (0...n).map { Filter(id: "f\($0)") }
    expectQuota(Document(filters: Array(f.prefix(n))), Document(filters: f), path: "filters[\(n)]", quota: "filters per agent")
}

@Test func chosenQuotaTargetsPerAgent() {
    let n = Quota.targetsPerAgent
    let t = (0...n).map { Target(id: "t\($0)", type: .nic, address: .v4(UInt32(203) << 24 | UInt32(113) << 8 | UInt32($0 % 250 + 1))) }
    expectQuota(Document(targets: Array(t.prefix(n))), Document(targets: t), path: "targets[\(n)]", quota: "targets per agent")
}

@Test func quotaValuesAreTheSpecsTable() {
    #expect(Quota.sourcesPerSession == 10)
    #expect(Quota.sessionsPerSource == 3)
    #expect(Quota.sessionsPerNicTarget == 10)
    #expect(Quota.sessionsPerLoadBalancerTarget == 200)
    #expect(Quota.sessionsPerFilter == 1000)
    #expect(Quota.rulesPerFilterDirection == 10)
    #expect(Quota.sessionsPerAgent == 20000)
}
