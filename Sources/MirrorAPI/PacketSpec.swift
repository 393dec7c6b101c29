import MirrorCore

/// A described packet as `agentctl explain` sends it to the agent: the same strings as
/// its command line (`protocol: "tcp"`, `src: "192.0.2.1:1234"`, `dst: "[2001:db8::1]:80"`),
/// turned into a `PacketDescription` by the core's `PacketArguments`, so the offline and
/// the agent-backed explain accept exactly the same forms.
public struct PacketSpec: Hashable, Sendable, Codable {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `all` (unknown transport) or a number 0–255.
    public var `protocol`: String?
    /// `ADDR`, `ADDR:PORT` or `[IPv6]:PORT`.
    public var src: String?
    public var dst: String?
    /// true: an IP fragment after the first (no ports visible).
    public var laterFragment: Bool?
    /// true: a non-IP frame (ARP and others); nothing else may be given.
    public var nonIP: Bool?

    public init(
        protocol: String? = nil, src: String? = nil, dst: String? = nil, laterFragment: Bool? = nil,
        nonIP: Bool? = nil
    ) {
        self.protocol = `protocol`; self.src = src; self.dst = dst
        self.laterFragment = laterFragment; self.nonIP = nonIP
    }

    /// The packet description, or the problem with its path under `pathPrefix`
    /// (`packet.src`).
    public func description(pathPrefix: String = "packet") -> Result<PacketDescription, FieldErrors> {
        switch PacketArguments.packet(
            protocol: `protocol`, src: src, dst: dst, laterFragment: laterFragment ?? false,
            nonIP: nonIP ?? false)
        {
        case .success(let p): return .success(p)
        case .failure(let p):
            let field: String
            switch p.option {
            case "--protocol": field = "protocol"
            case "--src": field = "src"
            case "--dst": field = "dst"
            case "--non-ip": field = "nonIP"
            default: field = String(p.option.drop(while: { $0 == "-" }))
            }
            return .failure(FieldErrors([FieldError(path: "\(pathPrefix).\(field)", message: p.message)]))
        }
    }
}
