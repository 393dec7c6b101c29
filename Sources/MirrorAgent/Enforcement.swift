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
                body.append(chain("\(name)_sg_egress", groupRules(sourceGroups, .egress),
                                  comment: "source \(src.id): security groups \(sourceGroups.map(\.id).joined(separator: ",")) egress"))
                body.append(chain("\(name)_sg_ingress", groupRules(sourceGroups, .ingress),
                                  comment: "source \(src.id): security groups \(sourceGroups.map(\.id).joined(separator: ",")) ingress"))
            }
            if let acl {
                body.append(chain("\(name)_acl_outbound", aclRules(acl, acl.outbound), comment: "source \(src.id): network ACL \(acl.id) outbound"))
                body.append(chain("\(name)_acl_inbound", aclRules(acl, acl.inbound), comment: "source \(src.id): network ACL \(acl.id) inbound"))
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
        "\tchain \(name) {\n\t\t# \(comment)\n" + rules.map { "\t\t\($0)\n" }.joined() + "\t\tdrop comment \"no rule matched: default deny\"\n\t}\n"
    }

    /// SPEC §5: across the groups by priority, then group order; stateful.
    static func groupRules(_ groups: [SecurityGroup], _ direction: SecurityGroupDirection) -> [String] {
        var all: [(rule: SecurityGroupRule, group: String, gi: Int, ri: Int)] = []
        for (gi, g) in groups.enumerated() {
            for (ri, r) in g.rules.enumerated() where r.direction == direction { all.append((r, g.id, gi, ri)) }
        }
        all.sort { ($0.rule.priority, $0.gi, $0.ri) < ($1.rule.priority, $1.gi, $1.ri) }
        return ["ct state established,related return"] + all.map { c in
            let r = c.rule
            let match = conditions(ethertype: r.ethertype, protocol: r.protocol,
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
            return conditions(ethertype: r.ethertype, protocol: r.protocol, source: r.source, destination: r.destination,
                              sourcePorts: r.sourcePorts, destinationPorts: r.destinationPorts)
                + verdict(r.action) + " comment " + quoted("network ACL \(acl.id) rule \(r.priority)")
        }
    }

    static func verdict(_ a: AllowDeny) -> String { a == .allow ? "return" : "drop" }

    /// The match part of a rule, ending with a space. As the oracle: a missing CIDR
    /// or /0 matches every address of the ethertype; `all` ports need nothing.
    static func conditions(ethertype: Ethertype, protocol proto: ProtocolSpec, source: CIDR?, destination: CIDR?,
                           sourcePorts: PortRange?, destinationPorts: PortRange?) -> String {
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

/// Applies `EnforcementRenderer`'s text with the nft CLI (Debian `nftables`).
/// Why the CLI: `nft -f` is the one public interface that takes a whole rule set
/// as one atomic transaction; libnftables would need another system-library
/// target for the same text, and raw nf_tables netlink (expression encoding for
/// every match) is a large amount of code to get exactly right. It runs once
/// per apply, not per packet.
public struct Enforcement: Sendable {
    /// The nft binary (found in the usual places), or a full command line that ends
    /// with nft (tests: `ip netns exec NAME nft`).
    public var command: [String]

    public init(command: [String]? = nil) {
        self.command = command ?? [["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        } ?? "/usr/sbin/nft"]
    }

    var installed: Bool { command.count > 1 || FileManager.default.isExecutableFile(atPath: command[0]) }

    public struct Failure: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Whether any source asks for enforcement.
    public static func wanted(_ doc: Document) -> Bool { doc.sources.contains { $0.enforce == true } }

    /// `nft -c`: the rule set parses and the kernel would take it. Nothing changes.
    public func check(_ doc: Document) throws {
        guard Self.wanted(doc) else { return }
        try run(["-c", "-f", "-"], input: EnforcementRenderer.render(doc), what: "check the enforcement rules")
    }

    /// Replaces the agent's table with the rules of `doc` in one transaction (or
    /// removes it when no source enforces). Without enforced sources nft's
    /// failures are reported on standard error, not thrown.
    public func apply(_ doc: Document) throws {
        guard Self.wanted(doc) else {
            // Nothing to enforce: a table left by an earlier apply must go, but a host
            // whose kernel or nft cannot do nftables at all still mirrors. Say so.
            do { try remove() } catch {
                FileHandle.standardError.write(Data("mirror-agent: \(error)\n".utf8))
            }
            return
        }
        try run(["-f", "-"], input: EnforcementRenderer.render(doc), what: "apply the enforcement rules")
    }

    /// Removes the agent's table (cleanup); fine when it does not exist or nft is
    /// not installed (then the agent never made one).
    public func remove() throws {
        guard installed else { return }
        try run(["-f", "-"], input: EnforcementRenderer.render(Document()), what: "remove table inet \(EnforcementRenderer.table)")
    }

    func run(_ args: [String], input: String, what: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: command[0])
        p.arguments = Array(command.dropFirst()) + args
        let stdin = Pipe(), stderr = Pipe()
        p.standardInput = stdin
        p.standardError = stderr
        p.standardOutput = FileHandle.nullDevice
        // Not waitUntilExit(): on Linux it spins a run loop on the calling thread,
        // and every pool thread that ever waited keeps one (an epoll, an eventfd and
        // a timerfd). The handler runs on Foundation's one process-monitor thread.
        let exited = DispatchSemaphore(value: 0)
        p.terminationHandler = { _ in exited.signal() }
        do { try p.run() } catch {
            throw Failure(message: "\(what): cannot run \(command.joined(separator: " ")) (install nftables): \(error.localizedDescription)")
        }
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try? stdin.fileHandleForWriting.close()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        try? stderr.fileHandleForReading.close()
        exited.wait()
        p.terminationHandler = nil  // else the Process, its pipes and their fds stay (e2e security_groups)
        guard p.terminationStatus == 0 else {
            let text = String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw Failure(message: "\(what): nft exited with \(p.terminationStatus): \(text)")
        }
    }
}
