import CMirrorABI
import MirrorCore

/// Stable slots: the index of a session or source in the datapath's counter maps.
/// They are kept across applies (an id keeps its slot for as long as it exists) so
/// that counters survive policy changes; new ids take the lowest free slot.
public struct SlotAssignment: Hashable, Sendable, Codable {
    public var sessions: [String: UInt16]
    public var sources: [String: UInt16]

    public init(sessions: [String: UInt16] = [:], sources: [String: UInt16] = [:]) {
        self.sessions = sessions
        self.sources = sources
    }

    /// Slots for every session and source of `document`, keeping those of `previous`.
    /// Ids gone from the document free their slots (the caller should clear those
    /// counters before a new id reuses them: see `freed(comparedTo:)`).
    public static func assign(document: Document, previous: SlotAssignment = SlotAssignment()) throws(CompileError) -> SlotAssignment {
        func assign(_ ids: [String], _ old: [String: UInt16], capacity: Int, kind: String) throws(CompileError) -> [String: UInt16] {
            let wanted = Set(ids)
            var out = old.filter { wanted.contains($0.key) }
            var used = Set(out.values)
            var next: UInt16 = 0
            for id in ids where out[id] == nil {
                while used.contains(next) { next &+= 1 }
                guard Int(next) < capacity else {
                    throw CompileError("too many \(kind)s: the datapath holds at most \(capacity)")
                }
                out[id] = next
                used.insert(next)
            }
            return out
        }
        return SlotAssignment(
            sessions: try assign(document.sessions.map(\.id), previous.sessions, capacity: Int(MAX_SESSIONS), kind: "session"),
            sources: try assign(document.sources.map(\.id), previous.sources, capacity: Int(MAX_SOURCES), kind: "source"))
    }

    /// Slots that `previous` used and this assignment does not (or gives to another id).
    public func freed(comparedTo previous: SlotAssignment) -> (sessions: [UInt16], sources: [UInt16]) {
        func diff(_ new: [String: UInt16], _ old: [String: UInt16]) -> [UInt16] {
            old.filter { new[$0.key] != $0.value }.map(\.value).sorted()
        }
        return (diff(sessions, previous.sessions), diff(sources, previous.sources))
    }
}

/// An error of the compiler: the document cannot be turned into a map image.
public struct CompileError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
