import CLibbpf
import CMirrorABI
import Foundation
import Glibc
import MirrorCompiler
import MirrorCore

/// One record of the classifier's capture ring (bpf/capture.h), as it came: slots,
/// not ids, and the kernel's monotonic clock, not the wall clock.
public struct CaptureRecord: Sendable {
    /// bpf_ktime_get_ns(): CLOCK_MONOTONIC.
    public var monotonicNs: UInt64
    /// The capture numbers (bits) that want the packet.
    public var captures: UInt32
    /// The packet's whole length.
    public var length: UInt32
    public var ifindex: UInt32
    public var sessionSlot: UInt16
    public var sourceSlot: UInt16
    public var rulePriority: UInt16
    public var ruleIndex: UInt8
    public var direction: Direction
    /// The packet from its Ethernet header, up to the snaplen.
    public var data: [UInt8]
}

/// agentctl capture (SPEC §11): the want maps, the counters and the ring of bpf/capture.h.
extension BPFDatapath {
    /// Writes the wants: each key of `wants` (mirror_source_stats_key) and of `sessions`
    /// (session slot) gets its value, each key in `clearing` that is not in them gets
    /// zero. Session entries that gain bits are written before the wants that refer
    /// to them, and those that lose them after, so a packet never sees a want bit
    /// whose session entry is missing.
    public func setCaptureWants(
        _ wants: [UInt32: mirror_capture_want], sessions: [UInt32: UInt32],
        clearing: (wants: Set<UInt32>, sessions: Set<UInt32>)
    ) throws(DatapathError) {
        let wantFD = try mapFD(.captureWant), sessionFD = try mapFD(.captureSession)
        func put<V>(_ fd: Int32, _ key: UInt32, _ value: V, _ name: ClassifierMap) throws(DatapathError) {
            var k = key, v = value
            let rc = bpf_map_update_elem(fd, &k, &v, UInt64(BPF_ANY))
            try DatapathError.check(rc, "write \(name.rawValue)[\(key)]")
        }
        for (key, mask) in sessions { try put(sessionFD, key, mirror_capture_session(captures: mask), .captureSession) }
        for (key, want) in wants { try put(wantFD, key, want, .captureWant) }
        for key in clearing.wants where wants[key] == nil { try put(wantFD, key, mirror_capture_want(), .captureWant) }
        for key in clearing.sessions where sessions[key] == nil {
            try put(sessionFD, key, mirror_capture_session(), .captureSession)
        }
    }

    /// `mirror_capture_running`: whether the classifier looks at the wants at all. Set
    /// after the wants of a first capture are written, cleared before the last ones go.
    public func setCaptureRunning(_ running: Bool) throws(DatapathError) {
        let fd = captureRunningFD
        guard fd >= 0 else { throw DatapathError("write mirror_capture_running", detail: "the classifier has no .bss.capture map") }
        var key: UInt32 = 0, value: UInt32 = running ? 1 : 0
        try DatapathError.check(bpf_map_update_elem(fd, &key, &value, UInt64(BPF_ANY)), "write mirror_capture_running")
    }

    /// Zeroes every want: what an agent that died during a capture left behind must not
    /// keep the classifier writing to a ring nobody reads.
    public func clearCaptureWants() throws(DatapathError) {
        let fd = try mapFD(.captureWant)
        let keys = [UInt32](0..<UInt32(MIRROR_SOURCE_STATS_ENTRIES))
        var values = [mirror_capture_want](repeating: mirror_capture_want(), count: keys.count)
        var count = UInt32(keys.count)
        let rc = keys.withUnsafeBytes { k in
            values.withUnsafeMutableBytes { v in bpf_map_update_batch(fd, k.baseAddress, v.baseAddress, &count, nil) }
        }
        if rc == 0 { return }
        // A kernel without batch updates: one by one (16,384 entries, a few ms).
        for key in keys {
            var k = key, v = mirror_capture_want()
            try DatapathError.check(bpf_map_update_elem(fd, &k, &v, UInt64(BPF_ANY)), "clear \(ClassifierMap.captureWant.rawValue)[\(key)]")
        }
    }

    /// Per capture number: records written to the ring and records lost (ring full),
    /// since the map was made.
    public func captureStats() throws(DatapathError) -> [(records: UInt64, lost: UInt64)] {
        var out: [(records: UInt64, lost: UInt64)] = []
        for n in 0..<UInt32(MIRROR_MAX_CAPTURES) {
            var records: UInt64 = 0, lost: UInt64 = 0
            for v in try perCPU(.captureStats, key: n, as: mirror_capture_stats.self) {
                records &+= v.records; lost &+= v.lost
            }
            out.append((records, lost))
        }
        return out
    }

    /// A reader of the capture ring (libbpf's ring_buffer on the map's fd).
    public func openCaptureRing() throws(DatapathError) -> CaptureRing {
        try CaptureRing(fd: try mapFD(.captureRing))
    }
}

/// libbpf's ring_buffer over the classifier's capture ring. `poll` and `consume` are
/// serialised (a ring_buffer is not thread-safe); the records come back as values.
public final class CaptureRing: @unchecked Sendable {
    private var ring: OpaquePointer?
    private let lock = NSLock()
    private let box = Box()

    final class Box {
        var records: [CaptureRecord] = []
        /// Records shorter than their header says (never written so): skipped.
        var malformed = 0

        func take(_ data: UnsafeRawPointer, _ size: Int) {
            let header = MemoryLayout<mirror_capture_record>.size
            guard size >= header else { malformed += 1; return }
            let r = data.loadUnaligned(as: mirror_capture_record.self)
            let capLen = Int(r.cap_len)
            guard capLen <= size - header else { malformed += 1; return }
            records.append(
                CaptureRecord(
                    monotonicNs: r.ktime_ns, captures: r.captures, length: r.len, ifindex: r.ifindex,
                    sessionSlot: r.session_slot, sourceSlot: r.source_slot, rulePriority: r.rule_priority,
                    ruleIndex: r.rule_index, direction: r.direction == UInt8(MIRROR_DIR_INBOUND.rawValue) ? .inbound : .outbound,
                    data: [UInt8](UnsafeRawBufferPointer(start: data + header, count: capLen))))
        }
    }

    init(fd: Int32) throws(DatapathError) {
        let ctx = Unmanaged.passUnretained(box).toOpaque()
        let rb = ring_buffer__new(
            fd,
            { ctx, data, size in
                guard let ctx, let data else { return 0 }
                Unmanaged<CaptureRing.Box>.fromOpaque(ctx).takeUnretainedValue().take(UnsafeRawPointer(data), size)
                return 0
            }, ctx, nil)
        guard let rb, libbpf_get_error(UnsafeRawPointer(rb)) == 0 else {
            throw DatapathError("open the capture ring", errno: Glibc.errno)
        }
        ring = rb
    }

    deinit { close() }

    public func close() {
        lock.withLock {
            if let ring { ring_buffer__free(ring) }
            ring = nil
        }
    }

    /// Waits up to `timeoutMs` for records and returns every record there is then
    /// (empty on a timeout or once closed).
    public func poll(timeoutMs: Int32) -> [CaptureRecord] {
        // The wait outside the lock, so that `consume` never waits for it.
        guard let fd = lock.withLock({ ring.map { ring_buffer__epoll_fd($0) } }) else { return [] }
        // An epoll fd is readable when it has events (Glibc does not export epoll_wait).
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        _ = Glibc.poll(&p, 1, timeoutMs)
        return consume()
    }

    /// Every record in the ring now, without waiting.
    public func consume() -> [CaptureRecord] {
        lock.withLock {
            guard let ring else { return [] }
            _ = ring_buffer__consume(ring)
            defer { box.records = [] }
            return box.records
        }
    }
}
