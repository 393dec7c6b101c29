import Foundation
import MirrorAgent
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

/// SPEC §5 enforcement: the nftables text the agent renders from security groups
/// and network ACLs, and that the kernel takes it and the agent replaces/removes it.
@Suite struct EnforcementTests {
    static func cidr(_ s: String) -> CIDR {
        let parts = s.split(separator: "/")
        return CIDR(address: IPAddress(String(parts[0]))!, prefixLength: Int(parts[1])!)
    }

    static var document: Document {
        var doc = Document()
        doc.securityGroups = [
            SecurityGroup(
                id: "web",
                rules: [
                    SecurityGroupRule(
                        direction: .ingress, priority: 20, action: .allow, ethertype: .ipv4, protocol: .tcp,
                        remote: cidr("203.0.113.0/24"), ports: PortRange(80, 80)),
                    SecurityGroupRule(direction: .egress, priority: 5, action: .deny, ethertype: .ipv4, protocol: .udp),
                ]),
            SecurityGroup(
                id: "ops",
                rules: [
                    SecurityGroupRule(direction: .ingress, priority: 20, action: .deny, ethertype: .ipv6, protocol: .icmpv6),
                    SecurityGroupRule(
                        direction: .ingress, priority: 1, action: .allow, ethertype: .ipv6, protocol: .tcp,
                        remote: cidr("2001:db8:3::/64"), ports: PortRange(22, 23)),
                ]),
        ]
        doc.networkAcls = [
            NetworkAcl(
                id: "edge",
                inbound: [
                    AclRule(priority: 9, action: .allow, ethertype: .ipv4),
                    AclRule(
                        priority: 2, action: .deny, ethertype: .ipv4, protocol: .tcp, source: cidr("203.0.113.200/32"),
                        sourcePorts: PortRange(1000, 2000), destinationPorts: PortRange(443, 443)),
                ],
                outbound: [AclRule(priority: 1, action: .allow, ethertype: .ipv6, destination: cidr("0::/0"))])
        ]
        doc.sources = [
            Source(id: "vm-1", interface: "tap-vm1", securityGroups: ["web", "ops"], networkAcl: "edge", enforce: true),
            Source(id: "vm-2", interface: "tap-vm2", securityGroups: ["web"], enforce: false),
            Source(id: "vm-3", interface: "tap-vm3", networkAcl: "edge", enforce: true),
        ]
        return doc
    }

    @Test func rendersGroupsAndAclOfEnforcedSourcesInSpecOrder() {
        let text = EnforcementRenderer.render(Self.document)
        let want = """
            table inet mirror_enforce
            delete table inet mirror_enforce
            table inet mirror_enforce {
            \tchain forward {
            \t\ttype filter hook forward priority filter; policy accept;
            \t\tiifname "tap-vm1" jump src0_out comment "source vm-1 outbound"
            \t\tiifname "tap-vm3" jump src1_out comment "source vm-3 outbound"
            \t\toifname "tap-vm1" jump src0_in comment "source vm-1 inbound"
            \t\toifname "tap-vm3" jump src1_in comment "source vm-3 inbound"
            \t}
            \tchain input {
            \t\ttype filter hook input priority filter; policy accept;
            \t\tiifname "tap-vm1" jump src0_out comment "source vm-1 outbound"
            \t\tiifname "tap-vm3" jump src1_out comment "source vm-3 outbound"
            \t}
            \tchain output {
            \t\ttype filter hook output priority filter; policy accept;
            \t\toifname "tap-vm1" jump src0_in comment "source vm-1 inbound"
            \t\toifname "tap-vm3" jump src1_in comment "source vm-3 inbound"
            \t}
            \tchain src0_sg_egress {
            \t\t# source vm-1: security groups web,ops egress
            \t\tct state established,related return
            \t\tmeta nfproto ipv4 meta l4proto 17 drop comment "security group web egress rule 5"
            \t\tdrop comment "no rule matched: default deny"
            \t}
            \tchain src0_sg_ingress {
            \t\t# source vm-1: security groups web,ops ingress
            \t\tct state established,related return
            \t\tmeta nfproto ipv6 meta l4proto 6 ip6 saddr 2001:db8:3::/64 th dport 22-23 return comment "security group ops ingress rule 1"
            \t\tmeta nfproto ipv4 meta l4proto 6 ip saddr 203.0.113.0/24 th dport 80 return comment "security group web ingress rule 20"
            \t\tmeta nfproto ipv6 meta l4proto 58 drop comment "security group ops ingress rule 20"
            \t\tdrop comment "no rule matched: default deny"
            \t}
            \tchain src0_acl_outbound {
            \t\t# source vm-1: network ACL edge outbound
            \t\tmeta nfproto ipv6 return comment "network ACL edge rule 1"
            \t\tdrop comment "no rule matched: default deny"
            \t}
            \tchain src0_acl_inbound {
            \t\t# source vm-1: network ACL edge inbound
            \t\tmeta nfproto ipv4 meta l4proto 6 ip saddr 203.0.113.200/32 th sport 1000-2000 th dport 443 drop comment "network ACL edge rule 2"
            \t\tmeta nfproto ipv4 return comment "network ACL edge rule 9"
            \t\tdrop comment "no rule matched: default deny"
            \t}
            \tchain src0_out {
            \t\tjump src0_sg_egress
            \t\tjump src0_acl_outbound
            \t}
            \tchain src0_in {
            \t\tjump src0_acl_inbound
            \t\tjump src0_sg_ingress
            \t}
            \tchain src1_acl_outbound {
            \t\t# source vm-3: network ACL edge outbound
            \t\tmeta nfproto ipv6 return comment "network ACL edge rule 1"
            \t\tdrop comment "no rule matched: default deny"
            \t}
            \tchain src1_acl_inbound {
            \t\t# source vm-3: network ACL edge inbound
            \t\tmeta nfproto ipv4 meta l4proto 6 ip saddr 203.0.113.200/32 th sport 1000-2000 th dport 443 drop comment "network ACL edge rule 2"
            \t\tmeta nfproto ipv4 return comment "network ACL edge rule 9"
            \t\tdrop comment "no rule matched: default deny"
            \t}
            \tchain src1_out {
            \t\tjump src1_acl_outbound
            \t}
            \tchain src1_in {
            \t\tjump src1_acl_inbound
            \t}
            }

            """
        if text != want {
            let a = text.split(separator: "\n", omittingEmptySubsequences: false)
            let b = want.split(separator: "\n", omittingEmptySubsequences: false)
            let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
            Issue.record(
                "first difference at line \(i + 1):\n got: \(i < a.count ? String(a[i]) : "<end>")\nwant: \(i < b.count ? String(b[i]) : "<end>")"
            )
        }
    }

    @Test func withoutEnforcedSourcesTheTableIsOnlyDeleted() {
        var doc = Self.document
        for i in doc.sources.indices { doc.sources[i].enforce = nil }
        #expect(EnforcementRenderer.render(doc) == "table inet mirror_enforce\ndelete table inet mirror_enforce\n")
        #expect(!Enforcement.wanted(doc))
    }

    /// nft in a test netns takes the rules, a second apply replaces them (one table,
    /// the new rules), and applying a document without enforcement removes the table.
    @Test(.enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft"), "needs root and nft"))
    func nftTakesReplacesAndRemovesTheTable() throws {
        let ns = try TestNetns()
        let nft = Enforcement(command: ["/usr/sbin/ip", "netns", "exec", ns.name, "/usr/sbin/nft"])
        func list() -> String { (try? Command.run(["ip", "netns", "exec", ns.name, "nft", "list", "ruleset"])) ?? "" }
        var doc = Self.document
        try nft.check(doc)
        try nft.apply(doc)
        var text = list()
        #expect(text.contains("chain src0_sg_ingress"))
        #expect(text.contains("security group ops ingress rule 1"))
        doc.sources[0].enforce = false
        try nft.apply(doc)
        text = list()
        #expect(!text.contains("src1_sg_ingress") && !text.contains("tap-vm1"))
        #expect(text.contains("tap-vm3"))
        #expect(text.components(separatedBy: "table inet mirror_enforce").count == 2)
        for i in doc.sources.indices { doc.sources[i].enforce = nil }
        try nft.apply(doc)
        #expect(!list().contains("mirror_enforce"))
        try nft.remove()  // absent: still fine
        // A rule set nft refuses is an error with nft's words in it.
        let broken = Enforcement(command: ["/usr/sbin/ip", "netns", "exec", ns.name, "/usr/sbin/nft", "--nonexistent-flag"])
        #expect(throws: Enforcement.Failure.self) { try broken.apply(Self.document) }
    }
}
