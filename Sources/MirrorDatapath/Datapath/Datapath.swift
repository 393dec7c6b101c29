import Foundation
import MirrorCore

/// What the agent needs from a datapath. The agent validates, assigns VNIs and
/// persists before calling `apply`; the datapath compiles and swaps (SPEC §8: atomic).
///
/// Two implementations: `KernelDatapath` (libbpf, netlink, nft) and
/// `InMemoryDatapath` (the same bookkeeping without a kernel, for tests and
/// `--datapath memory`); `DatapathFactory` picks one.
public protocol Datapath: AnyObject, Sendable {
    /// "kernel" or "memory", shown by `status`.
    var kind: String { get }

    /// The devices the datapath made and hooks itself (the mirror device, the
    /// segmenter pair): never a source, since a classifier link there would take the
    /// place of stage 2 or of the segmenter.
    var ownInterfaces: Set<String> { get }

    /// The underlay devices copies for `document`'s collectors leave through now (the
    /// route's output device), by name → the collector that routes there. Never a
    /// source (issue 22): every copy would cross the source it came from. A device
    /// behind them (a bridge port, a collector VM's tap) may still be mirrored; copies
    /// crossing it are never classified again (SPEC §6).
    func underlayInterfaces(for document: Document) -> [String: String]

    /// Load or adopt pinned programs and maps, create the mirror device. Called once
    /// at start, before the first `apply`.
    func start() throws

    /// Make the datapath mirror exactly `document` (a validated document whose every
    /// session has its effective `vni`). All or nothing: on a throw the previous
    /// policy stays in force, except with `PolicyInForceError`.
    func apply(document: Document, generation: UInt64) throws

    /// `apply` after the datapath may have missed changes (lost link events): also
    /// re-attaches to every present interface, in case a filter was removed behind
    /// its back. `apply` leaves interfaces it already attached alone.
    func resync(document: Document, generation: UInt64) throws

    /// An interface appeared (or changed ifindex) or disappeared: attach or detach the
    /// sources that use it (SPEC §7 pending → attached).
    func linkChanged(name: String, ifindex: Int, present: Bool)

    /// With `verified`, each attachment is checked in the kernel (one netlink query
    /// per hook); without, it is what the datapath itself did (cheap: for logging
    /// state changes after every apply).
    func status(verified: Bool) -> DatapathStatus

    /// The loaded program's decision for the packet (BPF_PROG_TEST_RUN), or nil when
    /// this datapath cannot run packets (see `DatapathStatus.loaded`).
    func explain(source: String, direction: Direction, packet: PacketDescription) throws -> Decision?

    /// The datapath's own periodic and background work (the kernel's: moving hooks from
    /// clsact to tcx links, refreshing the encapsulation templates every second) until
    /// the calling task is cancelled; returns at once when it has none. Called once,
    /// after `start`; `shutdown` comes after it has returned.
    ///
    /// Plain task cancellation rather than swift-service-lifecycle's graceful shutdown:
    /// the agent decides when the process stops (MirrorAgent wraps this in its
    /// `AgentService`), and the kernel layer needs nothing more than "stop now".
    func runBackgroundWork() async

    /// Agent stop: release handles, leave pinned programs attached (SPEC §7: mirroring
    /// continues while the agent restarts).
    func shutdown()

    /// `mirror-agent cleanup`: remove everything the agent ever put in the kernel.
    func cleanup() throws

    /// SPEC §10: the collectors the health checks found down, by target id (a target
    /// absent: all its collectors healthy). Stage 2 sends them no copies from now on,
    /// and every later apply keeps them out until they are reported healthy.
    func setUnhealthyCollectors(_ down: [String: Set<IPAddress>])

    /// The datapath's counters with the labels of the policy in force, read
    /// consistently with it (slots cleared by an apply are never shown under the old
    /// labels); nil when this datapath counts nothing. See MetricsSnapshot.swift.
    func counters() throws -> DatapathCounters?

    /// SPEC §11 (`agentctl capture`, CaptureSelector.swift): the classifier hands over what
    /// `captures` (capture number 0..<MIRROR_MAX_CAPTURES → what it takes) mirror,
    /// replacing the set before; an empty set stops all. The packets go to `sink` in
    /// batches, on the datapath's reader thread; a capture number that left the set
    /// gets what was still in the ring before this returns. Throws
    /// `CaptureUnavailable` where nothing is mirrored (the memory datapath).
    func setCaptures(_ captures: [Int: CaptureSelector], sink: @escaping @Sendable ([CapturedPacket]) -> Void) throws

    /// Per capture number, what the kernel handed over and lost (a full ring).
    func captureCounters() throws -> [CaptureCounters]
}

extension Datapath {
    public func counters() throws -> DatapathCounters? { nil }
    public var ownInterfaces: Set<String> { [] }
    public func setUnhealthyCollectors(_ down: [String: Set<IPAddress>]) {}
    public func underlayInterfaces(for document: Document) -> [String: String] { [:] }
    public func runBackgroundWork() async {}
}

public struct DatapathStatus: Hashable, Sendable {
    public var loaded: Bool
    public var generation: UInt64
    /// Interfaces with programs attached on both directions, by name → ifindex.
    public var attached: [String: Int]
    public var mirrorDevice: String?
    /// How programs sit on the hooks: "tcx" or "clsact" (nil: no kernel datapath).
    public var tcAttach: String?
    /// In tcx mode: attached interfaces still on clsact, waiting for their tcx links.
    public var onClsact: Int
    /// The datapath's own devices and programs it put back after someone removed
    /// them, by what (mirror_device, encap_program, segmenter).
    public var repairs: [String: UInt64] = [:]
    /// What is broken and not yet repaired, each "what: why"; empty when healthy.
    public var problems: [String] = []
    /// Whether the pins outlive the agent (kernel datapath; nil elsewhere).
    public var pins: PinPersistence?
    /// Issue 18, "Rolling upgrades": the map layout of the loaded objects, the
    /// directory its pins are in, and the layouts moved off at start (0: the
    /// unversioned pins of older agents). Kernel datapath only.
    public var layout: MapLayout?
    public var layoutDirectory: String?
    public var layoutMovedFrom: [UInt32] = []
    public init(
        loaded: Bool, generation: UInt64, attached: [String: Int], mirrorDevice: String?, tcAttach: String? = nil,
        onClsact: Int = 0
    ) {
        self.loaded = loaded; self.generation = generation; self.attached = attached; self.mirrorDevice = mirrorDevice
        self.tcAttach = tcAttach; self.onClsact = onClsact
    }
}

/// An apply failed after the new policy was put in force and could not be undone:
/// the new policy is what runs, so the agent keeps it as the applied state and
/// reports the failure.
public struct PolicyInForceError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Datapath {
    public func resync(document: Document, generation: UInt64) throws { try apply(document: document, generation: generation) }
}
