/// What the matching semantics (SPEC §4) can see of one packet. Built either by hand
/// (`agentctl explain`) or by `PacketParser` from frame bytes, which parses exactly as
/// the BPF classifier does (bpf/parse.h), so the oracle and the kernel see the same.
public struct PacketDescription: Hashable, Sendable, CustomStringConvertible {
    /// nil: not IP (ARP, other ethertypes, or an IP header too malformed to read
    /// addresses from). Such a packet matches no rule.
    public var ethertype: Ethertype?
    /// The transport protocol; nil when it could not be found (an IPv6 extension
    /// chain longer than the datapath walks, or truncated). Only `protocol: all` matches it.
    public var `protocol`: UInt8?
    public var source: IPAddress?
    public var destination: IPAddress?
    /// nil when the packet has no ports visible: not tcp/udp, a later fragment, or the
    /// transport header is truncated. Then only rules whose port ranges are `all` match.
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    /// An IPv4/IPv6 fragment with a non-zero offset.
    public var laterFragment: Bool

    public init(
        ethertype: Ethertype?, protocol: UInt8? = nil, source: IPAddress? = nil,
        destination: IPAddress? = nil, sourcePort: UInt16? = nil, destinationPort: UInt16? = nil,
        laterFragment: Bool = false
    ) {
        self.ethertype = ethertype; self.protocol = `protocol`; self.source = source
        self.destination = destination; self.sourcePort = sourcePort
        self.destinationPort = destinationPort; self.laterFragment = laterFragment
    }

    public static let notIP = PacketDescription(ethertype: nil)

    public var description: String {
        guard let e = ethertype else { return "non-IP" }
        let p = `protocol`.map { ProtocolSpec.number($0).description } ?? "unknown"
        let s = (source?.description ?? "?") + (sourcePort.map { ":\($0)" } ?? "")
        let d = (destination?.description ?? "?") + (destinationPort.map { ":\($0)" } ?? "")
        return "\(e) \(p) \(s) -> \(d)" + (laterFragment ? " (later fragment)" : "")
    }
}
