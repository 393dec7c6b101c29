import MirrorCompiler
import MirrorCore
import Testing

@Suite struct PacketParserTests {
    @Test func arpIsNotIP() {
        #expect(PacketParser.describe(frame: FrameBuilder.arp()) == .notIP)
    }
}
