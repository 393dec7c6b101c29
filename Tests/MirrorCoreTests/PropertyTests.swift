import MirrorCore
import MirrorTestSupport
import Testing

// Property tests over random valid documents and random packets.
// Each failure message carries the seed, so it can be replayed.

private let documentCount = 300
private let packetsPerDocument = 40

private func randomCases(
    seed: UInt64, options: RandomDocuments.Options = .default,
    _ body: (Document, [PacketDescription], inout SeededRandom, UInt64) -> Void
) {
    for k in 0..<UInt64(documentCount) {
        var rng = SeededRandom(seed: seed &+ k)
        let doc = RandomDocuments.document(using: &rng, options: options)
        let packets = (0..<packetsPerDocument).map { _ in RandomDocuments.packet(for: doc, using: &rng) }
        body(doc, packets, &rng, seed &+ k)
    }
}

private func everyDecision(_ doc: Document, _ packets: [PacketDescription]) -> [Decision] {
    var out: [Decision] = []
    for source in doc.sources.map(\.id).sorted() {
        for direction in Direction.allCases {
            for p in packets { out.append(Oracle.decide(document: doc, source: source, direction: direction, packet: p)) }
        }
    }
    return out
}

@Test func randomDocumentsAreValidAndDeterministic() {
    for k in 0..<UInt64(documentCount) {
        var a = SeededRandom(seed: k), b = SeededRandom(seed: k)
        let doc = RandomDocuments.document(using: &a, options: .init(securityPolicy: k % 2 == 0, explicitVNIProbability: 0.5))
        #expect(doc == RandomDocuments.document(using: &b, options: .init(securityPolicy: k % 2 == 0, explicitVNIProbability: 0.5)))
        #expect(DocumentParser.validate(doc) == [], "seed \(k)")
    }
}

@Test func randomPacketsActuallyHitRules() {
    var accepted = 0, rejected = 0, none = 0
    randomCases(seed: 1) { doc, packets, _, _ in
        for d in everyDecision(doc, packets) {
            switch d.reason {
            case .accepted: accepted += 1
            case .rejectedByRule: rejected += 1
            default: none += 1
            }
        }
    }
    // The generator is useless for differential testing unless every outcome is common.
    let total = accepted + rejected + none
    #expect(accepted * 10 > total && rejected * 20 > total && none * 10 > total, "\(accepted) \(rejected) \(none)")
}

/// At most one session decides, and it is the first enabled session in priority order
/// whose filter has a matching rule; the sessions tried are exactly those before it.
@Test func atMostOneSessionDecidesAndItIsTheFirstMatchingByPriority() {
    randomCases(seed: 1000) { doc, packets, _, seed in
        for source in doc.sources.map(\.id) {
            let ordered = doc.sessions.filter { $0.sources.contains(source) && $0.isEnabled }.sorted { $0.priority < $1.priority }
            for direction in Direction.allCases {
                for p in packets {
                    let d = Oracle.decide(document: doc, source: source, direction: direction, packet: p)
                    guard p.ethertype != nil else { #expect(d.reason == .notIP); continue }
                    let filters = Dictionary(uniqueKeysWithValues: doc.filters.map { ($0.id, $0) })
                    let matching = ordered.filter { s in filters[s.filter]!.rules(direction).contains { Oracle.ruleMatches($0, p) } }
                    if let first = matching.first {
                        let rule = filters[first.filter]!.rules(direction).filter { Oracle.ruleMatches($0, p) }
                            .min { $0.priority < $1.priority }!
                        #expect(d.session == first.id, "seed \(seed)")
                        #expect(d.mirrored == (rule.action == .accept), "seed \(seed)")
                        #expect(d.rule?.priority == rule.priority, "seed \(seed)")
                        let idx = ordered.firstIndex { $0.id == first.id }!
                        #expect(d.tried == ordered[...idx].map(\.id), "seed \(seed)")
                    } else {
                        #expect(!d.mirrored && d.rule == nil || d.reason == .sessionDisabled, "seed \(seed)")
                        #expect(d.tried == ordered.map(\.id), "seed \(seed)")
                    }
                }
            }
        }
    }
}

/// A reject rule placed just before an accept rule, with the same conditions: that
/// accept rule never decides again, and what it used to mirror is not mirrored.
@Test func rejectBeforeAcceptWithSameConditionsIsNeverMirrored() {
    randomCases(seed: 2000) { doc, packets, rng, seed in
        let candidates = doc.filters.indices.flatMap { f in
            Direction.allCases.flatMap { dir in
                doc.filters[f].rules(dir).indices.compactMap { r in
                    doc.filters[f].rules(dir)[r].action == .accept ? (f, dir, r) : nil
                }
            }
        }
        guard let (f, dir, r) = rng.pick(candidates) else { return }
        var changed = doc
        // Double every priority so a free slot exists just before the chosen rule.
        func doubled(_ rules: [Rule]) -> [Rule] {
            rules.map {
                var x = $0; x.priority *= 2; return x
            }
        }
        changed.filters[f].inbound = doubled(changed.filters[f].inbound)
        changed.filters[f].outbound = doubled(changed.filters[f].outbound)
        var reject = changed.filters[f].rules(dir)[r]
        let acceptPriority = reject.priority
        reject.priority -= 1
        reject.action = .reject
        if dir == .inbound { changed.filters[f].inbound.append(reject) } else { changed.filters[f].outbound.append(reject) }
        // The quota allows 10 rules per direction: drop the last other rule if needed.
        if changed.filters[f].rules(dir).count > Quota.rulesPerFilterDirection {
            let drop = changed.filters[f].rules(dir).firstIndex { $0.priority != acceptPriority && $0.priority != reject.priority }!
            if dir == .inbound { changed.filters[f].inbound.remove(at: drop) } else { changed.filters[f].outbound.remove(at: drop) }
        }
        #expect(DocumentParser.validate(changed) == [], "seed \(seed)")
        var probes = packets
        // Packets built from the accept rule itself.
        var prng = SeededRandom(seed: seed)
        let only = Document(filters: [Filter(id: "x", inbound: [doc.filters[f].rules(dir)[r]])])
        probes += (0..<20).map { _ in RandomDocuments.packet(for: only, using: &prng) }
        for source in changed.sources.map(\.id) {
            for p in probes {
                let after = Oracle.decide(document: changed, source: source, direction: dir, packet: p)
                let filterID = changed.filters[f].id
                #expect(!(after.rule?.filter == filterID && after.rule?.priority == acceptPriority), "seed \(seed)")
                let before = Oracle.decide(document: doc, source: source, direction: dir, packet: p)
                if before.rule?.filter == filterID && before.rule?.priority == acceptPriority / 2 && before.mirrored {
                    #expect(!after.mirrored && after.reason == .rejectedByRule, "seed \(seed)")
                }
            }
        }
    }
}

/// Disabling a session gives the same mirrored/session decisions as deleting it.
@Test func disablingASessionIsTheSameAsDeletingIt() {
    randomCases(seed: 3000) { doc, packets, rng, seed in
        guard let k = rng.pick(doc.sessions.indices) else { return }
        var disabled = doc
        disabled.sessions[k].enabled = false
        var deleted = doc
        deleted.sessions.remove(at: k)
        for source in doc.sources.map(\.id) {
            for direction in Direction.allCases {
                for p in packets {
                    let a = Oracle.decide(document: disabled, source: source, direction: direction, packet: p)
                    let b = Oracle.decide(document: deleted, source: source, direction: direction, packet: p)
                    #expect(a.mirrored == b.mirrored, "seed \(seed)")
                    #expect(a.tried == b.tried, "seed \(seed)")
                    // The deciding session and rule are the same; only the explanation of an
                    // undecided packet may differ (it may name the disabled session).
                    let deciding: Set<Decision.Reason> = [.accepted, .rejectedByRule]
                    #expect(deciding.contains(a.reason) == deciding.contains(b.reason), "seed \(seed)")
                    if deciding.contains(a.reason) {
                        #expect(a.session == b.session && a.rule == b.rule && a.reason == b.reason, "seed \(seed)")
                    } else {
                        #expect(b.session != disabled.sessions[k].id, "seed \(seed)")
                    }
                }
            }
        }
    }
}

/// Reordering every array of the document never changes a decision.
@Test func reorderingTheDocumentNeverChangesADecision() {
    randomCases(seed: 4000, options: .init(securityPolicy: true)) { doc, packets, rng, seed in
        var shuffled = doc
        shuffled.filters.shuffle(using: &rng)
        for i in shuffled.filters.indices {
            shuffled.filters[i].inbound.shuffle(using: &rng)
            shuffled.filters[i].outbound.shuffle(using: &rng)
        }
        shuffled.targets.shuffle(using: &rng)
        shuffled.sources.shuffle(using: &rng)
        shuffled.sessions.shuffle(using: &rng)
        for i in shuffled.sessions.indices { shuffled.sessions[i].sources.shuffle(using: &rng) }
        shuffled.securityGroups.shuffle(using: &rng)
        for i in shuffled.securityGroups.indices { shuffled.securityGroups[i].rules.shuffle(using: &rng) }
        shuffled.networkAcls.shuffle(using: &rng)
        for i in shuffled.networkAcls.indices {
            shuffled.networkAcls[i].inbound.shuffle(using: &rng)
            shuffled.networkAcls[i].outbound.shuffle(using: &rng)
        }
        #expect(DocumentParser.validate(shuffled) == [], "seed \(seed)")
        for connection in ConnectionState.allCases {
            for source in doc.sources.map(\.id) {
                for direction in Direction.allCases {
                    for p in packets {
                        let a = Oracle.decide(document: doc, source: source, direction: direction, packet: p, connection: connection)
                        let b = Oracle.decide(document: shuffled, source: source, direction: direction, packet: p, connection: connection)
                        #expect(a == b, "seed \(seed)")
                    }
                }
            }
        }
    }
}

/// SPEC §5: what a source's security group or ACL drops is never mirrored.
@Test func suppressedPacketsAreNeverMirrored() {
    var suppressed = 0
    randomCases(seed: 5000, options: .init(securityPolicy: true)) { doc, packets, _, seed in
        for d in everyDecision(doc, packets) where d.reason == .suppressedByAcl || d.reason == .suppressedBySecurityGroup {
            suppressed += 1
            #expect(!d.mirrored && d.session == nil && d.suppression != nil, "seed \(seed)")
        }
    }
    #expect(suppressed > 100)
}
