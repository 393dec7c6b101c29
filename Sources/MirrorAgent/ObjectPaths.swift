import MirrorAPI
import MirrorCore

/// Paths that name a document's objects by id (`sources[id=bad].interface`) where
/// an index would point into a document the client never sent: create, update,
/// delete and enable validate the whole document the change makes, and its
/// indices are the agent's business.
enum ObjectPaths {
    /// `sessions[id=s1]`; an id that is not a valid id (the error may be about it)
    /// in JSON quotes: `sessions[id="a b"]`.
    static func path(_ kind: ObjectKind, _ id: String) -> String {
        let plain =
            !id.isEmpty
            && id.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
            }
        return "\(kind.documentKey)[id=\(plain ? id : JSONValue.string(id).serialized(pretty: false))]"
    }

    /// Every error with `kind[N]` (at the start of its path, and in its message,
    /// where errors quote other objects) replaced by the id of that element of `doc`.
    static func namingObjects(_ errors: [FieldError], in doc: JSONValue) -> [FieldError] {
        var ids: [ObjectKind: [JSONValue]] = [:]
        func id(_ kind: ObjectKind, _ index: Int) -> String? {
            if ids[kind] == nil { ids[kind] = doc[kind.documentKey]?.arrayValue ?? [] }
            guard let items = ids[kind], index < items.count else { return nil }
            return items[index]["id"]?.stringValue
        }
        return errors.map { FieldError(path: rewrite($0.path, id), message: rewrite($0.message, id)) }
    }

    /// Replaces `kind[N]` where it starts a path: at the start of `text` or after a
    /// character that cannot be part of one (so `sessions[2].sources[1]` keeps its
    /// inner `sources[1]`, the session's own list).
    static func rewrite(_ text: String, _ id: (ObjectKind, Int) -> String?) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        func startsPath(_ at: Int) -> Bool {
            guard at > 0 else { return true }
            let b = bytes[at - 1]
            return
                !((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x5D)
        }
        outer: while i < bytes.count {
            if startsPath(i) {
                for kind in ObjectKind.allCases {
                    let key = Array((kind.documentKey + "[").utf8)
                    guard bytes.count - i > key.count, Array(bytes[i..<i + key.count]) == key else { continue }
                    var j = i + key.count
                    var n = 0
                    while j < bytes.count, bytes[j] >= 0x30, bytes[j] <= 0x39, j - i - key.count < 9 {
                        n = n * 10 + Int(bytes[j] - 0x30); j += 1
                    }
                    guard j > i + key.count, j < bytes.count, bytes[j] == UInt8(ascii: "]"), let name = id(kind, n) else { continue }
                    out += Array(path(kind, name).utf8)
                    i = j + 1
                    continue outer
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
