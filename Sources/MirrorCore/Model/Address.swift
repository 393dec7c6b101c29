/// An IPv4 or IPv6 address. IPv4 is held in host order as a number; IPv6 as 16 bytes
/// in network order. Parsing is strict (no leading zeros in IPv4 octets, no zone ids).
public enum IPAddress: Hashable, Sendable, CustomStringConvertible, Comparable {
    case v4(UInt32)
    case v6([UInt8])  // exactly 16 bytes, network order

    public var ethertype: Ethertype { if case .v4 = self { return .ipv4 } else { return .ipv6 } }

    /// 16 bytes, network order; IPv4 sits in the first 4 bytes (the datapath's layout).
    public var bytes: [UInt8] {
        switch self {
        case .v4(let v): return [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]
        case .v6(let b): return b
        }
    }

    public init?(_ text: String) {
        if text.contains(":") {
            guard let b = IPAddress.parseV6(text) else { return nil }
            self = .v6(b)
        } else {
            guard let v = IPAddress.parseV4(text) else { return nil }
            self = .v4(v)
        }
    }

    static func parseV4(_ s: String) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }),
                !(p.count > 1 && p.first == "0"), let n = UInt32(p), n <= 255
            else { return nil }
            v = v << 8 | n
        }
        return v
    }

    static func parseV6(_ s: String) -> [UInt8]? {
        guard !s.isEmpty, s.count <= 45, !s.contains("%") else { return nil }
        var head: [UInt16] = [], tail: [UInt16] = []
        var halves: [String] = []
        let chars = Array(s)
        if let i = chars.indices.first(where: { $0 + 1 < chars.count && chars[$0] == ":" && chars[$0 + 1] == ":" }) {
            halves = [String(chars[..<i]), String(chars[(i + 2)...])]
            if halves[1].contains("::") { return nil }
        } else {
            halves = [s]
        }
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String, allowV4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, item) in items.enumerated() {
                if item.contains(".") {
                    guard allowV4Tail, i == items.count - 1, let v4 = parseV4(String(item)) else { return nil }
                    out.append(UInt16(v4 >> 16)); out.append(UInt16(v4 & 0xffff))
                } else {
                    guard !item.isEmpty, item.count <= 4, item.allSatisfy({ $0.isHexDigit }),
                        let g = UInt16(item, radix: 16)
                    else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        if halves.count == 2 {
            guard let h = groups(halves[0], allowV4Tail: false), let t = groups(halves[1], allowV4Tail: true),
                h.count + t.count <= 7
            else { return nil }
            head = h; tail = t
            head += Array(repeating: 0, count: 8 - h.count - t.count)
        } else {
            guard let h = groups(halves[0], allowV4Tail: true), h.count == 8 else { return nil }
            head = h
        }
        var bytes: [UInt8] = []
        for g in head + tail { bytes.append(UInt8(g >> 8)); bytes.append(UInt8(g & 0xff)) }
        return bytes
    }

    public var description: String {
        switch self {
        case .v4(let v):
            return "\(v >> 24).\((v >> 16) & 0xff).\((v >> 8) & 0xff).\(v & 0xff)"
        case .v6(let b):
            var g: [UInt16] = []
            for i in 0..<8 { g.append(UInt16(b[2 * i]) << 8 | UInt16(b[2 * i + 1])) }
            // RFC 5952: compress the longest run (length >= 2) of zero groups.
            var bestStart = -1, bestLen = 0, i = 0
            while i < 8 {
                if g[i] == 0 {
                    var j = i
                    while j < 8 && g[j] == 0 { j += 1 }
                    if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                    i = j
                } else {
                    i += 1
                }
            }
            let hex = { (x: UInt16) in String(x, radix: 16) }
            if bestStart < 0 { return g.map(hex).joined(separator: ":") }
            let left = g[0..<bestStart].map(hex).joined(separator: ":")
            let right = g[(bestStart + bestLen)...].map(hex).joined(separator: ":")
            return left + "::" + right
        }
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): return x < y
        case (.v4, .v6): return true
        case (.v6, .v4): return false
        case (.v6(let x), .v6(let y)): return x.lexicographicallyPrecedes(y)
        }
    }
}

/// A CIDR block. Host bits must be zero (validation refuses `10.0.0.1/24`).
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: Int

    public init(address: IPAddress, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public static func all(_ e: Ethertype) -> CIDR {
        e == .ipv4
            ? CIDR(address: .v4(0), prefixLength: 0)
            : CIDR(address: .v6(Array(repeating: 0, count: 16)), prefixLength: 0)
    }

    public var ethertype: Ethertype { address.ethertype }
    public var maxPrefix: Int { address.ethertype == .ipv4 ? 32 : 128 }

    /// True when the address has no bits set beyond the prefix.
    public var hostBitsZero: Bool { CIDR.masked(address, prefixLength) == address }

    public func contains(_ a: IPAddress) -> Bool {
        guard a.ethertype == address.ethertype else { return false }
        return CIDR.masked(a, prefixLength) == address
    }

    public static func masked(_ a: IPAddress, _ prefix: Int) -> IPAddress {
        switch a {
        case .v4(let v):
            let p = max(0, min(32, prefix))
            let mask: UInt32 = p == 0 ? 0 : ~UInt32(0) << UInt32(32 - p)
            return .v4(v & mask)
        case .v6(var b):
            let p = max(0, min(128, prefix))
            for i in 0..<16 {
                let bits = max(0, min(8, p - 8 * i))
                let mask: UInt8 = bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
                b[i] &= mask
            }
            return .v6(b)
        }
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// A port range `N` or `N-M`; `all` is 0-65535.
public struct PortRange: Hashable, Sendable, CustomStringConvertible {
    public var lower: UInt16
    public var upper: UInt16
    public init(_ lower: UInt16, _ upper: UInt16) { self.lower = lower; self.upper = upper }
    public static let all = PortRange(0, 65535)
    public var isAll: Bool { lower == 0 && upper == 65535 }
    public func contains(_ p: UInt16) -> Bool { lower <= p && p <= upper }
    public var description: String {
        isAll ? "all" : (lower == upper ? "\(lower)" : "\(lower)-\(upper)")
    }
}
