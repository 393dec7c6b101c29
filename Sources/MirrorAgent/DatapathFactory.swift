import Foundation

/// Where the agent gets its datapath.
///
/// SEAM(datapath): when MirrorDatapath lands, `.kernel` returns its libbpf-backed
/// `Datapath` built from these options (bpffs pin dir, mirror device name), and
/// `.automatic` prefers it. Until then `.kernel` fails with a clear message and
/// `.automatic` falls back to the in-memory datapath.
public enum DatapathFactory {
    public enum Choice: String, CaseIterable, Sendable { case automatic, kernel, memory }

    public struct Options: Sendable {
        public var bpffs: String
        public var mirrorDevice: String
        public init(bpffs: String, mirrorDevice: String = "mirror0") {
            self.bpffs = bpffs; self.mirrorDevice = mirrorDevice
        }
    }

    public static func make(_ choice: Choice, options: Options) throws -> Datapath {
        switch choice {
        case .memory, .automatic:
            return InMemoryDatapath()
        case .kernel:
            throw DatapathError("the kernel datapath is not built into this agent yet (MirrorDatapath not wired)")
        }
    }
}
