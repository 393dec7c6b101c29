import Foundation
import MirrorCore
import MirrorTestSupport
import Testing

// docs/configuration.md is the operators' reference. These tests read its tables and
// hold them to the built `agentctl validate -f` (the validator operators run):
// every numeric range of a field table and every quota is tried at its limits and one
// past them, and every option the programs' --help lists must be named in it. A
// table row the tests cannot check (a new kind of range, a quota without a
// generator below) fails too, so the reference cannot grow unchecked.

private let referencePath = "docs/configuration.md"

private func reference() throws -> String {
    try String(contentsOf: repositoryRoot.appendingPathComponent(referencePath), encoding: .utf8)
}

// MARK: - reading the Markdown

/// One table: the heading above it, its header cells and its rows (cells with `\|`
/// unescaped, trimmed).
private struct MarkdownTable {
    var heading: String
    var header: [String]
    var rows: [[String]]

    func column(_ name: String) -> Int? { header.firstIndex { $0.lowercased() == name } }
}

private func markdownTables(_ text: String) -> [MarkdownTable] {
    var tables: [MarkdownTable] = []
    var heading = ""
    var current: MarkdownTable?
    var inFence = false
    for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
        if line.hasPrefix("```") { inFence.toggle() }
        let isRow = !inFence && line.hasPrefix("|")
        if !isRow, let t = current { tables.append(t); current = nil }
        if inFence { continue }
        if line.hasPrefix("#") { heading = String(line.drop { $0 == "#" }).trimmingCharacters(in: .whitespaces) }
        guard isRow else { continue }
        let cells = tableCells(line)
        if current == nil {
            current = MarkdownTable(heading: heading, header: cells, rows: [])
        } else if !cells.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 == "-" || $0 == ":" } }) {
            current?.rows.append(cells)
        }
    }
    if let t = current { tables.append(t) }
    return tables
}

private func tableCells(_ line: String) -> [String] {
    var cells: [String] = []
    var cell = ""
    var escaped = false
    for ch in line.trimmingCharacters(in: .whitespaces).dropFirst() {
        if escaped { cell.append(ch == "|" ? "|" : "\\\(ch)"); escaped = false; continue }
        if ch == "\\" { escaped = true; continue }
        if ch == "|" { cells.append(cell.trimmingCharacters(in: .whitespaces)); cell = ""; continue }
        cell.append(ch)
    }
    return cells
}

/// The `code spans` of a cell or heading.
private func codeSpans(_ text: String) -> [String] {
    let parts = text.split(separator: "`", omittingEmptySubsequences: false)
    return stride(from: 1, to: parts.count, by: 2).map { String(parts[$0]) }
}

/// A range cell: "1–32766", "0–255 characters", "1–10 ids", or a single "20000"
/// (a quota: at most that many). nil when the cell starts with no number.
private struct Limit: CustomStringConvertible {
    var lower: Int?
    var upper: Int
    var unit: String?
    var description: String { (lower.map { "\($0)–" } ?? "") + "\(upper)" + (unit.map { " \($0)" } ?? "") }
}

private func parseLimit(_ cell: String) -> Limit? {
    var rest = Substring(cell.replacingOccurrences(of: "`", with: ""))
    func number() -> Int? {
        let digits = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ",") }
        guard digits.first?.isNumber == true else { return nil }
        rest = rest.dropFirst(digits.count)
        return Int(digits.replacingOccurrences(of: ",", with: ""))
    }
    guard let first = number() else { return nil }
    var limit = Limit(lower: nil, upper: first, unit: nil)
    if rest.first == "–" || rest.first == "-" {
        rest = rest.dropFirst()
        guard let second = number() else { return nil }
        limit = Limit(lower: first, upper: second, unit: nil)
    }
    let unit = rest.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init)
    limit.unit = unit
    return limit
}

// MARK: - running the validator

private struct Verdict {
    var valid: Bool
    var errors: [(path: String, message: String)]
    var text: String { errors.map { "\($0.path): \($0.message)" }.joined(separator: "\n") }
}

private func validate(_ document: JSONValue) throws -> Verdict? {
    guard let agentctl = Binaries.path("agentctl") else {
        Issue.record("agentctl not found next to \(CommandLine.arguments[0]): build it first (swift build)")
        return nil
    }
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("reference-\(UUID().uuidString).json")
    try Data(document.serialized(pretty: false).utf8).write(to: url)
    defer { try? FileManager.default.removeItem(at: url) }
    let r = try Command.result([agentctl, "validate", "-f", url.path, "-o", "json"])
    guard r.status == 0 || r.status == 1, case .success(let v) = JSONParser.parse(r.stdout) else {
        Issue.record("agentctl validate exited \(r.status): \(r.stderr)\(r.stdout)")
        return nil
    }
    var errors: [(String, String)] = []
    if case .array(let list)? = v["errors"] {
        for e in list {
            guard case .string(let path)? = e["path"], case .string(let message)? = e["message"] else { continue }
            errors.append((path, message))
        }
    }
    return Verdict(valid: r.status == 0 && v["valid"] == .bool(true), errors: errors)
}

private func expectAccepted(_ doc: JSONValue, _ what: String) throws {
    guard let v = try validate(doc) else { return }
    #expect(v.valid, "\(referencePath) says \(what) is allowed; agentctl validate refused it:\n\(v.text)")
}

/// Refused, with an error at `path` (when given) and one whose message contains
/// `mentioning` (when given): refused for the reason the reference gives.
private func expectRefused(_ doc: JSONValue, _ what: String, path: String? = nil, mentioning: String? = nil) throws {
    guard let v = try validate(doc) else { return }
    #expect(!v.valid, "\(referencePath) says \(what) is not allowed; agentctl validate accepted it")
    if let path {
        #expect(v.errors.contains { $0.path == path }, "\(what): expected an error at \(path), got:\n\(v.text)")
    }
    if let mentioning {
        #expect(v.errors.contains { $0.message.contains(mentioning) }, "\(what): no error names \(mentioning):\n\(v.text)")
    }
}

// MARK: - field ranges

/// A valid document with every field of every object present, so each row of a
/// field table has a value to move to its limits.
private let fullDocument = """
    {
      "filters": [{ "id": "f1", "description": "d",
        "inbound": [{ "priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "tcp",
          "source": "198.51.100.0/24", "destination": "192.0.2.0/24", "sourcePorts": "1000-2000", "destinationPorts": "80" }],
        "outbound": [{ "priority": 1, "action": "reject", "ethertype": "ipv4", "protocol": "udp",
          "source": "192.0.2.0/24", "destination": "198.51.100.0/24", "sourcePorts": "53", "destinationPorts": "all" }] }],
      "targets": [
        { "id": "t1", "type": "nic", "address": "198.51.100.2", "encapsulation": "vxlan", "description": "d",
          "healthCheck": { "protocol": "tcp", "port": 4790, "intervalMs": 500, "unhealthyThreshold": 3, "healthyThreshold": 2 } },
        { "id": "lb1", "type": "loadBalancer", "backends": ["203.0.113.20", "203.0.113.21"], "encapsulation": "geneve",
          "description": "d" }],
      "sources": [{ "id": "vm1", "interface": "tap-vm1", "addresses": ["192.0.2.10"], "securityGroups": ["sg1"],
        "networkAcl": "acl1", "enforce": false, "description": "d" }],
      "sessions": [{ "id": "s1", "priority": 1, "filter": "f1", "sources": ["vm1"], "target": "t1", "vni": 100,
        "enabled": true, "packetLength": 128, "rateLimit": { "packetsPerSecond": 1000, "bitsPerSecond": 50000000 },
        "sampleOneIn": 2, "description": "d" }],
      "securityGroups": [{ "id": "sg1", "description": "d", "rules": [
        { "direction": "ingress", "priority": 1, "action": "allow", "ethertype": "ipv4", "protocol": "tcp",
          "remote": "198.51.100.0/24", "ports": "80" }] }],
      "networkAcls": [{ "id": "acl1", "description": "d",
        "inbound": [{ "priority": 1, "action": "allow", "ethertype": "ipv4", "protocol": "tcp",
          "source": "198.51.100.0/24", "destination": "192.0.2.0/24", "sourcePorts": "all", "destinationPorts": "80" }],
        "outbound": [{ "priority": 1, "action": "deny", "ethertype": "ipv4", "protocol": "udp",
          "source": "192.0.2.0/24", "destination": "198.51.100.0/24", "sourcePorts": "53", "destinationPorts": "all" }] }]
    }
    """

extension JSONValue {
    /// Every string equal to `old` replaced by `new` (an id and the references to it).
    fileprivate func replacingStrings(_ old: String, with new: String) -> JSONValue {
        switch self {
        case .string(let s) where s == old: return .string(new)
        case .array(let items): return .array(items.map { $0.replacingStrings(old, with: new) })
        case .object(let members): return .object(members.map { (key: $0.key, value: $0.value.replacingStrings(old, with: new)) })
        default: return self
        }
    }
}

/// A field row with a range the validator must enforce.
private struct FieldRange {
    var path: String  // filters[0].inbound[0].priority
    var type: String
    var limit: Limit
}

/// The object tables: a heading naming its JSON paths (`filters[].inbound[]`, or an
/// object inside one, `sessions[].rateLimit`) and columns field, type, range.
private func fieldTables(_ text: String) -> [(paths: [String], table: MarkdownTable)] {
    markdownTables(text).compactMap { t in
        guard t.column("field") != nil, t.column("type") != nil, t.column("range") != nil else { return nil }
        // `targets[]`, and an object inside one: `targets[].healthCheck`.
        let paths = codeSpans(t.heading).filter { $0.contains("[]") }
        return (paths, t)
    }
}

private func concrete(_ path: String) -> String { path.replacingOccurrences(of: "[]", with: "[0]") }

/// Every element at `pattern` (`filters[].inbound[]`): all indices of each array;
/// a pattern ending in a plain key (`targets[].healthCheck`) gives that object of each.
private func elements(_ v: JSONValue, _ pattern: String) -> [JSONValue] {
    let endsInArray = pattern.hasSuffix("[]")
    func walk(_ v: JSONValue, _ keys: ArraySlice<Substring>) -> [JSONValue] {
        guard let key = keys.first else { return [v] }
        if keys.count == 1 && !endsInArray { return v[String(key)].map { [$0] } ?? [] }
        guard case .array(let items)? = v[String(key)] else { return [] }
        return items.flatMap { walk($0, keys.dropFirst()) }
    }
    let keys = (endsInArray ? String(pattern.dropLast(2)) : pattern).components(separatedBy: "[].").map { Substring($0) }
    return walk(v, keys[...])
}

@Test func theReferenceHasATableForEveryObject() throws {
    let paths = Set(fieldTables(try reference()).flatMap(\.paths))
    #expect(
        paths == [
            "filters[]", "filters[].inbound[]", "filters[].outbound[]", "targets[]", "targets[].healthCheck", "sources[]",
            "sessions[]", "sessions[].rateLimit",
            "securityGroups[]", "securityGroups[].rules[]", "networkAcls[]", "networkAcls[].inbound[]",
            "networkAcls[].outbound[]",
        ])
    let base = try JSONParser.parse(fullDocument).get()
    try expectAccepted(base, "the test's full document")
    // Every field the validator knows appears in the reference: the full document
    // has them all, and each must be a row of its object's table.
    for (objectPaths, table) in fieldTables(try reference()) {
        let fields = Set(table.rows.map { $0[table.column("field")!].replacingOccurrences(of: "`", with: "") })
        for p in objectPaths {
            var keys = Set<String>()
            for case .object(let members) in elements(base, p) { keys.formUnion(members.map(\.key)) }
            #expect(!keys.isEmpty, "no \(p) in the test's full document")
            for k in keys.sorted() { #expect(fields.contains(k), "\(p).\(k) is not a row of the table under \"\(table.heading)\"") }
            for f in fields.sorted() where !keys.contains(f) {
                Issue.record("\(p).\(f) is documented but not in the test's full document: add it there")
            }
        }
    }
}

@Test func everyFieldRangeInTheReferenceIsWhatTheValidatorEnforces() throws {
    let text = try reference()
    let quotas = quotaRows(text)
    let base = try JSONParser.parse(fullDocument).get()
    var checked = 0
    for (objectPaths, table) in fieldTables(text) {
        let fieldColumn = table.column("field")!, typeColumn = table.column("type")!, rangeColumn = table.column("range")!
        for row in table.rows {
            let field = row[fieldColumn].replacingOccurrences(of: "`", with: "")
            guard let limit = parseLimit(row[rangeColumn]) else { continue }
            for objectPath in objectPaths {
                let r = FieldRange(path: concrete(objectPath) + "." + field, type: row[typeColumn], limit: limit)
                switch limit.unit {
                case nil:
                    try checkValueRange(r, base)
                case "characters", "bytes":
                    try checkLengthRange(r, base)
                default:
                    // A list's length is a quota: the Quotas table must say the same,
                    // and the quota test tries it.
                    let listPath = objectPath + "." + field
                    guard let q = quotas.first(where: { codeSpans($0.appliesTo).contains(listPath) }) else {
                        Issue.record("\(listPath) has the range \(limit) but no row of the Quotas table applies to it")
                        continue
                    }
                    #expect(
                        q.limit.upper == limit.upper && (q.limit.lower ?? 0) == (limit.lower ?? 0),
                        "\(listPath): the field table says \(limit), the Quotas table \(q.limit)")
                }
                checked += 1
            }
        }
    }
    #expect(checked >= 30, "only \(checked) ranges found in \(referencePath): did its tables change shape?")
}

/// An integer field (or a protocol number, or a port range written "N").
private func checkValueRange(_ r: FieldRange, _ base: JSONValue) throws {
    let encode: (Int) -> JSONValue
    var doc = base
    switch r.type.replacingOccurrences(of: "`", with: "") {
    case "integer": encode = { .int(Int64($0)) }
    case "protocol":
        encode = { .int(Int64($0)) }
        // Ports are only allowed with tcp and udp: the protocol's limits are tried
        // on a rule without them.
        let object = String(r.path[..<r.path.lastIndex(of: ".")!])
        for ports in ["sourcePorts", "destinationPorts", "ports"] { doc = doc.setting("\(object).\(ports)", nil) }
    case "port range": encode = { .string(String($0)) }
    default:
        Issue.record("\(r.path): no way to try a range on type \(r.type): teach \(#fileID) its encoding")
        return
    }
    guard doc.value(at: r.path) != nil else { Issue.record("\(r.path) is not in the test's full document"); return }
    let what = "\(r.path) (\(r.limit))"
    if let lower = r.limit.lower {
        try expectAccepted(doc.setting(r.path, encode(lower)), "\(what) = \(lower)")
        try expectRefused(doc.setting(r.path, encode(lower - 1)), "\(what) = \(lower - 1)", path: r.path)
    }
    try expectAccepted(doc.setting(r.path, encode(r.limit.upper)), "\(what) = \(r.limit.upper)")
    try expectRefused(doc.setting(r.path, encode(r.limit.upper + 1)), "\(what) = \(r.limit.upper + 1)", path: r.path)
}

/// A string whose length is bounded (an id, a description, an interface name).
/// Ids are changed together with the references to them.
private func checkLengthRange(_ r: FieldRange, _ base: JSONValue) throws {
    guard case .string(let old)? = base.value(at: r.path) else {
        Issue.record("\(r.path) is not a string in the test's full document"); return
    }
    func with(_ n: Int) -> JSONValue {
        let s = String(repeating: "x", count: n)
        return r.path.hasSuffix(".id") ? base.replacingStrings(old, with: s) : base.setting(r.path, .string(s))
    }
    let what = "\(r.path) (\(r.limit))"
    if let lower = r.limit.lower {
        try expectAccepted(with(lower), "\(what) of \(lower)")
        if lower > 0 { try expectRefused(with(lower - 1), "\(what) of \(lower - 1)", path: r.path) }
    }
    try expectAccepted(with(r.limit.upper), "\(what) of \(r.limit.upper)")
    try expectRefused(with(r.limit.upper + 1), "\(what) of \(r.limit.upper + 1)", path: r.path)
}

// MARK: - quotas

private struct QuotaRow { var name: String; var limit: Limit; var appliesTo: String }

private func quotaRows(_ text: String) -> [QuotaRow] {
    guard let t = markdownTables(text).first(where: { $0.heading == "Quotas" }),
        let q = t.column("quota"), let l = t.column("limit"), let a = t.column("applies to")
    else { return [] }
    return t.rows.compactMap { row in
        guard let limit = parseLimit(row[l]) else { Issue.record("quota \(row[q]): cannot read the limit \(row[l])"); return nil }
        return QuotaRow(name: row[q].replacingOccurrences(of: "`", with: ""), limit: limit, appliesTo: row[a])
    }
}

// Small valid objects, for documents built to a size.
private func obj(_ m: KeyValuePairs<String, JSONValue>) -> JSONValue { .object(m.map { (key: $0.key, value: $0.value) }) }
private func s(_ x: String) -> JSONValue { .string(x) }
private func n(_ x: Int) -> JSONValue { .int(Int64(x)) }
private func filter(_ id: String) -> JSONValue {
    obj(["id": s(id), "inbound": .array([obj(["priority": n(1), "action": s("accept"), "ethertype": s("ipv4")])])])
}
private func nic(_ id: String, _ address: String = "198.51.100.2") -> JSONValue {
    obj(["id": s(id), "type": s("nic"), "address": s(address)])
}
private func loadBalancer(_ id: String, _ backends: [String] = ["203.0.113.20"]) -> JSONValue {
    obj(["id": s(id), "type": s("loadBalancer"), "backends": .array(backends.map(s))])
}
private func source(_ i: Int, groups: [String]? = nil) -> JSONValue {
    var m: [(key: String, value: JSONValue)] = [("id", s("vm\(i)")), ("interface", s("tap\(i)"))]
    if let groups { m.append(("securityGroups", .array(groups.map(s)))) }
    return .object(m)
}
private func session(_ id: String, priority: Int = 1, filter: JSONValue = s("f0"), sources: [String], target: JSONValue = s("t0"))
    -> JSONValue
{
    obj(["id": s(id), "priority": n(priority), "filter": filter, "sources": .array(sources.map(s)), "target": target])
}
private func document(
    filters: [JSONValue] = [filter("f0")], targets: [JSONValue] = [nic("t0")], sources: [JSONValue] = [source(0)],
    sessions: [JSONValue] = [], securityGroups: [JSONValue] = [], networkAcls: [JSONValue] = []
) -> JSONValue {
    obj([
        "filters": .array(filters), "targets": .array(targets), "sources": .array(sources), "sessions": .array(sessions),
        "securityGroups": .array(securityGroups), "networkAcls": .array(networkAcls),
    ])
}
private func address(_ i: Int) -> String { "198.18.\(i / 256).\(i % 256)" }
private func ceilDiv(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }

/// For each quota of the reference, a document with `count` of what it limits and
/// nothing else near a limit.
private let quotaDocuments: [String: (Int) -> JSONValue] = [
    "sources per session": { c in
        document(sources: (0..<c).map { source($0) }, sessions: [session("s", sources: (0..<c).map { "vm\($0)" })])
    },
    "sessions per source": { c in
        document(sessions: (0..<c).map { session("s\($0)", priority: $0 + 1, sources: ["vm0"]) })
    },
    "targets per session": { c in
        document(
            targets: (0..<c).map { nic("t\($0)") },
            sessions: [session("s", sources: ["vm0"], target: c == 1 ? s("t0") : .array((0..<c).map { s("t\($0)") }))])
    },
    "filters per session": { c in
        document(
            filters: (0..<c).map { filter("f\($0)") },
            sessions: [session("s", filter: c == 1 ? s("f0") : .array((0..<c).map { s("f\($0)") }), sources: ["vm0"])])
    },
    "sessions per nic target": { c in
        document(sources: (0..<c).map { source($0) }, sessions: (0..<c).map { session("s\($0)", sources: ["vm\($0)"]) })
    },
    "sessions per loadBalancer target": { c in
        document(
            targets: [loadBalancer("t0")], sources: (0..<c).map { source($0) },
            sessions: (0..<c).map { session("s\($0)", sources: ["vm\($0)"]) })
    },
    "sessions per filter": { c in
        document(
            targets: (0..<ceilDiv(c, 200)).map { loadBalancer("t\($0)") }, sources: (0..<c).map { source($0) },
            sessions: (0..<c).map { session("s\($0)", sources: ["vm\($0)"], target: s("t\($0 / 200)")) })
    },
    "rules per filter direction": { c in
        let rules = JSONValue.array((0..<c).map { obj(["priority": n($0 + 1), "action": s("accept"), "ethertype": s("ipv4")]) })
        return document(filters: [obj(["id": s("f0"), "inbound": rules, "outbound": rules])])
    },
    "sessions per agent": { c in
        document(
            filters: (0..<ceilDiv(c, 1000)).map { filter("f\($0)") }, targets: (0..<ceilDiv(c, 200)).map { loadBalancer("t\($0)") },
            sources: (0..<ceilDiv(c, 3)).map { source($0) },
            sessions: (0..<c).map {
                session(
                    "s\($0)", priority: $0 % 3 + 1, filter: s("f\($0 / 1000)"), sources: ["vm\($0 / 3)"],
                    target: s("t\($0 / 200)"))
            })
    },
    "backends per load balancer": { c in
        document(targets: [loadBalancer("t0", (0..<c).map { address($0 + 1) })])
    },
    "security groups per source": { c in
        document(
            sources: [source(0, groups: (0..<c).map { "sg\($0)" })],
            securityGroups: (0..<c).map { obj(["id": s("sg\($0)")]) })
    },
    "rules per security group": { c in
        // Both directions, so priorities (1–100 per direction) stay in range past the quota.
        let rules = (0..<c).map {
            obj([
                "direction": s($0 % 2 == 0 ? "ingress" : "egress"), "priority": n($0 / 2 + 1), "action": s("allow"), "ethertype": s("ipv4"),
            ])
        }
        return document(securityGroups: [obj(["id": s("sg0"), "rules": .array(rules)])])
    },
    "rules per network ACL direction": { c in
        let rules = JSONValue.array((0..<c).map { obj(["priority": n($0 + 1), "action": s("allow"), "ethertype": s("ipv4")]) })
        return document(networkAcls: [obj(["id": s("acl0"), "inbound": rules, "outbound": rules])])
    },
    "sources per agent": { c in document(sources: (0..<c).map { source($0) }) },
    "filters per agent": { c in document(filters: (0..<c).map { filter("f\($0)") }) },
    "targets per agent": { c in document(targets: (0..<c).map { nic("t\($0)", address($0 + 1)) }) },
]

@Test func everyQuotaInTheReferenceIsWhatTheValidatorEnforces() throws {
    let rows = quotaRows(try reference())
    #expect(rows.count >= 16, "the Quotas table of \(referencePath) has \(rows.count) rows")
    for q in rows {
        guard let make = quotaDocuments[q.name] else {
            Issue.record("quota \"\(q.name)\" has no document generator in \(#fileID): add one so the reference stays checked")
            continue
        }
        let upper = q.limit.upper
        try expectAccepted(make(upper), "\(upper) (\(q.name))")
        try expectRefused(make(upper + 1), "\(upper + 1) (\(q.name))", mentioning: String(upper))
        if let lower = q.limit.lower, lower > 0 {
            try expectAccepted(make(lower), "\(lower) (\(q.name))")
            try expectRefused(make(lower - 1), "\(lower - 1) (\(q.name))")
        }
    }
    for name in quotaDocuments.keys where !rows.contains(where: { $0.name == name }) {
        Issue.record("quota \"\(name)\" is no longer in the Quotas table of \(referencePath)")
    }
}

// MARK: - command-line options

/// Whether `text` has `token` as a whole word (`--source` in "--source ID", not in "--source-x").
private func names(_ text: Substring, _ token: String) -> Bool {
    var rest = text
    while let r = rest.range(of: token) {
        let next = rest[r.upperBound...].first
        if next.map({ !($0.isLetter || $0.isNumber || $0 == "-") }) ?? true { return true }
        rest = rest[r.upperBound...]
    }
    return false
}

/// The long options and subcommands a program's --help lists, its subcommands' too.
private func helpSurface(_ program: String, _ command: [String] = []) throws -> (options: Set<String>, commands: [[String]]) {
    let r = try Command.result([program] + command + ["--help"])
    #expect(r.status == 0, "\(command) --help exited \(r.status): \(r.stderr)")
    var options = Set<String>()
    var commands: [[String]] = []
    var inSubcommands = false
    for line in r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
        if line.isEmpty || (line.hasSuffix(":") && !line.hasPrefix(" ")) { inSubcommands = line == "SUBCOMMANDS:" }
        if inSubcommands, line.hasPrefix("  "), !line.hasPrefix("   "),
            let name = line.split(separator: " ").first, name.allSatisfy({ $0.isLetter || $0 == "-" })
        {
            commands.append(command + [String(name)])
        }
        var rest = Substring(line)
        while let r = rest.range(of: "--") {
            let name = rest[r.upperBound...].prefix { $0.isLowercase || $0.isNumber || $0 == "-" }
            if name.first?.isLetter == true { options.insert("--" + name) }
            rest = rest[r.upperBound...]
        }
    }
    for c in commands {
        let sub = try helpSurface(program, c)
        options.formUnion(sub.options)
        commands += sub.commands
    }
    return (options, commands)
}

@Test func everyOptionAndCommandTheProgramsListIsInTheReference() throws {
    let text = try reference()
    for program in ["mirror-agent", "agentctl"] {
        guard let path = Binaries.path(program) else {
            Issue.record("\(program) not found next to \(CommandLine.arguments[0]): build it first (swift build)")
            continue
        }
        guard let section = text.range(of: "\n## \(program)\n") else {
            Issue.record("\(referencePath) has no section \"## \(program)\""); continue
        }
        let rest = text[section.upperBound...]
        let body = rest[..<(rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex)]
        let surface = try helpSurface(path)
        #expect(surface.options.count > 3, "\(program) --help: no options found; did its format change?")
        for option in surface.options.sorted() {
            let named = names(body, option)
            #expect(named, "\(program) has \(option) but \(referencePath) does not name it in its \(program) section")
        }
        for command in surface.commands {
            let words = command.joined(separator: " ")
            let named = body.contains("`\(words)") || body.contains("\(program) \(words)")
            #expect(
                named,
                "\(program) \(words) is not in \(referencePath)")
        }
    }
}
