import MirrorCore

/// Builds Ethernet frames from packet descriptions, for tests and benchmarks:
/// with IPv4 options, IPv6 extension headers, a VLAN tag, fragments, and
/// malformed or truncated variants. `PacketParser.describe` of a well-formed
/// frame gives back the description.
public enum FrameBuilder {
    public enum IPv6Extension: Hashable, Sendable {
        /// Hop-by-hop (0), routing (43), destination options (60): `units` of 8 bytes beyond the first 8.
        case hopByHop(units: UInt8 = 0)
        case routing(units: UInt8 = 0)
        case destinationOptions(units: UInt8 = 0)
        /// Authentication header (51): payload length field `n`, header is (n+2)*4 bytes.
        case authentication(n: UInt8 = 1)
        /// Fragment (44): offset in 8-byte units, more-fragments flag.
        case fragment(offset: UInt16, more: Bool)

        var number: UInt8 {
            switch self {
            case .hopByHop: return 0
            case .routing: return 43
            case .destinationOptions: return 60
            case .authentication: return 51
            case .fragment: return 44
            }
        }
    }

    public enum Malformation: Hashable, Sendable {
        /// Cut the frame to this many bytes.
        case truncate(Int)
        /// IPv4 IHL below 5, or an IPv4/IPv6 version field that is wrong.
        case badIHL
        case badVersion
        /// IHL claiming more bytes than the frame has.
        case ihlBeyondFrame
        /// A second VLAN tag (QinQ): the parser walks one tag only.
        case doubleTag
    }

    public struct Options: Hashable, Sendable {
        /// One 802.1Q tag (TPID 0x8100) with this VLAN id, or 802.1ad when `serviceTag`.
        public var vlan: UInt16?
        public var serviceTag: Bool = false
        /// IPv4 options, bytes (rounded up to a multiple of 4, at most 40).
        public var ipv4OptionBytes: Int = 0
        /// IPv4 fragment: offset in 8-byte units and the more-fragments flag. A later
        /// fragment of a described packet uses offset 185 when not given.
        public var ipv4FragmentOffset: UInt16 = 0
        public var ipv4MoreFragments: Bool = false
        public var ipv6Extensions: [IPv6Extension] = []
        public var payloadBytes: Int = 16
        public var malformation: Malformation?

        public init(
            vlan: UInt16? = nil, serviceTag: Bool = false, ipv4OptionBytes: Int = 0,
            ipv4FragmentOffset: UInt16 = 0, ipv4MoreFragments: Bool = false,
            ipv6Extensions: [IPv6Extension] = [], payloadBytes: Int = 16, malformation: Malformation? = nil
        ) {
            self.vlan = vlan; self.serviceTag = serviceTag; self.ipv4OptionBytes = ipv4OptionBytes
            self.ipv4FragmentOffset = ipv4FragmentOffset; self.ipv4MoreFragments = ipv4MoreFragments
            self.ipv6Extensions = ipv6Extensions; self.payloadBytes = payloadBytes; self.malformation = malformation
        }
    }

    static let dstMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02]
    static let srcMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]

    /// An ARP request (not IP).
    public static func arp(vlan: UInt16? = nil) -> [UInt8] {
        var f = ethernet(ethertype: 0x0806, vlan: vlan, serviceTag: false, doubleTag: false)
        f += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01] + srcMAC + [198, 18, 0, 1] + [UInt8](repeating: 0, count: 6) + [198, 18, 0, 2]
        return f
    }

    /// The frame of `packet`. A non-IP description gives an ARP frame. An IPv4
    /// description without a protocol cannot be expressed and uses protocol 253; an
    /// IPv6 one gets an extension chain longer than the parser walks.
    public static func frame(for packet: PacketDescription, options: Options = Options()) -> [UInt8] {
        guard let ethertype = packet.ethertype else {
            var f = arp(vlan: options.vlan)
            if case .truncate(let n)? = options.malformation { f = Array(f.prefix(max(0, n))) }
            return f
        }
        var f = ethernet(
            ethertype: ethertype == .ipv4 ? 0x0800 : 0x86dd, vlan: options.vlan,
            serviceTag: options.serviceTag, doubleTag: options.malformation == .doubleTag)
        let proto = packet.protocol
        let transport = transportHeader(protocol: proto ?? 253, packet: packet, payload: options.payloadBytes)
        switch ethertype {
        case .ipv4:
            let optionBytes = min(40, (options.ipv4OptionBytes + 3) / 4 * 4)
            var ihl = UInt8(5 + optionBytes / 4)
            if options.malformation == .badIHL { ihl = 4 }
            if options.malformation == .ihlBeyondFrame { ihl = 15 }
            let total = 20 + optionBytes + transport.count
            var fragOffset = options.ipv4FragmentOffset
            if packet.laterFragment && fragOffset == 0 { fragOffset = 185 }
            let flags: UInt16 = (options.ipv4MoreFragments ? 0x2000 : 0) | (fragOffset & 0x1fff)
            var ip: [UInt8] = [
                (options.malformation == .badVersion ? 0x60 : 0x40) | ihl, 0,
                UInt8(total >> 8 & 0xff), UInt8(total & 0xff), 0x12, 0x34,
                UInt8(flags >> 8), UInt8(flags & 0xff), 64, proto ?? 253, 0, 0,
            ]
            ip += (packet.source ?? .v4(0)).bytes.prefix(4)
            ip += (packet.destination ?? .v4(0)).bytes.prefix(4)
            ip += optionsBytes(optionBytes)
            let sum = checksum(Array(ip.prefix(20 + optionBytes)))
            ip[10] = UInt8(sum >> 8); ip[11] = UInt8(sum & 0xff)
            f += ip
            if options.malformation == .ihlBeyondFrame {
                // Keep the frame shorter than the 60 bytes IHL 15 claims.
                f += transport.prefix(min(transport.count, 20))
                return finish(Array(f.prefix(14 + 20 + 8 + (options.vlan == nil ? 0 : 4))), options)
            }
            f += transport
        case .ipv6:
            var exts = options.ipv6Extensions
            if proto == nil {
                exts = Array(repeating: .destinationOptions(units: 0), count: PacketParser.maxIPv6ExtensionHeaders + 1)
            }
            if packet.laterFragment && !exts.contains(where: { if case .fragment(let o, _) = $0 { return o != 0 } else { return false } }) {
                exts.append(.fragment(offset: 185, more: false))
            }
            var chain: [UInt8] = []
            for (i, e) in exts.enumerated() {
                let next = i + 1 < exts.count ? exts[i + 1].number : (proto ?? 59)
                chain += extensionHeader(e, next: next)
            }
            let payloadLength = chain.count + transport.count
            var ip: [UInt8] = [
                options.malformation == .badVersion ? 0x40 : 0x60, 0, 0, 0,
                UInt8(payloadLength >> 8 & 0xff), UInt8(payloadLength & 0xff),
                exts.first?.number ?? (proto ?? 59), 64,
            ]
            ip += (packet.source ?? .v6([UInt8](repeating: 0, count: 16))).bytes
            ip += (packet.destination ?? .v6([UInt8](repeating: 0, count: 16))).bytes
            f += ip + chain + transport
        }
        return finish(f, options)
    }

    static func finish(_ f: [UInt8], _ options: Options) -> [UInt8] {
        if case .truncate(let n)? = options.malformation { return Array(f.prefix(max(0, n))) }
        return f
    }

    static func ethernet(ethertype: UInt16, vlan: UInt16?, serviceTag: Bool, doubleTag: Bool) -> [UInt8] {
        var f = dstMAC + srcMAC
        if doubleTag {
            f += [0x88, 0xa8, 0x00, 0x10]
        }
        if let vlan {
            f += (serviceTag ? [0x88, 0xa8] : [0x81, 0x00]) + [UInt8(vlan >> 8 & 0x0f), UInt8(vlan & 0xff)]
        } else if doubleTag {
            f += [0x81, 0x00, 0x00, 0x20]
        }
        f += [UInt8(ethertype >> 8), UInt8(ethertype & 0xff)]
        return f
    }

    static func optionsBytes(_ n: Int) -> [UInt8] {
        guard n > 0 else { return [] }
        // NOPs then End of option list: content is irrelevant to the parser.
        return [UInt8](repeating: 1, count: n - 1) + [0]
    }

    static func extensionHeader(_ e: IPv6Extension, next: UInt8) -> [UInt8] {
        switch e {
        case .hopByHop(let u), .routing(let u), .destinationOptions(let u):
            var h: [UInt8] = [next, u] + [UInt8](repeating: 0, count: 6 + Int(u) * 8)
            if case .routing = e {
                h[2] = 0; h[3] = 0
            }  // type 0, segments left 0
            else {
                h[2] = 1; h[3] = UInt8(h.count - 4)
            }  // one PadN option filling the header
            return h
        case .authentication(let n):
            return [next, n] + [UInt8](repeating: 0, count: (Int(n) + 2) * 4 - 2)
        case .fragment(let offset, let more):
            let v = (offset << 3) | (more ? 1 : 0)
            return [next, 0, UInt8(v >> 8), UInt8(v & 0xff), 0, 0, 0x12, 0x34]
        }
    }

    static func transportHeader(protocol proto: UInt8, packet: PacketDescription, payload: Int) -> [UInt8] {
        let sp = packet.sourcePort ?? 40000, dp = packet.destinationPort ?? 80
        let ports: [UInt8] = [UInt8(sp >> 8), UInt8(sp & 0xff), UInt8(dp >> 8), UInt8(dp & 0xff)]
        let body = [UInt8](repeating: 0xab, count: max(0, payload))
        switch proto {
        case 6:
            return ports + [0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0] + body
        case 17:
            let len = 8 + body.count
            return ports + [UInt8(len >> 8 & 0xff), UInt8(len & 0xff), 0, 0] + body
        case 1, 58:
            return [8, 0, 0, 0, 0, 1, 0, 1] + body
        default:
            return body
        }
    }

    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count { sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
