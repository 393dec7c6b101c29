/// The name of a host in a region document (SPEC §9: a source's `host`, and the
/// agent's `--host`).
///
/// The rule is the RFC 1123 subdomain a Kubernetes node name must be: 1–253
/// characters, dot-separated labels of 1–63 lowercase letters, digits and `-`, each
/// starting and ending with a letter or digit. So a DaemonSet can pass `spec.nodeName`
/// as `--host` unchanged, the name is safe inside an etcd key (no `/`), and two
/// spellings of one host (`HV1`, `hv1`) cannot render two documents.
public enum HostName {
    public static let maxLength = 253
    public static let maxLabelLength = 63

    public static let rule =
        "a host name is 1–253 characters: dot-separated labels of 1–63 lowercase letters, digits and '-', each starting and ending with a letter or digit (RFC 1123, like a Kubernetes node name)"

    /// Why `name` is not a host name, or nil when it is one.
    public static func problem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "empty: \(rule)" }
        if bytes.count > maxLength { return "\(bytes.count) characters long: \(rule)" }
        if let bad = name.unicodeScalars.first(where: { !isAllowed($0) }) {
            var msg = "\"\(name)\" contains \"\(Character(bad))\": \(rule)"
            let lower = name.lowercased()
            if lower != name, problem(lower) == nil { msg += "; did you mean \"\(lower)\"?" }
            return msg
        }
        for label in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            if label.isEmpty { return "\"\(name)\" has an empty label: \(rule)" }
            if label.count > maxLabelLength { return "\"\(name)\" has a label of \(label.count) characters: \(rule)" }
            if label.first == UInt8(ascii: "-") || label.last == UInt8(ascii: "-") {
                return "\"\(name)\" has a label that starts or ends with '-': \(rule)"
            }
        }
        return nil
    }

    public static func isValid(_ name: String) -> Bool { problem(name) == nil }

    static func isAllowed(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("0"..."9").contains(c) || c == "-" || c == "."
    }
}
