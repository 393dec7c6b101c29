import CLibbpf
import CMirrorABI
import Foundation
import Glibc
import MirrorCompiler
import MirrorCore

/// The double-buffered policy: write the inactive generation, then flip.
extension BPFDatapath {
    // MARK: policy

    /// The generation in force (0 before the first apply) and its slot.
    public func activeGeneration() throws(DatapathError) -> (generation: UInt64, slot: UInt8, mirrorIfindex: UInt32) {
        var key: UInt32 = 0
        var v = mirror_active()
        let rc = bpf_map_lookup_elem(try mapFD(.active), &key, &v)
        try DatapathError.check(rc, "read mirror_active")
        return (v.generation, UInt8(v.slot & 1), v.mirror_ifindex)
    }

    /// Writes `image` completely into the inactive generation slot, then flips the
    /// active slot (SPEC §8: a packet sees the old or the new policy, never a mix).
    /// `mirrorIfindex`: the device copies are cloned to (nil keeps the current one).
    /// Returns the new generation number.
    @discardableResult
    public func apply(_ image: MapImage, mirrorIfindex: UInt32? = nil) throws(DatapathError) -> UInt64 {
        let current = try activeGeneration()
        let slot: UInt8 = current.slot == 0 && current.generation == 0 ? 1 : 1 - current.slot
        // Let readers of the slot we are about to overwrite finish.
        let now = DispatchTime.now().uptimeNanoseconds
        let grace =
            UInt64(slotGracePeriod.components.seconds) * 1_000_000_000
            + UInt64(slotGracePeriod.components.attoseconds / 1_000_000_000)
        if lastFlip != 0 && now - lastFlip < grace {
            usleep(UInt32((grace - (now - lastFlip)) / 1000))
        }

        // Sessions (array, keyed by slot * MAX_SESSIONS + session slot).
        let sessionFD = try mapFD(.session)
        for (sessionSlot, value) in image.sessions {
            var key = UInt32(slot) * UInt32(MAX_SESSIONS) + UInt32(sessionSlot)
            var v = value
            try DatapathError.check(bpf_map_update_elem(sessionFD, &key, &v, UInt64(BPF_ANY)), "write mirror_session[\(key)]")
        }

        // Targets (hash, keyed by slot * MAX_TARGETS + index).
        try replaceSlot(
            try mapFD(.target),
            image.targets.lazy.map { (index, value) in
                (UInt32(slot) * UInt32(MAX_TARGETS) + index, value)
            }, what: { "write mirror_target[\($0 % UInt32(MAX_TARGETS))]" },
            inSlot: { $0 / UInt32(MAX_TARGETS) == UInt32(slot) }, id: { UInt64($0) })

        // Collector health (SPEC §10), keyed like the targets.
        try writeTargetHealth(image.targetHealth, slot: slot)

        // Policies (lazily: a 20,000-session image holds about 40 MB of them; no copy).
        let sourceOfIfindex = { (k: mirror_policy_key) in image.policies.first { $0.ifindex == k.ifindex }?.sourceID ?? "?" }
        try replaceSlot(
            try mapFD(.policy), image.policies.lazy.map { entry in (entry.key(slot: slot), entry.value) },
            what: { "write policy of source \(sourceOfIfindex($0)) (ifindex \($0.ifindex), direction \($0.direction))" },
            inSlot: { $0.slot == slot }, id: Self.policyKeyID)

        // The index the classifier reads before the policies, same slot.
        try writePrefilter(image, slot: slot)

        // Security groups and ACLs (SPEC §5, SecurityMaps.swift), same slot.
        try writeSecurity(image, slot: slot)

        // Flip.
        var active = mirror_active()
        active.slot = UInt32(slot) | (image.security.isEmpty ? 0 : UInt32(MIRROR_ACTIVE_SECURITY))
        active.mirror_ifindex = mirrorIfindex ?? current.mirrorIfindex
        active.generation = current.generation + 1
        var zero: UInt32 = 0
        var replaced = mirror_active()
        try DatapathError.check(bpf_map_lookup_elem(try mapFD(.active), &zero, &replaced), "read mirror_active")
        try DatapathError.check(
            bpf_map_update_elem(try mapFD(.active), &zero, &active, UInt64(BPF_ANY)),
            "flip mirror_active to slot \(slot)")
        lastFlip = DispatchTime.now().uptimeNanoseconds
        replacedActive = replaced
        return active.generation
    }

    /// Flips back to the generation the last `apply` replaced. That apply wrote only
    /// the other slot, so the old policy is intact: the caller's other half of the
    /// change failed (the agent's nft enforcement) and the kernel must run exactly
    /// the old policy again. Once only; the next apply writes the abandoned slot,
    /// after the grace period.
    public func revertApply() throws(DatapathError) {
        guard var previous = replacedActive else { throw DatapathError("flip back", detail: "no apply to undo") }
        var zero: UInt32 = 0
        try DatapathError.check(
            bpf_map_update_elem(try mapFD(.active), &zero, &previous, UInt64(BPF_ANY)),
            "flip mirror_active back to slot \(previous.slot & 1)")
        lastFlip = DispatchTime.now().uptimeNanoseconds
        replacedActive = nil
    }

    /// Sets the device copies are cloned to, without changing the policy.
    public func setMirrorDevice(ifindex: UInt32) throws(DatapathError) {
        var key: UInt32 = 0
        var v = mirror_active()
        let fd = try mapFD(.active)
        try DatapathError.check(bpf_map_lookup_elem(fd, &key, &v), "read mirror_active")
        v.mirror_ifindex = ifindex
        try DatapathError.check(bpf_map_update_elem(fd, &key, &v, UInt64(BPF_ANY)), "write mirror_active")
    }

    /// SPEC §10: the host's mirroring budget (`mirror-agent --max-mirror-bps`), bits a
    /// second of all copies together as sent; 0 = none. Writing it restarts the
    /// host's bucket full (bpf/limits.h).
    public func setHostBudget(bitsPerSecond: UInt64) throws(DatapathError) {
        var key = UInt32(MIRROR_LIMITER_HOST)
        var v = mirror_limiter()
        v.budget_bit_cost_fs = Compiler.cost(per: 1_000_000_000_000_000, bitsPerSecond > 0 ? Int(clamping: bitsPerSecond) : nil)
        try DatapathError.check(
            bpf_map_update_elem(try mapFD(.limiter), &key, &v, UInt64(BPF_ANY)), "write the host budget (mirror_limiter)")
    }

    /// Every bucket of `slot` in the prefilter index (PrefilterIndex), the empty
    /// ones too, so nothing of an older generation stays: one batch of 1 MiB.
    func writePrefilter(_ image: MapImage, slot: UInt8) throws(DatapathError) {
        let n = PrefilterIndex.bucketCount
        var values = [mirror_prefilter_bucket](repeating: mirror_prefilter_bucket(), count: n)
        for (b, v) in PrefilterIndex.buckets(image.policies) { values[b] = v }
        var keys = (0..<n).map { UInt32(slot) * UInt32(n) + UInt32($0) }
        var count = UInt32(n)
        let fd = try mapFD(.prefilter)
        let rc = keys.withUnsafeMutableBytes { k in
            values.withUnsafeMutableBytes { v in bpf_map_update_batch(fd, k.baseAddress, v.baseAddress, &count, nil) }
        }
        try DatapathError.check(rc, "write mirror_prefilter (slot \(slot), \(count) of \(n) buckets written)")
    }

    /// SPEC §10: every entry of `slot` in mirror_target_health (the targets not in
    /// `downMasks` healthy: 0), one batch of 160 KiB, so nothing of an older
    /// generation's targets stays. Written for the slot an apply is about to put in
    /// force, and for the slot in force when a collector changes state: each entry is
    /// one word, so stage 2 reads the old mask or the new one.
    public func writeTargetHealth(_ downMasks: [UInt32: UInt32], slot: UInt8) throws(DatapathError) {
        let n = Int(MAX_TARGETS)
        var values = [mirror_target_health](repeating: mirror_target_health(), count: n)
        for (index, mask) in downMasks where index < UInt32(n) { values[Int(index)].down_mask = mask }
        var keys = (0..<n).map { UInt32(slot) * UInt32(n) + UInt32($0) }
        var count = UInt32(n)
        let fd = try mapFD(.targetHealth)
        let rc = keys.withUnsafeMutableBytes { k in
            values.withUnsafeMutableBytes { v in bpf_map_update_batch(fd, k.baseAddress, v.baseAddress, &count, nil) }
        }
        try DatapathError.check(rc, "write mirror_target_health (slot \(slot), \(count) of \(n) targets written)")
    }

    static func policyKeyID(_ k: mirror_policy_key) -> UInt64 {
        UInt64(k.ifindex) << 16 | UInt64(k.slot) << 8 | UInt64(k.direction)
    }

    /// The double buffer's write (SPEC §8): put every entry of generation `slot`
    /// into a hash map, then delete that slot's keys the image no longer has. The
    /// other slot, the one in force, is never touched. `id` makes keys hashable.
    func replaceSlot<K, V, S: Sequence>(
        _ fd: Int32, _ entries: S, what: (K) -> String,
        inSlot: (K) -> Bool, id: (K) -> UInt64
    ) throws(DatapathError) where S.Element == (K, V) {
        var wanted = Set<UInt64>()
        for (k, v) in entries {
            var key = k
            var value = v
            wanted.insert(id(key))
            let rc = bpf_map_update_elem(fd, &key, &value, UInt64(BPF_ANY))
            if rc != 0 { try DatapathError.check(rc, what(k)) }
        }
        for key in try keys(fd, as: K.self) where inSlot(key) && !wanted.contains(id(key)) {
            var k = key
            _ = bpf_map_delete_elem(fd, &k)
        }
    }

    func keys<K>(_ fd: Int32, as: K.Type) throws(DatapathError) -> [K] {
        var out: [K] = []
        let size = MemoryLayout<K>.size
        var prev = [UInt8](repeating: 0, count: size)
        var next = [UInt8](repeating: 0, count: size)
        var first = true
        while true {
            let rc = prev.withUnsafeMutableBytes { p in
                next.withUnsafeMutableBytes { n in
                    bpf_map_get_next_key(fd, first ? nil : p.baseAddress, n.baseAddress)
                }
            }
            if rc != 0 { break }
            out.append(next.withUnsafeBytes { $0.loadUnaligned(as: K.self) })
            prev = next
            first = false
        }
        return out
    }
}
