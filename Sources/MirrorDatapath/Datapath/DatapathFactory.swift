import Foundation
import Logging

/// tcx links or clsact filters.
public typealias TCAttachMode = BPFDatapath.AttachMode

/// Where the agent gets its datapath: `.kernel` is `KernelDatapath` (libbpf through
/// MirrorDatapath), `.memory` the no-kernel `InMemoryDatapath`, which mirrors nothing
/// (tests ask for it by name). `.automatic` is the kernel one: it is still accepted
/// from command lines that name it, but it no longer falls back to memory, since an
/// agent that accepts applies and mirrors nothing looks healthy and is not.
public enum DatapathFactory {
    public enum Choice: String, CaseIterable, Sendable { case automatic, kernel, memory }

    public struct Options: Sendable {
        public var bpffs: String
        public var mirrorDevice: String
        /// Where the datapath keeps its own small state (counter slots); nil = nowhere.
        public var stateDirectory: String?
        /// tcx or clsact; nil: tcx when the kernel has it.
        public var attachMode: TCAttachMode?
        /// In tcx mode, how many new tcx links one apply creates before it attaches the
        /// remaining hooks through clsact and moves them to tcx in the background (each
        /// new link costs an RCU grace period, ~12 ms here).
        public var tcxLinksPerApply: Int
        /// The nft command of enforcement (`Enforcement.command`); nil: the installed nft.
        public var nftCommand: [String]?
        /// Start even when the pins would die with the agent (`PinPersistence`).
        public var ephemeralPins: Bool
        /// SPEC §10: the host's mirroring budget in bits a second (`--max-mirror-bps`);
        /// nil: none.
        public var maxMirrorBitsPerSecond: UInt64?
        /// Load the BPF objects from this directory (`classify.bpf.o`, `encap.bpf.o`)
        /// instead of the embedded ones: an object of another map layout (the rolling
        /// upgrade test); nil: the embedded objects.
        public var bpfObjectDirectory: String?
        /// What the datapath reports that does not fail a call (an interface that
        /// vanished before its attach, a template that did not resolve).
        public var logger: Logger
        public init(
            bpffs: String, mirrorDevice: String = "mirror0", stateDirectory: String? = nil,
            attachMode: TCAttachMode? = nil, tcxLinksPerApply: Int = 32, nftCommand: [String]? = nil,
            ephemeralPins: Bool = false, logger: Logger = Logger(label: "mirror-agent.datapath")
        ) {
            self.ephemeralPins = ephemeralPins
            self.bpffs = bpffs; self.mirrorDevice = mirrorDevice; self.stateDirectory = stateDirectory
            self.attachMode = attachMode; self.tcxLinksPerApply = tcxLinksPerApply
            self.nftCommand = nftCommand; self.logger = logger
        }
    }

    public static func make(_ choice: Choice, options: Options) throws -> Datapath {
        switch choice {
        case .memory: return InMemoryDatapath()
        case .kernel, .automatic: return KernelDatapath(options: options)
        }
    }
}
