import MirrorCore

// The control protocol carries objects as JSON (MirrorCore.JSONValue), not as model
// types: the core's `DocumentParser` is the one place that turns JSON into a validated
// model with every error's path, so the agent edits documents as JSON and hands the
// whole result to it.

extension JSONValue {
    public var members: [(key: String, value: JSONValue)]? { if case .object(let o) = self { return o }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int? { if case .int(let i) = self { return Int(exactly: i) }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var isObject: Bool { members != nil }

    /// This object with `key` set to `value` (replaced in place, else appended).
    /// Non-objects are returned unchanged.
    public func setting(_ key: String, _ value: JSONValue) -> JSONValue {
        guard var m = members else { return self }
        if let i = m.firstIndex(where: { $0.key == key }) { m[i].value = value } else { m.append((key, value)) }
        return .object(m)
    }

    /// A short text for tables: strings bare, arrays comma-joined, null as "-".
    public var displayText: String {
        switch self {
        case .null: return "-"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return s
        case .array(let a): return a.isEmpty ? "-" : a.map(\.displayText).joined(separator: ",")
        case .object(let o): return "{" + o.map(\.key).joined(separator: ",") + "}"
        }
    }
}

/// Codable carrier for a JSONValue inside the API's Codable messages. (A wrapper, not
/// a conformance on the core's type, so that the core stays free to add its own.)
/// Decoding through Foundation loses member order; objects come back with sorted keys.
public struct AnyJSON: Hashable, Sendable, Codable {
    public var value: JSONValue
    public init(_ value: JSONValue) { self.value = value }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { return nil }
    }

    public init(from decoder: Decoder) throws {
        if let keyed = try? decoder.container(keyedBy: Key.self) {
            var m: [(key: String, value: JSONValue)] = []
            for k in keyed.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) {
                m.append((k.stringValue, try keyed.decode(AnyJSON.self, forKey: k).value))
            }
            value = .object(m); return
        }
        if var list = try? decoder.unkeyedContainer() {
            var a: [JSONValue] = []
            while !list.isAtEnd { a.append(try list.decode(AnyJSON.self).value) }
            value = .array(a); return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            value = .null
        } else if let b = try? c.decode(Bool.self) {
            value = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            value = .int(i)
        } else if let d = try? c.decode(Double.self) {
            value = .double(d)
        } else if let s = try? c.decode(String.self) {
            value = .string(s)
        } else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a JSON value")
        }
    }

    public func encode(to encoder: Encoder) throws {
        switch value {
        case .object(let m):
            var c = encoder.container(keyedBy: Key.self)
            for (k, v) in m { try c.encode(AnyJSON(v), forKey: Key(stringValue: k)) }
        case .array(let a):
            var c = encoder.unkeyedContainer()
            for v in a { try c.encode(AnyJSON(v)) }
        case .null: var c = encoder.singleValueContainer(); try c.encodeNil()
        case .bool(let b): var c = encoder.singleValueContainer(); try c.encode(b)
        case .int(let i): var c = encoder.singleValueContainer(); try c.encode(i)
        case .double(let d): var c = encoder.singleValueContainer(); try c.encode(d)
        case .string(let s): var c = encoder.singleValueContainer(); try c.encode(s)
        }
    }
}
