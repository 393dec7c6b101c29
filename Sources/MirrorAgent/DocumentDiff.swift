import MirrorAPI
import MirrorCore

/// What applying one document over another adds, changes and removes, by kind and
/// id (the dry run of `apply`). Objects are compared as validated, so a change of
/// spelling (member order, `"80"` for `80`) is no change.
enum DocumentDiff {
    /// `old`/`new` as the user wrote them; `oldVNIs`/`newVNIs` every session's
    /// effective VNI, so a session whose assigned VNI would move counts as changed.
    static func changes(from old: Document, to new: Document, oldVNIs: [String: Int?], newVNIs: [String: Int?])
        -> [ObjectKind: ApplyPlan.Changes]
    {
        struct SessionState: Hashable { var session: Session; var vni: Int? }
        return [
            .filters: diff(old.filters, new.filters, \.id),
            .targets: diff(old.targets, new.targets, \.id),
            .sources: diff(old.sources, new.sources, \.id),
            .sessions: diff(
                old.sessions.map { SessionState(session: $0, vni: oldVNIs[$0.id] ?? nil) },
                new.sessions.map { SessionState(session: $0, vni: newVNIs[$0.id] ?? nil) }, \.session.id),
            .securityGroups: diff(old.securityGroups, new.securityGroups, \.id),
            .networkAcls: diff(old.networkAcls, new.networkAcls, \.id),
        ]
    }

    static func diff<T: Hashable>(_ old: [T], _ new: [T], _ id: KeyPath<T, String>) -> ApplyPlan.Changes {
        // Ids are unique per kind in a valid document.
        let before = Dictionary(old.map { ($0[keyPath: id], $0) }, uniquingKeysWith: { a, _ in a })
        let after = Set(new.map { $0[keyPath: id] })
        var c = ApplyPlan.Changes()
        for item in new {
            let key = item[keyPath: id]
            if let was = before[key] { if was != item { c.changed.append(key) } } else { c.added.append(key) }
        }
        c.removed = old.map { $0[keyPath: id] }.filter { !after.contains($0) }
        return c
    }
}
