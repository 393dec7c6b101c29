import MirrorAgent
import Testing

@Suite("Privilege check")
struct PrivilegesTests {
    // CapEff bits: 12 CAP_NET_ADMIN, 21 CAP_SYS_ADMIN, 39 CAP_BPF.
    static func status(_ caps: UInt64) -> String { "Name:\tmirror-agent\nCapEff:\t" + String(caps, radix: 16) + "\n" }

    @Test func rootWithEveryCapabilityMayStart() {
        #expect(Privileges.missing(statusText: Self.status(0x1ff_ffff_ffff), euid: 0).isEmpty)
    }

    @Test func capBPFOrCapSysAdminIsEnough() {
        #expect(Privileges.missing(statusText: Self.status(1 << 12 | 1 << 39), euid: 0).isEmpty)
        #expect(Privileges.missing(statusText: Self.status(1 << 12 | 1 << 21), euid: 0).isEmpty)
    }

    @Test func eachMissingPieceIsNamed() {
        let m = Privileges.missing(statusText: Self.status(0), euid: 1000)
        #expect(m.count == 3)
        #expect(m[0].contains("not running as root"))
        #expect(m[1].contains("CAP_NET_ADMIN"))
        #expect(m[2].contains("CAP_BPF") && m[2].contains("CAP_SYS_ADMIN"))
        #expect(
            Privileges.missing(statusText: Self.status(1 << 39), euid: 0) == ["missing CAP_NET_ADMIN (needed for tc filters and netlink)"])
        #expect(Privileges.missing(statusText: "garbage", euid: 0).first?.contains("cannot read") == true)
    }
}
