import CMirrorABI
import MirrorCore

/// SPEC §2, §10: which collector of a target a flow's copies go to, computed by the
/// very code stage 2 runs (bpf/mirror_backend.h, rendezvous hashing): for explain,
/// for tests, and for anyone who wants to know where a flow lands.
public enum BackendChoice {
    /// The index in `target.collectorAddresses` of the collector that gets the copies
    /// of the flow with `flowHash` (skb->cb[2], the same for both directions), or nil
    /// when every collector is in `unhealthy`.
    public static func collector(
        of target: Target, flowHash: UInt32, unhealthy: Set<IPAddress> = []
    ) throws(CompileError) -> Int? {
        var t = try Compiler.target(target, pathMTU: { _ in 1500 })
        var down: UInt32 = 0
        for (i, a) in target.collectorAddresses.enumerated() where unhealthy.contains(a) { down |= 1 << UInt32(i) }
        let picked = mirror_pick_backend(&t, down, flowHash)
        return picked < 0 ? nil : Int(picked)
    }
}
