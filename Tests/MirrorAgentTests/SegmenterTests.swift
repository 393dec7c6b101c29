import Foundation
import MirrorAgent
import MirrorDatapath
import MirrorTestSupport
import Testing

/// The segmenter veth pair (Segmenter.swift, bpf/mirror_abi.h "The segmenter").
@Suite("Segmenter veth pair in a network namespace (root)", .enabled(if: isRoot, "needs root for network namespaces"), .serialized)
struct SegmenterTests {
    @Test func isCreatedAdoptedAndRemoved() throws {
        let ns = try TestNetns()
        let nl = try NetlinkContext(netns: ns.path)
        #expect(try nl.ifindex("mirseg0") == nil)

        let (tx, rx) = try SegmenterDevice.ensure(nl)
        #expect(try nl.ifindex("mirseg0") == tx)
        #expect(try nl.ifindex("mirseg1") == rx)
        // The kernel segments every GSO skb sent on the tx end in software.
        #expect(try SegmenterDevice.gsoMaxSegs(nl, "mirseg0") == 1)
        let shown = try ns.ip("-d", "link", "show", "mirseg0")
        #expect(shown.contains("veth"))
        #expect(shown.contains("mtu 65535"))
        #expect(shown.contains("gso_max_segs 1 "))
        #expect(shown.contains(",UP"))
        #expect(try ns.ip("link", "show", "mirseg1").contains(",UP"))

        // A restart adopts the pair (same devices, nothing added) and repairs it.
        try ns.ip("link", "set", "mirseg0", "gso_max_segs", "64")
        let again = try SegmenterDevice.ensure(nl)
        #expect(again.tx == tx && again.rx == rx)
        #expect(try SegmenterDevice.gsoMaxSegs(nl, "mirseg0") == 1)
        let links = try ns.ip("-o", "link", "show").split(separator: "\n")
        #expect(links.filter { $0.contains("mirseg") }.count == 2)

        #expect(try SegmenterDevice.remove(nl))
        #expect(try nl.ifindex("mirseg0") == nil)
        #expect(try nl.ifindex("mirseg1") == nil)
        #expect(try SegmenterDevice.remove(nl) == false)
    }

    @Test func foreignDevicesWithTheNamesAreNeverTaken() throws {
        let ns = try TestNetns()
        let nl = try NetlinkContext(netns: ns.path)
        // A veth pair whose peer is not mirseg1, and a lone mirseg1.
        try ns.ip("link", "add", "mirseg0", "type", "veth", "peer", "name", "other1")
        try ns.ip("link", "add", "mirseg1", "type", "veth", "peer", "name", "other2")
        #expect(throws: NetlinkError.self) { try SegmenterDevice.ensure(nl) }
        #expect(try SegmenterDevice.remove(nl) == false)
        #expect(try nl.ifindex("mirseg0") != nil)
        #expect(try nl.ifindex("mirseg1") != nil)
    }

    @Test func namesFollowTheMirrorDevice() {
        let d = SegmenterDevice.names(forMirrorDevice: "mirror0")
        #expect(d.tx == "mirseg0" && d.rx == "mirseg1")
        let n = SegmenterDevice.names(forMirrorDevice: "mirrorlongname1")
        #expect(n.tx == "mirrorlongn-sg0" && n.rx == "mirrorlongn-sg1")
        #expect(n.tx.utf8.count <= 15)
    }
}
