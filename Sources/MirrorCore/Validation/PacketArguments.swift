/// Builds the `PacketDescription` that `explain` asks about from command-line style
/// strings (`--protocol tcp --src 192.0.2.1:1234 --dst [2001:db8::1]:80`), shared by
/// agentctl and the agent so both accept exactly the same forms.
public enum PacketArguments {
    public struct Problem: Error, Hashable, Sendable, CustomStringConvertible {
        /// The option at fault (`--src`).
        public var option: String
        public var message: String
        public var description: String { "\(option): \(message)" }
    }

    /// `protocol`: `all`, a name (tcp, udp, icmp, icmpv6) or a number 0–255; `all`
    /// means the transport is unknown (only `protocol: all` rules match).
    /// `src`/`dst`: `ADDR`, `ADDR:PORT`, `[IPv6]:PORT` or `[IPv6]`. The ethertype comes
    /// from the addresses. Ports only with tcp/udp; a later fragment has none (SPEC §4).
    public static func packet(
        protocol proto: String?, src: String?, dst: String?, laterFragment: Bool,
        nonIP: Bool
    ) -> Result<PacketDescription, Problem> {
        if nonIP {
            if proto != nil || src != nil || dst != nil || laterFragment {
                return .failure(
                    Problem(option: "--non-ip", message: "a non-IP frame has no protocol, addresses or fragments: drop those options"))
            }
            return .success(.notIP)
        }
        guard let proto else {
            return .failure(
                Problem(option: "--protocol", message: "required (tcp, udp, icmp, icmpv6, all or a number 0–255), or give --non-ip"))
        }
        guard let src else { return .failure(Problem(option: "--src", message: "required: ADDR[:PORT]")) }
        guard let dst else { return .failure(Problem(option: "--dst", message: "required: ADDR[:PORT]")) }
        var number: UInt8?
        if proto == "all" {
            number = nil
        } else if let n = ProtocolSpec.names[proto.lowercased()] {
            number = n
        } else if let n = UInt8(proto), String(n) == proto {
            number = n
        } else {
            return .failure(Problem(option: "--protocol", message: "\"\(proto)\" is not tcp, udp, icmp, icmpv6, all or a number 0–255"))
        }
        let s: (IPAddress, UInt16?), d: (IPAddress, UInt16?)
        switch endpoint(src, "--src") {
        case .success(let v): s = v;
        case .failure(let p): return .failure(p)
        }
        switch endpoint(dst, "--dst") {
        case .success(let v): d = v;
        case .failure(let p): return .failure(p)
        }
        guard s.0.ethertype == d.0.ethertype else {
            return .failure(
                Problem(
                    option: "--dst", message: "\(d.0) is \(d.0.ethertype) but --src \(s.0) is \(s.0.ethertype): both must be one family"))
        }
        let e = s.0.ethertype
        if number == 1, e == .ipv6 {
            return .failure(Problem(option: "--protocol", message: "icmp is IPv4's: use icmpv6 with IPv6 addresses"))
        }
        if number == 58, e == .ipv4 {
            return .failure(Problem(option: "--protocol", message: "icmpv6 is IPv6's: use icmp with IPv4 addresses"))
        }
        let hasPorts = number == 6 || number == 17
        if !hasPorts, s.1 != nil || d.1 != nil {
            return .failure(Problem(option: s.1 != nil ? "--src" : "--dst", message: "ports are only for tcp and udp, not \(proto)"))
        }
        if hasPorts, !laterFragment, s.1 == nil || d.1 == nil {
            return .failure(
                Problem(
                    option: s.1 == nil ? "--src" : "--dst",
                    message: "a \(proto) packet needs ADDR:PORT (or --fragment later, which has no ports)"))
        }
        return .success(
            PacketDescription(
                ethertype: e, protocol: number, source: s.0, destination: d.0,
                sourcePort: laterFragment ? nil : s.1, destinationPort: laterFragment ? nil : d.1,
                laterFragment: laterFragment))
    }

    /// `ADDR`, `ADDR:PORT` (IPv4), `[IPv6]:PORT`, `[IPv6]` or a bare IPv6 address.
    public static func endpoint(_ text: String, _ option: String) -> Result<(IPAddress, UInt16?), Problem> {
        let form = "expected ADDR, ADDR:PORT or [IPv6]:PORT"
        var addr = text
        var port: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                return .failure(Problem(option: option, message: "\"\(text)\": missing ']': \(form)"))
            }
            addr = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.first == ":" else { return .failure(Problem(option: option, message: "\"\(text)\": \(form)")) }
                port = rest.dropFirst()
            }
        } else if text.filter({ $0 == ":" }).count == 1 {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            addr = String(parts[0])
            port = parts[1]
        }
        guard let a = IPAddress(addr) else {
            return .failure(Problem(option: option, message: "\"\(addr)\" is not an IPv4 or IPv6 address: \(form)"))
        }
        var p: UInt16?
        if let port {
            guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(port), n <= 65535 else {
                return .failure(Problem(option: option, message: "\"\(port)\" is not a port 0–65535"))
            }
            p = UInt16(n)
        }
        return .success((a, p))
    }
}
