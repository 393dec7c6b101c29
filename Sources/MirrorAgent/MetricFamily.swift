/// The families of GET /metrics, each declared once: name, type, help, label names,
/// the values a `reason` label can take and, for the datapath counters, how the
/// counter continuity knows its series. `MetricsRenderer` writes every HELP, TYPE and
/// sample from these declarations; `AgentMetrics` builds the continuity ids from them;
/// `MetricFamilyTests` checks a full scrape against `all`, both ways.
public struct MetricFamily: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable { case counter, gauge, histogram }

    /// The name in the exposition. Renaming a family is a change its users see (their
    /// queries and dashboards), but it does not reset its series: see `Continuity`.
    public let name: String
    public let type: Kind
    public let help: String
    /// In the order the samples carry them.
    public let labels: [String]
    /// The values a `reason` label can take; empty for a family without one.
    public let reasons: [String]
    /// nil: not a datapath counter (the agent's own metrics: rendered as they are).
    public let continuity: Continuity?

    /// How `MetricsContinuity` tells the family's series and counters apart. Its ids
    /// are FNV-1a hashes of these strings and of the label values, persisted in the
    /// continuity file, so every string here is frozen: changing one resets the
    /// family's carried amounts once. They were the family's name and label names
    /// when the ids were first written (the ids were then the hashes of the rendered
    /// series text), which keeps the files of earlier versions valid.
    public struct Continuity: Hashable, Sendable {
        /// The family in a series id.
        public let identity: String
        /// The labels that identify a series, in id order (a `reason` label last).
        /// The session families leave out their always-empty source and direction.
        public let labels: [String]
        /// The counter's field in its map key: "session/<slot>/" + field (+ reason).
        public let field: String
        /// `identity`, hashed once.
        let identityID: MetricsContinuity.ID

        init(_ identity: String, labels: [String], field: String) {
            self.identity = identity; self.labels = labels; self.field = field
            identityID = MetricsContinuity.ID(identity)
        }

        public static func == (a: Continuity, b: Continuity) -> Bool {
            a.identity == b.identity && a.labels == b.labels && a.field == b.field
        }
        public func hash(into h: inout Hasher) { h.combine(identity); h.combine(labels); h.combine(field) }
    }

    init(
        _ name: String, _ type: Kind, _ help: String, labels: [String] = [], reasons: [String] = [],
        continuity: Continuity? = nil
    ) {
        precondition(reasons.isEmpty == !labels.contains("reason"), "\(name): a reason label needs its reasons, and only it")
        self.name = name; self.type = type; self.help = help; self.labels = labels; self.reasons = reasons
        self.continuity = continuity
    }
}

extension MetricFamily {
    /// A datapath counter labelled `by` (a session, or a source and direction): its
    /// continuity identity is its name and those labels, its counter `field` of the key.
    static func counter(_ name: String, _ help: String, by labels: [String], field: String) -> MetricFamily {
        MetricFamily(name, .counter, help, labels: labels, continuity: .init(name, labels: labels, field: field))
    }

    /// As `counter(by:)`, by reason too: one series per value of `Reason`.
    static func counter<Reason: CaseIterable & RawRepresentable>(
        _ name: String, _ help: String, by labels: [String], reasons: Reason.Type, field: String
    ) -> MetricFamily where Reason.RawValue == String {
        MetricFamily(
            name, .counter, help, labels: labels + ["reason"], reasons: Reason.allCases.map(\.rawValue),
            continuity: .init(name, labels: labels + ["reason"], field: field))
    }
}

// MARK: reasons

extension MetricFamily {
    /// Why a copy was cut (bpf encap_stats). Exclusive: a copy is cut for one of them.
    public enum TruncationReason: String, CaseIterable, Sendable {
        case packetLength = "packet_length", mtu
    }

    /// Why stage 2 dropped a copy (bpf encap_stats).
    public enum CopyDropReason: String, CaseIterable, Sendable {
        case sessionGone = "session_gone", noTarget = "no_target", truncateFailed = "truncate_failed"
        case encapsulationFailed = "encapsulation_failed", noRoute = "no_route"
        /// The next hop toward the collector is not resolved (no ARP/ND answer yet).
        case neighborUnresolved = "neighbor_unresolved"
        /// SPEC §10: no collector of the target was healthy.
        case targetUnhealthy = "target_unhealthy"
    }

    /// Why no copy was made of a packet the session accepted (bpf session_stats, SPEC §10).
    public enum CopySkipReason: String, CaseIterable, Sendable {
        case sampledOut = "sampled_out", rateLimit = "rate_limit", hostBudget = "host_budget"
    }

    /// Why a packet of a source was not mirrored (bpf source_stats, security_stats).
    /// session_disabled: no enabled session's rule matched, and the first disabled
    /// session with a matching rule would have mirrored it (as `explain` says).
    public enum NotMirroredReason: String, CaseIterable, Sendable {
        case noMatch = "no_match", rejected, notIP = "not_ip", cloneFailed = "clone_failed"
        case sessionDisabled = "session_disabled"
        case suppressedBySecurityGroup = "suppressed_by_security_group", suppressedByAcl = "suppressed_by_acl"
    }
}

// MARK: the families, in exposition order

extension MetricFamily {
    /// Every family the agent can expose, in the order a scrape shows them.
    public static let all: [MetricFamily] = datapath + agent + process

    /// Read from the BPF maps; rendered only when the counters could be read.
    public static let datapath: [MetricFamily] = [
        sessionPackets, sessionBytes, copiesSent, copiesSentDirect, copiesSentDevice, copiesSentBytes, copiesTruncated, copiesTruncatedGSO,
        copiesSegmented, copiesDropped, copiesSkipped, ruleHits, sourcePacketsSeen, sourcePacketsMirrored, sourcePacketsEstablished,
        packetsNotMirrored, deviceForeignFramesDropped, segmenterForeignFramesDropped, securityFlows,
    ]
    public static let agent: [MetricFamily] = [
        datapathCountersAvailable, policyGeneration, policyApplySeconds, sources, tcxPendingInterfaces, targetBackendUp,
        agentRepairs, agentBuildInfo,
    ]
    /// As the Prometheus client libraries name them (Linux /proc).
    public static let process: [MetricFamily] = [
        processCPUSeconds, processOpenFDs, processMaxFDs, processResidentMemory, processVirtualMemory, processStartTime,
    ]

    // Per session (bpf session_stats, encap_stats). The datapath counts per session
    // (all its sources and directions); per source and direction, see the
    // mirror_source_* families.
    public static let sessionPackets = counter(
        "mirror_session_packets_total", "Packets accepted by a rule of the session, on all its sources and directions.",
        by: ["session"], field: "packets")
    public static let sessionBytes = counter(
        "mirror_session_bytes_total",
        "Bytes of the packets accepted by a rule of the session, on all its sources and directions (whole frames, before truncation).",
        by: ["session"], field: "bytes")
    public static let copiesSent = counter(
        "mirror_copies_sent_total",
        "Copies encapsulated by the datapath and put on the underlay toward their collector (copies handed to the VXLAN device are in mirror_copies_sent_device_total instead).",
        by: ["session"], field: "sent")
    public static let copiesSentDirect = counter(
        "mirror_copies_sent_direct_total",
        "Of mirror_copies_sent_total: encapsulated by the datapath itself and sent straight to the underlay (all of them since copies handed to the VXLAN device are counted apart).",
        by: ["session"], field: "sent_direct")
    public static let copiesSentDevice = counter(
        "mirror_copies_sent_device_total",
        "Vxlan copies handed to the VXLAN device (mirror0) because the collector's route is not out of an Ethernet device (or was not looked up yet); not in mirror_copies_sent_total: the device routes and resolves them afterwards and may drop them (see its tx_dropped).",
        by: ["session"], field: "sent_device")
    public static let copiesSentBytes = counter(
        "mirror_copies_sent_bytes_total", "Inner frame bytes of the copies sent, after truncation.", by: ["session"], field: "sent_bytes")
    public static let copiesTruncated = counter(
        "mirror_copies_truncated_total", "Copies cut to the session's packetLength or to fit the path MTU (SPEC §6).",
        by: ["session"], reasons: TruncationReason.self, field: "truncated/")
    public static let copiesTruncatedGSO = counter(
        "mirror_copies_truncated_gso_total",
        "GSO copies cut as one packet because no segmenter was set up, so only their first segment was mirrored (SPEC §6 wants a copy per wire segment); each is also in mirror_copies_truncated_total, or in mirror_copies_dropped_total when the cut failed.",
        by: ["session"], field: "truncated_gso")
    public static let copiesSegmented = counter(
        "mirror_copies_segmented_total",
        "GSO copies whose segments would not fit, handed to the segmenter (SPEC §6); their wire-size segments come back and count as copies sent, and truncated when cut.",
        by: ["session"], field: "segmented")
    public static let copiesDropped = counter(
        "mirror_copies_dropped_total",
        "Copies dropped by the encapsulation stage, by reason (clone failures are counted per source as not mirrored, reason clone_failed).",
        by: ["session"], reasons: CopyDropReason.self, field: "dropped/")

    public static let copiesSkipped = counter(
        "mirror_copies_skipped_total",
        "Packets accepted by the session of which no copy was made, by reason (SPEC §10): sampled_out (sampleOneIn), rate_limit (the session's rateLimit), host_budget (mirror-agent --max-mirror-bps). Decided before the clone; included in mirror_session_packets_total.",
        by: ["session"], reasons: CopySkipReason.self, field: "skipped/")

    // Per rule (bpf rule_stats; the key is the rule's position, no field).
    public static let ruleHits = MetricFamily(
        "mirror_rule_hits_total", .counter, "Packets for which the rule was the first match (SPEC §4), accept or reject.",
        labels: ["session", "filter", "direction", "rule_priority", "action"],
        continuity: .init(
            "mirror_rule_hits_total", labels: ["session", "filter", "direction", "rule_priority", "action"],
            field: ""))

    // Per source and direction (bpf source_stats, security_stats).
    public static let sourcePacketsSeen = counter(
        "mirror_source_packets_seen_total",
        "Packets classified on the source and direction (not those its security groups or network ACL dropped: see mirror_packets_not_mirrored_total).",
        by: ["source", "direction"], field: "seen")
    public static let sourcePacketsMirrored = counter(
        "mirror_source_packets_mirrored_total", "Packets of the source and direction accepted and cloned.", by: ["source", "direction"],
        field: "mirrored")
    public static let sourcePacketsEstablished = counter(
        "mirror_source_packets_established_total",
        "Packets of the source and direction that its security groups let through as part of a connection they had allowed (SPEC §5, stateful); the outbound network ACL can still suppress them.",
        by: ["source", "direction"], field: "established")
    public static let packetsNotMirrored = counter(
        "mirror_packets_not_mirrored_total", "Packets of the source and direction that were not mirrored, by reason.",
        by: ["source", "direction"], reasons: NotMirroredReason.self, field: "")

    // Of the whole datapath (bpf encap_stats[MIRROR_ENCAP_STATS_NOT_COPY]).
    public static let deviceForeignFramesDropped = MetricFamily(
        "mirror_device_foreign_frames_dropped_total", .counter,
        "Frames leaving the mirror device that were not copies (dropped there).",
        continuity: .init("mirror_device_foreign_frames_dropped_total", labels: [], field: "not_copy"))
    public static let segmenterForeignFramesDropped = MetricFamily(
        "mirror_segmenter_foreign_frames_dropped_total", .counter,
        "Frames arriving on the segmenter that were not copies, or copies with no mirror device to go back to (dropped there).",
        continuity: .init("mirror_segmenter_foreign_frames_dropped_total", labels: [], field: "segmenter_not_copy"))

    // The stateful security groups' connection table (bpf mirror_flows): a gauge.
    public static let securityFlows = MetricFamily(
        "mirror_security_flows", .gauge,
        "Connections the stateful security groups hold as established now: their first packet was allowed and they have not been idle past the timeout (SPEC §5)."
    )

    // The agent's own.
    public static let datapathCountersAvailable = MetricFamily(
        "mirror_datapath_counters_available", .gauge,
        "1 when the datapath counters were read for this scrape, 0 when not (no kernel datapath, or a read error).")
    public static let policyGeneration = MetricFamily(
        "mirror_policy_generation", .gauge, "Generation of the policy in force (increases with every applied change).")
    public static let policyApplySeconds = MetricFamily(
        "mirror_policy_apply_seconds", .histogram, "Time to apply a policy to the datapath.")
    public static let sources = MetricFamily(
        "mirror_sources", .gauge,
        "Sources by state: attached (programs on the interface) or pending (no such interface yet).", labels: ["state"])
    public static let tcxPendingInterfaces = MetricFamily(
        "mirror_tcx_pending_interfaces", .gauge,
        "Attached source interfaces still on clsact filters until the background mover gives them tcx links (a large apply attaches that way first)."
    )
    /// SPEC §10: one series per collector of every target (a nic target's address is
    /// its one backend).
    public static let targetBackendUp = MetricFamily(
        "mirror_target_backend_up", .gauge,
        "1 when the collector gets copies: healthy by its target's healthCheck, or its target has none (never probed); 0 when unhealthy.",
        labels: ["target", "backend"])
    /// What the datapath puts back when someone removes it (its mirror device, stage 2,
    /// the segmenter pair); each is a series from the start, at 0 until it happens.
    public static let agentRepairs = MetricFamily(
        "mirror_agent_repairs_total", .counter,
        "The agent's own devices, programs and pins put back after they were removed (mirror_device, encap_program, pins, segmenter).",
        labels: ["what"])
    public static let repairKinds = ["mirror_device", "encap_program", "pins", "segmenter"]
    public static let agentBuildInfo = MetricFamily(
        "mirror_agent_build_info", .gauge, "Agent version, source commit and running kernel; always 1.",
        labels: ["version", "commit", "kernel"])

    public static let processCPUSeconds = MetricFamily(
        "process_cpu_seconds_total", .counter, "Total user and system CPU time spent in seconds.")
    public static let processOpenFDs = MetricFamily("process_open_fds", .gauge, "Number of open file descriptors.")
    public static let processMaxFDs = MetricFamily("process_max_fds", .gauge, "Maximum number of open file descriptors.")
    public static let processResidentMemory = MetricFamily(
        "process_resident_memory_bytes", .gauge, "Resident memory size in bytes.")
    public static let processVirtualMemory = MetricFamily(
        "process_virtual_memory_bytes", .gauge, "Virtual memory size in bytes.")
    public static let processStartTime = MetricFamily(
        "process_start_time_seconds", .gauge, "Start time of the process since unix epoch in seconds.")
}
