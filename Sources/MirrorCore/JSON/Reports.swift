/// The output forms of `validate` and of the offline `explain` text. A decision's
/// JSON is its Codable form (Decision.swift), the one the agent answers with.
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

    /// Human form: the decision line, then the sessions tried.
    public static func decisionText(_ d: Decision, packet: PacketDescription, source: String, direction: Direction) -> String {
        var lines = ["\(direction) \(packet) on source \(source)", d.explanation]
        if !d.tried.isEmpty { lines.append("sessions tried: " + d.tried.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }
}
