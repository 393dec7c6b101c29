import MirrorCore

/// Encodes any `Encodable` into the core's `JSONValue`, members in the order the
/// type encodes them (or sorted, as the agent's JSONEncoder sorts them), so that a
/// typed value prints through `JSONValue.serialized` exactly as the same value's
/// JSON always printed. Foundation's JSONEncoder cannot keep member order, and
/// its pretty form differs from the one agentctl has always printed.
public struct JSONValueEncoder {
    /// Members sorted by their UTF-8 bytes, as JSONEncoder's `.sortedKeys` orders them.
    public var sortedKeys: Bool

    public init(sortedKeys: Bool = false) { self.sortedKeys = sortedKeys }

    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let root = Node()
        try root.set(value, codingPath: [])
        return try root.value(sortedKeys: sortedKeys, codingPath: [])
    }

    /// One value being encoded; containers hand out child nodes that fill in later.
    /// A class with separate lists so that members and items append in place (an
    /// apply's `vnis` has 20,000 members at the quotas).
    final class Node {
        enum Kind { case none, value, object, array }
        var kind = Kind.none
        var scalar = JSONValue.null
        var keys: [String] = []
        var members: [String: Node] = [:]
        var items: [Node] = []

        func set<T: Encodable>(_ v: T, codingPath: [CodingKey]) throws {
            if let p = try Self.primitive(v, codingPath) { setValue(p); return }
            try v.encode(to: NodeEncoder(node: self, codingPath: codingPath))
        }

        func setValue(_ v: JSONValue) { kind = .value; scalar = v }

        static func primitive<T: Encodable>(_ v: T, _ path: [CodingKey]) throws -> JSONValue? {
            func int<I: BinaryInteger>(_ i: I) throws -> JSONValue {
                guard let x = Int64(exactly: i) else {
                    throw EncodingError.invalidValue(i, .init(codingPath: path, debugDescription: "\(i) does not fit a JSON integer here"))
                }
                return .int(x)
            }
            switch v {
            case let b as Bool: return .bool(b)
            case let s as String: return .string(s)
            case let d as Double: return .double(d)
            case let f as Float: return .double(Double(f))
            case let i as Int: return try int(i)
            case let i as Int8: return try int(i)
            case let i as Int16: return try int(i)
            case let i as Int32: return try int(i)
            case let i as Int64: return try int(i)
            case let i as UInt: return try int(i)
            case let i as UInt8: return try int(i)
            case let i as UInt16: return try int(i)
            case let i as UInt32: return try int(i)
            case let i as UInt64: return try int(i)
            default: return nil
            }
        }

        /// Makes this an object (keeping its members when it is one already).
        func object() {
            guard kind != .object else { return }
            kind = .object; keys = []; members = [:]
        }

        func array() {
            guard kind != .array else { return }
            kind = .array; items = []
        }

        /// The member `key`, added at the end when new.
        func member(_ key: String) -> Node {
            object()
            if let n = members[key] { return n }
            let n = Node()
            keys.append(key)
            members[key] = n
            return n
        }

        func append() -> Node {
            array()
            let n = Node()
            items.append(n)
            return n
        }

        func value(sortedKeys: Bool, codingPath: [CodingKey]) throws -> JSONValue {
            switch kind {
            case .none:
                throw EncodingError.invalidValue((), .init(codingPath: codingPath, debugDescription: "nothing was encoded"))
            case .value: return scalar
            case .array: return .array(try items.map { try $0.value(sortedKeys: sortedKeys, codingPath: codingPath) })
            case .object:
                let order = sortedKeys ? keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } : keys
                var out: [(key: String, value: JSONValue)] = []
                out.reserveCapacity(order.count)
                for k in order {
                    guard let n = members[k] else { continue }
                    out.append((k, try n.value(sortedKeys: sortedKeys, codingPath: codingPath)))
                }
                return .object(out)
            }
        }
    }

    struct PlainKey: CodingKey {
        var stringValue: String
        var intValue: Int?
        init(stringValue: String) { self.stringValue = stringValue; intValue = nil }
        init(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
    }

    struct NodeEncoder: Encoder {
        let node: Node
        let codingPath: [CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<K: CodingKey>(keyedBy type: K.Type) -> KeyedEncodingContainer<K> {
            node.object()
            return KeyedEncodingContainer(Keyed<K>(node: node, codingPath: codingPath))
        }
        func unkeyedContainer() -> UnkeyedEncodingContainer { node.array(); return Unkeyed(node: node, codingPath: codingPath) }
        func singleValueContainer() -> SingleValueEncodingContainer { Single(node: node, codingPath: codingPath) }
    }

    struct Keyed<K: CodingKey>: KeyedEncodingContainerProtocol {
        let node: Node
        let codingPath: [CodingKey]

        mutating func encodeNil(forKey key: K) throws { node.member(key.stringValue).setValue(.null) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: K) throws { try put(value, key) }
        // The primitives go the generic way too: `Node.set` recognises them.
        private func put<T: Encodable>(_ value: T, _ key: K) throws {
            try node.member(key.stringValue).set(value, codingPath: codingPath + [key])
        }
        mutating func encode(_ value: Bool, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: String, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: Double, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: Float, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: Int, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: Int8, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: Int16, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: Int32, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: Int64, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: UInt, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: UInt8, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: UInt16, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: UInt32, forKey key: K) throws { try put(value, key) }
        mutating func encode(_ value: UInt64, forKey key: K) throws { try put(value, key) }

        mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type, forKey key: K) -> KeyedEncodingContainer<N> {
            NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: N.self)
        }
        mutating func nestedUnkeyedContainer(forKey key: K) -> UnkeyedEncodingContainer {
            NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
        }
        mutating func superEncoder() -> Encoder {
            NodeEncoder(node: node.member("super"), codingPath: codingPath + [PlainKey(stringValue: "super")])
        }
        mutating func superEncoder(forKey key: K) -> Encoder {
            NodeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key])
        }
    }

    /// The primitive `encode`s of the unkeyed and the single-value container, written
    /// once: each value goes through the container's `put`, as any Encodable does.
    protocol PutsValues {
        func put<T: Encodable>(_ value: T) throws
    }

    struct Unkeyed: UnkeyedEncodingContainer, PutsValues {
        let node: Node
        let codingPath: [CodingKey]
        var count: Int { node.items.count }
        private var nextKey: PlainKey { PlainKey(intValue: node.items.count) }

        mutating func encodeNil() throws { node.append().setValue(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws { try put(value) }
        func put<T: Encodable>(_ value: T) throws {
            let path = codingPath + [nextKey]
            try node.append().set(value, codingPath: path)
        }

        mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type) -> KeyedEncodingContainer<N> {
            let path = codingPath + [nextKey]
            return NodeEncoder(node: node.append(), codingPath: path).container(keyedBy: N.self)
        }
        mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
            let path = codingPath + [nextKey]
            return NodeEncoder(node: node.append(), codingPath: path).unkeyedContainer()
        }
        mutating func superEncoder() -> Encoder {
            let path = codingPath + [nextKey]
            return NodeEncoder(node: node.append(), codingPath: path)
        }
    }

    struct Single: SingleValueEncodingContainer, PutsValues {
        let node: Node
        let codingPath: [CodingKey]

        mutating func encodeNil() throws { node.setValue(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws { try put(value) }
        func put<T: Encodable>(_ value: T) throws { try node.set(value, codingPath: codingPath) }
    }
}

extension JSONValueEncoder.PutsValues {
    mutating func encode(_ value: Bool) throws { try put(value) }
    mutating func encode(_ value: String) throws { try put(value) }
    mutating func encode(_ value: Double) throws { try put(value) }
    mutating func encode(_ value: Float) throws { try put(value) }
    mutating func encode(_ value: Int) throws { try put(value) }
    mutating func encode(_ value: Int8) throws { try put(value) }
    mutating func encode(_ value: Int16) throws { try put(value) }
    mutating func encode(_ value: Int32) throws { try put(value) }
    mutating func encode(_ value: Int64) throws { try put(value) }
    mutating func encode(_ value: UInt) throws { try put(value) }
    mutating func encode(_ value: UInt8) throws { try put(value) }
    mutating func encode(_ value: UInt16) throws { try put(value) }
    mutating func encode(_ value: UInt32) throws { try put(value) }
    mutating func encode(_ value: UInt64) throws { try put(value) }
}
