/// A pcapng writer (the PCAP Next Generation format, draft-ietf-opsawg-pcapng) for
/// `agentctl capture` (SPEC §11). Pure: it turns blocks into bytes and remembers which
/// interfaces it has described; the caller writes the bytes where it wants, as they
/// come (a stream: `-w -` into `tshark -r -`).
///
/// Layout: one section (little-endian), then an Interface Description Block per
/// interface just before its first packet (pcapng allows IDBs anywhere before the
/// packets that use them, so a stream needs no look-ahead), then an Enhanced Packet
/// Block per packet. Every interface has linktype Ethernet and if_tsresol 9
/// (nanoseconds); timestamps are nanoseconds since the Unix epoch.
public struct PcapngWriter: Sendable {
    /// One interface of the file: for `agentctl capture`, a source and direction.
    public struct Interface: Hashable, Sendable {
        public var name: String
        public var description: String
        public var snaplen: UInt32
        public init(name: String, description: String, snaplen: UInt32) {
            self.name = name; self.description = description; self.snaplen = snaplen
        }
    }

    /// The direction of a packet as the interface saw it (epb_flags bits 0-1).
    public enum Direction: UInt32, Sendable {
        case unknown = 0, inbound = 1, outbound = 2
    }

    /// Block types and option codes used here.
    enum Code {
        static let sectionHeader: UInt32 = 0x0A0D_0D0A
        static let interfaceDescription: UInt32 = 0x0000_0001
        static let enhancedPacket: UInt32 = 0x0000_0006
        static let byteOrderMagic: UInt32 = 0x1A2B_3C4D
        static let endOfOptions: UInt16 = 0
        static let comment: UInt16 = 1
        static let shbUserApplication: UInt16 = 4
        static let ifName: UInt16 = 2
        static let ifDescription: UInt16 = 3
        static let ifTimestampResolution: UInt16 = 9
        static let epbFlags: UInt16 = 2
        static let linktypeEthernet: UInt16 = 1
    }

    /// Interface ids, in the order their blocks were written.
    public private(set) var interfaces: [Interface: UInt32] = [:]

    public init() {}

    /// The Section Header Block that starts the file.
    public static func sectionHeader(application: String) -> [UInt8] {
        var body: [UInt8] = []
        body.le32(Code.byteOrderMagic)
        body.le16(1)  // major version
        body.le16(0)  // minor version
        body.le64(UInt64.max)  // section length: not given (-1)
        body.option(Code.shbUserApplication, Array(application.utf8))
        body.endOfOptions()
        return block(Code.sectionHeader, body)
    }

    /// An Interface Description Block: linktype Ethernet, nanosecond timestamps.
    public static func interfaceDescription(_ i: Interface) -> [UInt8] {
        var body: [UInt8] = []
        body.le16(Code.linktypeEthernet)
        body.le16(0)  // reserved
        body.le32(i.snaplen)
        body.option(Code.ifName, Array(i.name.utf8))
        body.option(Code.ifDescription, Array(i.description.utf8))
        body.option(Code.ifTimestampResolution, [9])  // 10^-9 s
        body.endOfOptions()
        return block(Code.interfaceDescription, body)
    }

    /// An Enhanced Packet Block on interface `interfaceID`.
    public static func enhancedPacket(
        interfaceID: UInt32, timestampNs: UInt64, originalLength: Int, data: [UInt8], comment: String?,
        direction: Direction = .unknown
    ) -> [UInt8] {
        var body: [UInt8] = []
        body.le32(interfaceID)
        body.le32(UInt32(truncatingIfNeeded: timestampNs >> 32))
        body.le32(UInt32(truncatingIfNeeded: timestampNs))
        body.le32(UInt32(data.count))
        body.le32(UInt32(clamping: max(originalLength, data.count)))
        body += data
        body.pad()
        if let comment { body.option(Code.comment, Array(comment.utf8)) }
        if direction != .unknown {
            var flags: [UInt8] = []
            flags.le32(direction.rawValue)
            body.option(Code.epbFlags, flags)
        }
        if comment != nil || direction != .unknown { body.endOfOptions() }
        return block(Code.enhancedPacket, body)
    }

    /// The Interface Description Block of `interface` when it is new, else nothing: to
    /// describe interfaces before any packet of theirs (pcapng readers list them then).
    public mutating func describe(_ interface: Interface) -> [UInt8] {
        guard interfaces[interface] == nil else { return [] }
        interfaces[interface] = UInt32(interfaces.count)
        return Self.interfaceDescription(interface)
    }

    /// A packet on `interface`: its Interface Description Block first when this is the
    /// interface's first packet, then the packet's block.
    public mutating func packet(
        on interface: Interface, timestampNs: UInt64, originalLength: Int, data: [UInt8], comment: String?,
        direction: Direction = .unknown
    ) -> [UInt8] {
        var out = describe(interface)
        let id = interfaces[interface] ?? 0
        out += Self.enhancedPacket(
            interfaceID: id, timestampNs: timestampNs, originalLength: originalLength, data: data, comment: comment,
            direction: direction)
        return out
    }

    /// Type, total length, body (a multiple of 4 bytes), total length again.
    static func block(_ type: UInt32, _ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        let total = UInt32(12 + body.count)
        out.reserveCapacity(Int(total))
        out.le32(type)
        out.le32(total)
        out += body
        out.le32(total)
        return out
    }
}

extension [UInt8] {
    fileprivate mutating func le16(_ v: UInt16) { append(UInt8(v & 0xff)); append(UInt8(v >> 8)) }
    fileprivate mutating func le32(_ v: UInt32) { for i in 0..<4 { append(UInt8((v >> (8 * UInt32(i))) & 0xff)) } }
    fileprivate mutating func le64(_ v: UInt64) { for i in 0..<8 { append(UInt8((v >> (8 * UInt64(i))) & 0xff)) } }
    /// Zeros up to the next multiple of 4 bytes.
    fileprivate mutating func pad() { while count % 4 != 0 { append(0) } }
    /// An option: code, length, value, padded. Values longer than an option can hold
    /// are cut (never a block that does not parse).
    fileprivate mutating func option(_ code: UInt16, _ value: [UInt8]) {
        let v = value.prefix(Int(UInt16.max) - 3)
        le16(code)
        le16(UInt16(v.count))
        self += v
        pad()
    }
    fileprivate mutating func endOfOptions() { le16(PcapngWriter.Code.endOfOptions); le16(0) }
}
