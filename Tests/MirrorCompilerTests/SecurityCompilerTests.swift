import CMirrorABI
import MirrorCompiler
import MirrorCore
import Testing

/// SecurityCompiler: SPEC §5 groups and ACLs into `mirror_security` entries.
@Suite struct SecurityCompilerTests {
    @Test func abiBoundsEqualTheQuotas() {
        #expect(Int(MAX_SECURITY_GROUPS_PER_SOURCE) == Quota.securityGroupsPerSource)
        #expect(Int(MAX_RULES_PER_SECURITY_GROUP) == Quota.rulesPerSecurityGroup)
        #expect(Int(MAX_RULES_PER_ACL_DIRECTION) == Quota.rulesPerAclDirection)
        #expect(Int(MAX_SECURITY_GROUP_RULES_PER_DIRECTION) == Quota.securityGroupsPerSource * Quota.rulesPerSecurityGroup)
    }

    static func cidr(_ a: String, _ p: Int) -> CIDR { CIDR(address: IPAddress(a)!, prefixLength: p) }

    static var document: Document {
        var doc = Document()
        doc.securityGroups = [
            SecurityGroup(
                id: "a",
                rules: [
                    SecurityGroupRule(
                        direction: .ingress, priority: 7, action: .deny, ethertype: .ipv4, protocol: .tcp,
                        remote: cidr("198.18.0.0", 16), ports: PortRange(80, 80)),
                    SecurityGroupRule(
                        direction: .egress, priority: 3, action: .allow, ethertype: .ipv6, protocol: .udp,
                        remote: cidr("2001:db8::", 32)),
                ]),
            SecurityGroup(
                id: "b",
                rules: [
                    SecurityGroupRule(direction: .ingress, priority: 7, action: .allow, ethertype: .ipv4),
                    SecurityGroupRule(direction: .ingress, priority: 2, action: .allow, ethertype: .ipv4, protocol: .icmp),
                ]),
        ]
        doc.networkAcls = [
            NetworkAcl(
                id: "n",
                inbound: [
                    AclRule(priority: 9, action: .allow, ethertype: .ipv4),
                    AclRule(
                        priority: 1, action: .deny, ethertype: .ipv4, protocol: .tcp, source: cidr("198.18.1.0", 24),
                        sourcePorts: PortRange(1000, 2000)),
                ])
        ]
        doc.sources = [
            Source(id: "with", interface: "tap0", securityGroups: ["b", "a"], networkAcl: "n"),
            Source(id: "without", interface: "tap1"),
            Source(id: "absent", interface: "gone", networkAcl: "n"),
        ]
        return doc
    }

    static func entries() throws -> [SecurityEntry] {
        let doc = document
        let slots = try SlotAssignment.assign(document: doc)
        let ifindex: [String: UInt32] = ["tap0": 10, "tap1": 11]
        return try SecurityCompiler.entries(doc, slots: slots, interfaceIndex: { ifindex[$0] })
    }

    @Test func onlySourcesWithGroupsOrAnAclAndAnInterfaceGetEntriesOnePerDirection() throws {
        let e = try Self.entries()
        #expect(e.map(\.sourceID) == ["with", "with"])
        #expect(Set(e.map(\.direction)) == [.inbound, .outbound])
        #expect(e.allSatisfy { $0.ifindex == 10 && $0.networkAcl == "n" && $0.securityGroups == ["b", "a"] })
    }

    @Test func groupRulesMergeByPriorityThenGroupOrderAndAclRulesByPriority() throws {
        let inbound = try #require(try Self.entries().first { $0.direction == .inbound })
        // ingress: b/2, then priority 7 of b (first group) before a's.
        #expect(inbound.groupRules.map { [Int($0.priority), Int($0.group_index)] } == [[2, 0], [7, 0], [7, 1]])
        #expect(inbound.aclRules.map(\.priority) == [1, 9])
        let v = inbound.value
        #expect(v.acl_rule_count == 2 && v.group_rule_count == 3)
        #expect(UInt32(v.flags) == MIRROR_SECURITY_HAS_ACL.rawValue | MIRROR_SECURITY_HAS_GROUPS.rawValue)
        let outbound = try #require(try Self.entries().first { $0.direction == .outbound })
        #expect(outbound.groupRules.map(\.priority) == [3])
        #expect(outbound.aclRules.isEmpty)  // an ACL without outbound rules: default deny
    }

    @Test func remoteIsTheSourceForIngressAndTheDestinationForEgressPortsAreDestinationPorts() throws {
        let e = try Self.entries()
        let deny = try #require(e.first { $0.direction == .inbound }?.groupRules[2])
        #expect(deny.flags & UInt8(MIRROR_SECURITY_RULE_ALLOW.rawValue) == 0)
        #expect(deny.src_mask_be.0 == UInt32(0xffff0000).bigEndian && deny.src_addr_be.0 == UInt32(0xc6120000).bigEndian)
        #expect(deny.dst_mask_be.0 == 0)
        #expect(deny.dst_port_min == 80 && deny.dst_port_max == 80 && deny.src_port_min == 0 && deny.src_port_max == 65535)
        #expect(deny.match_mask & UInt16(MIRROR_KEY_PORTS) != 0)
        let egress = try #require(e.first { $0.direction == .outbound }?.groupRules.first)
        #expect(egress.flags & UInt8(MIRROR_SECURITY_RULE_IPV6.rawValue) != 0)
        #expect(egress.src_mask_be.0 == 0 && egress.dst_mask_be.0 == UInt32(0xffffffff).bigEndian)
        #expect(egress.match_value == UInt16(MIRROR_KEY_IPV6 | MIRROR_KEY_PROTOCOL_KNOWN | 17))
    }

    @Test func suppressionNamesTheGroupAndRuleOrEveryGroupForTheDefaultDeny() throws {
        let inbound = try #require(try Self.entries().first { $0.direction == .inbound })
        #expect(
            inbound.suppression(bySecurityGroup: true, priority: 7, groupIndex: 1)
                == .init(kind: "securityGroup", id: "a", rulePriority: 7))
        #expect(
            inbound.suppression(bySecurityGroup: true, priority: 0, groupIndex: 0)
                == .init(kind: "securityGroup", id: "b,a", rulePriority: nil))
        #expect(
            inbound.suppression(bySecurityGroup: false, priority: 0, groupIndex: 0)
                == .init(kind: "networkAcl", id: "n", rulePriority: nil))
    }

    @Test func theCompilerCarriesTheEntriesInItsImage() throws {
        let doc = Self.document
        let slots = try SlotAssignment.assign(document: doc)
        let image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { $0 == "tap0" ? 10 : nil }))
        #expect(image.security.count == 2)
    }

    @Test func aGroupOverItsQuotaIsACompileError() throws {
        var doc = Self.document
        doc.securityGroups[0].rules = (1...101).map {
            SecurityGroupRule(direction: .ingress, priority: min($0, 100), action: .allow, ethertype: .ipv4)
        }
        let slots = try SlotAssignment.assign(document: doc)
        #expect(throws: CompileError.self) {
            try SecurityCompiler.entries(doc, slots: slots, interfaceIndex: { _ in 1 })
        }
    }
}
