import Foundation
import GRPCCore
import GRPCProtobuf
import Synchronization

extension EtcdClient {
    /// A new lease of `ttl` seconds; keys put with it go when it expires.
    public func grantLease(ttl: Int64) async throws -> Int64 {
        var req = Etcdserverpb_LeaseGrantRequest()
        req.ttl = ttl
        let response = try await withFailover("lease grant") { grpc in
            try await Etcdserverpb_Lease.Client(wrapping: grpc).leaseGrant(req, options: callOptions)
        }
        guard response.error.isEmpty else { throw EtcdError.refused("lease grant: \(response.error)") }
        return response.id
    }

    /// Revokes the lease: its keys go at once.
    public func revokeLease(_ id: Int64) async throws {
        var req = Etcdserverpb_LeaseRevokeRequest()
        req.id = id
        _ = try await withFailover("lease revoke") { grpc in
            try await Etcdserverpb_Lease.Client(wrapping: grpc).leaseRevoke(req, options: callOptions)
        }
    }

    /// Keeps lease `id` (of `ttl` seconds) alive until cancelled, renewing it every
    /// third of its TTL over a keep-alive stream and moving to the next member when
    /// one stops answering. Throws `EtcdError.leaseLost` once the lease has expired or
    /// could not be renewed within its TTL: its keys are gone by then, or will be.
    public func keepAlive(_ id: Int64, ttl: Int64) async throws {
        let interval = Duration.milliseconds(max(100, ttl * 1000 / 3))
        let deadline = Duration.seconds(ttl)
        let lastRenewed = Mutex(ContinuousClock.now)
        var options = Self.messageLimits
        options.waitForReady = false
        let streamOptions = options
        while true {
            try Task.checkCancellation()
            let index = currentIndex
            let member = members[index]
            do {
                try await Etcdserverpb_Lease.Client(wrapping: member.grpc).leaseKeepAlive(
                    request: StreamingClientRequest(of: Etcdserverpb_LeaseKeepAliveRequest.self) { writer in
                        var req = Etcdserverpb_LeaseKeepAliveRequest()
                        req.id = id
                        while true {
                            let quiet = ContinuousClock.now - lastRenewed.withLock { $0 }
                            if quiet > deadline { throw EtcdError.leaseLost(id) }
                            // Unanswered for two rounds: this member is not renewing it.
                            if quiet > interval * 2 + .milliseconds(500) {
                                throw EtcdError.unavailable("keep-alive on \(member.endpoint) unanswered")
                            }
                            try await writer.write(req)
                            try await Task.sleep(for: interval)
                        }
                    },
                    options: streamOptions
                ) { response in
                    for try await message in response.messages {
                        guard message.ttl > 0 else { throw EtcdError.leaseLost(id) }
                        lastRenewed.withLock { $0 = .now }
                    }
                }
                throw EtcdError.unavailable("the keep-alive stream on \(member.endpoint) ended")
            } catch EtcdError.leaseLost(let lost) {
                throw EtcdError.leaseLost(lost)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                rotate(from: index, because: "keep-alive: \(Self.describe(error))")
                if ContinuousClock.now - lastRenewed.withLock({ $0 }) > deadline { throw EtcdError.leaseLost(id) }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}
