import Foundation
import MirrorAPI
import MirrorCompiler
import MirrorCore
import MirrorDatapath

/// The raw counters of a datapath, each with the stable slot it was read from and the
/// labels of the policy in force when it was read (issue 5). Values are what the BPF
/// maps hold (CPUs summed): they restart from 0 when a slot is cleared for reuse.
/// `MetricsContinuity` turns them into never-decreasing series.
public struct DatapathCounters: Sendable {
    public struct Session: Hashable, Sendable {
        public var slot: UInt16
        public var id: String
        /// bpf session_stats: accepted by one of the session's rules (all sources and
        /// directions together: that map is keyed by session slot only).
        public var packets: UInt64 = 0, bytes: UInt64 = 0
        /// bpf encap_stats (stage 2).
        public var copiesSent: UInt64 = 0, copiesSentBytes: UInt64 = 0, copiesSentDirect: UInt64 = 0
        public var truncatedPacketLength: UInt64 = 0, truncatedMTU: UInt64 = 0
        public var droppedSessionGone: UInt64 = 0, droppedNoTarget: UInt64 = 0
        public var droppedTruncate: UInt64 = 0, droppedEncapsulation: UInt64 = 0
        public init(slot: UInt16, id: String) { self.slot = slot; self.id = id }
    }

    public struct Rule: Hashable, Sendable {
        public var sessionSlot: UInt16
        public var direction: Direction
        public var ruleIndex: UInt8
        public var session: String
        public var filter: String
        public var priority: Int
        public var action: RuleAction
        public var hits: UInt64
        public init(sessionSlot: UInt16, direction: Direction, ruleIndex: UInt8, session: String, filter: String,
                    priority: Int, action: RuleAction, hits: UInt64) {
            self.sessionSlot = sessionSlot; self.direction = direction; self.ruleIndex = ruleIndex
            self.session = session; self.filter = filter; self.priority = priority; self.action = action; self.hits = hits
        }
    }

    public struct Source: Hashable, Sendable {
        public var slot: UInt16
        public var id: String
        public var interface: String
        public var direction: Direction
        public var seen: UInt64 = 0, mirrored: UInt64 = 0
        public var noMatch: UInt64 = 0, rejected: UInt64 = 0, notIP: UInt64 = 0, cloneErrors: UInt64 = 0
        /// bpf security_stats (SPEC §5); nil when the datapath has no such counters.
        /// Suppressed packets are not in `seen`: they stop before classification.
        public var suppressedBySecurityGroup: UInt64?, suppressedByAcl: UInt64?
        public init(slot: UInt16, id: String, interface: String, direction: Direction) {
            self.slot = slot; self.id = id; self.interface = interface; self.direction = direction
        }
    }

    /// Every rule of the image with its hits, in key order (session slot, direction,
    /// index). A view over the image's rule table and the hits array read from the
    /// map, not a copy: at the quotas, 400,000 `Rule` values made up front were 26 MB,
    /// alive through a whole scrape next to the stats built from them. The table is
    /// already in memory (about 1 MB); the hits are 8 bytes a rule.
    public struct Rules: RandomAccessCollection, Sendable {
        let table: RuleTable
        let positions: RuleTable.Positions
        /// Indexed by `Datapath.ruleStatsKey`; a rule beyond it reads 0.
        let hits: [UInt64]

        public init() { self.init(table: RuleTable(), hits: []) }
        public init(table: RuleTable, hits: [UInt64]) {
            self.table = table; self.hits = hits; positions = table.positions()
        }

        public var startIndex: Int { 0 }
        public var endIndex: Int { positions.count }

        public subscript(i: Int) -> Rule {
            let (key, info) = table.entry(at: i, positions)
            let k = MirrorDatapath.Datapath.ruleStatsKey(sessionSlot: key.sessionSlot, direction: key.direction,
                                                         ruleIndex: key.ruleIndex)
            return Rule(sessionSlot: key.sessionSlot, direction: key.direction, ruleIndex: key.ruleIndex,
                        session: info.sessionID, filter: info.filterID, priority: info.priority,
                        action: info.action, hits: k < hits.count ? hits[k] : 0)
        }
    }

    public var sessions: [Session] = []
    public var rules = Rules()
    public var sources: [Source] = []
    /// Frames dropped on the mirror device that were not copies.
    public var foreignDropped: UInt64 = 0

    public init(sessions: [Session] = [], rules: Rules = Rules(), sources: [Source] = [], foreignDropped: UInt64 = 0) {
        self.sessions = sessions; self.rules = rules; self.sources = sources; self.foreignDropped = foreignDropped
    }
}

/// Everything one scrape renders: the (continuity-adjusted) counters and the agent's
/// own metrics. Pure data: `MetricsRenderer.render` turns it into exposition text.
public struct MetricsSnapshot: Sendable {
    /// `stats.rules` is not read: the rule series are `rules`.
    public var stats: StatsResponse
    public var rules: RuleSeries
    public var sourcesAttached: Int
    public var sourcesPending: Int
    /// Attached interfaces still on clsact filters, waiting for their tcx links.
    public var tcxPending: Int
    public var applySeconds: Histogram
    public var build: BuildInfo
    public var process: ProcessMetrics?

    /// `rules`: nil for `stats.rules`.
    public init(stats: StatsResponse, rules: RuleSeries? = nil, sourcesAttached: Int, sourcesPending: Int, tcxPending: Int = 0,
                applySeconds: Histogram, build: BuildInfo, process: ProcessMetrics?) {
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

        public subscript(i: Int) -> RuleStats {
            switch storage {
            case .list(let l):
                return l[i]
            case .view(let rules, let values, let offset):
                let r = rules[i]
                return RuleStats(session: r.session, filter: r.filter, direction: r.direction, priority: r.priority,
                                 action: r.action, hits: values[offset + i])
            }
        }
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
        public init(residentMemoryBytes: UInt64, virtualMemoryBytes: UInt64, cpuSeconds: Double, openFDs: Int,
                    maxFDs: UInt64?, startTimeSeconds: Double) {
            self.residentMemoryBytes = residentMemoryBytes; self.virtualMemoryBytes = virtualMemoryBytes
            self.cpuSeconds = cpuSeconds; self.openFDs = openFDs; self.maxFDs = maxFDs; self.startTimeSeconds = startTimeSeconds
        }
    }
}
