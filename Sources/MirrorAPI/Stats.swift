import MirrorCore

// Counters of the datapath as the agent reports them: GET /v1/stats (agentctl stats)
// and GET /metrics (Prometheus) show the same numbers.
//
// Every counter here is monotonic for its label set: the agent carries values across
// slot reuse and rule reordering (see MirrorAgent/MetricsContinuity.swift).

public enum StatsPath {
    public static let stats = "/v1/stats"

    /// GET /v1/stats?session=ID&source=ID...: only the named sessions (with their
    /// rules) and sources. A filter on one kind leaves the other kind out.
    public static func stats(sessions: [String], sources: [String]) -> String {
        let items = sessions.map { "session=" + APIPath.percentEncode($0) } + sources.map { "source=" + APIPath.percentEncode($0) }
        return items.isEmpty ? stats : stats + "?" + items.joined(separator: "&")
    }
}

public struct StatsResponse: Hashable, Sendable, Codable {
    /// Policy generation in force.
    public var generation: UInt64
    /// "kernel" or "memory"; a memory datapath has no counters (`countersAvailable` false).
    public var datapath: String
    public var countersAvailable: Bool
    /// Unix time of the read, seconds (for rates).
    public var time: Double
    public var sessions: [SessionStats]
    public var rules: [RuleStats]
    public var sources: [SourceStats]
    /// Frames on the mirror device that were not copies (dropped there; bpf/encap.bpf.c).
    public var mirrorDeviceForeignDropped: UInt64
    /// Frames on the segmenter that were not copies (dropped there; bpf/encap.bpf.c).
    public var segmenterForeignDropped: UInt64 = 0
    /// Connections the stateful security groups hold as established now (SPEC §5); nil
    /// when the datapath keeps no such table. A gauge, not a counter.
    public var securityFlows: Int?

    public init(
        generation: UInt64, datapath: String, countersAvailable: Bool, time: Double,
        sessions: [SessionStats] = [], rules: [RuleStats] = [], sources: [SourceStats] = [],
        mirrorDeviceForeignDropped: UInt64 = 0
    ) {
        self.generation = generation; self.datapath = datapath; self.countersAvailable = countersAvailable
        self.time = time; self.sessions = sessions; self.rules = rules; self.sources = sources
        self.mirrorDeviceForeignDropped = mirrorDeviceForeignDropped
    }
}

/// One session. `packets`/`bytes` count what its accept rules selected on all its
/// sources and both directions together: the datapath counts per session slot
/// (bpf/mirror_abi.h session_stats), not per source or direction.
public struct SessionStats: Hashable, Sendable, Codable {
    public var session: String
    public var packets: UInt64
    public var bytes: UInt64
    /// Copies stage 2 encapsulated and put on the underlay itself, and their inner
    /// bytes after truncation.
    public var copiesSent: UInt64
    public var copiesSentBytes: UInt64
    /// Of `copiesSent`: encapsulated by the datapath itself from a template and sent
    /// straight to the underlay (all of them: device copies are counted apart).
    public var copiesSentDirect: UInt64 = 0
    /// Vxlan copies handed to the VXLAN device instead (collectors whose route the
    /// template cannot describe), not in `copiesSent`: the device may still drop them.
    public var copiesSentDevice: UInt64 = 0
    /// reason ("packet_length", "mtu") → copies cut.
    public var truncated: [String: UInt64]
    /// GSO copies whose segments would not fit, handed to the segmenter (SPEC §6: one
    /// copy per wire segment); the segments are counted in `copiesSent` and `truncated`.
    public var copiesSegmented: UInt64 = 0
    /// GSO copies cut as one packet for want of a segmenter, keeping their first
    /// segment only; each is also in `truncated` (or `dropped`, truncate_failed).
    public var copiesTruncatedGSO: UInt64 = 0
    /// reason ("session_gone", "no_target", "truncate_failed", "encapsulation_failed", "no_route",
    /// "neighbor_unresolved", "target_unhealthy") → copies dropped.
    public var dropped: [String: UInt64]
    /// SPEC §10: reason ("sampled_out", "rate_limit", "host_budget") → packets of
    /// `packets` no copy was made of.
    public var skipped: [String: UInt64] = [:]

    public init(
        session: String, packets: UInt64 = 0, bytes: UInt64 = 0, copiesSent: UInt64 = 0, copiesSentBytes: UInt64 = 0,
        truncated: [String: UInt64] = [:], dropped: [String: UInt64] = [:]
    ) {
        self.session = session; self.packets = packets; self.bytes = bytes; self.copiesSent = copiesSent
        self.copiesSentBytes = copiesSentBytes; self.truncated = truncated; self.dropped = dropped
    }
}

/// One rule of one session's filter in one direction.
public struct RuleStats: Hashable, Sendable, Codable {
    public var session: String
    public var filter: String
    public var direction: Direction
    public var priority: Int
    public var action: RuleAction
    public var hits: UInt64

    public init(session: String, filter: String, direction: Direction, priority: Int, action: RuleAction, hits: UInt64) {
        self.session = session; self.filter = filter; self.direction = direction
        self.priority = priority; self.action = action; self.hits = hits
    }
}

/// One source and direction.
public struct SourceStats: Hashable, Sendable, Codable {
    public var source: String
    public var interface: String
    public var state: SourceState
    public var direction: Direction
    /// Packets classified (IP or not) while the source had a policy; packets its
    /// security groups or network ACL dropped stop before classification and are
    /// only in `notMirrored` (suppressed_by_security_group, suppressed_by_acl).
    public var seen: UInt64
    /// Accepted and cloned.
    public var mirrored: UInt64
    /// reason ("no_match", "rejected", "not_ip", "clone_failed", and with a datapath
    /// that evaluates SPEC §5: "suppressed_by_security_group", "suppressed_by_acl") → packets.
    public var notMirrored: [String: UInt64]
    /// Packets the security groups let through as part of a connection they had allowed
    /// (SPEC §5; the outbound ACL can still suppress them); nil as for the suppressions.
    public var established: UInt64?

    public init(
        source: String, interface: String, state: SourceState, direction: Direction, seen: UInt64 = 0,
        mirrored: UInt64 = 0, notMirrored: [String: UInt64] = [:]
    ) {
        self.source = source; self.interface = interface; self.state = state; self.direction = direction
        self.seen = seen; self.mirrored = mirrored; self.notMirrored = notMirrored
    }
}
