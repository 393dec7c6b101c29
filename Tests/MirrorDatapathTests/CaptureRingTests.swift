import CMirrorABI
import MirrorCompiler
import MirrorCore
import Testing

@testable import MirrorDatapath

extension KernelTests {
    /// bpf/capture.h in the kernel (SPEC §11), through the classifier's counting test
    /// runs: nothing reaches the ring while no capture wants it; a capture gets what its
    /// session or source mirrors, up to the snaplen, tagged with its bit; an explain
    /// (a test run that counts nothing) never shows up.
    @Suite struct CaptureRingTests {
        static func udp(dport: UInt16, payload: Int = 100) -> [UInt8] {
            FrameBuilder.frame(
                for: PacketDescription(
                    ethertype: .ipv4, protocol: 17, source: IPAddress("198.51.100.1"), destination: IPAddress("198.51.100.2"),
                    sourcePort: 40000, destinationPort: dport),
                options: FrameBuilder.Options(payloadBytes: payload))
        }

        @Test func theRingHasOnlyWhatARunningCaptureWants() throws {
            let dp = try BPFDatapath(pinDirectory: nil)
            defer { dp.close() }
            dp.slotGracePeriod = .zero
            var doc = Document()
            doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.10"))]
            doc.sources = [Source(id: "s", interface: "cap0")]
            let web = Rule(priority: 7, action: .accept, ethertype: .ipv4, protocol: .udp, destinationPorts: PortRange(4000, 4000))
            let rest = Rule(priority: 3, action: .accept, ethertype: .ipv4)
            doc.filters = [Filter(id: "web", outbound: [web]), Filter(id: "rest", outbound: [rest])]
            doc.sessions = [
                Session(id: "a", priority: 1, filter: "web", sources: ["s"], target: "t", vni: 1),
                Session(id: "b", priority: 2, filter: "rest", sources: ["s"], target: "t", vni: 2),
            ]
            let ifindex: UInt32 = 100
            let slots = try SlotAssignment.assign(document: doc)
            try dp.apply(try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in ifindex })))
            let ring = try dp.openCaptureRing()
            defer { ring.close() }
            let toA = Self.udp(dport: 4000), toB = Self.udp(dport: 5000)
            func send(_ frame: [UInt8], counting: Bool = true) throws {
                let v = Verdict(try dp.testRun(.testIngress, frame: frame, mark: ifindex, cb0: counting ? MIRROR_TEST_COUNT : 0).retval)
                #expect(v.outcome == .accept)
            }
            try dp.clearCaptureWants()
            try send(toA)
            try send(toB)
            #expect(ring.consume().isEmpty, "no capture runs: nothing in the ring")

            // Capture 0: session a, 20 bytes; capture 3: the source's outbound, whole.
            var selectors: [Int: CaptureSelector] = [0: CaptureSelector(session: "a", directions: [.outbound], snaplen: 20)]
            var (wants, sessions) = KernelCapture.wants(selectors, document: doc, slots: slots)
            try dp.setCaptureWants(wants, sessions: sessions, clearing: ([], []))
            try send(toA)
            #expect(ring.consume().isEmpty, "wants without the global switch: nothing in the ring")
            try dp.setCaptureRunning(true)
            let before = try dp.captureStats()
            try send(toA)
            try send(toB)
            try send(toA, counting: false)  // an explain
            var got = ring.consume()
            #expect(got.count == 1)
            let r = try #require(got.first)
            #expect(r.captures == 1 && r.data == Array(toA.prefix(20)) && r.length == UInt32(toA.count))
            #expect(r.sessionSlot == slots.sessions["a"] && r.sourceSlot == slots.sources["s"] && r.direction == .outbound)
            #expect(r.rulePriority == 7 && r.ruleIndex == 0)

            selectors[3] = CaptureSelector(source: "s", directions: [.outbound], snaplen: 16384)
            (wants, sessions) = KernelCapture.wants(selectors, document: doc, slots: slots)
            try dp.setCaptureWants(wants, sessions: sessions, clearing: ([], []))
            try send(toA)
            try send(toB)
            got = ring.consume()
            #expect(got.map(\.captures) == [0b1001, 0b1000])
            // One record for both captures, as long as the longer snaplen wants: the agent cuts.
            #expect(got.map(\.data) == [toA, toB])
            let after = try dp.captureStats()
            #expect(after[0].records - before[0].records == 2 && after[3].records - before[3].records == 2)
            #expect(after[0].lost == before[0].lost && after[3].lost == before[3].lost)

            // Inbound was not asked for: the same frames on the ENI's inbound stay out.
            _ = try dp.testRun(.testEgress, frame: toA, mark: ifindex, cb0: MIRROR_TEST_COUNT)
            #expect(ring.consume().isEmpty)

            try dp.setCaptureWants([:], sessions: [:], clearing: (Set(wants.keys), Set(sessions.keys)))
            try send(toA)
            #expect(ring.consume().isEmpty, "the capture ended: nothing in the ring")
        }
    }
}

/// The want maps' contents for a set of captures (pure: KernelCapture.wants).
@Suite struct CaptureWantsTests {
    @Test func wantsFollowTheSessionsSourcesAndTheLargestSnaplen() {
        var doc = Document()
        doc.sources = [Source(id: "x", interface: "x0"), Source(id: "y", interface: "y0")]
        doc.sessions = [Session(id: "s", priority: 1, filter: "f", sources: ["x", "y"], target: "t", vni: 1)]
        let slots = SlotAssignment(sessions: ["s": 4], sources: ["x": 0, "y": 1])
        let (wants, sessions) = KernelCapture.wants(
            [
                1: CaptureSelector(session: "s", snaplen: 100),
                2: CaptureSelector(source: "y", directions: [.inbound], snaplen: 999_999),
                5: CaptureSelector(session: "gone", snaplen: 1),
            ], document: doc, slots: slots)
        #expect(sessions == [4: 0b10])
        func key(_ slot: UInt32, _ d: Direction) -> UInt32 { mirror_source_stats_key(slot, UInt32(d.abi)) }
        #expect(Set(wants.keys) == [key(0, .inbound), key(0, .outbound), key(1, .inbound), key(1, .outbound)])
        let yIn = wants[key(1, .inbound)]!
        #expect(yIn.sources == 0b100 && yIn.sessions == 0b10 && yIn.snaplen == UInt32(MIRROR_CAPTURE_MAX_SNAPLEN))
        let xOut = wants[key(0, .outbound)]!
        #expect(xOut.sources == 0 && xOut.sessions == 0b10 && xOut.snaplen == 100)
    }
}
