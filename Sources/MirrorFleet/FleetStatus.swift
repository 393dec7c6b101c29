import EtcdClient
import Foundation

/// What an agent writes under `/mirror/v1/hosts/H/status`, under its lease (SPEC §9):
/// it vanishes by itself when the agent stops renewing.
public struct AgentFleetStatus: Codable, Sendable, Equatable {
    public var host: String
    /// The mod revision of the desired key whose document is in force (0: none yet).
    public var appliedRevision: Int64
    public var sources: Sources
    /// The last apply's refusal, or nil.
    public var error: String?
    public var version: String

    public struct Sources: Codable, Sendable, Equatable {
        public var attached: Int
        public var pending: Int
        public init(attached: Int, pending: Int) { self.attached = attached; self.pending = pending }
    }

    public init(host: String, appliedRevision: Int64, sources: Sources, error: String?, version: String) {
        self.host = host; self.appliedRevision = appliedRevision; self.sources = sources
        self.error = error; self.version = version
    }
}

/// One row of `agentctl --etcd … fleet status` (the JSON, exactly).
public struct FleetStatusRow: Codable, Sendable, Equatable {
    public var host: String
    public var alive: Bool
    /// The mod revision of the host's desired key (0: the host has no document).
    public var desiredRevision: Int64
    /// What the agent last reported (0 when it never did or is gone).
    public var appliedRevision: Int64
    public var sources: AgentFleetStatus.Sources
    public var error: String?

    enum CodingKeys: String, CodingKey { case host, alive, desiredRevision, appliedRevision, sources, error }

    // `error` is written as null when absent, as the issue shows it.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(host, forKey: .host)
        try c.encode(alive, forKey: .alive)
        try c.encode(desiredRevision, forKey: .desiredRevision)
        try c.encode(appliedRevision, forKey: .appliedRevision)
        try c.encode(sources, forKey: .sources)
        try c.encode(error, forKey: .error)
    }
}

public struct FleetStatusReport: Codable, Sendable {
    public var hosts: [FleetStatusRow]
}

public enum FleetStatus {
    /// One row per host that has a desired document or a live agent, sorted by host.
    public static func read(_ etcd: EtcdClient) async throws -> FleetStatusReport {
        let all = try await etcd.range(FleetKeys.hosts)
        var desired: [String: Int64] = [:]
        var status: [String: AgentFleetStatus] = [:]
        var malformed: Set<String> = []
        for kv in all.kvs {
            guard let (host, leaf) = FleetKeys.parseHostKey(kv.key) else { continue }
            switch leaf {
            case "desired": desired[host] = kv.modRevision
            case "status":
                if let s = try? JSONDecoder().decode(AgentFleetStatus.self, from: Data(kv.value)) {
                    status[host] = s
                } else {
                    malformed.insert(host)
                }
            default: continue
            }
        }
        let hosts = Set(desired.keys).union(status.keys).union(malformed).sorted()
        return FleetStatusReport(
            hosts: hosts.map { h in
                let s = status[h]
                return FleetStatusRow(
                    host: h, alive: s != nil, desiredRevision: desired[h] ?? 0, appliedRevision: s?.appliedRevision ?? 0,
                    sources: s?.sources ?? .init(attached: 0, pending: 0),
                    error: malformed.contains(h) ? "the agent's status does not read" : s?.error)
            })
    }
}
