import CMirrorABI
import MirrorCore

/// One (source interface, direction) entry of the `mirror_security` map (SPEC §5):
/// the source's network ACL rules for the direction and its security groups'
/// rules for the matching group direction, each in evaluation order.
public struct SecurityEntry: @unchecked Sendable {
    public var sourceID: String
    public var ifindex: UInt32
    public var direction: Direction
    public var sourceSlot: UInt16
    /// The ACL id (nil = none: the ACL allows everything).
    public var networkAcl: String?
    /// The source's groups in order: `group_index` of a rule is a position here.
    public var securityGroups: [String]
    /// Ascending priority.
    public var aclRules: [mirror_security_rule]
    /// All groups merged: ascending priority, then group order (SPEC §5).
    public var groupRules: [mirror_security_rule]

    public func key(slot: UInt8) -> mirror_security_key {
        var k = mirror_security_key()
        k.ifindex = ifindex
        k.slot = slot
        k.direction = direction.abi
        return k
    }

    public var value: mirror_security {
        var v = mirror_security()
        v.source_slot = sourceSlot
        var flags: UInt32 = 0
        if networkAcl != nil { flags |= MIRROR_SECURITY_HAS_ACL.rawValue }
        if !securityGroups.isEmpty { flags |= MIRROR_SECURITY_HAS_GROUPS.rawValue }
        v.flags = UInt8(flags)
        v.acl_rule_count = UInt8(aclRules.count)
        v.group_rule_count = UInt16(groupRules.count)
        withUnsafeMutableBytes(of: &v.acl_rules) { raw in
            let buf = raw.bindMemory(to: mirror_security_rule.self)
            for (i, r) in aclRules.enumerated() { buf[i] = r }
        }
        withUnsafeMutableBytes(of: &v.group_rules) { raw in
            let buf = raw.bindMemory(to: mirror_security_rule.self)
            for (i, r) in groupRules.enumerated() { buf[i] = r }
        }
        return v
    }

    /// A suppression verdict's rule fields (bpf/mirror_abi.h: priority in the session
    /// slot bits, group index in the rule index bits) in the oracle's terms.
    public func suppression(bySecurityGroup: Bool, priority: UInt16, groupIndex: UInt8) -> Decision.Suppression {
        if bySecurityGroup {
            // No rule matched: the oracle names every group (the default deny is theirs together).
            guard priority != 0 else {
                return .init(kind: "securityGroup", id: securityGroups.joined(separator: ","), rulePriority: nil)
            }
            let id = Int(groupIndex) < securityGroups.count ? securityGroups[Int(groupIndex)] : nil
            return .init(kind: "securityGroup", id: id, rulePriority: Int(priority))
        }
        return .init(kind: "networkAcl", id: networkAcl, rulePriority: priority == 0 ? nil : Int(priority))
    }
}

/// Compiles sources' security groups and network ACLs (SPEC §5) into
/// `mirror_security` entries. Pure, like `Compiler`; called from `Compiler.compile`.
public enum SecurityCompiler {
    /// An entry per direction for every resolved source with groups or an ACL;
    /// none for the others (the classifier's lookup fails and costs nothing more).
    public static func entries(
        _ doc: Document, slots: SlotAssignment,
        interfaceIndex: (String) -> UInt32?
    ) throws(CompileError) -> [SecurityEntry] {
        let groups = Dictionary(doc.securityGroups.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let acls = Dictionary(doc.networkAcls.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [SecurityEntry] = []
        for src in doc.sources {
            let groupIDs = src.securityGroups ?? []
            guard !groupIDs.isEmpty || src.networkAcl != nil else { continue }
            guard let ifindex = interfaceIndex(src.interface) else { continue }
            guard let sourceSlot = slots.sources[src.id] else { throw CompileError("source \(src.id): no slot assigned") }
            guard groupIDs.count <= Int(MAX_SECURITY_GROUPS_PER_SOURCE) else {
                throw CompileError("source \(src.id): more than \(MAX_SECURITY_GROUPS_PER_SOURCE) security groups")
            }
            var sourceGroups: [SecurityGroup] = []
            for id in groupIDs {
                guard let g = groups[id] else { throw CompileError("source \(src.id): unknown security group \(id)") }
                guard g.rules.count <= Int(MAX_RULES_PER_SECURITY_GROUP) else {
                    throw CompileError("security group \(id): more than \(MAX_RULES_PER_SECURITY_GROUP) rules")
                }
                sourceGroups.append(g)
            }
            var acl: NetworkAcl?
            if let id = src.networkAcl {
                guard let a = acls[id] else { throw CompileError("source \(src.id): unknown network ACL \(id)") }
                acl = a
            }
            for d in Direction.allCases {
                var entry = SecurityEntry(
                    sourceID: src.id, ifindex: ifindex, direction: d, sourceSlot: sourceSlot,
                    networkAcl: acl?.id, securityGroups: groupIDs, aclRules: [], groupRules: [])
                if let acl {
                    let rules = orderedAclRules(d == .inbound ? acl.inbound : acl.outbound)
                    guard rules.count <= Int(MAX_RULES_PER_ACL_DIRECTION) else {
                        throw CompileError("network ACL \(acl.id): more than \(MAX_RULES_PER_ACL_DIRECTION) \(d) rules")
                    }
                    entry.aclRules = rules.map(aclRule)
                }
                let groupDirection: SecurityGroupDirection = d == .inbound ? .ingress : .egress
                entry.groupRules = mergedGroupRules(sourceGroups, groupDirection).map { groupRule($0.rule, $0.groupIndex) }
                out.append(entry)
            }
        }
        return out
    }

    /// Ascending priority; ties (refused by validation) keep document order.
    public static func orderedAclRules(_ rules: [AclRule]) -> [AclRule] {
        rules.enumerated().sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }.map(\.element)
    }

    /// SPEC §5: across the groups by priority, then group order (then document order).
    public static func mergedGroupRules(_ groups: [SecurityGroup], _ direction: SecurityGroupDirection)
        -> [(rule: SecurityGroupRule, groupIndex: Int)]
    {
        var all: [(rule: SecurityGroupRule, groupIndex: Int, offset: Int)] = []
        for (gi, g) in groups.enumerated() {
            for (ri, r) in g.rules.enumerated() where r.direction == direction { all.append((r, gi, ri)) }
        }
        return all.sorted { ($0.rule.priority, $0.groupIndex, $0.offset) < ($1.rule.priority, $1.groupIndex, $1.offset) }
            .map { ($0.rule, $0.groupIndex) }
    }

    static func aclRule(_ r: AclRule) -> mirror_security_rule {
        rule(
            allow: r.action == .allow, ethertype: r.ethertype, protocol: r.protocol, source: r.source,
            destination: r.destination, sourcePorts: r.sourcePorts, destinationPorts: r.destinationPorts,
            priority: r.priority, groupIndex: 0)
    }

    /// `remote` is the peer: the source of ingress packets, the destination of
    /// egress ones; `ports` are destination ports (as `SecurityPolicy`).
    static func groupRule(_ r: SecurityGroupRule, _ groupIndex: Int) -> mirror_security_rule {
        rule(
            allow: r.action == .allow, ethertype: r.ethertype, protocol: r.protocol,
            source: r.direction == .ingress ? r.remote : nil, destination: r.direction == .egress ? r.remote : nil,
            sourcePorts: nil, destinationPorts: r.ports, priority: r.priority, groupIndex: groupIndex)
    }

    static func rule(
        allow: Bool, ethertype: Ethertype, protocol proto: ProtocolSpec, source: CIDR?, destination: CIDR?,
        sourcePorts: PortRange?, destinationPorts: PortRange?, priority: Int, groupIndex: Int
    ) -> mirror_security_rule {
        var m = mirror_security_rule()
        var flags: UInt32 = 0
        if allow { flags |= MIRROR_SECURITY_RULE_ALLOW.rawValue }
        if ethertype == .ipv6 { flags |= MIRROR_SECURITY_RULE_IPV6.rawValue }
        // The same one-comparison key as filter rules.
        let sp = sourcePorts ?? .all, dp = destinationPorts ?? .all
        (m.match_mask, m.match_value) = Compiler.matchKey(ethertype, proto, sp, dp)
        m.src_port_min = sp.lower; m.src_port_max = sp.upper
        m.dst_port_min = dp.lower; m.dst_port_max = dp.upper
        let (sa, sm) = Compiler.addressAndMask(source)
        let (da, dm) = Compiler.addressAndMask(destination)
        m.src_addr_be = sa; m.src_mask_be = sm; m.dst_addr_be = da; m.dst_mask_be = dm
        m.priority = UInt16(clamping: priority)
        m.group_index = UInt8(clamping: groupIndex)
        m.flags = UInt8(flags)
        return m
    }
}
