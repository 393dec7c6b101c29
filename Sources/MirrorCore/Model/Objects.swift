// The objects of SPEC §2 and §5. Field names are exactly the spec's JSON names.
// These types are produced by `DocumentParser` (which validates and collects every
// error with its JSON path) and encoded back with the canonical forms below, so that
// encode → parse gives an equal document.

public enum Ethertype: String, Codable, Sendable, CaseIterable { case ipv4, ipv6 }

public enum Direction: String, Codable, Sendable, CaseIterable { case inbound, outbound }

public enum RuleAction: String, Codable, Sendable, CaseIterable { case accept, reject }

public enum AllowDeny: String, Codable, Sendable, CaseIterable { case allow, deny }

public enum SecurityGroupDirection: String, Codable, Sendable, CaseIterable { case ingress, egress }

/// `all`, a named protocol or an IP protocol number. Names are kept as numbers
/// internally (tcp = 6, udp = 17, icmp = 1, icmpv6 = 58) so `6` and `tcp` mean the same.
public enum ProtocolSpec: Hashable, Sendable, CustomStringConvertible {
    case all
    case number(UInt8)

    public static let tcp = ProtocolSpec.number(6)
    public static let udp = ProtocolSpec.number(17)
    public static let icmp = ProtocolSpec.number(1)
    public static let icmpv6 = ProtocolSpec.number(58)

    public static let names: [String: UInt8] = ["tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58]

    /// Ports may only be given for tcp and udp (SPEC §2).
    public var hasPorts: Bool { self == .tcp || self == .udp }

    public var description: String {
        switch self {
        case .all: return "all"
        case .number(let n):
            if let name = ProtocolSpec.names.first(where: { $0.value == n })?.key { return name }
            return String(n)
        }
    }

    public func matches(_ proto: UInt8?) -> Bool {
        switch self {
        case .all: return true
        case .number(let n): return proto == n
        }
    }
}

extension ProtocolSpec: Encodable {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let n) where ProtocolSpec.names.values.contains(n) == false: try c.encode(Int(n))
        default: try c.encode(description)
        }
    }
}

extension IPAddress: Encodable {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer(); try c.encode(description)
    }
}
extension CIDR: Encodable {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer(); try c.encode(description)
    }
}
extension PortRange: Encodable {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer(); try c.encode(description)
    }
}

/// A filter rule (SPEC §2). `source`/`destination` nil = every address of the
/// ethertype; `sourcePorts`/`destinationPorts` nil = all.
public typealias Rule = MatchRule<RuleAction>

/// A network ACL rule (SPEC §5): a filter rule's conditions with allow or deny.
public typealias AclRule = MatchRule<AllowDeny>

/// The conditions filter rules and network ACL rules share (SPEC §4, §5), with the
/// action each kind takes.
public struct MatchRule<Action: Hashable & Sendable & Encodable>: Hashable, Sendable, Encodable {
    public var priority: Int
    public var action: Action
    public var ethertype: Ethertype
    public var `protocol`: ProtocolSpec
    public var source: CIDR?
    public var destination: CIDR?
    public var sourcePorts: PortRange?
    public var destinationPorts: PortRange?

    public init(
        priority: Int, action: Action, ethertype: Ethertype, protocol: ProtocolSpec = .all,
        source: CIDR? = nil, destination: CIDR? = nil,
        sourcePorts: PortRange? = nil, destinationPorts: PortRange? = nil
    ) {
        self.priority = priority; self.action = action; self.ethertype = ethertype
        self.protocol = `protocol`; self.source = source; self.destination = destination
        self.sourcePorts = sourcePorts; self.destinationPorts = destinationPorts
    }
}

public struct Filter: Hashable, Sendable, Encodable {
    public var id: String
    public var description: String?
    public var inbound: [Rule]
    public var outbound: [Rule]

    public init(id: String, description: String? = nil, inbound: [Rule] = [], outbound: [Rule] = []) {
        self.id = id; self.description = description; self.inbound = inbound; self.outbound = outbound
    }

    public func rules(_ d: Direction) -> [Rule] { d == .inbound ? inbound : outbound }
}

public enum TargetType: String, Codable, Sendable, CaseIterable { case nic, loadBalancer }

public enum HealthCheckProtocol: String, Codable, Sendable, CaseIterable { case icmp, tcp }

/// SPEC §10: how the agent probes each collector of a target. An unhealthy backend
/// gets no copies; with none healthy, copies are dropped (`target_unhealthy`).
/// Absent on a target: nothing is probed and every collector counts as healthy.
public struct HealthCheck: Hashable, Sendable, Encodable {
    public var `protocol`: HealthCheckProtocol
    /// TCP only (required there): the port a connect is tried on.
    public var port: Int?
    public var intervalMs: Int
    /// Consecutive failed probes that make a healthy backend unhealthy.
    public var unhealthyThreshold: Int
    /// Consecutive successful probes that make an unhealthy backend healthy.
    public var healthyThreshold: Int

    public static let defaultIntervalMs = 1000
    public static let defaultUnhealthyThreshold = 3
    public static let defaultHealthyThreshold = 2

    public init(
        protocol: HealthCheckProtocol, port: Int? = nil, intervalMs: Int = HealthCheck.defaultIntervalMs,
        unhealthyThreshold: Int = HealthCheck.defaultUnhealthyThreshold,
        healthyThreshold: Int = HealthCheck.defaultHealthyThreshold
    ) {
        self.protocol = `protocol`; self.port = port; self.intervalMs = intervalMs
        self.unhealthyThreshold = unhealthyThreshold; self.healthyThreshold = healthyThreshold
    }

    /// How long one probe waits for its answer: half the interval, at most 1 s, so
    /// that `unhealthyThreshold` failures are known within
    /// intervalMs × unhealthyThreshold + 1 s of a collector going away (SPEC §10).
    public var timeoutMs: Int { min(intervalMs / 2, 1000) }
}

/// What the collector receives (SPEC §11): VXLAN (RFC 7348, UDP 4789), GENEVE
/// (RFC 8926, UDP 6081, no options) or ERSPAN type II over GRE, each with the
/// session's `vni` as its VNI or session ID.
public enum Encapsulation: String, Codable, Sendable, CaseIterable {
    case vxlan, geneve, erspan

    /// ERSPAN's session ID has 10 bits: sessions at an erspan target have a vni in it.
    public static let erspanSessionIDs = 0...1023
}

public struct Target: Hashable, Sendable, Encodable {
    public var id: String
    public var type: TargetType
    /// Set for `nic`.
    public var address: IPAddress?
    /// Set for `loadBalancer` (1–16).
    public var backends: [IPAddress]?
    /// SPEC §10: nil = no probing, every collector healthy.
    public var healthCheck: HealthCheck?
    public var description: String?
    /// nil means vxlan (as a document without the field).
    public var encapsulation: Encapsulation?

    public init(
        id: String, type: TargetType, address: IPAddress? = nil, backends: [IPAddress]? = nil,
        healthCheck: HealthCheck? = nil, description: String? = nil, encapsulation: Encapsulation? = nil
    ) {
        self.id = id; self.type = type; self.address = address; self.backends = backends
        self.healthCheck = healthCheck; self.description = description; self.encapsulation = encapsulation
    }

    /// `encapsulation`, vxlan when not given.
    public var effectiveEncapsulation: Encapsulation { encapsulation ?? .vxlan }

    /// Every collector address this target may send to.
    public var collectorAddresses: [IPAddress] {
        type == .nic ? (address.map { [$0] } ?? []) : (backends ?? [])
    }
}

public struct Source: Hashable, Sendable, Encodable {
    public var id: String
    public var interface: String
    public var addresses: [IPAddress]?
    public var securityGroups: [String]?
    public var networkAcl: String?
    public var enforce: Bool?
    public var description: String?

    public init(
        id: String, interface: String, addresses: [IPAddress]? = nil, securityGroups: [String]? = nil,
        networkAcl: String? = nil, enforce: Bool? = nil, description: String? = nil
    ) {
        self.id = id; self.interface = interface; self.addresses = addresses
        self.securityGroups = securityGroups; self.networkAcl = networkAcl; self.enforce = enforce
        self.description = description
    }
}

public struct Session: Hashable, Sendable, Encodable {
    public var id: String
    public var priority: Int
    public var filter: String
    public var sources: [String]
    public var target: String
    /// nil in a document means "assign one" (see `VNIAssigner`).
    public var vni: Int?
    /// nil means true.
    public var enabled: Bool?
    public var packetLength: Int?
    /// SPEC §10: at most this many copies a second (nil: no limit).
    public var rateLimit: RateLimit?
    /// SPEC §10: one accepted packet in N is mirrored (nil means 1: every one).
    public var sampleOneIn: Int?
    public var description: String?

    public init(
        id: String, priority: Int, filter: String, sources: [String], target: String,
        vni: Int? = nil, enabled: Bool? = nil, packetLength: Int? = nil, rateLimit: RateLimit? = nil,
        sampleOneIn: Int? = nil, description: String? = nil
    ) {
        self.id = id; self.priority = priority; self.filter = filter; self.sources = sources
        self.target = target; self.vni = vni; self.enabled = enabled; self.packetLength = packetLength
        self.rateLimit = rateLimit; self.sampleOneIn = sampleOneIn
        self.description = description
    }

    public var isEnabled: Bool { enabled ?? true }
}

/// A session's `rateLimit` (SPEC §10): copies over either limit are not made. Bits
/// count each copy as sent, outer headers included. At least one of the two is set.
public struct RateLimit: Hashable, Sendable, Encodable {
    public var packetsPerSecond: Int?
    public var bitsPerSecond: Int?

    public init(packetsPerSecond: Int? = nil, bitsPerSecond: Int? = nil) {
        self.packetsPerSecond = packetsPerSecond; self.bitsPerSecond = bitsPerSecond
    }
}

public struct SecurityGroupRule: Hashable, Sendable, Encodable {
    public var direction: SecurityGroupDirection
    public var priority: Int
    public var action: AllowDeny
    public var ethertype: Ethertype
    public var `protocol`: ProtocolSpec
    public var remote: CIDR?
    public var ports: PortRange?

    public init(
        direction: SecurityGroupDirection, priority: Int, action: AllowDeny, ethertype: Ethertype,
        protocol: ProtocolSpec = .all, remote: CIDR? = nil, ports: PortRange? = nil
    ) {
        self.direction = direction; self.priority = priority; self.action = action
        self.ethertype = ethertype; self.protocol = `protocol`; self.remote = remote; self.ports = ports
    }
}

public struct SecurityGroup: Hashable, Sendable, Encodable {
    public var id: String
    public var description: String?
    public var rules: [SecurityGroupRule]
    public init(id: String, description: String? = nil, rules: [SecurityGroupRule] = []) {
        self.id = id; self.description = description; self.rules = rules
    }
}

public struct NetworkAcl: Hashable, Sendable, Encodable {
    public var id: String
    public var description: String?
    public var inbound: [AclRule]
    public var outbound: [AclRule]
    public init(id: String, description: String? = nil, inbound: [AclRule] = [], outbound: [AclRule] = []) {
        self.id = id; self.description = description; self.inbound = inbound; self.outbound = outbound
    }
}

/// The declarative document of SPEC §7. Every array may be omitted (= empty).
public struct Document: Hashable, Sendable, Encodable {
    public var filters: [Filter]
    public var targets: [Target]
    public var sources: [Source]
    public var sessions: [Session]
    public var securityGroups: [SecurityGroup]
    public var networkAcls: [NetworkAcl]

    public init(
        filters: [Filter] = [], targets: [Target] = [], sources: [Source] = [],
        sessions: [Session] = [], securityGroups: [SecurityGroup] = [], networkAcls: [NetworkAcl] = []
    ) {
        self.filters = filters; self.targets = targets; self.sources = sources
        self.sessions = sessions; self.securityGroups = securityGroups; self.networkAcls = networkAcls
    }
}
