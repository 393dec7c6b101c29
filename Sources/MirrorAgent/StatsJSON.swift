import MirrorAPI
import MirrorCore

/// GET /v1/stats as JSON text, in pieces. At the quotas the answer holds 400,000 rules
/// (47 MB of JSON): JSONEncoder built it as a tree first, and the agent's RSS went from
/// 42 to 372 MiB for every `agentctl stats`. This writes the same JSON (the fields of
/// the Codable types, keys sorted, as JSONEncoder with `.sortedKeys` wrote them) piece
/// by piece, straight from the counters' view of the rules; the control server sends
/// each piece once the one before it is in the socket.
enum StatsJSON {
    /// Pieces of about `pieceBytes` (a piece ends after the value that crosses it).
    static func pieces(_ st: StatsResponse, rules: MetricsSnapshot.RuleSeries, pieceBytes: Int = 256 * 1024) -> TextPieces {
        // The document as a list of parts, each writing item i of a list.
        var parts: [TextPieces.Part] = []
        func text(_ s: String) { parts.append(.init(count: 1) { _, o in o += s }) }
        func list<C: RandomAccessCollection & Sendable>(
            _ key: String, _ c: C, last: Bool = false,
            _ write: @escaping @Sendable (C.Element, inout String) -> Void
        )
        where C.Index == Int {
            text("\"\(key)\":[")
            parts.append(
                .init(count: c.count) { i, o in
                    if i > 0 { o += "," }
                    write(c[c.startIndex + i], &o)
                })
            text(last ? "]" : "],")
        }
        text("{\"countersAvailable\":\(st.countersAvailable),\"datapath\":")
        parts.append(.init(count: 1) { _, o in JSONValue.writeString(st.datapath, to: &o) })
        text(",\"generation\":\(st.generation),\"mirrorDeviceForeignDropped\":\(st.mirrorDeviceForeignDropped),")
        list("rules", rules) { r, o in
            o += "{\"action\":"; JSONValue.writeString(r.action.rawValue, to: &o)
            o += ",\"direction\":"; JSONValue.writeString(r.direction.rawValue, to: &o)
            o += ",\"filter\":"; JSONValue.writeString(r.filter, to: &o)
            o += ",\"hits\":\(r.hits),\"priority\":\(r.priority),\"session\":"; JSONValue.writeString(r.session, to: &o)
            o += "}"
        }
        text((st.securityFlows.map { "\"securityFlows\":\($0)," } ?? "") + "\"segmenterForeignDropped\":\(st.segmenterForeignDropped),")
        list("sessions", st.sessions) { s, o in
            o += "{\"bytes\":\(s.bytes),\"copiesSegmented\":\(s.copiesSegmented),\"copiesSent\":\(s.copiesSent)"
            o += ",\"copiesSentBytes\":\(s.copiesSentBytes),\"copiesSentDevice\":\(s.copiesSentDevice)"
            o += ",\"copiesSentDirect\":\(s.copiesSentDirect)"
            o += ",\"copiesTruncatedGSO\":\(s.copiesTruncatedGSO),\"dropped\":"; object(s.dropped, &o)
            o += ",\"packets\":\(s.packets),\"session\":"; JSONValue.writeString(s.session, to: &o)
            o += ",\"skipped\":"; object(s.skipped, &o)
            o += ",\"truncated\":"; object(s.truncated, &o)
            o += "}"
        }
        list("sources", st.sources) { s, o in
            o += "{\"direction\":"; JSONValue.writeString(s.direction.rawValue, to: &o)
            if let e = s.established { o += ",\"established\":\(e)" }
            o += ",\"interface\":"; JSONValue.writeString(s.interface, to: &o)
            o += ",\"mirrored\":\(s.mirrored),\"notMirrored\":"; object(s.notMirrored, &o)
            o += ",\"seen\":\(s.seen),\"source\":"; JSONValue.writeString(s.source, to: &o)
            o += ",\"state\":"; JSONValue.writeString(s.state.rawValue, to: &o)
            o += "}"
        }
        // A Double's description is its shortest exact decimal, a valid JSON number for
        // a finite time; a whole number without ".0", as JSONEncoder writes it.
        var time = st.time.isFinite ? st.time.description : "0"
        if time.hasSuffix(".0") { time.removeLast(2) }
        text("\"time\":\(time)}")

        return TextPieces(parts, pieceBytes: pieceBytes)
    }

    /// The whole text (tests, small answers).
    static func text(_ st: StatsResponse, rules: MetricsSnapshot.RuleSeries) -> String {
        pieces(st, rules: rules).joined()
    }

    private static func object(_ d: [String: UInt64], _ o: inout String) {
        o += "{"
        for (i, k) in d.keys.sorted().enumerated() {
            if i > 0 { o += "," }
            JSONValue.writeString(k, to: &o)
            o += ":\(d[k]!)"
        }
        o += "}"
    }
}

/// What `GET /v1/stats?session=ID&source=ID` keeps: the named sessions and their rules,
/// the named sources. A kind that is not named is left out, so that `agentctl stats
/// --session s1` on a full agent shows one session, not 13,000 source rows too.
struct StatsFilter: Equatable {
    var sessions: Set<String> = []
    var sources: Set<String> = []

    func apply(_ st: StatsResponse, _ rules: MetricsSnapshot.RuleSeries) -> (StatsResponse, MetricsSnapshot.RuleSeries) {
        var out = st
        out.sessions = st.sessions.filter { sessions.contains($0.session) }
        out.sources = st.sources.filter { sources.contains($0.source) }
        out.rules = []
        return (out, MetricsSnapshot.RuleSeries(sessions.isEmpty ? [] : rules.filter { sessions.contains($0.session) }))
    }
}
