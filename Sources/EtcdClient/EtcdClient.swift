import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GRPCProtobuf
import Logging
import Synchronization

/// One key's value and revisions, as etcd keeps them.
public struct KeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    public var lease: Int64

    init(_ kv: Mvccpb_KeyValue) {
        key = String(decoding: kv.key, as: UTF8.self)
        value = [UInt8](kv.value)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        lease = kv.lease
    }
}

/// The keys of a range read and the store's revision the read saw.
public struct RangeResult: Sendable {
    public var kvs: [KeyValue]
    public var revision: Int64
}

/// One condition of a transaction (etcd's Compare), on one key.
public struct Comparison: Sendable {
    public enum Target: Sendable {
        /// The key's mod revision (0 = the key does not exist).
        case modRevision(Int64)
        /// The key's create revision (0 = the key does not exist).
        case createRevision(Int64)
        case value([UInt8])
    }
    public var key: String
    public var target: Target
    public var equal: Bool

    public static func modRevision(_ key: String, is revision: Int64) -> Comparison {
        Comparison(key: key, target: .modRevision(revision), equal: true)
    }
    public static func createRevision(_ key: String, is revision: Int64) -> Comparison {
        Comparison(key: key, target: .createRevision(revision), equal: true)
    }
    public static func value(_ key: String, is value: [UInt8]) -> Comparison {
        Comparison(key: key, target: .value(value), equal: true)
    }

    var message: Etcdserverpb_Compare {
        var c = Etcdserverpb_Compare()
        c.key = Data(key.utf8)
        c.result = equal ? .equal : .notEqual
        switch target {
        case .modRevision(let r): c.target = .mod; c.modRevision = r
        case .createRevision(let r): c.target = .create; c.createRevision = r
        case .value(let v): c.target = .value; c.value = Data(v)
        }
        return c
    }
}

/// One operation of a transaction.
public enum TxnOperation: Sendable {
    case put(key: String, value: [UInt8], lease: Int64 = 0)
    case delete(key: String)
    case deletePrefix(String)
    case get(key: String)

    var message: Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        switch self {
        case .put(let key, let value, let lease):
            var p = Etcdserverpb_PutRequest()
            p.key = Data(key.utf8); p.value = Data(value); p.lease = lease
            op.requestPut = p
        case .delete(let key):
            var d = Etcdserverpb_DeleteRangeRequest()
            d.key = Data(key.utf8)
            op.requestDeleteRange = d
        case .deletePrefix(let prefix):
            var d = Etcdserverpb_DeleteRangeRequest()
            d.key = Data(prefix.utf8); d.rangeEnd = EtcdClient.prefixEnd(prefix)
            op.requestDeleteRange = d
        case .get(let key):
            var r = Etcdserverpb_RangeRequest()
            r.key = Data(key.utf8)
            op.requestRange = r
        }
        return op
    }

    /// Bytes this operation adds to a request (for etcd's request size limit).
    public var approximateSize: Int {
        switch self {
        case .put(let key, let value, _): return key.utf8.count + value.count + 16
        case .delete(let key), .get(let key), .deletePrefix(let key): return 2 * key.utf8.count + 16
        }
    }
}

public struct TxnResult: Sendable {
    public var succeeded: Bool
    /// The store's revision after the transaction (the revision of its writes).
    public var revision: Int64
    /// For each `.get` of the branch that ran, its keys.
    public var ranges: [[KeyValue]]
}

/// An etcd v3 client over the generated gRPC stubs (grpc-swift-2), with failover:
/// requests go to one member at a time and move to the next when it is unreachable,
/// times out or has no leader. TLS with a client certificate when configured.
public final class EtcdClient: Sendable {
    typealias GRPC = GRPCClient<HTTP2ClientTransport.Posix>

    /// One member's connection; its `runConnections` task lives as long as the client.
    final class Member: Sendable {
        let endpoint: EtcdConfiguration.Endpoint
        let grpc: GRPC
        let runner: Task<Void, Never>

        init(_ endpoint: EtcdConfiguration.Endpoint, tls: EtcdConfiguration.TLS?) throws {
            self.endpoint = endpoint
            let security: HTTP2ClientTransport.Posix.TransportSecurity
            if let tls {
                security = .tls(
                    .init(
                        certificateChain: tls.certFile.map { [.file(path: $0, format: .pem)] } ?? [],
                        privateKey: tls.keyFile.map { .file(path: $0, format: .pem) },
                        serverCertificateVerification: .fullVerification,
                        trustRoots: .certificates([.file(path: tls.caFile, format: .pem)])))
            } else {
                security = .plaintext
            }
            let target: any ResolvableTarget
            if IPv4Address(endpoint.host) {
                target = .ipv4(host: endpoint.host, port: endpoint.port)
            } else if endpoint.host.contains(":") {
                target = .ipv6(host: endpoint.host, port: endpoint.port)
            } else {
                target = .dns(host: endpoint.host, port: endpoint.port)
            }
            let transport = try HTTP2ClientTransport.Posix(
                target: target, transportSecurity: security,
                config: .defaults { config in
                    // A member that comes back is used again within about a second.
                    config.backoff = .init(initial: .milliseconds(100), max: .seconds(1), multiplier: 1.6, jitter: 0.2)
                    // A connection whose peer vanished (no RST) is found out within seconds.
                    config.connection.keepalive = .init(time: .seconds(2), timeout: .seconds(2), allowWithoutCalls: true)
                })
            let grpc = GRPC(transport: transport)
            self.grpc = grpc
            runner = Task { try? await grpc.runConnections() }
        }

        func close() { grpc.beginGracefulShutdown() }
    }

    let members: [Member]
    let configuration: EtcdConfiguration
    /// The member requests go to now.
    private let current = Mutex(0)
    let logger: Logger

    public init(_ configuration: EtcdConfiguration, logger: Logger = Logger(label: "etcd")) throws {
        self.configuration = configuration
        self.logger = logger
        do {
            members = try configuration.endpoints.map { try Member($0, tls: configuration.tls) }
        } catch {
            throw EtcdError.configuration("cannot set up the connection: \(error)")
        }
    }

    /// Closes every connection. Calls in flight fail.
    public func close() {
        for m in members { m.close() }
    }

    deinit { for m in members { m.close() } }

    /// The endpoint requests go to now.
    public var currentEndpoint: String { "\(members[currentMember].endpoint)" }
    var currentMember: Int { current.withLock { $0 } }

    /// Moves to the next endpoint if `from` is still the current one.
    func rotate(from index: Int, because reason: String) {
        let moved = current.withLock { c -> Bool in
            guard c == index else { return false }
            c = (c + 1) % members.count
            return true
        }
        if moved && members.count > 1 {
            logger.info(
                "etcd: moving to the next endpoint",
                metadata: ["from": "\(members[index].endpoint)", "reason": "\(reason)"])
        }
    }

    /// Whether an error means "try another member" rather than "the request is wrong".
    static func isMemberFailure(_ error: Error) -> Bool {
        if let e = error as? RPCError {
            switch e.code {
            case .unavailable, .deadlineExceeded, .unknown, .internalError, .cancelled, .aborted: return true
            default:
                // etcd says these while a member has no leader or lost it.
                return e.message.contains("no leader") || e.message.contains("leader changed")
                    || e.message.contains("not capable")
            }
        }
        return false
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? RPCError {
            var s = "\(e.code): \(e.message)"
            if let cause = e.cause { s += " (\(cause))" }
            return s
        }
        return "\(error)"
    }

    var callOptions: CallOptions {
        var o = Self.messageLimits
        o.timeout = configuration.requestTimeout
        o.waitForReady = false
        return o
    }

    /// The default options with room for etcd's answers. gRPC's client refuses a
    /// response over 4 MiB by default (grpc-swift-nio-transport applies
    /// `maxRequestMessageBytes` to what it receives as well, so both are set), and
    /// etcd's are larger at the region quotas: a range of the region's chunks (tens of
    /// MB), a page of host documents, a watch response of a transaction of 1.4 MB.
    /// etcd sends up to 2 GiB (its `--max-send-bytes` default) and the members are
    /// trusted; requests stay bounded by etcd's `--max-request-bytes` (1.5 MiB).
    static var messageLimits: CallOptions {
        var o = CallOptions.defaults
        o.maxResponseMessageBytes = maxMessageBytes
        o.maxRequestMessageBytes = maxMessageBytes
        return o
    }
    static let maxMessageBytes = 256 << 20

    /// Runs `body` against the current member, moving to the next on member failures,
    /// each member tried at most twice. Other errors (refusals) are thrown as they are.
    func withFailover<T: Sendable>(_ what: String, _ body: (GRPC) async throws -> T) async throws -> T {
        var lastError = ""
        for attempt in 0..<(2 * members.count) {
            let index = current.withLock { $0 }
            do {
                return try await body(members[index].grpc)
            } catch {
                if Task.isCancelled { throw CancellationError() }
                guard Self.isMemberFailure(error) else {
                    throw EtcdError.refused("\(what): \(Self.describe(error))")
                }
                lastError = "\(members[index].endpoint): \(Self.describe(error))"
                rotate(from: index, because: lastError)
                if attempt >= members.count - 1 { try await Task.sleep(for: .milliseconds(100)) }
            }
        }
        throw EtcdError.unavailable("\(what): no endpoint answered; last: \(lastError)")
    }

    // MARK: - KV

    /// The first key after every key that starts with `prefix` (etcd's range end).
    static func prefixEnd(_ prefix: String) -> Data {
        var bytes = [UInt8](prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes)
            }
            bytes.removeLast()
        }
        return Data([0])  // every key
    }

    /// Every key under `prefix` (or the one key `key` when `prefix` is false), at
    /// `revision` (0 = now). Large ranges are read in pages at one revision.
    public func range(_ key: String, prefix: Bool = true, revision: Int64 = 0, keysOnly: Bool = false) async throws -> RangeResult {
        var kvs: [KeyValue] = []
        let atRevision = try await pages(key, prefix: prefix, revision: revision, keysOnly: keysOnly, pageSize: 1000) {
            kvs += $0
        }
        return RangeResult(kvs: kvs, revision: atRevision)
    }

    /// Every key under `prefix` at one revision, handed to `body` `pageSize` keys at a
    /// time (a caller that keeps less than the values, e.g. a digest, never holds them
    /// all). Returns the revision read at.
    @discardableResult
    public func forEachPage(
        _ prefix: String, pageSize: Int, revision: Int64 = 0, _ body: ([KeyValue]) throws -> Void
    ) async throws -> Int64 {
        try await pages(prefix, prefix: true, revision: revision, keysOnly: false, pageSize: pageSize, body)
    }

    private func pages(
        _ key: String, prefix: Bool, revision: Int64, keysOnly: Bool, pageSize: Int, _ body: ([KeyValue]) throws -> Void
    ) async throws -> Int64 {
        var from = Data(key.utf8)
        let end = prefix ? Self.prefixEnd(key) : Data()
        var atRevision = revision
        while true {
            var req = Etcdserverpb_RangeRequest()
            req.key = from
            req.rangeEnd = end
            req.revision = atRevision
            req.keysOnly = keysOnly
            if prefix { req.limit = Int64(max(1, pageSize)) }
            let response = try await withFailover("range \(key)") { grpc in
                try await Etcdserverpb_KV.Client(wrapping: grpc).range(req, options: callOptions)
            }
            try body(response.kvs.map(KeyValue.init))
            if atRevision == 0 { atRevision = response.header.revision }
            guard prefix, response.more, let last = response.kvs.last else { break }
            from = last.key + Data([0])
        }
        return atRevision
    }

    /// One key, or nil; with the store's revision.
    public func get(_ key: String) async throws -> (KeyValue?, revision: Int64) {
        let r = try await range(key, prefix: false)
        return (r.kvs.first, r.revision)
    }

    /// Returns the store's revision after the write.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) async throws -> Int64 {
        var req = Etcdserverpb_PutRequest()
        req.key = Data(key.utf8); req.value = Data(value); req.lease = lease
        let response = try await withFailover("put \(key)") { grpc in
            try await Etcdserverpb_KV.Client(wrapping: grpc).put(req, options: callOptions)
        }
        return response.header.revision
    }

    /// Deletes `key` (or every key under it with `prefix`); returns how many went.
    @discardableResult
    public func delete(_ key: String, prefix: Bool = false) async throws -> Int64 {
        var req = Etcdserverpb_DeleteRangeRequest()
        req.key = Data(key.utf8)
        if prefix { req.rangeEnd = Self.prefixEnd(key) }
        let response = try await withFailover("delete \(key)") { grpc in
            try await Etcdserverpb_KV.Client(wrapping: grpc).deleteRange(req, options: callOptions)
        }
        return response.deleted
    }

    /// A transaction: when every comparison holds, `success` runs, else `failure`.
    /// etcd limits a transaction to 128 operations (`--max-txn-ops`) and a request to
    /// 1.5 MiB (`--max-request-bytes`) by default; callers split (see `TxnBatcher`).
    public func txn(if comparisons: [Comparison], then success: [TxnOperation], else failure: [TxnOperation] = []) async throws
        -> TxnResult
    {
        var req = Etcdserverpb_TxnRequest()
        req.compare = comparisons.map(\.message)
        req.success = success.map(\.message)
        req.failure = failure.map(\.message)
        let response = try await withFailover("txn") { grpc in
            try await Etcdserverpb_KV.Client(wrapping: grpc).txn(req, options: callOptions)
        }
        let ranges = response.responses.compactMap { r -> [KeyValue]? in
            if case .responseRange(let range)? = r.response { return range.kvs.map(KeyValue.init) }
            return nil
        }
        return TxnResult(succeeded: response.succeeded, revision: response.header.revision, ranges: ranges)
    }

    /// Compacts the history up to `revision` (tests; operators use etcdctl).
    public func compact(_ revision: Int64) async throws {
        var req = Etcdserverpb_CompactionRequest()
        req.revision = revision
        req.physical = true
        _ = try await withFailover("compact") { grpc in
            try await Etcdserverpb_KV.Client(wrapping: grpc).compact(req, options: callOptions)
        }
    }
}

/// Whether `s` is a dotted IPv4 address.
func IPv4Address(_ s: String) -> Bool {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
}
