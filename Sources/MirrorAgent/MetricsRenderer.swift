import Foundation
import MirrorAPI

/// Prometheus text exposition (format 0.0.4) of one `MetricsSnapshot` (issue 5). Pure.
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

    public static func render(_ m: MetricsSnapshot) -> String {
        var o = Output()
        let st = m.stats

        if st.countersAvailable {
            o.family("mirror_session_packets_total", "counter",
                     "Packets accepted by a rule of the session (all its sources and directions: the datapath counts per session, so source and direction are empty).")
            for s in st.sessions { o.sample("mirror_session_packets_total", sessionLabels(s.session), s.packets) }
            o.family("mirror_session_bytes_total", "counter",
                     "Bytes of the packets accepted by a rule of the session (whole frames, before truncation; source and direction empty as for packets).")
            for s in st.sessions { o.sample("mirror_session_bytes_total", sessionLabels(s.session), s.bytes) }
            o.family("mirror_copies_sent_total", "counter", "Copies encapsulated and sent toward their collector.")
            for s in st.sessions { o.sample("mirror_copies_sent_total", [("session", s.session)], s.copiesSent) }
            o.family("mirror_copies_sent_direct_total", "counter",
                     "Of mirror_copies_sent_total: encapsulated by the datapath itself and sent straight to the underlay (IPv4 collectors with a resolved next hop); the rest went through the VXLAN device.")
            for s in st.sessions { o.sample("mirror_copies_sent_direct_total", [("session", s.session)], s.copiesSentDirect) }
            o.family("mirror_copies_sent_bytes_total", "counter", "Inner frame bytes of the copies sent, after truncation.")
            for s in st.sessions { o.sample("mirror_copies_sent_bytes_total", [("session", s.session)], s.copiesSentBytes) }
            o.family("mirror_copies_truncated_total", "counter",
                     "Copies cut to the session's packetLength or to fit the path MTU (SPEC §6).")
            for s in st.sessions {
                for (reason, v) in s.truncated.sorted(by: { $0.key < $1.key }) {
                    o.sample("mirror_copies_truncated_total", [("session", s.session), ("reason", reason)], v)
                }
            }
            o.family("mirror_copies_dropped_total", "counter",
                     "Copies dropped by the encapsulation stage, by reason (clone failures are counted per source as not mirrored, reason clone_failed).")
            for s in st.sessions {
                for (reason, v) in s.dropped.sorted(by: { $0.key < $1.key }) {
                    o.sample("mirror_copies_dropped_total", [("session", s.session), ("reason", reason)], v)
                }
            }
            o.family("mirror_rule_hits_total", "counter",
                     "Packets for which the rule was the first match (SPEC §4), accept or reject.")
            for r in st.rules {
                o.sample("mirror_rule_hits_total", [("session", r.session), ("filter", r.filter), ("direction", r.direction),
                                                    ("rule_priority", String(r.priority)), ("action", r.action)], r.hits)
            }
            o.family("mirror_source_packets_seen_total", "counter", "Packets classified on the source and direction (not those its security groups or network ACL dropped: see mirror_packets_not_mirrored_total).")
            for s in st.sources {
                o.sample("mirror_source_packets_seen_total", [("source", s.source), ("direction", s.direction)], s.seen)
            }
            o.family("mirror_source_packets_mirrored_total", "counter", "Packets of the source and direction accepted and cloned.")
            for s in st.sources {
                o.sample("mirror_source_packets_mirrored_total", [("source", s.source), ("direction", s.direction)], s.mirrored)
            }
            o.family("mirror_packets_not_mirrored_total", "counter",
                     "Packets of the source and direction that were not mirrored, by reason.")
            for s in st.sources {
                for (reason, v) in s.notMirrored.sorted(by: { $0.key < $1.key }) {
                    o.sample("mirror_packets_not_mirrored_total",
                             [("source", s.source), ("direction", s.direction), ("reason", reason)], v)
                }
            }
            o.family("mirror_device_foreign_frames_dropped_total", "counter",
                     "Frames leaving the mirror device that were not copies (dropped there).")
            o.sample("mirror_device_foreign_frames_dropped_total", [], st.mirrorDeviceForeignDropped)
        }

        o.family("mirror_datapath_counters_available", "gauge",
                 "1 when the datapath counters were read for this scrape, 0 when not (no kernel datapath, or a read error).")
        o.sample("mirror_datapath_counters_available", [], st.countersAvailable ? 1 : 0)
        o.family("mirror_policy_generation", "gauge", "Generation of the policy in force (increases with every applied change).")
        o.sample("mirror_policy_generation", [], st.generation)
        o.family("mirror_policy_apply_seconds", "histogram", "Time to apply a policy to the datapath.")
        let h = m.applySeconds
        for (b, c) in zip(h.bounds, h.counts) {
            o.sample("mirror_policy_apply_seconds_bucket", [("le", number(b))], c)
        }
        o.sample("mirror_policy_apply_seconds_bucket", [("le", "+Inf")], h.count)
        o.line("mirror_policy_apply_seconds_sum", [], number(h.sum))
        o.sample("mirror_policy_apply_seconds_count", [], h.count)
        o.family("mirror_sources", "gauge", "Sources by state: attached (programs on the interface) or pending (no such interface yet).")
        o.sample("mirror_sources", [("state", "attached")], UInt64(m.sourcesAttached))
        o.sample("mirror_sources", [("state", "pending")], UInt64(m.sourcesPending))
        o.family("mirror_tcx_pending_interfaces", "gauge",
                 "Attached source interfaces still on clsact filters until the background mover gives them tcx links (a large apply attaches that way first).")
        o.sample("mirror_tcx_pending_interfaces", [], UInt64(m.tcxPending))
        o.family("mirror_agent_build_info", "gauge", "Agent version, source commit and running kernel; always 1.")
        o.sample("mirror_agent_build_info", [("version", m.build.version), ("commit", m.build.commit), ("kernel", m.build.kernel)], 1)

        if let p = m.process {
            o.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
            o.line("process_cpu_seconds_total", [], number(p.cpuSeconds))
            o.family("process_open_fds", "gauge", "Number of open file descriptors.")
            o.sample("process_open_fds", [], UInt64(p.openFDs))
            if let max = p.maxFDs {
                o.family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
                o.sample("process_max_fds", [], max)
            }
            o.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
            o.sample("process_resident_memory_bytes", [], p.residentMemoryBytes)
            o.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
            o.sample("process_virtual_memory_bytes", [], p.virtualMemoryBytes)
            o.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
            o.line("process_start_time_seconds", [], number(p.startTimeSeconds))
        }
        return o.text
    }

    /// The label set for session packets/bytes: source and direction are part
    /// of it but empty, because bpf session_stats is keyed by session slot only (a
    /// per-source split would need a new map; see the per-source counters instead).
    static func sessionLabels(_ session: String) -> [(String, String)] {
        [("session", session), ("source", ""), ("direction", "")]
    }

    /// `name{a="x",b="y"}` (or `name`), values escaped: the identity of a series.
    public static func series(_ name: String, _ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return name }
        return name + "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// Label values: backslash, double quote and line feed are escaped.
    static func escapeLabel(_ s: String) -> String {
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
            text += series(name, labels) + " " + v + "\n"
        }
    }
}
