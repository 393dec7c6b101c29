/// A region document in pieces (SPEC §9): each top-level array cut into chunks of
/// whole objects, as the fleet stores it in etcd. A chunk decodes on its own (every
/// per-object check, with the object's path in the whole document), so chunks can be
/// decoded in parallel, or only the ones that changed; `RegionParser.assemble` then
/// makes the checks across objects, and the result is exactly `RegionParser.parse`
/// of the whole document.

/// The region document's top-level arrays, in document order.
public enum RegionKind: String, CaseIterable, Sendable, Hashable {
    case filters, targets, sources, sessions, securityGroups, networkAcls
}

/// One chunk: a JSON array of objects of one kind, and the index of its first object
/// in that kind's array of the whole document (for paths and quotas).
public struct RegionChunk: Sendable {
    public var kind: RegionKind
    public var start: Int
    public var bytes: [UInt8]

    public init(kind: RegionKind, start: Int, bytes: [UInt8]) {
        self.kind = kind; self.start = start; self.bytes = bytes
    }
}

/// The objects of one chunk, in its order; only the array of its kind is filled.
public struct RegionPart: Sendable, Hashable {
    public var kind: RegionKind
    public var filters: [Filter] = []
    public var targets: [Target] = []
    public var sources: [Source] = []
    /// The host of each of `sources`, index for index.
    public var hosts: [String] = []
    public var sessions: [Session] = []
    public var securityGroups: [SecurityGroup] = []
    public var networkAcls: [NetworkAcl] = []

    public init(kind: RegionKind) { self.kind = kind }

    /// The ids of the chunk's objects, in order.
    public var ids: [String] {
        switch kind {
        case .filters: return filters.map(\.id)
        case .targets: return targets.map(\.id)
        case .sources: return sources.map(\.id)
        case .sessions: return sessions.map(\.id)
        case .securityGroups: return securityGroups.map(\.id)
        case .networkAcls: return networkAcls.map(\.id)
        }
    }
}

/// One chunk decoded, with what the checks across objects need of it.
public struct DecodedRegionChunk: @unchecked Sendable {
    let kind: RegionKind
    var decoder: Decoder
    var document: DecodedDocument

    /// The errors of the chunk's own objects (empty = each object is valid on its own).
    public var errors: [ValidationError] { decoder.errors }

    /// The chunk's objects: what the fleet controller trusts for a chunk of a region
    /// that `agentctl` validated as a whole.
    public var part: RegionPart {
        var p = RegionPart(kind: kind)
        p.filters = document.filters.map(\.value)
        p.targets = document.targets.map(\.value)
        p.sources = document.sources.map(\.value)
        p.hosts = document.sources.map { decoder.sourceHosts[$0.path] ?? "" }
        p.sessions = document.sessions.map(\.value)
        p.securityGroups = document.securityGroups.map(\.value)
        p.networkAcls = document.networkAcls.map(\.value)
        return p
    }
}

extension RegionParser {
    /// Decodes one chunk with every per-object check of the region dialect (paths as in
    /// the whole document); the checks across objects are `assemble`'s.
    public static func decode(_ chunk: RegionChunk) -> DecodedRegionChunk {
        var d = Decoder(dialect: .region)
        var doc = DecodedDocument()
        let kind = chunk.kind.rawValue
        switch JSONParser.parse(chunk.bytes) {
        case .failure(let e):
            d.add("\(kind)[\(chunk.start)]", "invalid JSON at \(e)")
        case .success(let v):
            guard case .array(let items) = v else {
                d.add(kind, "found \(v.kindName): \(kind) must be an array")
                break
            }
            for item in items { if case .string(let id)? = item["id"] { doc.brokenIds[kind, default: []].insert(id) } }
            let q = d.dialect
            let limit: DocumentDialect.Limit?
            let what: String
            switch chunk.kind {
            case .filters: (limit, what) = (q.filters, "filters")
            case .targets: (limit, what) = (q.targets, "targets")
            case .sources: (limit, what) = (q.sources, "sources")
            case .sessions: (limit, what) = (q.sessions, "sessions")
            case .securityGroups: (limit, what) = (nil, "security groups")
            case .networkAcls: (limit, what) = (nil, "network ACLs")
            }
            for (i, item) in items.enumerated() {
                let index = chunk.start + i
                let p = "\(kind)[\(index)]"
                if let limit, index == limit.max {
                    d.add(p, "too many \(what): at most \(limit.max) allowed (quota: \(limit.quota))")
                }
                switch chunk.kind {
                case .filters: if let o = d.filter(item, p) { doc.filters.append(Located(value: o, path: p)) }
                case .targets: if let o = d.target(item, p) { doc.targets.append(Located(value: o, path: p)) }
                case .sources: if let o = d.source(item, p) { doc.sources.append(Located(value: o, path: p)) }
                case .sessions: if let o = d.session(item, p) { doc.sessions.append(Located(value: o, path: p)) }
                case .securityGroups: if let o = d.securityGroup(item, p) { doc.securityGroups.append(Located(value: o, path: p)) }
                case .networkAcls: if let o = d.networkAcl(item, p) { doc.networkAcls.append(Located(value: o, path: p)) }
                }
            }
            // brokenIds keeps only ids whose element failed to decode (as `document`).
            doc.brokenIds[kind]?.subtract(
                doc.filters.map(\.value.id) + doc.targets.map(\.value.id) + doc.sources.map(\.value.id)
                    + doc.sessions.map(\.value.id) + doc.securityGroups.map(\.value.id) + doc.networkAcls.map(\.value.id))
        }
        return DecodedRegionChunk(kind: chunk.kind, decoder: d, document: doc)
    }

    /// The whole region from its chunks decoded by `decode` (in document order: every
    /// chunk of `filters`, then of `targets`, …): the checks across objects, then each
    /// chunk's objects. Valid exactly when `parse` of the whole document is, with the
    /// same errors at the same paths.
    public static func assemble(_ chunks: [DecodedRegionChunk]) -> Result<[RegionPart], ValidationErrors> {
        var d = Decoder(dialect: .region)
        var doc = DecodedDocument()
        for c in chunks {
            d.errors += c.decoder.errors
            d.sourceHosts.merge(c.decoder.sourceHosts) { a, _ in a }
            d.collectorAddresses += c.decoder.collectorAddresses
            d.eniAddresses += c.decoder.eniAddresses
            d.brokenSessionReferences += c.decoder.brokenSessionReferences
            doc.filters += c.document.filters
            doc.targets += c.document.targets
            doc.sources += c.document.sources
            doc.sessions += c.document.sessions
            doc.securityGroups += c.document.securityGroups
            doc.networkAcls += c.document.networkAcls
            doc.brokenIds.merge(c.document.brokenIds) { $0.union($1) }
        }
        d.crossChecks(doc)
        guard d.errors.isEmpty else { return .failure(ValidationErrors(d.errors)) }
        return .success(chunks.map(\.part))
    }
}

extension RegionDocument {
    /// The region of `parts`, in their order.
    public init(parts: [RegionPart]) {
        var d = Document()
        var hosts: [String: String] = [:]
        for p in parts {
            d.filters += p.filters
            d.targets += p.targets
            d.sources += p.sources
            d.sessions += p.sessions
            d.securityGroups += p.securityGroups
            d.networkAcls += p.networkAcls
            for (s, h) in zip(p.sources, p.hosts) { hosts[s.id] = h }
        }
        self.init(document: d, hosts: hosts)
    }
}

extension RegionEncoding {
    /// Each object of `kind` in `region`, in order: its id and its compact canonical
    /// JSON (a source with its `host`), as a chunk holds it.
    public static func objects(_ region: RegionDocument, _ kind: RegionKind) -> [(id: String, json: [UInt8])] {
        let d = region.document
        func one(_ id: String, _ v: JSONValue) -> (id: String, json: [UInt8]) { (id, Array(v.serialized(pretty: false).utf8)) }
        switch kind {
        case .filters: return d.filters.map { one($0.id, DocumentEncoding.encode($0)) }
        case .targets: return d.targets.map { one($0.id, DocumentEncoding.encode($0)) }
        case .sources: return d.sources.map { one($0.id, encode($0, host: region.hosts[$0.id])) }
        case .sessions: return d.sessions.map { one($0.id, DocumentEncoding.encode($0)) }
        case .securityGroups: return d.securityGroups.map { one($0.id, DocumentEncoding.encode($0)) }
        case .networkAcls: return d.networkAcls.map { one($0.id, DocumentEncoding.encode($0)) }
        }
    }
}
