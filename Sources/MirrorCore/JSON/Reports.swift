/// The output forms of `validate` and `explain`, shared by agentctl (offline) and the
/// agent (its control socket answers with the same JSON), so both print the same thing.
public enum Reports {
    // MARK: validate

    /// `{"valid": bool, "errors": [{"path": ..., "message": ...}]}`
    public static func validationJSON(_ errors: [ValidationError]) -> JSONValue {
        .object([
            ("valid", .bool(errors.isEmpty)),
            ("errors", .array(errors.map { .object([("path", .string($0.path)), ("message", .string($0.message))]) })),
        ])
    }

    /// One `path: message` line per error, or a one-line summary of a valid document.
    public static func validationText(_ result: Result<Document, ValidationErrors>, name: String) -> String {
        switch result {
        case .success(let d):
            return "\(name): valid (\(d.filters.count) filters, \(d.targets.count) targets, \(d.sources.count) sources, "
                + "\(d.sessions.count) sessions, \(d.securityGroups.count) security groups, \(d.networkAcls.count) network ACLs)"
        case .failure(let e):
            let n = e.errors.count
            return "\(name): invalid, \(n) error\(n == 1 ? "" : "s")\n" + e.errors.map { "  \($0)" }.joined(separator: "\n")
        }
    }

    // MARK: explain

    /// The explain JSON: `mirrored`, `session` (id or null), `rule` (null or
    /// `{filter, direction, priority, action}`), `reason`, `tried`, plus `suppression`
    /// when a security group or ACL dropped the packet, and the human `explanation`.
    public static func decisionJSON(_ d: Decision) -> JSONValue {
        var m: [(key: String, value: JSONValue)] = [
            ("mirrored", .bool(d.mirrored)),
            ("session", d.session.map(JSONValue.string) ?? .null),
            ("rule", d.rule.map { r in
                .object([("filter", .string(r.filter)), ("direction", .string(r.direction.rawValue)),
                         ("priority", .int(Int64(r.priority))), ("action", .string(r.action.rawValue))])
            } ?? .null),
            ("reason", .string(d.reason.rawValue)),
            ("tried", .array(d.tried.map(JSONValue.string))),
        ]
        if let s = d.suppression {
            m.append(("suppression", .object([("kind", .string(s.kind)), ("id", s.id.map(JSONValue.string) ?? .null),
                                              ("rulePriority", s.rulePriority.map { .int(Int64($0)) } ?? .null)])))
        }
        m.append(("explanation", .string(d.explanation)))
        return .object(m)
    }

    /// Human form: the decision line, then the sessions tried.
    public static func decisionText(_ d: Decision, packet: PacketDescription, source: String, direction: Direction) -> String {
        var lines = ["\(direction) \(packet) on source \(source)", d.explanation]
        if !d.tried.isEmpty { lines.append("sessions tried: " + d.tried.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }
}
