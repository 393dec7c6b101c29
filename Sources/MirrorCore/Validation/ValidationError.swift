/// One problem in a document: the JSON path of the offending field
/// (`sessions[2].sources[10]`, `filters[0].inbound[3].source`) and a message that
/// says what is allowed. Printed as `path: message`.
public struct ValidationError: Hashable, Sendable, Codable, CustomStringConvertible, Error {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// Every problem found in a document (validation never stops at the first one).
public struct ValidationErrors: Error, Hashable, Sendable, Codable, CustomStringConvertible {
    public var errors: [ValidationError]

    public init(_ errors: [ValidationError]) { self.errors = errors }

    public var description: String { errors.map(\.description).joined(separator: "\n") }

    /// The paths, in report order (handy in tests).
    public var paths: [String] { errors.map(\.path) }
}

/// Levenshtein distance, for did-you-mean hints on unknown fields and values.
enum EditDistance {
    static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a.lowercased().unicodeScalars), y = Array(b.lowercased().unicodeScalars)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var prev = Array(0...y.count)
        var cur = Array(repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            cur[0] = i
            for j in 1...y.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[y.count]
    }

    /// The closest candidate within a distance that still looks like a typo.
    static func suggestion(for word: String, among candidates: [String]) -> String? {
        guard word.count <= 256 else { return nil }
        let limit = max(2, word.count / 3)
        let scored = candidates.map { ($0, distance(word, $0)) }.filter { $0.1 <= limit }
        return scored.min { $0.1 < $1.1 }?.0
    }
}
