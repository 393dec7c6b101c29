import MirrorCore
import Testing

// SPEC §4: the seed's examples, through the oracle, with the expected session, rule and reason.

private func cidr(_ s: String) -> CIDR {
    let p = s.split(separator: "/")
    return CIDR(address: IPAddress(String(p[0]))!, prefixLength: Int(p[1])!)
}

private func tcp(_ src: String, _ sport: UInt16, _ dst: String, _ dport: UInt16) -> PacketDescription {
    PacketDescription(
        ethertype: .ipv4, protocol: 6, source: IPAddress(src)!, destination: IPAddress(dst)!,
        sourcePort: sport, destinationPort: dport)
}

/// The seed's Table 2 filter, in a one-session document (as examples/seed-filter.json).
private func seedDocument() -> Document {
    Document(
        filters: [
            Filter(
                id: "seed",
                inbound: [
                    Rule(
                        priority: 1, action: .accept, ethertype: .ipv4, protocol: .tcp, source: cidr("172.16.0.0/24"),
                        destination: cidr("10.0.0.3/32"), sourcePorts: PortRange(10000, 10001), destinationPorts: PortRange(80, 80))
                ],
                outbound: [
                    Rule(
                        priority: 1, action: .reject, ethertype: .ipv4, protocol: .all, source: cidr("192.168.0.0/24"),
                        destination: cidr("10.2.0.0/24"))
                ])
        ],
        targets: [Target(id: "t", type: .nic, address: IPAddress("192.0.2.10")!)],
        sources: [Source(id: "eni", interface: "tap0")],
        sessions: [Session(id: "s", priority: 1, filter: "seed", sources: ["eni"], target: "t")])
}

@Test func seedInboundTcpRuleMirrorsPortsTenThousandAndTenThousandOneToPortEighty() {
    let doc = seedDocument()
    #expect(DocumentParser.validate(doc) == [])
    for sport: UInt16 in [10000, 10001] {
        let d = Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: tcp("172.16.0.77", sport, "10.0.0.3", 80))
        #expect(d.mirrored)
        #expect(d.session == "s")
        #expect(d.rule == Decision.RuleRef(filter: "seed", direction: .inbound, priority: 1, action: .accept))
        #expect(d.reason == .accepted)
        #expect(d.tried == ["s"])
    }
    // Just outside each condition: not mirrored, nothing matched.
    let misses = [
        tcp("172.16.0.77", 9999, "10.0.0.3", 80), tcp("172.16.0.77", 10002, "10.0.0.3", 80),
        tcp("172.16.1.1", 10000, "10.0.0.3", 80), tcp("172.16.0.77", 10000, "10.0.0.4", 80),
        tcp("172.16.0.77", 10000, "10.0.0.3", 81),
    ]
    for p in misses {
        let d = Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: p)
        #expect(!d.mirrored && d.reason == .noMatch && d.session == nil && d.rule == nil, "\(p)")
    }
    // Same packet seen outbound: the inbound rule does not apply.
    let out = Oracle.decide(document: doc, source: "eni", direction: .outbound, packet: tcp("172.16.0.77", 10000, "10.0.0.3", 80))
    #expect(out.reason == .noMatch)
    // UDP with the same addresses and ports: protocol differs.
    var udp = tcp("172.16.0.77", 10000, "10.0.0.3", 80); udp.protocol = 17
    #expect(Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: udp).reason == .noMatch)
}

@Test func seedOutboundRejectRuleNeverMirrorsAnyProtocol() {
    let doc = seedDocument()
    let packets: [PacketDescription] = [
        tcp("192.168.0.9", 1234, "10.2.0.200", 443),
        PacketDescription(
            ethertype: .ipv4, protocol: 17, source: IPAddress("192.168.0.1")!, destination: IPAddress("10.2.0.1")!,
            sourcePort: 53, destinationPort: 53),
        PacketDescription(ethertype: .ipv4, protocol: 1, source: IPAddress("192.168.0.255")!, destination: IPAddress("10.2.0.0")!),
        PacketDescription(
            ethertype: .ipv4, protocol: 6, source: IPAddress("192.168.0.3")!, destination: IPAddress("10.2.0.3")!,
            laterFragment: true),
    ]
    for p in packets {
        let d = Oracle.decide(document: doc, source: "eni", direction: .outbound, packet: p)
        #expect(!d.mirrored, "\(p)")
        #expect(d.reason == .rejectedByRule)
        #expect(d.session == "s")
        #expect(d.rule == Decision.RuleRef(filter: "seed", direction: .outbound, priority: 1, action: .reject))
    }
}

@Test func theFirstSessionByPriorityDecidesAndTheSecondNeverSeesThePacket() {
    let accept = Rule(priority: 1, action: .accept, ethertype: .ipv4, protocol: .tcp)
    let doc = Document(
        filters: [Filter(id: "fa", inbound: [accept]), Filter(id: "fb", inbound: [accept])],
        targets: [
            Target(id: "ta", type: .nic, address: IPAddress("192.0.2.1")!),
            Target(id: "tb", type: .nic, address: IPAddress("192.0.2.2")!),
        ],
        sources: [Source(id: "eni", interface: "tap0")],
        // B is listed first: order in the document must not matter, priority does.
        sessions: [
            Session(id: "B", priority: 2, filter: "fb", sources: ["eni"], target: "tb"),
            Session(id: "A", priority: 1, filter: "fa", sources: ["eni"], target: "ta"),
        ])
    #expect(DocumentParser.validate(doc) == [])
    let d = Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: tcp("198.51.100.1", 1, "198.18.0.1", 2))
    #expect(d.mirrored && d.session == "A" && d.tried == ["A"] && d.reason == .accepted)
    #expect(d.rule?.filter == "fa")

    // A rejecting stops evaluation too: B is still never consulted.
    var rejecting = doc
    rejecting.filters[0].inbound[0].action = .reject
    let r = Oracle.decide(document: rejecting, source: "eni", direction: .inbound, packet: tcp("198.51.100.1", 1, "198.18.0.1", 2))
    #expect(!r.mirrored && r.session == "A" && r.reason == .rejectedByRule && r.tried == ["A"])

    // A not matching: B decides, after A was tried.
    let udp = PacketDescription(
        ethertype: .ipv4, protocol: 17, source: IPAddress("198.51.100.1")!,
        destination: IPAddress("198.18.0.1")!, sourcePort: 1, destinationPort: 2)
    var bMatchesUDP = doc
    bMatchesUDP.filters[1].inbound[0].protocol = .all
    let b = Oracle.decide(document: bMatchesUDP, source: "eni", direction: .inbound, packet: udp)
    #expect(b.mirrored && b.session == "B" && b.tried == ["A", "B"])
}

@Test func rejectBeforeAcceptWithTheSameConditionsMeansNotMirrored() {
    let conditions = Rule(
        priority: 2, action: .accept, ethertype: .ipv4, protocol: .udp, source: cidr("198.51.100.0/24"),
        destinationPorts: PortRange(53, 53))
    var reject = conditions
    reject.priority = 1
    reject.action = .reject
    let doc = Document(
        filters: [Filter(id: "f", outbound: [conditions, reject])],
        targets: [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1")!)],
        sources: [Source(id: "eni", interface: "tap0")],
        sessions: [Session(id: "s", priority: 1, filter: "f", sources: ["eni"], target: "t")])
    #expect(DocumentParser.validate(doc) == [])
    let p = PacketDescription(
        ethertype: .ipv4, protocol: 17, source: IPAddress("198.51.100.5")!,
        destination: IPAddress("203.0.113.5")!, sourcePort: 4000, destinationPort: 53)
    let d = Oracle.decide(document: doc, source: "eni", direction: .outbound, packet: p)
    #expect(!d.mirrored && d.reason == .rejectedByRule && d.rule?.priority == 1)
}

@Test func laterFragmentsMatchOnlyRulesWithoutPorts() {
    var doc = seedDocument()
    doc.filters[0].inbound.append(
        Rule(
            priority: 2, action: .accept, ethertype: .ipv4, protocol: .tcp,
            source: cidr("172.16.0.0/24")))
    let later = PacketDescription(
        ethertype: .ipv4, protocol: 6, source: IPAddress("172.16.0.1")!,
        destination: IPAddress("10.0.0.3")!, laterFragment: true)
    let d = Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: later)
    #expect(d.mirrored && d.rule?.priority == 2)
    // Ports given with a later fragment are ignored: the fragment has none.
    var withPorts = later
    withPorts.sourcePort = 10000; withPorts.destinationPort = 80
    #expect(Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: withPorts).rule?.priority == 2)
}

@Test func nonIPFramesMatchNoRuleEvenProtocolAll() {
    var doc = seedDocument()
    doc.filters[0].inbound = [Rule(priority: 1, action: .accept, ethertype: .ipv4, protocol: .all)]
    let d = Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: .notIP)
    #expect(!d.mirrored && d.reason == .notIP && d.session == nil)
}

@Test func protocolAllMatchesAnyProtocolOfItsEthertypeOnly() {
    var doc = seedDocument()
    doc.filters[0].inbound = [Rule(priority: 1, action: .accept, ethertype: .ipv6, protocol: .all)]
    let v6 = PacketDescription(ethertype: .ipv6, protocol: 47, source: IPAddress("2001:db8::1")!, destination: IPAddress("2001:db8::2")!)
    #expect(Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: v6).mirrored)
    let unknownTransport = PacketDescription(
        ethertype: .ipv6, protocol: nil, source: IPAddress("2001:db8::1")!,
        destination: IPAddress("2001:db8::2")!)
    #expect(Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: unknownTransport).mirrored)
    let v4 = PacketDescription(ethertype: .ipv4, protocol: 47, source: IPAddress("198.51.100.1")!, destination: IPAddress("198.51.100.2")!)
    #expect(!Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: v4).mirrored)
}

@Test func aDisabledSessionIsSkippedAndExplained() {
    var doc = seedDocument()
    doc.sessions[0].enabled = false
    let d = Oracle.decide(document: doc, source: "eni", direction: .inbound, packet: tcp("172.16.0.77", 10000, "10.0.0.3", 80))
    #expect(!d.mirrored && d.reason == .sessionDisabled && d.tried == [])
}

@Test func theExampleFilesAreValidAndBehaveAsTheSpecSays() throws {
    let seed = try DocumentParser.parse(readExample("seed-filter.json")).get()
    let d = Oracle.decide(document: seed, source: "web-eni", direction: .inbound, packet: tcp("172.16.0.9", 10001, "10.0.0.3", 80))
    #expect(d.mirrored && d.session == "seed-session" && d.rule?.priority == 1)

    let two = try DocumentParser.parse(readExample("two-sessions.json")).get()
    let http = Oracle.decide(document: two, source: "web-eni", direction: .inbound, packet: tcp("198.51.100.7", 5555, "198.18.0.10", 80))
    #expect(http.session == "session-a" && http.tried == ["session-a"])
    let ssh = Oracle.decide(document: two, source: "web-eni", direction: .inbound, packet: tcp("198.51.100.7", 5555, "198.18.0.10", 22))
    #expect(ssh.session == "session-b" && ssh.tried == ["session-a", "session-b"])
}
