/// Builds a `Document` from JSON and validates every rule of SPEC §2, §3 and §5,
/// collecting ALL errors with the JSON path of the offending field.
///
/// One code path serves files and programmatic models: `validate(_:)` encodes a model
/// with `DocumentEncoding` and parses it back, so the checks and the paths are the same.
public enum DocumentParser {
    /// Parse and validate JSON bytes (a file, a socket request).
    public static func parse(_ bytes: [UInt8]) -> Result<Document, ValidationErrors> {
        switch JSONParser.parse(bytes) {
        case .failure(let e):
            return .failure(ValidationErrors([ValidationError(path: "document", message: "invalid JSON at \(e)")]))
        case .success(let v):
            return parse(json: v)
        }
    }

    public static func parse(_ text: String) -> Result<Document, ValidationErrors> { parse(Array(text.utf8)) }

    /// Validate a parsed JSON value and build the model.
    public static func parse(json: JSONValue) -> Result<Document, ValidationErrors> {
        parse(json: json, memo: nil)
    }

    /// The same, reusing the filters `memo` decoded in its previous parse (see
    /// `DecodeMemo`); the result is exactly `parse(json:)`'s.
    public static func parse(json: JSONValue, memo: DecodeMemo?) -> Result<Document, ValidationErrors> {
        var d = Decoder(dialect: .agent)
        d.memo = memo
        let doc = d.document(json)
        memo?.finish()
        d.crossChecks(doc)
        return d.errors.isEmpty ? .success(doc.model) : .failure(ValidationErrors(d.errors))
    }

    /// Every problem of a model built in code (empty = valid).
    public static func validate(_ document: Document) -> [ValidationError] {
        switch parse(json: DocumentEncoding.encode(document)) {
        case .success: return []
        case .failure(let e): return e.errors
        }
    }
}

// MARK: - decoded document with the paths of its parts (for cross-object checks)

struct Located<T> {
    var value: T
    var path: String
}

struct DecodedDocument {
    var filters: [Located<Filter>] = []
    var targets: [Located<Target>] = []
    var sources: [Located<Source>] = []
    var sessions: [Located<Session>] = []
    var securityGroups: [Located<SecurityGroup>] = []
    var networkAcls: [Located<NetworkAcl>] = []
    /// Ids seen on elements that failed to decode: references to them are not
    /// reported as dangling (the element's own error is enough).
    var brokenIds: [String: Set<String>] = [:]

    var model: Document {
        Document(
            filters: filters.map(\.value), targets: targets.map(\.value), sources: sources.map(\.value),
            sessions: sessions.map(\.value), securityGroups: securityGroups.map(\.value),
            networkAcls: networkAcls.map(\.value))
    }
}

// MARK: - dialects

/// What one parse accepts: the agent's document (SPEC §7) or the region document
/// (SPEC §9), which is the same document with a `host` on every source and the region's
/// quotas on the top-level arrays. Every other check is shared, so both report the same
/// errors at the same paths.
struct DocumentDialect {
    struct Limit {
        var max: Int
        var quota: String
    }
    var filters: Limit
    var targets: Limit
    var sources: Limit
    var sessions: Limit
    /// Sources carry a required `host` (SPEC §9); interfaces are then unique per host,
    /// and each host's share must fit the quotas of one agent.
    var sourceHost: Bool

    static let agent = DocumentDialect(
        filters: Limit(max: Quota.filtersPerAgent, quota: "filters per agent"),
        targets: Limit(max: Quota.targetsPerAgent, quota: "targets per agent"),
        sources: Limit(max: Quota.sourcesPerAgent, quota: "sources per agent"),
        sessions: Limit(max: Quota.sessionsPerAgent, quota: "sessions per agent"),
        sourceHost: false)

    static let region = DocumentDialect(
        filters: Limit(max: Quota.filtersPerRegion, quota: "filters per region"),
        targets: Limit(max: Quota.targetsPerRegion, quota: "targets per region"),
        sources: Limit(max: Quota.sourcesPerRegion, quota: "sources per region"),
        sessions: Limit(max: Quota.sessionsPerRegion, quota: "sessions per region"),
        sourceHost: true)
}

// MARK: - decoder

struct Decoder {
    let dialect: DocumentDialect
    var errors: [ValidationError] = []
    /// Region dialect: the host of every source that decoded, by the source's path.
    var sourceHosts: [String: String] = [:]
    /// Every collector address and ENI address read, with its path, even from objects
    /// that fail for another reason, so the source-is-target check (SPEC §3) is always made.
    var collectorAddresses: [(address: IPAddress, path: String)] = []
    var eniAddresses: [(address: IPAddress, path: String, source: String?)] = []
    /// The references of sessions that fail for another reason (a bad priority, say),
    /// so a dangling filter, target or source in them is still reported: every error
    /// of a document at once (SPEC §7).
    var brokenSessionReferences: [(path: String, filter: String?, target: String?, sources: [Located<String>])] = []

    /// Filters decoded by the previous parse with this memo, by their JSON.
    var memo: DecodeMemo?

    init(dialect: DocumentDialect) { self.dialect = dialect }

    mutating func add(_ path: String, _ message: String) {
        errors.append(ValidationError(path: path, message: message))
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    // MARK: generic readers

    /// The object's members, after reporting unknown fields (with a did-you-mean hint)
    /// and missing required ones. nil when `v` is not an object.
    mutating func members(
        _ v: JSONValue, _ path: String, kind: String, allowed: [String],
        required: [String]
    ) -> [String: JSONValue]? {
        guard case .object(let list) = v else {
            add(path.isEmpty ? "document" : path, "must be an object (\(kind)), found \(v.kindName)")
            return nil
        }
        var out: [String: JSONValue] = [:]
        for m in list {
            if allowed.contains(m.key) {
                out[m.key] = m.value
            } else {
                var msg = "unknown field \"\(m.key)\""
                if let s = EditDistance.suggestion(for: m.key, among: allowed) { msg += "; did you mean \"\(s)\"?" }
                msg += " Fields of \(kind): " + allowed.joined(separator: ", ")
                add(Decoder.join(path, m.key), msg)
            }
        }
        for r in required where out[r] == nil {
            add(Decoder.join(path, r), "missing required field \"\(r)\" of \(kind)")
        }
        return out
    }

    mutating func int(_ v: JSONValue?, _ path: String, _ range: ClosedRange<Int>, _ what: String) -> Int? {
        guard let v else { return nil }
        let allowed = "\(what) must be an integer \(range.lowerBound)–\(range.upperBound)"
        switch v {
        case .int(let n):
            guard n >= Int64(range.lowerBound), n <= Int64(range.upperBound) else {
                add(path, "\(n) is out of range: \(allowed)"); return nil
            }
            return Int(n)
        case .double(let d):
            add(path, "\(d) is not an integer: \(allowed)"); return nil
        default:
            add(path, "found \(v.kindName): \(allowed)"); return nil
        }
    }

    mutating func string(_ v: JSONValue?, _ path: String, _ what: String) -> String? {
        guard let v else { return nil }
        guard case .string(let s) = v else { add(path, "found \(v.kindName): \(what) must be a string"); return nil }
        return s
    }

    mutating func bool(_ v: JSONValue?, _ path: String, _ what: String) -> Bool? {
        guard let v else { return nil }
        guard case .bool(let b) = v else { add(path, "found \(v.kindName): \(what) must be true or false"); return nil }
        return b
    }

    mutating func description(_ v: JSONValue?, _ path: String) -> String? {
        guard let s = string(v, path, "description") else { return nil }
        guard s.count <= Quota.descriptionMaxLength else {
            add(path, "description is \(s.count) characters long: at most \(Quota.descriptionMaxLength) allowed"); return nil
        }
        return s
    }

    static let idCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-".unicodeScalars)

    /// SPEC §2: 1–64 of [A-Za-z0-9._-].
    mutating func id(_ v: JSONValue?, _ path: String, _ what: String) -> String? {
        guard let s = string(v, path, what) else { return nil }
        let rule = "\(what) must be 1–\(Quota.idMaxLength) characters of A-Z a-z 0-9 . _ -"
        if s.isEmpty { add(path, "empty: \(rule)"); return nil }
        if s.unicodeScalars.count > Quota.idMaxLength {
            add(path, "\(s.unicodeScalars.count) characters long: \(rule)"); return nil
        }
        if let bad = s.unicodeScalars.first(where: { !Decoder.idCharacters.contains($0) }) {
            add(path, "\"\(s)\" contains \"\(Character(bad))\": \(rule)"); return nil
        }
        return s
    }

    mutating func enumValue<E: RawRepresentable & CaseIterable>(
        _ v: JSONValue?, _ path: String, _ what: String,
        _: E.Type
    ) -> E? where E.RawValue == String {
        guard let v else { return nil }
        if case .string(let s) = v, let e = E(rawValue: s) { return e }
        let names = E.allCases.map(\.rawValue)
        let allowed = "\(what) must be " + names.map { "\"\($0)\"" }.joined(separator: " or ")
        guard case .string(let s) = v else { add(path, "found \(v.kindName): \(allowed)"); return nil }
        var msg = "\"\(s)\" is not allowed: \(allowed)"
        if let hint = EditDistance.suggestion(for: s, among: names) { msg += "; did you mean \"\(hint)\"?" }
        add(path, msg)
        return nil
    }

    mutating func array(_ v: JSONValue?, _ path: String, _ what: String) -> [JSONValue]? {
        guard let v else { return nil }
        guard case .array(let a) = v else { add(path, "found \(v.kindName): \(what) must be an array"); return nil }
        return a
    }

    mutating func address(_ v: JSONValue?, _ path: String, _ what: String) -> IPAddress? {
        guard let s = string(v, path, what) else { return nil }
        guard let a = IPAddress(s) else {
            add(path, "\"\(s)\" is not an IP address: \(what) must be an IPv4 (192.0.2.1) or IPv6 (2001:db8::1) address")
            return nil
        }
        return a
    }

    /// A collector address: a unicast address that can be sent to.
    mutating func collectorAddress(_ v: JSONValue?, _ path: String) -> IPAddress? {
        guard let a = address(v, path, "a collector address") else { return nil }
        let bad: Bool
        switch a {
        case .v4(let x): bad = x == 0 || x == 0xFFFF_FFFF || (x >> 28) == 0xE
        case .v6(let b): bad = b.allSatisfy { $0 == 0 } || b[0] == 0xFF
        }
        if bad { add(path, "\(a) is not a unicast address: a collector address must be unicast"); return nil }
        collectorAddresses.append((a, path))
        return a
    }

    /// Strict CIDR: `address/prefix` (a bare address means a single host), prefix in
    /// range, no host bits set, family equal to the rule's ethertype.
    mutating func cidr(_ v: JSONValue?, _ path: String, ethertype: Ethertype?) -> CIDR? {
        guard let s = string(v, path, "a CIDR") else { return nil }
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        let form = "a CIDR must be written address/prefix, e.g. 192.0.2.0/24 or 2001:db8::/32"
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else {
            add(path, "\"\(s)\" is not a CIDR: \(form)"); return nil
        }
        let maxPrefix = address.ethertype == .ipv4 ? 32 : 128
        var prefix = maxPrefix
        if parts.count == 2 {
            let p = parts[1]
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), !(p.count > 1 && p.first == "0"),
                let n = Int(p)
            else {
                add(path, "\"\(s)\" has an invalid prefix length: \(form)"); return nil
            }
            guard n <= maxPrefix else {
                add(
                    path, "prefix length /\(n) is out of range: an \(address.ethertype == .ipv4 ? "IPv4" : "IPv6") prefix is 0–\(maxPrefix)"
                )
                return nil
            }
            prefix = n
        }
        let c = CIDR(address: address, prefixLength: prefix)
        if let ethertype, address.ethertype != ethertype {
            add(
                path,
                "\(s) is an \(address.ethertype == .ipv4 ? "IPv4" : "IPv6") CIDR but the ethertype is \(ethertype): the family must match the ethertype"
            )
            return nil
        }
        guard c.hostBitsZero else {
            add(path, "\(s) has host bits set: did you mean \(CIDR.masked(address, prefix))/\(prefix)?")
            return nil
        }
        return c
    }

    /// `all`, an IP protocol number 0–255, or tcp/udp/icmp/icmpv6; icmp only with
    /// ipv4 and icmpv6 only with ipv6.
    mutating func proto(_ v: JSONValue?, _ path: String, ethertype: Ethertype?) -> ProtocolSpec? {
        guard let v else { return nil }
        let allowed = "protocol must be \"all\", \"tcp\", \"udp\", \"icmp\", \"icmpv6\" or a number 0–255"
        var p: ProtocolSpec
        switch v {
        case .int(let n):
            guard (0...255).contains(n) else { add(path, "\(n) is out of range: \(allowed)"); return nil }
            p = .number(UInt8(n))
        case .string(let s):
            if s == "all" {
                p = .all
            } else if let n = ProtocolSpec.names[s] {
                p = .number(n)
            } else if let n = UInt8(s), String(n) == s {
                p = .number(n)
            } else {
                var msg = "\"\(s)\" is not allowed: \(allowed)"
                if let h = EditDistance.suggestion(for: s, among: ["all"] + ProtocolSpec.names.keys.sorted()) {
                    msg += "; did you mean \"\(h)\"?"
                }
                add(path, msg); return nil
            }
        default:
            add(path, "found \(v.kindName): \(allowed)"); return nil
        }
        if p == .icmp, ethertype == .ipv6 { add(path, "icmp (1) is IPv4's: with ethertype ipv6 use icmpv6 (58)"); return nil }
        if p == .icmpv6, ethertype == .ipv4 { add(path, "icmpv6 (58) is IPv6's: with ethertype ipv4 use icmp (1)"); return nil }
        return p
    }

    /// `all`, `N` or `N-M` with N ≤ M (a bare integer N is accepted too); only for
    /// tcp and udp (SPEC §2).
    mutating func ports(_ v: JSONValue?, _ path: String, protocol p: ProtocolSpec?) -> PortRange? {
        guard let v else { return nil }
        let form = "ports must be \"all\", \"N\" or \"N-M\" with 0 ≤ N ≤ M ≤ 65535"
        var range: PortRange
        switch v {
        case .int(let n):
            guard (0...65535).contains(n) else { add(path, "\(n) is out of range: \(form)"); return nil }
            range = PortRange(UInt16(n), UInt16(n))
        case .string(let s):
            if s == "all" { range = .all; break }
            let parts = s.split(separator: "-", omittingEmptySubsequences: false)
            func num(_ t: Substring) -> UInt16? {
                guard !t.isEmpty, t.count <= 5, t.allSatisfy({ $0.isASCII && $0.isNumber }), !(t.count > 1 && t.first == "0"),
                    let n = Int(t), n <= 65535
                else { return nil }
                return UInt16(n)
            }
            guard parts.count <= 2, let lo = num(parts[0]), let hi = parts.count == 2 ? num(parts[1]) : lo else {
                add(path, "\"\(s)\" is not a port range: \(form)"); return nil
            }
            guard lo <= hi else { add(path, "\"\(s)\" is empty (\(lo) > \(hi)): \(form)"); return nil }
            range = PortRange(lo, hi)
        default:
            add(path, "found \(v.kindName): \(form)"); return nil
        }
        if let p, !p.hasPorts {
            add(path, "ports are only allowed with protocol tcp or udp (6 or 17), not \(p)")
            return nil
        }
        return range
    }

    /// SPEC §2 host-side device name, as Linux accepts it (IFNAMSIZ).
    mutating func interfaceName(_ v: JSONValue?, _ path: String) -> String? {
        guard let s = string(v, path, "interface") else { return nil }
        let rule = "an interface name is 1–15 bytes, without '/', ':', whitespace or control characters, and not \".\" or \"..\""
        if s.isEmpty || s.utf8.count > 15 { add(path, "\"\(s)\" is \(s.utf8.count) bytes long: \(rule)"); return nil }
        if s == "." || s == ".." { add(path, "\"\(s)\" is not allowed: \(rule)"); return nil }
        if s.unicodeScalars.contains(where: { $0 == "/" || $0 == ":" || $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F })
        {
            add(path, "\"\(s)\" contains a forbidden character: \(rule)"); return nil
        }
        return s
    }

    /// SPEC §9: the host a region document's source is on (see `HostName`).
    mutating func hostName(_ v: JSONValue?, _ path: String) -> String? {
        guard let s = string(v, path, "host") else { return nil }
        if let problem = HostName.problem(s) { add(path, problem); return nil }
        return s
    }

    /// Reads an array of elements with `read`; nil elements (with errors) are dropped.
    mutating func list<T>(
        _ v: JSONValue?, _ path: String, _ what: String, max: Int? = nil, quota: String? = nil,
        _ read: (inout Decoder, JSONValue, String) -> T?
    ) -> [Located<T>]? {
        guard let items = array(v, path, what) else { return nil }
        var out: [Located<T>] = []
        for (i, item) in items.enumerated() {
            let p = "\(path)[\(i)]"
            if let max, i == max {
                add(p, "too many \(what): at most \(max) allowed (quota: \(quota ?? what))")
            }
            if let t = read(&self, item, p) { out.append(Located(value: t, path: p)) }
        }
        return out
    }

    // MARK: objects

    static let documentFields = ["filters", "targets", "sources", "sessions", "securityGroups", "networkAcls"]

    mutating func document(_ v: JSONValue) -> DecodedDocument {
        var d = DecodedDocument()
        guard let m = members(v, "", kind: "the document", allowed: Decoder.documentFields, required: []) else { return d }
        // Record ids of every element first, so broken elements do not cause dangling-reference noise.
        for kind in Decoder.documentFields {
            guard case .array(let items)? = m[kind] else { continue }
            for item in items { if case .string(let id)? = item["id"] { d.brokenIds[kind, default: []].insert(id) } }
        }
        let q = dialect
        d.filters = list(m["filters"], "filters", "filters", max: q.filters.max, quota: q.filters.quota) { $0.filter($1, $2) } ?? []
        d.targets = list(m["targets"], "targets", "targets", max: q.targets.max, quota: q.targets.quota) { $0.target($1, $2) } ?? []
        d.sources = list(m["sources"], "sources", "sources", max: q.sources.max, quota: q.sources.quota) { $0.source($1, $2) } ?? []
        d.sessions =
            list(m["sessions"], "sessions", "sessions", max: q.sessions.max, quota: q.sessions.quota) { $0.session($1, $2) } ?? []
        d.securityGroups = list(m["securityGroups"], "securityGroups", "security groups") { $0.securityGroup($1, $2) } ?? []
        d.networkAcls = list(m["networkAcls"], "networkAcls", "network ACLs") { $0.networkAcl($1, $2) } ?? []
        // brokenIds keeps only ids whose element failed to decode.
        func prune<T>(_ kind: String, _ ok: [Located<T>], _ id: (T) -> String) {
            d.brokenIds[kind]?.subtract(ok.map { id($0.value) })
        }
        prune("filters", d.filters) { $0.id }
        prune("targets", d.targets) { $0.id }
        prune("sources", d.sources) { $0.id }
        prune("sessions", d.sessions) { $0.id }
        prune("securityGroups", d.securityGroups) { $0.id }
        prune("networkAcls", d.networkAcls) { $0.id }
        return d
    }

    mutating func filter(_ v: JSONValue, _ path: String) -> Filter? {
        if let memo {
            if let known = memo.filter(v) { return known }
            // Kept only when it decoded without any error: a filter can decode with
            // one (an unknown field is reported, the filter still built).
            let before = errors.count
            let f = decodeFilter(v, path)
            if let f, errors.count == before { memo.keep(v, f) }
            return f
        }
        return decodeFilter(v, path)
    }

    mutating func decodeFilter(_ v: JSONValue, _ path: String) -> Filter? {
        guard
            let m = members(
                v, path, kind: "a filter", allowed: ["id", "description", "inbound", "outbound"],
                required: ["id"])
        else { return nil }
        let id = self.id(m["id"], path + ".id", "a filter id")
        let desc = description(m["description"], path + ".description")
        var ok = id != nil && (m["description"] == nil || desc != nil)
        var rules: [Direction: [Located<Rule>]] = [:]
        for dir in Direction.allCases {
            let p = path + ".\(dir)"
            let before = errors.count
            let r = list(
                m[dir.rawValue], p, "\(dir) rules", max: Quota.rulesPerFilterDirection,
                quota: "rules per filter: \(Quota.rulesPerFilterDirection) inbound + \(Quota.rulesPerFilterDirection) outbound"
            ) {
                $0.rule($1, $2)
            }
            if m[dir.rawValue] != nil && r == nil { ok = false }
            rules[dir] = r ?? []
            if errors.count != before { ok = false }
            // SPEC §2: priority unique within a filter direction.
            var seen: [Int: String] = [:]
            for rule in rules[dir] ?? [] {
                if let other = seen[rule.value.priority] {
                    add(
                        rule.path + ".priority",
                        "priority \(rule.value.priority) is also used by \(other): rule priorities must be unique within a filter direction"
                    )
                    ok = false
                } else {
                    seen[rule.value.priority] = rule.path
                }
            }
        }
        guard ok, let id else { return nil }
        return Filter(
            id: id, description: desc, inbound: (rules[.inbound] ?? []).map(\.value),
            outbound: (rules[.outbound] ?? []).map(\.value))
    }

    mutating func rule(_ v: JSONValue, _ path: String) -> Rule? {
        matchRule(v, path, kind: "a filter rule", priorities: Quota.rulePriority, "a rule priority")
    }

    /// A filter rule or a network ACL rule (SPEC §2, §5): the same fields and checks;
    /// the action's values, the priority range and the words differ.
    mutating func matchRule<Action: RawRepresentable & CaseIterable & Hashable & Sendable & Encodable>(
        _ v: JSONValue, _ path: String, kind: String, priorities: ClosedRange<Int>, _ priorityName: String
    ) -> MatchRule<Action>? where Action.RawValue == String {
        guard
            let m = members(
                v, path, kind: kind,
                allowed: [
                    "priority", "action", "ethertype", "protocol", "source", "destination",
                    "sourcePorts", "destinationPorts",
                ],
                required: ["priority", "action", "ethertype"])
        else { return nil }
        let before = errors.count
        let priority = int(m["priority"], path + ".priority", priorities, priorityName)
        let action = enumValue(m["action"], path + ".action", "action", Action.self)
        let e = enumValue(m["ethertype"], path + ".ethertype", "ethertype", Ethertype.self)
        let p = proto(m["protocol"], path + ".protocol", ethertype: e)
        // Ports are checked against the protocol only when it is known (all when absent).
        let known: ProtocolSpec? = m["protocol"] == nil || p != nil ? (p ?? .all) : nil
        let src = cidr(m["source"], path + ".source", ethertype: e)
        let dst = cidr(m["destination"], path + ".destination", ethertype: e)
        let sp = ports(m["sourcePorts"], path + ".sourcePorts", protocol: known)
        let dp = ports(m["destinationPorts"], path + ".destinationPorts", protocol: known)
        guard errors.count == before, let priority, let action, let e else { return nil }
        return MatchRule(
            priority: priority, action: action, ethertype: e, protocol: p ?? .all, source: src, destination: dst,
            sourcePorts: sp, destinationPorts: dp)
    }

    mutating func target(_ v: JSONValue, _ path: String) -> Target? {
        guard
            let m = members(
                v, path, kind: "a target",
                allowed: ["id", "type", "address", "backends", "healthCheck", "encapsulation", "description"],
                required: ["id", "type"])
        else { return nil }
        let before = errors.count
        let id = self.id(m["id"], path + ".id", "a target id")
        let type = enumValue(m["type"], path + ".type", "type", TargetType.self)
        let desc = description(m["description"], path + ".description")
        let encapsulation = enumValue(m["encapsulation"], path + ".encapsulation", "encapsulation", Encapsulation.self)
        var address: IPAddress?
        var backends: [IPAddress]?
        switch type {
        case .nic?:
            if m["backends"] != nil {
                add(path + ".backends", "a nic target has one \"address\", not backends (those are for type loadBalancer)")
            }
            if m["address"] == nil {
                add(path + ".address", "missing required field \"address\": a nic target needs the collector's address")
            }
            address = collectorAddress(m["address"], path + ".address")
        case .loadBalancer?:
            if m["address"] != nil {
                add(path + ".address", "a loadBalancer target has \"backends\", not an address (that is for type nic)")
            }
            if m["backends"] == nil {
                add(
                    path + ".backends",
                    "missing required field \"backends\": a loadBalancer target needs 1–\(Quota.backendsPerLoadBalancer) backend addresses")
            }
            if let list = list(
                m["backends"], path + ".backends", "backends", max: Quota.backendsPerLoadBalancer,
                quota: "backends per load balancer", { $0.collectorAddress($1, $2) })
            {
                if list.isEmpty, case .array? = m["backends"] {
                    add(path + ".backends", "empty: a loadBalancer target needs 1–\(Quota.backendsPerLoadBalancer) backend addresses")
                }
                var seen = Set<IPAddress>()
                for b in list where !seen.insert(b.value).inserted {
                    add(b.path, "backend \(b.value) is listed twice: backends must be distinct")
                }
                backends = list.map(\.value)
            }
        case nil: break
        }
        let check = m["healthCheck"].flatMap { healthCheck($0, path + ".healthCheck") }
        guard errors.count == before, let id, let type else { return nil }
        return Target(
            id: id, type: type, address: address, backends: backends, healthCheck: check, description: desc,
            encapsulation: encapsulation)
    }

    /// SPEC §10: `protocol` icmp or tcp (then `port` is required), the interval and
    /// both thresholds with their defaults.
    mutating func healthCheck(_ v: JSONValue, _ path: String) -> HealthCheck? {
        guard
            let m = members(
                v, path, kind: "a health check",
                allowed: ["protocol", "port", "intervalMs", "unhealthyThreshold", "healthyThreshold"],
                required: ["protocol"])
        else { return nil }
        let before = errors.count
        let proto = enumValue(m["protocol"], path + ".protocol", "protocol", HealthCheckProtocol.self)
        let port = int(m["port"], path + ".port", Quota.healthCheckPort, "port")
        switch proto {
        case .tcp? where m["port"] == nil:
            add(path + ".port", "missing required field \"port\": a tcp health check connects to this port")
        case .icmp? where m["port"] != nil:
            add(path + ".port", "an icmp health check has no port (ports are for protocol tcp)")
        default: break
        }
        let interval = int(m["intervalMs"], path + ".intervalMs", Quota.healthCheckIntervalMs, "intervalMs (milliseconds)")
        let down = int(m["unhealthyThreshold"], path + ".unhealthyThreshold", Quota.healthCheckThreshold, "unhealthyThreshold")
        let up = int(m["healthyThreshold"], path + ".healthyThreshold", Quota.healthCheckThreshold, "healthyThreshold")
        guard errors.count == before, let proto else { return nil }
        return HealthCheck(
            protocol: proto, port: port, intervalMs: interval ?? HealthCheck.defaultIntervalMs,
            unhealthyThreshold: down ?? HealthCheck.defaultUnhealthyThreshold,
            healthyThreshold: up ?? HealthCheck.defaultHealthyThreshold)
    }

    static let sourceFields = ["id", "interface", "addresses", "securityGroups", "networkAcl", "enforce", "description"]
    /// The region document's sources (SPEC §9) also name their host, after the interface.
    static let regionSourceFields = ["id", "host", "interface", "addresses", "securityGroups", "networkAcl", "enforce", "description"]

    mutating func source(_ v: JSONValue, _ path: String) -> Source? {
        let region = dialect.sourceHost
        guard
            let m = members(
                v, path, kind: "a source", allowed: region ? Decoder.regionSourceFields : Decoder.sourceFields,
                required: region ? ["id", "host", "interface"] : ["id", "interface"])
        else { return nil }
        let before = errors.count
        let id = self.id(m["id"], path + ".id", "a source id")
        let host = region ? hostName(m["host"], path + ".host") : nil
        let interface = interfaceName(m["interface"], path + ".interface")
        let addresses = list(m["addresses"], path + ".addresses", "addresses") { $0.address($1, $2, "an ENI address") }
        for a in addresses ?? [] {
            var sourceID: String? = nil
            if case .string(let s)? = m["id"] { sourceID = s }
            eniAddresses.append((a.value, a.path, sourceID))
        }
        var seen = Set<IPAddress>()
        for a in addresses ?? [] where !seen.insert(a.value).inserted {
            add(a.path, "address \(a.value) is listed twice: addresses must be distinct")
        }
        let groups = list(
            m["securityGroups"], path + ".securityGroups", "security groups", max: Quota.securityGroupsPerSource,
            quota: "security groups per source"
        ) { $0.id($1, $2, "a security group id") }
        var seenGroups = Set<String>()
        for g in groups ?? [] where !seenGroups.insert(g.value).inserted {
            add(g.path, "security group \"\(g.value)\" is listed twice: security groups must be distinct")
        }
        let acl = self.id(m["networkAcl"], path + ".networkAcl", "a network ACL id")
        let enforce = bool(m["enforce"], path + ".enforce", "enforce")
        let desc = description(m["description"], path + ".description")
        guard errors.count == before, let id, let interface else { return nil }
        if let host { sourceHosts[path] = host }
        return Source(
            id: id, interface: interface, addresses: addresses?.map(\.value), securityGroups: groups?.map(\.value),
            networkAcl: acl, enforce: enforce, description: desc)
    }

    mutating func session(_ v: JSONValue, _ path: String) -> Session? {
        guard
            let m = members(
                v, path, kind: "a session",
                allowed: [
                    "id", "priority", "filter", "sources", "target", "vni", "enabled", "packetLength", "rateLimit",
                    "sampleOneIn", "description",
                ],
                required: ["id", "priority", "filter", "sources", "target"])
        else { return nil }
        let before = errors.count
        let id = self.id(m["id"], path + ".id", "a session id")
        let priority = int(m["priority"], path + ".priority", Quota.sessionPriority, "a session priority")
        var filter: String?, target: String?
        if case .array? = m["filter"] {
            add(path + ".filter", "a session has exactly one filter (quota: filters per session = 1): give one filter id string")
        } else {
            filter = self.id(m["filter"], path + ".filter", "a filter id")
        }
        if case .array? = m["target"] {
            add(path + ".target", "a session has exactly one target (quota: targets per session = 1): give one target id string")
        } else {
            target = self.id(m["target"], path + ".target", "a target id")
        }
        let sources = list(
            m["sources"], path + ".sources", "sources", max: Quota.sourcesPerSession,
            quota: "sources per session"
        ) { $0.id($1, $2, "a source id") }
        if let sources, sources.isEmpty, case .array(let raw)? = m["sources"], raw.isEmpty {
            add(path + ".sources", "empty: a session needs 1–\(Quota.sourcesPerSession) source ids")
        }
        var seen = Set<String>()
        for s in sources ?? [] where !seen.insert(s.value).inserted {
            add(s.path, "source \"\(s.value)\" is listed twice: a session's sources must be distinct")
        }
        let vni = int(m["vni"], path + ".vni", Quota.vni, "vni")
        let enabled = bool(m["enabled"], path + ".enabled", "enabled")
        let packetLength = int(m["packetLength"], path + ".packetLength", Quota.packetLength, "packetLength (bytes)")
        let rateLimit = m["rateLimit"].flatMap { self.rateLimit($0, path + ".rateLimit") }
        let sampleOneIn = int(m["sampleOneIn"], path + ".sampleOneIn", Quota.sampleOneIn, "sampleOneIn")
        let desc = description(m["description"], path + ".description")
        guard errors.count == before, let id, let priority, let filter, let target, let sources else {
            brokenSessionReferences.append((path, filter, target, sources ?? []))
            return nil
        }
        return Session(
            id: id, priority: priority, filter: filter, sources: sources.map(\.value), target: target,
            vni: vni, enabled: enabled, packetLength: packetLength, rateLimit: rateLimit, sampleOneIn: sampleOneIn,
            description: desc)
    }

    /// SPEC §10: `{"packetsPerSecond": N, "bitsPerSecond": N}`, either or both.
    mutating func rateLimit(_ v: JSONValue, _ path: String) -> RateLimit? {
        guard
            let m = members(
                v, path, kind: "a rate limit", allowed: ["packetsPerSecond", "bitsPerSecond"], required: [])
        else { return nil }
        let before = errors.count
        let pps = int(m["packetsPerSecond"], path + ".packetsPerSecond", Quota.packetsPerSecond, "packetsPerSecond")
        let bps = int(m["bitsPerSecond"], path + ".bitsPerSecond", Quota.bitsPerSecond, "bitsPerSecond")
        // An object with only misspelled fields already has its did-you-mean errors.
        if case .object(let given) = v, given.isEmpty {
            add(path, "empty: a rate limit needs packetsPerSecond, bitsPerSecond or both (leave rateLimit out for no limit)")
        }
        guard errors.count == before else { return nil }
        return RateLimit(packetsPerSecond: pps, bitsPerSecond: bps)
    }

    mutating func securityGroup(_ v: JSONValue, _ path: String) -> SecurityGroup? {
        guard
            let m = members(
                v, path, kind: "a security group", allowed: ["id", "description", "rules"],
                required: ["id"])
        else { return nil }
        let before = errors.count
        let id = self.id(m["id"], path + ".id", "a security group id")
        let desc = description(m["description"], path + ".description")
        let rules =
            list(
                m["rules"], path + ".rules", "security group rules", max: Quota.rulesPerSecurityGroup,
                quota: "rules per security group"
            ) { $0.securityGroupRule($1, $2) } ?? []
        var seen: [String: String] = [:]
        for r in rules {
            let key = "\(r.value.direction) \(r.value.priority)"
            if let other = seen[key] {
                add(
                    r.path + ".priority",
                    "\(r.value.direction) priority \(r.value.priority) is also used by \(other): priorities must be unique within a security group and direction"
                )
            } else {
                seen[key] = r.path
            }
        }
        guard errors.count == before, let id else { return nil }
        return SecurityGroup(id: id, description: desc, rules: rules.map(\.value))
    }

    mutating func securityGroupRule(_ v: JSONValue, _ path: String) -> SecurityGroupRule? {
        guard
            let m = members(
                v, path, kind: "a security group rule",
                allowed: ["direction", "priority", "action", "ethertype", "protocol", "remote", "ports"],
                required: ["direction", "priority", "action", "ethertype"])
        else { return nil }
        let before = errors.count
        let dir = enumValue(m["direction"], path + ".direction", "direction", SecurityGroupDirection.self)
        let priority = int(m["priority"], path + ".priority", Quota.securityGroupRulePriority, "a security group rule priority")
        let action = enumValue(m["action"], path + ".action", "action", AllowDeny.self)
        let e = enumValue(m["ethertype"], path + ".ethertype", "ethertype", Ethertype.self)
        let p = proto(m["protocol"], path + ".protocol", ethertype: e)
        let remote = cidr(m["remote"], path + ".remote", ethertype: e)
        let ports = self.ports(m["ports"], path + ".ports", protocol: m["protocol"] == nil || p != nil ? (p ?? .all) : nil)
        guard errors.count == before, let dir, let priority, let action, let e else { return nil }
        return SecurityGroupRule(
            direction: dir, priority: priority, action: action, ethertype: e, protocol: p ?? .all,
            remote: remote, ports: ports)
    }

    mutating func networkAcl(_ v: JSONValue, _ path: String) -> NetworkAcl? {
        guard
            let m = members(
                v, path, kind: "a network ACL", allowed: ["id", "description", "inbound", "outbound"],
                required: ["id"])
        else { return nil }
        let before = errors.count
        let id = self.id(m["id"], path + ".id", "a network ACL id")
        let desc = description(m["description"], path + ".description")
        var rules: [Direction: [AclRule]] = [:]
        for dir in Direction.allCases {
            let list =
                self.list(
                    m[dir.rawValue], path + ".\(dir)", "\(dir) ACL rules", max: Quota.rulesPerAclDirection,
                    quota: "rules per network ACL direction"
                ) { $0.aclRule($1, $2) } ?? []
            var seen: [Int: String] = [:]
            for r in list {
                if let other = seen[r.value.priority] {
                    add(
                        r.path + ".priority",
                        "priority \(r.value.priority) is also used by \(other): ACL rule priorities must be unique within a direction")
                } else {
                    seen[r.value.priority] = r.path
                }
            }
            rules[dir] = list.map(\.value)
        }
        guard errors.count == before, let id else { return nil }
        return NetworkAcl(id: id, description: desc, inbound: rules[.inbound] ?? [], outbound: rules[.outbound] ?? [])
    }

    mutating func aclRule(_ v: JSONValue, _ path: String) -> AclRule? {
        matchRule(v, path, kind: "a network ACL rule", priorities: Quota.aclRulePriority, "an ACL rule priority")
    }

    // MARK: cross-object checks (SPEC §2, §3)

    mutating func crossChecks(_ d: DecodedDocument) {
        // Id -> index of its first element. Indices, not copies of the elements: a
        // region has 100,000 sources (SPEC §9), and these maps live through the checks.
        func duplicates<T>(_ items: [Located<T>], _ kind: String, _ id: (T) -> String) -> [String: Int] {
            var first: [String: Int] = [:]
            first.reserveCapacity(items.count)
            for (k, item) in items.enumerated() {
                let i = id(item.value)
                if let other = first[i] {
                    add(item.path + ".id", "duplicate \(kind) id \"\(i)\" (also \(items[other].path)): ids must be unique per kind")
                } else {
                    first[i] = k
                }
            }
            return first
        }
        let filters = duplicates(d.filters, "filter") { $0.id }
        let targets = duplicates(d.targets, "target") { $0.id }
        let sources = duplicates(d.sources, "source") { $0.id }
        _ = duplicates(d.sessions, "session") { $0.id }
        let groups = duplicates(d.securityGroups, "security group") { $0.id }
        let acls = duplicates(d.networkAcls, "network ACL") { $0.id }

        let knownIds: [String: Set<String>] = [
            "filters": Set(filters.keys), "targets": Set(targets.keys), "sources": Set(sources.keys),
            "securityGroups": Set(groups.keys), "networkAcls": Set(acls.keys),
        ]
        // The path is built only for an error: a region names 200,000 sources in sessions.
        func dangling(_ id: String, _ kind: String, _ brokenKind: String, _ path: @autoclosure () -> String) {
            let known = knownIds[brokenKind] ?? []
            guard !known.contains(id), !(d.brokenIds[brokenKind]?.contains(id) ?? false) else { return }
            var msg = "\(kind) \"\(id)\" does not exist: it must be the id of one of the document's \(brokenKind)"
            msg += known.isEmpty ? " (it defines none)" : ""
            // Suggestions cost O(ids); a huge document with many dangling ids skips them.
            if known.count <= 2000, let s = EditDistance.suggestion(for: id, among: known.sorted()) {
                msg += "; did you mean \"\(s)\"?"
            }
            add(path(), msg)
        }

        // Interfaces: one source per host device (in a region, per device of its host).
        var interfaces: [String: String] = [:]
        var sourcesPerHost: [String: Int] = [:]
        for s in d.sources {
            let host = sourceHosts[s.path]
            let key = host.map { "\($0)/\(s.value.interface)" } ?? s.value.interface
            if let other = interfaces[key] {
                let on = host.map { " on host \"\($0)\"" } ?? ""
                add(
                    s.path + ".interface",
                    "interface \"\(s.value.interface)\"\(on) is also used by \(other): each source has its own interface")
            } else {
                interfaces[key] = s.path
            }
            // SPEC §9: each host's share is one agent's document, so it must fit one agent's quotas.
            if let host {
                sourcesPerHost[host, default: 0] += 1
                if sourcesPerHost[host] == Quota.sourcesPerAgent + 1 {
                    add(
                        s.path + ".host",
                        "host \"\(host)\" has more than \(Quota.sourcesPerAgent) sources (quota: sources per agent = \(Quota.sourcesPerAgent))"
                    )
                }
            }
            for (i, g) in (s.value.securityGroups ?? []).enumerated() {
                dangling(g, "security group", "securityGroups", "\(s.path).securityGroups[\(i)]")
            }
            if let a = s.value.networkAcl { dangling(a, "network ACL", "networkAcls", s.path + ".networkAcl") }
        }

        // SPEC §3: a source's ENI cannot be a mirror target.
        var sourceAddress: [IPAddress: String] = [:]
        for e in eniAddresses where sourceAddress[e.address] == nil {
            sourceAddress[e.address] = e.path + (e.source.map { " (source \"\($0)\")" } ?? "")
        }
        for (a, p) in collectorAddresses {
            if let s = sourceAddress[a] {
                add(p, "\(a) is the address of \(s): a mirror source's ENI cannot be a mirror target")
            }
        }

        for b in brokenSessionReferences {
            if let f = b.filter { dangling(f, "filter", "filters", b.path + ".filter") }
            if let t = b.target { dangling(t, "target", "targets", b.path + ".target") }
            for src in b.sources { dangling(src.value, "source", "sources", src.path) }
        }

        // Sessions: references, quotas, priorities among sessions sharing a source, vnis.
        var perSource: [String: [Int]] = [:]  // indices into d.sessions
        var perTarget: [String: Int] = [:]
        var perFilter: [String: Int] = [:]
        var vnis: [Int: String] = [:]
        var erspanUnassigned: [Located<Session>] = []
        for (sessionIndex, s) in d.sessions.enumerated() {
            let v = s.value
            dangling(v.filter, "filter", "filters", s.path + ".filter")
            dangling(v.target, "target", "targets", s.path + ".target")
            if filters[v.filter] != nil {
                perFilter[v.filter, default: 0] += 1
                if perFilter[v.filter] == Quota.sessionsPerFilter + 1 {
                    add(
                        s.path + ".filter",
                        "filter \"\(v.filter)\" is used by more than \(Quota.sessionsPerFilter) sessions (quota: sessions per filter = \(Quota.sessionsPerFilter))"
                    )
                }
            }
            if let t = targets[v.target].map({ d.targets[$0].value }) {
                perTarget[v.target, default: 0] += 1
                let limit = t.type == .nic ? Quota.sessionsPerNicTarget : Quota.sessionsPerLoadBalancerTarget
                if perTarget[v.target] == limit + 1 {
                    add(
                        s.path + ".target",
                        "target \"\(v.target)\" is used by more than \(limit) sessions (quota: sessions per target = \(limit) for type \(t.type))"
                    )
                }
            }
            var priorityClashReported = false
            for (i, src) in v.sources.enumerated() {
                func p() -> String { "\(s.path).sources[\(i)]" }
                dangling(src, "source", "sources", p())
                guard sources[src] != nil else { continue }
                let earlier = perSource[src, default: []]
                if !priorityClashReported,
                    let clash = earlier.lazy.map({ d.sessions[$0] }).first(where: { $0.value.priority == v.priority })
                {
                    priorityClashReported = true
                    add(
                        s.path + ".priority",
                        "priority \(v.priority) is also used by session \"\(clash.value.id)\" (\(clash.path)), which shares source \"\(src)\": sessions sharing a source need distinct priorities"
                    )
                }
                perSource[src, default: []].append(sessionIndex)
                if earlier.count == Quota.sessionsPerSource {
                    add(
                        p(),
                        "source \"\(src)\" is already in \(Quota.sessionsPerSource) sessions (quota: sessions per source = \(Quota.sessionsPerSource))"
                    )
                }
            }
            // SPEC §11: an ERSPAN session ID has 10 bits.
            if let t = targets[v.target].map({ d.targets[$0].value }), t.effectiveEncapsulation == .erspan {
                if let vni = v.vni, !Encapsulation.erspanSessionIDs.contains(vni) {
                    add(
                        s.path + ".vni",
                        "vni \(vni) does not fit an ERSPAN session ID: target \"\(t.id)\" has encapsulation erspan, so its sessions need a vni of \(Encapsulation.erspanSessionIDs.lowerBound)–\(Encapsulation.erspanSessionIDs.upperBound)"
                    )
                } else if v.vni == nil {
                    erspanUnassigned.append(s)
                }
            }
            if let vni = v.vni {
                if let other = vnis[vni] {
                    add(s.path + ".vni", "vni \(vni) is also used by \(other): each session needs its own vni")
                } else {
                    vnis[vni] = "session \"\(v.id)\" (\(s.path))"
                }
            }
        }
        // Sessions at erspan targets without a vni get one of 1–1023 (VNIAssigner), unique
        // among all sessions: refused here when too few are left.
        let free = VNIAssigner.erspanRange.count - Set(vnis.keys).filter { VNIAssigner.erspanRange.contains($0) }.count
        for s in erspanUnassigned.dropFirst(max(0, free)) {
            add(
                s.path + ".vni",
                "no ERSPAN session ID (vni \(VNIAssigner.erspanRange.lowerBound)–\(VNIAssigner.erspanRange.upperBound)) is left to assign to session \"\(s.value.id)\": give it an explicit vni of \(Encapsulation.erspanSessionIDs.lowerBound)–\(Encapsulation.erspanSessionIDs.upperBound) not used by another session"
            )
        }
    }
}
