import EtcdClient
import Foundation
import Logging
import MirrorCore
import MirrorTestSupport
import Testing

@testable import MirrorFleet

/// The controller's incremental path (one new head: only its new chunks read, only
/// the hosts they reach rendered) against a real etcd: after every change the desired
/// keys hold exactly the bytes a full render of the whole region gives. In the
/// region store's suite: they share its etcd keys, so they must not run beside it.
extension FleetControllerTests {
    struct Fleet {
        let etcd: EtcdClient
        let store: RegionStore
        let writer: HostWriter

        /// Stores `region` and hands its head to the writer as the watch would.
        func apply(_ region: RegionDocument) async throws {
            #expect(RegionParser.validate(region).isEmpty, "the test's region must be valid")
            try await store.store(region)
            let kv = try #require(try await etcd.get(FleetKeys.region).0)
            try await writer.renderChange(kv)
        }

        func desired() async throws -> [String: KeyValue] {
            var out: [String: KeyValue] = [:]
            for kv in try await etcd.range(FleetKeys.hosts).kvs {
                if let (h, leaf) = FleetKeys.parseHostKey(kv.key), leaf == "desired" { out[h] = kv }
            }
            return out
        }

        /// The desired keys are exactly a full render of `region`.
        func expectFullRender(of region: RegionDocument, _ what: Comment) async throws {
            let want = HostRenderer.renderEncoded(region)
            let have = try await desired().mapValues { Array(DesiredValue.documentBytes($0.value) ?? []) }
            #expect(have.keys.sorted() == want.keys.sorted(), what)
            for (host, bytes) in want where have[host] != bytes {
                Issue.record("\(what): \(host)'s document differs from a full render")
            }
        }
    }

    func incrementalFleet() async throws -> Fleet {
        let c = try SharedEtcd.get()
        let etcd = try EtcdClient(try EtcdConfiguration.parse(endpoints: c.endpoints, cacert: c.caFile, cert: c.certFile, key: c.keyFile))
        try await etcd.delete(FleetKeys.root, prefix: true)
        // The fence compares the leader key's create revision.
        let leader = try await etcd.put(FleetKeys.leader, Array("test".utf8))
        return Fleet(
            etcd: etcd, store: RegionStore(etcd: etcd),
            writer: HostWriter(etcd: etcd, leaderRevision: leader, logger: Logger(label: "test")))
    }

    static func incrementalRegion() -> RegionDocument {
        var r = RegionDocuments.atQuotas(sessions: 200, sources: 1000, hosts: 20)
        // Twenty sessions share one filter, so one filter change reaches many hosts.
        for k in 0..<20 { r.document.sessions[k * 7].filter = "filter-0" }
        return r
    }

    @Test func changesRenderExactlyWhatAFullRenderGives() async throws {
        let f = try await incrementalFleet()
        defer { f.etcd.close() }
        var region = Self.incrementalRegion()
        try await f.store.store(region)
        _ = try await f.writer.fullRender()
        try await f.expectFullRender(of: region, "full render")

        // One session: only its hosts are written.
        let before = try await f.desired()
        region.document.sessions[3].vni = 55555
        try await f.apply(region)
        try await f.expectFullRender(of: region, "a session changed")
        let hostsOfSession = Set(region.document.sessions[3].sources.compactMap { region.hosts[$0] })
        let rewritten = Set(try await f.desired().filter { before[$0.key]?.modRevision != $0.value.modRevision }.keys)
        #expect(rewritten == hostsOfSession)

        // A filter shared by twenty sessions.
        region.document.filters[0].inbound.removeLast()
        try await f.apply(region)
        try await f.expectFullRender(of: region, "a shared filter changed")

        // A source moves to another host (live migration): both hosts in one write.
        let moved = region.document.sources[17].id
        let from = region.hosts[moved]!
        let to = from == "hv-0" ? "hv-1" : "hv-0"
        region.hosts[moved] = to
        region.document.sources[17].interface = "migrated0"
        try await f.apply(region)
        try await f.expectFullRender(of: region, "a source moved")
        let now = try await f.desired()
        #expect(now[from]?.modRevision == now[to]?.modRevision, "both hosts of a migration in one transaction")

        // A host's only source removed: its desired key goes.
        region.document.sources.append(Source(id: "lonely", interface: "tap0"))
        region.hosts["lonely"] = "hv-lonely"
        try await f.apply(region)
        #expect(try await f.desired()["hv-lonely"] != nil)
        region.document.sources.removeLast()
        region.hosts["lonely"] = nil
        try await f.apply(region)
        try await f.expectFullRender(of: region, "a host's last source removed")
        #expect(try await f.desired()["hv-lonely"] == nil)
    }

    @Test func randomChangesRenderExactlyWhatAFullRenderGives() async throws {
        let f = try await incrementalFleet()
        defer { f.etcd.close() }
        var region = Self.incrementalRegion()
        try await f.store.store(region)
        _ = try await f.writer.fullRender()
        var rng = SeededRandom(seed: 18)
        var applied = 0
        for step in 0..<40 where applied < 12 {
            var next = region
            let d = next.document
            switch rng.int(0...6) {
            case 0:  // a session's sources shrink
                let i = rng.int(0...(d.sessions.count - 1))
                if next.document.sessions[i].sources.count > 1 { next.document.sessions[i].sources.removeLast() }
            case 1:  // a session deleted
                next.document.sessions.remove(at: rng.int(0...(d.sessions.count - 1)))
            case 2:  // a source moves host
                let i = rng.int(0...(d.sources.count - 1))
                next.hosts[d.sources[i].id] = "hv-\(rng.int(0...24))"
                next.document.sources[i].interface = "moved\(step)"
            case 3:  // a security group's rules change
                let i = rng.int(0...(d.securityGroups.count - 1))
                if !d.securityGroups[i].rules.isEmpty { next.document.securityGroups[i].rules.removeLast() }
            case 4:  // a target's address changes
                let i = rng.int(0...(d.targets.count - 1))
                next.document.targets[i].address = .v4(0xCB00_7100 | UInt32(step + 1))  // 203.0.113.x
            case 5:  // a new session on existing sources
                let s = d.sessions[rng.int(0...(d.sessions.count - 1))]
                next.document.sessions.insert(
                    Session(
                        id: "added-\(step)", priority: 3, filter: s.filter, sources: [s.sources[0]], target: s.target, vni: 60000 + step),
                    at: rng.int(0...d.sessions.count))
            default:  // a source deleted, with its sessions' references
                let i = rng.int(0...(d.sources.count - 1))
                let id = d.sources[i].id
                next.document.sources.remove(at: i)
                next.hosts[id] = nil
                for k in next.document.sessions.indices { next.document.sessions[k].sources.removeAll { $0 == id } }
                next.document.sessions.removeAll { $0.sources.isEmpty }
            }
            guard RegionParser.validate(next).isEmpty else { continue }
            region = next
            try await f.apply(region)
            try await f.expectFullRender(of: region, "random change \(step)")
            applied += 1
        }
        #expect(applied >= 8)
        // And a full render of the final region changes nothing.
        let before = try await f.desired()
        _ = try await f.writer.fullRender()
        #expect(try await f.desired() == before)
    }
}
