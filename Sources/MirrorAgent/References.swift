import MirrorAPI
import MirrorCore

/// Which objects of the policy in force refer to one object: a delete that would
/// leave them dangling is refused naming them, instead of validating a document
/// without the object and reporting its referrers' paths in a document the
/// operator never wrote.
enum References {
    struct Referrer: Hashable {
        var kind: ObjectKind
        var id: String
        /// The referring field, named by id (`sessions[id=s1].filter`).
        var path: String
    }

    /// Sessions refer to filters, targets and sources; sources to security groups and
    /// network ACLs (SPEC §2, §5). Nothing refers to a session.
    static func referrers(to kind: ObjectKind, _ id: String, in doc: Document) -> [Referrer] {
        func session(_ s: Session, _ field: String) -> Referrer {
            Referrer(kind: .sessions, id: s.id, path: ObjectPaths.path(.sessions, s.id) + "." + field)
        }
        func source(_ s: Source, _ field: String) -> Referrer {
            Referrer(kind: .sources, id: s.id, path: ObjectPaths.path(.sources, s.id) + "." + field)
        }
        switch kind {
        case .sessions:
            return []
        case .filters:
            return doc.sessions.filter { $0.filter == id }.map { session($0, "filter") }
        case .targets:
            return doc.sessions.filter { $0.target == id }.map { session($0, "target") }
        case .sources:
            return doc.sessions.compactMap { s in s.sources.firstIndex(of: id).map { session(s, "sources[\($0)]") } }
        case .securityGroups:
            return doc.sources.compactMap { s in (s.securityGroups ?? []).firstIndex(of: id).map { source(s, "securityGroups[\($0)]") } }
        case .networkAcls:
            return doc.sources.filter { $0.networkAcl == id }.map { source($0, "networkAcl") }
        }
    }

    /// "filter f1 is used by sessions s1, s2; delete or change them first", with one
    /// field error per referring field. 409: the request is fine, the state is not.
    static func deleteRefusal(_ kind: ObjectKind, _ id: String, _ referrers: [Referrer]) -> APIError {
        let byKind = ObjectKind.documentOrder.compactMap { k -> String? in
            let ids = referrers.filter { $0.kind == k }.map(\.id)
            guard !ids.isEmpty else { return nil }
            // At the quotas a filter has up to 1000 sessions: the message names a few, the errors all.
            let shown =
                ids.count > 10 ? ids.prefix(10).joined(separator: ", ") + " and \(ids.count - 10) more" : ids.joined(separator: ", ")
            return "\(ids.count == 1 ? k.singular : k.plural) \(shown)"
        }
        let them = referrers.count == 1 ? "it" : "them"
        return APIError(
            status: 409, "\(kind.singular) \(id) is used by \(byKind.joined(separator: " and ")); delete or change \(them) first",
            errors: referrers.map { FieldError(path: $0.path, message: "refers to \(kind.singular) \(id)") })
    }
}
