import MirrorCore

/// A described packet, as `agentctl explain` sends it: text fields so that every
/// parse error is the agent's and carries a path (`packet.source`).
public struct PacketSpec: Hashable, Sendable, Codable {
    /// `ipv4`/`ipv6`; omitted = taken from the addresses. `nonIP: true` describes ARP etc.
    public var ethertype: Ethertype?
    /// `tcp`, `udp`, `icmp`, `icmpv6` or a number 0–255.
    public var `protocol`: String?
    public var source: String?
    public var destination: String?
    public var sourcePort: Int?
    public var destinationPort: Int?
    /// true: an IP fragment with a non-zero offset (no ports visible).
    public var laterFragment: Bool?
    public var nonIP: Bool?

    public init(ethertype: Ethertype? = nil, protocol: String? = nil, source: String? = nil, destination: String? = nil,
                sourcePort: Int? = nil, destinationPort: Int? = nil, laterFragment: Bool? = nil, nonIP: Bool? = nil) {
        self.ethertype = ethertype; self.protocol = `protocol`; self.source = source; self.destination = destination
        self.sourcePort = sourcePort; self.destinationPort = destinationPort; self.laterFragment = laterFragment
        self.nonIP = nonIP
    }

    /// The packet description, or every problem found with its path under `pathPrefix`.
    public func description(pathPrefix: String = "packet") -> Result<PacketDescription, FieldErrors> {
        if nonIP == true { return .success(PacketDescription.notIP) }
        var errors: [FieldError] = []
        func address(_ text: String?, _ field: String) -> IPAddress? {
            guard let text else { return nil }
            guard let a = IPAddress(text) else {
                errors.append(FieldError(path: "\(pathPrefix).\(field)", message: "'\(text)' is not an IPv4 or IPv6 address"))
                return nil
            }
            return a
        }
        let src = address(source, "source"), dst = address(destination, "destination")
        let family = ethertype ?? src?.ethertype ?? dst?.ethertype
        if family == nil {
            errors.append(FieldError(path: "\(pathPrefix).ethertype", message: "give ethertype (ipv4|ipv6) or an address"))
        }
        for (a, f) in [(src, "source"), (dst, "destination")] {
            if let a, let family, a.ethertype != family {
                errors.append(FieldError(path: "\(pathPrefix).\(f)", message: "address family \(a.ethertype) does not match ethertype \(family)"))
            }
        }
        var proto: UInt8?
        if let p = `protocol` {
            if let n = ProtocolSpec.names[p.lowercased()] { proto = n }
            else if let n = UInt8(p) { proto = n }
            else { errors.append(FieldError(path: "\(pathPrefix).protocol", message: "'\(p)' is not tcp, udp, icmp, icmpv6 or a number 0-255")) }
        } else {
            errors.append(FieldError(path: "\(pathPrefix).protocol", message: "required (tcp, udp, icmp, icmpv6 or a number 0-255)"))
        }
        func port(_ v: Int?, _ field: String) -> UInt16? {
            guard let v else { return nil }
            guard (0...65535).contains(v) else {
                errors.append(FieldError(path: "\(pathPrefix).\(field)", message: "port \(v) is out of range 0-65535")); return nil
            }
            return UInt16(v)
        }
        var sp = port(sourcePort, "sourcePort"), dp = port(destinationPort, "destinationPort")
        let later = laterFragment ?? false
        if later || !(proto == 6 || proto == 17) { sp = nil; dp = nil }  // SPEC §4: no ports visible
        guard errors.isEmpty else { return .failure(FieldErrors(errors)) }
        return .success(PacketDescription(ethertype: family, protocol: proto, source: src, destination: dst,
                                          sourcePort: sp, destinationPort: dp, laterFragment: later))
    }
}
