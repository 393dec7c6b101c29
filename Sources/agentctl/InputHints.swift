import MirrorAPI
import MirrorCore

/// What a file that is not what the command takes probably is, said in the error.
enum InputHints {
    /// For bytes that did not parse as JSON: a hint when they read like YAML (a
    /// `---` or `%YAML` line, `key:` or `- item` on the first line that says anything).
    static func yaml(_ bytes: [UInt8]) -> String? {
        let text = String(decoding: bytes.prefix(4096), as: UTF8.self)
        guard
            let line = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
                .map({ $0.drop(while: { $0 == " " || $0 == "\t" }) })
                .first(where: { !$0.isEmpty && !$0.hasPrefix("#") })
        else { return nil }
        let yaml: Bool
        if line.hasPrefix("---") || line.hasPrefix("%YAML") || line == "-" || line.hasPrefix("- ") {
            yaml = true
        } else if let colon = line.firstIndex(of: ":") {
            // `key:` then the end or a space; a JSON text starts with `{`, `[`, `"` or a value instead.
            let key = line[..<colon]
            let after = line[line.index(after: colon)...]
            yaml =
                !key.isEmpty && key.allSatisfy { $0.isLetter || $0.isNumber || "_-.\"' ".contains($0) }
                && !"{[".contains(key.first!) && (after.isEmpty || after.first == " " || after.first == "\t")
        } else {
            yaml = false
        }
        return yaml ? "this looks like YAML: agentctl reads JSON only (convert it first)" : nil
    }

    /// The document arrays a `create`/`update` file holds when it is a whole
    /// document (every member one of them, and no `id`), else nil.
    static func documentKeys(_ value: JSONValue) -> [String]? {
        guard let members = value.members, !members.isEmpty, value["id"] == nil else { return nil }
        let keys = Set(ObjectKind.allCases.map(\.documentKey))
        return members.allSatisfy({ keys.contains($0.key) }) ? members.map(\.key) : nil
    }

    /// An `apply` file that is one object: it has an `id`, which no document has
    /// (the agent would refuse it as an unknown field; this says what to do instead).
    static func isOneObject(_ value: JSONValue) -> Bool {
        value.isObject && value["id"] != nil
    }
}
