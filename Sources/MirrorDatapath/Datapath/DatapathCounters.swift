import MirrorCompiler
import MirrorCore

/// The raw counters of a datapath, each with the stable slot it was read from and the
/// labels of the policy in force when it was read. Values are what the BPF
/// maps hold (CPUs summed): they restart from 0 when a slot is cleared for reuse.
/// `MetricsContinuity` turns them into never-decreasing series.
public struct DatapathCounters: Sendable {
    public struct Session: Hashable, Sendable {
        public var slot: UInt16
        public var id: String
        /// bpf session_stats: accepted by one of the session's rules (all sources and
        /// directions together: that map is keyed by session slot only).
        public var packets: UInt64 = 0, bytes: UInt64 = 0
        /// bpf session_stats (SPEC §10): of `packets`, those no copy was made of, by
        /// why (sampleOneIn, the session's rateLimit, the host's --max-mirror-bps).
        public var skippedSampledOut: UInt64 = 0, skippedRateLimit: UInt64 = 0, skippedHostBudget: UInt64 = 0
        /// bpf encap_stats (stage 2). `copiesSent`: put on the underlay by stage 2 itself
        /// (all of them direct); `copiesSentDevice`: handed to the VXLAN device instead
        /// (collectors whose route the template cannot describe), not in `copiesSent`.
        public var copiesSent: UInt64 = 0, copiesSentBytes: UInt64 = 0, copiesSentDirect: UInt64 = 0
        public var copiesSentDevice: UInt64 = 0
        public var truncatedPacketLength: UInt64 = 0, truncatedMTU: UInt64 = 0
        public var droppedSessionGone: UInt64 = 0, droppedNoTarget: UInt64 = 0
        public var droppedTruncate: UInt64 = 0, droppedEncapsulation: UInt64 = 0
        /// No route toward the collector: nothing could leave (SPEC §11: never counted as sent).
        public var droppedNoRoute: UInt64 = 0
        /// The next hop toward the collector is not resolved: dropped, never queued.
        public var droppedNeighborUnresolved: UInt64 = 0
        /// SPEC §10: no healthy collector.
        public var droppedTargetUnhealthy: UInt64 = 0
        /// GSO copies whose segments would not fit, handed to the segmenter; their
        /// segments come back and count as sent (and truncated when cut) like any copy.
        public var segmented: UInt64 = 0
        /// GSO copies whose segments would not fit, cut as one packet for want of a
        /// segmenter (keeping only the first segment). Each is also counted in
        /// `truncatedPacketLength` or `truncatedMTU`: not a reason of its own.
        public var truncatedGSO: UInt64 = 0
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
        public init(
            sessionSlot: UInt16, direction: Direction, ruleIndex: UInt8, session: String, filter: String,
            priority: Int, action: RuleAction, hits: UInt64
        ) {
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
        /// Packets no enabled session's rule matched that a disabled session's would accept.
        public var sessionDisabled: UInt64 = 0
        /// bpf security_stats (SPEC §5); nil when the datapath has no such counters.
        /// Suppressed packets are not in `seen`: they stop before classification.
        public var suppressedBySecurityGroup: UInt64?, suppressedByAcl: UInt64?
        /// bpf security_stats: packets the security groups let through as part of a
        /// connection they had allowed (the outbound ACL can still suppress them); nil
        /// as above.
        public var established: UInt64?
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
        /// Indexed by `BPFDatapath.ruleStatsKey`; a rule beyond it reads 0.
        let hits: [UInt64]

        public init() { self.init(table: RuleTable(), hits: []) }
        public init(table: RuleTable, hits: [UInt64]) {
            self.table = table; self.hits = hits; positions = table.positions()
        }

        public var startIndex: Int { 0 }
        public var endIndex: Int { positions.count }

        public subscript(i: Int) -> Rule {
            let (key, info) = table.entry(at: i, positions)
            let k = BPFDatapath.ruleStatsKey(
                sessionSlot: key.sessionSlot, direction: key.direction,
                ruleIndex: key.ruleIndex)
            return Rule(
                sessionSlot: key.sessionSlot, direction: key.direction, ruleIndex: key.ruleIndex,
                session: info.sessionID, filter: info.filterID, priority: info.priority,
                action: info.action, hits: k < hits.count ? hits[k] : 0)
        }
    }

    public var sessions: [Session] = []
    public var rules = Rules()
    public var sources: [Source] = []
    /// Frames dropped on the mirror device that were not copies.
    public var foreignDropped: UInt64 = 0
    /// Frames dropped on the segmenter's receiving end that were not copies (bpf
    /// encap_stats dropped_segmenter_not_copy).
    public var segmenterForeignDropped: UInt64 = 0
    /// Connections the stateful security groups hold as established now (entries of
    /// bpf mirror_flows not idle); nil when the datapath has no such table. A gauge.
    public var securityFlows: Int?

    public init(sessions: [Session] = [], rules: Rules = Rules(), sources: [Source] = [], foreignDropped: UInt64 = 0) {
        self.sessions = sessions; self.rules = rules; self.sources = sources; self.foreignDropped = foreignDropped
    }
}
