/// The region document of SPEC §9: the section 7 document plus the `host` each
/// source is on today.
///
/// The host is kept beside the document rather than inside `Source`, so the agent's
/// model, its validation and everything downstream stay exactly as they are; a host's
/// share (`HostRenderer`) is a plain `Document` the agent accepts unchanged.
public struct RegionDocument: Hashable, Sendable {
    /// The section 7 document; its sources carry no host.
    public var document: Document
    /// Source id → host name, for every source of `document`.
    public var hosts: [String: String]

    public init(document: Document = Document(), hosts: [String: String] = [:]) {
        self.document = document
        self.hosts = hosts
    }

    /// The host of a source, nil when the region has no such source.
    public func host(ofSource id: String) -> String? { hosts[id] }

    /// Every host that has at least one source, sorted.
    public var hostNames: [String] { Array(Set(hosts.values)).sorted() }
}
