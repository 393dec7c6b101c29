import CLibbpf
import CMirrorABI
import Foundation
import Glibc
import MirrorCompiler
import MirrorCore

/// BPF_PROG_TEST_RUN: the oracle's twin in the kernel (explain, differential tests).
extension BPFDatapath {
    // MARK: test run

    public struct TestRunResult: Hashable, Sendable {
        public var retval: UInt32
        /// Average ns per run, as the kernel measured it.
        public var durationNs: UInt32
    }

    /// BPF_PROG_TEST_RUN of `program` on `frame`. `ifindex` is the device the skb is
    /// on (1 = lo works without a real device); the test programs take the source
    /// device from `mark` when it is non-zero.
    /// `cb0` is skb->cb[0] (MIRROR_COPY_MAGIC makes the frame look like a copy).
    public func testRun(
        _ program: ClassifierProgram, frame: [UInt8], ifindex: UInt32 = 1, mark: UInt32 = 0,
        cb0: UInt32 = 0, repeat count: UInt32 = 1
    ) throws(DatapathError) -> TestRunResult {
        var retval: UInt32 = 0, duration: UInt32 = 0
        let fd = programFD(program)
        let rc = frame.withUnsafeBytes { raw in
            clibbpf_test_run_skb(fd, raw.baseAddress, UInt32(raw.count), ifindex, mark, cb0, count, &retval, &duration)
        }
        if rc != 0 { throw DatapathError("test run \(program.rawValue)", errno: -rc) }
        return TestRunResult(retval: retval, durationNs: duration)
    }
}

extension BPFDatapath {
    /// BPF_PROG_TEST_RUN of stage 2 (`mirror_encap`, loaded first) on a copy whose
    /// metadata stage 1 would have left in skb->cb: magic, `mirror_meta_word1`, the
    /// flow hash, the source slot. Returns the verdict (TC_ACT_REDIRECT for the direct
    /// path) and the frame as stage 2 left it: what would go on the wire.
    public func testRunEncap(
        frame: [UInt8], sessionSlot: UInt16, slot: UInt8, flowHash: UInt32
    ) throws(DatapathError) -> (retval: UInt32, frame: [UInt8]) {
        try loadEncap()
        let cb: [UInt32] = [MIRROR_COPY_MAGIC, mirror_meta_word1(UInt32(sessionSlot), UInt32(slot), 0), flowHash, 0, 0]
        var out = [UInt8](repeating: 0, count: frame.count + 256)
        var outSize = UInt32(out.count)
        var retval: UInt32 = 0
        let fd = encapFD
        let rc = frame.withUnsafeBytes { raw in
            out.withUnsafeMutableBytes { o in
                clibbpf_test_run_skb_cb(fd, raw.baseAddress, UInt32(raw.count), cb, o.baseAddress, &outSize, &retval)
            }
        }
        if rc != 0 { throw DatapathError("test run mirror_encap", errno: -rc) }
        return (retval, Array(out.prefix(Int(outSize))))
    }
}

/// A decoded verdict of the test programs (bpf/mirror_abi.h, mirror_verdict).
public struct Verdict: Hashable, Sendable, CustomStringConvertible {
    public enum Outcome: Sendable {
        case noPolicy, copy, notIP, noMatch, reject, accept, unknown
        /// No enabled rule matched; a disabled session's rule would accept (`sessionSlot`, `ruleIndex`).
        case sessionDisabled
        /// SPEC §5 (bpf/security.h): see `security`.
        case suppressedBySecurityGroup, suppressedByAcl

        /// The codes are the ABI's (enum mirror_outcome); `unknown` for any other.
        init(code: UInt32) {
            switch code {
            case MIRROR_OUTCOME_NO_POLICY.rawValue: self = .noPolicy
            case MIRROR_OUTCOME_COPY.rawValue: self = .copy
            case MIRROR_OUTCOME_NOT_IP.rawValue: self = .notIP
            case MIRROR_OUTCOME_NO_MATCH.rawValue: self = .noMatch
            case MIRROR_OUTCOME_REJECT.rawValue: self = .reject
            case MIRROR_OUTCOME_ACCEPT.rawValue: self = .accept
            case MIRROR_OUTCOME_SUPPRESSED_BY_SECURITY_GROUP.rawValue: self = .suppressedBySecurityGroup
            case MIRROR_OUTCOME_SUPPRESSED_BY_ACL.rawValue: self = .suppressedByAcl
            case MIRROR_OUTCOME_SESSION_DISABLED.rawValue: self = .sessionDisabled
            default: self = .unknown
            }
        }
    }
    public var outcome: Outcome
    public var sessionSlot: UInt16
    public var ruleIndex: UInt8
    public var slot: UInt8

    public init(_ raw: UInt32) {
        outcome = Outcome(code: mirror_verdict_outcome(raw))
        sessionSlot = UInt16(mirror_verdict_session_slot(raw))
        ruleIndex = UInt8(mirror_verdict_rule_index(raw))
        slot = UInt8(mirror_verdict_slot(raw))
        security = SecurityVerdict(raw: raw)
    }

    /// The group/ACL rule of a suppression (SecurityMaps.swift).
    public var security: SecurityVerdict?

    public var mirrored: Bool { outcome == .accept }
    public var decided: Bool { outcome == .accept || outcome == .reject }

    public var description: String {
        decided ? "\(outcome) session slot \(sessionSlot) rule \(ruleIndex) (gen slot \(slot))" : "\(outcome) (gen slot \(slot))"
    }
}
