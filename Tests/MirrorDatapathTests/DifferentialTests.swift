import Foundation
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

/// Compares the loaded classifier (through BPF_PROG_TEST_RUN of its test twins)
/// with `Oracle.decide` on random documents and frames.
enum Differential {
    /// The oracle's SPEC §4 answer in the classifier's terms. Security groups and
    /// ACLs (SPEC §5) are not the classifier's job: documents are compared without them.
    static func expected(_ d: Decision) -> (Verdict.Outcome, session: String?, priority: Int?) {
        switch d.reason {
        case .accepted: return (.accept, d.session, d.rule?.priority)
        case .rejectedByRule: return (.reject, d.session, d.rule?.priority)
        case .notIP: return (.notIP, nil, nil)
        case .sessionDisabled: return (.sessionDisabled, d.session, d.rule?.priority)
        default: return (.noMatch, nil, nil)
        }
    }

    static func withoutSecurityPolicy(_ doc: Document) -> Document {
        var doc = doc
        for i in doc.sources.indices { doc.sources[i].securityGroups = nil; doc.sources[i].networkAcl = nil }
        doc.securityGroups = []
        doc.networkAcls = []
        return doc
    }

    /// Fake ifindexes (handed to the test programs in skb->mark).
    /// Up to three sources per bucket of the prefilter index (mirror_abi.h), so that
    /// both of its ways and its overflow (the policy-map path) are compared.
    static func interfaceIndexes(_ doc: Document) -> [String: UInt32] {
        let buckets = UInt32(PrefilterIndex.bucketCount)
        return Dictionary(
            doc.sources.enumerated().map {
                ($0.element.interface, 100 + UInt32($0.offset / 3) + UInt32($0.offset % 3) * buckets)
            }, uniquingKeysWith: { a, _ in a })
    }

    /// BPF_PROG_TEST_RUN (6.18) refuses untagged IPv4 frames shorter than 34 bytes and
    /// IPv6 frames shorter than 54 (it wants the whole IP header after Ethernet).
    /// Truncated IP headers are still covered behind a VLAN tag, which it accepts.
    static func kernelRefuses(_ frame: [UInt8]) -> Bool {
        guard frame.count >= 14 else { return true }
        let et = UInt16(frame[12]) << 8 | UInt16(frame[13])
        return (et == 0x0800 && frame.count < 34) || (et == 0x86dd && frame.count < 54)
    }

    /// Whether kernel and oracle disagree on `frame` under `doc`, its interfaces on
    /// `ifindexes` (the run's, so that sources keep sharing their prefilter buckets).
    static func disagrees(
        _ doc: Document, source: String, direction: Direction, frame: [UInt8], dp: BPFDatapath,
        ifindexes: [String: UInt32]
    ) throws -> Bool {
        let slots = try SlotAssignment.assign(document: doc, previous: SlotAssignment())
        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { ifindexes[$0] }))
        try dp.apply(image)
        guard let ifindex = doc.sources.first(where: { $0.id == source }).flatMap({ ifindexes[$0.interface] }) else { return false }
        let kernel = Verdict(try dp.testRun(.test(direction), frame: frame, mark: ifindex).retval)
        var want = expected(
            Oracle.decide(
                document: doc, source: source, direction: direction,
                packet: PacketParser.describe(frame: frame)))
        if image.policy(ifindex: ifindex, direction: direction) == nil && want.0 != .accept && want.0 != .reject {
            want = (.noPolicy, nil, nil)
        }
        guard kernel.outcome == want.0 else { return true }
        guard kernel.decided else { return false }
        let info = image.rules[RuleKey(sessionSlot: kernel.sessionSlot, direction: direction, ruleIndex: kernel.ruleIndex)]
        return !(info?.sessionID == want.session && info?.priority == want.priority)
    }

    /// `doc` without source `id`: out of every session, and sessions left without
    /// sources go, with filters and targets nothing refers to any more.
    static func removing(source id: String, from doc: Document) -> Document {
        var d = doc
        d.sources.removeAll { $0.id == id }
        d.sessions = d.sessions.compactMap { s in
            var s = s
            s.sources.removeAll { $0 == id }
            return s.sources.isEmpty ? nil : s
        }
        d.filters = d.filters.filter { f in d.sessions.contains { $0.filter == f.id } }
        d.targets = d.targets.filter { t in d.sessions.contains { $0.target == t.id } }
        return d
    }

    /// The smallest document (greedily) that still disagrees: other sources, then
    /// rules and sessions, removed one by one. Other sources stay when the
    /// disagreement needs them (sources sharing a bucket of the prefilter index).
    static func minimize(
        _ doc: Document, source: String, direction: Direction, frame: [UInt8], dp: BPFDatapath,
        ifindexes: [String: UInt32]
    ) throws -> Document {
        func fails(_ d: Document) throws -> Bool {
            try disagrees(d, source: source, direction: direction, frame: frame, dp: dp, ifindexes: ifindexes)
        }
        var d = doc
        guard try fails(d) else { return doc }
        var changed = true
        while changed {
            changed = false
            for other in d.sources.map(\.id) where other != source {
                let trial = removing(source: other, from: d)
                if try fails(trial) { d = trial; changed = true }
            }
            for fi in d.filters.indices {
                for dir in Direction.allCases {
                    var ri = 0
                    while ri < d.filters[fi].rules(dir).count {
                        var trial = d
                        if dir == .inbound { trial.filters[fi].inbound.remove(at: ri) } else { trial.filters[fi].outbound.remove(at: ri) }
                        if try fails(trial) {
                            d = trial; changed = true
                        } else {
                            ri += 1
                        }
                    }
                }
            }
            var si = 0
            while si < d.sessions.count && d.sessions.count > 1 {
                var trial = d
                trial.sessions.remove(at: si)
                trial.filters = trial.filters.filter { f in trial.sessions.contains { $0.filter == f.id } }
                trial.targets = trial.targets.filter { t in trial.sessions.contains { $0.target == t.id } }
                if try fails(trial) {
                    d = trial; changed = true
                } else {
                    si += 1
                }
            }
        }
        return d
    }

    static func reproducer(
        _ doc: Document, source: String, direction: Direction, frame: [UInt8],
        oracle: Decision, kernel: Verdict, image: MapImage, ifindexes: [String: UInt32]
    ) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = (try? enc.encode(doc)).map { String(decoding: $0, as: UTF8.self) } ?? "?"
        let k =
            kernel.decided
            ? "\(kernel.outcome) session \(image.sessionID(slot: kernel.sessionSlot) ?? "?") rule priority "
                + "\(image.rules[RuleKey(sessionSlot: kernel.sessionSlot, direction: direction, ruleIndex: kernel.ruleIndex)]?.priority ?? -1)"
            : "\(kernel.outcome)"
        return """
            DISAGREEMENT source \(source) \(direction)
              parsed:  \(PacketParser.describe(frame: frame))
              oracle:  \(oracle.explanation)
              kernel:  \(k)
              frame:   \(frame.hex)
              ifindexes: \(doc.sources.map { "\($0.interface)=\(ifindexes[$0.interface] ?? 0)" }.joined(separator: " "))
              document: \(json)
            """
    }
}

extension KernelTests {
    @Suite struct DifferentialTests {
        @Test func kernelClassifierAgreesWithTheOracleOnRandomDocumentsAndFrames() throws {
            let documents = 220, packetsPerDocument = 500
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                dp.slotGracePeriod = .zero  // nothing runs concurrently with this test
                var rng = SeededRandom(seed: 0x5eed_d1ff)
                var slots = SlotAssignment()
                var stats = RandomFrames.Stats()
                var outcomes: [String: Int] = [:]
                var failures = 0
                var compared = 0
                var refused = 0
                for _ in 0..<documents {
                    let doc = Differential.withoutSecurityPolicy(RandomDocuments.document(using: &rng))
                    slots = try SlotAssignment.assign(document: doc, previous: slots)
                    let ifindexes = Differential.interfaceIndexes(doc)
                    let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { ifindexes[$0] }))
                    try dp.apply(image)
                    for _ in 0..<packetsPerDocument {
                        guard let source = rng.pick(doc.sources) else { break }
                        let direction: Direction = rng.chance(0.5) ? .inbound : .outbound
                        let frame = RandomFrames.frame(for: doc, using: &rng, stats: &stats)
                        let parsed = PacketParser.describe(frame: frame)
                        let oracle = Oracle.decide(document: doc, source: source.id, direction: direction, packet: parsed)
                        let raw: BPFDatapath.TestRunResult
                        do {
                            raw = try dp.testRun(.test(direction), frame: frame, mark: ifindexes[source.interface]!)
                        } catch let e as DatapathError where e.errno == EINVAL && Differential.kernelRefuses(frame) {
                            refused += 1
                            continue
                        } catch {
                            print("test run failed on frame \(frame.hex) (\(frame.count) bytes): \(error)")
                            throw error
                        }
                        let kernel = Verdict(raw.retval)
                        var want = Differential.expected(oracle)
                        // A source and direction without rules has no policy entry at all.
                        if image.policy(ifindex: ifindexes[source.interface]!, direction: direction) == nil && want.0 != .accept
                            && want.0 != .reject
                        {
                            want = (.noPolicy, nil, nil)
                        }
                        var same = kernel.outcome == want.0
                        if same && kernel.decided {
                            let info = image.rules[
                                RuleKey(sessionSlot: kernel.sessionSlot, direction: direction, ruleIndex: kernel.ruleIndex)]
                            same = info?.sessionID == want.session && info?.priority == want.priority && info?.direction == direction
                        }
                        compared += 1
                        outcomes["\(kernel.outcome)", default: 0] += 1
                        if !same {
                            failures += 1
                            if failures <= 3 {
                                let small = try Differential.minimize(
                                    doc, source: source.id, direction: direction, frame: frame, dp: dp,
                                    ifindexes: ifindexes)
                                let smallSlots = try SlotAssignment.assign(document: small, previous: SlotAssignment())
                                let smallImage = try Compiler.compile(
                                    .init(document: small, slots: smallSlots, interfaceIndex: { ifindexes[$0] }))
                                try dp.apply(smallImage)
                                let smallKernel = Verdict(
                                    try dp.testRun(.test(direction), frame: frame, mark: ifindexes[source.interface]!).retval)
                                let smallOracle = Oracle.decide(document: small, source: source.id, direction: direction, packet: parsed)
                                print(
                                    Differential.reproducer(
                                        small, source: source.id, direction: direction, frame: frame,
                                        oracle: smallOracle, kernel: smallKernel, image: smallImage, ifindexes: ifindexes))
                                try dp.apply(image)
                            }
                        }
                    }
                }
                print(
                    "differential: \(compared) packets over \(documents) documents, \(failures) disagreements, \(refused) short frames the kernel refuses to test-run; "
                        + "kernel outcomes \(outcomes.sorted { $0.key < $1.key }); \(stats)")
                #expect(compared >= 100_000)
                #expect(failures == 0)
            }
        }
    }
}
