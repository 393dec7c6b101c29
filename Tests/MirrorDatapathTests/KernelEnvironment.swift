import Foundation
import Glibc
import MirrorDatapath
import MirrorTestSupport

/// Kernel tests need root: `KernelTests` (KernelSuite.swift) is enabled only then,
/// so without it they show as skipped, with the reason.
enum Kernel {
    static var isRoot: Bool { getuid() == 0 }

    /// A bpffs of this test's own (MirrorTestSupport).
    static func withBPFFS<T>(_ body: (String) throws -> T) throws -> T { try MirrorTestSupport.withBPFFS(body) }

    /// Runs a command, returns stdout; throws with what it said on failure.
    @discardableResult
    static func run(_ args: [String], allowFailure: Bool = false) throws -> String {
        allowFailure ? try Command.result(args).stdout : try Command.run(args)
    }

    /// A network namespace named dpt-..., deleted on every exit path.
    static func withNetns<T>(_ body: (String) throws -> T) throws -> T {
        let ns = try TestNetns(prefix: "dpt")
        return try withExtendedLifetime(ns) { try body(ns.name) }
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

typealias TestFailure = TestSupportError
