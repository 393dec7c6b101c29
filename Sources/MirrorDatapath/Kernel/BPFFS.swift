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
