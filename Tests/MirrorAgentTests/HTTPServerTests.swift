import Foundation
import Logging
import MirrorAPI
import MirrorDatapath
import MirrorTestSupport
import NIOCore
import ServiceLifecycle
import Testing

@testable import MirrorAgent

@Suite("HTTP server shared by the control socket and the metrics endpoint")
struct HTTPServerTests {
    static var logger: Logger {
        var l = Logger(label: "test-http")
        l.logLevel = .warning
        return l
    }

    /// A listening TCP socket on 127.0.0.1 and a free port (the caller closes it).
    static func occupyPort() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 1) == 0 else { close(fd); throw TestSupportError("bind: \(errno)") }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return (fd, Int(UInt16(bigEndian: bound.sin_port)))
    }

    @Test func aMetricsPortInUseIsSaidInOperatorWords() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        let (fd, port) = try Self.occupyPort()
        defer { close(fd) }
        let server = MetricsServer(agent: t.agent, host: "127.0.0.1", port: port, logger: Self.logger)
        do {
            try await server.run()
            Issue.record("the server started on a port in use")
        } catch {
            #expect("\(error)" == "cannot listen on 127.0.0.1:\(port): address already in use")
        }
    }

    /// Raw request on a unix socket; waits `pause` before reading, then reads to EOF.
    static func exchange(_ path: String, _ request: String, pause: useconds_t = 0) throws -> [UInt8] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else { throw TestSupportError("connect: \(errno)") }
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = Array(request.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        usleep(pause)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[..<n]
        }
        return out
    }

    static func bodyLength(_ answer: [UInt8]) -> Int? {
        let crlf2 = Array("\r\n\r\n".utf8)
        guard let i = (0...(answer.count - 4)).first(where: { Array(answer[$0..<$0 + 4]) == crlf2 }) else { return nil }
        return answer.count - i - 4
    }

    /// An answer larger than the socket's buffers, to a client that reads it late, on a
    /// connection closed after it: every byte arrives before the close.
    @Test func anAnswerIsWholeBeforeTheConnectionCloses() async throws {
        let dir = try TempDir()
        let path = dir.path + "/big.sock"
        let size = 8 << 20
        let server = HTTPServer(
            name: "test", endpoint: .unix(path: path),
            limits: .init(maxBodyBytes: 1024, maxConnections: 4, idleTimeout: .seconds(5)), logger: Self.logger,
            refusal: { status, message in .init(status: status, contentType: "text/plain", body: .bytes(ByteBuffer(string: message))) },
            handler: { _ in
                .init(
                    status: .ok, contentType: "application/octet-stream",
                    body: .bytes(ByteBuffer(repeating: 0x61, count: size)))
            })
        try await server.start()
        let answer = try await offThread { try Self.exchange(path, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", pause: 500_000) }
        #expect(Self.bodyLength(answer) == size)
        await server.stop()
        #expect(access(path, F_OK) != 0)  // removed on stop
    }

    /// Graceful stop: no new connections, the answer in progress finishes, and the
    /// connection closes after it.
    @Test func stoppingLetsTheAnswerInProgressFinish() async throws {
        let dir = try TempDir()
        let path = dir.path + "/slow.sock"
        let server = HTTPServer(
            name: "test", endpoint: .unix(path: path),
            limits: .init(maxBodyBytes: 1024, maxConnections: 4, idleTimeout: .seconds(5)), logger: Self.logger,
            refusal: { status, message in .init(status: status, contentType: "text/plain", body: .bytes(ByteBuffer(string: message))) },
            handler: { _ in
                try? await Task.sleep(for: .seconds(1))
                return .init(status: .ok, contentType: "text/plain", body: .bytes(ByteBuffer(string: "done")))
            })
        try await server.start()
        // Keep-alive asked for: the connection closes only because the server stops.
        async let answer = offThread { try Self.exchange(path, "GET / HTTP/1.1\r\n\r\n") }
        for _ in 0..<100 where server.activeConnections == 0 { try await Task.sleep(for: .milliseconds(10)) }
        await server.stop()
        let text = String(decoding: try await answer, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200") && text.hasSuffix("done"), "\(text)")
        #expect(text.lowercased().contains("connection: close"))
        #expect(access(path, F_OK) != 0)
    }

    /// A connection holding half a request when the server stops is closed without an
    /// answer (the decoder's complaint about the cut request is not one to send).
    @Test func stoppingClosesAConnectionWithHalfARequest() async throws {
        let t = try await TestAgent()
        let path = t.socketPath
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        #expect(withUnixAddress(path, { connect(fd, $0, $1) }) == 0)
        _ = Array("GET /v1/status HTTP/1.1\r\nHost: x\r\nAcc".utf8).withUnsafeBytes {
            Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
        for _ in 0..<100 where t.server.activeConnections == 0 { try await Task.sleep(for: .milliseconds(10)) }
        await t.stop()
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 256)
        #expect(read(fd, &buf, buf.count) == 0)
        #expect(t.server.activeConnections == 0)
    }

    /// A start that fails after the socket was bound lets it go, also when a client
    /// connected in between (an `agentctl status` loop while the agent starts): the
    /// accepted connection is closed, not dropped (which NIO punishes with a crash).
    @Test func unbindClosesConnectionsTheBacklogAccepted() async throws {
        let t = try await TestAgent()
        let path = t.dir.path + "/second.sock"
        let control = ControlServer(
            router: Router(agent: t.agent), configuration: .init(socketPath: path), logger: Self.logger)
        try await control.bindNow()
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        #expect(withUnixAddress(path, { connect(fd, $0, $1) }) == 0)
        try await Task.sleep(for: .milliseconds(200))  // NIO accepts it into the listener's stream
        await control.unbind()
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 16)
        #expect(read(fd, &buf, buf.count) <= 0, "the connection was left open")
        #expect(access(path, F_OK) != 0, "the socket file is still there")
        await t.stop()
    }

    /// mirror-agent's services: on graceful shutdown the control socket goes first and
    /// the agent last, its datapath shut down (left pinned and attached on a kernel).
    @Test func gracefulShutdownStopsTheControlSocketThenTheAgent() async throws {
        let dir = try TempDir()
        let datapath = InMemoryDatapath(interfaces: [:])
        let agent = Agent(store: StateStore(directory: dir.path + "/state"), datapath: datapath, logger: Self.logger)
        try await agent.start(resetState: false)
        let socket = dir.path + "/agent.sock"
        let control = ControlServer(router: Router(agent: agent), configuration: .init(socketPath: socket), logger: Self.logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: AgentService(agent: agent, logger: Self.logger)), .init(service: control)],
                logger: Self.logger))
        let running = Task { try await group.run() }
        let client = ControlClient(socketPath: socket, timeout: 5)
        var status: StatusResponse?
        for _ in 0..<100 where status == nil {
            status = try? await offThread { try client.call("GET", APIPath.status, as: StatusResponse.self) }
            if status == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(status?.datapathLoaded == true)
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(access(socket, F_OK) != 0)
        #expect(!datapath.status(verified: false).loaded)
    }
}
