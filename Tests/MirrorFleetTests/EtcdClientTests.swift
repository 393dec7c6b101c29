import EtcdClient
import Foundation
import MirrorTestSupport
import Testing

/// One real 3-member etcd cluster with client-certificate TLS for the whole test
/// process (starting one takes seconds), removed when the process exits.
enum SharedEtcd {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cluster: EtcdCluster?

    static func get() throws -> EtcdCluster {
        lock.lock()
        defer { lock.unlock() }
        if let c = cluster { return c }
        let c = try EtcdCluster()
        cluster = c
        atexit { SharedEtcd.shutdown() }
        return c
    }

    static func shutdown() {
        lock.lock()
        defer { lock.unlock() }
        cluster?.shutdown()
        cluster = nil
    }

    static var available: Bool { EtcdCluster.unavailableReason == nil }
}

/// The etcd client against a real 3-member etcd with client-certificate TLS.
@Suite("etcd client against a real etcd", .serialized, .enabled(if: SharedEtcd.available, "needs root and etcd-server"))
struct EtcdClientTests {
    func clusterOrSkip() throws -> EtcdCluster { try SharedEtcd.get() }

    func client(_ c: EtcdCluster, cert: String? = nil, key: String? = nil) throws -> EtcdClient {
        var config = try EtcdConfiguration.parse(
            endpoints: c.endpoints, cacert: c.caFile, cert: cert ?? c.certFile, key: key ?? c.keyFile)
        config.requestTimeout = .seconds(2)
        return try EtcdClient(config)
    }

    @Test func endpointsParseAsEtcdctlTakesThem() throws {
        let c = try EtcdConfiguration.parse(endpoints: "http://198.18.0.1:2379, 198.18.0.2 ,[2001:db8::1]:2400")
        #expect(c.endpoints.map(\.description) == ["198.18.0.1:2379", "198.18.0.2:2379", "[2001:db8::1]:2400"])
        #expect(c.tls == nil)
        #expect {
            try EtcdConfiguration.parse(endpoints: "https://198.18.0.1:2379")
        } throws: { e in
            "\(e)".contains("--etcd-cacert")
        }
        #expect(throws: EtcdError.self) { try EtcdConfiguration.parse(endpoints: "ftp://x:1") }
        #expect(throws: EtcdError.self) { try EtcdConfiguration.parse(endpoints: "x:99999") }
        #expect(throws: EtcdError.self) { try EtcdConfiguration.parse(endpoints: " , ") }
        #expect(throws: EtcdError.self) { try EtcdConfiguration.parse(endpoints: "http://a:1,https://b:2", cacert: "/dev/null") }
    }

    @Test func putRangeDeleteAndTxnCompareModRevision() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        let p = "/test/kv-\(UInt32.random(in: 0...UInt32.max))/"
        let r1 = try await etcd.put(p + "a", Array("1".utf8))
        try await etcd.put(p + "b", Array("2".utf8))
        try await etcd.put(p + "c/d", Array("3".utf8))
        let all = try await etcd.range(p)
        #expect(all.kvs.map(\.key) == [p + "a", p + "b", p + "c/d"])
        #expect(all.revision >= r1)
        let (a, _) = try await etcd.get(p + "a")
        #expect(a?.value == Array("1".utf8))
        #expect(a?.modRevision == r1)

        // Compare-and-swap on the mod revision: the first wins, the stale one fails.
        let ok = try await etcd.txn(if: [.modRevision(p + "a", is: r1)], then: [.put(key: p + "a", value: Array("x".utf8))])
        #expect(ok.succeeded)
        let stale = try await etcd.txn(
            if: [.modRevision(p + "a", is: r1)], then: [.put(key: p + "a", value: Array("y".utf8))], else: [.get(key: p + "a")])
        #expect(!(stale.succeeded))
        #expect(stale.ranges.first?.first?.value == Array("x".utf8))

        // Reading at an older revision sees the old value.
        let old = try await etcd.range(p + "a", prefix: false, revision: r1)
        #expect(old.kvs.first?.value == Array("1".utf8))

        let deleted = try await etcd.delete(p, prefix: true)
        #expect(deleted == 3)
        let emptied = try await etcd.range(p).kvs.isEmpty
        #expect(emptied)
    }

    @Test func rangeReadsMoreKeysThanOnePage() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        let p = "/test/pages-\(UInt32.random(in: 0...UInt32.max))/"
        var ops: [TxnOperation] = []
        for i in 0..<2100 { ops.append(.put(key: p + String(format: "%05d", i), value: [UInt8(i % 256)])) }
        for batch in stride(from: 0, to: ops.count, by: 100) {
            _ = try await etcd.txn(if: [], then: Array(ops[batch..<min(batch + 100, ops.count)]))
        }
        let all = try await etcd.range(p)
        #expect(all.kvs.count == 2100)
        #expect(Set(all.kvs.map(\.key)).count == 2100)
        try await etcd.delete(p, prefix: true)
    }

    @Test func watchFromARevisionSeesEveryChangeInOrderAndProgress() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        let p = "/test/watch-\(UInt32.random(in: 0...UInt32.max))/"
        let start = try await etcd.put(p + "0", [0])
        for i in 1...5 { try await etcd.put(p + "\(i)", [UInt8(i)]) }
        try await etcd.delete(p + "3")
        let seen = Locked<[String]>([])
        let progress = Locked<Int>(0)
        struct Done: Error {}
        do {
            try await etcd.watch(p, fromRevision: start, progressInterval: .milliseconds(200)) { batch in
                if batch.events.isEmpty { progress.with { $0 += 1 } }
                for e in batch.events { seen.with { $0.append("\(e.kind == .put ? "put" : "del") \(e.kv.key.dropFirst(p.count))") } }
                if progress.with({ $0 }) >= 2 { throw Done() }
            }
        } catch is Done {}
        #expect(seen.with { $0 } == ["put 0", "put 1", "put 2", "put 3", "put 4", "put 5", "del 3"])
        try await etcd.delete(p, prefix: true)
    }

    @Test func watchBehindACompactionSaysCompacted() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        let p = "/test/compact-\(UInt32.random(in: 0...UInt32.max))/"
        let first = try await etcd.put(p + "a", [1])
        let last = try await etcd.put(p + "a", [2])
        try await etcd.compact(last)
        do {
            try await etcd.watch(p, fromRevision: first) { _ in }
            Issue.record("a watch from a compacted revision must fail")
        } catch EtcdError.compacted(let r) {
            #expect(r >= last)
        }
    }

    @Test func leaseKeysGoWhenTheLeaseIsRevokedAndStayWhileKeptAlive() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        let key = "/test/lease-\(UInt32.random(in: 0...UInt32.max))"
        let lease = try await etcd.grantLease(ttl: 2)
        try await etcd.put(key, [1], lease: lease)
        let keeper = Task { try await etcd.keepAlive(lease, ttl: 2) }
        try await Task.sleep(for: .seconds(3))
        let kept = try await etcd.get(key).0
        #expect(kept != nil, "kept alive past its TTL")
        keeper.cancel()
        try await etcd.revokeLease(lease)
        let revoked = try await etcd.get(key).0
        #expect(revoked == nil)
    }

    @Test func aClientWithoutACertificateOrWithAForeignOneGetsNothing() async throws {
        let c = try clusterOrSkip()
        var config = try EtcdConfiguration.parse(endpoints: c.endpoints, cacert: c.caFile)
        config.requestTimeout = .seconds(2)
        let anonymous = try EtcdClient(config)
        defer { anonymous.close() }
        do {
            _ = try await anonymous.get("/mirror/v1/region")
            Issue.record("a client without a certificate must be refused")
        } catch let e as EtcdError {
            guard case .unavailable = e else {
                Issue.record("\(e)")
                return
            }
        }
        let intruder = try client(c, cert: c.intruderCertFile, key: c.intruderKeyFile)
        defer { intruder.close() }
        do {
            _ = try await intruder.get("/mirror/v1/region")
            Issue.record("a certificate of another CA must be refused")
        } catch is EtcdError {}
    }

    @Test func requestsMoveToAnotherMemberWhenOneIsKilled() async throws {
        let c = try clusterOrSkip()
        let etcd = try client(c)
        defer { etcd.close() }
        let key = "/test/failover-\(UInt32.random(in: 0...UInt32.max))"
        try await etcd.put(key, [1])
        let before = etcd.currentEndpoint
        let n = Int(before.split(separator: ":")[0].split(separator: ".").last ?? "1") ?? 1
        try c.stop(member: n)
        defer { try? c.start(member: n) }
        for i in 2...6 { try await etcd.put(key, [UInt8(i)]) }
        #expect(etcd.currentEndpoint != before)
        let last = try await etcd.get(key).0?.value
        #expect(last == [6])
    }

    @Test func aWatchOnAMemberThatStopsAnsweringIsGivenUpAndTheClientMovesOn() async throws {
        // A cluster of its own: a paused member would slow the other suites' requests.
        let c = try EtcdCluster()
        defer { c.shutdown() }
        let etcd = try client(c)
        defer { etcd.close() }
        let key = "/test/silent-\(UInt32.random(in: 0...UInt32.max))"
        let rev = try await etcd.put(key, [1])
        let before = etcd.currentEndpoint
        let n = Int(before.split(separator: ":")[0].split(separator: ".").last ?? "1") ?? 1
        let started = ContinuousClock.now
        let watch = Task {
            try await etcd.watch(
                key, prefix: false, fromRevision: rev + 1, progressInterval: .milliseconds(300), silenceTimeout: .seconds(2)
            ) {
                _ in
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        // SIGSTOP: the TCP connection stays up, the member says nothing (no error at all).
        try c.pause(member: n)
        defer { try? c.resume(member: n) }
        do {
            try await watch.value
            Issue.record("the watch ended without an error")
        } catch EtcdError.silentWatch {
            let took = ContinuousClock.now - started
            #expect(took < .seconds(8), "a silent watch was found out after \(took)")
        }
        #expect(etcd.currentEndpoint != before, "the client stays on the silent member")
    }
}

/// A value shared with @Sendable closures in tests.
final class Locked<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ v: T) { value = v }
    @discardableResult
    func with<R>(_ body: (inout T) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
