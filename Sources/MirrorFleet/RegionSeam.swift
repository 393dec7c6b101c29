import MirrorAPI
import MirrorCore

// TEMPORARY (until the `fleetcore` branch's MirrorCore region parser and renderer are
// merged): the narrowest stand-in for them, so that the store, the controller and the
// agent can be written and tested. Replaced, not kept beside theirs.

/// A validated region document and its rendering per host (SPEC §9).
public struct FleetRegion: Sendable {
    /// The document as the operator applied it.
    public let json: JSONValue
    /// Every host a source names, sorted.
    public let hosts: [String]
    private let sourcesByHost: [String: [JSONValue]]

    /// Host `host`'s §7 document: the sessions with a source on the host (with only
    /// that host's sources), and the filters, targets, groups and ACLs they refer to.
    public func render(host: String) -> JSONValue {
        let local = sourcesByHost[host] ?? []
        let localIDs = Set(local.compactMap { $0["id"]?.stringValue })
        var sessions: [JSONValue] = []
        var filters = Set<String>(), targets = Set<String>(), groups = Set<String>(), acls = Set<String>()
        for s in Self.items(json, "sessions") {
            let ids = (s["sources"]?.arrayValue ?? []).compactMap(\.stringValue)
            let mine = ids.filter { localIDs.contains($0) }
            guard !mine.isEmpty else { continue }
            sessions.append(Self.replacing(s, "sources", .array(mine.map { .string($0) })))
            if let f = s["filter"]?.stringValue { filters.insert(f) }
            if let t = s["target"]?.stringValue { targets.insert(t) }
        }
        for src in local {
            for g in src["securityGroups"]?.arrayValue ?? [] { if let g = g.stringValue { groups.insert(g) } }
            if let a = src["networkAcl"]?.stringValue { acls.insert(a) }
        }
        func pick(_ kind: String, _ ids: Set<String>) -> JSONValue {
            .array(Self.items(json, kind).filter { ids.contains($0["id"]?.stringValue ?? "") })
        }
        return .object([
            ("filters", pick("filters", filters)), ("targets", pick("targets", targets)),
            ("sources", .array(local.map { Self.removing($0, "host") })),
            ("sessions", .array(sessions)), ("securityGroups", pick("securityGroups", groups)),
            ("networkAcls", pick("networkAcls", acls)),
        ])
    }

    /// Parses and validates a region document: every error with its JSON path.
    public static func parse(_ json: JSONValue) -> Result<FleetRegion, ValidationErrors> {
        var errors: [ValidationError] = []
        var byHost: [String: [JSONValue]] = [:]
        for (i, s) in items(json, "sources").enumerated() {
            guard let host = s["host"]?.stringValue else {
                errors.append(ValidationError(path: "sources[\(i)].host", message: "missing required field \"host\" of a region source"))
                continue
            }
            guard FleetKeys.isValidHostName(host) else {
                errors.append(ValidationError(path: "sources[\(i)].host", message: "'\(host)' is not a host name"))
                continue
            }
            byHost[host, default: []].append(s)
        }
        let stripped: JSONValue = replacing(json, "sources", .array(items(json, "sources").map { removing($0, "host") }))
        if case .failure(let e) = DocumentParser.parse(json: stripped) { errors += e.errors }
        guard errors.isEmpty else { return .failure(ValidationErrors(errors)) }
        return .success(FleetRegion(json: json, hosts: byHost.keys.sorted(), sourcesByHost: byHost))
    }

    static func items(_ doc: JSONValue, _ kind: String) -> [JSONValue] { doc[kind]?.arrayValue ?? [] }
    static func replacing(_ v: JSONValue, _ key: String, _ value: JSONValue) -> JSONValue {
        guard case .object(let m) = v else { return v }
        var out = m.filter { $0.key != key }
        out.append((key: key, value: value))
        return .object(out)
    }
    static func removing(_ v: JSONValue, _ key: String) -> JSONValue {
        guard case .object(let m) = v else { return v }
        return .object(m.filter { $0.key != key })
    }
}
