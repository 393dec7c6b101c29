/// Turns a region document into one agent document per host (SPEC §9), the
/// controller's whole job apart from storage.
///
/// A host's document holds:
/// - every source whose `host` is that host (also those in no session: the agent
///   still enforces their security groups and ACL when `enforce` is set), without
///   `host`;
/// - exactly the sessions with at least one source on that host, each restricted to
///   that host's sources (in the session's own order);
/// - exactly the filters and targets those sessions name, and the security groups
///   and network ACLs those sources name.
/// Hosts without sources get no entry. Every top-level array is sorted by id, so the
/// output does not depend on the region document's array order and a host whose
/// share did not change encodes to the same bytes.
///
/// A valid region renders valid host documents: the region parser already checked
/// every reference, interfaces per host, and each host's share against one agent's
/// quotas. References that dangle (a region built in code) are skipped, never a crash.
///
/// Cost: one pass to index ids, one pass over the sessions' sources, then per host
/// only its own objects; no scan of the whole region per host.
public enum HostRenderer {
    public static func render(_ region: RegionDocument) -> [String: Document] {
        var out: [String: Document] = [:]
        forEachHost(region) { host, document in out[host] = document }
        return out
    }

    /// The same documents one host at a time, in host-name order, so a caller that
    /// encodes and writes each can drop it before the next (memory stays at the
    /// region's size, not the sum of the hosts' texts: a filter used on 10 hosts is
    /// shared in memory but written 10 times).
    public static func forEachHost(_ region: RegionDocument, _ body: (String, Document) throws -> Void) rethrows {
        let d = region.document
        let filterIndex = index(d.filters, \.id)
        let targetIndex = index(d.targets, \.id)
        let groupIndex = index(d.securityGroups, \.id)
        let aclIndex = index(d.networkAcls, \.id)

        var sourcesByHost: [String: [Int]] = [:]
        for (i, s) in d.sources.enumerated() {
            guard let h = region.hosts[s.id] else { continue }
            sourcesByHost[h, default: []].append(i)
        }

        // Each session once per host it touches, restricted to that host's sources.
        var sessionsByHost: [String: [Session]] = [:]
        var parts: [(host: String, sources: [String])] = []
        for session in d.sessions {
            parts.removeAll(keepingCapacity: true)
            for src in session.sources {
                guard let h = region.hosts[src] else { continue }
                // At most 10 sources per session: a linear look-up is the cheap one.
                if let k = parts.firstIndex(where: { $0.host == h }) {
                    parts[k].sources.append(src)
                } else {
                    parts.append((h, [src]))
                }
            }
            for p in parts {
                var s = session
                s.sources = p.sources
                sessionsByHost[p.host, default: []].append(s)
            }
        }

        for host in sourcesByHost.keys.sorted() {
            let sourceIndices = sourcesByHost[host] ?? []
            let sessions = sessionsByHost[host] ?? []
            var filters = Set<Int>(), targets = Set<Int>(), groups = Set<Int>(), acls = Set<Int>()
            for s in sessions {
                if let i = filterIndex[s.filter] { filters.insert(i) }
                if let i = targetIndex[s.target] { targets.insert(i) }
            }
            for i in sourceIndices {
                for g in d.sources[i].securityGroups ?? [] { if let k = groupIndex[g] { groups.insert(k) } }
                if let a = d.sources[i].networkAcl, let k = aclIndex[a] { acls.insert(k) }
            }
            let document = Document(
                filters: byID(filters.map { d.filters[$0] }, \.id),
                targets: byID(targets.map { d.targets[$0] }, \.id),
                sources: byID(sourceIndices.map { d.sources[$0] }, \.id),
                sessions: byID(sessions, \.id),
                securityGroups: byID(groups.map { d.securityGroups[$0] }, \.id),
                networkAcls: byID(acls.map { d.networkAcls[$0] }, \.id))
            try body(host, document)
        }
    }

    /// The compact canonical JSON of a host's document (`DocumentEncoding`), which
    /// `DocumentParser` and so the agent accept as it is. Equal documents give equal
    /// bytes.
    public static func encode(_ document: Document) -> [UInt8] {
        Array(DocumentEncoding.text(document, pretty: false).utf8)
    }

    /// Every host's document encoded (convenient for tests and small regions; a
    /// controller at the region quotas should use `forEachHost` and encode one at a time).
    public static func renderEncoded(_ region: RegionDocument) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        forEachHost(region) { host, document in out[host] = encode(document) }
        return out
    }

    static func index<T>(_ items: [T], _ id: KeyPath<T, String>) -> [String: Int] {
        var out: [String: Int] = [:]
        out.reserveCapacity(items.count)
        // The first of duplicate ids wins, as nothing valid has duplicates.
        for (i, item) in items.enumerated() where out[item[keyPath: id]] == nil { out[item[keyPath: id]] = i }
        return out
    }

    /// Ids are ASCII (SPEC §2), so comparing UTF-8 bytes is a stable order on every platform.
    static func byID<T>(_ items: [T], _ id: KeyPath<T, String>) -> [T] {
        items.sorted { $0[keyPath: id].utf8.lexicographicallyPrecedes($1[keyPath: id].utf8) }
    }
}
