import Foundation
import Glibc
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

/// A deterministic corpus of truncated and malformed frames, by category. Most are
/// built from packets that the document's rules would match if they were well
/// formed, so a parsing mistake shows up as a different accept/reject decision.
/// Addresses: 198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
enum MalformedFrames {
    struct Frame {
        var category: String
        var label: String
        var bytes: [UInt8]
    }

    struct Base {
        var name: String
        var packet: PacketDescription
        var isTCP: Bool { packet.protocol == 6 }
        var isUDP: Bool { packet.protocol == 17 }
    }

    static func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    static func base(_ name: String, _ proto: UInt8, _ src: String, _ dst: String, _ sp: UInt16? = nil, _ dp: UInt16? = nil) -> Base {
        Base(
            name: name,
            packet: PacketDescription(
                ethertype: ip(src).ethertype, protocol: proto, source: ip(src),
                destination: ip(dst), sourcePort: sp, destinationPort: dp))
    }

    /// One packet per rule of `document` below (and a few that only the catch-alls take).
    static let v4: [Base] = [
        base("v4-tcp-80", 6, "198.18.0.5", "198.51.100.7", 40000, 80),
        base("v4-tcp-22", 6, "198.18.0.5", "198.51.100.7", 40000, 22),
        base("v4-udp-53", 17, "198.18.1.9", "203.0.113.9", 5353, 53),
        base("v4-udp-1500", 17, "198.18.1.9", "203.0.113.9", 1500, 9999),
        base("v4-icmp", 1, "198.18.0.5", "198.51.100.7"),
        base("v4-gre", 47, "198.18.0.5", "198.51.100.7"),
        base("v4-tcp-8080", 6, "203.0.113.5", "198.51.100.7", 40000, 8080),
    ]
    static let v6: [Base] = [
        base("v6-tcp-443", 6, "2001:db8::5", "2001:db8:1::7", 40000, 443),
        base("v6-udp-53", 17, "2001:db8::5", "2001:db8:2::7", 5353, 53),
        base("v6-icmpv6", 58, "2001:db8::5", "2001:db8:2::7"),
        base("v6-udp-1500", 17, "2001:db8::5", "2001:db8:2::7", 1500, 9999),
        base("v6-tcp-dead", 6, "2001:db8:dead::5", "2001:db8:2::7", 40000, 8080),
        base("v6-253", 253, "2001:db8::5", "2001:db8:1::7"),
        base("v6-udp-4000", 17, "2001:db8::5", "2001:db8:2::7", 4000, 4000),
    ]

    /// SPEC §4 rules on protocols, ports and CIDRs of both families, first match across
    /// three sessions; the last session accepts all IPv4 (so IPv4 frames that lose
    /// their ports still decide, by a different rule) and IPv6 toward 2001:db8:1::/48.
    static func document(interface: String) -> Document {
        func cidr(_ a: String, _ p: Int) -> CIDR { CIDR(address: ip(a), prefixLength: p) }
        let ports: [Rule] = [
            Rule(priority: 1, action: .reject, ethertype: .ipv4, protocol: .tcp, destinationPorts: PortRange(22, 22)),
            Rule(
                priority: 2, action: .accept, ethertype: .ipv4, protocol: .tcp, source: cidr("198.18.0.0", 15),
                destinationPorts: PortRange(80, 443)),
            Rule(priority: 3, action: .accept, ethertype: .ipv4, protocol: .udp, destinationPorts: PortRange(53, 53)),
            Rule(priority: 4, action: .reject, ethertype: .ipv4, protocol: .udp, sourcePorts: PortRange(1000, 2000)),
            Rule(priority: 5, action: .accept, ethertype: .ipv4, protocol: .icmp, destination: cidr("198.51.100.0", 24)),
            Rule(
                priority: 6, action: .accept, ethertype: .ipv6, protocol: .tcp, source: cidr("2001:db8::", 32),
                destinationPorts: PortRange(80, 443)),
            Rule(priority: 7, action: .reject, ethertype: .ipv6, protocol: .udp, destinationPorts: PortRange(53, 53)),
            Rule(priority: 8, action: .accept, ethertype: .ipv6, protocol: .icmpv6),
            Rule(priority: 9, action: .accept, ethertype: .ipv6, protocol: .udp, sourcePorts: PortRange(1000, 2000)),
        ]
        let v6: [Rule] = [
            Rule(priority: 1, action: .reject, ethertype: .ipv6, source: cidr("2001:db8:dead::", 48)),
            Rule(priority: 2, action: .accept, ethertype: .ipv6, protocol: .number(47)),
            Rule(priority: 3, action: .accept, ethertype: .ipv6, destination: cidr("2001:db8:1::", 48)),
        ]
        let everything: [Rule] = [
            Rule(priority: 1, action: .reject, ethertype: .ipv4, protocol: .number(47)),
            Rule(priority: 2, action: .accept, ethertype: .ipv4),
        ]
        var doc = Document()
        doc.targets = [Target(id: "collector", type: .nic, address: ip("192.0.2.10"))]
        doc.sources = [Source(id: "eni", interface: interface)]
        doc.filters = [
            Filter(id: "ports", inbound: ports, outbound: ports),
            Filter(id: "v6", inbound: v6, outbound: v6),
            Filter(id: "everything", inbound: everything, outbound: everything),
        ]
        doc.sessions = [
            Session(id: "ports", priority: 1, filter: "ports", sources: ["eni"], target: "collector", vni: 11),
            Session(id: "v6", priority: 2, filter: "v6", sources: ["eni"], target: "collector", vni: 12),
            Session(id: "everything", priority: 3, filter: "everything", sources: ["eni"], target: "collector", vni: 13),
        ]
        return doc
    }

    enum Dressing: CaseIterable {
        case plain, vlan, headerOptions
        var name: String {
            switch self {
            case .plain: return "plain"
            case .vlan: return "vlan"
            case .headerOptions: return "options/ext"
            }
        }
    }

    static func frame(_ b: Base, _ d: Dressing = .plain, payload: Int = 4, _ tweak: (inout FrameBuilder.Options) -> Void = { _ in })
        -> [UInt8]
    {
        var o = FrameBuilder.Options(payloadBytes: payload)
        switch d {
        case .plain: break
        case .vlan: o.vlan = 100
        case .headerOptions:
            if b.packet.ethertype == .ipv4 {
                o.ipv4OptionBytes = 12
            } else {
                o.ipv6Extensions = [.hopByHop(units: 1), .destinationOptions(units: 0), .routing(units: 0)]
            }
        }
        tweak(&o)
        return FrameBuilder.frame(for: b.packet, options: o)
    }

    static func l3(_ vlan: Bool) -> Int { vlan ? 18 : 14 }

    static func put16(_ f: inout [UInt8], _ off: Int, _ v: Int) {
        guard off + 1 < f.count else { return }
        f[off] = UInt8(v >> 8 & 0xff); f[off + 1] = UInt8(v & 0xff)
    }

    /// Address bytes of the frame's IP header (left alone by mutations: the corpus
    /// only carries documentation addresses).
    static func addressRange(_ f: [UInt8]) -> Range<Int>? {
        guard f.count >= 14 else { return nil }
        var et = Int(f[12]) << 8 | Int(f[13]), off = 14
        if (et == 0x8100 || et == 0x88a8) && f.count >= 18 { et = Int(f[16]) << 8 | Int(f[17]); off = 18 }
        if et == 0x0800 { return (off + 12)..<(off + 20) }
        if et == 0x86dd { return (off + 8)..<(off + 40) }
        return nil
    }

    static func corpus(seed: UInt64) -> [Frame] {
        var rng = SeededRandom(seed: seed)
        var out: [Frame] = []
        func add(_ c: String, _ l: String, _ f: [UInt8]) { out.append(Frame(category: c, label: l, bytes: f)) }
        let all = v4 + v6

        // Runts: a packet socket cannot send less than an Ethernet header (root could,
        // zero-padded by dev_validate_header; we do not go there): counted, not sent.
        let tcp = frame(v4[0])
        for n in 0..<14 { add("runt", "\(v4[0].name) cut \(n)", Array(tcp.prefix(n))) }

        // Truncated at every offset of Ethernet/VLAN/IPv4/IPv6 (with options or an
        // extension chain)/TCP/UDP/ICMP.
        for b in all {
            for d in Dressing.allCases {
                let f = frame(b, d)
                for n in 14..<f.count { add("truncated", "\(b.name) \(d.name) cut \(n)", Array(f.prefix(n))) }
            }
        }

        // IPv4 IHL 0..15: below 5, options that run into the transport, beyond the frame.
        for b in v4 {
            for vlan in [false, true] {
                for ihl in 0...15 {
                    var f = frame(b, vlan ? .vlan : .plain)
                    f[l3(vlan)] = 0x40 | UInt8(ihl)
                    add("ipv4-ihl", "\(b.name) \(vlan ? "vlan " : "")ihl \(ihl)", f)
                }
                // IHL claims options, frame cut inside them.
                var f = frame(b, vlan ? .vlan : .headerOptions)
                f[l3(vlan)] = 0x4f
                add("ipv4-ihl", "\(b.name) \(vlan ? "vlan " : "")ihl 15 cut in options", Array(f.prefix(l3(vlan) + 40)))
            }
        }

        // IPv4 total length smaller and larger than the frame (not looked at).
        for b in v4 {
            let f = frame(b)
            let actual = f.count - 14
            for t in [0, 1, 19, 20, 21, actual - 1, actual + 1, 1500, 9000, 65535] {
                var g = f
                put16(&g, 16, t)
                add("ipv4-total-length", "\(b.name) total \(t)", g)
            }
        }

        // IPv4 fragments: offset 8191 (the largest), 1, 8190, first fragments, flags.
        for b in v4 {
            for (offset, more) in [(8191, false), (8191, true), (1, false), (8190, true), (0, true)] as [(UInt16, Bool)] {
                for vlan in [false, true] {
                    let f = frame(b, vlan ? .vlan : .plain) {
                        $0.ipv4FragmentOffset = offset; $0.ipv4MoreFragments = more
                    }
                    add("ipv4-fragment", "\(b.name) \(vlan ? "vlan " : "")offset \(offset) mf \(more)", f)
                }
            }
            var rf = frame(b)
            rf[20] |= 0x80  // the reserved ("evil") bit, offset 0
            add("ipv4-fragment", "\(b.name) reserved flag", rf)
            var df = frame(b)
            df[20] |= 0x40
            add("ipv4-fragment", "\(b.name) don't fragment", df)
            let last = frame(b) { $0.ipv4FragmentOffset = 8191 }
            for n in [34, 35, 36, 38] { add("ipv4-fragment", "\(b.name) offset 8191 cut \(n)", Array(last.prefix(n))) }
        }

        // IPv6 extension chains cut at every offset (hop-by-hop, destination options,
        // routing, AH, a first fragment), into the transport header.
        let chain: [FrameBuilder.IPv6Extension] = [
            .hopByHop(units: 1), .destinationOptions(units: 2), .routing(units: 0),
            .authentication(n: 4), .fragment(offset: 0, more: true),
        ]
        for (i, b) in v6.enumerated() {
            for vlan in i < 3 ? [false, true] : [false] {
                let f = frame(b, vlan ? .vlan : .plain) { $0.ipv6Extensions = chain }
                let start = l3(vlan) + 40
                for n in start..<min(f.count, start + 80 + 21) {
                    add("ipv6-ext-truncated", "\(b.name) \(vlan ? "vlan " : "")chain cut \(n)", Array(f.prefix(n)))
                }
            }
        }

        // Long chains (beyond MAX_IPV6_EXT_HEADERS) of zero-length extension headers
        // (hdr ext len 0: 8 bytes; AH with payload length 0: 8 bytes).
        let patterns: [(String, (Int) -> FrameBuilder.IPv6Extension)] = [
            ("hop-by-hop", { _ in .hopByHop(units: 0) }),
            ("dest-opts", { _ in .destinationOptions(units: 0) }),
            ("mixed", { i in [.hopByHop(units: 0), .destinationOptions(units: 0), .routing(units: 0), .authentication(n: 0)][i % 4] }),
        ]
        for b in v6 {
            for (name, make) in patterns {
                for n in 1...(PacketParser.maxIPv6ExtensionHeaders + 6) {
                    let f = frame(b) { $0.ipv6Extensions = (0..<n).map(make) }
                    add("ipv6-ext-long", "\(b.name) \(n) x \(name)", f)
                }
            }
            // A chain that runs past the parse window, and a header whose length does.
            add(
                "ipv6-ext-long", "\(b.name) 8 x hop-by-hop(3)",
                frame(b) { $0.ipv6Extensions = Array(repeating: .hopByHop(units: 3), count: 8) })
            add(
                "ipv6-ext-long", "\(b.name) hop-by-hop(30) + dest-opts",
                frame(b) { $0.ipv6Extensions = [.hopByHop(units: 30), .destinationOptions(units: 0)] })
            // A length byte of 255 (2048 bytes) in a frame that ends long before.
            var huge = frame(b) { $0.ipv6Extensions = [.hopByHop(units: 0), .destinationOptions(units: 0)] }
            huge[14 + 40 + 1] = 255
            add("ipv6-ext-long", "\(b.name) hop-by-hop length 255", huge)
        }

        // IPv6 fragment headers: offset 8191 (8191*8 bytes, the largest), 1, first and
        // atomic fragments, after 0..MAX headers (the 7th is past the walk).
        for b in v6 {
            for (offset, more) in [(8191, false), (8191, true), (1, false), (0, true), (0, false)] as [(UInt16, Bool)] {
                for before in [0, 3, PacketParser.maxIPv6ExtensionHeaders - 1, PacketParser.maxIPv6ExtensionHeaders] {
                    let f = frame(b) {
                        $0.ipv6Extensions =
                            Array(repeating: .destinationOptions(units: 0), count: before) + [.fragment(offset: offset, more: more)]
                    }
                    add("ipv6-fragment", "\(b.name) \(before) headers then fragment offset \(offset) mf \(more)", f)
                }
            }
            let last = frame(b) { $0.ipv6Extensions = [.fragment(offset: 8191, more: false)] }
            for n in [54, 55, 56, 58, 61, 62] { add("ipv6-fragment", "\(b.name) fragment offset 8191 cut \(n)", Array(last.prefix(n))) }
        }

        // TCP data offset 0..15 (0..4 are shorter than the fixed header), and TCP
        // headers of exactly 19 and 20 bytes.
        for b in all where b.isTCP {
            for vlan in [false, true] {
                let f = frame(b, vlan ? .vlan : .plain)
                let l4 = l3(vlan) + (b.packet.ethertype == .ipv4 ? 20 : 40)
                for doff in 0...15 {
                    var g = f
                    g[l4 + 12] = UInt8(doff << 4)
                    add("tcp-doff", "\(b.name) \(vlan ? "vlan " : "")doff \(doff)", g)
                }
                var z = f
                z[l4 + 12] = 0
                add("tcp-doff", "\(b.name) \(vlan ? "vlan " : "")doff 0 cut 19", Array(z.prefix(l4 + 19)))
                add("tcp-doff", "\(b.name) \(vlan ? "vlan " : "")doff 0 cut 20", Array(z.prefix(l4 + 20)))
            }
        }

        // UDP length 0, shorter than its header, and longer than the frame.
        for b in all where b.isUDP {
            let f = frame(b)
            let l4 = 14 + (b.packet.ethertype == .ipv4 ? 20 : 40)
            for len in [0, 1, 7, 8, f.count - l4, f.count - l4 + 1, 65535] {
                var g = f
                put16(&g, l4 + 4, len)
                add("udp-length", "\(b.name) length \(len)", g)
            }
        }

        // Jumbo frames on a 9000-byte MTU: up to the largest the veth forwards (9014,
        // 9018 with a tag), and a few larger ones the packet socket refuses.
        for b in all {
            for (d, size) in [
                (Dressing.plain, 1514), (.plain, 4096), (.plain, 9014), (.vlan, 9018), (.headerOptions, 9014),
                (.plain, 9015), (.plain, 9100),
            ] {
                let header = frame(b, d, payload: 0).count
                add("jumbo", "\(b.name) \(d.name) \(size) bytes", frame(b, d, payload: size - header))
            }
        }

        // QinQ: the parser walks one tag only.
        let tags: [(UInt16, UInt16)] = [(0x88a8, 0x8100), (0x8100, 0x8100), (0x88a8, 0x88a8), (0x8100, 0x88a8)]
        for b in all {
            let f = frame(b)
            for (outer, inner) in tags {
                let g =
                    Array(f.prefix(12)) + [
                        UInt8(outer >> 8), UInt8(outer & 0xff), 0x00, 0x0a,
                        UInt8(inner >> 8), UInt8(inner & 0xff), 0x00, 0x14,
                    ] + Array(f.dropFirst(12))
                add("qinq", "\(b.name) \(String(outer, radix: 16))/\(String(inner, radix: 16))", g)
                if outer == 0x88a8 && inner == 0x8100 {
                    for n in [20, 22, 23, 26, 30, 42, 50] { add("qinq", "\(b.name) 88a8/8100 cut \(n)", Array(g.prefix(n))) }
                }
            }
        }

        // Version nibbles that do not match the EtherType.
        for b in all {
            for vlan in [false, true] {
                for version in [0, 4, 6, 7, 15] {
                    var f = frame(b, vlan ? .vlan : .plain)
                    f[l3(vlan)] = UInt8(version << 4) | (f[l3(vlan)] & 0x0f)
                    add("bad-version", "\(b.name) \(vlan ? "vlan " : "")version \(version)", f)
                }
                var swapped = frame(b, vlan ? .vlan : .plain)
                let et = l3(vlan) - 2
                swapped[et + 1] = b.packet.ethertype == .ipv4 ? 0xdd : 0x00
                swapped[et] = b.packet.ethertype == .ipv4 ? 0x86 : 0x08
                add("bad-version", "\(b.name) \(vlan ? "vlan " : "")other EtherType", swapped)
            }
        }

        // The parse window (MIRROR_PARSE_WINDOW bytes of the frame): a transport or
        // extension header that straddles its end, with and without a VLAN tag.
        for b in v6 {
            for vlan in [false, true] {
                for units in 17...25 {
                    add(
                        "window", "\(b.name) \(vlan ? "vlan " : "")hop-by-hop(\(units))",
                        frame(b, vlan ? .vlan : .plain, payload: 24) { $0.ipv6Extensions = [.hopByHop(units: UInt8(units))] })
                    add(
                        "window", "\(b.name) \(vlan ? "vlan " : "")hop-by-hop(\(units)) + dest-opts",
                        frame(b, vlan ? .vlan : .plain, payload: 24) {
                            $0.ipv6Extensions = [.hopByHop(units: UInt8(units)), .destinationOptions(units: 0)]
                        })
                }
            }
        }

        // Regressions: frames the live datapath once decided differently from the oracle.
        for (label, hex) in regressions { add("regression", label, bytes(hex: hex)) }

        // Garbage: random bytes, some behind an IP (or tagged) EtherType and version.
        for i in 0..<400 {
            var f = (0..<rng.int(14...300)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            f.replaceSubrange(0..<12, with: FrameBuilder.frame(for: v4[0].packet).prefix(12))
            let kind = rng.int(0...4)
            if kind > 0 {
                let et: [UInt16] = [0x0800, 0x86dd, 0x8100, 0x88a8]
                put16(&f, 12, Int(et[kind - 1]))
                if kind >= 3 { put16(&f, 16, Int(rng.chance(0.5) ? 0x0800 : 0x86dd)) }
                let l3 = kind >= 3 ? 18 : 14
                if l3 < f.count && rng.chance(0.7) {
                    let isV6 = (kind == 2) || (kind >= 3 && f[17] == 0xdd)
                    f[l3] = isV6 ? 0x60 | (f[l3] & 0x0f) : 0x45
                    // Documentation addresses only, where the header has room for them.
                    let src = (isV6 ? v6Base : v4Base).packet.source!.bytes, dst = (isV6 ? v6Base : v4Base).packet.destination!.bytes
                    let at = isV6 ? l3 + 8 : l3 + 12
                    if at + src.count + dst.count <= f.count { f.replaceSubrange(at..<(at + src.count + dst.count), with: src + dst) }
                }
            }
            add("garbage", "random \(i) kind \(kind)", f)
        }

        // Mutations: 1-3 header bytes of a well-formed frame replaced (not addresses).
        for i in 0..<1000 {
            let b = rng.pick(all)!, d = rng.pick(Dressing.allCases)!
            var f = frame(b, d)
            let addresses = addressRange(f)
            var flips: [Int] = []
            for _ in 0..<rng.int(1...3) {
                let at = rng.int(12...min(f.count - 1, 120))
                if addresses?.contains(at) == true { continue }
                f[at] = UInt8.random(in: 0...255, using: &rng)
                flips.append(at)
            }
            add("mutated", "\(b.name) \(d.name) #\(i) bytes \(flips)", f)
        }
        return out
    }

    static let v4Base = v4[0], v6Base = v6[0]

    /// A VLAN-tagged IPv6 UDP frame whose ports straddle the parse window (258 bytes
    /// in): at TC ingress the stack had moved the tag out, and parse.h counted the
    /// window on the 4-byte-shorter frame, saw the ports and let rule 7 (udp 53)
    /// reject it, where the oracle (the frame as sent, no ports) finds no rule.
    /// Likewise an ICMPv6 frame whose last extension header sat at bytes 256..257.
    static let regressions: [(String, String)] = [
        (
            "vlan ipv6 udp ports at window end (ingress)",
            "0200000000020200000000018100006486dd6000000000e0004020010db800000000000000000000000520010db8000200000000000000000007111701bc"
                + String(repeating: "00", count: 188) + "14e9003500200000" + String(repeating: "ab", count: 24)
        ),
        (
            "vlan ipv6 icmpv6 ext header at window end (ingress)",
            "0200000000020200000000018100006486dd6000000000f0004020010db800000000000000000000000520010db80002000000000000000000073c1801c4"
                + String(repeating: "00", count: 196) + "3a00010400000000" + "0800000000010001" + String(repeating: "ab", count: 24)
        ),
    ]

    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex, let j = hex.index(i, offsetBy: 2, limitedBy: hex.endIndex) {
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }
}

/// New kernel log records since `init` (/dev/kmsg, read from its end).
final class KernelLog {
    let fd: Int32

    init() throws {
        fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw TestFailure("open /dev/kmsg: \(String(cString: strerror(errno)))") }
        lseek(fd, 0, SEEK_END)
    }

    deinit { close(fd) }

    func newLines() throws -> [String] {
        var lines: [String] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EPIPE { continue }  // overwritten records: go on with the next
            if n < 0 && errno == EAGAIN { break }  // no newer record
            if n < 0 { throw TestFailure("read /dev/kmsg: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            let record = String(decoding: buf.prefix(n), as: UTF8.self)
            // "prio,seq,usec,flags;message\n continuation lines"
            let message = record.split(separator: ";", maxSplits: 1).last.map(String.init) ?? record
            lines.append(message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return lines
    }

    static func suspicious(_ line: String) -> Bool {
        let lower = line.lowercased()
        return line.contains("WARNING") || line.contains("BUG") || line.contains("Call Trace") || lower.contains("bpf")
            || lower.contains("verifier") || lower.contains("general protection")
    }
}

/// A packet socket that sends whole frames out of one device.
struct PacketSender {
    let fd: Int32
    let ifindex: Int32

    /// Opened inside `netns` (a socket keeps its namespace). Protocol 0: it receives nothing.
    static func open(netns: String, interface: String) throws -> PacketSender {
        try Kernel.inNetns(netns) { () throws -> PacketSender in
            let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0)
            guard fd >= 0 else { throw TestFailure("packet socket in \(netns): \(String(cString: strerror(errno)))") }
            let index = Int32(if_nametoindex(interface))
            guard index > 0 else { Glibc.close(fd); throw TestFailure("no interface \(interface) in \(netns)") }
            return PacketSender(fd: fd, ifindex: index)
        }
    }

    /// 0, or the errno of sendto. No PACKET_QDISC_BYPASS: that would skip TC egress.
    func send(_ frame: [UInt8]) -> Int32 {
        // struct sockaddr_ll (<linux/if_packet.h>, not imported by Glibc): family,
        // protocol (0: taken from the frame), ifindex, hatype, pkttype, halen, addr[8].
        var addr = [UInt8](repeating: 0, count: 20)
        withUnsafeBytes(of: UInt16(AF_PACKET)) { addr.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: ifindex) { addr.replaceSubrange(4..<8, with: $0) }
        addr[11] = 6
        let rc = frame.withUnsafeBytes { raw in
            addr.withUnsafeBytes { a in
                sendto(fd, raw.baseAddress, raw.count, 0, a.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(a.count))
            }
        }
        return rc < 0 ? errno : 0
    }

    func close() { Glibc.close(fd) }
}

extension KernelTests {
    /// Malformed frames through the real attached TC programs (not test-run): sent on
    /// packet sockets into the ENI's host-side device (TC ingress, the VM's outbound)
    /// and out of it (TC egress, inbound), decided by the counters the agent's metrics
    /// read, compared with `PacketParser.describe` + `Oracle.decide`.
    @Suite struct MalformedFrameTests {
        struct Tally {
            var frames = 0, notSent = 0, notDelivered = 0, compared = 0, disagreements = 0
        }

        enum Live {
            case notSent(Int32)
            case notDelivered
            case noisy(String)
            case decided(Verdict.Outcome, RuleInfo?)
        }

        @Test func malformedFramesThroughTheAttachedProgramsAgreeWithTheOracleAndWarnNothing() throws {
            let clock = ContinuousClock()
            let started = clock.now
            let log = try KernelLog()
            let corpus = MalformedFrames.corpus(seed: 0x6d61_6c66_6f72_6d64)
            var tallies: [String: Tally] = [:]
            var outcomes: [String: Int] = [:]
            var failures: [String] = []
            var mirrored = 0, copies = 0, cloneErrors: UInt64 = 0

            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.unpinMaps(); dp.close() }
                try Kernel.withNetns { host in
                    try Kernel.withNetns { vm in
                        for ns in [host, vm] {
                            // No router solicitations, ND or MLD: only our frames reach the hooks.
                            try Kernel.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
                            try Kernel.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
                        }
                        // The ENI dptA0 (host side) <-> dptA1 (VM); the mirror device dptM0 -> dptM1.
                        // No addresses: the stacks drop every frame (other-host MAC) without answering.
                        try Kernel.run([
                            "ip", "-n", host, "link", "add", "dptA0", "mtu", "9000", "type", "veth",
                            "peer", "name", "dptA1", "mtu", "9000", "netns", vm,
                        ])
                        try Kernel.run([
                            "ip", "-n", host, "link", "add", "dptM0", "mtu", "9000", "type", "veth",
                            "peer", "name", "dptM1", "mtu", "9000",
                        ])
                        for (ns, dev) in [(host, "dptA0"), (vm, "dptA1"), (host, "dptM0"), (host, "dptM1")] {
                            try Kernel.run(["ip", "-n", ns, "link", "set", dev, "up"])
                        }

                        let doc = MalformedFrames.document(interface: "dptA0")
                        let slots = try SlotAssignment.assign(document: doc)
                        let (indexes, attachments) = try Kernel.inNetns(host) { () throws -> ([String: UInt32], [BPFDatapath.Attachment]) in
                            var idx: [String: UInt32] = [:]
                            for dev in ["dptA0", "dptM0"] { idx[dev] = UInt32(try BPFDatapath.ifindex(of: dev)) }
                            return (
                                idx,
                                [
                                    try dp.attach(interface: "dptA0", hook: .ingress),
                                    try dp.attach(interface: "dptA0", hook: .egress),
                                ]
                            )
                        }
                        defer {
                            _ = try? Kernel.inNetns(host) { () throws -> Void in
                                for a in attachments { try dp.detach(a, destroyHookIfCreated: true) }
                            }
                        }
                        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { indexes[$0] }))
                        try dp.apply(image, mirrorIfindex: indexes["dptM0"]!)
                        let sourceSlot = slots.sources["eni"]!

                        let vmSide = try PacketSender.open(netns: vm, interface: "dptA1")
                        defer { vmSide.close() }
                        let hostSide = try PacketSender.open(netns: host, interface: "dptA0")
                        defer { hostSide.close() }

                        var hits: [RuleKey: UInt64] = [:]
                        for key in image.rules.keys {
                            hits[key] = try dp.ruleHits(sessionSlot: key.sessionSlot, direction: key.direction, ruleIndex: key.ruleIndex)
                        }
                        /// The rule whose counter moved (there is exactly one for a decided frame).
                        func movedRule(_ direction: Direction) throws -> [RuleKey] {
                            var moved: [RuleKey] = []
                            for key in image.rules.keys where key.direction == direction {
                                let h = try dp.ruleHits(sessionSlot: key.sessionSlot, direction: direction, ruleIndex: key.ruleIndex)
                                if h != hits[key] { moved.append(key); hits[key] = h }
                            }
                            return moved
                        }

                        /// Sends one frame and reads what the attached program decided.
                        func live(_ frame: [UInt8], _ direction: Direction) throws -> Live {
                            guard frame.count >= 14 else { return .notSent(EINVAL) }
                            let before = try dp.sourceCounters(sourceSlot: sourceSlot, direction: direction)
                            let err = (direction == .outbound ? vmSide : hostSide).send(frame)
                            if err != 0 { return .notSent(err) }
                            // TC egress runs inside sendto; TC ingress in the softirq that
                            // usually follows it at once. Wait a little for the counters to
                            // settle: `seen` and one outcome counter, nothing else.
                            let deadline = clock.now + .milliseconds(40)
                            var after = before
                            while true {
                                after = try dp.sourceCounters(sourceSlot: sourceSlot, direction: direction)
                                let outcomes =
                                    (after.mirrored + after.rejected + after.noMatch + after.notIP + after.cloneErrors
                                        + after.sessionDisabled)
                                    - (before.mirrored + before.rejected + before.noMatch + before.notIP + before.cloneErrors
                                        + before.sessionDisabled)
                                if after.seen != before.seen && outcomes == after.seen - before.seen { break }
                                if clock.now > deadline { break }
                                usleep(100)
                            }
                            if after.seen == before.seen { return .notDelivered }
                            if after.seen - before.seen != 1 { return .noisy("seen +\(after.seen - before.seen)") }
                            cloneErrors += after.cloneErrors - before.cloneErrors
                            let outcome: Verdict.Outcome
                            if after.notIP != before.notIP {
                                outcome = .notIP
                            } else if after.noMatch != before.noMatch {
                                outcome = .noMatch
                            } else if after.sessionDisabled != before.sessionDisabled {
                                outcome = .sessionDisabled
                            } else if after.rejected != before.rejected {
                                outcome = .reject
                            } else if after.mirrored != before.mirrored || after.cloneErrors != before.cloneErrors {
                                outcome = .accept
                            } else {
                                return .noisy("no outcome counter moved")
                            }
                            guard outcome == .accept || outcome == .reject else { return .decided(outcome, nil) }
                            if outcome == .accept { mirrored += 1 }
                            let moved = try movedRule(direction)
                            guard moved.count == 1 else { return .noisy("\(moved.count) rule counters moved") }
                            return .decided(outcome, image.rules[moved[0]])
                        }

                        let copiesBefore = try TrafficTests.rxPackets(host, "dptM1")
                        for frame in corpus {
                            var t = tallies[frame.category, default: Tally()]
                            t.frames += 1
                            let parsed = PacketParser.describe(frame: frame.bytes)
                            for direction in [Direction.outbound, .inbound] {
                                let want = Differential.expected(
                                    Oracle.decide(document: doc, source: "eni", direction: direction, packet: parsed))
                                switch try live(frame.bytes, direction) {
                                case .notSent: t.notSent += 1
                                case .notDelivered: t.notDelivered += 1
                                case .noisy(let why):
                                    t.disagreements += 1
                                    failures.append(
                                        "NOISE \(frame.category) \(frame.label) \(direction): \(why)\n  frame: \(frame.bytes.hex)")
                                case .decided(let outcome, let rule):
                                    t.compared += 1
                                    outcomes["\(outcome)", default: 0] += 1
                                    // A disabled session's rule counts no hit: the live counters name no rule then.
                                    let same =
                                        outcome == want.0
                                        && (outcome == .sessionDisabled
                                            || (rule?.sessionID == want.session && rule?.priority == want.priority))
                                    if !same {
                                        t.disagreements += 1
                                        let kernel = rule.map { "\(outcome) session \($0.sessionID) rule \($0.priority)" } ?? "\(outcome)"
                                        let oracle =
                                            want.session.map { "\(want.0) session \($0) rule \(want.priority ?? -1)" } ?? "\(want.0)"
                                        failures.append(
                                            """
                                            DISAGREEMENT \(frame.category) \(frame.label) \(direction) (\(frame.bytes.count) bytes)
                                              parsed: \(parsed)
                                              oracle: \(oracle)
                                              kernel: \(kernel)
                                              frame:  \(frame.bytes.hex)
                                            """)
                                    }
                                }
                            }
                            tallies[frame.category] = t
                        }
                        Thread.sleep(forTimeInterval: 0.3)
                        copies = try TrafficTests.rxPackets(host, "dptM1") - copiesBefore
                    }
                }
            }
            let warnings = try log.newLines().filter(KernelLog.suspicious)
            let elapsed = clock.now - started

            let total = tallies.values.reduce(Tally()) { a, t in
                Tally(
                    frames: a.frames + t.frames, notSent: a.notSent + t.notSent, notDelivered: a.notDelivered + t.notDelivered,
                    compared: a.compared + t.compared, disagreements: a.disagreements + t.disagreements)
            }
            let perCategory = tallies.sorted { $0.key < $1.key }.map { c, t in
                "\(c) \(t.frames) (compared \(t.compared), not sent \(t.notSent), not delivered \(t.notDelivered), disagree \(t.disagreements))"
            }
            print(
                "malformed: \(total.frames) frames x 2 directions = \(2 * total.frames) sends; compared \(total.compared), "
                    + "not sent \(total.notSent), not delivered \(total.notDelivered), disagreements \(total.disagreements); "
                    + "kernel outcomes \(outcomes.sorted { $0.key < $1.key }); \(copies) copies on the mirror device for \(mirrored) accepts; "
                    + "\(warnings.count) kernel log warnings; \(elapsed)")
            print("malformed categories: " + perCategory.joined(separator: "; "))
            for f in failures.prefix(8) { print(f) }
            for w in warnings.prefix(20) { print("kernel log: \(w)") }

            #expect(total.frames >= 5000)
            #expect(total.disagreements == 0, "\(total.disagreements) frames where the live datapath and the oracle disagree")
            // Runts and oversize jumbo frames cannot be sent; VLAN frames too short for
            // their tag are dropped by the stack before TC ingress (skb_vlan_untag).
            #expect(total.compared * 100 >= 2 * total.frames * 97, "most frames reach the hooks")
            #expect(cloneErrors == 0)
            #expect(copies == mirrored, "one copy on the mirror device per accepted frame")
            #expect(warnings.isEmpty, "kernel log: \(warnings.prefix(5))")
        }
    }
}
