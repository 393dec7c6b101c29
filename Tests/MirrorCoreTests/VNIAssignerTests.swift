import MirrorCore
import MirrorTestSupport
import Testing

private func withoutVNIs(_ seed: UInt64) -> Document {
    var rng = SeededRandom(seed: seed)
    return RandomDocuments.document(using: &rng, options: .init(explicitVNIProbability: 0.3, maxSessions: 8))
}

@Test func everySessionGetsAUniqueVNIAndExplicitOnesAreKept() {
    for seed in 0..<UInt64(200) {
        let doc = withoutVNIs(seed)
        let r = VNIAssigner.assign(doc)
        #expect(r.document.sessions.allSatisfy { $0.vni != nil })
        let vnis = r.document.sessions.compactMap(\.vni)
        #expect(Set(vnis).count == vnis.count, "seed \(seed)")
        for (before, after) in zip(doc.sessions, r.document.sessions) where before.vni != nil {
            #expect(after.vni == before.vni)
        }
        #expect(Set(r.assigned.keys) == Set(doc.sessions.filter { $0.vni == nil }.map(\.id)))
        #expect(DocumentParser.validate(r.document) == [], "seed \(seed)")
    }
}

@Test func reapplyingTheSameDocumentKeepsEveryVNI() {
    let doc = withoutVNIs(5)
    let first = VNIAssigner.assign(doc)
    let again = VNIAssigner.assign(doc, previous: first.assigned)
    #expect(again == first)
    // Also without the map (a fresh agent): the hash makes it deterministic.
    #expect(VNIAssigner.assign(doc) == first)
}

@Test func addingSessionsNeverChangesAnAssignedVNI() {
    var doc = Document(
        filters: [Filter(id: "f")], targets: [Target(id: "t", type: .loadBalancer, backends: [IPAddress("192.0.2.1")!])],
        sources: (0..<60).map { Source(id: "s\($0)", interface: "tap\($0)") })
    doc.sessions = (0..<30).map { Session(id: "x\($0)", priority: 1, filter: "f", sources: ["s\($0)"], target: "t") }
    let first = VNIAssigner.assign(doc)
    var grown = doc
    // New sessions, some with explicit VNIs that are free, inserted before the old ones.
    grown.sessions.insert(
        contentsOf: (30..<60).map {
            Session(id: "x\($0)", priority: 1, filter: "f", sources: ["s\($0)"], target: "t", vni: $0 % 2 == 0 ? $0 : nil)
        }, at: 0)
    let second = VNIAssigner.assign(grown, previous: first.assigned)
    for (id, vni) in first.assigned { #expect(second.assigned[id] == vni, "\(id)") }
    let all = second.document.sessions.compactMap(\.vni)
    #expect(Set(all).count == all.count)
}

@Test func reorderingSessionsDoesNotChangeAssignments() {
    var rng = SeededRandom(seed: 9)
    let doc = withoutVNIs(11)
    var shuffled = doc
    shuffled.sessions.shuffle(using: &rng)
    #expect(VNIAssigner.assign(doc).assigned == VNIAssigner.assign(shuffled).assigned)
}

@Test func hashCollisionsProbeToTheNextFreeVNI() {
    // An explicit VNI taking the hash slot of another session pushes it to the next one.
    let id = "collide"
    let slot = VNIAssigner.candidate(for: id)
    let doc = Document(
        filters: [Filter(id: "f")], targets: [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1")!)],
        sources: [Source(id: "a", interface: "a"), Source(id: "b", interface: "b")],
        sessions: [
            Session(id: "explicit", priority: 1, filter: "f", sources: ["a"], target: "t", vni: slot),
            Session(id: id, priority: 1, filter: "f", sources: ["b"], target: "t"),
        ])
    let r = VNIAssigner.assign(doc)
    #expect(r.assigned[id] == (slot == VNIAssigner.range.upperBound ? VNIAssigner.range.lowerBound : slot + 1))
}

@Test func anExplicitVNIWinsOverAPreviousAssignment() {
    let doc = Document(
        filters: [Filter(id: "f")], targets: [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1")!)],
        sources: [Source(id: "a", interface: "a"), Source(id: "b", interface: "b")],
        sessions: [Session(id: "auto", priority: 1, filter: "f", sources: ["a"], target: "t")])
    let first = VNIAssigner.assign(doc)
    let taken = first.assigned["auto"]!
    var next = doc
    next.sessions.append(Session(id: "manual", priority: 1, filter: "f", sources: ["b"], target: "t", vni: taken))
    let second = VNIAssigner.assign(next, previous: first.assigned)
    #expect(second.document.sessions[1].vni == taken)
    #expect(second.assigned["auto"] != taken)
    #expect(second.assigned["auto"] != nil)
}

@Test func theHashIsStableAcrossRuns() {
    // FNV-1a, not Swift's per-process seeded Hasher: these values must never change.
    #expect(VNIAssigner.candidate(for: "session-a") == VNIAssigner.candidate(for: "session-a"))
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in "web".utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    #expect(VNIAssigner.candidate(for: "web") == 1 + Int(h % 16_777_215))
}
