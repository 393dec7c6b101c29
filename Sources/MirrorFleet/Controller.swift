import CMalloc
import EtcdClient
import Foundation
import Logging
import MirrorAPI
import MirrorCore
import ServiceLifecycle

/// The desired document of one host as the controller writes it:
/// `{"region": REVISION, "document": {…}}`, `region` being the region document's
/// revision it was rendered from.
public enum DesiredValue {
    /// `document`: a host's document as `HostRenderer.encode` writes it.
    public static func encode(region: Int64, document: [UInt8]) -> [UInt8] {
        Array("{\"region\":\(region),\"document\":".utf8) + document + [UInt8(ascii: "}")]
    }

    /// The document's bytes as `encode` put them (what the controller compares with a
    /// new rendering), or nil when the value is not of that shape.
    public static func documentBytes(_ value: [UInt8]) -> ArraySlice<UInt8>? {
        let marker = Array(",\"document\":".utf8)
        guard value.first == UInt8(ascii: "{"), value.last == UInt8(ascii: "}"), value.count > marker.count + 2 else { return nil }
        for i in 1..<(value.count - marker.count) where value[i] == marker[0] {
            if Array(value[i..<(i + marker.count)]) == marker { return value[(i + marker.count)..<(value.count - 1)] }
        }
        return nil
    }

    /// The region revision and the document, or nil when the value is not one.
    public static func decode(_ bytes: [UInt8]) -> (region: Int64, document: JSONValue)? {
        guard case .success(let v) = JSONParser.parse(bytes), let doc = v["document"], case .object = doc,
            case .int(let region)? = v["region"]
        else { return nil }
        return (region, doc)
    }
}

/// Groups writes into transactions within etcd's limits: at most `maxOps` operations
/// (etcd's `--max-txn-ops`, 128 by default) and about `maxBytes` per request (etcd's
/// `--max-request-bytes`, 1.5 MiB by default; the margin covers the framing).
public struct TxnBatcher {
    public static let maxOps = 128
    public static let maxBytes = 1_400_000

    /// `ops` split in order into batches, each within both limits (an operation larger
    /// than `maxBytes` alone goes in a batch of its own, and etcd will refuse it).
    public static func batches(_ ops: [TxnOperation], maxOps: Int = maxOps, maxBytes: Int = maxBytes) -> [[TxnOperation]] {
        var out: [[TxnOperation]] = []
        var acc = Accumulator(maxOps: maxOps, maxBytes: maxBytes)
        for op in ops { if let full = acc.add(op) { out.append(full) } }
        if let last = acc.finish() { out.append(last) }
        return out
    }

    /// The same split one operation at a time: `add` hands back a batch when the next
    /// operation would not fit in it, so a writer holds one batch, not every write.
    public struct Accumulator {
        let maxOps: Int
        let maxBytes: Int
        var current: [TxnOperation] = []
        var bytes = 0

        public init(maxOps: Int = TxnBatcher.maxOps, maxBytes: Int = TxnBatcher.maxBytes) {
            self.maxOps = maxOps; self.maxBytes = maxBytes
        }

        /// Adds `op`; returns the full batch it did not fit in, if any.
        public mutating func add(_ op: TxnOperation) -> [TxnOperation]? {
            let size = op.approximateSize
            var full: [TxnOperation]?
            if !current.isEmpty && (current.count >= maxOps || bytes + size > maxBytes) {
                full = current; current = []; bytes = 0
            }
            current.append(op); bytes += size
            return full
        }

        /// The last batch, if anything is left.
        public mutating func finish() -> [TxnOperation]? {
            defer { current = []; bytes = 0 }
            return current.isEmpty ? nil : current
        }
    }
}

/// `mirror-controller`: elected by an etcd lease, renders the region document into one
/// desired document per host and writes the hosts whose document changed (SPEC §9).
public struct FleetController: Service {
    /// Called once at start (as the agent does): allocations of 16 KiB and more get
    /// their own mappings, returned as soon as they are freed, and at most two heap
    /// arenas, so that renders on different threads do not each keep a heap at their
    /// peak. Measured at the region quotas: without it the controller's RSS grew
    /// from 234 MiB after the full render to 510 MiB over the changes that followed.
    public static func tuneAllocator() {
        _ = mallopt(M_MMAP_THRESHOLD, 16 * 1024)
        _ = mallopt(M_ARENA_MAX, 2)
    }

    let etcd: EtcdClient
    let id: String
    let leaseTTL: Int64
    let logger: Logger

    public init(etcd: EtcdClient, id: String, leaseTTL: Int64 = 5, logger: Logger) {
        self.etcd = etcd; self.id = id; self.leaseTTL = leaseTTL; self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let (lease, leaderRevision) = try await campaign()
                    logger.notice("elected: this controller writes the fleet", metadata: ["id": "\(id)"])
                    do {
                        try await lead(lease: lease, leaderRevision: leaderRevision)
                    } catch is CancellationError {
                        // Shutdown: hand over at once rather than after the TTL.
                        try? await etcd.revokeLease(lease)
                        throw CancellationError()
                    }
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("not leading: \(error); campaigning again")
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
        }
    }

    /// Waits until this controller holds the leader key; returns its lease and the key's
    /// create revision (every write compares it: a deposed leader writes nothing).
    func campaign() async throws -> (lease: Int64, revision: Int64) {
        while true {
            let lease = try await etcd.grantLease(ttl: leaseTTL)
            let r = try await etcd.txn(
                if: [.createRevision(FleetKeys.leader, is: 0)],
                then: [.put(key: FleetKeys.leader, value: Array(id.utf8), lease: lease)],
                else: [.get(key: FleetKeys.leader)])
            if r.succeeded { return (lease, r.revision) }
            try? await etcd.revokeLease(lease)
            let holder = r.ranges.first?.first
            logger.info(
                "another controller leads; waiting",
                metadata: ["leader": "\(holder.map { String(decoding: $0.value, as: UTF8.self) } ?? "?")"])
            try await waitForVacancy(after: r.revision)
        }
    }

    /// Returns when the leader key is gone (its lease expired or was revoked).
    func waitForVacancy(after revision: Int64) async throws {
        struct Vacant: Error {}
        var from = revision + 1
        while true {
            do {
                try await etcd.watch(FleetKeys.leader, prefix: false, fromRevision: from) { batch in
                    if batch.events.contains(where: { $0.kind == .delete }) { throw Vacant() }
                }
            } catch is Vacant {
                return
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                // Re-check: the key may have gone while the watch was down.
                let (kv, rev) = try await etcd.get(FleetKeys.leader)
                if kv == nil { return }
                from = rev + 1
            }
        }
    }

    /// Keeps the lease and reconciles until the lease is lost.
    func lead(lease: Int64, leaderRevision: Int64) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await etcd.keepAlive(lease, ttl: leaseTTL) }
            group.addTask { try await reconcileForever(leaderRevision: leaderRevision) }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    struct RegionRemoved: Error, CustomStringConvertible {
        var description: String { "the region's head was deleted" }
    }

    /// Full render on start, then one render per region change; after a watch failure
    /// (compaction, an unreachable member) everything is read and rendered again.
    func reconcileForever(leaderRevision: Int64) async throws {
        let writer = HostWriter(etcd: etcd, leaderRevision: leaderRevision, logger: logger)
        while true {
            let revision: Int64
            do {
                revision = try await writer.fullRender()
            } catch let error as EtcdError {
                logger.error("render failed: \(error)")
                try await Task.sleep(for: .seconds(1))
                continue
            }
            do {
                try await etcd.watch(FleetKeys.region, prefix: false, fromRevision: revision + 1) { batch in
                    guard let last = batch.events.last else { return }
                    // The region removed: the full render removes every host's key.
                    guard last.kind == .put else { throw RegionRemoved() }
                    try await writer.renderChange(last.kv)
                }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                logger.info("region watch ended (\(error)); rendering everything again")
            }
        }
    }
}

/// What the controller remembers of a host's document: a 128-bit digest and the
/// length, not the bytes (at the region quotas the documents add up to several times
/// the region's size). Two SipHash digests under this process's random seed with
/// different prefixes: a changed document compares equal by accident with odds of
/// about 2^-128, and a restarted controller starts from etcd's values again.
struct HostDigest: Equatable {
    let a: Int
    let b: Int
    let count: Int

    init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        var h1 = Hasher()
        var h2 = Hasher()
        h1.combine(0 as UInt8)
        h2.combine(1 as UInt8)
        let done = bytes.withContiguousStorageIfAvailable { buffer -> Bool in
            h1.combine(bytes: UnsafeRawBufferPointer(buffer))
            h2.combine(bytes: UnsafeRawBufferPointer(buffer))
            return true
        }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBytes {
                h1.combine(bytes: $0); h2.combine(bytes: $0)
            }
        }
        a = h1.finalize(); b = h2.finalize(); count = bytes.count
    }
}

/// The leader's writes, with what it knows each host holds and the region model they
/// were rendered from.
///
/// Two paths. The full render (on start, and after any watch failure or compaction)
/// reads the head and every chunk at one revision and validates the whole region as
/// `agentctl --etcd apply` does (`RegionParser.assemble`). The incremental path (each
/// later head) reads and decodes only the chunks the new head added, diffs their
/// objects by (kind, id) against the model, and renders only the hosts those objects
/// reach before or after. It trusts what the full render would only re-check: the
/// writer validated the whole document before switching the head, and chunks are
/// content-addressed and written before the head that names them, so they cannot be
/// half-written. It still checks that each new chunk decodes with every per-object
/// check, and it renders only references it can resolve (`HostEncoder` skips any
/// other); anything it cannot do (a chunk missing or not decoding) ends the watch,
/// and the full render follows.
actor HostWriter {
    let etcd: EtcdClient
    let leaderRevision: Int64
    let logger: Logger
    /// Host → the digest of the document it holds in etcd.
    var written: [String: HostDigest] = [:]
    /// The region as of `head`, nil before the first full render with a region.
    var model: RegionModel?
    var head: RegionStore.Head?
    /// Fenced transactions in flight at once: host keys are independent, and etcd
    /// batches concurrent proposals into one consensus round and one fsync.
    static let writesInFlight = 4
    /// Hosts encoded together in the full render (about a transaction's worth at the
    /// quotas: 155 KB each).
    static let hostsPerRound = 16

    /// `encoder.encode(host:)` of each of `hosts`, in order, on `concurrency` threads.
    static func encode(_ encoder: HostEncoder, _ hosts: [Int], concurrency: Int) -> [[UInt8]] {
        final class Slots: @unchecked Sendable {
            var values: [[UInt8]]
            let lock = NSLock()
            init(_ n: Int) { values = Array(repeating: [], count: n) }
            func set(_ i: Int, _ v: [UInt8]) {
                lock.lock()
                values[i] = v
                lock.unlock()
            }
        }
        let slots = Slots(hosts.count)
        let workers = max(1, min(concurrency, hosts.count))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: hosts.count, by: workers) { slots.set(i, encoder.encode(host: hosts[i])) }
        }
        return slots.values
    }

    init(etcd: EtcdClient, leaderRevision: Int64, logger: Logger) {
        self.etcd = etcd; self.leaderRevision = leaderRevision; self.logger = logger
    }

    /// Reads every host's desired key and the region, writes what differs, removes the
    /// hosts that no longer have a source. Returns the store revision it read at.
    func fullRender() async throws -> Int64 {
        var known: [String: HostDigest] = [:]
        // In pages: at the quotas the host documents are far larger than the region.
        let revision = try await etcd.forEachPage(FleetKeys.hosts, pageSize: 64) { kvs in
            for kv in kvs {
                guard let (host, leaf) = FleetKeys.parseHostKey(kv.key), leaf == "desired" else { continue }
                known[host] = HostDigest(DesiredValue.documentBytes(kv.value) ?? [])
            }
        }
        written = known
        model = nil
        head = nil
        // Where the time goes, in the log line at the end: reading the region from
        // etcd, parsing and validating it, indexing it and encoding its objects,
        // assembling and comparing the hosts' documents, and waiting for the writes.
        let clock = ContinuousClock()
        let started = clock.now
        var phases = Phases()
        var regionRevision: Int64 = 0
        var region: RegionDocument?
        var chunkIDs: [String: [String]] = [:]
        var loadedHead: RegionStore.Head?
        if let loaded = try await RegionStore(etcd: etcd).load() {
            phases.read = clock.now - started
            regionRevision = loaded.revision
            loadedHead = loaded.head
            let mark = clock.now
            let parts = try RegionStore.parse(loaded.chunks, concurrency: 2)
            for (part, key) in zip(parts, loaded.keys) { chunkIDs[key] = part.ids }
            region = RegionDocument(parts: parts)
            phases.parse = clock.now - mark
        }
        // The chunks' bytes and decoded parts are gone here: the peak is the region and
        // the encoder's index, as before the model existed (the RSS goal, < 256 MiB).
        let mark = clock.now
        var encoder = region.map(HostEncoder.init)
        phases.index = clock.now - mark
        var writes = Writes(etcd: etcd, leaderRevision: leaderRevision)
        var next: [String: HostDigest] = [:]
        // One host at a time (MirrorCore's renderer: canonical bytes, so an unchanged
        // host compares equal), each batch written as soon as it is full.
        // A few hosts at a time encoded on two threads (the full render's largest CPU
        // part), then handed to the writes in order.
        if let e = encoder {
            for first in stride(from: 0, to: e.hosts.count, by: Self.hostsPerRound) {
                let round = Array(first..<min(first + Self.hostsPerRound, e.hosts.count))
                let documents = HostWriter.encode(e, round, concurrency: 2)
                for (h, document) in zip(round, documents) {
                    let digest = HostDigest(document)
                    next[e.hosts[h]] = digest
                    if written[e.hosts[h]] != digest {
                        let value = DesiredValue.encode(region: regionRevision, document: document)
                        try await writes.add(.put(key: FleetKeys.desired(e.hosts[h]), value: value))
                    }
                }
            }
        }
        encoder = nil
        for host in written.keys where next[host] == nil { try await writes.add(.delete(key: FleetKeys.desired(host))) }
        // The model for the changes to come, built while the last writes are in flight
        // and after the encoder is freed.
        if let r = region {
            region = nil
            model = RegionModel(region: r, chunkIDs: chunkIDs)
            head = loadedHead
        }
        try await writes.finish()
        phases.write = writes.waited
        written = next
        log(phases, since: started, hosts: next.count, written: writes.count, full: true)
        return revision
    }

    /// One new head (the watch's event): only the chunks it added are read, only the
    /// hosts their objects reach are rendered. Without a model (no region at the last
    /// full render) it renders everything.
    func renderChange(_ kv: KeyValue) async throws {
        guard model != nil, let old = head else {
            _ = try await fullRender()
            return
        }
        let clock = ContinuousClock()
        let started = clock.now
        var phases = Phases()
        let new = try RegionStore.Head.decode(kv.value)
        let oldKeys = Set(old.keys)
        let newKeys = new.keys
        let added = newKeys.filter { !oldKeys.contains($0) }
        let removed = oldKeys.subtracting(newKeys)
        let store = RegionStore(etcd: etcd)
        let values = try await store.fetch(added, revision: kv.modRevision)
        phases.read = clock.now - started
        var mark = clock.now
        var parts: [(key: String, part: RegionPart)] = []
        for key in added {
            guard let kind = FleetKeys.parseRegionObjectKey(key), let bytes = values[key] else { continue }
            let decoded = RegionParser.decode(RegionChunk(kind: kind, start: 0, bytes: bytes))
            if let e = decoded.errors.first {
                throw EtcdError.refused("region chunk \(key) does not decode: \(e)")
            }
            parts.append((key, decoded.part))
        }
        phases.parse = clock.now - mark
        mark = clock.now
        // The objects that may have changed: those of the chunks that went and came.
        var before: [RegionKind: Set<String>] = [:]
        for key in removed {
            guard let kind = FleetKeys.parseRegionObjectKey(key) else { continue }
            before[kind, default: []].formUnion(self.model?.chunkIDs[key] ?? [])
        }
        // Taken out of the actor's property so that this copy is the only reference:
        // changed in place, not copied whole (100,000 sources) by the first change.
        guard var model = self.model else { return }
        self.model = nil
        var after: [RegionKind: [String: RegionModel.Object]] = [:]
        for (_, part) in parts {
            for (id, o) in RegionModel.objects(part) { after[part.kind, default: [:]][id] = o }
        }
        var changed: [(RegionKind, String, RegionModel.Object?)] = []
        for kind in RegionKind.allCases {
            let ids = (before[kind] ?? []).union((after[kind] ?? [:]).keys)
            for id in ids {
                let o = after[kind]?[id]
                if model.object(kind, id) != o { changed.append((kind, id, o)) }
            }
        }
        // Hosts reached before and after: a source whose host changed is in both, so a
        // live migration is one write (issue 18 item 6).
        var affected = Set<String>()
        for (kind, id, _) in changed { affected.formUnion(model.hosts(reachedBy: kind, id)) }
        for (kind, id, o) in changed { model.set(kind, id, o) }
        for key in removed { model.chunkIDs[key] = nil }
        for (key, part) in parts { model.chunkIDs[key] = part.ids }
        for (kind, id, _) in changed { affected.formUnion(model.hosts(reachedBy: kind, id)) }
        self.model = model
        self.head = new
        phases.index = clock.now - mark

        var writes = Writes(etcd: etcd, leaderRevision: leaderRevision)
        var rendered: [String: HostDigest] = [:]
        if !affected.isEmpty {
            let encoder = HostEncoder(model.subRegion(affected))
            for h in encoder.hosts.indices {
                let host = encoder.hosts[h]
                let document = encoder.encode(host: h)
                let digest = HostDigest(document)
                rendered[host] = digest
                if written[host] != digest {
                    let value = DesiredValue.encode(region: kv.modRevision, document: document)
                    try await writes.add(.put(key: FleetKeys.desired(host), value: value))
                }
            }
        }
        // A host whose last source left.
        for host in affected.sorted() where rendered[host] == nil && written[host] != nil {
            try await writes.add(.delete(key: FleetKeys.desired(host)))
        }
        try await writes.finish()
        phases.write = writes.waited
        for host in affected { written[host] = rendered[host] }
        log(phases, since: started, hosts: affected.count, written: writes.count, full: false)
    }

    private func log(_ phases: Phases, since started: ContinuousClock.Instant, hosts: Int, written: Int, full: Bool) {
        var phases = phases
        // A render allocates and frees hundreds of MB (the region's text, its JSON
        // tree, the model, the encoded objects): give the freed heap back rather than
        // keep the RSS at the peak of the largest render so far.
        if full { _ = malloc_trim(0) }
        let d = ContinuousClock.now - started
        phases.hosts = d - phases.read - phases.parse - phases.index - phases.write
        logger.info(
            full ? "rendered the region" : "rendered a change",
            metadata: [
                "hosts": "\(hosts)", "written": "\(written)", "ms": "\(Phases.ms(d))", "readMs": "\(Phases.ms(phases.read))",
                "parseMs": "\(Phases.ms(phases.parse))", "indexMs": "\(Phases.ms(phases.index))",
                "hostsMs": "\(Phases.ms(phases.hosts))", "writeMs": "\(Phases.ms(phases.write))",
            ])
    }

    /// Fenced transactions within etcd's limits, up to `writesInFlight` at once while
    /// the next batch is assembled: the writes wait on etcd's consensus and disks, the
    /// assembling on this process's CPU.
    struct Writes {
        let etcd: EtcdClient
        let leaderRevision: Int64
        var pending = TxnBatcher.Accumulator(maxOps: TxnBatcher.maxOps - 1)
        var inflight: [Task<Int, Error>] = []
        var count = 0
        var waited = Duration.zero

        init(etcd: EtcdClient, leaderRevision: Int64) {
            self.etcd = etcd; self.leaderRevision = leaderRevision
        }

        mutating func add(_ op: TxnOperation) async throws {
            if let batch = pending.add(op) { try await send(batch) }
        }

        mutating func finish() async throws {
            if let batch = pending.finish() { try await send(batch) }
            while !inflight.isEmpty { try await landOldest() }
        }

        private mutating func landOldest() async throws {
            let clock = ContinuousClock()
            let mark = clock.now
            defer { waited += clock.now - mark }
            let t = inflight.removeFirst()
            do { count += try await t.value } catch {
                for other in inflight { other.cancel() }
                inflight = []
                throw error
            }
        }

        private mutating func send(_ batch: [TxnOperation]) async throws {
            while inflight.count >= HostWriter.writesInFlight { try await landOldest() }
            let etcd = self.etcd
            let leaderRevision = self.leaderRevision
            inflight.append(
                Task.detached {
                    // Fenced: a controller that lost its lease meanwhile writes nothing.
                    let r = try await etcd.txn(if: [.createRevision(FleetKeys.leader, is: leaderRevision)], then: batch)
                    guard r.succeeded else { throw EtcdError.leaseLost(0) }
                    return batch.count
                })
        }
    }

    struct Phases {
        var read = Duration.zero, parse = Duration.zero, index = Duration.zero, hosts = Duration.zero, write = Duration.zero
        static func ms(_ d: Duration) -> Int64 { d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000 }
    }
}
