import EtcdClient
import Foundation
import MirrorCore
import MirrorFleet
import MirrorTestSupport

// `mirror-bench fleet` (issue 18 item 9, run by `scripts/bench fleet`): the fleet on a
// real etcd cluster that the script started. This driver stores a region, starts the
// release `mirror-controller` and `--agents` `mirror-agent --datapath memory`, and
// measures:
//   render   from the controller's start to every host's desired key in etcd (polled
//            keys-only every 20 ms), and the controller's peak RSS (/proc VmHWM);
//   change   one session changed: from the region's head switch (the moment the
//            apply is visible in etcd) to every affected host's agent reporting the
//            new desired revision as applied in its status key (the agent writes it
//            right after the apply), each seen by a watch; over `--changes` changes;
//   resync   an agent stopped (SIGSTOP) while its host's document changes and the
//            store is compacted: from SIGCONT to its status showing the final one.
// Every time is taken when the driver's watch sees the event, on one clock.

struct FleetBenchOptions {
    var etcd = ""
    var cacert: String?
    var cert: String?
    var key: String?
    var binDir = ""
    var work = "/tmp"
    var agents = 50
    var changes = 100
    var sessions = Quota.sessionsPerRegion
    var sources = Quota.sourcesPerRegion
    var hosts = 1000
}

/// What the watches saw, with the time each event arrived.
final class FleetObservations: @unchecked Sendable {
    struct Seen {
        var revision: Int64
        var at: ContinuousClock.Instant
    }
    private let lock = NSLock()
    private var desired: [String: [Seen]] = [:]
    private var applied: [String: [Seen]] = [:]
    private var heads: [Int64: ContinuousClock.Instant] = [:]
    private(set) var lastRevision: Int64 = 0

    func record(_ batch: WatchBatch) {
        let now = ContinuousClock.now
        lock.lock()
        defer { lock.unlock() }
        lastRevision = max(lastRevision, batch.revision)
        for e in batch.events where e.kind == .put {
            if e.kv.key == FleetKeys.region {
                heads[e.kv.modRevision] = now
                continue
            }
            guard let (host, leaf) = FleetKeys.parseHostKey(e.kv.key) else { continue }
            if leaf == "desired" {
                desired[host, default: []].append(Seen(revision: e.kv.modRevision, at: now))
            } else if leaf == "status", let s = try? JSONDecoder().decode(AgentFleetStatus.self, from: Data(e.kv.value)) {
                if applied[host]?.last?.revision != s.appliedRevision {
                    applied[host, default: []].append(Seen(revision: s.appliedRevision, at: now))
                }
            }
        }
    }

    func head(_ revision: Int64) -> ContinuousClock.Instant? { lock.withLock { heads[revision] } }
    /// The first desired write of `host` after `revision`.
    func desired(_ host: String, after revision: Int64) -> Seen? {
        lock.withLock { desired[host]?.first { $0.revision > revision } }
    }
    /// When `host`'s status first reported `revision` or later as applied.
    func applied(_ host: String, atLeast revision: Int64) -> Seen? {
        lock.withLock { applied[host]?.first { $0.revision >= revision } }
    }
    func latestApplied(_ host: String) -> Int64 { lock.withLock { applied[host]?.last?.revision ?? 0 } }
}

struct BenchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A child process (the controller, an agent) with its log.
final class Child {
    /// Every child's pid goes here (scripts/bench.d/fleet.sh kills what a killed driver left).
    nonisolated(unsafe) static var pidFile: String?
    let process = Process()
    let name: String
    let log: String

    init(_ executable: String, _ arguments: [String], name: String, log: String) throws {
        self.name = name; self.log = log
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        if let f = Self.pidFile,
            let h = FileHandle(forWritingAtPath: f)
                ?? {
                    FileManager.default.createFile(atPath: f, contents: nil)
                    return FileHandle(forWritingAtPath: f)
                }()
        {
            h.seekToEndOfFile()
            h.write(Data("\(process.processIdentifier)\n".utf8))
            try? h.close()
        }
    }

    var pid: pid_t { process.processIdentifier }

    /// `VmRSS` or `VmHWM` of /proc/PID/status, in MiB.
    func memory(_ field: String) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Double($0) } ?? 0
            return kb / 1024
        }
        return 0
    }

    func alive() -> Bool { process.isRunning }

    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGCONT)
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
}

/// Destroys the TCP connections of process `pid` (`ss -K`, CONFIG_INET_DIAG_DESTROY);
/// returns how many there were.
func cutConnections(of pid: pid_t) -> Int {
    func run(_ args: [String]) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return "" }
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: out, as: UTF8.self)
    }
    // "ESTAB 0 0 198.18.7.254:51234 198.18.7.1:2379 users:(("mirror-agent",pid=123,fd=9))"
    let ports = run(["ss", "-tnpH"]).split(separator: "\n").filter { $0.contains("pid=\(pid),") }
        .compactMap { line -> String? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5, let colon = fields[3].lastIndex(of: ":") else { return nil }
            return String(fields[3][fields[3].index(after: colon)...])
        }
    for port in ports { _ = run(["ss", "-K", "-tnH", "sport", "=", ":\(port)"]) }
    return ports.count
}

/// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// The controller's "rendered the region" (full) and "rendered a change" lines, each as its metadata's numbers
/// (ms, readMs, parseMs, indexMs, hostsMs, writeMs, written), in order.
func renderLines(_ log: String) -> [[String: Double]] {
    log.split(separator: "\n").filter { $0.contains("rendered the region") || $0.contains("rendered a change") }.map { line in
        var out: [String: Double] = [:]
        for field in line.split(separator: " ") {
            let kv = field.split(separator: "=", maxSplits: 1)
            if kv.count == 2, let v = Double(kv[1]) { out[String(kv[0])] = v }
        }
        return out
    }
}

func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }

func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let s = values.sorted()
    // Nearest rank: p99 of 100 values is the 99th smallest.
    let rank = Int((p / 100 * Double(s.count)).rounded(.up))
    return s[max(0, min(s.count - 1, rank - 1))]
}

func say(_ s: String) {
    print(s)
    fflush(stdout)
}

/// Runs `body` to its end on the concurrency pool (mirror-bench's main is synchronous).
func runBlocking(_ body: @escaping @Sendable () async -> Int32) -> Int32 {
    let done = DispatchSemaphore(value: 0)
    let result = Mutex32()
    Task {
        result.set(Int64(await body()))
        done.signal()
    }
    done.wait()
    return Int32(result.get())
}

final class Mutex32: @unchecked Sendable {
    private let lock = NSLock()
    private var v: Int64
    init(_ v: Int64 = 0) { self.v = v }
    func set(_ x: Int64) { lock.withLock { v = x } }
    func get() -> Int64 { lock.withLock { v } }
}

func fleetBenchmark(_ o: FleetBenchOptions, output: String?) -> Int32 {
    runBlocking {
        var children: [Child] = []
        do {
            let result = try await FleetBench(o, children: { children.append($0) }).run()
            for c in children { c.stop() }
            try writeResult("fleet", result, to: output)
            return 0
        } catch {
            for c in children { c.stop() }
            FileHandle.standardError.write(Data("mirror-bench fleet: FAILED: \(error)\n".utf8))
            for c in children.prefix(2) {
                FileHandle.standardError.write(Data("--- log of \(c.name) (last lines):\n".utf8))
                let lines = c.logText().split(separator: "\n").suffix(15).joined(separator: "\n")
                FileHandle.standardError.write(Data((lines + "\n").utf8))
            }
            return 1
        }
    }
}

struct FleetBench {
    let o: FleetBenchOptions
    let adopt: (Child) -> Void
    let config: EtcdConfiguration
    let clock = ContinuousClock()

    init(_ o: FleetBenchOptions, children: @escaping (Child) -> Void) throws {
        self.o = o; adopt = children
        Child.pidFile = o.work + "/pids"
        config = try EtcdConfiguration.parse(endpoints: o.etcd, cacert: o.cacert, cert: o.cert, key: o.key)
    }

    var etcdFlags: [String] {
        ["--etcd", o.etcd] + (o.cacert.map { ["--etcd-cacert", $0] } ?? []) + (o.cert.map { ["--etcd-cert", $0] } ?? [])
            + (o.key.map { ["--etcd-key", $0] } ?? [])
    }

    /// Polls `condition` every `every` until it holds; fails after `timeout`.
    func waitUntil(
        _ what: String, timeout: Duration, every: Duration = .milliseconds(5), _ condition: () async throws -> Bool
    ) async throws {
        let deadline = clock.now + timeout
        while true {
            if try await condition() { return }
            if clock.now > deadline { throw BenchFailure("timed out after \(timeout) waiting for \(what)") }
            try await Task.sleep(for: every)
        }
    }

    func run() async throws -> [String: Any] {
        let etcd = try EtcdClient(config)
        // The watches on a connection of their own: the region's uploads (MBs) must
        // not delay the events the times are read from.
        let watcher = try EtcdClient(config)
        defer {
            etcd.close(); watcher.close()
        }
        var result: [String: Any] = [:]
        let quick = o.sessions < Quota.sessionsPerRegion || o.sources < Quota.sourcesPerRegion
        result["quick"] = quick
        result["etcd"] =
            ["members": config.endpoints.count, "tls": config.tls != nil, "client_cert": config.tls?.certFile != nil] as [String: Any]

        // The region, validated as `agentctl --etcd apply` does, then stored the same way.
        var region = RegionDocuments.atQuotas(sessions: o.sessions, sources: o.sources, hosts: o.hosts)
        let text = Array(RegionEncoding.text(region, pretty: false).utf8)
        let validateStart = clock.now
        guard case .success = RegionParser.parse(text) else { throw BenchFailure("the generated region does not validate") }
        let validate = clock.now - validateStart
        let storeStart = clock.now
        let stored = try await RegionStore(etcd: etcd).store(region)
        let store = clock.now - storeStart
        let hostNames = region.hostNames
        result["region"] =
            [
                "sessions": region.document.sessions.count, "sources": region.document.sources.count, "hosts": hostNames.count,
                "bytes": text.count,
            ] as [String: Any]
        result["apply"] = ["validate_ms": ms(validate), "store_ms": ms(store)] as [String: Any]
        say(
            "region: \(region.document.sessions.count) sessions, \(region.document.sources.count) sources over "
                + "\(hostNames.count) hosts, \(text.count / 1_000_000) MB; agentctl's validate \(Int(ms(validate))) ms, "
                + "store \(Int(ms(store))) ms")

        // 1. The controller's full render.
        let controllerStart = clock.now
        let controller = try Child(
            o.binDir + "/mirror-controller", etcdFlags + ["--id", "bench"], name: "mirror-controller",
            log: o.work + "/controller.log")
        adopt(controller)
        var desiredCount = 0
        var controllerPeak = 0.0
        try await waitUntil("the controller to write every host's document", timeout: .seconds(120), every: .milliseconds(20)) {
            guard controller.alive() else { throw BenchFailure("the controller exited") }
            controllerPeak = max(controllerPeak, controller.memory("VmHWM"))
            let keys = try await etcd.range(FleetKeys.hosts, keysOnly: true)
            desiredCount = keys.kvs.filter { FleetKeys.parseHostKey($0.key)?.leaf == "desired" }.count
            return desiredCount == hostNames.count
        }
        let render = clock.now - controllerStart
        controllerPeak = max(controllerPeak, controller.memory("VmHWM"))
        let controllerRSS = controller.memory("VmRSS")
        let controllerPeakAtRender = controllerPeak
        let renderedLine = controller.logText().split(separator: "\n").last { $0.contains("rendered the region") }
        let ownMs = renderedLine.flatMap { l in l.range(of: "ms=").map { Double(l[$0.upperBound...].prefix { $0.isNumber }) } } ?? nil
        let fullPhases = renderLines(controller.logText()).last ?? [:]
        result["render"] =
            [
                "ms": ms(render), "controller_logged_ms": ownMs.map { $0 as Any } ?? NSNull(), "peak_rss_mib": controllerPeak,
                "rss_after_mib": controllerRSS, "controller_phases_ms": fullPhases,
                "hosts": hostNames.count,
            ] as [String: Any]
        say(
            String(format: "full render: %.0f ms from the controller's start to %d host keys", ms(render), hostNames.count)
                + " (its own log: \(ownMs.map { String(Int($0)) } ?? "?") ms)"
                + String(format: "; peak RSS %.1f MiB", controllerPeak))

        // The watches, from after the render.
        let seen = FleetObservations()
        let (_, now) = try await etcd.get(FleetKeys.region)
        let watches = Task {
            await withTaskGroup(of: Void.self) { group in
                for (key, prefix) in [(FleetKeys.hosts, true), (FleetKeys.region, false)] {
                    group.addTask {
                        let from = Mutex32(Int64(now + 1))
                        while !Task.isCancelled {
                            do {
                                try await watcher.watch(key, prefix: prefix, fromRevision: from.get()) { batch in
                                    seen.record(batch)
                                    from.set(max(from.get(), batch.revision + 1))
                                }
                            } catch {
                                if Task.isCancelled { return }
                                FileHandle.standardError.write(Data("mirror-bench fleet: watch of \(key): \(error); again\n".utf8))
                                try? await Task.sleep(for: .milliseconds(50))
                            }
                        }
                    }
                }
            }
        }
        defer { watches.cancel() }

        // 2. The agents, one per host, hv-0 ... (memory datapath).
        func number(_ h: String) -> Int { Int(String(h.drop { !$0.isNumber })) ?? 0 }
        let byNumber = hostNames.sorted { number($0) < number($1) }
        let agentHosts = Array(byNumber.prefix(o.agents))
        var agents: [String: Child] = [:]
        let agentsStart = clock.now
        for host in agentHosts {
            let dir = o.work + "/agents/" + host
            try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
            let agent = try Child(
                o.binDir + "/mirror-agent",
                [
                    "--datapath", "memory", "--host", host, "--socket", dir + "/sock", "--state-dir", dir + "/state",
                    "--bpffs", dir + "/bpffs", "--metrics-address", "127.0.0.1:\(freePort())",
                ] + etcdFlags, name: "mirror-agent \(host)", log: dir + "/agent.log")
            adopt(agent)
            agents[host] = agent
        }
        var desiredNow: [String: Int64] = [:]
        for host in agentHosts {
            guard let kv = try await etcd.get(FleetKeys.desired(host)).0 else { throw BenchFailure("\(host) has no document") }
            desiredNow[host] = kv.modRevision
        }
        try await waitUntil("\(agentHosts.count) agents to apply their documents", timeout: .seconds(120), every: .milliseconds(20)) {
            for (h, a) in agents where !a.alive() { throw BenchFailure("the agent of \(h) exited") }
            return agentHosts.allSatisfy { seen.latestApplied($0) == desiredNow[$0] }
        }
        let agentsUp = clock.now - agentsStart
        let rss: [Double] = agentHosts.map { agents[$0]!.memory("VmRSS") }
        let rssTotal: Double = rss.reduce(0, +)
        let rssMax: Double = rss.max() ?? 0
        result["agents"] =
            [
                "count": agentHosts.count, "all_applied_ms": ms(agentsUp), "rss_mib_total": rssTotal, "rss_mib_max": rssMax,
                "rss_mib_mean": rssTotal / Double(max(1, rss.count)),
            ] as [String: Any]
        say(
            String(
                format: "%d agents (--datapath memory) started and applied in %.0f ms; RSS %.0f MiB in all, %.1f MiB each at most",
                agentHosts.count, ms(agentsUp), rssTotal, rssMax))

        // 3. One session changed at a time; every host of that session has an agent.
        let hostSet = Set(agentHosts)
        // Sessions whose every host has an agent; with few agents, those with some.
        var candidates = region.document.sessions.indices.filter { i in
            region.document.sessions[i].sources.allSatisfy { hostSet.contains(region.hosts[$0] ?? "") }
        }
        if candidates.isEmpty {
            candidates = region.document.sessions.indices.filter { i in
                region.document.sessions[i].sources.contains { hostSet.contains(region.hosts[$0] ?? "") }
            }
        }
        guard !candidates.isEmpty else { throw BenchFailure("no session has a source on the agents' hosts") }
        var e2e: [Double] = [], fromApply: [Double] = [], controllerPart: [Double] = [], agentPart: [Double] = []
        var firstHost: [Double] = [], stores: [Double] = []
        var affectedCount = 0
        var storeRevision = stored
        for n in 0..<o.changes {
            let i = candidates[(n * 7) % candidates.count]
            region.document.sessions[i].vni = 1_000_000 + n
            let affected = Set(region.document.sessions[i].sources.compactMap { region.hosts[$0] }).intersection(hostSet).sorted()
            affectedCount = affected.count
            let applyStart = clock.now
            let head = try await RegionStore(etcd: etcd).store(region)
            stores.append(ms(clock.now - applyStart))
            var done: [ContinuousClock.Instant] = []
            var written: [ContinuousClock.Instant] = []
            try await waitUntil("change \(n) (session \(region.document.sessions[i].id)) on \(affected)", timeout: .seconds(60)) {
                written = []; done = []
                for h in affected {
                    guard let d = seen.desired(h, after: head), let a = seen.applied(h, atLeast: d.revision) else { return false }
                    written.append(d.at); done.append(a.at)
                }
                return seen.head(head) != nil
            }
            let headAt = seen.head(head)!
            e2e.append(ms(done.max()! - headAt))
            fromApply.append(ms(done.max()! - applyStart))
            firstHost.append(ms(done.min()! - headAt))
            controllerPart.append(ms(written.max()! - headAt))
            agentPart.append(ms(done.max()! - written.max()!))
            storeRevision = head
            // Keep etcd's history short, as auto-compaction would (each apply stores the
            // whole region again): not while a change is measured.
            if n % 10 == 9 { try await etcd.compact(head) }
        }
        // What the store holds is the region the driver changed (checked where cheap).
        if quick {
            guard let (stored, _) = try await RegionStore(etcd: etcd).loadRegion(), stored.document == region.document,
                stored.hosts == region.hosts
            else { throw BenchFailure("the stored region is not the region the driver changed") }
        }
        func stats(_ v: [Double]) -> [String: Double] {
            ["p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99), "max_ms": v.max() ?? 0, "min_ms": v.min() ?? 0]
        }
        // The controller's own phases for the changes (its log), medians.
        let changeLines = Array(renderLines(controller.logText()).suffix(o.changes))
        var changePhases: [String: Double] = [:]
        for k in ["ms", "readMs", "parseMs", "indexMs", "hostsMs", "writeMs"] {
            changePhases[k] = percentile(changeLines.compactMap { $0[k] }, 50)
        }
        let phaseNames = ["readMs", "parseMs", "indexMs", "hostsMs", "writeMs"]
        say(
            "  the controller's own phases, median of the changes (ms): "
                + phaseNames.map { "\($0.dropLast(2)) \(Int(changePhases[$0] ?? 0))" }.joined(separator: ", ")
                + "; of the full render: " + phaseNames.map { "\($0.dropLast(2)) \(Int(fullPhases[$0] ?? 0))" }.joined(separator: ", "))
        result["change"] =
            [
                "controller_phases_ms_p50": changePhases,
                "changes": o.changes, "affected_hosts": affectedCount, "head_to_applied": stats(e2e),
                "apply_to_applied": stats(fromApply), "head_to_first_host_applied": stats(firstHost),
                "head_to_desired_written": stats(controllerPart), "desired_to_applied": stats(agentPart), "store": stats(stores),
            ] as [String: Any]
        say(
            String(
                format:
                    "one session changed (%d changes, %d hosts each): head switch → every affected agent applied p50 %.0f ms, p99 %.0f ms (max %.0f)",
                o.changes, affectedCount, percentile(e2e, 50), percentile(e2e, 99), e2e.max() ?? 0))
        say(
            String(
                format:
                    "  of which controller (head → desired written) p50 %.0f / p99 %.0f ms, agents (desired → applied) p50 %.0f / p99 %.0f ms; the apply's upload p50 %.0f ms (apply start → applied p99 %.0f ms)",
                percentile(controllerPart, 50), percentile(controllerPart, 99), percentile(agentPart, 50),
                percentile(agentPart, 99), percentile(stores, 50), percentile(fromApply, 99)))

        // 4. Resync after a compaction: the agent of one host stopped while three
        // changes of its host's document go by and the store is compacted.
        let victimSession = candidates[0]
        let victim = region.document.sessions[victimSession].sources.compactMap { region.hosts[$0] }.first { hostSet.contains($0) }!
        let victimAgent = agents[victim]!
        kill(victimAgent.pid, SIGSTOP)
        var finalRevision: Int64 = 0
        let stopped = clock.now
        for v in 0..<3 {
            region.document.sessions[victimSession].vni = 2_000_000 + v
            let head = try await RegionStore(etcd: etcd).store(region)
            try await waitUntil("the controller to write \(victim)'s document", timeout: .seconds(60)) {
                if let d = seen.desired(victim, after: head) { finalRevision = d.revision; return true }
                return false
            }
            storeRevision = head
        }
        try await etcd.compact(finalRevision)
        // And its connections to etcd cut (ss -K): what it had of its watch stream is
        // gone, so it must list again; its watch would otherwise deliver what etcd had
        // queued for it before the compaction.
        let cut = cutConnections(of: victimAgent.pid)
        let logBefore = victimAgent.logText().count
        let resumed = clock.now
        kill(victimAgent.pid, SIGCONT)
        try await waitUntil("\(victim) to apply revision \(finalRevision) after SIGCONT", timeout: .seconds(30)) {
            seen.applied(victim, atLeast: finalRevision) != nil
        }
        let resync = seen.applied(victim, atLeast: finalRevision)!.at - resumed
        let after = String(victimAgent.logText().dropFirst(logBefore))
        let path =
            after.contains("behind a compaction")
            ? "re-listed after ErrCompacted"
            : after.contains("listing again") ? "re-listed after the watch ended" : "caught up from its watch"
        result["resync"] =
            ["ms": ms(resync), "host": victim, "how": path, "stopped_ms": ms(resumed - stopped), "connections_cut": cut] as [String: Any]
        say(
            String(format: "resync after a compaction: %.0f ms from SIGCONT", ms(resync))
                + " to \(victim)'s final document applied (\(path))")

        // Memory at the end.
        controllerPeak = max(controllerPeak, controller.memory("VmHWM"))
        let agentPeaks = agentHosts.map { agents[$0]!.memory("VmHWM") }
        var r = result["render"] as! [String: Any]
        r["peak_rss_whole_run_mib"] = controllerPeak
        result["render"] = r
        var a = result["agents"] as! [String: Any]
        a["peak_rss_mib_max"] = agentPeaks.max() ?? 0
        result["agents"] = a
        _ = storeRevision

        // The goals (issue 18).
        let renderPeak: Double = controllerPeakAtRender
        let goals: [(String, Double, Double, String)] = [
            ("full_render_ms", ms(render), 5000, "ms"), ("controller_peak_rss_mib", renderPeak, 256, "MiB"),
            ("change_p99_ms", percentile(e2e, 99), 200, "ms"), ("resync_ms", ms(resync), 1000, "ms"),
        ]
        var goalResult: [String: Any] = [:]
        say("goals (issue 18)\(quick ? ", on a region smaller than the quotas (--quick): not the goals' conditions" : ""):")
        for (name, value, limit, unit) in goals {
            let holds = value < limit
            goalResult[name] = ["measured": value, "goal": limit, "holds": holds] as [String: Any]
            say(
                "  " + name.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: "%10.1f ", value) + unit
                    + String(format: "   goal < %.0f ", limit) + unit + "   " + (holds ? "holds" : "DOES NOT HOLD"))
        }
        result["goals"] = goalResult
        return result
    }
}
