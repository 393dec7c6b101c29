import Foundation
import MirrorAPI

/// Prometheus text exposition (format 0.0.4) of one `MetricsSnapshot`. Pure.
///
/// Every line is rendered here by hand, the BPF-derived ones because they must be:
/// the counters live in kernel maps and are read as absolute values at scrape time,
/// and swift-prometheus (2.4.1) counters can only be incremented, never set to an
/// absolute value (shared/NOTES.md); feeding it deltas would need a second copy of
/// every counter and background polling. The agent's own few metrics (one histogram,
/// a few gauges, process metrics) are rendered here too rather than pulling in
/// swift-prometheus for them: one renderer, byte-exact tests, and a lighter build on
/// the shared 2-core machine.
///
/// The families' names, types, help and label names are declared in MetricFamily.swift;
/// this file only says which values each sample carries.
public enum MetricsRenderer {
    public static let contentType = "text/plain; version=0.0.4"

    /// The whole exposition as one string (tests, small scrapes).
    public static func render(_ m: MetricsSnapshot) -> String {
        var text = ""
        for chunk in Chunks(m, chunkBytes: .max) { text += chunk }
        return text
    }

    /// The exposition in pieces of about `chunkBytes` (a piece ends after the line that
    /// reaches it), rendered as they are taken: at the quotas' 400,000 rule counters the
    /// text is about 68 MB, and the server sends it piece by piece instead of holding it.
    public struct Chunks: Sequence, IteratorProtocol, Sendable {
        /// A family's HELP and TYPE, then one call of `render` per item: a piece may end
        /// between two items.
        struct Part: Sendable {
            var family: MetricFamily
            var count = 1
            var render: @Sendable (Int, inout Output) -> Void

            /// As a part of the text: the header goes with item 0, also of an empty family.
            var piece: TextPieces.Part {
                let p = self
                return TextPieces.Part(count: Swift.max(p.count, 1)) { i, text in
                    var o = Output()
                    swap(&o.text, &text)
                    defer { swap(&o.text, &text) }
                    if i == 0 { o.header(p.family) }
                    if i < p.count { p.render(i, &o) }
                }
            }
        }
        private var pieces: TextPieces

        public init(_ m: MetricsSnapshot, chunkBytes: Int = 1 << 18) {
            pieces = TextPieces(MetricsRenderer.parts(m).map(\.piece), pieceBytes: chunkBytes)
        }

        public mutating func next() -> String? { pieces.next() }
    }

    /// What `render` writes, in order: the families of `MetricFamily.all`, each written
    /// from its declaration (name, type, help, label names).
    static func parts(_ m: MetricsSnapshot) -> [Chunks.Part] {
        typealias Part = Chunks.Part
        typealias F = MetricFamily
        let st = m.stats
        var parts: [Part] = []
        func family(_ f: MetricFamily, count: Int = 1, _ render: @escaping @Sendable (Int, inout Output) -> Void) {
            parts.append(Part(family: f, count: count, render: render))
        }

        if st.countersAvailable {
            let sessions = st.sessions, rules = m.rules, sources = st.sources
            family(F.sessionPackets, count: sessions.count) { i, o in
                o.sample(F.sessionPackets, [sessions[i].session], sessions[i].packets)
            }
            family(F.sessionBytes, count: sessions.count) { i, o in
                o.sample(F.sessionBytes, [sessions[i].session], sessions[i].bytes)
            }
            // One sample per session, labelled by it; by reason for the two with one.
            func perSession(_ f: MetricFamily, _ value: @escaping @Sendable (SessionStats) -> UInt64) {
                family(f, count: sessions.count) { i, o in o.sample(f, [sessions[i].session], value(sessions[i])) }
            }
            func perSessionByReason(_ f: MetricFamily, _ values: @escaping @Sendable (SessionStats) -> [String: UInt64]) {
                family(f, count: sessions.count) { i, o in
                    for (reason, v) in values(sessions[i]).sorted(by: { $0.key < $1.key }) {
                        o.sample(f, [sessions[i].session, reason], v)
                    }
                }
            }
            perSession(F.copiesSent) { $0.copiesSent }
            perSession(F.copiesSentDirect) { $0.copiesSentDirect }
            perSession(F.copiesSentDevice) { $0.copiesSentDevice }
            perSession(F.copiesSentBytes) { $0.copiesSentBytes }
            perSessionByReason(F.copiesTruncated) { $0.truncated }
            perSession(F.copiesTruncatedGSO) { $0.copiesTruncatedGSO }
            perSession(F.copiesSegmented) { $0.copiesSegmented }
            perSessionByReason(F.copiesDropped) { $0.dropped }
            perSessionByReason(F.copiesSkipped) { $0.skipped }
            // Which rules get a series: indexes into `rules` (nil: all of them).
            let shown: [Int]? =
                switch m.rulesShown {
                case .all: nil
                case .none: []
                case .counted: rules.indices.filter { rules.hits(at: $0) > 0 }
                }
            family(F.ruleHits, count: shown?.count ?? rules.count) { i, o in
                let r = rules[shown?[i] ?? i]
                o.sample(F.ruleHits, [r.session, r.filter, r.direction.rawValue, String(r.priority), r.action.rawValue], r.hits)
            }
            family(F.sourcePacketsSeen, count: sources.count) { i, o in
                o.sample(F.sourcePacketsSeen, [sources[i].source, sources[i].direction.rawValue], sources[i].seen)
            }
            family(F.sourcePacketsMirrored, count: sources.count) { i, o in
                o.sample(F.sourcePacketsMirrored, [sources[i].source, sources[i].direction.rawValue], sources[i].mirrored)
            }
            family(F.sourcePacketsEstablished, count: sources.count) { i, o in
                if let v = sources[i].established {
                    o.sample(F.sourcePacketsEstablished, [sources[i].source, sources[i].direction.rawValue], v)
                }
            }
            family(F.packetsNotMirrored, count: sources.count) { i, o in
                let s = sources[i]
                for (reason, v) in s.notMirrored.sorted(by: { $0.key < $1.key }) {
                    o.sample(F.packetsNotMirrored, [s.source, s.direction.rawValue, reason], v)
                }
            }
            family(F.deviceForeignFramesDropped) { _, o in
                o.sample(F.deviceForeignFramesDropped, [], st.mirrorDeviceForeignDropped)
            }
            family(F.segmenterForeignFramesDropped) { _, o in
                o.sample(F.segmenterForeignFramesDropped, [], st.segmenterForeignDropped)
            }
            // Without the table (no SPEC §5 maps): the family without a sample.
            let flows = st.securityFlows
            family(F.securityFlows, count: flows == nil ? 0 : 1) { _, o in
                o.sample(F.securityFlows, [], UInt64(flows ?? 0))
            }
        }

        // The agent's own metrics: a few lines each.
        family(F.datapathCountersAvailable) { _, o in o.sample(F.datapathCountersAvailable, [], st.countersAvailable ? 1 : 0) }
        family(F.policyGeneration) { _, o in o.sample(F.policyGeneration, [], st.generation) }
        let h = m.applySeconds
        family(F.policyApplySeconds) { _, o in
            let name = F.policyApplySeconds.name
            for (b, c) in zip(h.bounds, h.counts) {
                o.line(name + "_bucket", [("le", number(b))], String(c))
            }
            o.line(name + "_bucket", [("le", "+Inf")], String(h.count))
            o.line(name + "_sum", [], number(h.sum))
            o.line(name + "_count", [], String(h.count))
        }
        family(F.sources) { _, o in
            o.sample(F.sources, ["attached"], UInt64(m.sourcesAttached))
            o.sample(F.sources, ["pending"], UInt64(m.sourcesPending))
        }
        family(F.tcxPendingInterfaces) { _, o in o.sample(F.tcxPendingInterfaces, [], UInt64(m.tcxPending)) }
        family(F.targetBackendUp, count: m.backends.count) { i, o in
            o.sample(F.targetBackendUp, [m.backends[i].target, m.backends[i].backend], m.backends[i].up ? 1 : 0)
        }
        family(F.agentRepairs) { _, o in
            for what in F.repairKinds { o.sample(F.agentRepairs, [what], m.repairs[what] ?? 0) }
        }
        family(F.agentBuildInfo) { _, o in
            o.sample(F.agentBuildInfo, [m.build.version, m.build.commit, m.build.kernel], 1)
        }

        if let p = m.process {
            family(F.processCPUSeconds) { _, o in o.line(F.processCPUSeconds, [], number(p.cpuSeconds)) }
            family(F.processOpenFDs) { _, o in o.sample(F.processOpenFDs, [], UInt64(p.openFDs)) }
            if let max = p.maxFDs {
                family(F.processMaxFDs) { _, o in o.sample(F.processMaxFDs, [], max) }
            }
            family(F.processResidentMemory) { _, o in o.sample(F.processResidentMemory, [], p.residentMemoryBytes) }
            family(F.processVirtualMemory) { _, o in o.sample(F.processVirtualMemory, [], p.virtualMemoryBytes) }
            family(F.processStartTime) { _, o in o.line(F.processStartTime, [], number(p.startTimeSeconds)) }
        }
        return parts
    }

    /// `name{a="x",b="y"}` (or `name`), values escaped: the identity of a series.
    public static func series(_ name: String, _ labels: [(String, String)]) -> String {
        var text = ""
        appendSeries(name, labels, to: &text)
        return text
    }

    /// `series`, appended in place (the renderer's every line).
    static func appendSeries(_ name: String, _ labels: [(String, String)], to text: inout String) {
        text += name
        for (i, (k, value)) in labels.enumerated() {
            text += i == 0 ? "{" : ","
            text += k; text += "=\""; text += escapeLabel(value); text += "\""
        }
        if !labels.isEmpty { text += "}" }
    }

    /// As `appendSeries`, with the label names and values apart (a family's declared
    /// names and a sample's values: no pairs made per sample, 400,000 at the quotas).
    static func appendSeries(_ name: String, names: [String], values: [String], to text: inout String) {
        text += name
        for i in values.indices {
            text += i == 0 ? "{" : ","
            text += names[i]; text += "=\""; text += escapeLabel(values[i]); text += "\""
        }
        if !values.isEmpty { text += "}" }
    }

    /// Label values: backslash, double quote and line feed are escaped.
    static func escapeLabel(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else { return s }
        var o = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": o += "\\\\"
            case "\"": o += "\\\""
            case "\n": o += "\\n"
            default: o.unicodeScalars.append(c)
            }
        }
        return o
    }

    /// HELP text: backslash and line feed are escaped.
    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Floats as Prometheus reads them (Go ParseFloat): integral values without ".0".
    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    struct Output {
        var text = ""
        mutating func header(_ f: MetricFamily) {
            text += "# HELP \(f.name) \(escapeHelp(f.help))\n# TYPE \(f.name) \(f.type.rawValue)\n"
        }
        /// A sample of `f`: `values` are its declared labels' values, in their order.
        mutating func sample(_ f: MetricFamily, _ values: [String], _ v: UInt64) { line(f, values, String(v)) }
        mutating func line(_ f: MetricFamily, _ values: [String], _ v: String) {
            precondition(values.count == f.labels.count, "\(f.name): \(values.count) label values for \(f.labels.count) labels")
            appendSeries(f.name, names: f.labels, values: values, to: &text)
            text += " "; text += v; text += "\n"
        }
        /// A line under any name (a histogram's _bucket, _sum and _count).
        mutating func line(_ name: String, _ labels: [(String, String)], _ v: String) {
            appendSeries(name, labels, to: &text)
            text += " "; text += v; text += "\n"
        }
    }
}
