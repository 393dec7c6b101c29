import MirrorCore
import MirrorTestSupport
import Testing

// SPEC §9: the region document is the section 7 document plus `host` on every
// source, validated by the same decoder with the same JSON paths.

/// The base document of the invalid-document tests, with s1 on hv1 and s2 on hv2.
func baseRegion() -> RegionDocument {
    RegionDocument(document: baseDocument(), hosts: ["s1": "hv1", "s2": "hv2"])
}

func regionErrors(_ json: JSONValue) -> [ValidationError] {
    switch RegionParser.parse(json: json) {
    case .success: return []
    case .failure(let e): return e.errors
    }
}

@Test func regionDocumentParsesWithTheHostOfEverySource() throws {
    let text = RegionEncoding.text(baseRegion())
    #expect(text.contains("\"host\": \"hv1\""))
    let region = try RegionParser.parse(text).get()
    #expect(region == baseRegion())
    #expect(region.hostNames == ["hv1", "hv2"])
    #expect(region.host(ofSource: "s2") == "hv2")
    #expect(RegionParser.validate(region) == [])
}

@Test func theAgentDocumentStillRefusesHostExactlyAsBefore() {
    let json = RegionEncoding.encode(baseRegion())
    let paths = errorPaths(json)
    #expect(paths == ["sources[0].host", "sources[1].host"])
    // And a region without hosts is refused by the region parser, at the same kind of path.
    #expect(regionErrors(DocumentEncoding.encode(baseDocument())).map(\.path) == ["sources[0].host", "sources[1].host"])
    #expect(regionErrors(DocumentEncoding.encode(baseDocument())).allSatisfy { $0.message.contains("missing required field \"host\"") })
}

@Test(arguments: [
    ("", "empty"),
    ("HV1", "did you mean \"hv1\"?"),
    ("hv_1", "contains \"_\""),
    ("hv/1", "contains \"/\""),
    ("hv 1", "contains \" \""),
    ("-hv1", "starts or ends with '-'"),
    ("hv1-", "starts or ends with '-'"),
    ("hv1..rack", "empty label"),
    (".hv1", "empty label"),
    (String(repeating: "a", count: 64), "label of 64"),
    (String(repeating: "a.", count: 127) + "a", "255 characters"),
    ("hvé", "contains \"é\""),
])
func badHostNamesAreRefusedWithTheirPath(host: String, mentions: String) {
    let json = RegionEncoding.encode(baseRegion()).setting("sources[1].host", str(host))
    let errs = regionErrors(json)
    #expect(errs.map(\.path) == ["sources[1].host"], "\(host)")
    #expect(errs.first?.message.contains(mentions) == true, "\(errs)")
    #expect(errs.first?.message.contains("RFC 1123") == true)
    #expect(HostName.problem(host) != nil)
}

@Test func goodHostNamesAreAccepted() {
    for h in ["hv1", "a", "compute-0042.rack-7.az1.example", "10.0.0.1", String(repeating: "a", count: 63)] {
        #expect(HostName.problem(h) == nil, "\(h)")
        var r = baseRegion()
        r.hosts["s1"] = h
        #expect(RegionParser.validate(r) == [], "\(h)")
    }
    // A host that is not a string.
    let errs = regionErrors(RegionEncoding.encode(baseRegion()).setting("sources[0].host", num(1)))
    #expect(errs.map(\.path) == ["sources[0].host"])
}

@Test func interfacesAreUniquePerHostNotPerRegion() {
    var r = baseRegion()
    r.document.sources[1].interface = r.document.sources[0].interface
    #expect(RegionParser.validate(r) == [], "the same tap name on two hosts is fine")
    r.hosts["s2"] = "hv1"
    let errs = RegionParser.validate(r)
    #expect(errs.map(\.path) == ["sources[1].interface"])
    #expect(errs.first?.message.contains("on host \"hv1\"") == true, "\(errs)")
}

@Test func everyOtherErrorKeepsItsPathInARegion() {
    // A sample of the agent document's errors: the same paths from the region parser.
    let cases: [(String, JSONValue?)] = [
        ("sessions[0].priority", num(0)),
        ("filters[0].inbound[0].source", str("198.51.100.1/24")),
        ("sessions[1].target", str("nope")),
        ("sources[0].prioirty", num(1)),
        ("targets[0].address", str("198.18.0.10")),
    ]
    for (path, value) in cases {
        let agent = errorPaths(baseJSON().setting(path, value))
        let region = regionErrors(RegionEncoding.encode(baseRegion()).setting(path, value)).map(\.path)
        #expect(!agent.isEmpty && agent == region, "\(path): agent \(agent), region \(region)")
    }
    // All errors at once, as the agent reports them.
    let json = RegionEncoding.encode(baseRegion()).setting("sources[0].host", str("Bad")).setting("sessions[0].vni", num(-1))
    #expect(Set(regionErrors(json).map(\.path)) == ["sources[0].host", "sessions[0].vni"])
}

@Test func regionQuotaValuesAreSpecSection9() {
    #expect(Quota.sessionsPerRegion == 20000)
    #expect(Quota.sourcesPerRegion == 100_000)
    #expect(Quota.filtersPerRegion == 20000)
    #expect(Quota.targetsPerRegion == 20000)
}

/// Sources named `s<i>` with interfaces per host, `perHost` on each host.
private func sourcesJSON(_ n: Int, perHost: Int) -> JSONValue {
    .array(
        (0..<n).map { i in
            obj([("id", str("s\(i)")), ("host", str("hv\(i / perHost)")), ("interface", str("tap\(i % perHost)"))])
        })
}

@Test func regionSourceQuotaIs100000AndEachHostStillFitsOneAgent() {
    // 100,000 sources over 13 hosts of at most 8,192: valid (far above the agent's 8,192).
    let perHost = Quota.sourcesPerAgent
    let atLimit = obj([("sources", sourcesJSON(Quota.sourcesPerRegion, perHost: perHost))])
    #expect(regionErrors(atLimit) == [])
    let over = obj([("sources", sourcesJSON(Quota.sourcesPerRegion + 1, perHost: perHost))])
    let errs = regionErrors(over)
    #expect(errs.map(\.path) == ["sources[100000]"])
    #expect(errs.first?.message.contains("sources per region") == true)

    // One host with 8,193 sources: refused at the first source over, on its host.
    let crowded = obj([("sources", sourcesJSON(perHost + 1, perHost: perHost + 1))])
    let e2 = regionErrors(crowded)
    #expect(e2.map(\.path) == ["sources[\(perHost)].host"])
    #expect(e2.first?.message.contains("sources per agent = \(perHost)") == true, "\(e2)")
}

@Test func regionSessionFilterAndTargetQuotasAre20000() {
    let n = Quota.sessionsPerRegion
    func region(_ count: Int) -> JSONValue {
        let filters = JSONValue.array((0..<count).map { obj([("id", str("f\($0)"))]) })
        let targets = JSONValue.array(
            (0..<count).map { i in
                obj([("id", str("t\(i)")), ("type", str("nic")), ("address", str("2001:db8:ffff::\(String(i + 1, radix: 16))"))])
            })
        // Two sessions per source, priorities 1 and 2; sources spread over hosts.
        let sources = JSONValue.array(
            (0..<(count + 1) / 2).map { i in
                obj([("id", str("s\(i)")), ("host", str("hv\(i / 1000)")), ("interface", str("tap\(i % 1000)"))])
            })
        let sessions = JSONValue.array(
            (0..<count).map { i in
                obj([
                    ("id", str("x\(i)")), ("priority", num(i % 2 + 1)), ("filter", str("f\(i)")),
                    ("sources", .array([str("s\(i / 2)")])), ("target", str("t\(i)")),
                ])
            })
        return obj([("filters", filters), ("targets", targets), ("sources", sources), ("sessions", sessions)])
    }
    #expect(regionErrors(region(n)) == [])
    let errs = regionErrors(region(n + 1))
    #expect(Set(errs.map(\.path)) == ["filters[\(n)]", "targets[\(n)]", "sessions[\(n)]"], "\(errs.prefix(5))")
    #expect(errs.contains { $0.message.contains("sessions per region") })
}

@Test func perSessionPerSourceAndPerTargetQuotasStillHoldInARegion() {
    var r = baseRegion()
    // sessions per nic target (10): 11 sessions on t1, each on its own new source.
    for i in 0..<11 {
        r.document.sources.append(Source(id: "q\(i)", interface: "q\(i)"))
        r.hosts["q\(i)"] = "hv\(i)"
        r.document.sessions.append(Session(id: "q\(i)", priority: 5, filter: "f2", sources: ["q\(i)"], target: "lb"))
    }
    r.document.sessions[2].target = "t1"
    for i in 3..<12 { r.document.sessions[i].target = "t1" }
    let errs = RegionParser.validate(r)
    #expect(errs.map(\.path) == ["sessions[11].target"], "\(errs)")
    #expect(errs.first?.message.contains("sessions per target") == true)

    // sessions per source (3), even when the sessions' other sources are on other hosts.
    var s = baseRegion()
    for i in 0..<2 {
        s.document.sessions.append(Session(id: "p\(i)", priority: 10 + i, filter: "f2", sources: ["s1"], target: "lb"))
    }
    #expect(RegionParser.validate(s).map(\.path) == ["sessions[3].sources[0]"])
}

@Test func regionRoundTripsThroughItsEncoding() {
    for k in 0..<100 {
        var rng = SeededRandom(seed: 900 + UInt64(k))
        let region = RegionDocuments.random(using: &rng)
        #expect(RegionParser.validate(region) == [], "seed \(900 + k)")
        #expect((try? RegionParser.parse(RegionEncoding.text(region, pretty: k % 2 == 0)).get()) == region, "seed \(900 + k)")
    }
}
