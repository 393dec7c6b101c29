import Foundation
import MirrorCompiler
import MirrorCore
import MirrorDatapath

extension KernelDatapath {
    /// Reads every counter of the policy in force, under the datapath lock: an apply
    /// clears freed slots and swaps the image under that lock, so a read never pairs
    /// cleared counters with the labels of the slot's previous owner, or the reverse.
    ///
    /// Cost: one map lookup per live session (two: classify and encap), per rule and
    /// per source direction; at the quota maximum (20,000 sessions) that is ~440k
    /// syscalls per scrape. Batched lookups would be the next step if that matters.
    public func counters() throws -> DatapathCounters? {
        try lock.withLock {
            guard let dp = datapath, let image else { return nil }
            var out = DatapathCounters()
            do {
                for (id, slot) in image.slots.sessions.sorted(by: { $0.value < $1.value }) {
                    var s = DatapathCounters.Session(slot: slot, id: id)
                    let c = try dp.sessionCounters(sessionSlot: slot)
                    s.packets = c.packets; s.bytes = c.bytes
                    let e = try dp.encapCounters(sessionSlot: UInt32(slot))
                    s.copiesSent = e.sent; s.copiesSentBytes = e.sentBytes
                    s.truncatedPacketLength = e.truncatedPacketLength; s.truncatedMTU = e.truncatedMTU
                    s.droppedSessionGone = e.droppedNoSession; s.droppedNoTarget = e.droppedNoTarget
                    s.droppedTruncate = e.droppedTruncate; s.droppedEncapsulation = e.droppedTunnelKey
                    out.sessions.append(s)
                }
                let rules = image.rules.sorted { a, b in
                    (a.key.sessionSlot, a.key.direction.abi, a.key.ruleIndex) < (b.key.sessionSlot, b.key.direction.abi, b.key.ruleIndex)
                }
                for (key, info) in rules {
                    let hits = try dp.ruleHits(sessionSlot: key.sessionSlot, direction: key.direction, ruleIndex: key.ruleIndex)
                    out.rules.append(.init(sessionSlot: key.sessionSlot, direction: key.direction, ruleIndex: key.ruleIndex,
                                           session: info.sessionID, filter: info.filterID, priority: info.priority,
                                           action: info.action, hits: hits))
                }
                let interfaces = Dictionary(document.sources.map { ($0.id, $0.interface) }, uniquingKeysWith: { a, _ in a })
                for (id, slot) in image.slots.sources.sorted(by: { $0.value < $1.value }) {
                    for d in Direction.allCases {
                        var s = DatapathCounters.Source(slot: slot, id: id, interface: interfaces[id] ?? "", direction: d)
                        let c = try dp.sourceCounters(sourceSlot: slot, direction: d)
                        s.seen = c.seen; s.mirrored = c.mirrored; s.noMatch = c.noMatch
                        s.rejected = c.rejected; s.notIP = c.notIP; s.cloneErrors = c.cloneErrors
                        if let sec = try? dp.securityCounters(sourceSlot: slot, direction: d) {
                            s.suppressedBySecurityGroup = sec.suppressedBySecurityGroup
                            s.suppressedByAcl = sec.suppressedByAcl
                        }
                        out.sources.append(s)
                    }
                }
                out.foreignDropped = try dp.encapNotCopyDrops()
            } catch {
                throw DatapathError("read counters: \(error)")
            }
            return out
        }
    }
}
