import MirrorCore

/// The controller's copy of the region between two heads: every object by id, the
/// ids of each stored chunk, and the reverse indices that say which hosts an object
/// reaches, so a new head costs the chunks it changed and the hosts they touch, not
/// the whole region (SPEC §9, issue 18 item 9).
struct RegionModel {
    var filters: [String: Filter] = [:]
    var targets: [String: Target] = [:]
    var sources: [String: Source] = [:]
    var hostOf: [String: String] = [:]
    var sessions: [String: Session] = [:]
    var groups: [String: SecurityGroup] = [:]
    var acls: [String: NetworkAcl] = [:]

    var sourcesOnHost: [String: Set<String>] = [:]
    var sessionsOfSource: [String: Set<String>] = [:]
    var sessionsOfFilter: [String: Set<String>] = [:]
    var sessionsOfTarget: [String: Set<String>] = [:]
    var sourcesOfGroup: [String: Set<String>] = [:]
    var sourcesOfAcl: [String: Set<String>] = [:]

    /// Chunk key → the ids of its objects (the kind is in the key).
    var chunkIDs: [String: [String]] = [:]

    init() {}

    /// A region read whole, with the ids of each of its chunks.
    init(region: RegionDocument, chunkIDs: [String: [String]]) {
        self.chunkIDs = chunkIDs
        let d = region.document
        for f in d.filters { filters[f.id] = f }
        for t in d.targets { targets[t.id] = t }
        for s in d.sources { insert(s, host: region.hosts[s.id] ?? "") }
        for s in d.sessions { insert(s) }
        for g in d.securityGroups { groups[g.id] = g }
        for a in d.networkAcls { acls[a.id] = a }
    }

    /// An object of a chunk, as a value to compare.
    enum Object: Equatable {
        case filter(Filter), target(Target), source(Source, String), session(Session), group(SecurityGroup), acl(NetworkAcl)
    }

    static func objects(_ part: RegionPart) -> [(String, Object)] {
        part.filters.map { ($0.id, .filter($0)) } + part.targets.map { ($0.id, .target($0)) }
            + zip(part.sources, part.hosts).map { ($0.0.id, .source($0.0, $0.1)) } + part.sessions.map { ($0.id, .session($0)) }
            + part.securityGroups.map { ($0.id, .group($0)) } + part.networkAcls.map { ($0.id, .acl($0)) }
    }

    func object(_ kind: RegionKind, _ id: String) -> Object? {
        switch kind {
        case .filters: return filters[id].map { .filter($0) }
        case .targets: return targets[id].map { .target($0) }
        case .sources: return sources[id].map { .source($0, hostOf[id] ?? "") }
        case .sessions: return sessions[id].map { .session($0) }
        case .securityGroups: return groups[id].map { .group($0) }
        case .networkAcls: return acls[id].map { .acl($0) }
        }
    }

    mutating func set(_ kind: RegionKind, _ id: String, _ object: Object?) {
        remove(kind, id)
        switch object {
        case nil: break
        case .filter(let f): filters[id] = f
        case .target(let t): targets[id] = t
        case .source(let s, let h): insert(s, host: h)
        case .session(let s): insert(s)
        case .group(let g): groups[id] = g
        case .acl(let a): acls[id] = a
        }
    }

    private mutating func remove(_ kind: RegionKind, _ id: String) {
        switch kind {
        case .filters: filters[id] = nil
        case .targets: targets[id] = nil
        case .securityGroups: groups[id] = nil
        case .networkAcls: acls[id] = nil
        case .sources:
            guard let s = sources.removeValue(forKey: id) else { return }
            if let h = hostOf.removeValue(forKey: id) { sourcesOnHost[h, default: []].remove(id) }
            for g in s.securityGroups ?? [] { sourcesOfGroup[g]?.remove(id) }
            if let a = s.networkAcl { sourcesOfAcl[a]?.remove(id) }
        case .sessions:
            guard let s = sessions.removeValue(forKey: id) else { return }
            for src in s.sources { sessionsOfSource[src]?.remove(id) }
            sessionsOfFilter[s.filter]?.remove(id)
            sessionsOfTarget[s.target]?.remove(id)
        }
    }

    private mutating func insert(_ s: Source, host: String) {
        sources[s.id] = s
        hostOf[s.id] = host
        sourcesOnHost[host, default: []].insert(s.id)
        for g in s.securityGroups ?? [] { sourcesOfGroup[g, default: []].insert(s.id) }
        if let a = s.networkAcl { sourcesOfAcl[a, default: []].insert(s.id) }
    }

    private mutating func insert(_ s: Session) {
        sessions[s.id] = s
        for src in s.sources { sessionsOfSource[src, default: []].insert(s.id) }
        sessionsOfFilter[s.filter, default: []].insert(s.id)
        sessionsOfTarget[s.target, default: []].insert(s.id)
    }

    /// The hosts whose document the object `id` of `kind` is part of, in this model.
    func hosts(reachedBy kind: RegionKind, _ id: String) -> Set<String> {
        var out = Set<String>()
        func session(_ sid: String) {
            for src in sessions[sid]?.sources ?? [] { if let h = hostOf[src] { out.insert(h) } }
        }
        switch kind {
        case .sources: if let h = hostOf[id] { out.insert(h) }
        case .sessions: session(id)
        case .filters: for s in sessionsOfFilter[id] ?? [] { session(s) }
        case .targets: for s in sessionsOfTarget[id] ?? [] { session(s) }
        case .securityGroups: for s in sourcesOfGroup[id] ?? [] { if let h = hostOf[s] { out.insert(h) } }
        case .networkAcls: for s in sourcesOfAcl[id] ?? [] { if let h = hostOf[s] { out.insert(h) } }
        }
        return out
    }

    /// The smallest region whose rendering of `hosts` is the whole region's: their
    /// sources, the sessions that name them, and the filters, targets, groups and ACLs
    /// those name. (`HostEncoder` restricts each session to a host's own sources, so a
    /// session's sources on other hosts, absent here, are skipped as they would be.)
    func subRegion(_ hosts: Set<String>) -> RegionDocument {
        var d = Document()
        var hostMap: [String: String] = [:]
        var sessionIDs = Set<String>()
        var groupIDs = Set<String>()
        var aclIDs = Set<String>()
        for h in hosts {
            for id in sourcesOnHost[h] ?? [] {
                guard let s = sources[id] else { continue }
                d.sources.append(s)
                hostMap[id] = h
                sessionIDs.formUnion(sessionsOfSource[id] ?? [])
                groupIDs.formUnion(s.securityGroups ?? [])
                if let a = s.networkAcl { aclIDs.insert(a) }
            }
        }
        var filterIDs = Set<String>()
        var targetIDs = Set<String>()
        for id in sessionIDs {
            guard let s = sessions[id] else { continue }
            d.sessions.append(s)
            filterIDs.insert(s.filter)
            targetIDs.insert(s.target)
        }
        d.filters = filterIDs.compactMap { filters[$0] }
        d.targets = targetIDs.compactMap { targets[$0] }
        d.securityGroups = groupIDs.compactMap { groups[$0] }
        d.networkAcls = aclIDs.compactMap { acls[$0] }
        return RegionDocument(document: d, hosts: hostMap)
    }

    /// The whole region (array order does not matter to `HostEncoder`: it sorts by id).
    func region() -> RegionDocument {
        RegionDocument(
            document: Document(
                filters: Array(filters.values), targets: Array(targets.values), sources: Array(sources.values),
                sessions: Array(sessions.values), securityGroups: Array(groups.values), networkAcls: Array(acls.values)),
            hosts: hostOf)
    }
}
