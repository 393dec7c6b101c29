import MirrorCore

/// The names the BPF objects (bpf/*.bpf.c) give their maps and programs, written
/// once. The objects are the truth: `ObjectNamesTests` opens each embedded object
/// and fails when a name here is missing there or the object has one not here.
/// Every lookup in Swift goes through these enums, never through a string.

/// The maps of bpf/classify.bpf.c (mirror_maps.h). Stage 2 (encap.bpf.c) declares
/// the same definitions and shares these maps by fd; it adds `EncapMap`.
public enum ClassifierMap: String, CaseIterable, Sendable {
    /// The generation in force, its slot and the mirror device.
    case active = "mirror_active"
    case policy = "mirror_policy"
    case prefilter = "mirror_prefilter"
    case session = "mirror_session"
    case target = "mirror_target"
    case sessionStats = "session_stats"
    case ruleStats = "rule_stats"
    case sourceStats = "source_stats"
    /// Counted by stage 2, read for the metrics.
    case encapStats = "encap_stats"
    /// Written by the agent, read by stage 2's direct path.
    case encapTemplates = "mirror_encap_templates"
    /// SPEC §5 (bpf/security.h).
    case security = "mirror_security"
    case flows = "mirror_flows"
    case securityStats = "security_stats"
    case fragments = "mirror_fragments"
}

/// The programs of bpf/classify.bpf.c.
public enum ClassifierProgram: String, CaseIterable, Sendable {
    /// TC ingress of a source device = the ENI's outbound (SPEC §4).
    case tcIngress = "mirror_tc_ingress"
    /// TC egress of a source device = the ENI's inbound.
    case tcEgress = "mirror_tc_egress"
    /// BPF_PROG_TEST_RUN twins returning the verdict instead of cloning.
    case testIngress = "mirror_test_ingress"
    case testEgress = "mirror_test_egress"
    /// Returns at once: the cost of BPF_PROG_TEST_RUN itself (benchmark baseline).
    case testNop = "mirror_test_nop"

    /// The test program that decides for `direction`.
    public static func test(_ direction: Direction) -> ClassifierProgram {
        direction == .inbound ? .testEgress : .testIngress
    }
}

/// The maps of bpf/encap.bpf.c beyond the shared `ClassifierMap`s.
public enum EncapMap: String, CaseIterable, Sendable {
    /// The segmenter pair's tx ifindex (0: none).
    case segmenter = "mirror_segmenter"
}

/// The programs of bpf/encap.bpf.c.
public enum EncapProgram: String, CaseIterable, Sendable {
    /// Stage 2, on the mirror device's egress.
    case encap = "mirror_encap"
    /// On the segmenter's rx end: segments come back to stage 2.
    case segmented = "mirror_segmented"
}
