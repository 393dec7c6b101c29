import CMirrorABI
import MirrorCore

/// The Swift twin of bpf/parse.h: frame bytes → what the matching semantics see.
/// Same window, same bounds, same walk; the semantics are written out in parse.h's
/// header comment and the kernel differential test proves the two agree.
public enum PacketParser {
    public static let window = Int(MIRROR_PARSE_WINDOW)
    public static let maxIPv6ExtensionHeaders = Int(MAX_IPV6_EXT_HEADERS)
    static let ipv6Extensions: Set<UInt8> = [0, 43, 44, 51, 60]

    public static func describe(frame: [UInt8]) -> PacketDescription {
        let limit = min(frame.count, window)
        func need(_ off: Int, _ len: Int) -> Bool { off >= 0 && off + len <= limit }
        func u16(_ off: Int) -> UInt16 { UInt16(frame[off]) << 8 | UInt16(frame[off + 1]) }

        // Ethernet, at most one 802.1Q/802.1ad tag.
        guard need(0, 14) else { return .notIP }
        var ethertype = u16(12)
        var l3 = 14
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            guard need(14, 4) else { return .notIP }
            ethertype = u16(16)
            l3 = 18
        }

        var d: PacketDescription
        var l4: Int
        switch ethertype {
        case 0x0800:
            guard need(l3, 20) else { return .notIP }
            let vihl = frame[l3]
            let hlen = Int(vihl & 0x0f) * 4
            guard vihl >> 4 == 4, hlen >= 20, need(l3, hlen) else { return .notIP }
            let src = IPAddress.v4(UInt32(u16(l3 + 12)) << 16 | UInt32(u16(l3 + 14)))
            let dst = IPAddress.v4(UInt32(u16(l3 + 16)) << 16 | UInt32(u16(l3 + 18)))
            d = PacketDescription(
                ethertype: .ipv4, protocol: frame[l3 + 9], source: src, destination: dst,
                laterFragment: u16(l3 + 6) & 0x1fff != 0)
            l4 = l3 + hlen
        case 0x86dd:
            guard need(l3, 40), frame[l3] >> 4 == 6 else { return .notIP }
            d = PacketDescription(
                ethertype: .ipv6, protocol: nil,
                source: .v6(Array(frame[(l3 + 8)..<(l3 + 24)])),
                destination: .v6(Array(frame[(l3 + 24)..<(l3 + 40)])))
            var nh = frame[l3 + 6]
            var off = l3 + 40
            for _ in 0..<maxIPv6ExtensionHeaders {
                guard ipv6Extensions.contains(nh) else { break }
                if nh == 44 {
                    guard need(off, 8) else { return d }
                    let later = u16(off + 2) & 0xfff8 != 0
                    nh = frame[off]
                    off += 8
                    if later {
                        d.laterFragment = true
                        d.protocol = nh
                        return d
                    }
                    continue
                }
                guard need(off, 2) else { return d }
                let len = nh == 51 ? (Int(frame[off + 1]) + 2) * 4 : (Int(frame[off + 1]) + 1) * 8
                nh = frame[off]
                off += len
            }
            if ipv6Extensions.contains(nh) { return d }  // chain too long: protocol unknown
            d.protocol = nh
            l4 = off
        default:
            return .notIP
        }

        // Transport: ports only for TCP (20 bytes) and UDP (8 bytes), not later fragments.
        guard !d.laterFragment else { return d }
        let needed: Int
        switch d.protocol {
        case 6: needed = 20
        case 17: needed = 8
        default: return d
        }
        guard need(l4, needed) else { return d }
        d.sourcePort = u16(l4)
        d.destinationPort = u16(l4 + 2)
        return d
    }
}
