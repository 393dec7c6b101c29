import CNetlink
import Foundation
import Logging
import MirrorCompiler
import MirrorCore

/// The agent's `Datapath` on the real kernel: MirrorDatapath (libbpf: load, pin,
/// attach, write images, test-run) plus MirrorCompiler (document → map image) plus
/// the mirror device (netlink). It only composes what those layers offer.
///
/// Stage 2 (bpf/encap.bpf.c) is attached on the mirror device's egress in
/// `start()`, after the segmenter.
public final class KernelDatapath: Datapath, @unchecked Sendable {
    public let kind = "kernel"
    // Not private: KernelDatapath+Capture.swift logs with its logger.
    let options: DatapathFactory.Options
    // Not private: KernelDatapath+Counters.swift reads counters under the same lock.
    let lock = NSLock()
    var datapath: BPFDatapath?
    private var netlink: NetlinkContext?
    private var mirrorIfindex: Int?
    var document = Document()
    var image: MapImage?
    private var slots = SlotAssignment()
    /// Interface name → ifindex for every source interface we attached to.
    private var attached: [String: Int] = [:]
    /// In tcx mode, attached interfaces whose hooks are (partly) on clsact until the
    /// background mover gives them tcx links (see `Options.tcxLinksPerApply`).
    private var onClsact: [String: Int] = [:]
    /// In tcx mode, hooks of interfaces no source uses any more, whose links the mover
    /// removes (ifindex → name): removing a live link also waits for a grace period.
    /// Until then the program runs there and finds no policy for the interface.
    private var toDetach: [Int: String] = [:]
    /// Whether the pinned links of an earlier run were compared with the sources yet.
    private var sweptPins = false
    /// Wakes the mover (`runBackgroundWork`) when hooks wait in `onClsact` or `toDetach`.
    private let moverWakeups = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    /// Where the background work's blocking steps run (see `offPool`).
    private let background = DispatchQueue(label: "mirror-agent.datapath-background")
    private var generation: UInt64 = 0
    /// Path MTU toward each collector address when the image was compiled (SPEC §6).
    private var pathMTUs: [IPAddress: Int] = [:]
    /// SPEC §10: the collectors the health checks found down, by target id.
    private var unhealthy: [String: Set<IPAddress>] = [:]
    /// Used when there is no route toward a collector (yet).
    static let defaultMTU = 1500
    /// The templates last written, by collector address (`refreshEncapTemplates`).
    private var templates: [[UInt8]: EncapTemplate] = [:]
    /// The managed neighbour entries the agent made for collector next hops (tagged
    /// CNL_NEIGH_PROTOCOL; an earlier run's are adopted at the first refresh), and the
    /// next hops already looked at (an administrator's static entry is left alone).
    private var ownNeighbours: Set<NetlinkContext.NeighbourKey> = []
    private var checkedNeighbours: Set<NetlinkContext.NeighbourKey> = []
    private var neighboursAdopted = false
    /// How long an apply that adds a collector waits for its next hop to resolve
    /// before the policy goes in force: copies sent right after `apply` are not lost
    /// to neighbor_unresolved on a healthy network (ARP/ND answers in microseconds).
    static let neighbourWait = Duration.milliseconds(300)

    /// The enforcement rules (EnforcementRenderer's text) nft last took; nil before
    /// the first apply or after a failed one.
    private var enforcedRules: String?

    var logger: Logger { options.logger }
    /// Whether the segmenter came up at start (only then is it repaired).
    private var segmenterUp = false
    /// What `repairOwnDevices` put back, by what.
    private var repairs: [String: UInt64] = [:]
    /// What is broken now and could not be put back yet, by what (status: degraded).
    private var problems: [String: String] = [:]
    /// Held from `start` (or `cleanup`) until `shutdown`.
    private var bpffsLock: OwnerLock?
    /// Judged at `start`, after the mount.
    private var pins: PinPersistence?
    private var nft: Enforcement { Enforcement(command: options.nftCommand, logger: logger) }
    /// `agentctl capture` (SPEC §11): KernelDatapath+Capture.swift.
    let capture = KernelCapture()
    /// Issue 18, "Rolling upgrades" (KernelDatapath+Layout.swift): the layout of the
    /// loaded objects, the directory its maps are pinned in, the other layouts' pins
    /// found at start (moved off during the first apply), and what was moved off.
    var layout: MapLayout?
    var layoutDirectory: String?
    var formerLayouts: [FormerLayout] = []
    var movedFrom: [UInt32] = []

    public init(options: DatapathFactory.Options) { self.options = options }

    public var ownInterfaces: Set<String> {
        let seg = SegmenterDevice.names(forMirrorDevice: options.mirrorDevice)
        return [options.mirrorDevice, seg.tx, seg.rx]
    }

    public func underlayInterfaces(for document: Document) -> [String: String] {
        lock.withLock { underlayLocked(for: document) }
    }

    /// Under `lock`. A netlink context of its own before `start` (validation of the
    /// state document at start may come first).
    private func underlayLocked(for document: Document) -> [String: String] {
        guard let nl = netlink ?? (try? NetlinkContext()) else { return [:] }
        var out: [String: String] = [:]
        for t in document.targets {
            for a in t.collectorAddresses {
                guard let oif = nl.outputInterface(to: a) else { continue }
                var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
                guard if_indextoname(UInt32(oif), &name) != nil else { continue }
                let device = String(cString: name)
                if out[device] == nil { out[device] = "\(a)" }
            }
        }
        return out
    }

    var slotsPath: String? { options.stateDirectory.map { $0 + "/datapath-slots.json" } }
    /// What the slot file holds (nil: unknown or not written yet).
    private var slotsOnDisk: SlotAssignment?

    /// Idempotent: a started datapath stays as it is.
    public func start() throws {
        try lock.withLock {
            if datapath != nil { return }
            try BPFFS.ensureMounted(options.bpffs)
            // Before anything is pinned: pins that die with the agent stop mirroring on
            // every restart or crash (issue 18), so only on request.
            let persistence = BPFFS.persistence(of: options.bpffs)
            guard persistence.outlivesAgent || !persistence.known || options.ephemeralPins else {
                throw EphemeralPinsError(persistence: persistence)
            }
            pins = persistence
            if !persistence.known {
                options.logger.warning("pins may not outlive the agent", metadata: ["why": "\(persistence.reason)"])
            } else if persistence.outlivesAgent {
                options.logger.info("pins outlive the agent", metadata: ["why": "\(persistence.reason)"])
            } else {
                options.logger.warning(
                    "--ephemeral-pins: pins die with the agent; mirroring stops on every restart until it has rebuilt them",
                    metadata: ["why": "\(persistence.reason)"])
            }
            // The pins are one owner's: a second agent on this bpffs would replace the
            // first one's programs and policy. Locked after the mount: the lock must be on
            // the bpffs every agent sees at this path, not on the directory beneath it.
            bpffsLock = try OwnerLock(directory: options.bpffs, what: "bpffs directory")
            // Pins in this layout's own directory; another layout's pins are left where
            // they are (they keep mirroring) until the first apply has filled ours.
            // The first copy waits for the TC programs only: the classifier's two are
            // verified at once, explain's test programs load after the first apply
            // (about half the time to the first copy, scripts/bench cold-start).
            // MIRROR_BENCH_SERIAL_LOAD=1: every program verified one after the other,
            // as before (scripts/bench cold-start's baseline).
            let loading: ProgramLoading =
                ProcessInfo.processInfo.environment["MIRROR_BENCH_SERIAL_LOAD"] == "1" ? .serial : .deferTests
            let objects = try loadObjects()
            let (dir, found) = try prepareLayout(objects.classify)
            do {
                datapath = try BPFDatapath(
                    pinDirectory: dir, attach: options.attachMode, object: objects.classify, encapObject: objects.encap,
                    loading: loading)
            } catch {
                throw DatapathError("load the classifier (pins in \(dir)): \(error)")
            }
            datapath?.formerPinDirectories = found.map(\.directory)
            formerLayouts = found
            // Links whose device went away while no agent ran (defunct, still pinned).
            datapath?.pruneLinks()
            clearCapturesAtStart()
            let nl = try NetlinkContext()
            netlink = nl
            let index = try MirrorDevice.ensure(nl, name: options.mirrorDevice)
            // A mirror device carrying a stage 2 whose link is not pinned under our bpffs
            // is another agent's (same netns, other pins): sharing it would put two
            // stage 2s and two segmenter programs on one path. Refused before either.
            let stageTwos = BPFDatapath.tcxPrograms(ifindex: Int32(index), hook: .egress).filter { $0 == EncapProgram.encap.rawValue }
            let ours = datapath?.isAttached(ifindex: Int32(index), hook: .egress, mode: .tcx) == true ? 1 : 0
            if stageTwos.count > ours {
                throw DatapathError(
                    "\(options.mirrorDevice) already carries another agent's stage 2 (its link is not pinned under \(options.bpffs));"
                        + " give this agent its own --mirror-device, or stop the other one")
            }
            mirrorIfindex = index
            do { try datapath?.setMirrorDevice(ifindex: UInt32(index)) } catch {
                throw DatapathError("point the classifier at \(options.mirrorDevice): \(error)")
            }
            // SPEC §10: written on every start, so a budget of an earlier run is cleared.
            do { try datapath?.setHostBudget(bitsPerSecond: options.maxMirrorBitsPerSecond ?? 0) } catch {
                throw DatapathError("set the host mirroring budget: \(error)")
            }
            // SPEC §6: GSO copies that do not fit are segmented first (Segmenter.swift); before stage 2 is attached.
            segmenterUp = Self.startSegmenter(nl, mirrorDevice: options.mirrorDevice, datapath: datapath, logger: logger)
            // Stage 2 on the mirror device's egress (the SEAM above). Over another layout's
            // pins, only once our maps hold the policy (`moveStageTwo`, first apply).
            if formerLayouts.isEmpty {
                do { try datapath?.attachEncap(interface: options.mirrorDevice) } catch {
                    throw DatapathError("attach the encapsulation stage on \(options.mirrorDevice): \(error)")
                }
            }
            if let path = slotsPath, let data = FileManager.default.contents(atPath: path) {
                do { slots = try JSONDecoder().decode(SlotAssignment.self, from: data); slotsOnDisk = slots } catch {
                    throw DatapathError("datapath slot file \(path) is corrupt (\(error)); remove it with the state or use --reset-state")
                }
            }
        }
    }

    public func apply(document: Document, generation: UInt64) throws {
        try lock.withLock { try reconcile(document, generation: generation, enforce: true) }
        preloadTestProgramsOnce()
    }

    private var testProgramsPreloaded = false
    /// After the first apply (the first copy goes first): the test programs that
    /// explain runs, verified in the background rather than at the first explain.
    private func preloadTestProgramsOnce() {
        let dp = lock.withLock { () -> BPFDatapath? in
            if testProgramsPreloaded { return nil }
            testProgramsPreloaded = true
            return datapath
        }
        if let dp { DispatchQueue.global(qos: .utility).async { dp.preloadTestPrograms() } }
    }

    public func resync(document: Document, generation: UInt64) throws {
        try lock.withLock {
            attached = [:]  // re-attach everywhere (our own link or filter is reused in place)
            try reconcile(document, generation: generation, enforce: true)
        }
    }

    /// Compiles `doc` for the interfaces present now, writes it (one atomic flip),
    /// then attaches to new interfaces and detaches from ones no source uses.
    /// `enforce`: replace the enforcement table even when its rules are the ones
    /// last applied (an operator's apply or a resync re-asserts it; a link event
    /// does not run nft when the rules did not change).
    private func reconcile(_ doc: Document, generation: UInt64, enforce: Bool = false) throws {
        guard let dp = datapath, let nl = netlink else { throw DatapathError("the kernel datapath is not started") }
        let newSlots: SlotAssignment
        do { newSlots = try SlotAssignment.assign(document: doc, previous: slots) } catch {
            throw DatapathError("assign datapath slots: \(error)")
        }
        // One listing of this namespace's links rather than one netlink query per
        // source: with thousands of sources that is most of an apply's time.
        let links = Self.interfaceIndexes()
        var present: [String: Int] = [:]
        for s in doc.sources { if let i = links[s.interface] { present[s.interface] = i } }
        let mtus = pathMTUs(doc, nl)
        let compiled: MapImage
        do {
            compiled = try Compiler.compile(
                Compiler.Input(
                    document: doc, slots: newSlots,
                    interfaceIndex: { present[$0].map(UInt32.init) },
                    pathMTU: { mtus[$0] ?? Self.defaultMTU },
                    unhealthy: { [unhealthy] in unhealthy[$0] ?? [] }))
        } catch { throw DatapathError("compile the policy: \(error)") }
        let freed = newSlots.freed(comparedTo: slots)
        // SPEC §5 enforcement (Enforcement.swift): refused before anything changes, replaced after the flip.
        let enforcement = EnforcementRenderer.render(doc)
        let enforceNow = enforce || enforcement != enforcedRules
        if enforceNow { do { try nft.check(doc) } catch { throw DatapathError("\(error)") } }
        // The new collectors' templates (and next hops) before the policy sends to them.
        refreshEncapTemplates(also: doc, wait: Self.neighbourWait)
        do {
            try dp.clearCounters(sessionSlots: freed.sessions, sourceSlots: freed.sources)
            _ = try dp.apply(compiled, mirrorIfindex: mirrorIfindex.map(UInt32.init))
        } catch { throw DatapathError("write the policy: \(error)") }
        // All or nothing (SPEC §7): nft's transaction either replaced the rules or
        // left them; when it failed, the kernel goes back to the old generation too
        // (its slot was not written), so the agent's "nothing changed" is true.
        var inForceDespite: String?
        if enforceNow {
            enforcedRules = nil
            do { try nft.apply(doc) } catch {
                do { try dp.revertApply() } catch let undo {
                    // A write that just worked failing now (never seen): the new policy
                    // stays in force, so it is finished below and reported as such.
                    inForceDespite = "\(error); flipping the kernel back to the previous policy failed too (\(undo))"
                }
                if inForceDespite == nil { throw DatapathError("\(error)") }
            }
            if inForceDespite == nil { enforcedRules = enforcement }
        }
        // Over another layout's pins: stage 2 moves to ours now that our maps hold the
        // policy, before any classifier does (KernelDatapath+Layout.swift).
        if !formerLayouts.isEmpty {
            layoutMoveReached(.filled)
            try moveStageTwo(dp, compiled, doc)
            layoutMoveReached(.stageTwo)
        }
        // The new policy is in force: from here on, failures are per interface.
        var nowAttached: [String: Int] = [:]
        var linkBudget = options.tcxLinksPerApply
        let own = ownInterfaces
        let underlay = underlayLocked(for: doc)
        for (name, index) in present {
            // The agent validates this away; a datapath driven another way still never
            // puts a classifier where stage 2 or the segmenter sits, nor on the device
            // its copies leave through.
            if own.contains(name) || underlay[name] != nil {
                logger.error(
                    "refusing to attach a classifier to the agent's own device or its underlay",
                    metadata: ["interface": "\(name)"])
                continue
            }
            // Already ours on this very link (same ifindex): the filters read the
            // policy from the maps, so nothing to do. A link that was deleted and
            // recreated has a new ifindex and is attached again.
            if attached[name] == index { nowAttached[name] = index; continue }
            do {
                var modes = Set<TCAttachMode>()
                for hook in [TCHook.ingress, .egress] {
                    let a = try dp.attach(ifindex: Int32(index), name: name, hook: hook, newLink: linkBudget > 0)
                    if a.createdLink { linkBudget -= 1 }
                    modes.insert(a.mode)
                }
                if dp.attachMode == .tcx && modes.contains(.clsact) { onClsact[name] = index } else { onClsact[name] = nil }
                toDetach[index] = nil
                nowAttached[name] = index
            } catch {
                // Vanished between lookup and attach: pending until its link event.
                logger.warning(
                    "attach failed; the source is pending until its interface changes",
                    metadata: ["interface": "\(name)", "error": "\(error)"])
            }
        }
        // Detached by ifindex unless that ifindex is now a source's (a reused index):
        // this also unpins the defunct links of devices that are gone.
        let inUse = Set(nowAttached.values)
        for (name, index) in attached where nowAttached[name] != index && !inUse.contains(index) {
            if dp.attachMode == .tcx && linkBudget <= 0 { toDetach[index] = name; continue }
            linkBudget -= 2
            try? dp.detach(ifindex: Int32(index), name: name, hook: .ingress)
            try? dp.detach(ifindex: Int32(index), name: name, hook: .egress)
        }
        if !sweptPins {
            // Links an earlier run left on interfaces that are no source now (it was
            // killed, or its last apply's removals were still queued).
            sweptPins = true
            let seg = SegmenterDevice.names(forMirrorDevice: options.mirrorDevice)
            let own = Set([options.mirrorDevice, seg.tx, seg.rx].compactMap { links[$0] })  // stage 2, the segmenter
            for index in dp.pinnedLinkIfindexes() where !inUse.contains(Int(index)) && !own.contains(Int(index)) {
                toDetach[Int(index)] = toDetach[Int(index)] ?? "ifindex \(index)"
            }
        }
        attached = nowAttached
        onClsact = onClsact.filter { nowAttached[$0.key] == $0.value }
        // Every classifier of ours runs our programs now: the other layouts' pins go.
        if !formerLayouts.isEmpty {
            layoutMoveReached(.classifiers)
            finishLayoutMove(dp)
        }
        startMoving()
        document = doc
        // The policy values are in the kernel now; explain and the metrics need only the rest.
        var retained = compiled
        retained.policies = PolicyList()
        image = retained
        pathMTUs = mtus
        slots = newSlots
        self.generation = generation
        // Written when they change (an apply that only changes settings keeps every
        // id's slot: 20,000 sessions re-encoded for nothing cost ~40 ms and an fsync).
        if let path = slotsPath, newSlots != slotsOnDisk, let data = try? JSONEncoder().encode(newSlots) {
            slotsOnDisk = (try? DurableFile.write(data, to: path)) != nil ? newSlots : nil
        }
        refreshEncapTemplates()
        refreshCaptures()
        if let inForceDespite { throw PolicyInForceError(inForceDespite) }
    }

    /// SPEC §10: kept for every later apply, and written at once into the slot in
    /// force (the document it holds is `document`, so the target indexes agree).
    public func setUnhealthyCollectors(_ down: [String: Set<IPAddress>]) {
        lock.withLock {
            guard down != unhealthy else { return }
            unhealthy = down
            guard let dp = datapath, image != nil else { return }
            do {
                let active = try dp.activeGeneration()
                guard active.generation > 0 else { return }
                try dp.writeTargetHealth(Compiler.targetHealth(document, unhealthy: { down[$0] ?? [] }), slot: active.slot)
            } catch {
                logger.error("write the collectors' health", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Writes an encapsulation template (bpf/mirror_abi.h) for every collector of the
    /// document in force (and of `also`, an apply's next document), of either family:
    /// its route and next hop (resolved, or not yet: stage 2 then drops its copies as
    /// neighbor_unresolved), or that it has no route, so that stage 2 drops and counts
    /// its copies instead of counting them as sent (SPEC §11: the counters tell the
    /// truth). A collector whose route the template cannot describe gets none: vxlan
    /// copies take the VXLAN device (counted as sent_device), the others are dropped
    /// and counted. Every next hop gets a managed neighbour entry of the agent's, so
    /// the kernel resolves and re-probes it with no copy waiting; the agent's entries
    /// no collector needs any more are deleted. `wait`: the longest time to wait for
    /// the next hops of collectors not in the document in force to resolve.
    /// Called under `lock`: at each apply, every second, and every 100 ms while a next
    /// hop is unresolved (`recheckUnresolved`).
    func refreshEncapTemplates(also next: Document? = nil, wait: Duration = .zero) {
        guard let dp = datapath, let nl = netlink else { return }
        if !neighboursAdopted, let mine = try? nl.ownNeighbours() {
            ownNeighbours.formUnion(mine)
            neighboursAdopted = true
        }
        var found: [[UInt8]: EncapTemplate] = [:]
        var wanted = Set<NetlinkContext.NeighbourKey>()
        // Collectors whose next hop the kernel only started resolving now.
        var asked = Set<[UInt8]>()
        for doc in [document] + (next.map { [$0] } ?? []) {
            for t in doc.targets {
                for a in t.collectorAddresses where found[a.bytes] == nil {
                    guard let template = lookUpTemplate(a, nl) else { continue }
                    found[a.bytes] = template
                    if let key = Self.neighbourKey(template) {
                        wanted.insert(key)
                        if ensureNeighbour(key, template, nl) { asked.insert(a.bytes) }
                    }
                }
            }
        }
        // An apply's new collectors, and those whose next hop the kernel was just
        // asked to resolve: the policy goes in force once they answer or `wait` is
        // over (a collector that stays silent costs an apply this wait only once).
        let old = Set(document.targets.flatMap { $0.collectorAddresses.map(\.bytes) })
        func waiting(_ t: EncapTemplate) -> Bool { t.state == .unresolved && (!old.contains(t.collector) || asked.contains(t.collector)) }
        let deadline = ContinuousClock.now + wait
        while found.values.contains(where: waiting), ContinuousClock.now < deadline {
            usleep(5_000)
            for (bytes, t) in found where waiting(t) {
                if let again = lookUpTemplate(Self.address(bytes), nl) { found[bytes] = again }
            }
        }
        writeTemplates(found, dp)
        for key in ownNeighbours.subtracting(wanted) {
            do { try nl.deleteOwnNeighbour(key) } catch {
                logger.warning("delete the agent's neighbour entry", metadata: ["error": "\(error)"])
                continue
            }
            ownNeighbours.remove(key)
        }
        checkedNeighbours.formIntersection(wanted)
    }

    /// Looks again only at the collectors whose next hop was unresolved, and writes
    /// the templates when one resolved: their copies are sent again within ~100 ms of
    /// the kernel's answer. Called under `lock`.
    private func recheckUnresolved() {
        guard let dp = datapath, let nl = netlink, templates.values.contains(where: { $0.state == .unresolved }) else { return }
        var found = templates, changed = false
        for (bytes, t) in templates where t.state == .unresolved {
            guard let again = lookUpTemplate(Self.address(bytes), nl), again != t else { continue }
            found[bytes] = again
            changed = true
        }
        if changed { writeTemplates(found, dp) }
    }

    private func writeTemplates(_ found: [[UInt8]: EncapTemplate], _ dp: BPFDatapath) {
        do {
            try dp.setEncapTemplates(Array(found.values))
            templates = found
        } catch {
            logger.warning("write the encapsulation templates", metadata: ["error": "\(error)"])
        }
    }

    /// The template toward `a`, nil when the route is one the template cannot describe.
    private func lookUpTemplate(_ a: IPAddress, _ nl: NetlinkContext) -> EncapTemplate? {
        let n = a.bytes.count
        func template(_ p: cnl_encap_path, _ state: EncapTemplate.State) -> EncapTemplate {
            EncapTemplate(
                collector: a.bytes, source: withUnsafeBytes(of: p.src_ip) { Array($0.prefix(n)) },
                nextHop: withUnsafeBytes(of: p.nexthop) { Array($0.prefix(n)) },
                sourceMAC: withUnsafeBytes(of: p.src_mac) { Array($0) },
                nextHopMAC: withUnsafeBytes(of: p.dst_mac) { Array($0) },
                ifindex: UInt32(p.oif), state: state)
        }
        switch nl.encapPath(to: a) {
        case .resolved(let p): return template(p, .resolved)
        case .unresolved(let p): return template(p, .unresolved)
        case .noRoute: return EncapTemplate(collector: a.bytes, state: .noRoute)
        case .unknown: return nil
        }
    }

    /// The address of `bytes` (4 or 16, network order), as IPAddress.bytes gives them.
    static func address(_ bytes: [UInt8]) -> IPAddress {
        bytes.count == 4 ? .v4(bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) : .v6(bytes)
    }

    static func neighbourKey(_ t: EncapTemplate) -> NetlinkContext.NeighbourKey? {
        guard t.state != .noRoute, t.ifindex != 0, !t.nextHop.isEmpty else { return nil }
        return .init(ifindex: Int32(t.ifindex), address: t.nextHop)
    }

    /// A managed entry for the next hop, once (and again whenever it is unresolved:
    /// someone may have deleted it). Left alone when it is someone else's. True when
    /// the entry was made now (the kernel has just started resolving it).
    private func ensureNeighbour(_ key: NetlinkContext.NeighbourKey, _ t: EncapTemplate, _ nl: NetlinkContext) -> Bool {
        guard t.state == .unresolved || !checkedNeighbours.contains(key) else { return false }
        do {
            let owner = try nl.ensureManagedNeighbour(key)
            if owner != .theirs { ownNeighbours.insert(key) }
            checkedNeighbours.insert(key)
            return owner == .madeNow
        } catch {
            logger.warning(
                "add a managed neighbour entry for a collector's next hop", metadata: ["ifindex": "\(key.ifindex)", "error": "\(error)"])
            return false
        }
    }

    /// Name → ifindex of every link in this network namespace (if_nameindex(3)).
    static func interfaceIndexes() -> [String: Int] {
        var out: [String: Int] = [:]
        guard let list = if_nameindex() else { return out }
        defer { if_freenameindex(list) }
        var p = list
        while p.pointee.if_index != 0 {
            out[String(cString: p.pointee.if_name)] = Int(p.pointee.if_index)
            p += 1
        }
        return out
    }

    /// The path MTU toward every collector of `doc`, from the routing table.
    private func pathMTUs(_ doc: Document, _ nl: NetlinkContext) -> [IPAddress: Int] {
        var out: [IPAddress: Int] = [:]
        for t in doc.targets { for a in t.collectorAddresses where out[a] == nil { out[a] = (try? nl.pathMTU(to: a)) ?? nil } }
        return out
    }

    /// Wakes the mover when hooks wait for it. Caller holds the lock.
    private func startMoving() {
        if !onClsact.isEmpty || !toDetach.isEmpty { moverWakeups.continuation.yield() }
    }

    /// The encapsulation templates every second (next hops change; every 100 ms those
    /// whose next hop is unresolved) and the mover,
    /// until cancelled.
    public func runBackgroundWork() async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                var tick = 0
                while (try? await Task.sleep(for: .milliseconds(100))) != nil {
                    tick += 1
                    let full = tick % 10 == 0
                    await self.offPool {
                        self.lock.withLock {
                            if full {
                                self.repairOwnDevices()
                                self.refreshEncapTemplates()
                            } else {
                                self.recheckUnresolved()
                            }
                        }
                    }
                }
            }
            group.addTask { await self.moveHooks() }
        }
    }

    /// Puts back the devices and programs stage 2 needs when someone removed them: the
    /// mirror device (deleted: every copy would be lost as clone_failed), stage 2 on its
    /// egress (detached or unpinned), the maps' pins and the segmenter pair. Each repair is logged and
    /// counted; what cannot be put back is a problem `status` reports until it can.
    /// Called under `lock`, every second and on a link event of one of these devices.
    private func repairOwnDevices() {
        guard let dp = datapath, let nl = netlink else { return }
        func repaired(_ what: String, _ detail: String) {
            repairs[what, default: 0] += 1
            problems[what] = nil
            logger.warning("repaired the agent's own \(what.replacingOccurrences(of: "_", with: " "))", metadata: ["what": "\(detail)"])
        }
        func broken(_ what: String, _ error: Error) {
            if problems[what] == nil { logger.error("cannot repair the agent's \(what)", metadata: ["error": "\(error)"]) }
            problems[what] = "\(error)"
        }
        let index = Int(if_nametoindex(options.mirrorDevice))
        if index == 0 || index != mirrorIfindex {
            do {
                let new = try MirrorDevice.ensure(nl, name: options.mirrorDevice)
                mirrorIfindex = new
                try dp.setMirrorDevice(ifindex: UInt32(new))
                try dp.attachEncap(interface: options.mirrorDevice)
                repaired("mirror_device", "\(options.mirrorDevice) was gone; made again with stage 2 on it")
            } catch { broken("mirror_device", error) }
        } else if !dp.isAttached(ifindex: Int32(index), hook: .egress) {
            do {
                try dp.attachEncap(interface: options.mirrorDevice)
                repaired("encap_program", "stage 2 was no longer on \(options.mirrorDevice)'s egress")
            } catch { broken("encap_program", error) }
        } else {
            problems["mirror_device"] = nil
            problems["encap_program"] = nil
        }
        let repinned = dp.repinMissingMaps()
        if !repinned.isEmpty { repaired("pins", "pinned again: \(repinned.joined(separator: ", "))") }
        let seg = SegmenterDevice.names(forMirrorDevice: options.mirrorDevice)
        if segmenterUp && (if_nametoindex(seg.tx) == 0 || if_nametoindex(seg.rx) == 0) {
            if Self.startSegmenter(nl, mirrorDevice: options.mirrorDevice, datapath: dp, logger: logger) {
                repaired("segmenter", "\(seg.tx)/\(seg.rx) were gone; made again")
            } else {
                broken("segmenter", DatapathError("the segmenter pair \(seg.tx)/\(seg.rx) could not be made again"))
            }
        }
    }

    /// Moves the hooks in `onClsact` to tcx links, one interface at a time, each under
    /// the lock (two grace periods, ~25 ms), so applies and reads wait at most that.
    private func moveHooks() async {
        for await _ in moverWakeups.stream {
            // Each link holds rtnl through a grace period: the pause lets the host's
            // other rtnl users (VM interfaces coming and going) in between.
            while !Task.isCancelled, await offPool({ self.lock.withLock { self.moveOne() } }) {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    /// Runs a blocking step of the background work on the datapath's own thread and
    /// waits for it there, not on one of Swift's cooperative threads (as many as cores,
    /// two on the hosts we run on): the step waits for `lock` while an apply holds it
    /// and in the kernel for RCU grace periods, and would stall the agent's requests.
    private func offPool<T: Sendable>(_ step: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { c in background.async { c.resume(returning: step()) } }
    }

    /// One interface from clsact to tcx, or one unused interface's links removed;
    /// false when nothing is left.
    private func moveOne() -> Bool {
        guard let dp = datapath else { return false }
        if onClsact.isEmpty, let (index, name) = toDetach.first {
            toDetach[index] = nil
            if !attached.values.contains(index) {
                try? dp.detach(ifindex: Int32(index), name: name, hook: .ingress)
                try? dp.detach(ifindex: Int32(index), name: name, hook: .egress)
            }
            return true
        }
        guard let (name, index) = onClsact.first else { return false }
        onClsact[name] = nil
        guard attached[name] == index else { return true }
        do {
            // A new link first, then our filter goes (attachTCX): no packet unmirrored.
            for hook in [TCHook.ingress, .egress] { try dp.attach(ifindex: Int32(index), name: name, hook: hook) }
            // The qdisc too when we made it and nobody else filters there: an empty clsact still costs.
            if dp.createdClsact(ifindex: Int32(index)), (try? netlink?.clsactFilterCount(ifindex: index)) == 0 {
                dp.destroyCreatedClsact(ifindex: Int32(index))
            }
        } catch {
            // It stays on clsact (still mirrored); said once.
            logger.warning("move to tcx failed; the interface stays on clsact", metadata: ["interface": "\(name)", "error": "\(error)"])
        }
        return true
    }

    public func linkChanged(name: String, ifindex: Int, present: Bool) {
        lock.withLock {
            if ownInterfaces.contains(name) {
                repairOwnDevices()
                return
            }
            // A rename: a link we attached to under another name. That name is gone (its
            // source is pending until a link has it again); the program leaves the link,
            // which is no source's under its new name unless a source names it.
            if present, let old = attached.first(where: { $0.value == ifindex && $0.key != name })?.key, let dp = datapath {
                attached[old] = nil
                onClsact[old] = nil
                try? dp.detach(ifindex: Int32(ifindex), name: old, hook: .ingress)
                try? dp.detach(ifindex: Int32(ifindex), name: old, hook: .egress)
                logger.notice(
                    "source interface renamed; detached until its name exists again",
                    metadata: ["interface": "\(old)", "now": "\(name)"])
                do { try reconcile(document, generation: generation) } catch {
                    logger.error("re-apply after an interface was renamed", metadata: ["interface": "\(old)", "error": "\(error)"])
                }
                return
            }
            guard document.sources.contains(where: { $0.interface == name }) else {
                // Another link (the underlay?) changed: recompile only if a path MTU moved.
                if let nl = netlink, datapath != nil, pathMTUs(document, nl) != pathMTUs {
                    do { try reconcile(document, generation: generation) } catch {
                        logger.error("re-apply after a path MTU change", metadata: ["error": "\(error)"])
                    }
                }
                return
            }
            if present && attached[name] == ifindex { return }
            if !present && attached[name] == nil { return }
            if !present { onClsact[name] = nil }
            if !present, let old = attached.removeValue(forKey: name), let dp = datapath {
                // Its clsact filters went with it; a tcx link stays pinned, defunct, until unpinned.
                try? dp.detach(ifindex: Int32(old), name: name, hook: .ingress)
                try? dp.detach(ifindex: Int32(old), name: name, hook: .egress)
            }
            do { try reconcile(document, generation: generation) } catch {
                logger.error("re-apply after an interface changed", metadata: ["interface": "\(name)", "error": "\(error)"])
            }
        }
    }

    public func status(verified: Bool) -> DatapathStatus {
        lock.withLock {
            var live: [String: Int] = [:]
            if !verified {
                live = attached
            } else if let dp = datapath {
                for (name, index) in attached
                where dp.isAttached(ifindex: Int32(index), hook: .ingress) && dp.isAttached(ifindex: Int32(index), hook: .egress) {
                    live[name] = index
                }
            }
            var st = DatapathStatus(
                loaded: datapath != nil, generation: generation, attached: live,
                mirrorDevice: mirrorIfindex == nil ? nil : options.mirrorDevice,
                tcAttach: datapath?.attachMode.rawValue, onClsact: onClsact.count)
            st.repairs = repairs
            st.pins = pins
            st.layout = layout
            st.layoutDirectory = layoutDirectory
            st.layoutMovedFrom = movedFrom
            st.problems = problems.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            return st
        }
    }

    public func explain(source: String, direction: Direction, packet: PacketDescription) throws -> Decision? {
        try lock.withLock {
            guard let dp = datapath, let image else { return nil }
            guard let src = document.sources.first(where: { $0.id == source }) else { return nil }
            guard let ifindex = attached[src.interface] else {
                throw DatapathError("interface \(src.interface) of source \(source) is not present: no kernel policy to run")
            }
            let frame = FrameBuilder.frame(for: packet)
            let raw: BPFDatapath.TestRunResult
            do { raw = try dp.testRun(.test(direction), frame: frame, mark: UInt32(ifindex)) } catch {
                throw DatapathError("BPF_PROG_TEST_RUN: \(error)")
            }
            return Self.decision(Verdict(raw.retval), image: image, direction: direction, ifindex: UInt32(ifindex))
        }
    }

    /// A verdict of the test program in the oracle's terms.
    static func decision(_ v: Verdict, image: MapImage, direction: Direction, ifindex: UInt32 = 0) -> Decision {
        let info = image.rules[RuleKey(sessionSlot: v.sessionSlot, direction: direction, ruleIndex: v.ruleIndex)]
        let ref = info.map { Decision.RuleRef(filter: $0.filterID, direction: direction, priority: $0.priority, action: $0.action) }
        switch v.outcome {
        case .accept:
            return Decision(
                mirrored: true, session: info?.sessionID, rule: ref, reason: .accepted, tried: [],
                explanation: "kernel: mirrored by session \(info?.sessionID ?? "?") via \(direction) rule \(info?.priority ?? 0)")
        case .reject:
            return Decision(
                mirrored: false, session: info?.sessionID, rule: ref, reason: .rejectedByRule, tried: [],
                explanation: "kernel: rejected by session \(info?.sessionID ?? "?") \(direction) rule \(info?.priority ?? 0)")
        case .notIP:
            return Decision(mirrored: false, session: nil, rule: nil, reason: .notIP, tried: [], explanation: "kernel: not IP")
        case .sessionDisabled:
            return Decision(
                mirrored: false, session: info?.sessionID, rule: ref, reason: .sessionDisabled, tried: [],
                explanation:
                    "kernel: not mirrored: session \(info?.sessionID ?? "?") would mirror it via \(direction) rule \(info?.priority ?? 0) but is disabled"
            )
        case .suppressedBySecurityGroup, .suppressedByAcl:
            // SPEC §5: the group/ACL and rule, as the oracle says it.
            let s = v.security?.suppression(in: image, ifindex: ifindex, direction: direction)
            let sg = v.outcome == .suppressedBySecurityGroup
            let which = (s?.id.map { " \($0)" } ?? "") + (s?.rulePriority.map { " rule \($0)" } ?? " (no rule matched: default deny)")
            return Decision(
                mirrored: false, session: nil, rule: nil, reason: sg ? .suppressedBySecurityGroup : .suppressedByAcl,
                tried: [], suppression: s,
                explanation: "kernel: not mirrored: dropped by \(sg ? "security group" : "network ACL")\(which)")
        case .noMatch, .noPolicy, .copy, .unknown:
            return Decision(
                mirrored: false, session: nil, rule: nil, reason: .noMatch, tried: [],
                explanation: "kernel: not mirrored (\(v.outcome))")
        }
    }

    public func shutdown() {
        lock.withLock {
            // A mover still running stops at its next step (no datapath); the rest stay on
            // clsact and the next agent moves them (and removes the unused links it finds).
            onClsact = [:]
            toDetach = [:]
            stopCaptures()
            // Programs stay attached and maps pinned (SPEC §7: mirroring goes on).
            datapath?.close()
            datapath = nil
            netlink = nil
            bpffsLock?.release()
            bpffsLock = nil
        }
    }

    /// Detaches our filters (fixed handle and priority: only ours) from every
    /// interface, unpins the maps and removes the mirror device and the segmenter.
    public func cleanup() throws {
        try lock.withLock {
            var problems: [String] = []
            let isBPFFS = BPFFS.isMounted(options.bpffs)
            // Before anything changes: never from under an agent that owns these pins.
            let owner = isBPFFS ? try OwnerLock(directory: options.bpffs, what: "bpffs directory") : nil
            defer { owner?.release() }
            // First: it does not depend on loading the classifier below.
            do { try nft.remove() } catch { problems.append("\(error)") }
            // Every layout's pins go (issue 18): ours through the loaded object, the
            // others' links through `formerPinDirectories`, then their directories.
            let layouts = isBPFFS ? Self.layoutDirectories(in: options.bpffs) : []
            let dp: BPFDatapath
            do {
                let objects = try loadObjects()
                let version = try BPFDatapath.layout(of: objects.classify).version
                let own = isBPFFS ? options.bpffs + "/" + MapLayout.directoryName(version) : nil
                if let own, mkdir(own, 0o700) != 0 && errno != EEXIST {
                    throw DatapathError("create \(own)", errno: errno)
                }
                // Cleaning up never runs the test programs.
                dp = try BPFDatapath(pinDirectory: own, object: objects.classify, encapObject: objects.encap, loading: .deferTests)
                dp.formerPinDirectories = layouts.map(\.directory).filter { $0 != own }
            } catch {
                throw DatapathError("load the classifier to clean up: \(error)")
            }
            defer { dp.close() }
            // Whichever way an agent attached (tcx links or clsact filters), nothing stays.
            let nl = try? NetlinkContext()
            for (name, i) in Self.interfaceIndexes() {
                let index = Int32(i)
                var hadFilter = false
                for hook in [TCHook.ingress, .egress]
                where dp.isAttached(ifindex: index, hook: hook, mode: .clsact) || dp.isAttached(ifindex: index, hook: hook, mode: .tcx) {
                    hadFilter = hadFilter || dp.isAttached(ifindex: index, hook: hook, mode: .clsact)
                    do { try dp.detach(ifindex: index, name: name, hook: hook) } catch { problems.append("\(error)") }
                }
                // The clsact qdisc our filters sat on, when nothing else filters there now:
                // which agent made it is not recorded across restarts, and an empty clsact
                // still costs every packet a hook dispatch.
                if hadFilter, (try? nl?.clsactFilterCount(ifindex: i)) == 0 { dp.destroyClsact(ifindex: index) }
            }
            if isBPFFS {
                dp.pruneLinks(all: true)
                dp.unpinMaps()
                if let own = dp.pinDirectory { rmdir(own) }
                for former in layouts where former.directory != dp.pinDirectory {
                    do { try Self.removePins(of: former) } catch { problems.append("\(error)") }
                }
            }
            if let path = slotsPath { unlink(path); slotsOnDisk = nil }
            do {
                let nl = try NetlinkContext()
                if try MirrorDevice.remove(nl, name: options.mirrorDevice) {
                    logger.info("removed mirror device", metadata: ["device": "\(options.mirrorDevice)"])
                }
                // The managed neighbour entries made for collector next hops (only ours).
                for key in try nl.ownNeighbours() { try nl.deleteOwnNeighbour(key) }
                if try SegmenterDevice.remove(nl, mirrorDevice: options.mirrorDevice) {
                    logger.info(
                        "removed segmenter", metadata: ["device": "\(SegmenterDevice.names(forMirrorDevice: options.mirrorDevice).tx)"])
                }
            } catch {
                problems.append("devices of \(options.mirrorDevice): \(error)")
            }
            guard problems.isEmpty else { throw DatapathError(problems.joined(separator: "; ")) }
        }
    }
}
