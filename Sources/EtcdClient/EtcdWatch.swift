import Foundation
import GRPCCore
import GRPCProtobuf
import Synchronization

public struct WatchEvent: Sendable, Equatable {
    public enum Kind: Sendable { case put, delete }
    public var kind: Kind
    /// For a delete: the key, with `modRevision` the revision of the deletion.
    public var kv: KeyValue
}

/// What one watch response brought: events, or none (a progress notification, or the
/// watch's creation). `revision`: the store's revision the watch has reached; every
/// later event has a higher one.
public struct WatchBatch: Sendable {
    public var events: [WatchEvent]
    public var revision: Int64
}

extension EtcdClient {
    /// Watches `key` (every key under it with `prefix`) from `fromRevision` on the
    /// current member, handing each response to `onBatch` in order. Returns only by
    /// throwing: `EtcdError.compacted` (list again, then watch from the listed
    /// revision + 1), `.silentWatch` or `.unavailable` (the client has moved to the next
    /// member: watch again from the last revision seen + 1), `.watchCanceled`, or
    /// CancellationError.
    ///
    /// A watch can go quiet without an error (a member cut off from the others, a
    /// half-open connection): every `progressInterval` a progress request is sent, and
    /// a watch that answers nothing for `silenceTimeout` is given up (Cilium's
    /// heartbeat; etcd ≥ 3.4 answers progress requests).
    public func watch(
        _ key: String, prefix: Bool = true, fromRevision: Int64,
        progressInterval: Duration = .seconds(1), silenceTimeout: Duration = .seconds(4),
        onBatch: @escaping @Sendable (WatchBatch) async throws -> Void
    ) async throws {
        let index = currentIndex
        let member = members[index]
        let lastHeard = Mutex(ContinuousClock.now)
        // While `onBatch` runs the stream is not read, so nothing is heard: that is the
        // caller's time, not the member's silence (a controller's render of a region
        // at the quotas takes seconds inside its handler).
        let handling = Mutex(false)
        let (progress, progressTick) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(key.utf8)
        if prefix { create.rangeEnd = Self.prefixEnd(key) }
        create.startRevision = fromRevision
        create.progressNotify = true
        let createRequest = create
        var options = Self.messageLimits
        options.waitForReady = false
        let streamOptions = options

        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await Etcdserverpb_Watch.Client(wrapping: member.grpc).watch(
                        request: StreamingClientRequest(of: Etcdserverpb_WatchRequest.self) { writer in
                            var first = Etcdserverpb_WatchRequest()
                            first.createRequest = createRequest
                            try await writer.write(first)
                            for await _ in progress {
                                var p = Etcdserverpb_WatchRequest()
                                p.progressRequest = Etcdserverpb_WatchProgressRequest()
                                try await writer.write(p)
                            }
                        },
                        options: streamOptions
                    ) { response in
                        for try await message in response.messages {
                            lastHeard.withLock { $0 = .now }
                            if message.compactRevision > 0 {
                                throw EtcdError.compacted(revision: message.compactRevision)
                            }
                            if message.canceled {
                                throw EtcdError.watchCanceled(message.cancelReason.isEmpty ? "no reason given" : message.cancelReason)
                            }
                            let events = message.events.map { e in
                                WatchEvent(kind: e.type == .delete ? .delete : .put, kv: KeyValue(e.kv))
                            }
                            handling.withLock { $0 = true }
                            defer {
                                handling.withLock { $0 = false }
                                lastHeard.withLock { $0 = .now }
                            }
                            do {
                                try await onBatch(WatchBatch(events: events, revision: message.header.revision))
                            } catch {
                                throw HandlerError(error: error)
                            }
                        }
                    }
                    throw EtcdError.unavailable("the watch stream on \(member.endpoint) ended")
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: progressInterval)
                        let quiet = ContinuousClock.now - lastHeard.withLock { $0 }
                        if quiet > silenceTimeout && !handling.withLock({ $0 }) {
                            throw EtcdError.silentWatch(endpoint: "\(member.endpoint)")
                        }
                        progressTick.yield()
                    }
                }
                defer { progressTick.finish() }
                try await group.next()
                group.cancelAll()
            }
        } catch let error as HandlerError {
            // The caller's own error (it ended the watch): as it was thrown.
            throw error.error
        } catch let error as EtcdError {
            switch error {
            case .silentWatch, .unavailable: rotate(from: index, because: "\(error)")
            default: break
            }
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            if Self.isMemberFailure(error) {
                rotate(from: index, because: Self.describe(error))
                throw EtcdError.unavailable("watch on \(member.endpoint): \(Self.describe(error))")
            }
            throw EtcdError.refused("watch: \(Self.describe(error))")
        }
    }

    var currentIndex: Int { currentMember }
}

/// An error thrown by a watch's handler, kept apart from the stream's own errors.
struct HandlerError: Error {
    var error: Error
}
