/// VNI auto-assignment (SPEC §2): a session without `vni` gets one that is unique
/// among all sessions (explicit and assigned) and stable: given the previous
/// assignment map, re-applying the same document or adding sessions never changes an
/// assigned VNI, and the choice is deterministic (a hash of the session id, probing
/// upward on collision) so it survives restarts given the persisted map.
///
/// An explicit `vni` always wins: if a user explicitly gives another session the VNI
/// a session was auto-assigned, the auto-assigned one moves (the only case it does).
public enum VNIAssigner {
    public struct Result: Hashable, Sendable {
        /// The document with every session's `vni` filled.
        public var document: Document
        /// Session id → auto-assigned VNI, for the sessions of this document that have
        /// no explicit `vni`. Persist it and pass it back as `previous` next time.
        public var assigned: [String: Int]
    }

    /// Auto-assigned VNIs come from this range; 0 is left out (some collectors treat it as "none").
    public static let range = 1...Quota.vni.upperBound

    /// Auto-assigned ERSPAN session IDs (sessions at an erspan target): 10 bits, 0 left out.
    public static let erspanRange = 1...Encapsulation.erspanSessionIDs.upperBound

    public static func assign(_ document: Document, previous: [String: Int] = [:]) -> Result {
        var doc = document
        var used = Set(doc.sessions.compactMap(\.vni))
        var assigned: [String: Int] = [:]
        // SPEC §11: a session at an erspan target needs a vni that fits ERSPAN's session ID.
        let erspanTargets = Set(doc.targets.filter { $0.effectiveEncapsulation == .erspan }.map(\.id))
        let erspan = Set(doc.sessions.filter { $0.vni == nil && erspanTargets.contains($0.target) }.map(\.id))
        func range(_ id: String) -> ClosedRange<Int> { erspan.contains(id) ? erspanRange : Self.range }
        // Sessions needing a VNI, in id order so the result does not depend on array
        // order; the erspan ones first, whose range is small.
        let needing = doc.sessions.filter { $0.vni == nil }.map(\.id)
        let ids = Array(Set(needing)).sorted { (erspan.contains($0) ? 0 : 1, $0) < (erspan.contains($1) ? 0 : 1, $1) }
        // First keep every previous assignment that is still free.
        for id in ids {
            if let v = previous[id], range(id).contains(v), !used.contains(v) {
                assigned[id] = v
                used.insert(v)
            }
        }
        for id in ids where assigned[id] == nil {
            let r = range(id)
            var v = r.lowerBound + (candidate(for: id) - Self.range.lowerBound) % r.count
            // Bounded: validation (DocumentParser) refuses documents whose erspan
            // sessions cannot all get an ID; a full range keeps the candidate.
            // A `for … where` here would test every one of the range's 16 million values
            // for each session, free or not: probe only until a free one.
            var probes = 0
            while used.contains(v) && probes < r.count {
                v = v == r.upperBound ? r.lowerBound : v + 1
                probes += 1
            }
            assigned[id] = v
            used.insert(v)
        }
        for i in doc.sessions.indices where doc.sessions[i].vni == nil {
            doc.sessions[i].vni = assigned[doc.sessions[i].id]
        }
        return Result(document: doc, assigned: assigned)
    }

    /// FNV-1a of the id's UTF-8, folded into the range: stable across runs and platforms
    /// (unlike `Hasher`, which is seeded per process).
    public static func candidate(for id: String) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return range.lowerBound + Int(h % UInt64(range.count))
    }
}
