// Classifier benchmark: ns per packet of the loaded classifier, measured
// by the kernel with BPF_PROG_TEST_RUN repeat, for these policies:
//   none          the interface has no sessions (policy lookup misses)
//   1x1           one session with one rule, which matches
//   3x10_last     3 sessions x 10 rules, only the very last rule matches
//   3x10_nomatch  3 sessions x 10 rules, nothing matches
//   1x1_limits    1x1 with a rateLimit far above the rate and sampleOneIn 1 (SPEC §10)
//   1x1_budget    1x1 with a host budget far above the rate
// The test-run twin of the program is measured (it decides exactly like the TC
// program but returns the verdict instead of cloning: the clone's cost belongs to
// the copy, not to classification). Writes `classifier_ns` into a results JSON file,
// keeping the other keys there.
//
// `region` (no root needed) measures the fleet controller's pure work at the SPEC §9
// quotas: parse + validate a region document of 20,000 sessions and 100,000 sources
// over 1,000 hosts, render every host's document and encode each (one at a time, as
// a controller writes them), with the process's peak RSS. `--write FILE` stores the
// generated region; `--input FILE` measures a stored one (so the peak RSS is the
// controller's alone, without the generator's).
//
// With --baseline-object FILE (another build of bpf/classify.bpf.c, e.g. without the
// capture gate: scripts/bench-classifier builds it with -DMIRROR_BENCH_NO_CAPTURE),
// both objects are measured round by round in the same run, side by side, and
// `classifier_baseline_ns` is written too.
//
// `fleet` (FleetBenchmark.swift) drives a real etcd cluster, the controller and agents;
// `scripts/bench fleet` starts the cluster and runs it.
//
// Usage: mirror-bench [classifier|control-plane|region] [--output FILE] [--repeat N] [--rounds N]
//                     [--input FILE] [--write FILE] [--rules N] [--baseline-object FILE]
//        mirror-bench fleet --etcd ENDPOINTS [--etcd-cacert F --etcd-cert F --etcd-key F] --bin-dir DIR
//                     --work DIR [--agents N] [--changes N] [--sessions N --sources N --hosts N] [--output FILE]
import CLibbpf
import CMirrorABI
import Foundation
import MirrorCompiler
import MirrorCore
import MirrorDatapath

struct Options {
    var output: String? = nil
    var repeatCount: UInt32 = 200_000
    var rounds = 7
    var part = "classifier"
    var input: String? = nil
    var write: String? = nil
    var rules = 2
    var baselineObject: String? = nil
    var fleet = FleetBenchOptions()
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "classifier": o.part = "classifier"
        case "control-plane": o.part = "control-plane"
        case "region": o.part = "region"
        case "fleet": o.part = "fleet"
        case "--etcd": o.fleet.etcd = args.popFirst() ?? ""
        case "--etcd-cacert": o.fleet.cacert = args.popFirst()
        case "--etcd-cert": o.fleet.cert = args.popFirst()
        case "--etcd-key": o.fleet.key = args.popFirst()
        case "--bin-dir": o.fleet.binDir = args.popFirst() ?? ""
        case "--work": o.fleet.work = args.popFirst() ?? o.fleet.work
        case "--agents": o.fleet.agents = args.popFirst().flatMap { Int($0) } ?? o.fleet.agents
        case "--changes": o.fleet.changes = args.popFirst().flatMap { Int($0) } ?? o.fleet.changes
        case "--sessions": o.fleet.sessions = args.popFirst().flatMap { Int($0) } ?? o.fleet.sessions
        case "--sources": o.fleet.sources = args.popFirst().flatMap { Int($0) } ?? o.fleet.sources
        case "--hosts": o.fleet.hosts = args.popFirst().flatMap { Int($0) } ?? o.fleet.hosts
        case "--input": o.input = args.popFirst()
        case "--write": o.write = args.popFirst()
        case "--rules": o.rules = args.popFirst().flatMap { Int($0) } ?? o.rules
        case "--output": o.output = args.popFirst()
        case "--repeat": o.repeatCount = args.popFirst().flatMap { UInt32($0) } ?? o.repeatCount
        case "--rounds": o.rounds = args.popFirst().flatMap { Int($0) } ?? o.rounds
        case "--baseline-object": o.baselineObject = args.popFirst()
        case "-h", "--help":
            print(
                "usage: mirror-bench [classifier|control-plane|region] [--output FILE] [--repeat N] [--rounds N] "
                    + "[--input FILE] [--write FILE] [--rules N] [--baseline-object FILE]\n"
                    + "       mirror-bench fleet --etcd ENDPOINTS [--etcd-cacert F --etcd-cert F --etcd-key F] --bin-dir DIR "
                    + "--work DIR [--agents N] [--changes N] [--sessions N --sources N --hosts N] [--output FILE]")
            exit(0)
        default:
            FileHandle.standardError.write("mirror-bench: unknown argument \(a)\n".data(using: .utf8)!)
            exit(2)
        }
    }
    return o
}

/// 64-byte UDP/IPv4 frame 198.51.100.1:40000 -> 198.51.100.2:4000.
let frame = FrameBuilder.frame(
    for: PacketDescription(
        ethertype: .ipv4, protocol: 17, source: IPAddress("198.51.100.1"),
        destination: IPAddress("198.51.100.2"), sourcePort: 40000, destinationPort: 4000),
    options: FrameBuilder.Options(payloadBytes: 64 - 42))

func cidr(_ s: String) -> CIDR {
    let parts = s.split(separator: "/")
    return CIDR(address: IPAddress(String(parts[0]))!, prefixLength: Int(parts[1])!)
}

/// A rule that does not match the frame: a port range, addresses and protocol
/// close to it but not equal (so every field comparison is actually made).
func missRule(_ priority: Int) -> Rule {
    Rule(
        priority: priority, action: .accept, ethertype: .ipv4, protocol: .udp,
        source: cidr("198.51.100.0/24"), destination: cidr("198.51.100.0/24"),
        sourcePorts: PortRange(1, 39999), destinationPorts: PortRange(1, 65535))
}

func document(sessions: Int, rules: Int, lastMatches: Bool) -> Document {
    var doc = Document()
    doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.10"))]
    doc.sources = [Source(id: "s", interface: "bench0")]
    for s in 0..<sessions {
        var rs = (0..<rules).map { missRule($0 + 1) }
        if lastMatches && s == sessions - 1 {
            rs[rules - 1] = Rule(
                priority: rules, action: .accept, ethertype: .ipv4, protocol: .udp,
                source: cidr("198.51.100.0/24"), destination: cidr("198.51.100.2/32"),
                sourcePorts: PortRange(40000, 40000), destinationPorts: PortRange(4000, 4000))
        }
        doc.filters.append(Filter(id: "f\(s)", outbound: rs))
        doc.sessions.append(Session(id: "s\(s)", priority: s + 1, filter: "f\(s)", sources: ["s"], target: "t", vni: s + 1))
    }
    return doc
}

/// The session of `doc` with limits that never trigger (SPEC §10).
func limited(_ doc: Document) -> Document {
    var d = doc
    for i in d.sessions.indices {
        d.sessions[i].rateLimit = RateLimit(packetsPerSecond: 1_000_000_000, bitsPerSecond: 1_000_000_000_000)
        d.sessions[i].sampleOneIn = 1
    }
    return d
}

let options = parseOptions()
if options.part == "region" {
    exit(regionBenchmark(options))
}
if options.part == "fleet" {
    exit(fleetBenchmark(options.fleet, output: options.output))
}
guard getuid() == 0 else {
    FileHandle.standardError.write("mirror-bench: needs root (BPF_PROG_TEST_RUN)\n".data(using: .utf8)!)
    exit(1)
}

/// SPEC §3-shaped document with `n` sessions: 3 sessions per source, 200 per
/// load-balancer target, 1000 per filter (10 + 10 rules each).
func largeDocument(sessions n: Int) -> Document {
    var doc = Document()
    let filters = (n + 999) / 1000
    for f in 0..<filters {
        let rules = (0..<10).map { i in
            Rule(
                priority: i + 1, action: i % 3 == 2 ? .reject : .accept, ethertype: .ipv4, protocol: .tcp,
                source: cidr("198.18.\(i).0/24"), destination: cidr("198.19.\(f % 256).0/24"),
                destinationPorts: PortRange(UInt16(1000 + i), UInt16(2000 + i)))
        }
        doc.filters.append(Filter(id: "f\(f)", inbound: rules, outbound: rules))
    }
    let targets = (n + 199) / 200
    for t in 0..<targets {
        doc.targets.append(
            Target(
                id: "t\(t)", type: .loadBalancer,
                backends: [IPAddress.v4(0xC000_0200 | UInt32(t % 250 + 1))]))
    }
    let sources = (n + 2) / 3
    for s in 0..<sources { doc.sources.append(Source(id: "src\(s)", interface: "tap\(s)")) }
    for i in 0..<n {
        doc.sessions.append(
            Session(
                id: "s\(i)", priority: i % 3 + 1, filter: "f\(i / 1000)", sources: ["src\(i / 3)"],
                target: "t\(i / 200)", vni: i + 1))
    }
    return doc
}

func milliseconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
}

func writeResult(_ key: String, _ value: Any, to path: String?) throws {
    guard let path else { return }
    var root: [String: Any] = [:]
    if let data = FileManager.default.contents(atPath: path),
        let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    {
        root = obj
    }
    root[key] = value
    let dir = (path as NSString).deletingLastPathComponent
    if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    let out = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
    try out.write(to: URL(fileURLWithPath: path))
    print("wrote \(key) to \(path)")
}

if options.part == "control-plane" {
    do {
        let dp = try BPFDatapath(pinDirectory: nil)
        var results: [String: Any] = [:]
        for n in [1000, 20000] {
            let doc = largeDocument(sessions: n)
            let text = DocumentEncoding.text(doc, pretty: false)
            var parsed: Document?
            let validate = milliseconds {
                if case .success(let d) = DocumentParser.parse(text) { parsed = d }
            }
            guard let valid = parsed else {
                if case .failure(let e) = DocumentParser.parse(text) { print("invalid benchmark document: \(e)") }
                exit(1)
            }
            var image = MapImage()
            let compile = try milliseconds {
                let slots = try SlotAssignment.assign(document: valid)
                let index = Dictionary(
                    uniqueKeysWithValues: valid.sources.enumerated().map { ($0.element.interface, UInt32(1000 + $0.offset)) })
                image = try Compiler.compile(.init(document: valid, slots: slots, interfaceIndex: { index[$0] }))
            }
            dp.slotGracePeriod = .zero
            let swap = try milliseconds { try dp.apply(image) }
            let swapAgain = try milliseconds { try dp.apply(image) }
            print(
                "control plane \(n) sessions: validate \(validate) ms, compile \(compile) ms, "
                    + "swap \(swap) ms (again \(swapAgain) ms), \(image.policies.count) policy entries")
            results["sessions_\(n)"] = ["validate_ms": validate, "compile_ms": compile, "swap_ms": swap, "swap_again_ms": swapAgain]
        }
        try writeResult("control_plane", results, to: options.output)
    } catch {
        FileHandle.standardError.write("mirror-bench: \(error)\n".data(using: .utf8)!)
        exit(1)
    }
    exit(0)
}

do {
    var dp: BPFDatapath!
    let loadMs = try milliseconds { dp = try BPFDatapath(pinDirectory: nil) }
    dp.slotGracePeriod = .zero
    var baseline: BPFDatapath?
    if let path = options.baselineObject {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            FileHandle.standardError.write("mirror-bench: cannot read \(path)\n".data(using: .utf8)!)
            exit(1)
        }
        let baseLoadMs = try milliseconds { baseline = try BPFDatapath(pinDirectory: nil, object: [UInt8](bytes)) }
        baseline?.slotGracePeriod = .zero
        print("load (open, verify, maps): classifier \(Int(loadMs)) ms, baseline \(Int(baseLoadMs)) ms")
        // What the verifier walked: independent of the machine's load, unlike the times.
        func verified(_ d: BPFDatapath, _ p: ClassifierProgram) -> UInt32 {
            var info = bpf_prog_info()
            var len = UInt32(MemoryLayout<bpf_prog_info>.size)
            return bpf_obj_get_info_by_fd(d.programFD(p), &info, &len) == 0 ? info.verified_insns : 0
        }
        for p in [ClassifierProgram.tcIngress, .testIngress] {
            print("verified instructions \(p.rawValue): classifier \(verified(dp, p)), baseline \(verified(baseline!, p))")
        }
    }
    var baselineResults: [String: Double] = [:]
    let cases: [(String, Document?)] = [
        ("none", nil),
        ("1x1", document(sessions: 1, rules: 1, lastMatches: true)),
        ("3x10_last", document(sessions: 3, rules: 10, lastMatches: true)),
        ("3x10_nomatch", document(sessions: 3, rules: 10, lastMatches: false)),
        // SPEC §10 when nothing triggers (every packet accepted and counted as a
        // copy): the session's rateLimit far above the rate and sampleOneIn 1, then
        // the host budget far above instead; 1x1 is the baseline of both.
        ("1x1_limits", limited(document(sessions: 1, rules: 1, lastMatches: true))),
        ("1x1_budget", document(sessions: 1, rules: 1, lastMatches: true)),
    ]
    var results: [String: Double] = [:]
    let ifindex: UInt32 = 100
    for (name, doc) in cases {
        let image: MapImage
        if let doc {
            let slots = try SlotAssignment.assign(document: doc)
            image = try Compiler.compile(.init(document: doc, slots: slots, interfaceIndex: { _ in ifindex }))
        } else {
            image = MapImage()
        }
        try dp.apply(image)
        _ = try baseline?.apply(image)
        try dp.setHostBudget(bitsPerSecond: name == "1x1_budget" ? 1_000_000_000_000 : 0)
        // The ENI's outbound = TC ingress.
        let check = Verdict(try dp.testRun(.testIngress, frame: frame, mark: ifindex).retval)
        if let baseline {
            let other = Verdict(try baseline.testRun(.testIngress, frame: frame, mark: ifindex).retval)
            guard other.outcome == check.outcome else {
                FileHandle.standardError.write("mirror-bench: the baseline decides \(other), the classifier \(check)\n".data(using: .utf8)!)
                exit(1)
            }
        }
        var samples: [UInt32] = []
        var baseSamples: [UInt32] = []
        for _ in 0..<options.rounds {
            // Counting like the attached program does, so the cost is the real one.
            samples.append(
                try dp.testRun(
                    .testIngress, frame: frame, mark: ifindex, cb0: MIRROR_TEST_COUNT,
                    repeat: options.repeatCount
                ).durationNs)
            // Round by round, so that both see the same load (other engineers share the machine).
            if let baseline {
                baseSamples.append(
                    try baseline.testRun(
                        .testIngress, frame: frame, mark: ifindex, cb0: MIRROR_TEST_COUNT, repeat: options.repeatCount
                    ).durationNs)
            }
        }
        samples.sort()
        let median = Double(samples[samples.count / 2])
        results[name] = median
        print(
            "classifier \(name): \(median) ns/packet (median of \(options.rounds) x \(options.repeatCount); "
                + "min \(samples.first!), max \(samples.last!)); verdict \(check)")
        if !baseSamples.isEmpty {
            baseSamples.sort()
            let baseMedian = Double(baseSamples[baseSamples.count / 2])
            baselineResults[name] = baseMedian
            print(
                "  baseline \(name): \(baseMedian) ns/packet (min \(baseSamples.first!), max \(baseSamples.last!)); "
                    + "classifier - baseline: \(median - baseMedian) ns")
        }
    }
    var nop: [UInt32] = []
    for _ in 0..<options.rounds {
        nop.append(try dp.testRun(.testNop, frame: frame, mark: ifindex, repeat: options.repeatCount).durationNs)
    }
    nop.sort()
    print("test-run baseline (empty program): \(nop[nop.count / 2]) ns/packet")
    try writeResult("classifier_ns", results, to: options.output)
    if !baselineResults.isEmpty { try writeResult("classifier_baseline_ns", baselineResults, to: options.output) }
} catch {
    FileHandle.standardError.write("mirror-bench: \(error)\n".data(using: .utf8)!)
    exit(1)
}
