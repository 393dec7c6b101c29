import MirrorCore
import Testing

@Test func integersDoublesAndBooleansStayDistinct() throws {
    let v = try JSONParser.parse("[1, 1.0, true, -0, 1e2, 9223372036854775807, 9223372036854775808]").get()
    #expect(v == .array([.int(1), .double(1.0), .bool(true), .int(0), .double(100), .int(Int64.max), .double(9223372036854775808)]))
}

@Test func stringsDecodeEscapesAndRefuseBadOnes() throws {
    #expect(try JSONParser.parse("\"a\\n\\u00e9\\ud83d\\ude00\\\"\"").get() == .string("a\né😀\""))
    for bad in ["\"\\ud800\"", "\"\\x\"", "\"a", "\"tab\there\"", "[\"\u{1}\"]"] {
        if case .success = JSONParser.parse(bad) { Issue.record("accepted \(bad)") }
    }
    // Invalid UTF-8 is refused, not replaced.
    if case .success = JSONParser.parse([0x22, 0xFF, 0x22]) { Issue.record("accepted invalid UTF-8") }
}

@Test func malformedDocumentsAreSyntaxErrorsWithPositions() {
    for bad in ["", "{", "{\"a\" 1}", "[1,]", "{\"a\":1,}", "01", "1.", "-", "tru", "{\"a\":1} x", "NaN", "[1 2]"] {
        guard case .failure(let e) = JSONParser.parse(bad) else { Issue.record("accepted \(bad)"); continue }
        #expect(e.line >= 1 && e.column >= 1)
    }
}

@Test func nestingIsBounded() {
    let deep = String(repeating: "[", count: JSONParser.maxDepth + 2) + String(repeating: "]", count: JSONParser.maxDepth + 2)
    guard case .failure(let e) = JSONParser.parse(deep) else { Issue.record("accepted"); return }
    #expect(e.message.contains("nesting"))
    let ok = String(repeating: "[", count: 10) + String(repeating: "]", count: 10)
    #expect((try? JSONParser.parse(ok).get()) != nil)
}

@Test func serializationRoundTripsAndKeepsMemberOrder() throws {
    let v: JSONValue = .object([("z", .int(1)), ("a", .array([.string("q\"\\\n\u{1}"), .null, .bool(false), .double(0.25)]))])
    for pretty in [true, false] {
        #expect(try JSONParser.parse(v.serialized(pretty: pretty)).get() == v)
    }
    #expect(v.description.hasPrefix("{\"z\":1,"))
}
