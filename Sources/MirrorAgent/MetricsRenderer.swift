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
        /// A family's HELP and TYPE (when `help` is set), then one call of `render` per
        /// item: a piece may end between two items.
        struct Part: Sendable {
            var name = "", type = "", help: String?
            var count = 1
            var render: @Sendable (Int, inout Output) -> Void

            /// As a part of the text: the header goes with item 0, also of an empty family.
            var piece: TextPieces.Part {
                let p = self
                return TextPieces.Part(count: Swift.max(p.count, 1)) { i, text in
                    var o = Output()
                    swap(&o.text, &text)
                    defer { swap(&o.text, &text) }
                    if i == 0, let help = p.help { o.family(p.name, p.type, help) }
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

    /// What `render` writes, in order.
    static func parts(_ m: MetricsSnapshot) -> [Chunks.Part] {
        typealias Part = Chunks.Part
        let st = m.stats
        var parts: [Part] = []
        func family(_ name: String, _ help: String, count: Int, type: String = "counter",
                    _ render: @escaping @Sendable (Int, inout Output) -> Void) {
            parts.append(Part(name: name, type: type, help: help, count: count, render: render))
        }

        if st.countersAvailable {
            let sessions = st.sessions, rules = m.rules, sources = st.sources
            family("mirror_session_packets_total",
                   "Packets accepted by a rule of the session (all its sources and directions: the datapath counts per session, so source and direction are empty).",
                   count: sessions.count) { i, o in
                o.sample("mirror_session_packets_total", sessionLabels(sessions[i].session), sessions[i].packets)
            }
            family("mirror_session_bytes_total",
                   "Bytes of the packets accepted by a rule of the session (whole frames, before truncation; source and direction empty as for packets).",
                   count: sessions.count) { i, o in
                o.sample("mirror_session_bytes_total", sessionLabels(sessions[i].session), sessions[i].bytes)
            }
            family("mirror_copies_sent_total", "Copies encapsulated and sent toward their collector.", count: sessions.count) { i, o in
                o.sample("mirror_copies_sent_total", [("session", sessions[i].session)], sessions[i].copiesSent)
            }
            family("mirror_copies_sent_direct_total",
                   "Of mirror_copies_sent_total: encapsulated by the datapath itself and sent straight to the underlay (IPv4 collectors with a resolved next hop); the rest went through the VXLAN device.",
                   count: sessions.count) { i, o in
                o.sample("mirror_copies_sent_direct_total", [("session", sessions[i].session)], sessions[i].copiesSentDirect)
            }
            family("mirror_copies_sent_bytes_total", "Inner frame bytes of the copies sent, after truncation.", count: sessions.count) { i, o in
                o.sample("mirror_copies_sent_bytes_total", [("session", sessions[i].session)], sessions[i].copiesSentBytes)
            }
            family("mirror_copies_truncated_total",
                   "Copies cut to the session's packetLength or to fit the path MTU (SPEC §6).", count: sessions.count) { i, o in
                let s = sessions[i]
                for (reason, v) in s.truncated.sorted(by: { $0.key < $1.key }) {
                    o.sample("mirror_copies_truncated_total", [("session", s.session), ("reason", reason)], v)
                }
            }
            family("mirror_copies_dropped_total",
                   "Copies dropped by the encapsulation stage, by reason (clone failures are counted per source as not mirrored, reason clone_failed).",
                   count: sessions.count) { i, o in
                let s = sessions[i]
                for (reason, v) in s.dropped.sorted(by: { $0.key < $1.key }) {
                    o.sample("mirror_copies_dropped_total", [("session", s.session), ("reason", reason)], v)
                }
            }
            family("mirror_rule_hits_total", "Packets for which the rule was the first match (SPEC §4), accept or reject.",
                   count: rules.count) { i, o in
                let r = rules[i]
                o.sample("mirror_rule_hits_total", [("session", r.session), ("filter", r.filter), ("direction", r.direction.rawValue),
                                                    ("rule_priority", String(r.priority)), ("action", r.action.rawValue)], r.hits)
            }
            family("mirror_source_packets_seen_total",
                   "Packets classified on the source and direction (not those its security groups or network ACL dropped: see mirror_packets_not_mirrored_total).",
                   count: sources.count) { i, o in
                o.sample("mirror_source_packets_seen_total", [("source", sources[i].source), ("direction", sources[i].direction.rawValue)], sources[i].seen)
            }
            family("mirror_source_packets_mirrored_total", "Packets of the source and direction accepted and cloned.",
                   count: sources.count) { i, o in
                o.sample("mirror_source_packets_mirrored_total", [("source", sources[i].source), ("direction", sources[i].direction.rawValue)],
                         sources[i].mirrored)
            }
            family("mirror_packets_not_mirrored_total", "Packets of the source and direction that were not mirrored, by reason.",
                   count: sources.count) { i, o in
                let s = sources[i]
                for (reason, v) in s.notMirrored.sorted(by: { $0.key < $1.key }) {
                    o.sample("mirror_packets_not_mirrored_total", [("source", s.source), ("direction", s.direction.rawValue), ("reason", reason)], v)
                }
            }
            family("mirror_device_foreign_frames_dropped_total", "Frames leaving the mirror device that were not copies (dropped there).",
                   count: 1) { _, o in
                o.sample("mirror_device_foreign_frames_dropped_total", [], st.mirrorDeviceForeignDropped)
            }
        }

        // The agent's own metrics: a few lines each.
        family("mirror_datapath_counters_available",
               "1 when the datapath counters were read for this scrape, 0 when not (no kernel datapath, or a read error).",
               count: 1, type: "gauge") { _, o in o.sample("mirror_datapath_counters_available", [], st.countersAvailable ? 1 : 0) }
        family("mirror_policy_generation", "Generation of the policy in force (increases with every applied change).",
               count: 1, type: "gauge") { _, o in o.sample("mirror_policy_generation", [], st.generation) }
        let h = m.applySeconds
        family("mirror_policy_apply_seconds", "Time to apply a policy to the datapath.", count: 1, type: "histogram") { _, o in
            for (b, c) in zip(h.bounds, h.counts) {
                o.sample("mirror_policy_apply_seconds_bucket", [("le", number(b))], c)
            }
            o.sample("mirror_policy_apply_seconds_bucket", [("le", "+Inf")], h.count)
            o.line("mirror_policy_apply_seconds_sum", [], number(h.sum))
            o.sample("mirror_policy_apply_seconds_count", [], h.count)
        }
        family("mirror_sources", "Sources by state: attached (programs on the interface) or pending (no such interface yet).",
               count: 1, type: "gauge") { _, o in
            o.sample("mirror_sources", [("state", "attached")], UInt64(m.sourcesAttached))
            o.sample("mirror_sources", [("state", "pending")], UInt64(m.sourcesPending))
        }
        family("mirror_tcx_pending_interfaces",
               "Attached source interfaces still on clsact filters until the background mover gives them tcx links (a large apply attaches that way first).",
               count: 1, type: "gauge") { _, o in o.sample("mirror_tcx_pending_interfaces", [], UInt64(m.tcxPending)) }
        family("mirror_agent_build_info", "Agent version, source commit and running kernel; always 1.", count: 1, type: "gauge") { _, o in
            o.sample("mirror_agent_build_info", [("version", m.build.version), ("commit", m.build.commit), ("kernel", m.build.kernel)], 1)
        }

        if let p = m.process {
            family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", count: 1) { _, o in
                o.line("process_cpu_seconds_total", [], number(p.cpuSeconds))
            }
            family("process_open_fds", "Number of open file descriptors.", count: 1, type: "gauge") { _, o in
                o.sample("process_open_fds", [], UInt64(p.openFDs))
            }
            if let max = p.maxFDs {
                family("process_max_fds", "Maximum number of open file descriptors.", count: 1, type: "gauge") { _, o in
                    o.sample("process_max_fds", [], max)
                }
            }
            family("process_resident_memory_bytes", "Resident memory size in bytes.", count: 1, type: "gauge") { _, o in
                o.sample("process_resident_memory_bytes", [], p.residentMemoryBytes)
            }
            family("process_virtual_memory_bytes", "Virtual memory size in bytes.", count: 1, type: "gauge") { _, o in
                o.sample("process_virtual_memory_bytes", [], p.virtualMemoryBytes)
            }
            family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", count: 1, type: "gauge") { _, o in
                o.line("process_start_time_seconds", [], number(p.startTimeSeconds))
            }
        }
        return parts
    }

    /// The label set for session packets/bytes: source and direction are part
    /// of it but empty, because bpf session_stats is keyed by session slot only (a
    /// per-source split would need a new map; see the per-source counters instead).
    static func sessionLabels(_ session: String) -> [(String, String)] {
        [("session", session), ("source", ""), ("direction", "")]
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
        mutating func family(_ name: String, _ type: String, _ help: String) {
            text += "# HELP \(name) \(escapeHelp(help))\n# TYPE \(name) \(type)\n"
        }
        mutating func sample(_ name: String, _ labels: [(String, String)], _ v: UInt64) { line(name, labels, String(v)) }
        mutating func line(_ name: String, _ labels: [(String, String)], _ v: String) {
            appendSeries(name, labels, to: &text)
            text += " "; text += v; text += "\n"
        }
    }
}
