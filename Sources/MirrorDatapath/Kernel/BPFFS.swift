import Foundation

/// The bpffs directory for pins (mounted there when it is not one).
enum BPFFS {
    /// Whether `path` lies on a bpf filesystem: the longest mount point containing it
    /// (from /proc/self/mounts) has type bpf.
    static func isMounted(_ path: String) -> Bool {
        guard let resolved = realpath(path, nil) else { return false }
        let real = String(cString: resolved)
        free(resolved)
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        var best: (point: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 3 else { continue }
            let point = f[1].replacingOccurrences(of: "\\040", with: " ")
            let inside = real == point || real.hasPrefix(point.hasSuffix("/") ? point : point + "/")
            if inside && point.count >= (best?.point.count ?? -1) { best = (point, String(f[2])) }
        }
        return best?.type == "bpf"
    }

    static func ensureMounted(_ path: String) throws {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw DatapathError("create bpffs directory \(path): \(error.localizedDescription)")
        }
        if isMounted(path) { return }
        guard mount("bpf", path, "bpf", 0, nil) == 0 else {
            throw DatapathError("mount bpffs on \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// Whether the pins under `--bpffs` outlive the agent (issue 18: "pins must outlive
/// the agent"), and why.
///
/// Pins live as long as some mount of their bpf filesystem does. Started under
/// `ip netns exec` (a private mount namespace) with a `--bpffs` directory that is not
/// yet a bpffs, the agent mounts one that only its own namespace has: when the agent
/// dies the namespace goes, and with it the pins, the programs and mirroring. The
/// host's mount namespace is taken to be PID 1's (hence `hostPID: true` in the
/// Kubernetes DaemonSet: in a PID namespace of its own, PID 1 is not the host's init).
public struct PinPersistence: Hashable, Sendable, CustomStringConvertible {
    public var outlivesAgent: Bool
    /// False when PID 1's mount table cannot be read (without CAP_SYS_PTRACE, a
    /// process with fewer capabilities than PID 1 may not): the agent then starts,
    /// warns, and its status says "unknown"; it refuses only pins known to die with it.
    public var known: Bool
    /// Why, in operator words.
    public var reason: String
    public init(outlivesAgent: Bool, known: Bool = true, reason: String) {
        self.outlivesAgent = outlivesAgent; self.known = known; self.reason = reason
    }
    public var description: String { reason }
    /// "persistent", "ephemeral" or "unknown" (agentctl status).
    public var state: String { !known ? "unknown" : outlivesAgent ? "persistent" : "ephemeral" }
}

/// The agent refuses to start on pins that die with it unless told `--ephemeral-pins`.
public struct EphemeralPinsError: Error, CustomStringConvertible {
    public var persistence: PinPersistence
    public var description: String {
        "\(persistence.reason); refusing to start, as a restart or crash would stop all mirroring until a new agent rebuilt it."
            + " Mount a bpffs there in the host's mount namespace first (mount -t bpf bpf DIR, or use /sys/fs/bpf),"
            + " or pass --ephemeral-pins to accept pins that die with the agent"
    }
}

extension BPFFS {
    /// One line of /proc/PID/mountinfo, the fields this needs.
    struct MountInfo: Equatable {
        var device: String  // "major:minor": one bpffs instance (superblock) each
        var mountPoint: String
        var fsType: String

        /// `36 35 0:41 / /sys/fs/bpf rw,nosuid shared:9 - bpf bpf rw,mode=700`
        init?(_ line: Substring) {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 7, let dash = f.firstIndex(of: "-"), dash + 1 < f.count, dash >= 6 else { return nil }
            device = String(f[2])
            mountPoint = BPFFS.unescape(String(f[4]))
            fsType = String(f[dash + 1])
        }
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
                let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func mounts(_ text: String) -> [MountInfo] { text.split(separator: "\n").compactMap(MountInfo.init) }

    /// The mount that holds `realPath`: the last of the longest mount points containing it.
    static func mountHolding(_ realPath: String, in mounts: [MountInfo]) -> MountInfo? {
        var best: MountInfo?
        for m in mounts {
            let p = m.mountPoint
            let inside = realPath == p || p == "/" || realPath.hasPrefix(p + "/")
            if inside && p.count >= (best?.mountPoint.count ?? -1) { best = m }
        }
        return best
    }

    /// The judgement, from what /proc says (pure, for tests): `selfNamespace` and
    /// `hostNamespace` are the links of /proc/self/ns/mnt and /proc/1/ns/mnt (nil:
    /// unreadable), the mountinfo texts of both (host nil: unreadable).
    static func persistence(
        path: String, realPath: String, selfNamespace: String?, hostNamespace: String?, selfMounts: String, hostMounts: String?
    ) -> PinPersistence {
        guard let ours = mountHolding(realPath, in: mounts(selfMounts)), ours.fsType == "bpf" else {
            return PinPersistence(outlivesAgent: false, reason: "\(path) is not on a bpf filesystem")
        }
        if let s = selfNamespace, s == hostNamespace {
            return PinPersistence(
                outlivesAgent: true,
                reason: "the bpffs at \(ours.mountPoint) (holding \(path)) is mounted in the host's mount namespace: pins outlive the agent"
            )
        }
        // The namespace links need ptrace access to PID 1, which a sandbox may deny
        // while its mountinfo stays readable: the device comparison decides then.
        guard let hostMounts else {
            return PinPersistence(
                outlivesAgent: false, known: false,
                reason:
                    "cannot tell whether the bpffs at \(ours.mountPoint) outlives the agent: the host's mount table (/proc/1/mountinfo) cannot be read (CAP_SYS_PTRACE lets it)"
            )
        }
        if let shared = mounts(hostMounts).first(where: { $0.fsType == "bpf" && $0.device == ours.device }) {
            return PinPersistence(
                outlivesAgent: true,
                reason:
                    "the bpffs at \(ours.mountPoint) (holding \(path)) is the one the host's mount namespace has at \(shared.mountPoint): pins outlive the agent"
            )
        }
        return PinPersistence(
            outlivesAgent: false,
            reason:
                "the bpffs at \(ours.mountPoint) (holding \(path)) exists only in this agent's private mount namespace (as under `ip netns exec`), not in the host's (PID 1's): its pins die with the agent"
        )
    }

    /// The judgement for the running process.
    static func persistence(of path: String) -> PinPersistence {
        func link(_ p: String) -> String? {
            var buf = [CChar](repeating: 0, count: 256)
            let n = readlink(p, &buf, buf.count - 1)
            return n > 0 ? String(cString: buf) : nil
        }
        let real = realpath(path, nil).map { p -> String in
            defer { free(p) }
            return String(cString: p)
        }
        return persistence(
            path: path, realPath: real ?? path, selfNamespace: link("/proc/self/ns/mnt"),
            hostNamespace: link("/proc/1/ns/mnt"),
            selfMounts: (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "",
            hostMounts: try? String(contentsOfFile: "/proc/1/mountinfo", encoding: .utf8))
    }
}
