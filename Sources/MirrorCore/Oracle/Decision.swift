/// The oracle's answer for one packet on one source and direction (SPEC §4, §5).
/// Its Codable form is its only JSON form: the agent's explain answer carries it
/// and `agentctl explain -o json` prints it, offline or from the agent.
public struct Decision: Hashable, Sendable, Codable {
    public enum Reason: String, Codable, Sendable, CaseIterable {
        case accepted
        case rejectedByRule = "rejected_by_rule"
        case noMatch = "no_match"
        case sessionDisabled = "session_disabled"
        case suppressedBySecurityGroup = "suppressed_by_security_group"
        case suppressedByAcl = "suppressed_by_acl"
        case notIP = "not_ip"
    }

    /// The rule that decided: its filter direction, priority and action.
    public struct RuleRef: Hashable, Sendable, Codable {
        public var filter: String
        public var direction: Direction
        public var priority: Int
        public var action: RuleAction
        public init(filter: String, direction: Direction, priority: Int, action: RuleAction) {
            self.filter = filter; self.direction = direction; self.priority = priority; self.action = action
        }
    }

    /// For suppression (SPEC §5): which security group or ACL, and which rule
    /// (nil rule = no rule matched, the default deny).
    public struct Suppression: Hashable, Sendable, Codable {
        public var kind: String  // "securityGroup" | "networkAcl"
        public var id: String?
        public var rulePriority: Int?
        public init(kind: String, id: String?, rulePriority: Int?) {
            self.kind = kind; self.id = id; self.rulePriority = rulePriority
        }

        enum CodingKeys: String, CodingKey { case kind, id, rulePriority }

        // Always present, null when absent, like the decision's `session` and `rule`:
        // "no rule" (the default deny) is an answer, not a missing field.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(kind, forKey: .kind)
            try c.encode(id, forKey: .id)
            try c.encode(rulePriority, forKey: .rulePriority)
        }
    }

    public var mirrored: Bool
    /// The deciding session (accepted or rejected by its rule), else nil.
    public var session: String?
    public var rule: RuleRef?
    public var reason: Reason
    /// Session ids evaluated, in order.
    public var tried: [String]
    public var suppression: Suppression?
    /// One line a person can read.
    public var explanation: String

    public init(
        mirrored: Bool, session: String?, rule: RuleRef?, reason: Reason, tried: [String],
        suppression: Suppression? = nil, explanation: String
    ) {
        self.mirrored = mirrored; self.session = session; self.rule = rule; self.reason = reason
        self.tried = tried; self.suppression = suppression; self.explanation = explanation
    }

    enum CodingKeys: String, CodingKey { case mirrored, session, rule, reason, tried, suppression, explanation }

    // `session` and `rule` are always present in JSON (null when absent), as the
    // explain interface promises.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(mirrored, forKey: .mirrored)
        try c.encode(session, forKey: .session)
        try c.encode(rule, forKey: .rule)
        try c.encode(reason, forKey: .reason)
        try c.encode(tried, forKey: .tried)
        try c.encodeIfPresent(suppression, forKey: .suppression)
        try c.encode(explanation, forKey: .explanation)
    }
}
