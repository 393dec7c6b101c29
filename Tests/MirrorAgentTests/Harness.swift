import Foundation
import Logging
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import NIOPosix

/// An agent with the in-memory datapath and its control server on a temp socket.
final class TestAgent {
    let dir: TempDir
    let datapath: InMemoryDatapath
    let agent: Agent
    let server: ControlServer
    var client: ControlClient { ControlClient(socketPath: socketPath, timeout: 10) }
    var socketPath: String { dir.path + "/agent.sock" }
    var stateDir: String { dir.path + "/state" }

    init(
        dir: TempDir? = nil, interfaces: [String: Int] = [:], maxBodyBytes: Int = 4 << 20, maxConnections: Int = 64,
        resetState: Bool = false, pieceBytes: Int = 256 * 1024, ownInterfaces: Set<String> = [],
        underlayRoutes: [String: String] = [:]
    ) async throws {
        self.dir = try dir ?? TempDir()
        datapath = InMemoryDatapath(interfaces: interfaces, ownInterfaces: ownInterfaces, underlayRoutes: underlayRoutes)
        var logger = Logger(label: "test-agent")
        logger.logLevel = .warning
        agent = Agent(store: StateStore(directory: self.dir.path + "/state"), datapath: datapath, logger: logger)
        try await agent.start(resetState: resetState)
        server = ControlServer(
            router: Router(agent: agent, pieceBytes: pieceBytes),
            configuration: .init(
                socketPath: self.dir.path + "/agent.sock", maxBodyBytes: maxBodyBytes,
                maxConnections: maxConnections, idleTimeout: .seconds(5)),
            logger: logger)
        try await server.start()
    }

    /// Synchronous teardown for `defer` (an async `defer` does not exist, and a
    /// detached Task may never run before the test process exits).
    func stopNow() {
        server.stopWithoutWaiting()
        datapath.shutdown()
    }

    func stop() async {
        await server.stop()
        await agent.shutdown()
    }

    /// Sends JSON text, returns status and body text. The blocking client runs on its
    /// own thread: blocking Swift's small cooperative pool would starve the agent's
    /// request tasks when tests run in parallel.
    func request(_ method: String, _ path: String, _ body: String? = nil) async throws -> (Int, String) {
        let client = self.client
        let r = try await offThread { try client.send(method: method, path: path, body: body.map { Array($0.utf8) }) }
        return (r.status, String(decoding: r.body, as: UTF8.self))
    }

    func call<T: Decodable & Sendable>(_ method: String, _ path: String, body: [UInt8]? = nil, as: T.Type = T.self) async throws -> T {
        let client = self.client
        return try await offThread { try client.call(method, path, body: body, as: T.self) }
    }

    func call<T: Decodable & Sendable, B: Encodable & Sendable>(_ method: String, _ path: String, json: B, as: T.Type = T.self) async throws
        -> T
    {
        let client = self.client
        return try await offThread { try client.call(method, path, json: json, as: T.self) }
    }

    func errorPaths(_ body: String) -> [String] {
        (try? JSONDecoder().decode(APIError.self, from: Data(body.utf8)))?.errors.map(\.path) ?? []
    }
}

enum Fixtures {
    static let valid = """
        {
          "filters": [
            { "id": "f1", "inbound": [ { "priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "tcp",
                                         "destinationPorts": "80" } ],
              "outbound": [ { "priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "all" } ] }
          ],
          "targets": [ { "id": "t1", "type": "nic", "address": "198.51.100.2" } ],
          "sources": [ { "id": "vm1", "interface": "tap-vm1" }, { "id": "vm2", "interface": "tap-vm2" } ],
          "sessions": [
            { "id": "s1", "priority": 1, "filter": "f1", "sources": ["vm1"], "target": "t1" },
            { "id": "s2", "priority": 2, "filter": "f1", "sources": ["vm1", "vm2"], "target": "t1", "vni": 4242 }
          ]
        }
        """

    /// Three problems in three places.
    static let invalid = """
        {
          "filters": [ { "id": "f1", "inbound": [ { "priority": 1, "action": "accept", "ethertype": "ipv4",
                                                    "source": "10.0.0.1/24" } ] } ],
          "targets": [ { "id": "t1", "type": "nic", "address": "198.51.100.2" } ],
          "sources": [ { "id": "vm1", "interface": "tap-vm1" } ],
          "sessions": [ { "id": "s1", "priority": 0, "filter": "f1", "sources": ["vm1"], "target": "t1" },
                        { "id": "s2", "priority": 2, "filter": "f1", "sources": ["vm1"], "target": "nope" } ]
        }
        """
}

/// `body` with a unix socket address for `path` as a sockaddr (for bind or connect).
func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        let b = Array(path.utf8); raw.copyBytes(from: b); raw[b.count] = 0
    }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        Thread { c.resume(with: Result { try body() }) }.start()
    }
}
