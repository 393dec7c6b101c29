import EtcdClient
import Foundation
import Logging
import MirrorAPI
import MirrorCore
import MirrorTestSupport
import Testing

@testable import MirrorFleet

@Suite("Transactions within etcd's limits, and the key layout")
struct TxnBatcherTests {
    @Test func batchesStayWithinEtcdsOperationAndByteLimits() {
        let small = (0..<300).map { TxnOperation.put(key: "/k/\($0)", value: [UInt8](repeating: 1, count: 10)) }
        let b = TxnBatcher.batches(small, maxOps: 127)
        #expect(b.map(\.count) == [127, 127, 46])
        let big = (0..<10).map { TxnOperation.put(key: "/b/\($0)", value: [UInt8](repeating: 1, count: 400_000)) }
        let bb = TxnBatcher.batches(big)
        #expect(bb.allSatisfy { $0.reduce(0) { $0 + $1.approximateSize } <= TxnBatcher.maxBytes })
        #expect(bb.flatMap { $0 }.count == 10)
        #expect(bb.count == 4)
    }

    @Test func keyLayoutParsesHostKeys() {
        #expect(FleetKeys.desired("hv1") == "/mirror/v1/hosts/hv1/desired")
        #expect(FleetKeys.parseHostKey("/mirror/v1/hosts/hv1/status")?.host == "hv1")
        #expect(FleetKeys.parseHostKey("/mirror/v1/region") == nil)
        #expect(!(FleetKeys.isValidHostName("a/b")))
        #expect(!(FleetKeys.isValidHostName("")))
        #expect(FleetKeys.isValidHostName("hv-1.rack2"))
        #expect(!(FleetKeys.isValidHostName("hv_1")))
    }
}

/// The region store and the controller against a real etcd.
@Suite("Region store and controller against a real etcd", .serialized, .enabled(if: SharedEtcd.available, "needs root and etcd-server"))
struct FleetControllerTests {
    func clusterOrSkip() throws -> EtcdCluster { try SharedEtcd.get() }

    func client(_ c: EtcdCluster) throws -> EtcdClient {
        try EtcdClient(try EtcdConfiguration.parse(endpoints: c.endpoints, cacert: c.caFile, cert: c.certFile, key: c.keyFile))
    }

    static func region(sessions: Int, hosts: [String], padding: Int = 0) -> [UInt8] {
        var sources: [String] = []
        var sess: [String] = []
        for i in 0..<sessions {
            let host = hosts[i % hosts.count]
            let pad = String(repeating: "x", count: padding)
            sources.append(#"{"id":"s\#(i)","interface":"tap\#(i)","host":"\#(host)","description":"\#(pad)"}"#)
            sess.append(#"{"id":"x\#(i)","priority":\#(i + 1),"filter":"f","sources":["s\#(i)"],"target":"t\#(i / 10)","vni":\#(i)}"#)
        }
        let targets = (0..<(sessions + 9) / 10).map { #"{"id":"t\#($0)","type":"nic","address":"198.51.100.\#($0 % 250 + 2)"}"# }
        let filter = #"{"id":"f","inbound":[{"priority":1,"action":"accept","ethertype":"ipv4","protocol":"all"}],"outbound":[]}"#
        return Array(
            #"{"filters":[\#(filter)],"targets":[\#(targets.joined(separator: ","))],"sources":[\#(sources.joined(separator: ","))],"sessions":[\#(sess.joined(separator: ","))]}"#
                .utf8)
    }

    static func parsed(_ text: [UInt8]) throws -> RegionDocument {
        switch RegionParser.parse(text) {
        case .success(let r): return r
        case .failure(let e): throw e
        }
    }

    @Test func aRegionOverTheRequestLimitIsStoredInChunksAndReadBackWhole() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        // About 2.7 MB: over etcd's 1.5 MiB request limit.
        let region = RegionDocuments.atQuotas(sessions: 2000, sources: 10000, hosts: 20)
        #expect(RegionEncoding.text(region, pretty: false).utf8.count > 2_000_000)
        let store = RegionStore(etcd: etcd)
        let rev = try await store.store(region)
        let loaded = try #require(try await store.load())
        #expect(try Self.parsed(loaded.text) == region)
        #expect(loaded.revision == rev)
        // `agentctl get`: one kind's objects, in the region's order, with their host.
        let sources = try loaded.objects(.sources)
        #expect(sources.map { $0["id"]?.stringValue } == region.document.sources.map(\.id))
        #expect(sources.first?["host"]?.stringValue == "hv-0")
        #expect(try RegionStore.parse(loaded.chunks).flatMap(\.sessions) == region.document.sessions)
        // A second apply replaces it, and the first one's chunks are gone.
        let small = try Self.parsed(Self.region(sessions: 3, hosts: ["hv1"]))
        try await store.store(small)
        let reread = try #require(try await store.load())
        #expect(try Self.parsed(reread.text) == small)
        let chunks = try await etcd.range(FleetKeys.regionObjects, keysOnly: true)
        #expect(Set(chunks.kvs.map(\.key)) == Set(reread.keys))
    }

    @Test func oneChangedSessionChangesOneChunk() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        var region = RegionDocuments.atQuotas(sessions: 400, sources: 2000, hosts: 40)
        let store = RegionStore(etcd: etcd)
        try await store.store(region)
        let before = try #require(try await store.load()).keys
        #expect(before.count > 40)
        region.document.sessions[123].vni = 77777
        try await store.store(region)
        let after = try #require(try await store.load()).keys
        #expect(Set(after).subtracting(before).count == 1)
        #expect(Set(before).subtracting(after).count == 1)
        // A session inserted in the middle, one deleted: at most two chunks each.
        region.document.sessions.insert(
            Session(id: "session-new", priority: 3, filter: "filter-1", sources: ["src-5"], target: "target-1", vni: 88888),
            at: 200)
        region.document.sessions.remove(at: 50)
        try await store.store(region)
        let third = try #require(try await store.load())
        #expect(Set(third.keys).subtracting(after).count <= 4)
        #expect(try RegionStore.parse(third.chunks).flatMap(\.sessions) == region.document.sessions)
    }

    @Test func theControllerWritesOnlyChangedHostsRemovesEmptyOnesAndAnotherTakesOver() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        try await etcd.delete(FleetKeys.root, prefix: true)
        let store = RegionStore(etcd: etcd)
        try await store.store(try Self.parsed(Self.region(sessions: 30, hosts: ["hv1", "hv2", "hv3"])))
        let logger = Logger(label: "test")
        let first = Task { try await FleetController(etcd: etcd, id: "one", leaseTTL: 2, logger: logger).run() }
        defer { first.cancel() }
        func desired() async throws -> [String: KeyValue] {
            var out: [String: KeyValue] = [:]
            for kv in try await etcd.range(FleetKeys.hosts).kvs {
                if let (h, leaf) = FleetKeys.parseHostKey(kv.key), leaf == "desired" { out[h] = kv }
            }
            return out
        }
        func eventually(_ what: String, _ check: () async throws -> Bool) async throws {
            for _ in 0..<100 {
                if try await check() { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            Issue.record("never: \(what)")
        }
        try await eventually("three hosts rendered") { try await desired().count == 3 }
        let before = try await desired()
        let hv1 = try #require(DesiredValue.decode(before["hv1"]!.value))
        #expect(hv1.document["sessions"]?.arrayValue?.count == 10)

        // Only hv1 and hv2 keep sources: hv3's key goes, hv1's is rewritten, hv2's is not.
        try await store.store(try Self.parsed(Self.region(sessions: 20, hosts: ["hv1", "hv2"])))
        try await eventually("hv3 removed") { try await desired()["hv3"] == nil }
        let after = try await desired()
        #expect(after["hv1"]?.modRevision != before["hv1"]?.modRevision)

        // A second controller waits; when the first stops it takes over.
        let second = Task { try await FleetController(etcd: etcd, id: "two", leaseTTL: 2, logger: logger).run() }
        defer { second.cancel() }
        try await Task.sleep(for: .milliseconds(500))
        let holder = try await etcd.get(FleetKeys.leader).0?.value
        #expect(holder == Array("one".utf8))
        first.cancel()
        try await eventually("the second controller leads") {
            try await etcd.get(FleetKeys.leader).0?.value == Array("two".utf8)
        }
        try await store.store(try Self.parsed(Self.region(sessions: 5, hosts: ["hv2"])))
        try await eventually("the new leader renders") { try await desired().keys.sorted() == ["hv2"] }
        second.cancel()
        try await etcd.delete(FleetKeys.root, prefix: true)
    }
}
