/// One packet a capture took, as the datapath mirrored it, in the policy's words
/// (SPEC §11). The datapath produces it, the agent streams it, agentctl writes it to
/// pcapng: one type for all three.
public struct CapturePacket: Hashable, Sendable {
    /// Nanoseconds since the Unix epoch.
    public var timestampNs: UInt64
    public var source: String
    public var interface: String
    public var direction: Direction
    public var session: String
    public var filter: String
    public var rulePriority: Int
    /// The packet's whole length; `data` is its first snaplen bytes.
    public var length: Int
    public var data: [UInt8]

    public init(
        timestampNs: UInt64, source: String, interface: String, direction: Direction, session: String, filter: String,
        rulePriority: Int, length: Int, data: [UInt8]
    ) {
        self.timestampNs = timestampNs; self.source = source; self.interface = interface; self.direction = direction
        self.session = session; self.filter = filter; self.rulePriority = rulePriority; self.length = length; self.data = data
    }
}
