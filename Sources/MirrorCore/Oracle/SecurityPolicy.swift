/// SPEC §5: packets the source's security groups or network ACL drop are not mirrored.
/// Outbound: security group egress, then ACL outbound. Inbound: ACL inbound, then
/// security group ingress.
public enum SecurityPolicy {
    public static func suppression(
        document: Document, source: Source, direction: Direction,
        packet: PacketDescription, connection: ConnectionState
    ) -> Decision.Suppression? {
        let acl = source.networkAcl.flatMap { id in document.networkAcls.first { $0.id == id } }
        let groups = (source.securityGroups ?? []).compactMap { id in document.securityGroups.first { $0.id == id } }
        let checks: [() -> Decision.Suppression?] =
            direction == .outbound
            ? [{ securityGroupDrop(groups, .egress, packet, connection) }, { aclDrop(acl, .outbound, packet) }]
            : [{ aclDrop(acl, .inbound, packet) }, { securityGroupDrop(groups, .ingress, packet, connection) }]
        for check in checks { if let s = check() { return s } }
        return nil
    }

    /// Stateless, first match by priority, no match = deny; no ACL = allow.
    static func aclDrop(_ acl: NetworkAcl?, _ direction: Direction, _ p: PacketDescription) -> Decision.Suppression? {
        guard let acl else { return nil }
        let rules = (direction == .inbound ? acl.inbound : acl.outbound).enumerated()
            .sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }.map(\.element)
        for r in rules
        where Oracle.conditionsHold(
            ethertype: r.ethertype, protocol: r.protocol, source: r.source,
            destination: r.destination, sourcePorts: r.sourcePorts,
            destinationPorts: r.destinationPorts, packet: p)
        {
            return r.action == .allow ? nil : .init(kind: "networkAcl", id: acl.id, rulePriority: r.priority)
        }
        return .init(kind: "networkAcl", id: acl.id, rulePriority: nil)
    }

    /// Stateful: an established connection's packets are allowed. Otherwise the first
    /// matching rule across the groups (by priority, then group order) decides; no
    /// match = deny; no groups = allow. `remote` is the peer: the source address of
    /// ingress packets, the destination of egress packets; `ports` the destination port.
    static func securityGroupDrop(
        _ groups: [SecurityGroup], _ direction: SecurityGroupDirection,
        _ p: PacketDescription, _ connection: ConnectionState
    ) -> Decision.Suppression? {
        guard !groups.isEmpty, connection == .new else { return nil }
        var candidates: [(rule: SecurityGroupRule, group: String, order: Int)] = []
        for (gi, g) in groups.enumerated() {
            for r in g.rules where r.direction == direction { candidates.append((r, g.id, gi)) }
        }
        candidates.sort { ($0.rule.priority, $0.order) < ($1.rule.priority, $1.order) }
        for c in candidates {
            let r = c.rule
            let remoteMatches =
                direction == .ingress
                ? Oracle.conditionsHold(
                    ethertype: r.ethertype, protocol: r.protocol, source: r.remote, destination: nil,
                    sourcePorts: nil, destinationPorts: r.ports, packet: p)
                : Oracle.conditionsHold(
                    ethertype: r.ethertype, protocol: r.protocol, source: nil, destination: r.remote,
                    sourcePorts: nil, destinationPorts: r.ports, packet: p)
            if remoteMatches {
                return r.action == .allow ? nil : .init(kind: "securityGroup", id: c.group, rulePriority: r.priority)
            }
        }
        return .init(kind: "securityGroup", id: groups.map(\.id).joined(separator: ","), rulePriority: nil)
    }
}
