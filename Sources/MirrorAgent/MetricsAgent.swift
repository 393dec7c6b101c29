import Foundation
import Logging
import MirrorAPI
import MirrorCore
import MirrorDatapath

/// The agent's metrics state: the apply-duration histogram, the continuity of
/// the BPF counters, build info. Owned by the `Agent`; thread-safe.
public final class AgentMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var applySeconds = MetricsSnapshot.Histogram(bounds: MetricsSnapshot.Histogram.applyBounds)
    private var continuity: MetricsContinuity
    /// Where `continuity` is persisted (nil: memory only).
    private let continuityPath: String?
    let logger: Logger
    public let build: MetricsSnapshot.BuildInfo
    /// Source states last logged (MetricsEvents.swift).
    let sourceStates = SourceStateLog()
    /// Held from reading the maps to adjusting the values: two scrapes adjusting out of
    /// read order would look like a counter reset (and over-count from then on).
    let collectLock = NSLock()
    /// Counter reads failing: logged once per failure streak, not once per scrape.
    private var readFailing = false
    /// When the continuity was last written (scrape time), and whether newly counting
    /// counters wait to be written.
    private var savedAt: Double?
    private var unsaved = false
    /// Newly counting counters are written at most this often: at the quotas the file
    /// can be tens of MB, and rewriting it on every scrape while traffic reaches more
    /// rules would be a constant stream of writes and fsyncs. Carries are written at once.
    static let newCountersSaveInterval: Double = 300

    /// `stateDirectory`: the agent's; the continuity file lives next to its state.
    public init(stateDirectory: String?, logger: Logger = Logger(label: "mirror-agent")) {
        continuityPath = stateDirectory.map { $0 + "/metrics-continuity.json" }
        continuity = continuityPath.flatMap(MetricsContinuity.load(from:)) ?? MetricsContinuity()
        self.logger = logger
        build = .init(version: MirrorAgentInfo.version, commit: Self.commit, kernel: Self.kernelRelease())
    }

    /// The source commit, when the build or the service unit provides it (there is no
    /// build-time stamping in SwiftPM without a plugin): MIRROR_AGENT_COMMIT, else "unknown".
    static var commit: String { ProcessInfo.processInfo.environment["MIRROR_AGENT_COMMIT"].flatMap { $0.isEmpty ? nil : $0 } ?? "unknown" }

    static func kernelRelease() -> String {
        var u = utsname()
        guard uname(&u) == 0 else { return "unknown" }
        return withUnsafeBytes(of: &u.release) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    public func observeApply(seconds: Double) { lock.withLock { applySeconds.observe(seconds) } }

    /// Logs a counter read failure once, and the recovery.
    func noteRead(error: Error?) {
        let (wasFailing, nowFailing) = lock.withLock { () -> (Bool, Bool) in
            defer { readFailing = error != nil }
            return (readFailing, error != nil)
        }
        if nowFailing && !wasFailing {
            logger.error("metrics: cannot read the datapath counters; scrapes show agent metrics only until this clears",
                         metadata: ["error": "\(error.map { "\($0)" } ?? "")"])
        } else if wasFailing && !nowFailing {
            logger.notice("metrics: datapath counters readable again")
        }
    }

    public var applyHistogram: MetricsSnapshot.Histogram { lock.withLock { applySeconds } }

    /// The datapath counters as never-decreasing series, in the API's shape.
    /// `sourceStates`: each source's state by id (pending when absent).
    public func stats(_ counters: DatapathCounters?, generation: UInt64, datapath: String,
                      sourceStates: [String: SourceState], time: Double = Date().timeIntervalSince1970) -> StatsResponse {
        var (out, rules) = statsAndRules(counters, generation: generation, datapath: datapath, sourceStates: sourceStates, time: time)
        out.rules = Array(rules)
        return out
    }

    /// As `stats`, with the rules left out of the response and returned as a view
    /// (a scrape renders them once; at the quotas the list would be 32 MB).
    func statsAndRules(_ counters: DatapathCounters?, generation: UInt64, datapath: String,
                       sourceStates: [String: SourceState], time: Double) -> (StatsResponse, MetricsSnapshot.RuleSeries) {
        guard let c = counters else {
            return (StatsResponse(generation: generation, datapath: datapath, countersAvailable: false, time: time),
                    MetricsSnapshot.RuleSeries([]))
        }
        // One sample per map counter, in a fixed order; read back in the same order.
        // Keys, owners and series are ids of their texts (MetricsContinuity.ID), built
        // piece by piece: 400,000 rule counters at the quotas, no string made for any.
        typealias ID = MetricsContinuity.ID
        typealias SeriesID = MetricsContinuity.SeriesID
        var samples: [MetricsContinuity.Sample] = []
        samples.reserveCapacity(c.sessions.count * 11 + c.rules.count + c.sources.count * 8 + 1)
        func add(_ key: ID, _ owner: UInt64, _ series: SeriesID, _ raw: UInt64) {
            samples.append(.init(key: key.value, owner: owner, labels: series.value, raw: raw))
        }
        func key(_ base: ID, _ field: String) -> ID { var k = base; k.add(field); return k }
        for s in c.sessions {
            var k = ID("session/"); k.add(s.slot); k.add("/")
            let owner = ID(s.id).value
            func series(_ name: String, reason: String? = nil) -> SeriesID {
                var l = SeriesID(name); l.label("session", s.id)
                if let reason { l.label("reason", reason) }
                return l
            }
            add(key(k, "packets"), owner, series("mirror_session_packets_total"), s.packets)
            add(key(k, "bytes"), owner, series("mirror_session_bytes_total"), s.bytes)
            add(key(k, "sent"), owner, series("mirror_copies_sent_total"), s.copiesSent)
            add(key(k, "sent_bytes"), owner, series("mirror_copies_sent_bytes_total"), s.copiesSentBytes)
            add(key(k, "sent_direct"), owner, series("mirror_copies_sent_direct_total"), s.copiesSentDirect)
            for (reason, v) in [("packet_length", s.truncatedPacketLength), ("mtu", s.truncatedMTU)] {
                add(key(k, "truncated/" + reason), owner, series("mirror_copies_truncated_total", reason: reason), v)
            }
            for (reason, v) in Self.dropReasons(s) {
                add(key(k, "dropped/" + reason), owner, series("mirror_copies_dropped_total", reason: reason), v)
            }
        }
        var lastOwner = (name: "", id: ID("").value)
        for r in c.rules {
            var k = ID("rule/"); k.add(r.sessionSlot); k.add("/"); k.add(r.direction.rawValue); k.add("/"); k.add(r.ruleIndex)
            if r.session != lastOwner.name { lastOwner = (r.session, ID(r.session).value) }
            var l = SeriesID("mirror_rule_hits_total")
            l.label("session", r.session); l.label("filter", r.filter); l.label("direction", r.direction.rawValue)
            l.label("rule_priority", String(r.priority)); l.label("action", r.action.rawValue)
            add(k, lastOwner.id, l, r.hits)
        }
        for s in c.sources {
            var k = ID("source/"); k.add(s.slot); k.add("/"); k.add(s.direction.rawValue); k.add("/")
            let owner = ID(s.id).value
            func series(_ name: String, reason: String? = nil) -> SeriesID {
                var l = SeriesID(name); l.label("source", s.id); l.label("direction", s.direction.rawValue)
                if let reason { l.label("reason", reason) }
                return l
            }
            add(key(k, "seen"), owner, series("mirror_source_packets_seen_total"), s.seen)
            add(key(k, "mirrored"), owner, series("mirror_source_packets_mirrored_total"), s.mirrored)
            for (reason, v) in Self.notMirroredReasons(s) {
                add(key(k, reason), owner, series("mirror_packets_not_mirrored_total", reason: reason), v)
            }
        }
        add(ID("encap/not_copy"), ID("").value, SeriesID("mirror_device_foreign_frames_dropped_total"), c.foreignDropped)

        let (values, snapshot) = lock.withLock { () -> ([UInt64], MetricsContinuity?) in
            let (values, change) = continuity.adjust(samples)
            unsaved = unsaved || change == .newCounters
            let due = change == .carried || (unsaved && time - (savedAt ?? -.infinity) >= Self.newCountersSaveInterval)
            guard due, continuityPath != nil else { return (values, nil) }
            savedAt = time; unsaved = false
            return (values, continuity)
        }
        samples = []  // 400,000 of them at the quotas: not held while the response is built
        if let snapshot, let path = continuityPath {
            do { try snapshot.save(to: path) } catch {
                logger.warning("cannot persist metrics continuity", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }

        // Rebuild in the same order as the samples were made.
        var i = 0
        func next() -> UInt64 { defer { i += 1 }; return values[i] }
        var out = StatsResponse(generation: generation, datapath: datapath, countersAvailable: true, time: time)
        out.sessions.reserveCapacity(c.sessions.count)
        out.sources.reserveCapacity(c.sources.count)
        for s in c.sessions {
            var r = SessionStats(session: s.id)
            r.packets = next(); r.bytes = next(); r.copiesSent = next(); r.copiesSentBytes = next(); r.copiesSentDirect = next()
            r.truncated["packet_length"] = next(); r.truncated["mtu"] = next()
            for (reason, _) in Self.dropReasons(s) { r.dropped[reason] = next() }
            out.sessions.append(r)
        }
        let rules = MetricsSnapshot.RuleSeries(c.rules, values: values, offset: i)
        i += c.rules.count
        for s in c.sources {
            var r = SourceStats(source: s.id, interface: s.interface, state: sourceStates[s.id] ?? .pending,
                                direction: s.direction)
            r.seen = next(); r.mirrored = next()
            for (reason, _) in Self.notMirroredReasons(s) { r.notMirrored[reason] = next() }
            out.sources.append(r)
        }
        out.mirrorDeviceForeignDropped = next()
        return (out, rules)
    }

    /// bpf encap_stats fields, by the reason label they render as.
    static func dropReasons(_ s: DatapathCounters.Session) -> [(String, UInt64)] {
        [("session_gone", s.droppedSessionGone), ("no_target", s.droppedNoTarget),
         ("truncate_failed", s.droppedTruncate), ("encapsulation_failed", s.droppedEncapsulation)]
    }

    /// bpf source_stats and security_stats fields, by reason. The datapath does not
    /// count session_disabled (a disabled session has no rules in the policy: its
    /// packets fall through to the next session or to no_match): that reason is not
    /// rendered rather than rendered as an invented zero.
    static func notMirroredReasons(_ s: DatapathCounters.Source) -> [(String, UInt64)] {
        var r = [("no_match", s.noMatch), ("rejected", s.rejected), ("not_ip", s.notIP), ("clone_failed", s.cloneErrors)]
        if let v = s.suppressedBySecurityGroup { r.append(("suppressed_by_security_group", v)) }
        if let v = s.suppressedByAcl { r.append(("suppressed_by_acl", v)) }
        return r
    }
}

extension Agent {
    /// GET /v1/stats. Counters are read outside the actor (the datapath has its own
    /// lock), so a large read does not hold up mutations.
    public nonisolated func stats() async -> StatsResponse {
        var (stats, rules) = await statsAndRules()
        stats.rules = Array(rules)
        return stats
    }

    /// As `stats`, with the rules as a view (at the quotas a list is 32 MB).
    nonisolated func statsAndRules() async -> (StatsResponse, MetricsSnapshot.RuleSeries) {
        let (stats, rules, _) = await collect()
        return (stats, rules)
    }

    /// GET /metrics.
    public nonisolated func metricsSnapshot() async -> MetricsSnapshot {
        let (stats, rules, status) = await collect()
        let attached = status.sources.filter { $0.state == .attached }.count
        return MetricsSnapshot(stats: stats, rules: rules, sourcesAttached: attached, sourcesPending: status.sources.count - attached,
                               tcxPending: status.tcxPending ?? 0, applySeconds: metrics.applyHistogram, build: metrics.build,
                               process: ProcessMetricsReader.read())
    }

    private nonisolated func collect() async -> (stats: StatsResponse, rules: MetricsSnapshot.RuleSeries, status: StatusResponse) {
        let status = await self.status()
        var states: [String: SourceState] = [:]
        for s in status.sources { states[s.id] = s.state }
        let (stats, rules) = metrics.collectLock.withLock { () -> (StatsResponse, MetricsSnapshot.RuleSeries) in
            let counters: DatapathCounters?
            do { counters = try datapath.counters(); metrics.noteRead(error: nil) } catch {
                metrics.noteRead(error: error)
                counters = nil
            }
            return metrics.statsAndRules(counters, generation: status.generation, datapath: status.datapath, sourceStates: states,
                                         time: Date().timeIntervalSince1970)
        }
        return (stats, rules, status)
    }
}

/// Process metrics from /proc (Linux), as the Prometheus client libraries name them.
enum ProcessMetricsReader {
    static func read() -> MetricsSnapshot.ProcessMetrics? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": index 0 is field 3 (state).
        let f = stat[stat.index(after: close)...].split(separator: " ")
        guard f.count > 22, let utime = Double(f[11]), let stime = Double(f[12]), let start = Double(f[19]),
              let vsize = UInt64(f[20]), let rssPages = UInt64(f[21]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        var bootTime = 0.0
        if let s = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
           let line = s.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }) {
            bootTime = Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        var lim = rlimit()
        let maxFDs: UInt64? = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 ? UInt64(lim.rlim_cur) : nil
        return .init(residentMemoryBytes: rssPages * page, virtualMemoryBytes: vsize, cpuSeconds: (utime + stime) / ticks,
                     openFDs: fds, maxFDs: maxFDs, startTimeSeconds: bootTime + start / ticks)
    }
}
