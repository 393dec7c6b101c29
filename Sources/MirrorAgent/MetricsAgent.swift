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
            logger.error(
                "metrics: cannot read the datapath counters; scrapes show agent metrics only until this clears",
                metadata: ["error": "\(error.map { "\($0)" } ?? "")"])
        } else if wasFailing && !nowFailing {
            logger.notice("metrics: datapath counters readable again")
        }
    }

    public var applyHistogram: MetricsSnapshot.Histogram { lock.withLock { applySeconds } }

    /// The next collect writes the continuity file whatever it found: at a graceful
    /// stop, so that counts no scrape saw since the last write are not lost when the
    /// maps are recreated (a cleanup before the next start), and no series goes back.
    func saveOnNextCollect() {
        lock.withLock {
            savedAt = nil; unsaved = true
        }
    }

    /// The datapath counters as never-decreasing series, in the API's shape.
    /// `sourceStates`: each source's state by id (pending when absent).
    public func stats(
        _ counters: DatapathCounters?, generation: UInt64, datapath: String,
        sourceStates: [String: SourceState], time: Double = Date().timeIntervalSince1970
    ) -> StatsResponse {
        var (out, rules) = statsAndRules(counters, generation: generation, datapath: datapath, sourceStates: sourceStates, time: time)
        out.rules = Array(rules)
        return out
    }

    /// As `stats`, with the rules left out of the response and returned as a view
    /// (a scrape renders them once; at the quotas the list would be 32 MB).
    func statsAndRules(
        _ counters: DatapathCounters?, generation: UInt64, datapath: String,
        sourceStates: [String: SourceState], time: Double
    ) -> (StatsResponse, MetricsSnapshot.RuleSeries) {
        guard let c = counters else {
            return (
                StatsResponse(generation: generation, datapath: datapath, countersAvailable: false, time: time),
                MetricsSnapshot.RuleSeries([])
            )
        }
        // One sample per map counter, in a fixed order; read back in the same order.
        // Keys, owners and series are ids (MetricsContinuity.ID) of the families'
        // declared continuity identities (MetricFamily.swift) and the label values, built
        // piece by piece: 400,000 rule counters at the quotas, no string made for any.
        typealias ID = MetricsContinuity.ID
        typealias SeriesID = MetricsContinuity.SeriesID
        var samples: [MetricsContinuity.Sample] = []
        samples.reserveCapacity(c.sessions.count * 18 + c.rules.count + c.sources.count * 9 + 2)
        /// A sample of `family` in the map counters of `scope` ("session/<slot>/", ...).
        func add(_ family: MetricFamily, _ scope: ID, _ owner: UInt64, _ series: SeriesID, reason: String? = nil, _ raw: UInt64) {
            var key = scope, series = series
            key.add(family.continuity!.field)
            if let reason { key.add(reason); series.add(reason) }
            samples.append(.init(key: key.value, owner: owner, labels: series.value, raw: raw))
        }
        for s in c.sessions {
            var scope = ID("session/"); scope.add(s.slot); scope.add("/")
            let owner = ID(s.id).value
            func series(_ f: MetricFamily) -> SeriesID { var l = SeriesID(f); l.add(s.id); return l }
            add(.sessionPackets, scope, owner, series(.sessionPackets), s.packets)
            add(.sessionBytes, scope, owner, series(.sessionBytes), s.bytes)
            add(.copiesSent, scope, owner, series(.copiesSent), s.copiesSent)
            add(.copiesSentBytes, scope, owner, series(.copiesSentBytes), s.copiesSentBytes)
            add(.copiesSentDirect, scope, owner, series(.copiesSentDirect), s.copiesSentDirect)
            add(.copiesSentDevice, scope, owner, series(.copiesSentDevice), s.copiesSentDevice)
            for (reason, v) in Self.truncationReasons(s) {
                add(.copiesTruncated, scope, owner, series(.copiesTruncated), reason: reason.rawValue, v)
            }
            for (reason, v) in Self.dropReasons(s) {
                add(.copiesDropped, scope, owner, series(.copiesDropped), reason: reason.rawValue, v)
            }
            for (reason, v) in Self.skipReasons(s) {
                add(.copiesSkipped, scope, owner, series(.copiesSkipped), reason: reason.rawValue, v)
            }
            add(.copiesSegmented, scope, owner, series(.copiesSegmented), s.segmented)
            add(.copiesTruncatedGSO, scope, owner, series(.copiesTruncatedGSO), s.truncatedGSO)
        }
        var lastOwner = (name: "", id: ID("").value)
        let ruleScope = ID("rule/")
        for r in c.rules {
            var k = ruleScope; k.add(r.sessionSlot); k.add("/"); k.add(r.direction.rawValue); k.add("/"); k.add(r.ruleIndex)
            if r.session != lastOwner.name { lastOwner = (r.session, ID(r.session).value) }
            var l = SeriesID(.ruleHits)
            l.add(r.session); l.add(r.filter); l.add(r.direction.rawValue); l.add(String(r.priority)); l.add(r.action.rawValue)
            add(.ruleHits, k, lastOwner.id, l, r.hits)
        }
        for s in c.sources {
            var scope = ID("source/"); scope.add(s.slot); scope.add("/"); scope.add(s.direction.rawValue); scope.add("/")
            let owner = ID(s.id).value
            func series(_ f: MetricFamily) -> SeriesID { var l = SeriesID(f); l.add(s.id); l.add(s.direction.rawValue); return l }
            add(.sourcePacketsSeen, scope, owner, series(.sourcePacketsSeen), s.seen)
            add(.sourcePacketsMirrored, scope, owner, series(.sourcePacketsMirrored), s.mirrored)
            for (reason, v) in Self.notMirroredReasons(s) {
                add(.packetsNotMirrored, scope, owner, series(.packetsNotMirrored), reason: reason.rawValue, v)
            }
            if let v = s.established { add(.sourcePacketsEstablished, scope, owner, series(.sourcePacketsEstablished), v) }
        }
        add(.deviceForeignFramesDropped, ID("encap/"), ID("").value, SeriesID(.deviceForeignFramesDropped), c.foreignDropped)
        add(
            .segmenterForeignFramesDropped, ID("encap/"), ID("").value, SeriesID(.segmenterForeignFramesDropped),
            c.segmenterForeignDropped)

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
            r.copiesSentDevice = next()
            for (reason, _) in Self.truncationReasons(s) { r.truncated[reason.rawValue] = next() }
            for (reason, _) in Self.dropReasons(s) { r.dropped[reason.rawValue] = next() }
            for (reason, _) in Self.skipReasons(s) { r.skipped[reason.rawValue] = next() }
            r.copiesSegmented = next(); r.copiesTruncatedGSO = next()
            out.sessions.append(r)
        }
        let rules = MetricsSnapshot.RuleSeries(c.rules, values: values, offset: i)
        i += c.rules.count
        for s in c.sources {
            var r = SourceStats(
                source: s.id, interface: s.interface, state: sourceStates[s.id] ?? .pending,
                direction: s.direction)
            r.seen = next(); r.mirrored = next()
            for (reason, _) in Self.notMirroredReasons(s) { r.notMirrored[reason.rawValue] = next() }
            if s.established != nil { r.established = next() }
            out.sources.append(r)
        }
        out.mirrorDeviceForeignDropped = next()
        out.segmenterForeignDropped = next()
        out.securityFlows = c.securityFlows
        return (out, rules)
    }

    /// bpf encap_stats fields, by the reason label they render as.
    static func truncationReasons(_ s: DatapathCounters.Session) -> [(MetricFamily.TruncationReason, UInt64)] {
        [(.packetLength, s.truncatedPacketLength), (.mtu, s.truncatedMTU)]
    }

    static func dropReasons(_ s: DatapathCounters.Session) -> [(MetricFamily.CopyDropReason, UInt64)] {
        [
            (.sessionGone, s.droppedSessionGone), (.noTarget, s.droppedNoTarget),
            (.truncateFailed, s.droppedTruncate), (.encapsulationFailed, s.droppedEncapsulation),
            (.noRoute, s.droppedNoRoute), (.neighborUnresolved, s.droppedNeighborUnresolved),
            (.targetUnhealthy, s.droppedTargetUnhealthy),
        ]
    }

    /// bpf session_stats skipped_* fields, by the reason label they render as.
    static func skipReasons(_ s: DatapathCounters.Session) -> [(MetricFamily.CopySkipReason, UInt64)] {
        [(.sampledOut, s.skippedSampledOut), (.rateLimit, s.skippedRateLimit), (.hostBudget, s.skippedHostBudget)]
    }

    /// bpf source_stats and security_stats fields, by reason (the SPEC §5 ones only
    /// when the datapath counts them).
    static func notMirroredReasons(_ s: DatapathCounters.Source) -> [(MetricFamily.NotMirroredReason, UInt64)] {
        var r: [(MetricFamily.NotMirroredReason, UInt64)] = [
            (.noMatch, s.noMatch), (.rejected, s.rejected), (.notIP, s.notIP),
            (.cloneFailed, s.cloneErrors), (.sessionDisabled, s.sessionDisabled),
        ]
        if let v = s.suppressedBySecurityGroup { r.append((.suppressedBySecurityGroup, v)) }
        if let v = s.suppressedByAcl { r.append((.suppressedByAcl, v)) }
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
        var snapshot = MetricsSnapshot(
            stats: stats, rules: rules, sourcesAttached: attached, sourcesPending: status.sources.count - attached,
            tcxPending: status.tcxPending ?? 0, applySeconds: metrics.applyHistogram, build: metrics.build,
            process: ProcessMetricsReader.read())
        snapshot.repairs = status.repairs ?? [:]
        snapshot.backends = (status.targets ?? []).flatMap { t in
            t.collectors.map { (t.id, $0.address, $0.health != CollectorState.unhealthy.rawValue) }
        }
        return snapshot
    }

    /// Reads the counters once more and writes the continuity file (graceful stop).
    func persistMetrics() {
        metrics.collectLock.withLock {
            metrics.saveOnNextCollect()
            _ = metrics.statsAndRules(
                try? datapath.counters(), generation: currentGeneration(), datapath: datapath.kind, sourceStates: [:],
                time: Date().timeIntervalSince1970)
        }
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
            return metrics.statsAndRules(
                counters, generation: status.generation, datapath: status.datapath, sourceStates: states,
                time: Date().timeIntervalSince1970)
        }
        return (stats, rules, status)
    }
}

/// Process metrics from /proc (Linux), as the Prometheus client libraries name them.
enum ProcessMetricsReader {
    static func read() -> MetricsSnapshot.ProcessMetrics? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": index 0 is field 3 (state).
        let f = stat[stat.index(after: close)...].split(separator: " ")
        guard f.count > 22, let utime = Double(f[11]), let stime = Double(f[12]), let start = Double(f[19]),
            let vsize = UInt64(f[20]), let rssPages = UInt64(f[21])
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        var bootTime = 0.0
        if let s = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = s.split(separator: "\n").first(where: { $0.hasPrefix("btime ") })
        {
            bootTime = Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        var lim = rlimit()
        let maxFDs: UInt64? = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 ? UInt64(lim.rlim_cur) : nil
        return .init(
            residentMemoryBytes: rssPages * page, virtualMemoryBytes: vsize, cpuSeconds: (utime + stime) / ticks,
            openFDs: fds, maxFDs: maxFDs, startTimeSeconds: bootTime + start / ticks)
    }
}
