import MirrorCompiler
import MirrorCore
import MirrorTestSupport
import Testing

/// The Swift twin of bpf/parse.h: the semantics written in parse.h's header.
@Suite struct PacketParserTests {
    static let tcp = PacketDescription(
        ethertype: .ipv4, protocol: 6, source: IPAddress("198.51.100.1"),
        destination: IPAddress("198.51.100.2"), sourcePort: 40000, destinationPort: 80)
    static let udp6 = PacketDescription(
        ethertype: .ipv6, protocol: 17, source: IPAddress("2001:db8::1"),
        destination: IPAddress("2001:db8::2"), sourcePort: 53, destinationPort: 5353)

    @Test func arpAndOtherEthertypesAreNotIP() {
        #expect(PacketParser.describe(frame: FrameBuilder.arp()) == .notIP)
        #expect(PacketParser.describe(frame: FrameBuilder.arp(vlan: 7)) == .notIP)
        #expect(PacketParser.describe(frame: [UInt8](repeating: 0, count: 13)) == .notIP)
    }

    @Test func wellFormedFramesRoundTrip() {
        #expect(PacketParser.describe(frame: FrameBuilder.frame(for: Self.tcp)) == Self.tcp)
        #expect(PacketParser.describe(frame: FrameBuilder.frame(for: Self.udp6)) == Self.udp6)
    }

    @Test func oneVlanTagIsSkippedButNotTwo() {
        let tagged = FrameBuilder.frame(for: Self.tcp, options: .init(vlan: 100))
        #expect(PacketParser.describe(frame: tagged) == Self.tcp)
        let ad = FrameBuilder.frame(for: Self.tcp, options: .init(vlan: 100, serviceTag: true))
        #expect(PacketParser.describe(frame: ad) == Self.tcp)
        let qinq = FrameBuilder.frame(for: Self.tcp, options: .init(vlan: 100, malformation: .doubleTag))
        #expect(PacketParser.describe(frame: qinq) == .notIP)
    }

    @Test func ipv4OptionsAreSkippedAndLaterFragmentsHaveNoPorts() {
        let opts = FrameBuilder.frame(for: Self.tcp, options: .init(ipv4OptionBytes: 12))
        #expect(PacketParser.describe(frame: opts) == Self.tcp)
        let first = FrameBuilder.frame(for: Self.tcp, options: .init(ipv4MoreFragments: true))
        #expect(PacketParser.describe(frame: first) == Self.tcp)
        var later = Self.tcp
        later.laterFragment = true; later.sourcePort = nil; later.destinationPort = nil
        let lf = FrameBuilder.frame(for: Self.tcp, options: .init(ipv4FragmentOffset: 3))
        #expect(PacketParser.describe(frame: lf) == later)
    }

    @Test func malformedIPv4IsNotIP() {
        for m: FrameBuilder.Malformation in [.badIHL, .badVersion, .ihlBeyondFrame, .truncate(14 + 19)] {
            #expect(PacketParser.describe(frame: FrameBuilder.frame(for: Self.tcp, options: .init(malformation: m))) == .notIP, "\(m)")
        }
    }

    @Test func truncatedTransportHasNoPorts() {
        var noPorts = Self.tcp
        noPorts.sourcePort = nil; noPorts.destinationPort = nil
        // TCP needs 20 bytes: 19 is too short even though the ports are there.
        let f = FrameBuilder.frame(for: Self.tcp, options: .init(payloadBytes: 0, malformation: .truncate(14 + 20 + 19)))
        #expect(PacketParser.describe(frame: f) == noPorts)
    }

    @Test func ipv6ExtensionHeadersAreWalkedUpToTheBound() {
        let exts: [FrameBuilder.IPv6Extension] = [
            .hopByHop(units: 1), .routing(), .fragment(offset: 0, more: true),
            .authentication(n: 2), .destinationOptions(units: 2),
        ]
        #expect(PacketParser.describe(frame: FrameBuilder.frame(for: Self.udp6, options: .init(ipv6Extensions: exts))) == Self.udp6)
        let atBound = [FrameBuilder.IPv6Extension](repeating: .destinationOptions(), count: PacketParser.maxIPv6ExtensionHeaders)
        #expect(PacketParser.describe(frame: FrameBuilder.frame(for: Self.udp6, options: .init(ipv6Extensions: atBound))) == Self.udp6)
        let beyond = atBound + [.hopByHop()]
        var unknown = Self.udp6
        unknown.protocol = nil; unknown.sourcePort = nil; unknown.destinationPort = nil
        #expect(PacketParser.describe(frame: FrameBuilder.frame(for: Self.udp6, options: .init(ipv6Extensions: beyond))) == unknown)
        // A header whose body reaches past the parse window: its next-header byte was
        // read, so the protocol is known, but the transport header is out of reach.
        let long: [FrameBuilder.IPv6Extension] = [.hopByHop(units: 30)]
        var noPorts = Self.udp6
        noPorts.sourcePort = nil; noPorts.destinationPort = nil
        #expect(PacketParser.describe(frame: FrameBuilder.frame(for: Self.udp6, options: .init(ipv6Extensions: long))) == noPorts)
        // A chain whose next header itself starts past the window: protocol unknown.
        let longer: [FrameBuilder.IPv6Extension] = [.hopByHop(units: 30), .destinationOptions()]
        #expect(PacketParser.describe(frame: FrameBuilder.frame(for: Self.udp6, options: .init(ipv6Extensions: longer))) == unknown)
    }

    @Test func ipv6LaterFragmentKeepsItsProtocolButNoPorts() {
        var later = Self.udp6
        later.laterFragment = true; later.sourcePort = nil; later.destinationPort = nil
        let f = FrameBuilder.frame(for: Self.udp6, options: .init(ipv6Extensions: [.hopByHop(), .fragment(offset: 9, more: false)]))
        #expect(PacketParser.describe(frame: f) == later)
    }

    /// Every description RandomDocuments draws (well-formed frames) survives build → parse.
    @Test func randomDescriptionsRoundTrip() {
        var rng = SeededRandom(seed: 42)
        for _ in 0..<50 {
            let doc = RandomDocuments.document(using: &rng)
            for _ in 0..<40 {
                var d = RandomDocuments.packet(for: doc, using: &rng)
                if d.ethertype == .ipv4 && d.protocol == nil { d.protocol = 253 }  // IPv4 always has one
                // "Protocol unknown" is a chain longer than the bound, which hides a fragment header.
                if d.protocol == nil { d.sourcePort = nil; d.destinationPort = nil; d.laterFragment = false }
                #expect(PacketParser.describe(frame: FrameBuilder.frame(for: d)) == d, "\(d)")
            }
        }
    }
}
