import Foundation
import MirrorCore

/// SPEC §5 enforcement: the security groups and network ACL of every source with
/// `"enforce": true`, rendered as nftables rules on that source's interface, so
/// that one definition drives both enforcement and mirroring awareness
/// (bpf/security.h). Pure: the text only; `Enforcement` applies it.
///
/// Layout: `table inet mirror_enforce` (the agent's own, nothing else touches it)
/// with base chains on forward (routed VM traffic), input (VM to this host) and
/// output (this host to the VM). Packets from a source's interface (the ENI's
/// outbound) jump to its `out` chain: security group egress, then ACL outbound;
/// packets to it (inbound) to its `in` chain: ACL inbound, then security group
/// ingress. In a check chain an allow is `return` (on to the next check) and a
/// deny is `drop`; falling off the end is the default deny. The groups' chain
/// starts with `ct state established,related return`: they are stateful (an
/// ICMP error of an allowed connection is its reply too, as bpf/security.h
/// judges it by the flow it quotes); the ACL is not.
/// Mirrored copies leave through the underlay, not the source's interface, so
/// they are never subject to these rules (SPEC §5).
public enum EnforcementRenderer {
    public static let table = "mirror_enforce"

    /// One nft transaction (for `nft -f`): declare the table (a no-op when it
    /// exists), delete it, define it anew. The kernel applies it atomically, so
    /// no packet sees a half-written rule set. With no enforced source the
    /// table is only deleted.
    public static func render(_ doc: Document) -> String {
        var out = "table inet \(table)\ndelete table inet \(table)\n"
        let enforced = doc.sources.filter { $0.enforce == true }
        guard !enforced.isEmpty else { return out }
        let groups = Dictionary(doc.securityGroups.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let acls = Dictionary(doc.networkAcls.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var body: [String] = []
        var jumpsFrom: [String] = [], jumpsTo: [String] = []
        for (i, src) in enforced.enumerated() {
            // Chain names from positions: ids may hold characters nft names may not.
            let name = "src\(i)"
            let iface = quoted(src.interface)
            let sourceGroups = (src.securityGroups ?? []).compactMap { groups[$0] }
            let acl = src.networkAcl.flatMap { acls[$0] }
            var outChecks: [String] = [], inChecks: [String] = []
            if !sourceGroups.isEmpty {
                body.append(
                    chain(
                        "\(name)_sg_egress", groupRules(sourceGroups, .egress),
                        comment: "source \(src.id): security groups \(sourceGroups.map(\.id).joined(separator: ",")) egress"))
                body.append(
                    chain(
                        "\(name)_sg_ingress", groupRules(sourceGroups, .ingress),
                        comment: "source \(src.id): security groups \(sourceGroups.map(\.id).joined(separator: ",")) ingress"))
            }
            if let acl {
                body.append(
                    chain("\(name)_acl_outbound", aclRules(acl, acl.outbound), comment: "source \(src.id): network ACL \(acl.id) outbound"))
                body.append(
                    chain("\(name)_acl_inbound", aclRules(acl, acl.inbound), comment: "source \(src.id): network ACL \(acl.id) inbound"))
            }
            // SPEC §5 order.
            if !sourceGroups.isEmpty { outChecks.append("jump \(name)_sg_egress") }
            if acl != nil { outChecks.append("jump \(name)_acl_outbound"); inChecks.append("jump \(name)_acl_inbound") }
            if !sourceGroups.isEmpty { inChecks.append("jump \(name)_sg_ingress") }
            body.append("\tchain \(name)_out {\n" + outChecks.map { "\t\t\($0)\n" }.joined() + "\t}\n")
            body.append("\tchain \(name)_in {\n" + inChecks.map { "\t\t\($0)\n" }.joined() + "\t}\n")
            jumpsFrom.append("iifname \(iface) jump \(name)_out comment \(quoted("source \(src.id) outbound"))")
            jumpsTo.append("oifname \(iface) jump \(name)_in comment \(quoted("source \(src.id) inbound"))")
        }
        out += "table inet \(table) {\n"
        out += base("forward", jumpsFrom + jumpsTo)
        out += base("input", jumpsFrom)
        out += base("output", jumpsTo)
        out += body.joined()
        out += "}\n"
        return out
    }

    static func base(_ hook: String, _ rules: [String]) -> String {
        "\tchain \(hook) {\n\t\ttype filter hook \(hook) priority filter; policy accept;\n"
            + rules.map { "\t\t\($0)\n" }.joined() + "\t}\n"
    }

    static func chain(_ name: String, _ rules: [String], comment: String) -> String {
        "\tchain \(name) {\n\t\t# \(comment)\n" + rules.map { "\t\t\($0)\n" }.joined()
            + "\t\tdrop comment \"no rule matched: default deny\"\n\t}\n"
    }

    /// SPEC §5: across the groups by priority, then group order; stateful.
    static func groupRules(_ groups: [SecurityGroup], _ direction: SecurityGroupDirection) -> [String] {
        var all: [(rule: SecurityGroupRule, group: String, gi: Int, ri: Int)] = []
        for (gi, g) in groups.enumerated() {
            for (ri, r) in g.rules.enumerated() where r.direction == direction { all.append((r, g.id, gi, ri)) }
        }
        all.sort { ($0.rule.priority, $0.gi, $0.ri) < ($1.rule.priority, $1.gi, $1.ri) }
        return ["ct state established,related return"]
            + all.map { c in
                let r = c.rule
                let match = conditions(
                    ethertype: r.ethertype, protocol: r.protocol,
                    source: direction == .ingress ? r.remote : nil,
                    destination: direction == .egress ? r.remote : nil,
                    sourcePorts: nil, destinationPorts: r.ports)
                return match + verdict(r.action) + " comment " + quoted("security group \(c.group) \(direction) rule \(r.priority)")
            }
    }

    /// Stateless, first match by priority.
    static func aclRules(_ acl: NetworkAcl, _ rules: [AclRule]) -> [String] {
        rules.enumerated().sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }.map { e in
            let r = e.element
            return conditions(
                ethertype: r.ethertype, protocol: r.protocol, source: r.source, destination: r.destination,
                sourcePorts: r.sourcePorts, destinationPorts: r.destinationPorts)
                + verdict(r.action) + " comment " + quoted("network ACL \(acl.id) rule \(r.priority)")
        }
    }

    static func verdict(_ a: AllowDeny) -> String { a == .allow ? "return" : "drop" }

    /// The match part of a rule, ending with a space. As the oracle: a missing CIDR
    /// or /0 matches every address of the ethertype; `all` ports need nothing.
    static func conditions(
        ethertype: Ethertype, protocol proto: ProtocolSpec, source: CIDR?, destination: CIDR?,
        sourcePorts: PortRange?, destinationPorts: PortRange?
    ) -> String {
        var m = "meta nfproto \(ethertype.rawValue) "
        // meta l4proto: the transport protocol after IPv6 extension headers (SPEC §4).
        if case .number(let n) = proto { m += "meta l4proto \(n) " }
        let family = ethertype == .ipv4 ? "ip" : "ip6"
        if let source, source.prefixLength > 0 { m += "\(family) saddr \(source) " }
        if let destination, destination.prefixLength > 0 { m += "\(family) daddr \(destination) " }
        if let sp = sourcePorts, !sp.isAll { m += "th sport \(ports(sp)) " }
        if let dp = destinationPorts, !dp.isAll { m += "th dport \(ports(dp)) " }
        return m
    }

    static func ports(_ r: PortRange) -> String { r.lower == r.upper ? "\(r.lower)" : "\(r.lower)-\(r.upper)" }

    /// A double-quoted nft string. Interface names and ids never hold quotes or
    /// backslashes (validation), but a quote would end the string: drop them.
    static func quoted(_ s: String) -> String {
        "\"" + s.filter { $0 != "\"" && $0 != "\\" && $0 != "\n" } + "\""
    }
}
