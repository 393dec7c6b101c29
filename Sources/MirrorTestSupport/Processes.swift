import Foundation

/// What a command printed and how it ended.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// A command that exited non-zero, with what it said.
public struct CommandFailed: Error, CustomStringConvertible {
    public var command: [String]
    public var result: CommandResult
    public var description: String {
        "\(command.joined(separator: " ")) exited \(result.status): \(result.stderr)\(result.stdout)"
    }
}

/// The one way tests run a program: found on PATH (through /usr/bin/env) unless the
/// first argument is a path, stdin written and closed, both outputs read whole.
public enum Command {
    /// Runs `args`; the result whatever the exit status.
    public static func result(
        _ args: [String], stdin: String? = nil, environment: [String: String]? = nil,
        directory: String? = nil
    ) throws -> CommandResult {
        let p = Process()
        if args.first?.hasPrefix("/") == true {
            p.executableURL = URL(fileURLWithPath: args[0])
            p.arguments = Array(args.dropFirst())
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = args
        }
        if let environment { p.environment = environment }
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        // The throwing write: a program that exits without reading its input gives
        // EPIPE, and FileHandle.write(_:) traps on it.
        if let stdin { try? input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
        // Both pipes drained at once: a chatty stderr must not block stdout.
        let errData = LockedData()
        let drained = DispatchGroup()
        DispatchQueue.global().async(group: drained) { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        p.waitUntilExit()
        return CommandResult(
            status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: errData.get(), as: UTF8.self))
    }

    /// Runs `args` and returns its standard output; throws `CommandFailed` on a
    /// non-zero exit.
    @discardableResult
    public static func run(_ args: [String], stdin: String? = nil, environment: [String: String]? = nil) throws -> String {
        let r = try result(args, stdin: stdin, environment: environment)
        guard r.status == 0 else { throw CommandFailed(command: args, result: r) }
        return r.stdout
    }

    @discardableResult
    public static func run(_ args: String...) throws -> String { try run(args) }
}

private final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.withLock { data = d } }
    func get() -> Data { lock.withLock { data } }
}

/// The package's built executables (mirror-agent, agentctl), found next to the
/// running test bundle: `swift test` runs it from the build's bin directory.
public enum Binaries {
    public static func path(_ name: String) -> String? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }
}

/// Kernel and namespace tests need root; the others never skip.
public let isRoot = geteuid() == 0

/// A network namespace for one test: a unique name with the suite's prefix, deleted
/// when the value goes away, whatever the test did.
public final class TestNetns: @unchecked Sendable {
    public let name: String
    public var path: String { "/run/netns/\(name)" }

    /// `MIRROR_TEST_NETNS_TAG` in the environment goes into the name (then a dash),
    /// so that runs sharing a machine can tell their namespaces apart.
    public init(prefix: String = "tst") throws {
        let tag = ProcessInfo.processInfo.environment["MIRROR_TEST_NETNS_TAG"].map { $0 + "-" } ?? ""
        name = "\(prefix)-\(tag)\(getpid() % 100_000)-" + String(UInt32.random(in: 0...UInt32.max) % 1_000_000)
        try Command.run(["ip", "netns", "add", name])
    }

    deinit { _ = try? Command.result(["ip", "netns", "del", name]) }

    /// `ip -n NAME ...`
    @discardableResult
    public func ip(_ args: String...) throws -> String { try Command.run(["ip", "-n", name] + args) }

    /// A command inside the namespace (`nsenter --net`: only the network namespace
    /// changes; `ip netns exec` would also remount /sys).
    @discardableResult
    public func exec(_ args: [String], stdin: String? = nil) throws -> String {
        try Command.run(["nsenter", "--net=\(path)"] + args, stdin: stdin)
    }

    @discardableResult
    public func exec(_ args: String...) throws -> String { try exec(args) }
}

/// A bpffs mounted at a fresh directory under /tmp (never /sys/fs/bpf), unmounted
/// and removed when `body` returns or throws.
public func withBPFFS<T>(_ body: (String) throws -> T) throws -> T {
    var template = Array("/tmp/tst-bpffs-\(getpid())-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw TestSupportError("mkdtemp: \(String(cString: strerror(errno)))") }
    let dir = String(cString: p)
    defer { rmdir(dir) }
    guard mount("bpf", dir, "bpf", 0, nil) == 0 else {
        throw TestSupportError("mount bpffs at \(dir): \(String(cString: strerror(errno)))")
    }
    defer { umount2(dir, Int32(MNT_DETACH)) }
    return try body(dir)
}

/// A temporary directory under /tmp (short: unix socket paths are limited to 107
/// bytes), removed with its contents when the value goes away.
public final class TempDir: @unchecked Sendable {
    public let path: String
    public init(prefix: String = "tst") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw TestSupportError("mkdtemp: \(String(cString: strerror(errno)))") }
        path = String(cString: p)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
