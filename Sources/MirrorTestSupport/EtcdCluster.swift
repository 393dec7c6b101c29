import Foundation

/// A real 3-member etcd cluster (Debian etcd-server) with client-certificate TLS, on
/// addresses of a network namespace of its own, made by `scripts/lib/etcd-cluster.sh`
/// (the one recipe the e2e cases use too) and removed by `shutdown()` or on deinit.
public final class EtcdCluster: @unchecked Sendable {
    public let directory: String
    /// `https://A1:2379,https://A2:2379,https://A3:2379`
    public let endpoints: String
    public let caFile: String
    public let certFile: String
    public let keyFile: String
    /// A certificate and key from a CA the members do not trust.
    public var intruderCertFile: String { directory + "/pki/intruder.pem" }
    public var intruderKeyFile: String { directory + "/pki/intruder-key.pem" }
    private var down = false

    static let script: String = {
        // Sources/MirrorTestSupport/EtcdCluster.swift → the repository's root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent("scripts/lib/etcd-cluster.sh").path
    }()

    /// Why a cluster cannot run here (not root, etcd not installed), or nil.
    public static var unavailableReason: String? {
        if getuid() != 0 { return "needs root (a network namespace for the etcd members)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") { return "etcd not installed (scripts/setup)" }
        return nil
    }

    public init() throws {
        let tag = ProcessInfo.processInfo.environment["MIRROR_TEST_NETNS_TAG"].map { $0 + "-" } ?? ""
        let id = "\(tag)\(getpid() % 100_000)-\(UInt32.random(in: 0...UInt32.max) % 100_000)"
        directory = NSTemporaryDirectory() + "mirror-etcd-" + id
        try Command.run(["bash", Self.script, "up", directory, id])
        var env: [String: String] = [:]
        for line in (try String(contentsOfFile: directory + "/env", encoding: .utf8)).split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { env[String(kv[0])] = String(kv[1]) }
        }
        endpoints = env["ETCD_ENDPOINTS"] ?? ""
        caFile = env["ETCD_CACERT"] ?? ""
        certFile = env["ETCD_CERT"] ?? ""
        keyFile = env["ETCD_KEY"] ?? ""
    }

    /// Kills member `n` (1-3) with SIGKILL.
    public func stop(member n: Int) throws { try Command.run(["bash", Self.script, "stop", directory, "\(n)"]) }

    /// Starts member `n` again with its data.
    public func start(member n: Int) throws { try Command.run(["bash", Self.script, "start", directory, "\(n)"]) }

    /// Stops member `n` with SIGSTOP: its connections stay open and answer nothing.
    public func pause(member n: Int) throws { try Command.run(["bash", Self.script, "pause", directory, "\(n)"]) }

    /// Lets a paused member go on.
    public func resume(member n: Int) throws { try Command.run(["bash", Self.script, "resume", directory, "\(n)"]) }

    /// The leader's member number (1-3).
    public func leader() throws -> Int {
        Int(try Command.run(["bash", Self.script, "leader", directory]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    public func shutdown() {
        guard !down else { return }
        down = true
        _ = try? Command.result(["bash", Self.script, "down", directory])
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { shutdown() }
}
