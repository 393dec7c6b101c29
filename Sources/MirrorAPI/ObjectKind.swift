/// The object kinds of SPEC §2/§5 as they appear in URLs and on the agentctl command
/// line (`security-groups`), with the document's array name (`securityGroups`).
public enum ObjectKind: String, CaseIterable, Sendable, Codable {
    case sessions
    case filters
    case targets
    case sources
    case securityGroups = "security-groups"
    case networkAcls = "network-acls"

    /// The key of this kind's array in the declarative document (SPEC §7).
    public var documentKey: String {
        switch self {
        case .sessions: return "sessions"
        case .filters: return "filters"
        case .targets: return "targets"
        case .sources: return "sources"
        case .securityGroups: return "securityGroups"
        case .networkAcls: return "networkAcls"
        }
    }

    /// Singular noun for messages ("session s1 not found").
    public var singular: String {
        switch self {
        case .sessions: return "session"
        case .filters: return "filter"
        case .targets: return "target"
        case .sources: return "source"
        case .securityGroups: return "security group"
        case .networkAcls: return "network ACL"
        }
    }

    /// Plural noun for messages ("used by sessions s1, s2").
    public var plural: String {
        switch self {
        case .securityGroups: return "security groups"
        case .networkAcls: return "network ACLs"
        default: return rawValue
        }
    }

    /// Accepts the URL form, the document form and the singular (`session`, `security-group`).
    public init?(name: String) {
        let n = name.lowercased()
        for k in ObjectKind.allCases {
            if n == k.rawValue || n == k.documentKey.lowercased() || n + "s" == k.rawValue
                || n + "s" == k.documentKey.lowercased()
            {
                self = k; return
            }
        }
        return nil
    }

    /// Document order: the order `apply` lists kinds in.
    public static let documentOrder: [ObjectKind] = [.filters, .targets, .sources, .sessions, .securityGroups, .networkAcls]
}
