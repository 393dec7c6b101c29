import Foundation
import MirrorCompiler
import MirrorCore

extension KernelDatapath {
    /// Reads every counter of the policy in force, under the datapath lock: an apply
    /// clears freed slots and swaps the image under that lock, so a read never pairs
    /// cleared counters with the labels of the slot's previous owner, or the reverse.
    ///
    /// Cost: each counter map is read as one dense range of slots with batch lookups
    /// (a few syscalls per map), not one lookup per key.
    public func counters() throws -> DatapathCounters? {
        try lock.withLock {
            guard let dp = datapath, let image else { return nil }
            var out = DatapathCounters()
            do {
                // Whole ranges in a few batch syscalls (CounterBatch.swift): slots are dense from 0.
                let sessionSlots = Int(image.slots.sessions.values.max().map { $0 + 1 } ?? 0)
                let sourceSlots = Int(image.slots.sources.values.max().map { $0 + 1 } ?? 0)
                let sessionStats = try dp.allSessionCounters(sessionSlots: sessionSlots)
                let encapStats = try dp.allEncapCounters(sessionSlots: sessionSlots)
                let ruleHits = try dp.allRuleHits(sessionSlots: sessionSlots)
                let sourceStats = try dp.allSourceCounters(sourceSlots: sourceSlots)
                // Absent when the datapath has no SPEC §5 counters: those reasons are then not rendered.
                let securityStats = try? dp.allSecurityCounters(sourceSlots: sourceSlots)

                out.sessions.reserveCapacity(image.slots.sessions.count)
                for (id, slot) in image.slots.sessions.sorted(by: { $0.value < $1.value }) {
                    var s = DatapathCounters.Session(slot: slot, id: id)
                    let c = sessionStats[Int(slot)]
                    s.packets = c.packets; s.bytes = c.bytes
                    s.skippedSampledOut = c.skippedSampledOut; s.skippedRateLimit = c.skippedRateLimit
                    s.skippedHostBudget = c.skippedHostBudget
                    let e = encapStats[Int(slot)]
                    s.copiesSent = e.sent; s.copiesSentBytes = e.sentBytes; s.copiesSentDirect = e.sentDirect
                    s.truncatedPacketLength = e.truncatedPacketLength; s.truncatedMTU = e.truncatedMTU
                    s.droppedSessionGone = e.droppedNoSession; s.droppedNoTarget = e.droppedNoTarget
                    s.droppedTruncate = e.droppedTruncate; s.droppedEncapsulation = e.droppedTunnelKey &+ e.droppedEncapDirect
                    s.droppedNoRoute = e.droppedNoRoute; s.droppedNeighborUnresolved = e.droppedNeighborUnresolved
                    s.copiesSentDevice = e.sentDevice
                    s.droppedTargetUnhealthy = e.droppedTargetUnhealthy
                    s.segmented = e.segmented; s.truncatedGSO = e.truncatedGSO
                    out.sessions.append(s)
                }
                // A view of the table and the hits, no copy: at the quotas that is 400,000 rules.
                out.rules = .init(table: image.rules, hits: ruleHits)
                let interfaces = Dictionary(document.sources.map { ($0.id, $0.interface) }, uniquingKeysWith: { a, _ in a })
                out.sources.reserveCapacity(image.slots.sources.count * Direction.allCases.count)
                for (id, slot) in image.slots.sources.sorted(by: { $0.value < $1.value }) {
                    for d in Direction.allCases {
                        var s = DatapathCounters.Source(slot: slot, id: id, interface: interfaces[id] ?? "", direction: d)
                        let k = BPFDatapath.sourceStatsKey(sourceSlot: slot, direction: d)
                        let c = sourceStats[k]
                        s.seen = c.seen; s.mirrored = c.mirrored; s.noMatch = c.noMatch
                        s.rejected = c.rejected; s.notIP = c.notIP; s.cloneErrors = c.cloneErrors
                        s.sessionDisabled = c.sessionDisabled
                        if let sec = securityStats?[k] {
                            s.suppressedBySecurityGroup = sec.suppressedBySecurityGroup
                            s.suppressedByAcl = sec.suppressedByAcl
                            s.established = sec.established
                        }
                        out.sources.append(s)
                    }
                }
                let notCopy = try dp.encapNotCopyCounters()
                out.foreignDropped = notCopy.droppedNotCopy
                out.segmenterForeignDropped = notCopy.droppedSegmenterNotCopy
                // Absent with the SPEC §5 counters: then not rendered.
                out.securityFlows = try? dp.establishedFlowCount()
            } catch {
                throw DatapathError("read counters: \(error)")
            }
            return out
        }
    }
}
