import MirrorAPI
import MirrorCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An apply that would stop all mirroring is asked for `--force` when someone sits
/// at a terminal: a document without sessions is more often the wrong file than
/// the wish to mirror nothing. Scripts (standard input not a terminal) are not
/// asked, so they keep working as before.
enum SessionGuard {
    /// The document has no sessions (none given, or an empty list).
    static func removesEverySession(_ document: JSONValue) -> Bool {
        guard let sessions = document["sessions"] else { return true }
        return sessions.arrayValue?.isEmpty == true
    }

    static func interactive() -> Bool { isatty(STDIN_FILENO) == 1 }

    /// Why the apply is refused, or nil to go ahead. `removedSessions`: the sessions
    /// in force that the document would remove (its dry run).
    static func refusal(file: String, document: JSONValue, removedSessions: [String], force: Bool, interactive: Bool) -> String? {
        guard !force, interactive, removesEverySession(document), !removedSessions.isEmpty else { return nil }
        let n = removedSessions.count
        let named = n > 5 ? removedSessions.prefix(5).joined(separator: ", ") + ", ..." : removedSessions.joined(separator: ", ")
        return "\(file) removes every session (\(n) in force: \(named)), which stops all mirroring; nothing was applied. "
            + "Run again with --force to apply it."
    }
}

/// The text of `apply --dry-run`: one line per object the document would add,
/// change or remove, grouped by what happens, kinds in document order.
enum PlanText {
    static func render(_ plan: ApplyPlan, file: String) -> String {
        var lines = ["dry run of \(file) against generation \(plan.generation); nothing was applied"]
        guard plan.changed else {
            lines[0] += "\nno changes: the document is the policy in force"
            return lines.joined(separator: "\n")
        }
        var counts: [String] = []
        for (verb, list) in [("add", \ApplyPlan.Changes.added), ("change", \.changed), ("remove", \.removed)] {
            var n = 0
            for kind in ObjectKind.documentOrder {
                for id in plan[kind][keyPath: list] {
                    lines.append("  \(verb.padding(6))  \(kind.singular) \(id)")
                    n += 1
                }
            }
            counts.append("\(verb) \(n)")
        }
        lines.append("would " + counts.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}

private extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
