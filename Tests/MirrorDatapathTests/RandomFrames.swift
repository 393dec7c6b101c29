import MirrorCompiler
import MirrorCore
import MirrorTestSupport

/// Frames for the differential test: a random packet description of the document,
/// dressed with VLAN tags, IPv4 options, fragments, IPv6 extension headers, and
/// sometimes broken (truncated, bad header fields, QinQ, garbage).
enum RandomFrames {
    struct Stats: CustomStringConvertible {
        var total = 0, vlan = 0, ipv4Options = 0, ipv4FirstFragment = 0, laterFragment = 0
        var ipv6Extensions = 0, malformed = 0, nonIP = 0, garbage = 0
        var description: String {
            "frames \(total): vlan \(vlan), ipv4 options \(ipv4Options), ipv4 first fragments \(ipv4FirstFragment), "
                + "later fragments \(laterFragment), ipv6 ext headers \(ipv6Extensions), malformed/truncated \(malformed), "
                + "non-IP \(nonIP), garbage \(garbage)"
        }
    }

    static func frame(for document: Document, using rng: inout SeededRandom, stats: inout Stats) -> [UInt8] {
        stats.total += 1
        if rng.chance(0.01) {
            stats.garbage += 1
            return (0..<rng.int(14...80)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        let desc = RandomDocuments.packet(for: document, using: &rng)
        var o = FrameBuilder.Options()
        o.payloadBytes = rng.int(0...48)
        if rng.chance(0.12) {
            o.vlan = UInt16(rng.int(1...4094)); o.serviceTag = rng.chance(0.3); stats.vlan += 1
        }
        if desc.ethertype == nil { stats.nonIP += 1 }
        if desc.ethertype == .ipv4 {
            if rng.chance(0.2) { o.ipv4OptionBytes = rng.int(1...40); stats.ipv4Options += 1 }
            if desc.laterFragment {
                o.ipv4FragmentOffset = UInt16(rng.int(1...8191)); o.ipv4MoreFragments = rng.chance(0.5)
            } else if rng.chance(0.08) {
                o.ipv4MoreFragments = true; stats.ipv4FirstFragment += 1
            }
        }
        if desc.laterFragment { stats.laterFragment += 1 }
        if desc.ethertype == .ipv6 && desc.protocol != nil && rng.chance(0.35) {
            stats.ipv6Extensions += 1
            for _ in 0..<rng.int(1...PacketParser.maxIPv6ExtensionHeaders + 1) {
                switch rng.int(0...5) {
                case 0: o.ipv6Extensions.append(.hopByHop(units: UInt8(rng.int(0...3))))
                case 1: o.ipv6Extensions.append(.routing(units: UInt8(rng.int(0...2))))
                case 2: o.ipv6Extensions.append(.destinationOptions(units: UInt8(rng.int(0...4))))
                case 3: o.ipv6Extensions.append(.authentication(n: UInt8(rng.int(1...6))))
                case 4: o.ipv6Extensions.append(.fragment(offset: 0, more: true))
                default: o.ipv6Extensions.append(.hopByHop(units: 30))  // runs past the parse window
                }
            }
            if desc.laterFragment { o.ipv6Extensions.append(.fragment(offset: UInt16(rng.int(1...8191)), more: rng.chance(0.5))) }
        }
        if rng.chance(0.1) {
            stats.malformed += 1
            switch rng.int(0...5) {
            case 0: o.malformation = .badIHL
            case 1: o.malformation = .badVersion
            case 2: o.malformation = .ihlBeyondFrame
            case 3: o.malformation = .doubleTag
            default: o.malformation = .truncate(rng.int(14...90))
            }
        }
        var f = FrameBuilder.frame(for: desc, options: o)
        // BPF_PROG_TEST_RUN needs at least an Ethernet header; shorter frames never reach TC.
        if f.count < 14 { f += [UInt8](repeating: 0, count: 14 - f.count) }
        return f
    }
}

extension Array where Element == UInt8 {
    var hex: String { map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
}
