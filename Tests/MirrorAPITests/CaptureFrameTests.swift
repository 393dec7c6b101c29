import MirrorAPI
import MirrorCore
import Testing

/// The capture stream's frames (MirrorAPI/CaptureMessages.swift) survive any split of
/// the bytes, and what is not a frame is refused, not guessed at.
@Suite struct CaptureFrameTests {
    static let frames: [CaptureFrame] = [
        .started(
            CaptureStarted(
                id: "capture-1", session: "audit", source: nil, directions: [.inbound, .outbound], snaplen: 100,
                interfaces: [CaptureInterface(source: "vm1", interface: "tap-vm1", direction: .inbound)])),
        .packet(
            CapturePacket(
                timestampNs: 1_796_515_200_123_456_789, source: "vm1", interface: "tap-vm1", direction: .outbound,
                session: "audit", filter: "audit-all", rulePriority: 65535, length: 1500, data: Array(0..<100))),
        .packet(
            CapturePacket(
                timestampNs: 1, source: "ü", interface: "", direction: .inbound, session: "s", filter: "f", rulePriority: 1,
                length: 0, data: [])),
        .summary(CaptureSummary(id: "capture-1", packets: 2, lostInKernel: 3, lostInAgent: 4, ended: "count")),
    ]

    @Test func framesRoundTripWhateverPiecesTheBytesComeIn() throws {
        let bytes = Self.frames.flatMap { $0.encoded() }
        for piece in [1, 2, 3, 7, 64, bytes.count] {
            var decoder = CaptureFrameDecoder()
            var got: [CaptureFrame] = []
            var i = 0
            while i < bytes.count {
                got += try decoder.feed(Array(bytes[i..<min(i + piece, bytes.count)]))
                i += piece
            }
            #expect(got == Self.frames, "pieces of \(piece) bytes")
            #expect(decoder.pending == 0)
        }
    }

    @Test func summaryCountsBothLosses() {
        let s = CaptureSummary(id: "c", packets: 1, lostInKernel: 2, lostInAgent: 3, ended: "stopped")
        #expect(s.lost == 5)
    }

    @Test func unknownKindsAndOversizeFramesAreRefused() {
        var d = CaptureFrameDecoder()
        #expect(throws: CaptureFrameDecoder.Malformed.self) { try d.feed([0, 0, 0, 1, 9, 0]) }
        var e = CaptureFrameDecoder()
        #expect(throws: CaptureFrameDecoder.Malformed.self) { try e.feed([0x7f, 0, 0, 0, 2]) }
        var f = CaptureFrameDecoder()
        // A packet frame whose names run past its end.
        #expect(throws: CaptureFrameDecoder.Malformed.self) {
            try f.feed([0, 0, 0, 17, 2] + [UInt8](repeating: 0, count: 15) + [0xff, 0xff])
        }
    }

    @Test func requestsNameWhatIsWrong() {
        #expect(CaptureRequest(session: "a").problems.isEmpty)
        #expect(CaptureRequest().problems.map(\.path) == ["session"])
        #expect(CaptureRequest(session: "a", source: "b").problems.map(\.path) == ["source"])
        #expect(CaptureRequest(source: "b", count: 0, duration: 0, snaplen: 0).problems.map(\.path) == ["count", "duration", "snaplen"])
        #expect(CaptureRequest(source: "b", snaplen: CaptureRequest.maxSnaplen + 1).problems.map(\.path) == ["snaplen"])
    }
}
