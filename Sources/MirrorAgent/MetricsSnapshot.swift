import Foundation
import MirrorAPI
import MirrorCompiler
import MirrorCore
import MirrorDatapath

/// Everything one scrape renders: the (continuity-adjusted) counters and the agent's
/// own metrics. Pure data: `MetricsRenderer.render` turns it into exposition text.
public struct MetricsSnapshot: Sendable {
    /// `stats.rules` is not read: the rule series are `rules`.
    public var stats: StatsResponse
    public var rules: RuleSeries
    /// Which of `rules` a scrape renders (issue 21: a fleet cannot hold 400,000 rule
    /// series per host, most of them zeros).
    public var rulesShown: RuleSeriesShown = .all
    public var sourcesAttached: Int
    public var sourcesPending: Int
    /// Attached interfaces still on clsact filters, waiting for their tcx links.
    public var tcxPending: Int
    /// The datapath's repairs by what (`MetricFamily.repairKinds`).
    public var repairs: [String: UInt64] = [:]
    public var applySeconds: Histogram
    public var build: BuildInfo
    public var process: ProcessMetrics?

    /// `rules`: nil for `stats.rules`.
    public init(
        stats: StatsResponse, rules: RuleSeries? = nil, sourcesAttached: Int, sourcesPending: Int, tcxPending: Int = 0,
        applySeconds: Histogram, build: BuildInfo, process: ProcessMetrics?
    ) {
        self.stats = stats; self.rules = rules ?? RuleSeries(stats.rules)
        self.sourcesAttached = sourcesAttached; self.sourcesPending = sourcesPending
        self.tcxPending = tcxPending
        self.applySeconds = applySeconds; self.build = build; self.process = process
    }

    /// The rule series of a scrape: a list, or a view of the counters read and their
    /// continuity-adjusted values. At the quotas a list is 400,000 `RuleStats` (32 MB)
    /// built only to be rendered once; the view builds each when it is rendered.
    public struct RuleSeries: RandomAccessCollection, Sendable {
        private enum Storage {
            case list([RuleStats])
            /// `values[offset + i]` is rule i's adjusted hits.
            case view(DatapathCounters.Rules, values: [UInt64], offset: Int)
        }
        private let storage: Storage

        public init(_ list: [RuleStats]) { storage = .list(list) }
        init(_ rules: DatapathCounters.Rules, values: [UInt64], offset: Int) {
            precondition(offset >= 0 && offset + rules.count <= values.count, "rule values out of range")
            storage = .view(rules, values: values, offset: offset)
        }

        public var startIndex: Int { 0 }
        public var endIndex: Int {
            switch storage {
            case .list(let l): l.count
            case .view(let r, _, _): r.count
            }
        }

        /// Rule i's hits, without building its `RuleStats`.
        public func hits(at i: Int) -> UInt64 {
            switch storage {
            case .list(let l): l[i].hits
            case .view(_, let values, let offset): values[offset + i]
            }
        }

        public subscript(i: Int) -> RuleStats {
            switch storage {
            case .list(let l):
                return l[i]
            case .view(let rules, let values, let offset):
                let r = rules[i]
                return RuleStats(
                    session: r.session, filter: r.filter, direction: r.direction, priority: r.priority,
                    action: r.action, hits: values[offset + i])
            }
        }
    }

    /// `mirror-agent --metrics-rules`.
    public enum RuleSeriesShown: String, CaseIterable, Sendable {
        /// No `mirror_rule_hits_total` series (per-session and per-source series stay).
        case none
        /// Only rules that have counted something since their session's slot was
        /// assigned: a rule appears with its first hit (the agent's default).
        case counted
        /// Every rule of the policy, zeros included.
        case all
    }

    public struct BuildInfo: Hashable, Sendable {
        public var version: String, commit: String, kernel: String
        public init(version: String, commit: String, kernel: String) {
            self.version = version; self.commit = commit; self.kernel = kernel
        }
    }

    /// A cumulative histogram: `counts[i]` observations <= `bounds[i]`; `count` all.
    public struct Histogram: Hashable, Sendable {
        public var bounds: [Double]
        public var counts: [UInt64]
        public var count: UInt64
        public var sum: Double
        public init(bounds: [Double]) {
            self.bounds = bounds; counts = Array(repeating: 0, count: bounds.count); count = 0; sum = 0
        }
        public mutating func observe(_ v: Double) {
            for (i, b) in bounds.enumerated() where v <= b { counts[i] += 1 }
            count += 1
            sum += v
        }
        /// Seconds: from a sub-millisecond in-memory apply to a 20,000-session kernel one.
        public static let applyBounds: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    }

    public struct ProcessMetrics: Hashable, Sendable {
        public var residentMemoryBytes: UInt64
        public var virtualMemoryBytes: UInt64
        public var cpuSeconds: Double
        public var openFDs: Int
        public var maxFDs: UInt64?
        public var startTimeSeconds: Double
        public init(
            residentMemoryBytes: UInt64, virtualMemoryBytes: UInt64, cpuSeconds: Double, openFDs: Int,
            maxFDs: UInt64?, startTimeSeconds: Double
        ) {
            self.residentMemoryBytes = residentMemoryBytes; self.virtualMemoryBytes = virtualMemoryBytes
            self.cpuSeconds = cpuSeconds; self.openFDs = openFDs; self.maxFDs = maxFDs; self.startTimeSeconds = startTimeSeconds
        }
    }
}
