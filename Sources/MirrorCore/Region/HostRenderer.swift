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
/// Cost: the region is indexed once (each kind sorted by id, every host numbered);
/// then each host touches only its own objects, as integer ranks, with no scan of
/// the region per host and no string comparison per host.
public enum HostRenderer {
    public static func render(_ region: RegionDocument) -> [String: Document] {
        var out: [String: Document] = [:]
        forEachHost(region) { host, document in out[host] = document }
        return out
    }

    /// The same documents one host at a time, in host-name order, so a caller can
    /// write each and drop it before the next.
    public static func forEachHost(_ region: RegionDocument, _ body: (String, Document) throws -> Void) rethrows {
        let x = RegionIndex(region)
        for h in x.hosts.indices {
            let share = x.share(of: h)
            let document = Document(
                filters: share.filters.map { x.filters[$0] }, targets: share.targets.map { x.targets[$0] },
                sources: x.sourcesByHost[h].map { x.sources[$0] }, sessions: x.sessionsByHost[h],
                securityGroups: share.groups.map { x.groups[$0] }, networkAcls: share.acls.map { x.acls[$0] })
            try body(x.hosts[h], document)
        }
    }

    /// Every host's document already encoded (exactly `encode(document)` of
    /// `forEachHost`'s document), one at a time in host-name order. Each filter,
    /// target, source, group and ACL is encoded once for the whole region and its
    /// bytes reused on every host that has it, so a filter shared by ten hosts costs
    /// one encoding and ten copies. This is the controller's path at the quotas.
    public static func forEachHostEncoded(_ region: RegionDocument, _ body: (String, [UInt8]) throws -> Void) rethrows {
        let encoder = HostEncoder(region)
        for h in encoder.hosts.indices { try body(encoder.hosts[h], encoder.encode(host: h)) }
    }

    /// The compact canonical JSON of a host's document (`DocumentEncoding`), which
    /// `DocumentParser` and so the agent accept as it is. Equal documents give equal
    /// bytes.
    public static func encode(_ document: Document) -> [UInt8] {
        Array(DocumentEncoding.text(document, pretty: false).utf8)
    }

    /// Every host's document encoded (convenient for tests and small regions; a
    /// controller at the region quotas should take them one at a time from
    /// `forEachHostEncoded`, as their sum is several times the region's size).
    public static func renderEncoded(_ region: RegionDocument) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        forEachHostEncoded(region) { host, bytes in out[host] = bytes }
        return out
    }

    static func fragment(_ v: JSONValue) -> [UInt8] { Array(v.serialized(pretty: false).utf8) }
}

/// `forEachHostEncoded` one host at a time at the caller's pace (a controller writes
/// each host's document to etcd before it encodes the next, so only one transaction's
/// worth of documents is ever held). The region is indexed and each filter, target,
/// source, group and ACL encoded once, in `init`; `encode(host:)` then assembles a
/// host's document from those bytes: `HostRenderer.encode` of its `forEachHost`
/// document, exactly.
public struct HostEncoder {
    /// Every host with a source, in name order; `encode(host:)` takes an index.
    public var hosts: [String] { x.hosts }
    private let x: RegionIndex
    private let filters, targets, sources, groups, acls: [[UInt8]]

    public init(_ region: RegionDocument) {
        x = RegionIndex(region)
        filters = x.filters.map { HostRenderer.fragment(DocumentEncoding.encode($0)) }
        targets = x.targets.map { HostRenderer.fragment(DocumentEncoding.encode($0)) }
        sources = x.sources.map { HostRenderer.fragment(DocumentEncoding.encode($0)) }
        groups = x.groups.map { HostRenderer.fragment(DocumentEncoding.encode($0)) }
        acls = x.acls.map { HostRenderer.fragment(DocumentEncoding.encode($0)) }
    }

    /// The document of `hosts[h]`.
    public func encode(host h: Int) -> [UInt8] {
        let share = x.share(of: h)
        var out: [UInt8] = []
        func array(_ key: String, _ first: Bool, _ items: [Int], _ bytes: [[UInt8]]) {
            out.append(contentsOf: (first ? "{\"" : ",\"").utf8)
            out.append(contentsOf: key.utf8)
            out.append(contentsOf: "\":[".utf8)
            for (k, i) in items.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: bytes[i])
            }
            out.append(UInt8(ascii: "]"))
        }
        array("filters", true, share.filters, filters)
        array("targets", false, share.targets, targets)
        array("sources", false, x.sourcesByHost[h], sources)
        out.append(contentsOf: ",\"sessions\":[".utf8)
        for (k, s) in x.sessionsByHost[h].enumerated() {
            if k > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: HostRenderer.fragment(DocumentEncoding.encode(s)))
        }
        out.append(UInt8(ascii: "]"))
        array("securityGroups", false, share.groups, groups)
        array("networkAcls", false, share.acls, acls)
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// The region indexed once for rendering: each kind sorted by id (ranks are then
/// positions), hosts numbered in name order, every host's sources and restricted
/// sessions listed in id order.
struct RegionIndex {
    let filters: [Filter]
    let targets: [Target]
    let sources: [Source]
    let groups: [SecurityGroup]
    let acls: [NetworkAcl]
    let hosts: [String]
    /// Per host number: ranks into `sources`, ascending.
    let sourcesByHost: [[Int]]
    /// Per host number: its sessions restricted to its sources, by id.
    let sessionsByHost: [[Session]]
    private let filterRank: [String: Int]
    private let targetRank: [String: Int]
    private let groupRank: [String: Int]
    private let aclRank: [String: Int]

    init(_ region: RegionDocument) {
        let d = region.document
        filters = Self.byID(d.filters) { $0.id }
        targets = Self.byID(d.targets) { $0.id }
        sources = Self.byID(d.sources) { $0.id }
        groups = Self.byID(d.securityGroups) { $0.id }
        acls = Self.byID(d.networkAcls) { $0.id }
        filterRank = Self.ranks(filters) { $0.id }
        targetRank = Self.ranks(targets) { $0.id }
        groupRank = Self.ranks(groups) { $0.id }
        aclRank = Self.ranks(acls) { $0.id }

        hosts = Array(Set(sources.compactMap { region.hosts[$0.id] })).sorted()
        var hostNumber: [String: Int] = [:]
        hostNumber.reserveCapacity(hosts.count)
        for (i, h) in hosts.enumerated() { hostNumber[h] = i }
        // Source id -> host number, once.
        var sourceHost: [String: Int] = [:]
        sourceHost.reserveCapacity(sources.count)
        var byHost = [[Int]](repeating: [], count: hosts.count)
        for (rank, s) in sources.enumerated() {
            guard let h = region.hosts[s.id].flatMap({ hostNumber[$0] }), sourceHost[s.id] == nil else { continue }
            sourceHost[s.id] = h
            byHost[h].append(rank)
        }
        sourcesByHost = byHost

        // Each session once per host it touches, restricted to that host's sources;
        // sessions taken in id order, so every host's list is in id order too.
        var sessions = [[Session]](repeating: [], count: hosts.count)
        var parts: [(host: Int, sources: [String])] = []
        for session in Self.byID(d.sessions, { $0.id }) {
            parts.removeAll(keepingCapacity: true)
            for src in session.sources {
                guard let h = sourceHost[src] else { continue }
                // At most 10 sources per session: a linear look-up is the cheap one.
                if let k = parts.firstIndex(where: { $0.host == h }) {
                    parts[k].sources.append(src)
                } else {
                    parts.append((h, [src]))
                }
            }
            if parts.count == 1 && parts[0].sources.count == session.sources.count {
                sessions[parts[0].host].append(session)  // all on one host: shared, not copied
                continue
            }
            for p in parts {
                var s = session
                s.sources = p.sources
                sessions[p.host].append(s)
            }
        }
        sessionsByHost = sessions
    }

    /// The ranks of the filters, targets, groups and ACLs one host's share names,
    /// each ascending (= by id).
    func share(of h: Int) -> (filters: [Int], targets: [Int], groups: [Int], acls: [Int]) {
        var f: [Int] = [], t: [Int] = [], g: [Int] = [], a: [Int] = []
        for s in sessionsByHost[h] {
            if let i = filterRank[s.filter] { f.append(i) }
            if let i = targetRank[s.target] { t.append(i) }
        }
        for r in sourcesByHost[h] {
            for id in sources[r].securityGroups ?? [] { if let i = groupRank[id] { g.append(i) } }
            if let id = sources[r].networkAcl, let i = aclRank[id] { a.append(i) }
        }
        return (Self.unique(f), Self.unique(t), Self.unique(g), Self.unique(a))
    }

    static func unique(_ ranks: [Int]) -> [Int] {
        var out = ranks.sorted()
        var w = 0
        for i in out.indices where i == 0 || out[i] != out[i - 1] {
            out[w] = out[i]
            w += 1
        }
        out.removeLast(out.count - w)
        return out
    }

    /// Ids and host names are ASCII (SPEC §2, `HostName`), for which String's order
    /// is the order of their bytes: the same on every platform. The first of
    /// duplicate ids (nothing valid has them) keeps its place.
    static func byID<T>(_ items: [T], _ id: (T) -> String) -> [T] {
        let keyed = items.enumerated().map { (id: id($0.element), offset: $0.offset) }
        return keyed.sorted { $0.id < $1.id || ($0.id == $1.id && $0.offset < $1.offset) }.map { items[$0.offset] }
    }

    static func ranks<T>(_ sorted: [T], _ id: (T) -> String) -> [String: Int] {
        var out: [String: Int] = [:]
        out.reserveCapacity(sorted.count)
        for (i, item) in sorted.enumerated() where out[id(item)] == nil { out[id(item)] = i }
        return out
    }
}
