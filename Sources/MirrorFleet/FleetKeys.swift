import MirrorCore

/// The fleet's key layout in etcd (SPEC §9). One prefix, versioned, so that a later
/// layout can live beside this one during an upgrade:
///
///     /mirror/v1/region                  the region document's head: per kind, the keys
///                                        of its chunks in order (RegionStore)
///     /mirror/v1/region/objects/K/HASH   a chunk: a JSON array of whole objects of kind K
///                                        (filters, targets, sources, sessions,
///                                        securityGroups, networkAcls), named by the
///                                        SHA-256 of its bytes, so one changed object
///                                        changes one chunk and the rest are reused
///     /mirror/v1/hosts/H/desired         host H's rendered document (the controller's
///                                        derived state: {"region": REV, "document": …})
///     /mirror/v1/hosts/H/status          host H's agent status, under the agent's lease
///     /mirror/v1/controller/leader       the elected controller's id, under its lease
///
/// etcd filters watches by key range only, so the host is part of the key: an agent
/// watches `/mirror/v1/hosts/H/` and nothing else.
public enum FleetKeys {
    public static let root = "/mirror/v1/"
    public static let region = root + "region"
    public static let regionObjects = root + "region/objects/"
    public static let hosts = root + "hosts/"
    public static let leader = root + "controller/leader"

    public static func regionObject(kind: RegionKind, hash: String) -> String {
        regionObjects + kind.rawValue + "/" + hash
    }
    /// The kind of a chunk key, or nil.
    public static func parseRegionObjectKey(_ key: String) -> RegionKind? {
        guard key.hasPrefix(regionObjects) else { return nil }
        return key.dropFirst(regionObjects.count).split(separator: "/").first.flatMap { RegionKind(rawValue: String($0)) }
    }
    public static func hostPrefix(_ host: String) -> String { hosts + host + "/" }
    public static func desired(_ host: String) -> String { hostPrefix(host) + "desired" }
    public static func status(_ host: String) -> String { hostPrefix(host) + "status" }

    /// The host and the leaf ("desired", "status") of a key under `hosts`, or nil.
    public static func parseHostKey(_ key: String) -> (host: String, leaf: String)? {
        guard key.hasPrefix(hosts) else { return nil }
        let rest = key.dropFirst(hosts.count)
        guard let slash = rest.lastIndex(of: "/") else { return nil }
        let host = String(rest[..<slash])
        let leaf = String(rest[rest.index(after: slash)...])
        guard !host.isEmpty, !host.contains("/") else { return nil }
        return (host, leaf)
    }

    /// Host names are etcd key parts: MirrorCore's rule for a source's `host` (an RFC
    /// 1123 name, as a Kubernetes node is named) keeps them free of '/'.
    public static func isValidHostName(_ name: String) -> Bool { HostName.isValid(name) }
}
