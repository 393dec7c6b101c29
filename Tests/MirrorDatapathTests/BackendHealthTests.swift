import CMirrorABI
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import Testing

extension KernelTests {
    /// SPEC §2, §10 through the real stage 2 (BPF_PROG_TEST_RUN of mirror_encap):
    /// which backend a copy goes to, read from the outer headers stage 2 pushes.
    @Suite struct BackendHealthTests {
        static let backends = ["198.51.100.2", "198.51.100.3", "198.51.100.4"].map { IPAddress($0)! }
        /// Flow hashes spread like the classifier's (fmix32 of the 5-tuple).
        static let flows: [UInt32] = (0..<600).map { mirror_mix32(UInt32($0) &* 2_654_435_761 &+ 99) }
        /// A copy's inner frame: IPv4 (bpf_skb_adjust_room, which pushes the outer
        /// headers, takes only IP frames).
        static let copy = FrameBuilder.frame(
            for: PacketDescription(
                ethertype: .ipv4, protocol: 17, source: IPAddress("192.0.2.10"), destination: IPAddress("203.0.113.10"),
                sourcePort: 20000, destinationPort: 5001))
        /// linux/pkt_cls.h
        static let tcActShot: UInt32 = 2, tcActRedirect: UInt32 = 7

        struct Setup {
            var dp: BPFDatapath
            var doc: Document
            var slots: SlotAssignment
            var slot: UInt8 { (try? dp.activeGeneration().slot) ?? 0 }

            /// The backend stage 2 sent the copy of `flowHash` to, nil when it dropped it.
            func backend(_ flowHash: UInt32) throws -> Int? {
                let r = try dp.testRunEncap(
                    frame: BackendHealthTests.copy, sessionSlot: slots.sessions["s"]!, slot: slot, flowHash: flowHash)
                if r.retval == BackendHealthTests.tcActShot { return nil }
                #expect(r.retval == BackendHealthTests.tcActRedirect, "stage 2 returned \(r.retval)")
                // Outer Ethernet (14) then IPv4: the destination at 16..<20.
                let daddr = Array(r.frame[30..<34])
                return try #require(BackendHealthTests.backends.firstIndex { $0.bytes == daddr }, "copy to \(daddr)")
            }

            func all() throws -> [Int?] { try BackendHealthTests.flows.map(backend) }
        }

        func withSetup(_ body: (Setup) throws -> Void) throws {
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                try dp.loadEncap()
                var doc = Document()
                doc.filters = [Filter(id: "f")]
                doc.targets = [
                    Target(id: "lb", type: .loadBalancer, backends: Self.backends, healthCheck: HealthCheck(protocol: .icmp))
                ]
                doc.sources = [Source(id: "vm", interface: "tap-health")]
                doc.sessions = [Session(id: "s", priority: 1, filter: "f", sources: ["vm"], target: "lb", vni: 7)]
                let slots = try SlotAssignment.assign(document: doc, previous: SlotAssignment())
                try dp.apply(try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in 7 })))
                // Templates for every backend: stage 2 pushes the outer headers itself,
                // so the chosen backend is in the frame it leaves (redirect to lo).
                try dp.setEncapTemplates(
                    Self.backends.map {
                        EncapTemplate(
                            collector: $0.bytes, source: [198, 51, 100, 1], nextHop: $0.bytes, sourceMAC: [2, 0, 0, 0, 0, 1],
                            nextHopMAC: [2, 0, 0, 0, 0, 2], ifindex: 1, state: .resolved)
                    })
                try body(Setup(dp: dp, doc: doc, slots: slots))
            }
        }

        @Test func takingOneBackendDownMovesOnlyItsFlowsBringingItBackReturnsThemAndNoneLeftDropsAndCounts() throws {
            try withSetup { s in
                let before = try s.all()
                // The kernel runs the very choice Swift computes (bpf/mirror_backend.h).
                let target = s.doc.targets[0]
                #expect(before == (try Self.flows.map { try BackendChoice.collector(of: target, flowHash: $0) }))
                for b in 0..<3 { #expect(before.filter { $0 == b }.count > Self.flows.count / 5, "backend \(b) gets flows") }

                for down in 0..<3 {
                    try s.dp.writeTargetHealth([0: 1 << UInt32(down)], slot: s.slot)
                    let during = try s.all()
                    var spread = Set<Int>()
                    for (b, d) in zip(before, during) {
                        if b == down {
                            let d = try #require(d, "a flow of the backend taken down was dropped")
                            #expect(d != down)
                            spread.insert(d)
                        } else {
                            #expect(d == b, "a flow of a healthy backend moved")
                        }
                    }
                    #expect(spread.count == 2, "the flows of backend \(down) spread over the other two")
                    try s.dp.writeTargetHealth([:], slot: s.slot)
                    #expect(try s.all() == before, "back up: exactly its flows return")
                }

                // No healthy backend: every copy dropped and counted (SPEC §10).
                try s.dp.writeTargetHealth([0: 0b111], slot: s.slot)
                #expect(try s.all().allSatisfy { $0 == nil })
                let c = try s.dp.encapCounters(sessionSlot: UInt32(s.slots.sessions["s"]!))
                #expect(c.droppedTargetUnhealthy == UInt64(Self.flows.count))
                #expect(c.sent == UInt64(Self.flows.count * 7), "the copies sent before (1 + 3 × 2 rounds)")
            }
        }

        @Test func anApplyCarriesTheHealthIntoTheNewGeneration() throws {
            try withSetup { s in
                let before = try s.all()
                // The image compiled with backend 1 down: written into the slot the apply
                // puts in force, so the flip itself moves backend 1's flows.
                let image = try Compiler.compile(
                    .init(
                        document: s.doc, slots: s.slots, interfaceIndex: { _ in 7 },
                        unhealthy: { $0 == "lb" ? [Self.backends[1]] : [] }))
                let oldSlot = s.slot
                try s.dp.apply(image)
                #expect(s.slot != oldSlot)
                let during = try s.all()
                for (b, d) in zip(before, during) { #expect(b == 1 ? (d != 1 && d != nil) : d == b) }
                // The next apply without it: all healthy again, whatever the old slot held.
                try s.dp.apply(try Compiler.compile(.init(document: s.doc, slots: s.slots, interfaceIndex: { _ in 7 })))
                #expect(try s.all() == before)
            }
        }
    }
}
