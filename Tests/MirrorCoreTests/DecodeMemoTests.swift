import MirrorCore
import MirrorTestSupport
import Testing

/// `DocumentParser.parse(json:memo:)` gives exactly `parse(json:)`'s answer (the
/// model, or every error with its path), whatever the memo saw before: valid and
/// invalid documents in a row, filters changed, broken, moved or repaired. And it
/// reuses what did not change, which is what it is for (fleet mode: a host's share
/// changes by a few objects at a time).
@Suite struct DecodeMemoTests {
    /// One filter of `doc` changed: a rule's priority, a field broken, or the filter
    /// moved to another place in the array.
    static func variant(_ doc: JSONValue, _ rng: inout SeededRandom) -> JSONValue {
        guard case .object(var members) = doc, let k = members.firstIndex(where: { $0.key == "filters" }),
            case .array(var filters) = members[k].value, !filters.isEmpty
        else { return doc }
        let i = rng.int(0...(filters.count - 1))
        guard case .object(var f) = filters[i] else { return doc }
        switch rng.int(0...3) {
        case 0: f.append((key: "descripton", value: .string("typo: an unknown field")))
        case 1:
            if let r = f.firstIndex(where: { $0.key == "inbound" || $0.key == "outbound" }),
                case .array(var rules) = f[r].value, !rules.isEmpty, case .object(var rule) = rules[0],
                let p = rule.firstIndex(where: { $0.key == "priority" })
            {
                rule[p].value = .int(Int64(rng.int(1...40)))
                rules[0] = .object(rule)
                f[r].value = .array(rules)
            }
        case 2: filters.append(filters.remove(at: i)); members[k].value = .array(filters); return .object(members)
        default: f.append((key: "description", value: .string("changed \(rng.int(0...1_000_000))")))
        }
        filters[i] = .object(f)
        members[k].value = .array(filters)
        return .object(members)
    }

    @Test func aMemoChangesNoAnswer() throws {
        var rng = SeededRandom(seed: 0x6d65_6d6f)
        let memo = DecodeMemo()
        var compared = 0, invalid = 0, reused = 0
        for _ in 0..<60 {
            var json = DocumentEncoding.encode(RandomDocuments.document(using: &rng))
            for _ in 0..<6 {
                let plain = DocumentParser.parse(json: json)
                let memoized = DocumentParser.parse(json: json, memo: memo)
                switch (plain, memoized) {
                case (.success(let a), .success(let b)): #expect(a == b)
                case (.failure(let a), .failure(let b)):
                    #expect(a.errors == b.errors)
                    invalid += 1
                default: Issue.record("the memo changed the verdict: \(plain) against \(memoized)")
                }
                compared += 1
                reused += memo.reused
                json = Self.variant(json, &rng)
            }
        }
        print("decode memo: \(compared) documents compared, \(invalid) invalid, \(reused) filters reused")
        #expect(invalid > 20)
        #expect(reused > 200)
    }

    @Test func anUnchangedDocumentDecodesNoFilterAgain() throws {
        var rng = SeededRandom(seed: 7)
        let json = DocumentEncoding.encode(RandomDocuments.document(using: &rng))
        guard case .array(let filters)? = json["filters"], filters.count > 1 else { return }
        let memo = DecodeMemo()
        _ = DocumentParser.parse(json: json, memo: memo)
        #expect(memo.decoded == filters.count && memo.reused == 0)
        _ = DocumentParser.parse(json: json, memo: memo)
        #expect(memo.decoded == 0 && memo.reused == filters.count)
        // One filter changed: only that one is decoded again.
        var changed = rng
        _ = DocumentParser.parse(json: Self.variant(json, &changed), memo: memo)
        #expect(memo.decoded <= 1 && memo.reused >= filters.count - 1)
    }
}
