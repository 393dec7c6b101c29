import Foundation
import MirrorAPI
import Testing

/// The pcapng writer byte for byte against layouts written out from the format's
/// definition (draft-ietf-opsawg-pcapng: blocks, options, padding, little-endian), then
/// read back by tshark, which must see what was written.
@Suite struct PcapngWriterTests {
    /// Bytes written as hex groups, each line's groups followed by a comment (its
    /// first word that is not hex).
    static func hex(_ s: String) -> [UInt8] {
        var digits: [Character] = []
        for line in s.split(separator: "\n") {
            for word in line.split(separator: " ") {
                guard word.allSatisfy(\.isHexDigit) else { break }
                digits += word
            }
        }
        return stride(from: 0, to: digits.count - 1, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    @Test func sectionHeaderIsTheFormatsLayout() {
        let expected = Self.hex(
            """
            0a0d0d0a 28000000    block type, total length 40
            4d3c2b1a             byte-order magic
            0100 0000            version 1.0
            ffffffff ffffffff    section length: not given
            0400 0200 6162 0000  shb_userappl "ab", padded
            0000 0000            opt_endofopt
            28000000             total length again
            """)
        #expect(PcapngWriter.sectionHeader(application: "ab") == expected)
    }

    @Test func interfaceDescriptionHasEthernetNanosecondsAndItsNames() {
        let expected = Self.hex(
            """
            01000000 30000000    block type, total length 48
            0100 0000            linktype 1 (Ethernet), reserved
            00400000             snaplen 16384
            0200 0400 732f696e   if_name "s/in"
            0300 0100 64000000   if_description "d", padded
            0900 0100 09000000   if_tsresol 9: nanoseconds
            0000 0000            opt_endofopt
            30000000
            """)
        let i = PcapngWriter.Interface(name: "s/in", description: "d", snaplen: 16384)
        #expect(PcapngWriter.interfaceDescription(i) == expected)
    }

    @Test func enhancedPacketCarriesTimeLengthsPaddingCommentAndDirection() {
        let expected = Self.hex(
            """
            06000000 38000000    block type, total length 56
            00000000             interface 0
            01000000 02000000    timestamp high, low: 0x100000002 ns
            03000000 3c000000    captured 3, original 60
            aabbcc00             data, padded
            0100 0100 63000000   opt_comment "c"
            0200 0400 01000000   epb_flags: inbound
            0000 0000            opt_endofopt
            38000000
            """)
        let block = PcapngWriter.enhancedPacket(
            interfaceID: 0, timestampNs: 0x1_0000_0002, originalLength: 60, data: [0xaa, 0xbb, 0xcc], comment: "c",
            direction: .inbound)
        #expect(block == expected)
    }

    @Test func enhancedPacketWithoutOptionsHasNoEndOfOptions() {
        let expected = Self.hex(
            """
            06000000 24000000
            01000000 00000000 05000000
            04000000 04000000
            01020304
            24000000
            """)
        let block = PcapngWriter.enhancedPacket(
            interfaceID: 1, timestampNs: 5, originalLength: 4, data: [1, 2, 3, 4], comment: nil)
        #expect(block == expected)
    }

    @Test func eachInterfaceIsDescribedOnceBeforeItsFirstPacket() {
        var w = PcapngWriter()
        let a = PcapngWriter.Interface(name: "vm1/inbound", description: "a", snaplen: 100)
        let b = PcapngWriter.Interface(name: "vm1/outbound", description: "b", snaplen: 100)
        let first = w.packet(on: a, timestampNs: 1, originalLength: 2, data: [1, 2], comment: nil)
        #expect(
            first == PcapngWriter.interfaceDescription(a)
                + PcapngWriter.enhancedPacket(
                    interfaceID: 0, timestampNs: 1, originalLength: 2, data: [1, 2], comment: nil))
        let second = w.packet(on: a, timestampNs: 2, originalLength: 2, data: [1, 2], comment: nil)
        #expect(second == PcapngWriter.enhancedPacket(interfaceID: 0, timestampNs: 2, originalLength: 2, data: [1, 2], comment: nil))
        #expect(w.describe(b) == PcapngWriter.interfaceDescription(b))
        #expect(w.describe(b).isEmpty, "described once")
        let third = w.packet(on: b, timestampNs: 3, originalLength: 2, data: [1, 2], comment: nil)
        #expect(third == PcapngWriter.enhancedPacket(interfaceID: 1, timestampNs: 3, originalLength: 2, data: [1, 2], comment: nil))
        #expect(w.interfaces == [a: 0, b: 1])
    }

    /// An Ethernet/IPv4/UDP frame (checksums 0: tshark does not check them by default).
    static func udpFrame(src: [UInt8], dst: [UInt8], sport: UInt16, dport: UInt16, payload: Int) -> [UInt8] {
        var f: [UInt8] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]
        let total = 20 + 8 + payload
        f += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0] + src + dst
        f += [UInt8(sport >> 8), UInt8(sport & 0xff), UInt8(dport >> 8), UInt8(dport & 0xff)]
        f += [UInt8((8 + payload) >> 8), UInt8((8 + payload) & 0xff), 0, 0]
        f += [UInt8](repeating: 0x5a, count: payload)
        return f
    }

    static let tshark = ["/usr/bin/tshark", "/usr/local/bin/tshark"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test(.enabled(if: tshark != nil, "tshark is not installed (scripts/setup installs it)"))
    func tsharkReadsBackWhatWasWritten() throws {
        var w = PcapngWriter()
        var file = PcapngWriter.sectionHeader(application: "test")
        let inbound = PcapngWriter.Interface(name: "vm1/inbound", description: "source vm1 (tap-vm1) inbound", snaplen: 64)
        let outbound = PcapngWriter.Interface(name: "vm1/outbound", description: "source vm1 (tap-vm1) outbound", snaplen: 64)
        file += w.describe(inbound)
        let long = Self.udpFrame(src: [192, 0, 2, 10], dst: [203, 0, 113, 10], sport: 4000, dport: 5001, payload: 100)
        // 2026-12-06T00:00:00.123456789Z: the nanoseconds must survive.
        let t: UInt64 = 1_796_515_200_123_456_789
        file += w.packet(
            on: outbound, timestampNs: t, originalLength: long.count, data: Array(long.prefix(64)),
            comment: "session audit rule 1 (filter audit-all, outbound)", direction: .outbound)
        let short = Self.udpFrame(src: [203, 0, 113, 10], dst: [192, 0, 2, 10], sport: 6000, dport: 7000, payload: 3)
        file += w.packet(
            on: inbound, timestampNs: t + 1, originalLength: short.count, data: short,
            comment: "session audit rule 3 (filter audit-all, inbound)", direction: .inbound)

        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "pcapng-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).pcapng")
        try Data(file).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.tshark!)
        p.arguments = [
            "-r", path.path, "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name", "-e", "frame.interface_description",
            "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.packet_flags_direction",
            "-e", "udp.dstport", "-e", "frame.comment",
        ]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(
            lines == [
                "vm1/outbound|source vm1 (tap-vm1) outbound|1796515200.123456789|142|64|0x00000002|5001|session audit rule 1 (filter audit-all, outbound)",
                "vm1/inbound|source vm1 (tap-vm1) inbound|1796515200.123456790|45|45|0x00000001|7000|session audit rule 3 (filter audit-all, inbound)",
            ])
    }
}
