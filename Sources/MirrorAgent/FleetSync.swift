import EtcdClient
import Foundation
import Logging
import MirrorAPI
import MirrorCore
import MirrorDatapath
import MirrorFleet
import ServiceLifecycle

/// `mirror-agent --etcd ENDPOINTS --host NAME` (SPEC §9): follows the host's desired
/// document in etcd and applies it through the agent's one validate → compile → swap
/// path, and keeps the host's status under a lease.
///
/// Like Cilium's kvstore sync: list, then watch from the listed revision + 1. When a
/// member goes away or a watch goes silent, watch again (on the next member) from the
/// revision after the last one seen, as OVN resumes from its last transaction: every
/// change since arrives in order. When that revision was compacted away (etcd says
/// ErrCompacted), list again and converge to exactly what is there now. While etcd is unreachable nothing is touched: the
/// policy in force stays (and the state directory serves it across a restart).
public struct FleetSyncService: Service {
    let agent: Agent
    let etcd: EtcdClient
    let host: String
    let state: FleetSyncState
    let logger: Logger
    let statusTTL: Int64

    public init(agent: Agent, etcd: EtcdClient, host: String, stateDirectory: String, statusTTL: Int64 = 10, logger: Logger) {
        self.agent = agent; self.etcd = etcd; self.host = host; self.logger = logger; self.statusTTL = statusTTL
        state = FleetSyncState(path: stateDirectory + "/fleet.json", host: host)
    }

    /// Where the configuration lives, for the local refusals.
    public static func describe(endpoints: String, host: String) -> String {
        "etcd (\(endpoints)), key \(FleetKeys.desired(host))"
    }

    public func run() async throws {
        await state.load(logger: logger)
        try? await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await syncForever() }
                group.addTask { await statusForever() }
                await group.waitForAll()
            }
        }
        etcd.close()
    }

    // MARK: - Desired document

    func syncForever() async {
        let key = FleetKeys.desired(host)
        // Where the watch goes on after an interruption: the revision after the last one
        // it reached (events and progress notifications alike). nil: list first.
        let resume = ResumePoint()
        while !Task.isCancelled {
            do {
                let from: Int64
                if let r = resume.revision {
                    from = r
                } else {
                    let (kv, revision) = try await etcd.get(key)
                    try await converge(kv, key: key)
                    from = revision + 1
                    resume.revision = from
                }
                try await etcd.watch(key, prefix: false, fromRevision: from) { batch in
                    for event in batch.events {
                        try await converge(event.kind == .put ? event.kv : nil, key: key)
                    }
                    resume.revision = batch.revision + 1
                }
            } catch is CancellationError {
                return
            } catch EtcdError.compacted(let r) {
                // What happened since the last revision seen is gone: list again and converge
                // to exactly what is there now.
                resume.revision = nil
                logger.notice("fleet: watch behind a compaction; listing again", metadata: ["compactRevision": "\(r)"])
            } catch {
                logger.warning(
                    "fleet: etcd sync interrupted; watching again from the last revision seen",
                    metadata: ["error": "\(error)", "revision": "\(resume.revision.map { "\($0)" } ?? "none: listing")"])
                try? await Task.sleep(for: .milliseconds(300))
            }
        }
    }

    /// Applies `kv` (nil: the host has no document, so nothing is mirrored here) unless
    /// that revision is in force already.
    func converge(_ kv: KeyValue?, key: String) async throws {
        let revision = kv?.modRevision ?? 0
        if kv != nil {
            if await state.applied == revision { return }
        } else if await state.applied == 0, await state.empty {
            return
        }
        var document: JSONValue = .object([])
        if let kv {
            guard let decoded = DesiredValue.decode(kv.value) else {
                await state.failed(revision: revision, "the desired document at revision \(revision) is not one")
                logger.error("fleet: \(key) does not hold a desired document", metadata: ["revision": "\(revision)"])
                return
            }
            document = decoded.document
        }
        do {
            let r = try await agent.apply(document)
            await state.applied(revision: revision, empty: kv == nil)
            logger.info(
                "fleet: applied the host's document",
                metadata: ["revision": "\(revision)", "generation": "\(r.generation)", "changed": "\(r.changed)"])
        } catch let error as APIError {
            // Refused (invalid here, or the datapath said no): the policy in force stays.
            let detail = ([error.message] + error.errors.prefix(5).map { "\($0.path): \($0.message)" }).joined(separator: "; ")
            await state.failed(revision: revision, detail)
            logger.error("fleet: the host's document was refused", metadata: ["revision": "\(revision)", "error": "\(detail)"])
        }
    }

    // MARK: - Status under a lease

    func statusForever() async {
        let key = FleetKeys.status(host)
        while !Task.isCancelled {
            var lease: Int64 = 0
            do {
                lease = try await etcd.grantLease(ttl: statusTTL)
                // Written when an apply ends (so `fleet status` and whoever waits for
                // an appliedRevision see it within one put) and every 250 ms (sources
                // attached or pending change with the host's interfaces).
                let (due, kick) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
                await state.onChange(kick)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await etcd.keepAlive(lease, ttl: statusTTL) }
                    group.addTask {
                        var last: [UInt8] = []
                        for await _ in due {
                            let value = try JSONEncoder().encode(await currentStatus())
                            if Array(value) != last {
                                try await etcd.put(key, Array(value), lease: lease)
                                last = Array(value)
                            }
                        }
                    }
                    group.addTask {
                        while true {
                            kick.yield()
                            try await Task.sleep(for: .milliseconds(250))
                        }
                    }
                    defer {
                        group.cancelAll()
                        kick.finish()
                    }
                    try await group.next()
                }
            } catch is CancellationError {
                // Graceful stop: the host leaves the fleet view now rather than after the TTL.
                if lease != 0 { try? await etcd.revokeLease(lease) }
                return
            } catch {
                if Task.isCancelled {
                    if lease != 0 { try? await etcd.revokeLease(lease) }
                    return
                }
                logger.warning("fleet: status lease interrupted; taking a new one", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    func currentStatus() async -> AgentFleetStatus {
        let s = await agent.status()
        let attached = s.sources.filter { $0.state == .attached }.count
        return AgentFleetStatus(
            host: host, appliedRevision: await state.applied,
            sources: .init(attached: attached, pending: s.sources.count - attached), error: await state.error,
            version: MirrorAgentInfo.version)
    }
}

/// The revision a watch resumes from, written by the watch's handler.
final class ResumePoint: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64?
    var revision: Int64? {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}

/// Which desired revision is in force, kept in the state directory beside the state
/// file, so that an agent restarted while etcd is down reports what it serves.
actor FleetSyncState {
    let path: String
    let host: String
    private(set) var applied: Int64 = 0
    private(set) var empty = false
    private(set) var error: String?

    init(path: String, host: String) { self.path = path; self.host = host }

    struct File: Codable {
        var host: String
        var appliedRevision: Int64
        var empty: Bool?
    }

    func load(logger: Logger) {
        guard let data = FileManager.default.contents(atPath: path),
            let f = try? JSONDecoder().decode(File.self, from: data)
        else { return }
        // The state of another host's agent says nothing of this one.
        guard f.host == host else {
            logger.warning("fleet: \(path) belongs to host \(f.host), not \(host); syncing from scratch")
            return
        }
        applied = f.appliedRevision
        empty = f.empty ?? false
    }

    /// Told of every apply and refusal (the status writer).
    private var change: AsyncStream<Void>.Continuation?

    func onChange(_ c: AsyncStream<Void>.Continuation) { change = c }

    func applied(revision: Int64, empty: Bool) {
        applied = revision; self.empty = empty; error = nil
        if let data = try? JSONEncoder().encode(File(host: host, appliedRevision: revision, empty: empty)) {
            try? DurableFile.write(data, to: path)
        }
        change?.yield()
    }

    func failed(revision: Int64, _ message: String) {
        error = "revision \(revision): \(message)"
        change?.yield()
    }
}
