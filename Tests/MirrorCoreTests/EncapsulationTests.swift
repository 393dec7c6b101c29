import MirrorCore
import Testing

// SPEC §11: a target's `encapsulation`, and what it asks of its sessions' `vni`.

private func erspanDocument(sessions: Int, explicit: [Int: Int] = [:]) -> Document {
    Document(
        filters: [Filter(id: "f")],
        targets: [
            Target(id: "broker", type: .loadBalancer, backends: [IPAddress("192.0.2.1")!], encapsulation: .erspan),
            Target(id: "ids", type: .nic, address: IPAddress("2001:db8::2")!, encapsulation: .geneve),
        ],
        sources: (0..<sessions).map { Source(id: "s\($0)", interface: "tap\($0)") },
        sessions: (0..<sessions).map {
            Session(id: "x\($0)", priority: 1, filter: "f", sources: ["s\($0)"], target: "broker", vni: explicit[$0])
        })
}

@Test func everyEncapsulationRoundTripsAndAbsentMeansVXLAN() throws {
    var doc = erspanDocument(sessions: 1, explicit: [0: 7])
    doc.targets.append(Target(id: "plain", type: .nic, address: IPAddress("198.51.100.2")!))
    doc.targets.append(Target(id: "explicit", type: .nic, address: IPAddress("198.51.100.3")!, encapsulation: .vxlan))
    let json = DocumentEncoding.encode(doc)
    let back = try DocumentParser.parse(json: json).get()
    #expect(back == doc)
    #expect(back.targets.map(\.effectiveEncapsulation) == [.erspan, .geneve, .vxlan, .vxlan])
    // A target without the field is encoded without it (documents without it behave as before).
    #expect(
        DocumentEncoding.encode(doc.targets[2])
            == DocumentEncoding.encode(Target(id: "plain", type: .nic, address: IPAddress("198.51.100.2")!)))
}

@Test func erspanSessionIDsAreTenBitsAndOtherKindsKeepTheWholeRange() {
    #expect(DocumentParser.validate(erspanDocument(sessions: 1, explicit: [0: 1023])) == [])
    #expect(DocumentParser.validate(erspanDocument(sessions: 1, explicit: [0: 0])) == [])
    let refused = DocumentParser.validate(erspanDocument(sessions: 1, explicit: [0: 1024]))
    #expect(refused.map(\.path) == ["sessions[0].vni"])
    #expect(refused.first?.message.contains("erspan") == true)
    var geneve = erspanDocument(sessions: 1, explicit: [0: 16_777_215])
    geneve.sessions[0].target = "ids"
    #expect(DocumentParser.validate(geneve) == [])
}

@Test func assignedERSPANSessionIDsFitAndStayUnique() {
    // 200 sessions at the erspan target, some with explicit IDs, and one geneve session.
    var doc = erspanDocument(sessions: 200, explicit: [3: 5, 4: 1000])
    doc.sources.append(Source(id: "g", interface: "tapg"))
    doc.sessions.append(Session(id: "geneve", priority: 1, filter: "f", sources: ["g"], target: "ids"))
    let r = VNIAssigner.assign(doc)
    let vnis = r.document.sessions.compactMap(\.vni)
    #expect(vnis.count == 201 && Set(vnis).count == 201)
    for s in r.document.sessions where s.target == "broker" { #expect((0...1023).contains(s.vni!), "\(s.id): \(s.vni!)") }
    #expect(DocumentParser.validate(r.document) == [])
    // Stable: the same assignment again, given the previous one or not.
    #expect(VNIAssigner.assign(doc, previous: r.assigned) == r)
    #expect(VNIAssigner.assign(doc) == r)
}

@Test func tooManyERSPANSessionsWithoutAVNIAreRefusedWithTheirPaths() {
    // 1023 assignable IDs (1–1023); two are taken explicitly, so of 1023 sessions without one, two cannot get one.
    var doc = erspanDocument(sessions: 1025, explicit: [0: 1, 1: 2])
    doc.targets[0].type = .loadBalancer
    let paths = DocumentParser.validate(doc).map(\.path).filter { $0.hasSuffix(".vni") }
    #expect(paths == ["sessions[1023].vni", "sessions[1024].vni"])
}
