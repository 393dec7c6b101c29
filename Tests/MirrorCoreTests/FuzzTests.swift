import MirrorCore
import MirrorTestSupport
import Testing

// ≥10,000 mutated and truncated documents through the decoder and validator: each one
// gets a model or errors (with paths), never a crash.

private let interesting: [[UInt8]] = [
    Array("{".utf8), Array("}".utf8), Array("[".utf8), Array("]".utf8), Array(",".utf8), Array(":".utf8),
    Array("\"".utf8), Array("\\".utf8), Array("\\u".utf8), Array("\\ud800".utf8), Array("-".utf8), Array("0".utf8),
    Array("1e999".utf8), Array("99999999999999999999".utf8), Array("null".utf8), Array("true".utf8),
    Array("/33".utf8), Array("-1".utf8), Array("::".utf8), Array("é".utf8), [0xFF], [0xC3], [0x00], Array(" ".utf8),
    Array("\"id\":".utf8), Array("{\"a\":{\"a\":[[[[[[".utf8),
]

private func randomJSON(_ rng: inout SeededRandom, depth: Int = 0) -> JSONValue {
    switch rng.int(0...(depth > 2 ? 5 : 7)) {
    case 0: return .null
    case 1: return .bool(rng.chance(0.5))
    case 2: return .int(rng.pick([0, -1, 1, 65535, 65536, 16_777_216, Int64.max, Int64.min, 32767])!)
    case 3: return .double(rng.pick([0.5, -0.0, 1e300, 80.0])!)
    case 4:
        return .string(
            rng.pick([
                "", "all", "tcp", "10.0.0.1/8", "2001:db8::/129", "80-70", "a b", "x", "ipv6", "nic",
                String(repeating: "z", count: 70),
            ])!)
    case 5: return .string(String(rng.int(0...70000)))
    case 6: return .array((0..<rng.int(0...3)).map { _ in randomJSON(&rng, depth: depth + 1) })
    default:
        return .object(
            (0..<rng.int(0...3)).map { _ in
                (key: rng.pick(["id", "priority", "sources", "x", "inbound", "type"])!, value: randomJSON(&rng, depth: depth + 1))
            }.reduce(into: [(key: String, value: JSONValue)]()) { acc, m in if !acc.contains(where: { $0.key == m.key }) { acc.append(m) } }
        )
    }
}

/// Replaces, removes or renames one random node of the tree.
private func mutate(_ v: JSONValue, _ rng: inout SeededRandom, depth: Int = 0) -> JSONValue {
    if depth > 0 && rng.chance(0.25) { return randomJSON(&rng) }
    switch v {
    case .array(var items):
        if items.isEmpty || rng.chance(0.1) { items.append(randomJSON(&rng)); return .array(items) }
        let k = rng.int(0...items.count - 1)
        if rng.chance(0.1) { items.remove(at: k) } else { items[k] = mutate(items[k], &rng, depth: depth + 1) }
        return .array(items)
    case .object(var members):
        if members.isEmpty { return randomJSON(&rng) }
        let k = rng.int(0...members.count - 1)
        if rng.chance(0.1) {
            members.remove(at: k)
        } else if rng.chance(0.1) {
            let newKey = members[k].key + (rng.chance(0.5) ? "s" : "")
            if !members.contains(where: { $0.key == newKey }) {
                members[k].key = newKey.uppercased() == newKey ? newKey : String(newKey.dropLast()) + "X"
            }
        } else {
            members[k].value = mutate(members[k].value, &rng, depth: depth + 1)
        }
        return .object(members)
    default:
        return randomJSON(&rng)
    }
}

private func check(_ bytes: [UInt8], _ label: String) {
    switch DocumentParser.parse(bytes) {
    case .success(let doc):
        // A model that validates must stay valid when validated again from the model.
        #expect(DocumentParser.validate(doc) == [], "\(label)")
    case .failure(let e):
        #expect(!e.errors.isEmpty && e.errors.allSatisfy { !$0.path.isEmpty && !$0.message.isEmpty }, "\(label)")
    }
}

@Test func tenThousandMutatedAndTruncatedDocumentsNeverCrashTheValidator() {
    var rng = SeededRandom(seed: 0xF022)
    var accepted = 0, refused = 0
    var count = 0
    for round in 0..<700 {
        let doc = RandomDocuments.document(
            using: &rng,
            options: .init(
                securityPolicy: round % 2 == 0,
                explicitVNIProbability: 0.5, maxSessions: 4, maxSources: 3,
                maxRulesPerDirection: 4))
        let json = DocumentEncoding.encode(doc)
        let text = Array(json.serialized(pretty: round % 3 == 0).utf8)
        // Structural mutations (still JSON): exercise the validator's paths.
        for _ in 0..<8 {
            var m = json
            for _ in 0..<rng.int(1...3) { m = mutate(m, &rng) }
            let bytes = Array(m.serialized(pretty: false).utf8)
            if case .success = DocumentParser.parse(bytes) { accepted += 1 } else { refused += 1 }
            check(bytes, "round \(round) structural")
            count += 1
        }
        // Byte-level mutations and truncations: exercise the JSON parser.
        for _ in 0..<7 {
            var b = text
            switch rng.int(0...4) {
            case 0: b = Array(b.prefix(rng.int(0...b.count)))
            case 1: if !b.isEmpty { b[rng.int(0...b.count - 1)] = UInt8(truncatingIfNeeded: rng.next()) }
            case 2: b.insert(contentsOf: rng.pick(interesting)!, at: rng.int(0...b.count))
            case 3:
                if b.count > 2 {
                    let lo = rng.int(0...b.count - 2), hi = rng.int(lo...b.count - 1)
                    b.removeSubrange(lo..<hi)
                }
            default:
                if b.count > 2 {
                    let lo = rng.int(0...b.count - 2), hi = rng.int(lo...min(b.count - 1, lo + 40))
                    b.insert(contentsOf: b[lo..<hi], at: rng.int(0...b.count))
                }
            }
            check(b, "round \(round) bytes")
            count += 1
        }
    }
    // Deep nesting must be an error, not a stack overflow.
    check(Array(repeating: UInt8(ascii: "["), count: 100_000), "deep nesting")
    check([], "empty input")
    #expect(count >= 10_000)
    #expect(accepted > 100 && refused > 1000, "\(accepted) accepted, \(refused) refused")
}
