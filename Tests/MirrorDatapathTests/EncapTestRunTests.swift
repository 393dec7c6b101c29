import CMirrorABI
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import Testing

/// Stage 2's direct path, byte by byte (SPEC §6, §11): BPF_PROG_TEST_RUN of
/// `mirror_encap` on a copy with stage 1's metadata, for every encapsulation and
/// both outer families, each field of the frame it leaves checked.
extension KernelTests {
    @Suite struct EncapTestRunTests {
        static let collector4 = IPAddress("198.51.100.2")!, source4 = IPAddress("198.51.100.1")!
        static let collector6 = IPAddress("2001:db8:2::2")!, source6 = IPAddress("2001:db8:2::1")!
        static let hostMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x11], nextHopMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x22]
        static let vni = 777
        /// linux/pkt_cls.h (not imported into Swift).
        static let redirect: UInt32 = 7, shot: UInt32 = 2
        static let flowHash: UInt32 = 0x1234_5678
        static let inner = FrameBuilder.frame(
            for: PacketDescription(
                ethertype: .ipv4, protocol: 17, source: IPAddress("192.0.2.10"), destination: IPAddress("203.0.113.10"),
                sourcePort: 40000, destinationPort: 5001),
            options: .init(payloadBytes: 300))

        /// Applies one session at `collector` with `encapsulation` on `dp` (both
        /// objects, unpinned: loading them is most of the time, so one per test),
        /// writes the collector's template in `state` (nil: none) and runs stage 2 `times` times.
        /// The counters are the session's since the first run.
        func run(
            _ dp: BPFDatapath, _ encapsulation: Encapsulation, _ collector: IPAddress,
            state: EncapTemplate.State? = .resolved, times: Int = 1, frame: [UInt8] = inner
        ) throws -> (results: [(retval: UInt32, frame: [UInt8])], counters: BPFDatapath.EncapCounters) {
            let doc = Document(
                filters: [Filter(id: "f", inbound: [Rule(priority: 1, action: .accept, ethertype: .ipv4)])],
                targets: [Target(id: "t", type: .nic, address: collector, encapsulation: encapsulation)],
                sources: [Source(id: "s", interface: "tap0")],
                sessions: [Session(id: "x", priority: 1, filter: "f", sources: ["s"], target: "t", vni: Self.vni)])
            let slots = try SlotAssignment.assign(document: doc)
            try dp.apply(try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in 100 })))
            let v6 = collector.ethertype == .ipv6
            try dp.setEncapTemplates(
                state.map {
                    [
                        EncapTemplate(
                            collector: collector.bytes, source: (v6 ? Self.source6 : Self.source4).bytes, nextHop: collector.bytes,
                            sourceMAC: Self.hostMAC, nextHopMAC: $0 == .resolved ? Self.nextHopMAC : [], ifindex: 1, state: $0)
                    ]
                } ?? [])
            let sessionSlot = slots.sessions["x"]!
            try dp.clearCounters(sessionSlots: [sessionSlot], sourceSlots: [])
            let slot = try dp.activeGeneration().slot
            var results: [(UInt32, [UInt8])] = []
            for _ in 0..<times {
                results.append(try dp.testRunEncap(frame: frame, sessionSlot: sessionSlot, slot: slot, flowHash: Self.flowHash))
            }
            return (results, try dp.encapCounters(sessionSlot: UInt32(sessionSlot)))
        }

        static func u16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }
        static func u32(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(u16(b, i)) << 16 | UInt32(u16(b, i + 2)) }
        /// RFC 1071 over `bytes` (a valid header or pseudo-header + segment sums to 0).
        static func sum(_ bytes: [UInt8]) -> UInt16 {
            var s: UInt32 = 0
            var i = 0
            while i + 1 < bytes.count { s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
            if i < bytes.count { s += UInt32(bytes[i]) << 8 }
            while s >> 16 != 0 { s = (s & 0xffff) + (s >> 16) }
            return ~UInt16(s)
        }

        /// The 16 tunnel header bytes at `t` for `kind`, and the UDP source port entropy.
        func checkTunnel(_ f: [UInt8], at t: Int, _ kind: Encapsulation, sequence: UInt32? = nil, truncated: Bool = false) {
            let innerLength = Self.inner.count
            switch kind {
            case .vxlan, .geneve:
                let h = Self.flowHash
                #expect(Self.u16(f, t) == Int(0xc000 | ((h ^ (h >> 16)) & 0x3fff)), "UDP source port from the flow hash")
                #expect(Self.u16(f, t + 2) == (kind == .vxlan ? 4789 : 6081), "UDP destination port")
                #expect(Self.u16(f, t + 4) == 16 + innerLength, "UDP length")
                if kind == .vxlan {
                    #expect(Self.u32(f, t + 8) == 0x0800_0000, "VXLAN flags: I")
                } else {
                    #expect(f[t + 8] == 0 && f[t + 9] == 0, "GENEVE version 0, no options, O and C clear")
                    #expect(Self.u16(f, t + 10) == 0x6558, "GENEVE protocol: Ethernet")
                }
                #expect(Self.u32(f, t + 12) == UInt32(Self.vni) << 8, "VNI")
            case .erspan:
                #expect(Self.u16(f, t) == 0x1000, "GRE: S bit only, version 0")
                #expect(Self.u16(f, t + 2) == 0x88BE, "GRE protocol: ERSPAN type II")
                if let sequence { #expect(Self.u32(f, t + 4) == sequence, "GRE sequence number") }
                let w = Self.u32(f, t + 8)
                #expect(w >> 28 == 1, "ERSPAN version 1 (type II)")
                #expect((w >> 16) & 0xfff == 0, "VLAN 0")
                #expect((w >> 11) & 3 == 0, "en: untagged inner frame")
                #expect((w >> 10) & 1 == (truncated ? 1 : 0), "T: truncated")
                #expect(w & 0x3ff == UInt32(Self.vni), "session ID = the session's vni")
                #expect(Self.u32(f, t + 12) == 0, "reserved, index 0")
            }
        }

        func checkIPv4(_ dp: BPFDatapath, _ kind: Encapsulation) throws {
            let (results, counters) = try run(dp, kind, Self.collector4, times: 2)
            let firstSequence = kind == .erspan ? Self.u32(results[0].frame, 34 + 4) : 0
            for (n, r) in results.enumerated() {
                #expect(r.retval == Self.redirect)
                let f = r.frame
                #expect(f.count == Int(MIRROR_VXLAN_OVERHEAD_IPV4) + Self.inner.count, "50 bytes of overhead")
                #expect(Array(f[0..<6]) == Self.nextHopMAC && Array(f[6..<12]) == Self.hostMAC)
                #expect(Self.u16(f, 12) == 0x0800)
                let ip = Array(f[14..<34])
                #expect(ip[0] == 0x45 && Self.u16(ip, 2) == f.count - 14 && ip[8] == 64)
                #expect(Self.u16(ip, 6) == 0, "not fragmented, DF clear")
                #expect(ip[9] == (kind == .erspan ? 47 : 17), "protocol")
                #expect(Array(ip[12..<16]) == Self.source4.bytes && Array(ip[16..<20]) == Self.collector4.bytes)
                #expect(Self.sum(ip) == 0, "IPv4 header checksum")
                if kind != .erspan { #expect(Self.u16(f, 34 + 6) == 0, "UDP checksum 0 over IPv4") }
                checkTunnel(f, at: 34, kind, sequence: firstSequence + UInt32(n))
                #expect(Array(f[50...]) == Self.inner, "the inner frame, whole and unchanged")
            }
            #expect(counters.sent == 2 && counters.sentDirect == 2 && counters.sentDevice == 0 && counters.droppedNoRoute == 0)
        }

        func checkIPv6(_ dp: BPFDatapath, _ kind: Encapsulation) throws {
            let (results, counters) = try run(dp, kind, Self.collector6)
            let r = results[0]
            #expect(r.retval == Self.redirect)
            let f = r.frame
            #expect(f.count == Int(MIRROR_VXLAN_OVERHEAD_IPV6) + Self.inner.count, "70 bytes of overhead")
            #expect(Array(f[0..<6]) == Self.nextHopMAC && Array(f[6..<12]) == Self.hostMAC)
            #expect(Self.u16(f, 12) == 0x86dd)
            let first = Self.u32(f, 14)
            #expect(first >> 28 == 6 && (first >> 20) & 0xff == 0, "version 6, traffic class 0")
            #expect(first & 0xfffff == Self.flowHash & 0xfffff, "flow label from the flow hash (RFC 6438)")
            #expect(Self.u16(f, 18) == f.count - 54, "payload length")
            #expect(f[20] == (kind == .erspan ? 47 : 17) && f[21] == 64, "next header, hop limit")
            #expect(Array(f[22..<38]) == Self.source6.bytes && Array(f[38..<54]) == Self.collector6.bytes)
            if kind != .erspan {
                let segment = Array(f[54...])
                let pseudo = Array(f[22..<54]) + [0, 0, UInt8(segment.count >> 8), UInt8(segment.count & 0xff), 0, 0, 0, 17]
                #expect(Self.u16(f, 54 + 6) != 0, "IPv6 UDP checksum present (RFC 6935)")
                #expect(Self.sum(pseudo + segment) == 0, "IPv6 UDP checksum valid")
            }
            checkTunnel(f, at: 54, kind)
            #expect(Array(f[70...]) == Self.inner)
            #expect(counters.sent == 1 && counters.sentDirect == 1)
        }

        @Test func directPathWritesEveryFieldOfEveryKindOverIPv4AndIPv6() throws {
            let dp = try BPFDatapath(pinDirectory: nil)
            defer { dp.close() }
            for kind in Encapsulation.allCases {
                try checkIPv4(dp, kind)
                try checkIPv6(dp, kind)
            }
        }

        /// SPEC §11: a copy is on the wire or counted under a drop reason. An unresolved
        /// next hop or no route: dropped and counted, never sent (nor queued for the
        /// kernel to drop unseen). No template: only vxlan goes to the VXLAN device,
        /// counted as sent_device, not as sent.
        @Test func copiesThatCannotLeaveAreDroppedByReasonAndDeviceCopiesAreCountedApart() throws {
            let dp = try BPFDatapath(pinDirectory: nil)
            defer { dp.close() }
            for kind in Encapsulation.allCases {
                for collector in [Self.collector4, Self.collector6] {
                    let (results, counters) = try run(dp, kind, collector, state: .unresolved, times: 3)
                    #expect(results.allSatisfy { $0.retval == Self.shot }, "\(kind) \(collector)")
                    #expect(
                        counters.sent == 0 && counters.sentDevice == 0 && counters.droppedNeighborUnresolved == 3
                            && counters.droppedNoRoute == 0, "\(kind) \(collector)")
                }
                let (results, counters) = try run(dp, kind, Self.collector4, state: .noRoute, times: 3)
                #expect(results.allSatisfy { $0.retval == Self.shot }, "\(kind)")
                #expect(counters.sent == 0 && counters.droppedNoRoute == 3 && counters.droppedNeighborUnresolved == 0, "\(kind)")
                let (none, noTemplate) = try run(dp, kind, Self.collector4, state: nil, times: 2)
                if kind == .vxlan {
                    #expect(none.allSatisfy { $0.retval == 0 }, "vxlan without a template: to the VXLAN device (TC_ACT_OK)")
                    #expect(noTemplate.sent == 0 && noTemplate.sentDirect == 0 && noTemplate.sentDevice == 2)
                } else {
                    #expect(none.allSatisfy { $0.retval == Self.shot }, "\(kind) has no device to fall back on")
                    #expect(noTemplate.sent == 0 && noTemplate.sentDevice == 0 && noTemplate.droppedNoRoute == 2, "\(kind)")
                }
            }
        }
    }
}
