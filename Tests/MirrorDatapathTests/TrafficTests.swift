import Foundation
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import Testing

extension KernelTests {
    /// Real packets through the attached TC programs (not test-run): the production
    /// programs clone to the mirror device, count, and never classify a copy again.
    @Suite struct TrafficTests {
        static func rxPackets(_ ns: String, _ dev: String) throws -> Int {
            Int(
                try Kernel.run(["ip", "netns", "exec", ns, "cat", "/sys/class/net/\(dev)/statistics/rx_packets"])
                    .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }

        /// IPv4 only (no IPv6 chatter to count), the ENI as a tap-like veth dptA0
        /// (host side, 198.51.100.1) <-> dptA1 in the VM namespace (198.51.100.2), and the
        /// mirror device: copies leave dptM0 and arrive on dptM1.
        static func eniAndMirrorDevices(host: String, vm: String) throws {
            for ns in [host, vm] {
                try Kernel.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
                try Kernel.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            }
            try Kernel.run(["ip", "-n", host, "link", "add", "dptA0", "type", "veth", "peer", "name", "dptA1", "netns", vm])
            try Kernel.run(["ip", "-n", host, "link", "add", "dptM0", "type", "veth", "peer", "name", "dptM1"])
            try Kernel.run(["ip", "-n", host, "addr", "add", "198.51.100.1/24", "dev", "dptA0"])
            try Kernel.run(["ip", "-n", vm, "addr", "add", "198.51.100.2/24", "dev", "dptA1"])
            for (ns, dev) in [(host, "dptA0"), (vm, "dptA1"), (host, "dptM0"), (host, "dptM1")] {
                try Kernel.run(["ip", "-n", ns, "link", "set", dev, "up"])
            }
        }

        @Test func pingIsMirroredOncePerDirectionAndCopiesAreNeverClassifiedAgain() throws {
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                try Kernel.withNetns { host in
                    try Kernel.withNetns { vm in
                        try Self.eniAndMirrorDevices(host: host, vm: vm)

                        var doc = Document()
                        doc.targets = [Target(id: "collector", type: .nic, address: IPAddress("192.0.2.10"))]
                        doc.sources = [Source(id: "eni", interface: "dptA0"), Source(id: "mirror", interface: "dptM0")]
                        let icmp = Rule(priority: 1, action: .accept, ethertype: .ipv4, protocol: .icmp)
                        let any = Rule(priority: 1, action: .accept, ethertype: .ipv4)
                        doc.filters = [
                            Filter(id: "icmp", inbound: [icmp], outbound: [icmp]),
                            Filter(id: "everything", inbound: [any], outbound: [any]),
                        ]
                        doc.sessions = [
                            Session(id: "s", priority: 1, filter: "icmp", sources: ["eni"], target: "collector", vni: 7),
                            // A session on the mirror device itself: copies must still not be mirrored.
                            Session(id: "loop", priority: 1, filter: "everything", sources: ["mirror"], target: "collector", vni: 8),
                        ]
                        let slots = try SlotAssignment.assign(document: doc)
                        let (indexes, attachments) = try Kernel.inNetns(host) { () throws -> ([String: UInt32], [BPFDatapath.Attachment]) in
                            var idx: [String: UInt32] = [:]
                            for dev in ["dptA0", "dptM0"] { idx[dev] = UInt32(try BPFDatapath.ifindex(of: dev)) }
                            var att: [BPFDatapath.Attachment] = []
                            for dev in ["dptA0", "dptM0"] {
                                att.append(try dp.attach(interface: dev, hook: .ingress))
                                att.append(try dp.attach(interface: dev, hook: .egress))
                            }
                            return (idx, att)
                        }
                        defer {
                            _ = try? Kernel.inNetns(host) { () throws -> Void in
                                for a in attachments { try dp.detach(a, destroyHookIfCreated: true) }
                            }
                        }
                        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { indexes[$0] }))
                        try dp.apply(image, mirrorIfindex: indexes["dptM0"]!)

                        let before = try Self.rxPackets(host, "dptM1")
                        try Kernel.run(["ip", "netns", "exec", host, "ping", "-c", "5", "-i", "0.2", "-W", "2", "198.51.100.2"])
                        Thread.sleep(forTimeInterval: 0.2)
                        let copies = try Self.rxPackets(host, "dptM1") - before

                        // 802.1Q-tagged frames sent by the VM: the kernel moves the tag out of
                        // the frame (skb->vlan_present) before TC ingress; parse.h then reads the
                        // frame's own EtherType. (This kernel has no 8021q devices, so the VM
                        // sends them on a packet socket.)
                        let tagged = FrameBuilder.frame(
                            for: PacketDescription(
                                ethertype: .ipv4, protocol: 1, source: IPAddress("198.51.100.2"),
                                destination: IPAddress("198.51.100.1")),
                            options: .init(vlan: 100))
                        let beforeVLAN = try Self.rxPackets(host, "dptM1")
                        try Kernel.run([
                            "ip", "netns", "exec", vm, "python3", "-c",
                            "import socket,sys,binascii\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
                                + "s.bind(('dptA1',0))\nfor _ in range(3): s.send(binascii.unhexlify(sys.argv[1]))",
                            tagged.hex,
                        ])
                        Thread.sleep(forTimeInterval: 0.2)
                        let vlanCopies = try Self.rxPackets(host, "dptM1") - beforeVLAN
                        #expect(vlanCopies == 3, "VLAN-tagged frames mirrored once each")

                        let slot = slots.sessions["s"]!
                        let session = try dp.sessionCounters(sessionSlot: slot)
                        let inbound = try dp.sourceCounters(sourceSlot: slots.sources["eni"]!, direction: .inbound)
                        let outbound = try dp.sourceCounters(sourceSlot: slots.sources["eni"]!, direction: .outbound)
                        let loop = try dp.sessionCounters(sessionSlot: slots.sessions["loop"]!)
                        print(
                            "traffic: \(copies) copies on the mirror device; session \(session); inbound \(inbound); outbound \(outbound); loop \(loop)"
                        )
                        // 5 echo requests leave dptA0 (TC egress = the ENI's inbound), 5 replies
                        // enter it (TC ingress = outbound): 10 copies, each once.
                        #expect(session.packets == 13)
                        #expect(inbound.mirrored == 5 && outbound.mirrored == 8)
                        #expect(inbound.cloneErrors == 0 && outbound.cloneErrors == 0)
                        #expect(inbound.notIP + outbound.notIP >= 1, "ARP is seen and not mirrored")
                        #expect(copies == 10)
                        #expect(loop.packets == 0, "a copy was classified again on the mirror device")
                    }
                }
            }
        }

        /// While an attachment moves between a clsact filter and a tcx link (a restart
        /// with the other --tc-attach, or a hook given its tcx link after the apply),
        /// both are on the hook and the kernel runs both on each packet: the first
        /// marks it and the second passes it, so it is mirrored once, not twice.
        @Test(.enabled(if: BPFDatapath.AttachMode.probe() == .tcx, "this kernel has no tcx (< 6.6)"))
        func aPacketPassingOurTcxLinkAndOurClsactFilterOnOneHookIsMirroredOnce() throws {
            try Kernel.withBPFFS { dir in
                // Two agents' worth of programs, each with its own maps and the same policy.
                let link = try BPFDatapath(pinDirectory: dir, attach: .tcx)
                defer { link.unpinMaps(); link.close() }
                let filter = try BPFDatapath(pinDirectory: nil, attach: .clsact)
                defer { filter.close() }
                try Kernel.withNetns { host in
                    try Kernel.withNetns { vm in
                        try Self.eniAndMirrorDevices(host: host, vm: vm)
                        var doc = Document()
                        doc.targets = [Target(id: "collector", type: .nic, address: IPAddress("192.0.2.10"))]
                        doc.sources = [Source(id: "eni", interface: "dptA0")]
                        let icmp = Rule(priority: 1, action: .accept, ethertype: .ipv4, protocol: .icmp)
                        doc.filters = [Filter(id: "icmp", inbound: [icmp], outbound: [icmp])]
                        doc.sessions = [Session(id: "s", priority: 1, filter: "icmp", sources: ["eni"], target: "collector", vni: 7)]
                        let slots = try SlotAssignment.assign(document: doc)
                        let (eni, mirror) = try Kernel.inNetns(host) { () throws -> (Int32, Int32) in
                            (try BPFDatapath.ifindex(of: "dptA0"), try BPFDatapath.ifindex(of: "dptM0"))
                        }
                        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in UInt32(eni) }))
                        for dp in [link, filter] { try dp.apply(image, mirrorIfindex: UInt32(mirror)) }
                        // The link first, then the filter, as when an agent in clsact mode
                        // replaces one in tcx mode (the link goes once the filter runs). The
                        // filter's instance has no pins, so its attach leaves the link alone.
                        let attachments = try Kernel.inNetns(host) { () throws -> [BPFDatapath.Attachment] in
                            try [link, filter].flatMap { dp in try [TCHook.ingress, .egress].map { try dp.attach(ifindex: eni, hook: $0) } }
                        }
                        defer {
                            _ = try? Kernel.inNetns(host) { () throws -> Void in
                                for a in attachments {
                                    try (a.mode == .tcx ? link : filter).detach(a, destroyHookIfCreated: true)
                                }
                            }
                        }
                        let progs = try Kernel.inNetns(host) { BPFDatapath.tcxPrograms(ifindex: eni, hook: .egress) }
                        #expect(progs == ["mirror_tc_egres"], "the tcx link runs: \(progs)")
                        let filters = try Kernel.run(["tc", "-n", host, "filter", "show", "dev", "dptA0", "egress"])
                        #expect(filters.contains("mirror_tc_egre"), "the clsact filter is still there: \(filters)")

                        let before = try Self.rxPackets(host, "dptM1")
                        try Kernel.run(["ip", "netns", "exec", host, "ping", "-c", "5", "-i", "0.2", "-W", "2", "198.51.100.2"])
                        Thread.sleep(forTimeInterval: 0.2)
                        let copies = try Self.rxPackets(host, "dptM1") - before
                        let source = slots.sources["eni"]!
                        let first = try [Direction.inbound, .outbound].map { try link.sourceCounters(sourceSlot: source, direction: $0) }
                        let second = try [Direction.inbound, .outbound].map { try filter.sourceCounters(sourceSlot: source, direction: $0) }
                        print("both hooks: \(copies) copies; the tcx link's counters \(first), the clsact filter's \(second)")
                        // 5 requests and 5 replies, each copied once (by the link, which runs first).
                        #expect(copies == 10)
                        #expect(first.map(\.mirrored) == [5, 5])
                        #expect(
                            second.allSatisfy { $0.seen == 0 && $0.mirrored == 0 && $0.noMatch == 0 && $0.notIP == 0 },
                            "the filter passed what the link decided")
                    }
                }
            }
        }
    }
}
