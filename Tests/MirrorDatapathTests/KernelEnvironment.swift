import Foundation
import Glibc
import MirrorDatapath

/// Kernel tests need root. They skip only when not root, and say why.
enum Kernel {
    static var skipReason: String? {
        getuid() == 0 ? nil : "kernel test skipped: needs root (BPF, bpffs mounts, network namespaces)"
    }

    static var available: Bool {
        if let reason = skipReason { print(reason); return false }
        return true
    }

    /// A bpffs mounted at a fresh directory for the duration of `body` (never
    /// /sys/fs/bpf), unmounted and removed on every exit path.
    static func withBPFFS<T>(_ body: (String) throws -> T) throws -> T {
        var template = Array("/tmp/dpt-bpffs-\(getpid())-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))") }
        let dir = String(cString: p)
        defer { rmdir(dir) }
        guard mount("bpf", dir, "bpf", 0, nil) == 0 else {
            throw TestFailure("mount bpffs at \(dir): \(String(cString: strerror(errno)))")
        }
        defer { umount2(dir, Int32(MNT_DETACH)) }
        return try body(dir)
    }

    /// Runs a command, returns stdout; throws with stderr on failure.
    @discardableResult
    static func run(_ args: [String], allowFailure: Bool = false) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus != 0 && !allowFailure {
            throw TestFailure("\(args.joined(separator: " ")): \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: o, as: UTF8.self)
    }

    /// A network namespace named dpt-<pid>-<random>, deleted on every exit path; with
    /// `MIRROR_TEST_NETNS_TAG` in the environment, dpt-<tag>-<pid>-<random>, so that
    /// runs sharing a machine can tell their namespaces apart.
    static func withNetns<T>(_ body: (String) throws -> T) throws -> T {
        let tag = ProcessInfo.processInfo.environment["MIRROR_TEST_NETNS_TAG"].map { $0 + "-" } ?? ""
        let name = "dpt-\(tag)\(getpid())-\(UInt32.random(in: 0..<UInt32.max) % 1_000_000)"
        try run(["ip", "netns", "add", name])
        defer { _ = try? run(["ip", "netns", "delete", name], allowFailure: true) }
        return try body(name)
    }

    /// Runs `body` on a thread that has entered netns `name` (netns membership is
    /// per thread), so ifindex lookups and tc calls act inside it.
    static func inNetns<T>(_ name: String, _ body: @escaping () throws -> T) throws -> T {
        let box = Atomic<Result<T, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let t = Thread {
            defer { done.signal() }
            box.value = Result {
                try NetworkNamespace.enter(path: "/run/netns/\(name)")
                return try body()
            }
        }
        t.start()
        done.wait()
        return try box.value!.get()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
