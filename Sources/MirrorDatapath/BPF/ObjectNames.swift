import MirrorCore

// The names the BPF objects (bpf/*.bpf.c) give their maps and programs, written
// once. The objects are the truth: `ObjectNamesTests` opens each embedded object
// and fails when a name here is missing there or the object has one not here.
// Every lookup in Swift goes through these enums, never through a string.

/// The maps of bpf/classify.bpf.c (mirror_maps.h). Stage 2 (encap.bpf.c) declares
/// the same definitions and shares these maps by fd; it adds `EncapMap`.
public enum ClassifierMap: String, CaseIterable, Sendable {
    // The policy: the generation in force (and the mirror device), then per slot.
    case active = "mirror_active", policy = "mirror_policy", prefilter = "mirror_prefilter"
    case session = "mirror_session", target = "mirror_target"
    // Per-CPU counters; `encapStats` is counted by stage 2.
    case sessionStats = "session_stats", ruleStats = "rule_stats", sourceStats = "source_stats"
    case encapStats = "encap_stats"
    // Written by the agent, read by stage 2's direct path.
    case encapTemplates = "mirror_encap_templates"
    // Written by the agent's health checks, read by stage 2 (SPEC §10).
    case targetHealth = "mirror_target_health"
    // SPEC §5 (bpf/security.h).
    case security = "mirror_security", flows = "mirror_flows", securityStats = "security_stats"
    case fragments = "mirror_fragments"
    // agentctl capture (SPEC §11, bpf/capture.h): the classifier's only.
    case captureWant = "mirror_capture_want", captureSession = "mirror_capture_session"
    case captureRing = "mirror_capture_ring", captureScratch = "mirror_capture_scratch", captureStats = "capture_stats"
    // SPEC §10 (bpf/limits.h): the rate limits' buckets and the host budget.
    case limiter = "mirror_limiter"
}

/// The programs of bpf/classify.bpf.c. TC ingress of a source device is the ENI's
/// outbound, TC egress its inbound (SPEC §4); the test twins return the verdict
/// instead of cloning (BPF_PROG_TEST_RUN); `testNop` returns at once, the cost of
/// BPF_PROG_TEST_RUN itself (benchmark baseline).
public enum ClassifierProgram: String, CaseIterable, Sendable {
    case tcIngress = "mirror_tc_ingress", tcEgress = "mirror_tc_egress"
    case testIngress = "mirror_test_ingress", testEgress = "mirror_test_egress", testNop = "mirror_test_nop"

    /// The test program that decides for `direction`.
    public static func test(_ direction: Direction) -> ClassifierProgram {
        direction == .inbound ? .testEgress : .testIngress
    }
}

/// The maps of bpf/encap.bpf.c beyond the shared `ClassifierMap`s: the segmenter
/// pair's tx ifindex (0: none), and the ERSPAN sequence number of each session slot.
public enum EncapMap: String, CaseIterable, Sendable {
    case segmenter = "mirror_segmenter"
    case erspanSequence = "mirror_erspan_seq"
}

/// The programs of bpf/encap.bpf.c: stage 2 on the mirror device's egress, and the
/// one on the segmenter's rx end that hands segments back to it.
public enum EncapProgram: String, CaseIterable, Sendable {
    case encap = "mirror_encap", segmented = "mirror_segmented"
}
