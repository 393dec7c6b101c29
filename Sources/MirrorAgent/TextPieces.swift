/// Text made in pieces of about `pieceBytes` (a piece ends after the item that reaches
/// it), each made when it is taken: the metrics exposition (68 MB at the quotas) and
/// GET /v1/stats (47 MB) are sent piece by piece instead of being held whole.
struct TextPieces: Sequence, IteratorProtocol, Sendable {
    /// `count` items, item i written by `write(i, &text)`.
    struct Part: Sendable {
        var count: Int
        var write: @Sendable (Int, inout String) -> Void
    }
    private let parts: [Part]
    private let pieceBytes: Int
    private var part = 0, item = 0

    init(_ parts: [Part], pieceBytes: Int) {
        self.parts = parts
        self.pieceBytes = Swift.max(1, pieceBytes)
    }

    mutating func next() -> String? {
        guard part < parts.count else { return nil }
        var text = ""
        while part < parts.count && text.utf8.count < pieceBytes {
            if item < parts[part].count { parts[part].write(item, &text) }
            item += 1
            if item >= parts[part].count { part += 1; item = 0 }
        }
        return text
    }
}
