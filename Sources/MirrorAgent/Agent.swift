import CMalloc
import Foundation
import Logging
import MirrorAPI
import MirrorCore
import MirrorDatapath

public enum MirrorAgentInfo { public static let version = MirrorAPIVersion.release }

/// An error answered to a client: the API's one error type, which the control
/// server writes and clients decode.
public typealias AgentError = APIError

/// Holds the desired state and reconciles it onto the datapath. Every mutation builds
/// the whole next document, validates it with the core, assigns VNIs, persists it and
/// only then hands it to the datapath; on any failure nothing changes (SPEC §7).
/// Being an actor serialises mutations, so two clients cannot interleave.
/// The datapath did not start (`Agent.start`): nothing can be mirrored.
public struct DatapathStartFailure: Error, CustomStringConvertible {
    public var underlying: Error
    public var description: String { "\(underlying)" }
}

public actor Agent {
    private let store: StateStore
    let datapath: Datapath  // internal: MetricsAgent.swift reads counters outside the actor
    /// Apply durations and counter continuity.
    public let metrics: AgentMetrics
    /// `agentctl capture` (SPEC §11): the running captures.
    public nonisolated let captures: CaptureHub
    private let checker: DocumentChecking
    /// The state directory's owner lock, from `start` on.
    private var stateLock: OwnerLock?
    let logger: Logger

    /// The document as the user applied it (sessions may lack `vni`).
    /// Held as compact JSON text rather than a tree: at 20,000 sessions the tree is
    /// about 10 MB of small allocations that outlive every apply and fragment the
    /// heap; the text is one allocation of about 3 MB. Parsed back on demand
    /// (object changes, GET /v1/document), which costs tens of ms at that size.
    private var appliedText: [UInt8] = Array("{}".utf8)
    private var applied: JSONValue {
        get {
            // Our own serialization of a value that parsed before: cannot fail.
            (try? JSONParser.parse(appliedText).get()) ?? .object([])
        }
        set { appliedText = Array(newValue.serialized(pretty: false).utf8) }
    }

    /// `applied` for a change built on it. Should it ever fail to parse, the change is
    /// refused: the empty document `applied` gives instead would make a create or
    /// update replace every object with its one.
    private func appliedForChange() throws -> JSONValue {
        switch JSONParser.parse(appliedText) {
        case .success(let v): return v
        case .failure(let e): throw AgentError(status: 500, "the applied document does not read back (\(e)); nothing was changed")
        }
    }
    private var document = Document()
    /// The document with every session's effective VNI, as the datapath sees it.
    var effective = Document()
    private var vnis: [String: Int] = [:]
    private var generation: UInt64 = 0
    /// SPEC §10: each probed collector's state (HealthChecks.swift).
    var health = HealthBook()
    /// Changes whenever the set of probes may have changed (HealthCheckService).
    var healthPlanVersion: UInt64 = 0
    /// `start` finished: the restored (or empty) policy is in the datapath.
    private var started = false
    /// Conditions other services hold against readiness (fleet mode: "no document
    /// from etcd yet"), by name.
    private var notReadyReasons: [String: String] = [:]

    public init(
        store: StateStore, datapath: Datapath, checker: DocumentChecking = CoreDocumentChecker(),
        logger: Logger = Logger(label: "mirror-agent")
    ) {
        self.store = store; self.datapath = datapath; self.checker = checker; self.logger = logger
        self.metrics = AgentMetrics(stateDirectory: store.directory, logger: logger)
        self.captures = CaptureHub(datapath: datapath, logger: logger)
    }

    /// What a capture request takes under the policy in force, and the sources and
    /// directions it covers now (SPEC §11). Unknown ids are refused by name.
    public func captureSelector(_ r: CaptureRequest) throws -> (CaptureSelector, [CaptureInterface]) {
        let problems = r.problems
        if !problems.isEmpty {
            throw AgentError.badRequest(problems.map(\.message).joined(separator: "; "), problems)
        }
        let directions = r.direction.map { [$0] } ?? Direction.allCases
        let sourceIDs: [String]
        if let id = r.session {
            guard let session = effective.sessions.first(where: { $0.id == id }) else {
                throw AgentError.notFound("no session '\(id)' in the policy in force")
            }
            sourceIDs = session.sources
        } else {
            let id = r.source ?? ""
            guard effective.sources.contains(where: { $0.id == id }) else {
                throw AgentError.notFound("no source '\(id)' in the policy in force")
            }
            sourceIDs = [id]
        }
        let interfaces = Dictionary(effective.sources.map { ($0.id, $0.interface) }, uniquingKeysWith: { a, _ in a })
        let covered = sourceIDs.flatMap { id in
            directions.map { CaptureInterface(source: id, interface: interfaces[id] ?? "?", direction: $0) }
        }
        let selector = CaptureSelector(
            session: r.session, source: r.session == nil ? r.source : nil, directions: Set(directions),
            snaplen: r.snaplen ?? CaptureRequest.maxSnaplen)
        return (selector, covered)
    }

    /// Restores the persisted state (or starts empty with `resetState`) and reconciles.
    /// Throws `StateError` when the state cannot be trusted: the agent must not start.
    /// `holding`: the state directory's lock when the caller took it already (before
    /// loading the datapath); else it is taken here.
    public func start(resetState: Bool, holding lock: OwnerLock? = nil) throws {
        try store.prepare()
        stateLock = try lock ?? store.lock()
        if resetState, let aside = try store.reset() {
            logger.warning("--reset-state: previous state moved to \(aside); starting empty")
        }
        if let persisted = try store.load() {
            switch checker.check(persisted.document.value) {
            case .failure(let e):
                let errors = e.errors
                throw StateError(
                    "state file \(store.path) holds a document that no longer validates; fix it or start with --reset-state:\n"
                        + errors.map { "  \($0)" }.joined(separator: "\n"))
            case .success(let doc):
                applied = persisted.document.value
                document = doc
                (effective, vnis) = checker.assignVNIs(doc, previous: persisted.vnis)
                generation = persisted.generation
            }
            logger.info("restored state", metadata: ["generation": "\(generation)", "sessions": "\(document.sessions.count)"])
        }
        do { try datapath.start() } catch {
            datapath.shutdown()
            throw DatapathStartFailure(underlying: error)
        }
        healthFollowsDocument()
        try timedApply(effective, generation)
        Self.returnFreedMemory()
        started = true
        logSourceChanges(after: "start")
    }

    /// `datapath.apply`, its duration observed for mirror_policy_apply_seconds.
    /// Returns the duration in seconds.
    @discardableResult
    private func timedApply(_ doc: Document, _ generation: UInt64) throws -> Double {
        let started = ContinuousClock.now
        func elapsed() -> Double {
            let d = ContinuousClock.now - started
            let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            metrics.observeApply(seconds: seconds)  // failed applies too: they took that long
            return seconds
        }
        do { try datapath.apply(document: doc, generation: generation) } catch {
            _ = elapsed()
            throw error
        }
        return elapsed()
    }

    public func shutdown() {
        started = false
        persistMetrics()
        datapath.shutdown()
        stateLock?.release()
        stateLock = nil
    }

    /// An apply of a large document allocates and frees tens of MB (parsing, the
    /// compiled image). glibc keeps freed heap pages mapped, so without this the
    /// agent's RSS would stay at the apply's peak for good.
    static func returnFreedMemory() {
        _ = malloc_trim(0)
    }

    /// Called once at start. Allocations of 16 KiB and more get their own mappings,
    /// returned to the system as soon as they are freed: an apply's growing arrays
    /// and buffers then leave no holes in the heap between the small objects that
    /// live on. Measured with 20,000 sessions: RSS after a whole-policy swap 53-55
    /// MiB instead of 65-72 (glibc's default threshold adapts upwards to 32 MiB).
    public static func tuneAllocator() {
        _ = mallopt(M_MMAP_THRESHOLD, 16 * 1024)
        _ = mallopt(M_ARENA_MAX, 2)
    }

    // MARK: - Mutations

    public func apply(_ next: JSONValue) throws -> ApplyResponse {
        guard next.isObject else { throw AgentError.badRequest("the document must be a JSON object") }
        return try commit(next)
    }

    /// What `apply(next)` would add, change and remove, refused as `apply` would
    /// refuse it; nothing is persisted and the datapath is not touched.
    public func plan(_ next: JSONValue) throws -> ApplyPlan {
        guard next.isObject else { throw AgentError.badRequest("the document must be a JSON object") }
        let doc = try validated(next, refusal: nil)
        let (nextEffective, _) = checker.assignVNIs(doc, previous: vnis)
        func vniByID(_ d: Document) -> [String: Int?] {
            Dictionary(d.sessions.map { ($0.id, $0.vni) }, uniquingKeysWith: { a, _ in a })
        }
        return ApplyPlan(
            generation: generation,
            changes: DocumentDiff.changes(
                from: document, to: doc, oldVNIs: vniByID(effective), newVNIs: vniByID(nextEffective)))
    }

    @discardableResult
    public func create(_ kind: ObjectKind, _ object: JSONValue) throws -> ObjectResponse {
        guard object.isObject else { throw AgentError.badRequest("the \(kind.singular) must be a JSON object") }
        guard case .string(let id)? = object["id"] else {
            throw AgentError.badRequest("the \(kind.singular) has no id", [FieldError(path: "id", message: "required")])
        }
        let current = try appliedForChange()
        var items = Self.items(current, kind)
        if items.contains(where: { $0["id"]?.stringValue == id }) {
            throw AgentError(status: 409, "\(kind.singular) \(id) already exists (use update)")
        }
        items.append(object)
        _ = try commit(Self.replacing(current, kind, items), refusal: "\(kind.singular) \(id) not created")
        return try objectResponse(kind, id)
    }

    @discardableResult
    public func update(_ kind: ObjectKind, _ id: String, _ object: JSONValue) throws -> ObjectResponse {
        guard object.isObject else { throw AgentError.badRequest("the \(kind.singular) must be a JSON object") }
        if let given = object["id"], given != .string(id) {
            throw AgentError.badRequest("the body's id does not match \(id) in the URL", [FieldError(path: "id", message: "must be \(id)")])
        }
        let current = try appliedForChange()
        var items = Self.items(current, kind)
        guard let i = items.firstIndex(where: { $0["id"]?.stringValue == id }) else {
            throw AgentError.notFound("\(kind.singular) \(id) not found")
        }
        items[i] = object.setting("id", .string(id))
        _ = try commit(Self.replacing(current, kind, items), refusal: "\(kind.singular) \(id) not updated")
        return try objectResponse(kind, id)
    }

    @discardableResult
    public func delete(_ kind: ObjectKind, _ id: String) throws -> ObjectResponse {
        let current = try appliedForChange()
        var items = Self.items(current, kind)
        guard let i = items.firstIndex(where: { $0["id"]?.stringValue == id }) else {
            throw AgentError.notFound("\(kind.singular) \(id) not found")
        }
        let referrers = References.referrers(to: kind, id, in: document)
        if !referrers.isEmpty { throw References.deleteRefusal(kind, id, referrers) }
        let removed = try objectResponse(kind, id)
        items.remove(at: i)
        let r = try commit(Self.replacing(current, kind, items), refusal: "\(kind.singular) \(id) not deleted")
        return ObjectResponse(kind: kind, object: removed.object.value, generation: r.generation)
    }

    @discardableResult
    public func setSessionEnabled(_ id: String, _ enabled: Bool) throws -> ObjectResponse {
        let current = try appliedForChange()
        var items = Self.items(current, .sessions)
        guard let i = items.firstIndex(where: { $0["id"]?.stringValue == id }) else {
            throw AgentError.notFound("session \(id) not found")
        }
        items[i] = items[i].setting("enabled", .bool(enabled))
        _ = try commit(Self.replacing(current, .sessions, items), refusal: "session \(id) not \(enabled ? "enabled" : "disabled")")
        return try objectResponse(.sessions, id)
    }

    /// `next` validated, or a 422 with every error. `refusal` nil: `next` is the
    /// client's document, and paths index it (`sources[3].interface`); otherwise
    /// `next` is the document a change to one object makes, the refusal says which
    /// change ("source bad not created") and paths name objects by id
    /// (`sources[id=bad].interface`), as the client wrote them.
    private func validated(_ next: JSONValue, refusal: String?) throws -> Document {
        var errors: [FieldError]
        switch checker.check(next) {
        case .failure(let e): errors = e.errors
        case .success(let doc):
            let own = datapath.ownInterfaces
            let underlay = datapath.underlayInterfaces(for: doc)
            errors = doc.sources.enumerated().compactMap { i, s in
                let path = "sources[\(i)].interface"
                if own.contains(s.interface) {
                    return FieldError(
                        path: path,
                        message: "\(s.interface) is one of the agent's own devices (its mirror device or segmenter); it cannot be a source")
                }
                if let collector = underlay[s.interface] {
                    return FieldError(
                        path: path,
                        message:
                            "\(s.interface) is the underlay device that copies to collector \(collector) leave through; it cannot be a source (mirror a device behind it instead, such as a bridge port)"
                    )
                }
                return nil
            }
            if errors.isEmpty { return doc }
        }
        let count = "\(errors.count) error\(errors.count == 1 ? "" : "s")"
        guard let refusal else {
            throw AgentError(status: 422, "the document is invalid (\(count)); nothing was changed", errors: errors)
        }
        throw AgentError(
            status: 422, "\(refusal): the document would be invalid (\(count)); nothing was changed",
            errors: ObjectPaths.namingObjects(errors, in: next))
    }

    /// The one path by which desired state changes. `refusal`: see `validated`.
    private func commit(_ next: JSONValue, refusal: String? = nil) throws -> ApplyResponse {
        let doc = try validated(next, refusal: refusal)
        let (nextEffective, nextVNIs) = checker.assignVNIs(doc, previous: vnis)
        if doc == document && nextVNIs == vnis {
            applied = next  // same meaning; keep the user's latest spelling
            return ApplyResponse(generation: generation, changed: false, vnis: effectiveVNIs)
        }
        let nextGeneration = generation + 1
        // Serialized once, for the state file and for `applied`.
        let nextText = Array(next.serialized(pretty: false).utf8)
        do {
            try store.save(PersistedState(generation: nextGeneration, document: AnyJSON(next), vnis: nextVNIs), documentText: nextText)
        } catch {
            throw AgentError(status: 500, "cannot persist the new state, nothing was changed: \(error)")
        }
        let seconds: Double
        do {
            seconds = try timedApply(nextEffective, nextGeneration)
        } catch let error as PolicyInForceError {
            // The datapath runs the new policy and could not go back: the state is the
            // new one (the state file has it already), and the answer says so.
            appliedText = nextText; document = doc; vnis = nextVNIs; effective = nextEffective; generation = nextGeneration
            healthFollowsDocument()
            logger.error(
                "apply failed after the new policy was in force; it stays in force",
                metadata: ["generation": "\(nextGeneration)", "error": "\(error)"])
            logSourceChanges(after: "apply")
            throw AgentError(status: 500, "the new policy (generation \(nextGeneration)) is in force, but the change failed: \(error)")
        } catch {
            logger.error(
                "apply refused by the datapath; the previous policy stays in force",
                metadata: ["generation": "\(nextGeneration)", "error": "\(error)"])
            // Put the previous state back on disk so that a restart restores what is
            // actually in force.
            do {
                try store.save(
                    PersistedState(generation: generation, document: AnyJSON(.object([])), vnis: vnis), documentText: appliedText)
            } catch {
                logger.error("datapath refused the change and restoring the previous state file failed: \(error)")
            }
            throw AgentError(status: 500, "the datapath refused the change, nothing was changed: \(error)")
        }
        appliedText = nextText; document = doc; vnis = nextVNIs; effective = nextEffective; generation = nextGeneration
        healthFollowsDocument()
        Self.returnFreedMemory()
        logger.info(
            "applied",
            metadata: [
                "generation": "\(generation)", "sessions": "\(doc.sessions.count)",
                "seconds": "\(String(format: "%.4f", seconds))",
            ])
        logSourceChanges(after: "apply")
        return ApplyResponse(generation: generation, changed: true, vnis: effectiveVNIs)
    }

    // MARK: - Reads

    public func list(_ kind: ObjectKind) throws -> ListResponse {
        ListResponse(kind: kind, items: try Self.effectiveItems(effective, kind))
    }

    public func get(_ kind: ObjectKind, _ id: String) throws -> ObjectResponse { try objectResponse(kind, id) }

    public func appliedDocument() -> JSONValue { applied }

    /// The ids of the sessions and sources of the policy in force.
    func ids() -> (sessions: Set<String>, sources: Set<String>) {
        (Set(document.sessions.map(\.id)), Set(document.sources.map(\.id)))
    }

    public func currentGeneration() -> UInt64 { generation }

    private func objectResponse(_ kind: ObjectKind, _ id: String) throws -> ObjectResponse {
        guard let o = try Self.effectiveItems(effective, kind).first(where: { $0["id"]?.stringValue == id }) else {
            throw AgentError.notFound("\(kind.singular) \(id) not found")
        }
        return ObjectResponse(kind: kind, object: o, generation: generation)
    }

    public func status() -> StatusResponse { status(verified: true) }

    /// GET /healthz: the agent's actor answers (a hung agent times the probe out).
    public func liveness() -> Probe { Probe(ok: true, detail: "ok") }

    /// GET /readyz (issue 18): ready when a policy is applied and the datapath is
    /// attached: `start` has put the restored or empty policy in force, the datapath
    /// is loaded, holds the agent's current generation and reports nothing broken
    /// (its mirror device and stage 2 in place), and no other service holds a reason
    /// (`setNotReady`). Sources whose interface does not exist yet are pending, not
    /// a reason: a VM's tap appears when the VM starts.
    public func readiness() -> Probe {
        var reasons: [String] = []
        if !started { reasons.append("the agent has not put its policy in force yet") }
        let dp = datapath.status(verified: true)
        if !dp.loaded { reasons.append("the \(datapath.kind) datapath is not loaded") }
        if started && dp.loaded && dp.generation != generation {
            reasons.append("the datapath holds generation \(dp.generation), the agent \(generation)")
        }
        reasons += dp.problems
        reasons += notReadyReasons.keys.sorted().map { "\($0): \(notReadyReasons[$0] ?? "")" }
        guard reasons.isEmpty else { return Probe(ok: false, detail: "not ready: " + reasons.joined(separator: "; ")) }
        let attached = effective.sources.filter { dp.attached[$0.interface] != nil }.count
        return Probe(
            ok: true,
            detail:
                "ready: generation \(generation), \(effective.sessions.count) sessions, \(attached) of \(effective.sources.count) sources attached"
        )
    }

    /// Holds (`reason` non-nil) or releases readiness for `name`.
    public func setNotReady(_ name: String, reason: String?) { notReadyReasons[name] = reason }

    /// `verified`: see `Datapath.status(verified:)`.
    func status(verified: Bool) -> StatusResponse {
        let dp = datapath.status(verified: verified)
        let sessionsOf = Oracle.sessionsBySource(document: effective)
        let sources = effective.sources.map { s in
            let ifindex = dp.attached[s.interface]
            return StatusResponse.SourceStatus(
                id: s.id, interface: s.interface, ifindex: ifindex, state: ifindex == nil ? .pending : .attached,
                sessions: (sessionsOf[s.id] ?? []).map(\.id))
        }
        return StatusResponse(
            version: MirrorAgentInfo.version, datapath: datapath.kind, datapathLoaded: dp.loaded,
            generation: generation, datapathGeneration: dp.generation,
            sessions: effective.sessions.count,
            enabledSessions: effective.sessions.filter(\.isEnabled).count,
            sources: sources, mirrorDevice: dp.mirrorDevice, tcAttach: dp.tcAttach,
            tcxPending: dp.tcAttach == "tcx" ? dp.onClsact : nil
        )
        .withHealth(problems: dp.problems, repairs: dp.repairs)
        .withPins(dp.pins.map { ($0.state, $0.reason) })
        .withLayout(dp.layout.map { Int($0.version) }, directory: dp.layoutDirectory, movedFrom: dp.layoutMovedFrom.map { Int($0) })
        .withTargets(targetStatuses())
    }

    public func explain(_ request: ExplainRequest) throws -> ExplainResponse {
        let packet: PacketDescription
        switch request.packet.description() {
        case .failure(let e): throw AgentError.badRequest("the packet description is invalid", e.errors)
        case .success(let p): packet = p
        }
        guard effective.sources.contains(where: { $0.id == request.source }) else {
            throw AgentError(
                status: 404, "source \(request.source) not found",
                errors: [FieldError(path: "source", message: "no source '\(request.source)'")])
        }
        let oracle = Oracle.decide(
            document: effective, source: request.source, direction: request.direction,
            packet: packet, connection: request.connection ?? .new)
        var kernel: Decision?
        var note: String?
        do {
            kernel = try datapath.explain(source: request.source, direction: request.direction, packet: packet)
            if kernel == nil { note = "the \(datapath.kind) datapath cannot run packets (no kernel program loaded)" }
        } catch {
            note = "running the packet through the loaded program failed: \(error)"
        }
        let agree = kernel.map { $0.mirrored == oracle.mirrored && $0.session == oracle.session }
        return ExplainResponse(
            source: request.source, direction: request.direction, packet: packet.description,
            oracle: oracle, kernel: kernel, agree: agree, kernelNote: note, generation: generation)
    }

    /// Pushes the current policy again: after lost link events (ENOBUFS) the datapath
    /// re-resolves every source interface.
    public func resync() {
        do { try datapath.resync(document: effective, generation: generation) } catch {
            logger.error("resync failed", metadata: ["error": "\(error)"])
        }
        logSourceChanges(after: "resync")
    }

    /// A link event from the netlink monitor.
    /// Every link event goes to the datapath: a source's interface may have come or
    /// gone, or another link's MTU may have changed a path MTU (SPEC §6).
    public func linkChanged(name: String, ifindex: Int, present: Bool) {
        if effective.sources.contains(where: { $0.interface == name }) {
            logger.info(
                "source interface \(present ? "appeared" : "went away")", metadata: ["interface": "\(name)", "ifindex": "\(ifindex)"])
        }
        datapath.linkChanged(name: name, ifindex: ifindex, present: present)
        logSourceChanges(after: "link event")
    }

    // MARK: - Helpers

    /// Every session's VNI, given or assigned.
    private var effectiveVNIs: [String: Int] {
        Dictionary(effective.sessions.compactMap { s in s.vni.map { (s.id, $0) } }, uniquingKeysWith: { a, _ in a })
    }

    static func items(_ doc: JSONValue, _ kind: ObjectKind) -> [JSONValue] {
        doc[kind.documentKey]?.arrayValue ?? []
    }

    static func replacing(_ doc: JSONValue, _ kind: ObjectKind, _ items: [JSONValue]) -> JSONValue {
        (doc.isObject ? doc : .object([])).setting(kind.documentKey, .array(items))
    }

    static func effectiveItems(_ doc: Document, _ kind: ObjectKind) throws -> [JSONValue] {
        switch kind {
        case .sessions: return doc.sessions.map(DocumentEncoding.encode)
        case .filters: return doc.filters.map(DocumentEncoding.encode)
        case .targets: return doc.targets.map(DocumentEncoding.encode)
        case .sources: return doc.sources.map(DocumentEncoding.encode)
        case .securityGroups: return doc.securityGroups.map(DocumentEncoding.encode)
        case .networkAcls: return doc.networkAcls.map(DocumentEncoding.encode)
        }
    }
}
