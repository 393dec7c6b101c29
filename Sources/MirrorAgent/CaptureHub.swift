import Foundation
import Logging
import MirrorAPI
import MirrorCore
import MirrorDatapath

/// `agentctl capture` in the agent (SPEC §11): numbers the running captures (one bit
/// each in the datapath's want maps, so several run at once over one ring), fans the
/// datapath's packets out to them and ends each with its summary.
///
/// Nothing here ever waits for a client: each capture has a queue of frames bounded in
/// bytes, and a packet that does not fit is counted as lost in the agent (the datapath
/// counts what it lost itself when its ring was full). The HTTP server takes the next
/// frames from the queue only once the ones before are on their way to the client.
public final class CaptureHub: @unchecked Sendable {
    /// Frames waiting for one capture's client, at most (a few thousand packets).
    public static let queueBytes = 4 << 20

    private let datapath: Datapath
    private let logger: Logger
    /// Starts and ends run here one at a time: they call into the datapath, which may
    /// wait for an apply, and an end caused by a packet (the count reached) must not
    /// run on the reader thread that delivered it.
    private let control = DispatchQueue(label: "mirror-agent.capture-control")
    private let lock = NSLock()
    private var running: [Int: Capture] = [:]
    private var nextID = 1
    /// Numbers are handed out round-robin, so a number freed a moment ago is the last
    /// to be reused.
    private var nextNumber = 0

    final class Capture {
        let id: String
        let number: Int
        let selector: CaptureSelector
        let count: Int?
        let frames = FrameQueue(limit: CaptureHub.queueBytes)
        var packets = 0
        var lostInAgent = 0
        var baseline = CaptureCounters()
        /// No more packets: its summary is being made.
        var ending = false

        init(id: String, number: Int, selector: CaptureSelector, count: Int?) {
            self.id = id; self.number = number; self.selector = selector; self.count = count
        }
    }

    public init(datapath: Datapath, logger: Logger) {
        self.datapath = datapath; self.logger = logger
    }

    /// The captures running now, by id.
    public var runningIDs: [String] { lock.withLock { running.values.map(\.id).sorted() } }

    /// Starts a capture: the returned stream begins with `started` and ends with the
    /// summary. Throws an APIError when the datapath cannot capture or too many run.
    public func start(
        _ selector: CaptureSelector, count: Int?, duration: Double?, interfaces: [CaptureInterface]
    ) async throws -> Router.ByteStream {
        try await onControl { try self.startNow(selector, count: count, duration: duration, interfaces: interfaces) }
    }

    private func startNow(
        _ selector: CaptureSelector, count: Int?, duration: Double?, interfaces: [CaptureInterface]
    ) throws -> Router.ByteStream {
        let max = CaptureSelector.maxCaptures
        let capture: Capture = try lock.withLock {
            guard let number = (0..<max).map({ (nextNumber + $0) % max }).first(where: { running[$0] == nil }) else {
                throw APIError(status: 429, "\(max) captures are running already (the most at once): stop one first")
            }
            nextNumber = (number + 1) % max
            defer { nextID += 1 }
            return Capture(id: "capture-\(nextID)", number: number, selector: selector, count: count)
        }
        let started = CaptureStarted(
            id: capture.id, session: selector.session, source: selector.source,
            directions: Direction.allCases.filter { selector.directions.contains($0) }, snaplen: selector.snaplen,
            interfaces: interfaces)
        // First in the stream, before the datapath can deliver a packet.
        capture.frames.push(CaptureFrame.started(started).encoded(), force: true)
        do {
            // Before the packets start: the kernel's counters of this number go on from here.
            let counters = try datapath.captureCounters()
            if capture.number < counters.count { capture.baseline = counters[capture.number] }
            let selectors = lock.withLock { () -> [Int: CaptureSelector] in
                running[capture.number] = capture
                return running.mapValues(\.selector)
            }
            try datapath.setCaptures(selectors, sink: { [weak self] in self?.deliver($0) })
        } catch {
            lock.withLock { _ = running.removeValue(forKey: capture.number) }
            if let e = error as? CaptureUnavailable { throw APIError(status: 409, e.description) }
            throw APIError(status: 500, "cannot start the capture: \(error)")
        }
        logger.info(
            "capture started",
            metadata: [
                "capture": "\(capture.id)", "session": "\(selector.session ?? "-")", "source": "\(selector.source ?? "-")",
                "snaplen": "\(selector.snaplen)",
            ])
        if let duration {
            control.asyncAfter(deadline: .now() + duration) { [weak self] in self?.finishNow(capture, ended: "duration") }
        }
        let frames = capture.frames
        return Router.ByteStream(
            next: { await frames.next() },
            drop: { [weak self] serverStopping in
                self?.finish(capture, ended: serverStopping ? "agent_stopping" : "client_gone")
            })
    }

    /// DELETE /v1/captures/{id}: the capture ends; its stream ends with its summary.
    public func stop(id: String) async throws -> CaptureStopResponse {
        guard let capture = lock.withLock({ running.values.first { $0.id == id } }) else {
            throw APIError.notFound("no capture '\(id)' is running")
        }
        await onControl { self.finishNow(capture, ended: "stopped") }
        return CaptureStopResponse(id: id)
    }

    /// Ends every capture (the agent stops).
    public func stopAll(ended: String) async {
        for capture in lock.withLock({ Array(running.values) }) {
            await onControl { self.finishNow(capture, ended: ended) }
        }
    }

    private func finish(_ capture: Capture, ended: String) {
        control.async { self.finishNow(capture, ended: ended) }
    }

    /// On `control`: the datapath stops handing this capture packets (what it still
    /// had in the ring is delivered first), then the summary closes its stream.
    private func finishNow(_ capture: Capture, ended: String) {
        let selectors = lock.withLock { () -> [Int: CaptureSelector]? in
            guard running[capture.number] === capture, !capture.ending else { return nil }
            return running.filter { $0.key != capture.number }.mapValues(\.selector)
        }
        guard let selectors else { return }
        do { try datapath.setCaptures(selectors, sink: { [weak self] in self?.deliver($0) }) } catch {
            logger.warning("capture end: the datapath kept its capture maps", metadata: ["error": "\(error)"])
        }
        let counters = (try? datapath.captureCounters()) ?? []
        let summary = lock.withLock { () -> CaptureSummary in
            capture.ending = true
            running[capture.number] = nil
            var lostInKernel = 0
            if capture.number < counters.count {
                lostInKernel = Int(clamping: counters[capture.number].lost &- capture.baseline.lost)
            }
            return CaptureSummary(
                id: capture.id, packets: capture.packets, lostInKernel: lostInKernel, lostInAgent: capture.lostInAgent,
                ended: ended)
        }
        capture.frames.push(CaptureFrame.summary(summary).encoded(), force: true)
        capture.frames.finish()
        logger.info(
            "capture ended",
            metadata: [
                "capture": "\(capture.id)", "ended": "\(ended)", "packets": "\(summary.packets)", "lost": "\(summary.lost)",
            ])
    }

    /// The datapath's packets (on its reader thread): to each capture that wants them,
    /// while it has room.
    func deliver(_ packets: [CapturedPacket]) {
        var reached: [Capture] = []
        lock.withLock {
            for p in packets {
                var frame: [UInt8]?
                var bits = p.captures
                while bits != 0 {
                    let number = bits.trailingZeroBitCount
                    bits &= bits - 1
                    guard let c = running[number], !c.ending else { continue }
                    if let count = c.count, c.packets >= count { continue }
                    if frame == nil { frame = CaptureFrame.packet(p.packet).encoded() }
                    let bytes = frame!
                    // Each capture's own snaplen (the datapath took the largest of them).
                    let wanted = c.selector.snaplen < p.packet.data.count ? Self.truncated(p.packet, to: c.selector.snaplen) : bytes
                    if c.frames.push(wanted) {
                        c.packets += 1
                        if let count = c.count, c.packets >= count { reached.append(c) }
                    } else {
                        c.lostInAgent += 1
                    }
                }
            }
        }
        for c in reached { finish(c, ended: "count") }
    }

    static func truncated(_ p: CapturePacket, to snaplen: Int) -> [UInt8] {
        var cut = p
        cut.data = Array(p.data.prefix(snaplen))
        return CaptureFrame.packet(cut).encoded()
    }

    private func onControl<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in control.async { c.resume(with: Result { try body() }) } }
    }

    private func onControl(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { c in
            control.async {
                body()
                c.resume()
            }
        }
    }
}

/// One capture's frames on their way to its client: bounded in bytes; `next` hands out
/// everything queued at once (one write for many packets) or waits for the next.
final class FrameQueue: @unchecked Sendable {
    private let lock = NSLock()
    private let limit: Int
    private var frames: [[UInt8]] = []
    private var bytes = 0
    private var finished = false
    private var waiter: CheckedContinuation<[UInt8]?, Never>?

    init(limit: Int) { self.limit = limit }

    /// Queues a frame; false (and nothing queued) when it does not fit, unless `force`.
    @discardableResult
    func push(_ frame: [UInt8], force: Bool = false) -> Bool {
        lock.lock()
        if finished {
            lock.unlock()
            return false
        }
        if let w = waiter {
            waiter = nil
            lock.unlock()
            w.resume(returning: frame)
            return true
        }
        guard force || bytes + frame.count <= limit else {
            lock.unlock()
            return false
        }
        frames.append(frame)
        bytes += frame.count
        lock.unlock()
        return true
    }

    /// No more frames after those queued.
    func finish() {
        let w: CheckedContinuation<[UInt8]?, Never>? = lock.withLock {
            finished = true
            defer { waiter = nil }
            return frames.isEmpty ? waiter : nil
        }
        w?.resume(returning: nil)
    }

    /// Everything queued, or the next frame when nothing is; nil at the end.
    func next() async -> [UInt8]? {
        await withCheckedContinuation { (c: CheckedContinuation<[UInt8]?, Never>) in
            let ready: [UInt8]?? = lock.withLock {
                if !frames.isEmpty {
                    let all = frames.count == 1 ? frames[0] : Array(frames.joined())
                    frames = []
                    bytes = 0
                    return .some(all)
                }
                if finished { return .some(nil) }
                waiter = c
                return .none
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}
