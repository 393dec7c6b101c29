import CMirrorABI
import Foundation
import Glibc
import MirrorCompiler
import MirrorCore

/// SPEC §11 (`agentctl capture`) in the kernel datapath: the want maps of
/// bpf/capture.h written from the running captures and the slots in force (again after
/// every apply, since a session's sources may change), and the ring read on a thread
/// of its own while any capture runs. That thread never takes the datapath's lock: an
/// apply does not stall the reader (a stalled reader is what loses packets).
final class KernelCapture: @unchecked Sendable {
    /// Guards everything below; the reader waits on it while no capture runs.
    let state = NSCondition()
    var selectors: [Int: CaptureSelector] = [:]
    var sink: (@Sendable ([CapturedPacket]) -> Void)?
    var names = Names()
    var ring: CaptureRing?
    var reader: Thread?
    var stopping = false
    /// The keys last written nonzero, zeroed when no capture wants them any more.
    var written = (wants: Set<UInt32>(), sessions: Set<UInt32>())

    /// Slots back to ids, from the policy in force.
    struct Names {
        var sources: [UInt16: (id: String, interface: String)] = [:]
        var sessions: [UInt16: String] = [:]
        var rules = RuleTable()
    }

    /// The reader: waits while no capture runs, else polls the ring (100 ms at most, so
    /// that a stop is seen) and hands each batch to the sink.
    func run() {
        while true {
            state.lock()
            while selectors.isEmpty && !stopping { state.wait() }
            let ring = self.ring
            let stop = stopping
            state.unlock()
            if stop { return }
            guard let ring else { continue }
            let records = ring.poll(timeoutMs: 100)
            if !records.isEmpty { deliver(records) }
        }
    }

    func deliver(_ records: [CaptureRecord]) {
        state.lock()
        let names = self.names, sink = self.sink
        state.unlock()
        guard let sink else { return }
        let offset = Self.wallClockOffsetNs()
        sink(records.map { Self.packet($0, names: names, wallOffsetNs: offset) })
    }

    static func packet(_ r: CaptureRecord, names: Names, wallOffsetNs: Int64) -> CapturedPacket {
        let source = names.sources[r.sourceSlot]
        let rule = names.rules[RuleKey(sessionSlot: r.sessionSlot, direction: r.direction, ruleIndex: r.ruleIndex)]
        return CapturedPacket(
            captures: r.captures,
            packet: CapturePacket(
                timestampNs: UInt64(clamping: Int64(clamping: r.monotonicNs) &+ wallOffsetNs),
                source: source?.id ?? "source-slot-\(r.sourceSlot)", interface: source?.interface ?? "ifindex-\(r.ifindex)",
                direction: r.direction, session: names.sessions[r.sessionSlot] ?? rule?.sessionID ?? "session-slot-\(r.sessionSlot)",
                filter: rule?.filterID ?? "?", rulePriority: Int(r.rulePriority), length: Int(r.length), data: r.data))
    }

    /// CLOCK_REALTIME - CLOCK_MONOTONIC now (bpf_ktime_get_ns is CLOCK_MONOTONIC), read
    /// again for each batch so that a stepped or slewed wall clock is followed. The
    /// monotonic reading sits between two wall-clock readings and is set against their
    /// middle.
    static func wallClockOffsetNs() -> Int64 {
        func ns(_ t: timespec) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec) }
        var a = timespec(), m = timespec(), b = timespec()
        clock_gettime(CLOCK_REALTIME, &a)
        clock_gettime(CLOCK_MONOTONIC, &m)
        clock_gettime(CLOCK_REALTIME, &b)
        return ns(a) + (ns(b) - ns(a)) / 2 - ns(m)
    }

    /// The want-map contents for `selectors` under `document` and `slots` (pure):
    /// per source and direction which captures want all of it (--source) or some
    /// session's part of it (--session), with the largest snaplen; per session slot
    /// which captures want it. Ids not in the policy want nothing.
    static func wants(_ selectors: [Int: CaptureSelector], document: Document, slots: SlotAssignment) -> (
        wants: [UInt32: mirror_capture_want], sessions: [UInt32: UInt32]
    ) {
        var wants: [UInt32: mirror_capture_want] = [:]
        var sessions: [UInt32: UInt32] = [:]
        func want(_ sourceSlot: UInt16, _ d: Direction, snaplen: Int, _ update: (inout mirror_capture_want) -> Void) {
            let key = mirror_source_stats_key(UInt32(sourceSlot), UInt32(d.abi))
            var w = wants[key] ?? mirror_capture_want()
            update(&w)
            w.snaplen = max(w.snaplen, UInt32(min(max(snaplen, 1), Int(MIRROR_CAPTURE_MAX_SNAPLEN))))
            wants[key] = w
        }
        for (number, s) in selectors where number >= 0 && number < Int(MIRROR_MAX_CAPTURES) {
            let bit = UInt32(1) << UInt32(number)
            if let id = s.session {
                guard let slot = slots.sessions[id], let session = document.sessions.first(where: { $0.id == id }) else { continue }
                sessions[UInt32(slot), default: 0] |= bit
                for src in session.sources {
                    guard let sourceSlot = slots.sources[src] else { continue }
                    for d in s.directions { want(sourceSlot, d, snaplen: s.snaplen) { $0.sessions |= bit } }
                }
            } else if let id = s.source, let sourceSlot = slots.sources[id] {
                for d in s.directions { want(sourceSlot, d, snaplen: s.snaplen) { $0.sources |= bit } }
            }
        }
        return (wants, sessions)
    }
}

extension KernelDatapath {
    public func setCaptures(_ captures: [Int: CaptureSelector], sink: @escaping @Sendable ([CapturedPacket]) -> Void) throws {
        let removed = try lock.withLock { () throws -> Bool in
            guard let dp = datapath else { throw CaptureUnavailable("the kernel datapath is not started") }
            let c = capture
            c.state.lock()
            let before = Set(c.selectors.keys)
            c.state.unlock()
            if c.ring == nil {
                do { c.ring = try dp.openCaptureRing() } catch { throw CaptureUnavailable("\(error)") }
            }
            c.state.lock()
            c.selectors = captures
            c.sink = sink
            c.state.unlock()
            try writeCaptureWants()
            c.state.lock()
            if c.reader == nil && !captures.isEmpty {
                let t = Thread { c.run() }
                t.name = "mirror-agent.capture-reader"
                c.reader = t
                t.start()
            }
            c.state.broadcast()
            c.state.unlock()
            return !before.subtracting(captures.keys).isEmpty
        }
        // What a stopped capture still had in the ring, before its number is reused.
        if removed, let ring = capture.ring { capture.deliver(ring.consume()) }
    }

    public func captureCounters() throws -> [CaptureCounters] {
        try lock.withLock {
            guard let dp = datapath else { throw CaptureUnavailable("the kernel datapath is not started") }
            return try dp.captureStats().map { CaptureCounters(records: $0.records, lost: $0.lost) }
        }
    }

    /// Writes the want maps for the captures and the policy in force, and the names the
    /// reader resolves slots with. Caller holds `lock`.
    func writeCaptureWants() throws {
        guard let dp = datapath else { return }
        let c = capture
        c.state.lock()
        let selectors = c.selectors
        let written = c.written
        c.state.unlock()
        let slots = image?.slots ?? SlotAssignment()
        let (wants, sessions) = KernelCapture.wants(selectors, document: document, slots: slots)
        // The global switch on after the wants are there, off before they go.
        if selectors.isEmpty { try dp.setCaptureRunning(false) }
        try dp.setCaptureWants(wants, sessions: sessions, clearing: written)
        if !selectors.isEmpty { try dp.setCaptureRunning(true) }
        var names = KernelCapture.Names()
        let interfaces = Dictionary(document.sources.map { ($0.id, $0.interface) }, uniquingKeysWith: { a, _ in a })
        for (id, slot) in slots.sources { names.sources[slot] = (id, interfaces[id] ?? "?") }
        for (id, slot) in slots.sessions { names.sessions[slot] = id }
        names.rules = image?.rules ?? RuleTable()
        c.state.lock()
        c.written = (Set(wants.keys), Set(sessions.keys))
        c.names = names
        c.state.unlock()
    }

    /// After an apply: the captures follow the policy (a session's new sources, slots of
    /// new ids). Caller holds `lock`; a failure is logged, the policy stays applied.
    func refreshCaptures() {
        capture.state.lock()
        let none = capture.selectors.isEmpty && capture.written.wants.isEmpty
        capture.state.unlock()
        if none { return }
        do { try writeCaptureWants() } catch {
            options.logger.warning("update the capture maps after an apply", metadata: ["error": "\(error)"])
        }
    }

    /// At start: no capture runs yet, whatever a previous agent left in the maps.
    /// Caller holds `lock`.
    func clearCapturesAtStart() {
        do { try datapath?.clearCaptureWants() } catch {
            options.logger.warning("clear the capture maps", metadata: ["error": "\(error)"])
        }
    }

    /// At shutdown: the wants go (the ring's reader with them). Caller holds `lock`.
    func stopCaptures() {
        let c = capture
        c.state.lock()
        let hadAny = !c.selectors.isEmpty || !c.written.wants.isEmpty
        c.selectors = [:]
        c.sink = nil
        c.stopping = true
        c.state.broadcast()
        let reader = c.reader
        c.reader = nil
        c.state.unlock()
        if hadAny { clearCapturesAtStart() }
        // The reader returns within one poll (100 ms); the ring goes after it.
        while reader?.isFinished == false { usleep(5000) }
        c.ring?.close()
        c.ring = nil
        c.state.lock()
        c.written = ([], [])
        c.stopping = false
        c.state.unlock()
    }
}
