import Crypto
import EtcdClient
import Foundation
import MirrorAPI
import MirrorCore

/// The region document in etcd, stored so that a reader never sees half of one apply
/// (SPEC §9) although a region at the quotas (tens of MB) is far over etcd's request
/// limit (1.5 MiB by default), and so that a small change stores and costs little.
///
/// Each kind's objects (canonical JSON, `RegionEncoding`) are cut into chunks of whole
/// objects at content-defined boundaries: a chunk ends after an object whose id hashes
/// to 0 modulo `boundaryModulus`, or once it holds `chunkBytes`. A chunk's key is its
/// kind and the SHA-256 of its bytes, so inserting, changing or deleting one object
/// changes one chunk (two when a cut moves) and every other chunk keeps its key.
/// An apply uploads only the chunks not yet stored, then one transaction, compared on
/// the head's mod revision, switches the head key (each kind's chunk keys in order),
/// then chunks no head refers to are removed. Readers read the head and its chunks at
/// one revision; chunks are immutable (same key, same bytes), so a reader sees
/// exactly one apply.
public struct RegionStore: Sendable {
    public let etcd: EtcdClient
    /// Most bytes in one chunk: far under etcd's request limit, small enough that a
    /// changed object costs the controller one small read and decode.
    public static let chunkBytes = 64 * 1024
    /// One object in this many ends a chunk (by its id, so boundaries move with the
    /// objects, not with their positions): about 32 objects per chunk.
    public static let boundaryModulus: UInt64 = 32

    public init(etcd: EtcdClient) { self.etcd = etcd }

    /// The head key's value: per kind, its chunks in document order.
    public struct Head: Codable, Equatable, Sendable {
        public struct Chunk: Codable, Equatable, Sendable {
            /// Hex SHA-256 (first 128 bits) of the chunk's bytes.
            public var hash: String
            /// Objects in the chunk.
            public var count: Int
        }
        public var format = 2
        public var kinds: [String: [Chunk]] = [:]

        public func chunks(_ kind: RegionKind) -> [Chunk] { kinds[kind.rawValue] ?? [] }

        /// Every chunk key, kind by kind in document order.
        public var keys: [String] {
            RegionKind.allCases.flatMap { kind in chunks(kind).map { FleetKeys.regionObject(kind: kind, hash: $0.hash) } }
        }

        /// Decodes a head key's value; an error names what else may have written it.
        public static func decode(_ bytes: [UInt8]) throws -> Head {
            guard let head = try? JSONDecoder().decode(Head.self, from: Data(bytes)), head.format == 2 else {
                throw EtcdError.refused(
                    "\(FleetKeys.region) does not hold a region head of this layout (written by another tool or an older agentctl?); apply the region again"
                )
            }
            return head
        }
    }

    /// One chunk to store.
    struct Chunk {
        var kind: RegionKind
        var hash: String
        var count: Int
        var bytes: [UInt8]
        var key: String { FleetKeys.regionObject(kind: kind, hash: hash) }
    }

    public struct Loaded: Sendable {
        public var head: Head
        /// Each chunk of the head, in document order, with its objects' first index.
        public var chunks: [RegionChunk]
        /// The chunks' keys, index for index.
        public var keys: [String]
        /// The head key's mod revision: the region's revision.
        public var revision: Int64
        /// The store's revision of the read.
        public var readRevision: Int64

        /// The document as stored (canonical JSON), e.g. for `agentctl get`.
        public var text: [UInt8] {
            var out: [UInt8] = [UInt8(ascii: "{")]
            for (k, kind) in RegionKind.allCases.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                out += Array("\"\(kind.rawValue)\":[".utf8)
                var first = true
                for c in chunks where c.kind == kind && c.bytes.count > 2 {
                    if !first { out.append(UInt8(ascii: ",")) }
                    out += c.bytes.dropFirst().dropLast()
                    first = false
                }
                out.append(UInt8(ascii: "]"))
            }
            out.append(UInt8(ascii: "}"))
            return out
        }

        /// The objects of one kind as JSON, in document order.
        public func objects(_ kind: RegionKind) throws -> [JSONValue] {
            var out: [JSONValue] = []
            for c in chunks where c.kind == kind {
                guard case .success(.array(let items)) = JSONParser.parse(c.bytes) else {
                    throw EtcdError.refused("a chunk of the region's \(kind.rawValue) is not a JSON array")
                }
                out += items
            }
            return out
        }
    }

    /// A stable hash of an id for the chunk boundaries (FNV-1a: the same in every
    /// process, unlike Swift's seeded `Hasher`).
    static func boundaryHash(_ id: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    static func contentHash(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).prefix(16).map { String(format: "%02x", $0) }.joined()
    }

    /// The region cut into chunks, kind by kind in document order.
    static func chunks(_ region: RegionDocument) -> [Chunk] {
        var out: [Chunk] = []
        for kind in RegionKind.allCases {
            var bytes: [UInt8] = [UInt8(ascii: "[")]
            var count = 0
            func cut() {
                bytes.append(UInt8(ascii: "]"))
                out.append(Chunk(kind: kind, hash: contentHash(bytes), count: count, bytes: bytes))
                bytes = [UInt8(ascii: "[")]
                count = 0
            }
            for (id, json) in RegionEncoding.objects(region, kind) {
                if count > 0 { bytes.append(UInt8(ascii: ",")) }
                bytes += json
                count += 1
                if boundaryHash(id) % boundaryModulus == 0 || bytes.count >= chunkBytes { cut() }
            }
            if count > 0 { cut() }
        }
        return out
    }

    /// Stores `region` (validated as a whole by the caller: `agentctl --etcd apply`);
    /// returns the region's new revision. Refused when another apply switched the
    /// head meanwhile (then nothing of this one is referenced).
    @discardableResult
    public func store(_ region: RegionDocument) async throws -> Int64 {
        let chunks = Self.chunks(region)
        var head = Head()
        for c in chunks { head.kinds[c.kind.rawValue, default: []].append(Head.Chunk(hash: c.hash, count: c.count)) }
        let (headKV, _) = try await etcd.get(FleetKeys.region)
        let stored = Set(try await etcd.range(FleetKeys.regionObjects, keysOnly: true).kvs.map(\.key))
        try await upload(chunks.filter { !stored.contains($0.key) })
        let result = try await etcd.txn(
            if: [.modRevision(FleetKeys.region, is: headKV?.modRevision ?? 0)],
            then: [.put(key: FleetKeys.region, value: Array(try JSONEncoder().encode(head)))])
        guard result.succeeded else {
            throw EtcdError.refused("another apply changed the region meanwhile; nothing of this one was kept, apply again")
        }
        // A concurrent apply's clean-up may have removed a chunk this one found stored
        // and so did not upload (it was then referenced by no head): put back any that
        // is missing. Readers retry meanwhile (`load`).
        let after = try await etcd.range(FleetKeys.regionObjects, keysOnly: true)
        let present = Set(after.kvs.map(\.key))
        try await upload(chunks.filter { !present.contains($0.key) })
        // Chunks this head does not refer to: older heads' and dead applies'. Only those
        // older than this switch: a later apply's uploads are its own.
        let referenced = Set(chunks.map(\.key))
        let stale = after.kvs.filter { !referenced.contains($0.key) && $0.modRevision < result.revision }.map(\.key)
        for batch in TxnBatcher.batches(stale.map { .delete(key: $0) }) { _ = try? await etcd.txn(if: [], then: batch) }
        // The layout before content-addressed chunks.
        _ = try? await etcd.delete(FleetKeys.root + "region/chunks/", prefix: true)
        return result.revision
    }

    private func upload(_ chunks: [Chunk]) async throws {
        var seen = Set<String>()
        let ops = chunks.filter { seen.insert($0.key).inserted }.map { TxnOperation.put(key: $0.key, value: $0.bytes) }
        for batch in TxnBatcher.batches(ops) { _ = try await etcd.txn(if: [], then: batch) }
    }

    /// The current region, or nil when none was applied yet.
    public func load() async throws -> Loaded? {
        for attempt in 0..<20 {
            let (headKV, readRevision) = try await etcd.get(FleetKeys.region)
            guard let headKV else { return nil }
            let head = try Head.decode(headKV.value)
            var values: [String: [UInt8]] = [:]
            try await etcd.forEachPage(FleetKeys.regionObjects, pageSize: 500, revision: readRevision) { kvs in
                for kv in kvs { values[kv.key] = kv.value }
            }
            if let loaded = Self.assemble(head, values, revision: headKV.modRevision, readRevision: readRevision) {
                return loaded
            }
            // A chunk is missing: an apply is putting back what a concurrent one removed.
            try await Task.sleep(for: .milliseconds(20 * (attempt + 1)))
        }
        throw EtcdError.refused("the region document's chunks are incomplete")
    }

    /// The head's chunks from `values` (key → bytes), or nil when one is missing.
    static func assemble(_ head: Head, _ values: [String: [UInt8]], revision: Int64, readRevision: Int64) -> Loaded? {
        var chunks: [RegionChunk] = []
        var keys: [String] = []
        for kind in RegionKind.allCases {
            var start = 0
            for c in head.chunks(kind) {
                let key = FleetKeys.regionObject(kind: kind, hash: c.hash)
                guard let bytes = values[key] else { return nil }
                chunks.append(RegionChunk(kind: kind, start: start, bytes: bytes))
                keys.append(key)
                start += c.count
            }
        }
        return Loaded(head: head, chunks: chunks, keys: keys, revision: revision, readRevision: readRevision)
    }

    /// Chunks by key at `revision` (the controller's incremental path: only the chunks
    /// a new head added). Throws when one is missing.
    public func fetch(_ keys: [String], revision: Int64) async throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        if keys.count > 64 {
            // Many: one read of them all beats many small ones.
            let wanted = Set(keys)
            try await etcd.forEachPage(FleetKeys.regionObjects, pageSize: 500, revision: revision) { kvs in
                for kv in kvs where wanted.contains(kv.key) { out[kv.key] = kv.value }
            }
        } else {
            let etcd = self.etcd
            try await withThrowingTaskGroup(of: (String, [UInt8]?).self) { group in
                for key in keys {
                    group.addTask { (key, try await etcd.range(key, prefix: false, revision: revision).kvs.first?.value) }
                }
                for try await (key, value) in group { out[key] = value }
            }
        }
        if let missing = keys.first(where: { out[$0] == nil }) {
            throw EtcdError.refused("region chunk \(missing) is missing at revision \(revision)")
        }
        return out
    }

    /// The current region, parsed and validated as a whole (each chunk decoded
    /// `concurrency` at a time, then the checks across objects).
    public func loadRegion(concurrency: Int = 2) async throws -> (RegionDocument, Loaded)? {
        guard let loaded = try await load() else { return nil }
        return (RegionDocument(parts: try Self.parse(loaded.chunks, concurrency: concurrency)), loaded)
    }

    /// Stored chunks decoded in parallel and validated as a whole, or why they no
    /// longer validate.
    public static func parse(_ chunks: [RegionChunk], concurrency: Int = 2) throws -> [RegionPart] {
        let decoded = Self.decode(chunks, concurrency: concurrency)
        switch RegionParser.assemble(decoded) {
        case .failure(let e):
            throw EtcdError.refused("the stored region document no longer validates: \(e.errors.first.map { "\($0)" } ?? "")")
        case .success(let parts): return parts
        }
    }

    /// `RegionParser.decode` of each chunk, `concurrency` threads at a time, in order.
    public static func decode(_ chunks: [RegionChunk], concurrency: Int) -> [DecodedRegionChunk] {
        let box = ResultBox(count: chunks.count)
        let workers = max(1, min(concurrency, chunks.count))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var i = w
            while i < chunks.count {
                let d = RegionParser.decode(chunks[i])
                box.set(i, d)
                i += workers
            }
        }
        return box.values.map { $0! }
    }

    /// Slots written by distinct threads, each its own index.
    private final class ResultBox: @unchecked Sendable {
        var values: [DecodedRegionChunk?]
        let lock = NSLock()
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ v: DecodedRegionChunk) {
            lock.lock()
            values[i] = v
            lock.unlock()
        }
    }
}
