import MirrorCore

// Requests and responses of the control API (HTTP/1.1 + JSON over the agent's unix
// socket). Routes, all under /v1:
//   POST   /v1/apply                      body: the whole document         -> ApplyResponse
//   POST   /v1/apply?dryRun=true          body: the whole document         -> ApplyPlan (nothing changes)
//   GET    /v1/{kind}                                                      -> ListResponse
//   GET    /v1/{kind}/{id}                                                 -> ObjectResponse
//   POST   /v1/{kind}                     body: one object (with "id")     -> ObjectResponse (201)
//   PUT    /v1/{kind}/{id}                body: one object                 -> ObjectResponse
//   DELETE /v1/{kind}/{id}                                                 -> ObjectResponse (the deleted object)
//   POST   /v1/sessions/{id}/enable|disable                                -> ObjectResponse
//   GET    /v1/status                                                      -> StatusResponse
//   POST   /v1/explain                    body: ExplainRequest             -> ExplainResponse
//   GET    /v1/document                                                    -> the applied document (as applied)
//   GET    /v1/stats                                                       -> StatsResponse (Stats.swift)
// {kind} is one of ObjectKind's raw values. Errors: APIError (APIError.swift) with 4xx/5xx.

public enum APIPath {
    public static let prefix = "/v1"
    public static let apply = "/v1/apply"
    /// Validates and compares with the policy in force; persists nothing, touches no datapath.
    public static let applyDryRun = "/v1/apply?dryRun=true"
    public static let status = "/v1/status"
    public static let explain = "/v1/explain"
    public static let document = "/v1/document"
    public static func kind(_ k: ObjectKind) -> String { "/v1/\(k.rawValue)" }
    public static func object(_ k: ObjectKind, _ id: String) -> String { "/v1/\(k.rawValue)/\(percentEncode(id))" }
    public static func session(_ id: String, enable: Bool) -> String {
        "/v1/sessions/\(percentEncode(id))/\(enable ? "enable" : "disable")"
    }

    /// Ids are `[A-Za-z0-9._-]` when valid; anything else is escaped so that a bad id
    /// reaches the agent intact and gets a proper "not found" instead of a bad route.
    public static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(UnicodeScalar(b))
            if (b < 0x80) && (c.isLetter || c.isNumber || c == "." || c == "_" || c == "-") {
                out.append(c)
            } else {
                out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true)
            }
        }
        return out
    }

    public static func percentDecode(_ s: Substring) -> String? {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%") {
                guard it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                bytes.append(v); it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// Answer to `apply` and to every mutation: the new generation and the VNI of every
/// session (assigned or given), so a caller sees what was chosen.
public struct ApplyResponse: Hashable, Sendable, Codable {
    public var generation: UInt64
    /// false when the document equals the one already applied (nothing was pushed).
    public var changed: Bool
    public var vnis: [String: Int]
    public init(generation: UInt64, changed: Bool, vnis: [String: Int]) {
        self.generation = generation; self.changed = changed; self.vnis = vnis
    }
}

/// Answer to a dry-run apply: what the document would add, change and remove, by
/// kind and id, against the policy in force (which stays). An invalid document is
/// refused exactly as a real apply would refuse it (422 with every path).
public struct ApplyPlan: Hashable, Sendable, Codable {
    public struct Changes: Hashable, Sendable, Codable {
        /// In the document's order.
        public var added: [String]
        /// Objects whose definition differs; a session also when its VNI would.
        public var changed: [String]
        /// In the order of the policy in force.
        public var removed: [String]
        public init(added: [String] = [], changed: [String] = [], removed: [String] = []) {
            self.added = added; self.changed = changed; self.removed = removed
        }
        public var isEmpty: Bool { added.isEmpty && changed.isEmpty && removed.isEmpty }
    }
    /// Always true: nothing was applied.
    public var dryRun: Bool
    /// The generation in force, which the dry run leaves as it is.
    public var generation: UInt64
    /// Whether applying the document would change anything.
    public var changed: Bool
    /// Every kind, by its array's name in the document (`securityGroups`).
    public var changes: [String: Changes]
    public init(generation: UInt64, changes: [ObjectKind: Changes]) {
        dryRun = true
        self.generation = generation
        self.changes = Dictionary(uniqueKeysWithValues: ObjectKind.allCases.map { ($0.documentKey, changes[$0] ?? Changes()) })
        changed = self.changes.values.contains { !$0.isEmpty }
    }

    public subscript(kind: ObjectKind) -> Changes { changes[kind.documentKey] ?? Changes() }
}

/// An answer that carries the user's objects as JSON, decoded from the core's
/// parse of the body: JSONDecoder would reorder their members, and `agentctl get
/// -o json` prints each object in the order the agent holds it.
/// `ControlClient.call` decodes these types this way.
public protocol JSONValueDecodable {
    init(json: JSONValue) throws
}

/// An answer that does not have the shape of its type.
public struct AnswerShapeError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public struct ListResponse: Hashable, Sendable, Codable {
    public var kind: ObjectKind
    /// Objects as the agent holds them, sessions with their effective `vni`.
    public var items: [AnyJSON]
    public init(kind: ObjectKind, items: [JSONValue]) { self.kind = kind; self.items = items.map(AnyJSON.init) }
}

public struct ObjectResponse: Hashable, Sendable, Codable {
    public var kind: ObjectKind
    public var object: AnyJSON
    public var generation: UInt64
    public init(kind: ObjectKind, object: JSONValue, generation: UInt64) {
        self.kind = kind; self.object = AnyJSON(object); self.generation = generation
    }
}

/// Whether a source's programs are on its interface (`agentctl status`, `agentctl stats`).
public enum SourceState: String, Hashable, Sendable, Codable, CaseIterable {
    /// Programs are attached on both directions of the interface.
    case attached
    /// The interface does not exist (yet); attached when it appears.
    case pending
}

public struct StatusResponse: Hashable, Sendable, Codable {
    public typealias SourceState = MirrorAPI.SourceState
    public struct SourceStatus: Hashable, Sendable, Codable {
        public var id: String
        public var interface: String
        public var ifindex: Int?
        public var state: SourceState
        /// Session ids on this source in evaluation order (ascending priority).
        public var sessions: [String]
        public init(id: String, interface: String, ifindex: Int?, state: SourceState, sessions: [String]) {
            self.id = id; self.interface = interface; self.ifindex = ifindex; self.state = state; self.sessions = sessions
        }
    }
    public var version: String
    /// Which datapath implementation serves: "kernel" (libbpf) or "memory" (no kernel).
    public var datapath: String
    public var datapathLoaded: Bool
    /// Increases with every applied change.
    public var generation: UInt64
    /// The generation the datapath last applied (equal to `generation` when in sync).
    public var datapathGeneration: UInt64
    public var sessions: Int
    public var enabledSessions: Int
    public var sources: [SourceStatus]
    /// The VXLAN `external` device the copies leave through, when present.
    public var mirrorDevice: String?
    /// How the programs sit on the sources' TC hooks: "tcx" (links, kernel >= 6.6) or
    /// "clsact" (filters); absent without a kernel datapath.
    public var tcAttach: String?
    /// With tcAttach "tcx": attached interfaces still on clsact filters while their
    /// tcx links are made in the background (a large apply attaches that way first).
    public var tcxPending: Int?
    /// "ok", or "degraded" while `problems` is not empty: something the datapath needs
    /// (its mirror device, stage 2, the segmenter) is gone and not yet put back.
    public var health: String?
    public var problems: [String]?
    /// The datapath's own devices and programs it put back after someone removed them,
    /// by what, since the agent started.
    public var repairs: [String: UInt64]?
    /// Issue 18: "persistent" when the pins outlive the agent (its bpffs is mounted in
    /// the host's mount namespace), "ephemeral" when started with --ephemeral-pins on
    /// pins that die with it, "unknown" when PID 1's mount table cannot be read; absent
    /// without a kernel datapath. `pinsDetail` says why.
    public var pins: String?
    public var pinsDetail: String?
    /// Issue 18, "Rolling upgrades": the map layout version of the loaded BPF objects
    /// (`MIRROR_LAYOUT_VERSION`), the directory their maps are pinned in
    /// (`<bpffs>/layout-N`), and the layouts whose pins this agent moved off when it
    /// started (0: the unversioned pins of older agents). Absent without a kernel
    /// datapath.
    public var layout: Int?
    public var layoutDirectory: String?
    public var layoutMovedFrom: [Int]?
    /// SPEC §10: every target and the health of each of its collectors.
    public var targets: [TargetStatus]?

    public struct TargetStatus: Hashable, Sendable, Codable {
        public var id: String
        public var type: String
        /// The target's health check as "icmp every 1000 ms" (nil: none).
        public var healthCheck: String?
        public var collectors: [CollectorStatus]
        public init(id: String, type: String, healthCheck: String?, collectors: [CollectorStatus]) {
            self.id = id; self.type = type; self.healthCheck = healthCheck; self.collectors = collectors
        }
    }

    public struct CollectorStatus: Hashable, Sendable, Codable {
        public var address: String
        /// `healthy` or `unhealthy` (SPEC §10), or `unchecked`: the target has no
        /// health check, so the collector always gets copies.
        public var health: String
        /// Why the last probe failed (nil after a success, or before the first probe).
        public var lastError: String?
        public init(address: String, health: String, lastError: String? = nil) {
            self.address = address; self.health = health; self.lastError = lastError
        }
    }
    public init(
        version: String, datapath: String, datapathLoaded: Bool, generation: UInt64, datapathGeneration: UInt64,
        sessions: Int, enabledSessions: Int, sources: [SourceStatus], mirrorDevice: String?, tcAttach: String? = nil,
        tcxPending: Int? = nil
    ) {
        self.version = version; self.datapath = datapath; self.datapathLoaded = datapathLoaded
        self.generation = generation; self.datapathGeneration = datapathGeneration; self.sessions = sessions
        self.enabledSessions = enabledSessions; self.sources = sources; self.mirrorDevice = mirrorDevice
        self.tcAttach = tcAttach; self.tcxPending = tcxPending
    }
}

extension StatusResponse {
    public func withTargets(_ targets: [TargetStatus]) -> StatusResponse {
        var r = self
        r.targets = targets
        return r
    }

    public func withHealth(problems: [String], repairs: [String: UInt64]) -> StatusResponse {
        var r = self
        r.health = problems.isEmpty ? "ok" : "degraded"
        r.problems = problems
        r.repairs = repairs
        return r
    }

    public func withLayout(_ version: Int?, directory: String?, movedFrom: [Int]) -> StatusResponse {
        var r = self
        r.layout = version
        r.layoutDirectory = directory
        r.layoutMovedFrom = version == nil ? nil : movedFrom
        return r
    }

    public func withPins(_ pins: (state: String, detail: String)?) -> StatusResponse {
        var r = self
        r.pins = pins?.state
        r.pinsDetail = pins?.detail
        return r
    }
}

public struct ExplainRequest: Hashable, Sendable, Codable {
    public var source: String
    public var direction: Direction
    public var packet: PacketSpec
    /// SPEC §5: security groups are stateful; say whether the packet belongs to an
    /// allowed connection. Default new.
    public var connection: ConnectionState?
    public init(source: String, direction: Direction, packet: PacketSpec, connection: ConnectionState? = nil) {
        self.source = source; self.direction = direction; self.packet = packet; self.connection = connection
    }
}

public struct ExplainResponse: Hashable, Sendable, Codable {
    public var source: String
    public var direction: Direction
    /// The packet as understood (`PacketDescription.description`).
    public var packet: String
    /// The reference decision (MirrorCore.Oracle) under the live policy.
    public var oracle: Decision
    /// The decision of the loaded program (BPF_PROG_TEST_RUN); null when no kernel
    /// datapath is loaded.
    public var kernel: Decision?
    /// oracle == kernel on `mirrored` and `session`; null without a kernel decision.
    public var agree: Bool?
    /// Why there is no kernel decision, when there is none.
    public var kernelNote: String?
    public var generation: UInt64
    public init(
        source: String, direction: Direction, packet: String, oracle: Decision, kernel: Decision?,
        agree: Bool?, kernelNote: String?, generation: UInt64
    ) {
        self.source = source; self.direction = direction; self.packet = packet; self.oracle = oracle
        self.kernel = kernel; self.agree = agree; self.kernelNote = kernelNote; self.generation = generation
    }
}

// Objects keep their members in document order on the wire (Foundation's encoder
// would reorder them), so these two responses serialise and decode themselves.
extension ListResponse: JSONValueDecodable {
    public var json: JSONValue {
        .object([("kind", .string(kind.rawValue)), ("items", .array(items.map(\.value)))])
    }

    public init(json: JSONValue) throws {
        guard let kind = json["kind"]?.stringValue.flatMap(ObjectKind.init(rawValue:)) else {
            throw AnswerShapeError("no object kind in the list")
        }
        guard let items = json["items"]?.arrayValue else { throw AnswerShapeError("no items in the list") }
        self.init(kind: kind, items: items)
    }
}

extension ObjectResponse: JSONValueDecodable {
    public var json: JSONValue {
        .object([("kind", .string(kind.rawValue)), ("object", object.value), ("generation", .int(Int64(generation)))])
    }

    public init(json: JSONValue) throws {
        guard let kind = json["kind"]?.stringValue.flatMap(ObjectKind.init(rawValue:)) else {
            throw AnswerShapeError("no object kind in the answer")
        }
        guard let object = json["object"], object.isObject else { throw AnswerShapeError("no object in the answer") }
        guard case .int(let g)? = json["generation"], let generation = UInt64(exactly: g) else {
            throw AnswerShapeError("no generation in the answer")
        }
        self.init(kind: kind, object: object, generation: generation)
    }
}
