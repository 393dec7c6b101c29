import EtcdClient
import Foundation
import MirrorAPI
import MirrorCore

/// The region document in etcd, stored so that a reader never sees half of one apply
/// (SPEC §9) although a region at the quotas (tens of MB) is far over etcd's request
/// limit (1.5 MiB by default): the text goes into chunks under a new generation, then
/// one transaction points the head key at them. Readers read the head and its chunks
/// at one revision. Older generations are removed after the switch.
public struct RegionStore: Sendable {
    public let etcd: EtcdClient
    /// Bytes per chunk: one put per request, well under the default request limit.
    public static let chunkBytes = 1_000_000

    public init(etcd: EtcdClient) { self.etcd = etcd }

    /// The head key's value.
    struct Head: Codable, Equatable {
        var generation: String
        var chunks: Int
        var bytes: Int
    }

    public struct Loaded: Sendable {
        /// The document's text as applied.
        public var text: [UInt8]
        /// The head key's mod revision: the region's revision.
        public var revision: Int64
        /// The store's revision of the read.
        public var readRevision: Int64
    }

    /// Stores `text` (a validated region document) as the region; returns the region's
    /// new revision. Refused when another apply switched the head meanwhile.
    @discardableResult
    public func store(_ text: [UInt8]) async throws -> Int64 {
        let (headKV, _) = try await etcd.get(FleetKeys.region)
        let generation = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        var index = 0
        var offset = 0
        repeat {
            let end = min(offset + Self.chunkBytes, text.count)
            try await etcd.put(FleetKeys.regionChunk(generation: generation, index: index), Array(text[offset..<end]))
            index += 1
            offset = end
        } while offset < text.count
        let head = Head(generation: generation, chunks: index, bytes: text.count)
        let result = try await etcd.txn(
            if: [.modRevision(FleetKeys.region, is: headKV?.modRevision ?? 0)],
            then: [.put(key: FleetKeys.region, value: Array(try JSONEncoder().encode(head)))])
        guard result.succeeded else {
            try? await etcd.delete(FleetKeys.regionChunks + generation + "/", prefix: true)
            throw EtcdError.refused("another apply changed the region meanwhile; nothing of this one was kept, apply again")
        }
        // Every other generation is unreachable now (an apply that died half-way left
        // its chunks too): remove them.
        if let all = try? await etcd.range(FleetKeys.regionChunks, keysOnly: true) {
            let stale = Set(
                all.kvs.compactMap { kv -> String? in
                    let g = kv.key.dropFirst(FleetKeys.regionChunks.count).split(separator: "/").first.map(String.init)
                    return g == generation ? nil : g
                })
            for g in stale { try? await etcd.delete(FleetKeys.regionChunks + g + "/", prefix: true) }
        }
        return result.revision
    }

    /// The current region document, or nil when none was applied yet.
    public func load() async throws -> Loaded? {
        for _ in 0..<5 {
            let (headKV, readRevision) = try await etcd.get(FleetKeys.region)
            guard let headKV else { return nil }
            guard let head = try? JSONDecoder().decode(Head.self, from: Data(headKV.value)) else {
                throw EtcdError.refused("\(FleetKeys.region) does not hold a region head; was it written by another tool?")
            }
            let chunks = try await etcd.range(FleetKeys.regionChunks + head.generation + "/", revision: readRevision)
            let text = chunks.kvs.sorted { $0.key < $1.key }.flatMap(\.value)
            if chunks.kvs.count == head.chunks && text.count == head.bytes {
                return Loaded(text: text, revision: headKV.modRevision, readRevision: readRevision)
            }
            // A concurrent switch removed them between the two reads: read again.
        }
        throw EtcdError.refused("the region document's chunks are incomplete")
    }

    /// The current region, parsed and validated (MirrorCore's RegionParser), as the
    /// controller reads it.
    public func loadRegion() async throws -> (RegionDocument, Loaded)? {
        guard let loaded = try await load() else { return nil }
        return (try Self.parse(loaded.text), loaded)
    }

    /// A stored region's text parsed and validated, or why it no longer validates.
    public static func parse(_ text: [UInt8]) throws -> RegionDocument {
        switch RegionParser.parse(text) {
        case .failure(let e):
            throw EtcdError.refused("the stored region document no longer validates: \(e.errors.first.map { "\($0)" } ?? "")")
        case .success(let region): return region
        }
    }
}
