import MirrorCore
import MirrorTestSupport
import Testing

@Test func encodeThenParseGivesAnEqualDocument() throws {
    for k in 0..<UInt64(200) {
        var rng = SeededRandom(seed: 77 &+ k)
        let doc = RandomDocuments.document(using: &rng, options: .init(securityPolicy: true, explicitVNIProbability: 0.5))
        let text = DocumentEncoding.text(doc, pretty: k % 2 == 0)
        let back = try DocumentParser.parse(text).get()
        #expect(back == doc, "seed \(77 + k)")
    }
    #expect(try DocumentParser.parse(DocumentEncoding.text(baseDocument())).get() == baseDocument())
}

/// SPEC §10's session fields survive encode → parse, alone and together, and a
/// document without them has none (it behaves as before they existed).
@Test func rateLimitAndSamplingRoundTrip() throws {
    for (limit, sample) in [
        (RateLimit(packetsPerSecond: 1000), nil), (RateLimit(bitsPerSecond: 50_000_000), 1),
        (RateLimit(packetsPerSecond: 1, bitsPerSecond: 1_000_000_000_000), 65535), (nil, 10),
    ] as [(RateLimit?, Int?)] {
        var doc = baseDocument()
        doc.sessions[0].rateLimit = limit
        doc.sessions[0].sampleOneIn = sample
        #expect(DocumentParser.validate(doc).isEmpty)
        #expect(try DocumentParser.parse(DocumentEncoding.text(doc)).get() == doc)
    }
    let plain = try DocumentParser.parse(DocumentEncoding.text(baseDocument())).get()
    #expect(plain.sessions.allSatisfy { $0.rateLimit == nil && $0.sampleOneIn == nil })
    #expect(DocumentEncoding.encode(plain).value(at: "sessions[0].rateLimit") == nil)
}

@Test func protocolNumbersAndNamesMeanTheSame() throws {
    let a = baseJSON().setting("filters[0].inbound[0].protocol", num(6))
    let b = baseJSON().setting("filters[0].inbound[0].protocol", str("tcp"))
    #expect(try DocumentParser.parse(json: a).get() == DocumentParser.parse(json: b).get())
    // An unnamed number is written as a number.
    var doc = baseDocument()
    doc.filters[0].inbound[1].protocol = .number(47)
    #expect(DocumentEncoding.encode(doc).value(at: "filters[0].inbound[1].protocol") == num(47))
}

@Test func aBareAddressIsAHostCIDR() throws {
    let doc = try DocumentParser.parse(json: baseJSON().setting("filters[0].inbound[0].source", str("198.51.100.7"))).get()
    #expect(doc.filters[0].inbound[0].source == CIDR(address: IPAddress("198.51.100.7")!, prefixLength: 32))
}

@Test func omittedOptionalFieldsStayOmitted() throws {
    let doc = try DocumentParser.parse("{\"sources\": [{\"id\": \"s\", \"interface\": \"eth0\"}]}").get()
    #expect(doc.sources == [Source(id: "s", interface: "eth0")])
    #expect(doc.filters.isEmpty && doc.sessions.isEmpty)
    #expect(DocumentEncoding.encode(doc).value(at: "sources[0]") == obj([("id", str("s")), ("interface", str("eth0"))]))
}

@Test func aHealthCheckRoundTripsWithItsDefaultsWritten() throws {
    let json = baseJSON().setting("targets[1].healthCheck", obj([("protocol", str("tcp")), ("port", num(4790))]))
    let doc = try DocumentParser.parse(json: json).get()
    #expect(
        doc.targets[1].healthCheck == HealthCheck(protocol: .tcp, port: 4790, intervalMs: 1000, unhealthyThreshold: 3, healthyThreshold: 2))
    #expect(doc.targets[0].healthCheck == nil)
    let encoded = DocumentEncoding.encode(doc)
    #expect(
        encoded.value(at: "targets[1].healthCheck")
            == obj([
                ("protocol", str("tcp")), ("port", num(4790)), ("intervalMs", num(1000)), ("unhealthyThreshold", num(3)),
                ("healthyThreshold", num(2)),
            ]))
    #expect(encoded.value(at: "targets[0].healthCheck") == nil)
    #expect(try DocumentParser.parse(json: encoded).get() == doc)
    var icmp = baseDocument()
    icmp.targets[0].healthCheck = HealthCheck(protocol: .icmp, intervalMs: 200, unhealthyThreshold: 1, healthyThreshold: 10)
    #expect(try DocumentParser.parse(DocumentEncoding.text(icmp)).get() == icmp)
}
