/// The reference implementation of the matching semantics (SPEC §4). The kernel
/// classifier is proven equal to it by the differential tests; `explain` prints it.
/// It is deliberately written for clarity, not speed: straight loops over the model.
public enum Oracle {
    /// The decision for one packet seen on `source` in `direction`, under `document`
    /// (a validated document). Security groups and network ACLs are applied first
    /// (SPEC §5) when the source has them, see `SecurityPolicy`.
    public static func decide(
        document: Document, source: String, direction: Direction,
        packet: PacketDescription,
        connection: ConnectionState = .new
    ) -> Decision {
        guard packet.ethertype != nil else {
            return Decision(
                mirrored: false, session: nil, rule: nil, reason: .notIP, tried: [],
                explanation: "not mirrored: not an IP packet (ARP and other non-IP frames match no rule)")
        }
        if let src = document.sources.first(where: { $0.id == source }),
            let s = SecurityPolicy.suppression(
                document: document, source: src, direction: direction,
                packet: packet, connection: connection)
        {
            let reason: Decision.Reason = s.kind == "securityGroup" ? .suppressedBySecurityGroup : .suppressedByAcl
            let what = s.kind == "securityGroup" ? "security group" : "network ACL"
            let which = (s.id.map { " \($0)" } ?? "") + (s.rulePriority.map { " rule \($0)" } ?? " (no rule matched: default deny)")
            return Decision(
                mirrored: false, session: nil, rule: nil, reason: reason, tried: [], suppression: s,
                explanation: "not mirrored: dropped by \(what)\(which)")
        }

        let sessions = sessionsInOrder(document: document, source: source)
        let filters = Dictionary(document.filters.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var tried: [String] = []
        // The first disabled session that would have decided, to explain why nothing was mirrored.
        var disabledWouldDecide: (Session, Rule)?
        for session in sessions {
            guard let filter = filters[session.filter] else { continue }
            let rule = firstMatch(filter.rules(direction), packet)
            if !session.isEnabled {
                if let rule, disabledWouldDecide == nil { disabledWouldDecide = (session, rule) }
                continue
            }
            tried.append(session.id)
            guard let rule else { continue }
            let ref = Decision.RuleRef(filter: filter.id, direction: direction, priority: rule.priority, action: rule.action)
            // SPEC §4: the first matching rule decides and evaluation stops across sessions.
            if rule.action == .accept {
                return Decision(
                    mirrored: true, session: session.id, rule: ref, reason: .accepted, tried: tried,
                    explanation: "mirrored by session \(session.id) via \(direction) rule \(rule.priority) of filter \(filter.id) (accept)")
            }
            return Decision(
                mirrored: false, session: session.id, rule: ref, reason: .rejectedByRule, tried: tried,
                explanation: "not mirrored: \(direction) rule \(rule.priority) of filter \(filter.id) in session \(session.id) rejects it")
        }
        if let (session, rule) = disabledWouldDecide, rule.action == .accept {
            let ref = Decision.RuleRef(filter: session.filter, direction: direction, priority: rule.priority, action: rule.action)
            return Decision(
                mirrored: false, session: session.id, rule: ref, reason: .sessionDisabled, tried: tried,
                explanation: "not mirrored: session \(session.id) would mirror it via \(direction) rule \(rule.priority) but is disabled")
        }
        let list = tried.isEmpty ? "no enabled session on this source" : "tried " + tried.joined(separator: ", ")
        return Decision(
            mirrored: false, session: nil, rule: nil, reason: .noMatch, tried: tried,
            explanation: "not mirrored: no rule matched (\(list))")
    }

    /// The sessions that include `source`, in ascending priority (ties, which
    /// validation refuses, fall back to document order).
    public static func sessionsInOrder(document: Document, source: String) -> [Session] {
        document.sessions.enumerated()
            .filter { $0.element.sources.contains(source) }
            .sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }
            .map(\.element)
    }

    /// `sessionsInOrder` for every source at once, in one pass (per source it would
    /// be quadratic: 20,000 sessions × 6,667 sources).
    public static func sessionsBySource(document: Document) -> [String: [Session]] {
        var out: [String: [(Session, Int)]] = [:]
        for (offset, s) in document.sessions.enumerated() {
            for src in Set(s.sources) { out[src, default: []].append((s, offset)) }
        }
        return out.mapValues { $0.sorted { ($0.0.priority, $0.1) < ($1.0.priority, $1.1) }.map(\.0) }
    }

    /// The first rule (ascending priority) whose conditions all hold.
    public static func firstMatch(_ rules: [Rule], _ p: PacketDescription) -> Rule? {
        rules.enumerated()
            .sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }
            .first { ruleMatches($0.element, p) }?.element
    }

    public static func ruleMatches(_ r: Rule, _ p: PacketDescription) -> Bool {
        conditionsHold(
            ethertype: r.ethertype, protocol: r.protocol, source: r.source, destination: r.destination,
            sourcePorts: r.sourcePorts, destinationPorts: r.destinationPorts, packet: p)
    }

    /// Shared by filter rules, ACL rules and security-group rules.
    public static func conditionsHold(
        ethertype: Ethertype, protocol proto: ProtocolSpec, source: CIDR?,
        destination: CIDR?, sourcePorts: PortRange?, destinationPorts: PortRange?,
        packet p: PacketDescription
    ) -> Bool {
        guard p.ethertype == ethertype, proto.matches(p.protocol) else { return false }
        guard addressMatches(source, p.source), addressMatches(destination, p.destination) else { return false }
        // SPEC §4: a later fragment carries no ports, whatever the description says.
        let sourcePort = p.laterFragment ? nil : p.sourcePort
        let destinationPort = p.laterFragment ? nil : p.destinationPort
        return portMatches(sourcePorts, sourcePort) && portMatches(destinationPorts, destinationPort)
    }

    static func addressMatches(_ cidr: CIDR?, _ a: IPAddress?) -> Bool {
        guard let cidr, cidr.prefixLength > 0 else { return true }
        guard let a else { return false }
        return cidr.contains(a)
    }

    /// A range other than `all` needs a visible port (SPEC §4: later fragments and
    /// truncated transport headers only match port-less rules).
    static func portMatches(_ range: PortRange?, _ port: UInt16?) -> Bool {
        guard let range, !range.isAll else { return true }
        guard let port else { return false }
        return range.contains(port)
    }
}

/// Whether a packet belongs to a connection the security group already allowed
/// (SPEC §5: security groups are stateful). The oracle cannot see conntrack; callers say.
public enum ConnectionState: String, Sendable, Codable, CaseIterable {
    case new
    /// A reply (or later packet) of a connection whose first packet was allowed.
    case established
}
