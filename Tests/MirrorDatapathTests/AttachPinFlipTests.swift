import CMirrorABI
import Foundation
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import Testing

/// Small hand-made documents for the kernel tests.
enum Docs {
    static let tcp80 = FrameBuilder.frame(
        for: PacketDescription(
            ethertype: .ipv4, protocol: 6, source: IPAddress("198.51.100.1"), destination: IPAddress("198.51.100.2"),
            sourcePort: 40000, destinationPort: 80))

    /// One source on `interface`, sessions given as (id, priority, inbound rules).
    static func document(interface: String = "tap0", sessions: [(String, Int, [Rule])]) -> Document {
        var doc = Document()
        doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.10"))]
        doc.sources = [Source(id: "s", interface: interface)]
        for (i, s) in sessions.enumerated() {
            doc.filters.append(Filter(id: "f-\(s.0)", inbound: s.2))
            doc.sessions.append(Session(id: s.0, priority: s.1, filter: "f-\(s.0)", sources: ["s"], target: "t", vni: 100 + i))
        }
        return doc
    }

    static func compile(_ doc: Document, slots: inout SlotAssignment, ifindex: UInt32 = 100) throws -> MapImage {
        slots = try SlotAssignment.assign(document: doc, previous: slots)
        return try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in ifindex }))
    }
}

extension KernelTests {
    @Suite struct AttachTests {
        /// tc filters on a hook, one line per filter ("" when none or no qdisc).
        static func filters(_ ns: String, _ dev: String, _ hook: String) throws -> [String] {
            // One filter prints several lines; count distinct "pref N KIND".
            let lines = try Kernel.run(["tc", "-n", ns, "filter", "show", "dev", dev, hook], allowFailure: true)
                .split(separator: "\n").filter { $0.hasPrefix("filter") }
            var out: [String] = []
            for l in lines {
                let words = l.split(separator: " ")
                guard let i = words.firstIndex(of: "pref"), i + 2 < words.count else { continue }
                let id = "pref \(words[i + 1]) \(words[i + 2])"
                if let j = out.firstIndex(where: { $0.hasPrefix(id) }) { out[j] += " " + l } else { out.append(id + " " + l) }
            }
            return out
        }

        @Test func clsactAttachDetachOnVethLeavesNoFiltersAndKeepsOtherOwnersFilters() throws {
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir, attach: .clsact)
                defer { dp.unpinMaps(); dp.close() }
                try Kernel.withNetns { ns in
                    try Kernel.run(["ip", "-n", ns, "link", "add", "dpt0", "type", "veth", "peer", "name", "dpt1"])
                    try Kernel.run(["ip", "-n", ns, "link", "set", "dpt0", "up"])
                    try Kernel.run(["ip", "-n", ns, "link", "set", "dpt1", "up"])
                    // Another owner's clsact and filter on dpt0.
                    try Kernel.run(["tc", "-n", ns, "qdisc", "add", "dev", "dpt0", "clsact"])
                    try Kernel.run([
                        "tc", "-n", ns, "filter", "add", "dev", "dpt0", "ingress", "prio", "10",
                        "u32", "match", "u32", "0", "0", "flowid", "1:1",
                    ])

                    let attachments = try Kernel.inNetns(ns) { () throws -> [BPFDatapath.Attachment] in
                        var out: [BPFDatapath.Attachment] = []
                        for dev in ["dpt0", "dpt1"] {
                            for hook in [TCHook.ingress, .egress] {
                                out.append(try dp.attach(interface: dev, hook: hook))
                                // Attaching again replaces our filter, never adds a second one.
                                try dp.attach(interface: dev, hook: hook)
                            }
                        }
                        return out
                    }
                    #expect(attachments.filter { $0.interface == "dpt0" }.allSatisfy { !$0.createdHook })
                    #expect(try Self.filters(ns, "dpt0", "ingress").count == 2)  // theirs + ours
                    #expect(try Self.filters(ns, "dpt0", "egress").count == 1)
                    #expect(try Self.filters(ns, "dpt1", "ingress").count == 1)
                    #expect(try Self.filters(ns, "dpt1", "egress").count == 1)
                    #expect(try Self.filters(ns, "dpt1", "egress").first?.contains("mirror_tc_egre") == true)

                    try Kernel.inNetns(ns) { () throws -> Void in
                        for a in attachments { try dp.detach(a, destroyHookIfCreated: true) }
                        // Detaching what is not attached is not an error.
                        try dp.detach(interface: "dpt1", hook: .ingress)
                    }
                    let left = try Self.filters(ns, "dpt0", "ingress")
                    #expect(left.count == 1 && left[0].contains("u32"), "the other owner's filter stays: \(left)")
                    #expect(try Self.filters(ns, "dpt0", "egress").isEmpty)
                    #expect(try Self.filters(ns, "dpt1", "ingress").isEmpty)
                    #expect(try Self.filters(ns, "dpt1", "egress").isEmpty)
                    // The clsact we created on dpt1 is gone, theirs on dpt0 stays.
                    let q1 = try Kernel.run(["tc", "-n", ns, "qdisc", "show", "dev", "dpt1"])
                    let q0 = try Kernel.run(["tc", "-n", ns, "qdisc", "show", "dev", "dpt0"])
                    #expect(!q1.contains("clsact"))
                    #expect(q0.contains("clsact"))
                }
            }
        }

        @Test func attachToAMissingInterfaceSaysWhichAndWhy() throws {
            try Kernel.withBPFFS { dir in
                for mode in BPFDatapath.AttachMode.allCases {
                    let dp = try BPFDatapath(pinDirectory: dir, attach: mode)
                    defer { dp.close() }
                    do {
                        try dp.attach(interface: "dpt-missing0", hook: .egress)
                        Issue.record("attach to a missing interface succeeded")
                    } catch {
                        #expect("\(error)" == "interface dpt-missing0: No such device")
                    }
                    do {
                        try dp.attach(ifindex: 999_999, name: "tap3", hook: .egress)
                        Issue.record("attach to a missing ifindex succeeded")
                    } catch {
                        let want = mode == .tcx ? "attach tcx egress on tap3: " : "create clsact on tap3: "
                        #expect("\(error)".hasPrefix(want), "\(error)")
                    }
                    if mode == .tcx { dp.unpinMaps() }
                }
            }
        }
    }

    @Suite struct TCXAttachTests {
        /// Program names on a tcx hook, as the kernel runs them (BPF_PROG_QUERY).
        static func progs(_ ns: String, _ dev: String, _ hook: TCHook) throws -> [String] {
            try Kernel.inNetns(ns) { () throws -> [String] in
                BPFDatapath.tcxPrograms(ifindex: try BPFDatapath.ifindex(of: dev), hook: hook)
            }
        }

        static func linkPins(_ dir: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/links")) ?? []).sorted()
        }

        @Test(.enabled(if: BPFDatapath.AttachMode.probe() == .tcx, "this kernel has no tcx (< 6.6); the clsact tests cover attachment"))
        func tcxLinksArePinnedAdoptedByTheNextAgentPrunedWithTheirDeviceAndKeepOthersPrograms() throws {
            try Kernel.withBPFFS { dir in
                try Kernel.withNetns { ns in
                    try Kernel.run(["ip", "-n", ns, "link", "add", "dpt0", "type", "veth", "peer", "name", "dpt1"])
                    try Kernel.run(["ip", "-n", ns, "link", "set", "dpt0", "up"])
                    try Kernel.run(["ip", "-n", ns, "link", "set", "dpt1", "up"])
                    // Another owner's tcx program on dpt0 ingress (held by its fd, not pinned).
                    let other = try BPFDatapath(pinDirectory: nil, attach: .tcx)
                    defer { other.close() }
                    try Kernel.inNetns(ns) { () throws -> Void in _ = try other.attach(interface: "dpt0", hook: .ingress) }
                    // An older agent's clsact filter on dpt1 egress: an upgrade must replace it.
                    let old = try BPFDatapath(pinDirectory: nil, attach: .clsact)
                    defer { old.close() }
                    try Kernel.inNetns(ns) { () throws -> Void in _ = try old.attach(interface: "dpt1", hook: .egress) }

                    let first = try BPFDatapath(pinDirectory: dir, attach: .tcx)
                    let a = try Kernel.inNetns(ns) { () throws -> [BPFDatapath.Attachment] in
                        var out: [BPFDatapath.Attachment] = []
                        for dev in ["dpt0", "dpt1"] {
                            for hook in [TCHook.ingress, .egress] {
                                out.append(try first.attach(interface: dev, hook: hook))
                                try first.attach(interface: dev, hook: hook)  // again: the same link, no second one
                            }
                        }
                        return out
                    }
                    #expect(a.allSatisfy { $0.mode == .tcx && $0.programID != 0 })
                    // Theirs first (it was there first), then ours; one of ours per hook.
                    #expect(try Self.progs(ns, "dpt0", .ingress) == ["mirror_tc_ingre", "mirror_tc_ingre"])
                    #expect(try Self.progs(ns, "dpt0", .egress) == ["mirror_tc_egres"])
                    #expect(try Self.progs(ns, "dpt1", .ingress) == ["mirror_tc_ingre"])
                    #expect(try Self.progs(ns, "dpt1", .egress) == ["mirror_tc_egres"])
                    let legacy = try Kernel.run(["tc", "-n", ns, "filter", "show", "dev", "dpt1", "egress"], allowFailure: true)
                    #expect(!legacy.contains("mirror_tc"), "the clsact filter of the older agent is gone: \(legacy)")
                    let ifindex = try Kernel.inNetns(ns) { () throws -> (Int32, Int32) in
                        (try BPFDatapath.ifindex(of: "dpt0"), try BPFDatapath.ifindex(of: "dpt1"))
                    }
                    #expect(
                        Self.linkPins(dir)
                            == [
                                "tcx-\(ifindex.0)-egress", "tcx-\(ifindex.0)-ingress",
                                "tcx-\(ifindex.1)-egress", "tcx-\(ifindex.1)-ingress",
                            ].sorted())

                    // The agent goes away: its links stay (pinned) and keep their program.
                    first.close()
                    #expect(try Self.progs(ns, "dpt1", .egress) == ["mirror_tc_egres"])
                    // The next agent adopts them: same links, now running its own program.
                    let second = try BPFDatapath(pinDirectory: dir, attach: .tcx)
                    defer { second.pruneLinks(all: true); second.unpinMaps(); second.close() }
                    let b = try Kernel.inNetns(ns) { () throws -> [BPFDatapath.Attachment] in
                        try [TCHook.ingress, .egress].map { try second.attach(interface: "dpt1", hook: $0) }
                    }
                    #expect(b.allSatisfy { $0.programID != a[0].programID && $0.programID != a[1].programID })
                    #expect(try Kernel.inNetns(ns) { second.isAttached(ifindex: ifindex.1, hook: .egress) })
                    #expect(try Self.progs(ns, "dpt1", .ingress) == ["mirror_tc_ingre"])

                    // Detach takes ours off and leaves the other owner's.
                    try Kernel.inNetns(ns) { () throws -> Void in
                        try second.detach(interface: "dpt0", hook: .ingress)
                        try second.detach(interface: "dpt0", hook: .ingress)  // not attached: not an error
                    }
                    #expect(try Self.progs(ns, "dpt0", .ingress) == ["mirror_tc_ingre"])
                    #expect(try Kernel.inNetns(ns) { !second.isAttached(ifindex: ifindex.0, hook: .ingress) })
                    #expect(Self.linkPins(dir).count == 3)

                    // Deleting the devices leaves defunct links pinned: pruning removes them.
                    try Kernel.run(["ip", "-n", ns, "link", "del", "dpt0"])
                    #expect(second.pruneLinks() == 3)
                    #expect(Self.linkPins(dir).isEmpty)
                }
            }
        }
    }

    @Suite struct PinTests {
        @Test func mapsArePinnedAndASecondLoadReusesPolicyAndCounters() throws {
            try Kernel.withBPFFS { dir in
                var slots = SlotAssignment()
                let doc = Docs.document(sessions: [("a", 1, [Rule(priority: 1, action: .accept, ethertype: .ipv4)])])
                let image = try Docs.compile(doc, slots: &slots)
                let first = try BPFDatapath(pinDirectory: dir)
                let generation = try first.apply(image)
                let v1 = Verdict(try first.testRun(.testEgress, frame: Docs.tcp80, mark: 100, cb0: MIRROR_TEST_COUNT).retval)
                #expect(v1.outcome == .accept)
                // A plain test run (an explain) leaves the counters alone.
                _ = try first.testRun(.testEgress, frame: Docs.tcp80, mark: 100)
                #expect(try first.sessionCounters(sessionSlot: slots.sessions["a"]!).packets == 1)
                first.close()
                let pinned = try FileManager.default.contentsOfDirectory(atPath: dir)
                for m in [
                    "mirror_active", "mirror_policy", "mirror_session", "mirror_target", "session_stats", "rule_stats", "source_stats",
                ] {
                    #expect(pinned.contains(m), "\(m) pinned")
                }

                let second = try BPFDatapath(pinDirectory: dir)
                defer { second.unpinMaps(); second.close() }
                #expect(try second.activeGeneration().generation == generation)
                let v2 = Verdict(try second.testRun(.testEgress, frame: Docs.tcp80, mark: 100, cb0: MIRROR_TEST_COUNT).retval)
                #expect(v2 == v1)
                // Copies (cb magic before encapsulation, mark after) are never classified.
                let copy = Verdict(try second.testRun(.testEgress, frame: Docs.tcp80, mark: 100, cb0: MIRROR_COPY_MAGIC).retval)
                #expect(copy.outcome == .copy)
                let sent = Verdict(try second.testRun(.testEgress, frame: Docs.tcp80, mark: MIRROR_COPY_MARK).retval)
                #expect(sent.outcome == .copy)
                let slot = slots.sessions["a"]!
                #expect(try second.sessionCounters(sessionSlot: slot).packets == 2)
                #expect(try second.sessionCounters(sessionSlot: slot).bytes == UInt64(2 * Docs.tcp80.count))
                #expect(try second.ruleHits(sessionSlot: slot, direction: .inbound, ruleIndex: 0) == 2)
                let src = try second.sourceCounters(sourceSlot: slots.sources["s"]!, direction: .inbound)
                #expect(src.seen == 2 && src.mirrored == 2)
                try second.clearCounters(sessionSlots: [slot], sourceSlots: [])
                #expect(try second.sessionCounters(sessionSlot: slot).packets == 0)
            }
        }

        @Test func aPinDirectoryOutsideBpffsIsRefused() throws {
            #expect(throws: DatapathError.self) { try BPFDatapath(pinDirectory: "/tmp") }
        }
    }

    @Suite struct GenerationFlipTests {
        @Test func flippingBetweenTwoPoliciesNeverYieldsADecisionOfNeither() throws {
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                dp.slotGracePeriod = .milliseconds(2)
                var slots = SlotAssignment()
                // Policy A: session a accepts the packet with its first rule.
                let docA = Docs.document(sessions: [("a", 1, [Rule(priority: 5, action: .accept, ethertype: .ipv4, protocol: .tcp)])])
                // Policy B: session b's first rule does not match, its second rejects.
                let docB = Docs.document(sessions: [
                    (
                        "b", 2,
                        [
                            Rule(priority: 1, action: .accept, ethertype: .ipv4, protocol: .udp),
                            Rule(priority: 9, action: .reject, ethertype: .ipv4, protocol: .all),
                        ]
                    )
                ])
                // Both sessions keep their own stable slot, as across real applies.
                let slotA: UInt16 = 1, slotB: UInt16 = 2
                slots = SlotAssignment(sessions: ["a": slotA, "b": slotB], sources: ["s": 0])
                let imageA = try Compiler.compile(.init(document: docA, slots: slots, interfaceIndex: { _ in 100 }))
                let imageB = try Compiler.compile(.init(document: docB, slots: slots, interfaceIndex: { _ in 100 }))
                try dp.apply(imageA)

                let stop = Atomic(false)
                let seen = Atomic([String: Int]())
                let bad = Atomic([String]())
                let done = DispatchSemaphore(value: 0)
                Thread {
                    defer { done.signal() }
                    var local: [String: Int] = [:]
                    var wrong: [String] = []
                    while !stop.value {
                        guard let r = try? dp.testRun(.testEgress, frame: Docs.tcp80, mark: 100, repeat: 1) else { continue }
                        let v = Verdict(r.retval)
                        let isA = v.outcome == .accept && v.sessionSlot == slotA && v.ruleIndex == 0
                        let isB = v.outcome == .reject && v.sessionSlot == slotB && v.ruleIndex == 1
                        local[isA ? "A" : isB ? "B" : "neither", default: 0] += 1
                        if !isA && !isB && wrong.count < 5 { wrong.append(v.description) }
                    }
                    seen.value = local
                    bad.value = wrong
                }.start()
                for i in 0..<150 { try dp.apply(i % 2 == 0 ? imageB : imageA) }
                stop.value = true
                done.wait()
                print("generation flip: verdicts \(seen.value) over 150 flips")
                #expect(seen.value["neither"] == nil, "\(bad.value)")
                #expect((seen.value["A"] ?? 0) > 0 && (seen.value["B"] ?? 0) > 0)
            }
        }
    }
}

/// A lock-protected box for the flip test's two threads.
final class Atomic<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return v }
        set { lock.lock(); v = newValue; lock.unlock() }
    }
}
