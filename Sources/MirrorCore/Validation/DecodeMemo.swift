/// Filters decoded by one parse, kept for the next (`DocumentParser.parse(json:memo:)`).
///
/// An agent in fleet mode parses its host's whole document on every change of its
/// share, and most of that document is unchanged: at the region quotas a host holds
/// 200 filters of up to 20 rules, and decoding them was 28 % of an apply's CPU
/// (`perf`, memory datapath). A filter's decoding depends on its JSON alone, not on
/// its position or the rest of the document (every cross-object check runs on the
/// model afterwards), so a filter whose JSON equals one decoded before without an
/// error decodes to the same value: that value is reused. Only the filters of the
/// latest parse are kept, so the memo is as large as one document's filters.
///
/// Not thread-safe: one owner (the agent's actor) parses with it at a time.
public final class DecodeMemo: @unchecked Sendable {
    private var previous: [JSONValue: Filter] = [:]
    private var current: [JSONValue: Filter] = [:]

    public init() {}

    /// How many filters the last parse reused, and how many it decoded.
    public private(set) var reused = 0
    public private(set) var decoded = 0
    private var reusing = 0
    private var decoding = 0

    func filter(_ v: JSONValue) -> Filter? {
        guard let f = previous[v] ?? current[v] else { return nil }
        current[v] = f
        reusing += 1
        return f
    }

    func keep(_ v: JSONValue, _ f: Filter) {
        current[v] = f
        decoding += 1
    }

    /// The parse is over: what it decoded is what the next one may reuse.
    func finish() {
        previous = current
        current = [:]
        reused = reusing
        decoded = decoding
        reusing = 0
        decoding = 0
    }
}
