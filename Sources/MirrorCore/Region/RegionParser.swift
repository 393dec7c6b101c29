/// Builds a `RegionDocument` from JSON (SPEC §9) with `DocumentParser`'s decoder in
/// its region dialect: the same checks and JSON paths as the agent's document, plus a
/// required `host` on every source (`HostName`), interfaces unique per host rather
/// than per document, the region quotas (20,000 sessions, 100,000 sources, 20,000
/// filters, 20,000 targets), and each host's share within one agent's quotas.
/// Every error is collected with its path, as `agentctl apply` reports them.
public enum RegionParser {
    public static func parse(_ bytes: [UInt8]) -> Result<RegionDocument, ValidationErrors> {
        var tree: JSONValue
        switch JSONParser.parse(bytes) {
        case .failure(let e):
            return .failure(ValidationErrors([ValidationError(path: "document", message: "invalid JSON at \(e)")]))
        case .success(let v):
            tree = v
        }
        return decode(&tree)
    }

    public static func parse(_ text: String) -> Result<RegionDocument, ValidationErrors> { parse(Array(text.utf8)) }

    public static func parse(json: JSONValue) -> Result<RegionDocument, ValidationErrors> {
        var tree = json
        return decode(&tree)
    }

    /// Decodes `tree` and lets go of it before the cross-object checks: at the region
    /// quotas the tree is about 80 MB that the checks do not need (a lower peak RSS
    /// for the controller; the caller's own copy, if any, stays).
    static func decode(_ tree: inout JSONValue) -> Result<RegionDocument, ValidationErrors> {
        var d = Decoder(dialect: .region)
        let doc = d.document(tree)
        tree = .null
        d.crossChecks(doc)
        guard d.errors.isEmpty else { return .failure(ValidationErrors(d.errors)) }
        var hosts: [String: String] = [:]
        hosts.reserveCapacity(doc.sources.count)
        for s in doc.sources { hosts[s.value.id] = d.sourceHosts[s.path] }
        return .success(RegionDocument(document: doc.model, hosts: hosts))
    }

    /// Every problem of a region built in code (empty = valid). A source without a
    /// host is reported at `sources[i].host`.
    public static func validate(_ region: RegionDocument) -> [ValidationError] {
        switch parse(json: RegionEncoding.encode(region)) {
        case .success: return []
        case .failure(let e): return e.errors
        }
    }
}

/// The canonical JSON of a region document: `DocumentEncoding`'s form with `host`
/// after each source's `id`. Parsing it back with `RegionParser` gives an equal region.
public enum RegionEncoding {
    public static func encode(_ region: RegionDocument) -> JSONValue {
        let d = region.document
        return .object([
            ("filters", .array(d.filters.map(DocumentEncoding.encode))),
            ("targets", .array(d.targets.map(DocumentEncoding.encode))),
            ("sources", .array(d.sources.map { encode($0, host: region.hosts[$0.id]) })),
            ("sessions", .array(d.sessions.map(DocumentEncoding.encode))),
            ("securityGroups", .array(d.securityGroups.map(DocumentEncoding.encode))),
            ("networkAcls", .array(d.networkAcls.map(DocumentEncoding.encode))),
        ])
    }

    public static func text(_ region: RegionDocument, pretty: Bool = true) -> String {
        encode(region).serialized(pretty: pretty)
    }

    /// A source with its host (omitted when nil, which validation then reports).
    public static func encode(_ source: Source, host: String?) -> JSONValue {
        guard case .object(var members) = DocumentEncoding.encode(source) else { return DocumentEncoding.encode(source) }
        if let host { members.insert((key: "host", value: .string(host)), at: 1) }
        return .object(members)
    }
}
