import CMirrorABI
import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import NIOConcurrencyHelpers
import Testing

/// `agentctl capture` in the agent (SPEC §11): refusals, the fan-out to several
/// captures, the ends (count, stop) and what a client too slow to read loses, with a
/// datapath that hands over packets the test makes (the kernel's ring is the e2e
/// case's: Tests/e2e/cases/capture.sh).
@Suite struct CaptureTests {
    /// The in-memory datapath plus capture: records what it is asked to capture and
    /// hands the test's packets to the agent's sink.
    final class CapturingDatapath: Datapath, @unchecked Sendable {
        let inner = InMemoryDatapath(interfaces: [:])
        let kind = "test"
        struct State {
            var selectors: [Int: CaptureSelector] = [:]
            var sink: (@Sendable ([CapturedPacket]) -> Void)?
            var counters = [CaptureCounters](repeating: CaptureCounters(), count: CaptureSelector.maxCaptures)
        }
        let state = NIOLockedValueBox(State())
        func start() throws { try inner.start() }
        func apply(document: Document, generation: UInt64) throws { try inner.apply(document: document, generation: generation) }
        func linkChanged(name: String, ifindex: Int, present: Bool) {}
        func status(verified: Bool) -> DatapathStatus { inner.status(verified: verified) }
        func explain(source: String, direction: Direction, packet: PacketDescription) throws -> Decision? { nil }
        func shutdown() { inner.shutdown() }
        func cleanup() throws {}
        func setCaptures(_ captures: [Int: CaptureSelector], sink: @escaping @Sendable ([CapturedPacket]) -> Void) throws {
            state.withLockedValue {
                $0.selectors = captures; $0.sink = sink
            }
        }
        func captureCounters() throws -> [CaptureCounters] { state.withLockedValue { $0.counters } }

        var selectors: [Int: CaptureSelector] { state.withLockedValue { $0.selectors } }
        func send(_ packets: [CapturedPacket]) { state.withLockedValue { $0.sink }?(packets) }

        static func packet(_ captures: UInt32, _ n: Int, bytes: Int = 60) -> CapturedPacket {
            CapturedPacket(
                captures: captures,
                packet: CapturePacket(
                    timestampNs: UInt64(1_796_515_200_000_000_000 + n), source: "vm1", interface: "tap-vm1",
                    direction: n % 2 == 0 ? .inbound : .outbound, session: "s1", filter: "f1", rulePriority: 1, length: bytes + 100,
                    data: [UInt8](repeating: UInt8(n & 0xff), count: bytes)))
        }
    }

    /// An agent with `CapturingDatapath` and its control server.
    final class CaptureAgent {
        let dir: TempDir
        let datapath = CapturingDatapath()
        let agent: Agent
        let server: ControlServer
        var client: ControlClient { ControlClient(socketPath: dir.path + "/agent.sock", timeout: 10) }

        init() async throws {
            dir = try TempDir()
            agent = Agent(store: StateStore(directory: dir.path + "/state"), datapath: datapath)
            try await agent.start(resetState: false)
            _ = try await agent.apply(try JSONParser.parse(Fixtures.valid).get())
            server = ControlServer(
                router: Router(agent: agent), configuration: .init(socketPath: dir.path + "/agent.sock"),
                logger: .init(label: "capture-test"))
            try await server.start()
        }

        func stop() async {
            await server.stop()
            await agent.shutdown()
        }

        /// Opens a capture stream (the head only: the agent answers at once).
        func open(_ r: CaptureRequest) async throws -> Reader {
            let client = self.client
            let body = [UInt8](try JSONEncoder().encode(r))
            return try await offThread { Reader(try ControlStream(client, method: "POST", path: APIPath.captures, body: body)) }
        }

        /// Waits until the datapath is asked for `n` captures.
        func waitForCaptures(_ n: Int) async throws {
            for _ in 0..<500 where datapath.selectors.count != n { try await Task.sleep(for: .milliseconds(10)) }
            #expect(datapath.selectors.count == n)
        }
    }

    /// A capture stream's frames, read to the end off the cooperative pool.
    final class Reader: @unchecked Sendable {
        let stream: ControlStream
        init(_ s: ControlStream) { stream = s }
        func readAll() async throws -> [CaptureFrame] {
            let stream = self.stream
            return try await offThread {
                var decoder = CaptureFrameDecoder()
                var frames: [CaptureFrame] = []
                for _ in 0..<2000 {
                    guard let bytes = try stream.read(timeoutMs: 50) else { return frames }
                    frames += try decoder.feed(bytes)
                }
                throw TestSupportError("the capture stream did not end")
            }
        }
    }

    @Test func theAPIsMaximumSnaplenIsTheDatapaths() {
        #expect(CaptureRequest.maxSnaplen == Int(MIRROR_CAPTURE_MAX_SNAPLEN))
        #expect(CaptureSelector.maxSnaplen == CaptureRequest.maxSnaplen)
    }

    @Test func unknownIDsBadRequestsAndTheMemoryDatapathAreRefusedByName() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        func refusal(_ body: String) async throws -> (Int, String) { try await t.request("POST", APIPath.captures, body) }
        var (s, body) = try await refusal(#"{"session":"nope"}"#)
        #expect(s == 404 && body.contains("no session 'nope'"))
        (s, body) = try await refusal(#"{"source":"nope","direction":"inbound"}"#)
        #expect(s == 404 && body.contains("no source 'nope'"))
        (s, body) = try await refusal(#"{"session":"s1","source":"vm1"}"#)
        #expect(s == 400 && t.errorPaths(body) == ["source"])
        (s, body) = try await refusal(#"{"session":"s1","snaplen":0,"count":0}"#)
        #expect(s == 400 && t.errorPaths(body) == ["count", "snaplen"])
        (s, body) = try await refusal(#"{"source":"vm1","direction":"sideways"}"#)
        #expect(s == 400)
        // The memory datapath mirrors nothing, so there is nothing to capture.
        (s, body) = try await refusal(#"{"session":"s1"}"#)
        #expect(s == 409 && body.contains("capture needs the kernel datapath"), "\(body)")
        (s, body) = try await t.request("DELETE", APIPath.capture("capture-9"))
        #expect(s == 404 && body.contains("no capture 'capture-9'"))
    }

    @Test func severalCapturesGetTheirOwnPacketsAndEndByCountOrStop() async throws {
        let t = try await CaptureAgent()
        let a = try await t.open(CaptureRequest(session: "s2", count: 2))
        try await t.waitForCaptures(1)
        let b = try await t.open(CaptureRequest(source: "vm1", direction: .outbound, snaplen: 10))
        try await t.waitForCaptures(2)
        let selectors = t.datapath.selectors
        let numberA = try #require(selectors.first { $0.value.session == "s2" }?.key)
        let numberB = try #require(selectors.first { $0.value.source == "vm1" }?.key)
        #expect(selectors[numberB]?.directions == [.outbound] && selectors[numberB]?.snaplen == 10)
        let bitA = UInt32(1) << UInt32(numberA), bitB = UInt32(1) << UInt32(numberB)
        t.datapath.send([
            CapturingDatapath.packet(bitA | bitB, 1), CapturingDatapath.packet(bitB, 2), CapturingDatapath.packet(bitA, 3),
            CapturingDatapath.packet(bitA, 4),
        ])
        // a: its count of 2 reached (its third packet is not taken), then its summary.
        let framesA = try await a.readAll()
        guard case .started(let startedA)? = framesA.first else { throw TestSupportError("no started frame: \(framesA)") }
        #expect(startedA.session == "s2" && Set(startedA.interfaces.map(\.source)) == ["vm1", "vm2"] && startedA.interfaces.count == 4)
        let packetsA = framesA.compactMap { if case .packet(let p) = $0 { return p.timestampNs } else { return nil } }
        #expect(packetsA == [1_796_515_200_000_000_001, 1_796_515_200_000_000_003])
        #expect(framesA.last == .summary(CaptureSummary(id: startedA.id, packets: 2, lostInKernel: 0, lostInAgent: 0, ended: "count")))
        try await t.waitForCaptures(1)
        // b: stopped by DELETE; its packets cut to its own snaplen.
        let idB = t.agent.captures.runningIDs.first!
        let stopped: CaptureStopResponse = try await offThread { [client = t.client] in
            try client.call("DELETE", APIPath.capture(idB), as: CaptureStopResponse.self)
        }
        #expect(stopped.id == idB)
        let framesB = try await b.readAll()
        let packetsB = framesB.compactMap { if case .packet(let p) = $0 { return p } else { return nil } }
        #expect(packetsB.map(\.timestampNs) == [1_796_515_200_000_000_001, 1_796_515_200_000_000_002])
        #expect(packetsB.allSatisfy { $0.data.count == 10 && $0.length == 160 })
        #expect(framesB.last == .summary(CaptureSummary(id: idB, packets: 2, lostInKernel: 0, lostInAgent: 0, ended: "stopped")))
        try await t.waitForCaptures(0)
        await t.stop()
    }

    @Test func aNinthCaptureAtOnceIsRefused() async throws {
        let t = try await CaptureAgent()
        var readers: [Reader] = []
        for _ in 0..<CaptureSelector.maxCaptures { readers.append(try await t.open(CaptureRequest(session: "s1"))) }
        try await t.waitForCaptures(CaptureSelector.maxCaptures)
        #expect(Set(t.datapath.selectors.keys) == Set(0..<CaptureSelector.maxCaptures))
        let refused = try await offThread { [client = t.client] in
            try client.send(method: "POST", path: APIPath.captures, body: Array(#"{"session":"s1"}"#.utf8))
        }
        #expect(refused.status == 429)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("8 captures are running already"))
        await t.server.stop()
        for r in readers { _ = try await r.readAll() }
        await t.agent.shutdown()
    }

    /// A capture never holds the agent's stop up: the control server ends each with its
    /// summary when it stops.
    @Test func stoppingTheServerEndsCapturesWithTheirSummaries() async throws {
        let t = try await CaptureAgent()
        let r = try await t.open(CaptureRequest(source: "vm2"))
        try await t.waitForCaptures(1)
        let started = ContinuousClock.now
        await t.server.stop()
        #expect(ContinuousClock.now - started < .seconds(5))
        let frames = try await r.readAll()
        guard case .summary(let s)? = frames.last else { throw TestSupportError("no summary: \(frames)") }
        #expect(s.ended == "agent_stopping" && s.packets == 0)
        try await t.waitForCaptures(0)
        await t.agent.shutdown()
    }

    @Test func aClientTooSlowToReadLosesCountedPacketsAndNeverBlocksTheDatapath() async throws {
        let t = try await CaptureAgent()
        let r = try await t.open(CaptureRequest(session: "s1"))
        try await t.waitForCaptures(1)
        let number = try #require(t.datapath.selectors.keys.first)
        // The kernel's ring lost 7 of this capture's packets since it started.
        t.datapath.state.withLockedValue { $0.counters[number].lost += 7 }
        // 10 MB while the client reads nothing: more than the agent's queue and the
        // socket's buffers hold. Each batch returns at once (nothing waits for the client).
        let sent = 5000
        let started = ContinuousClock.now
        for n in 0..<sent { t.datapath.send([CapturingDatapath.packet(1 << UInt32(number), n, bytes: 2000)]) }
        let took = ContinuousClock.now - started
        #expect(took < .seconds(10), "delivering took \(took): the sink waited for the client")
        let id = t.agent.captures.runningIDs.first!
        let _: CaptureStopResponse = try await offThread { [client = t.client] in
            try client.call("DELETE", APIPath.capture(id), as: CaptureStopResponse.self)
        }
        let frames = try await r.readAll()
        let packets = frames.filter { if case .packet = $0 { return true } else { return false } }.count
        guard case .summary(let s)? = frames.last else { throw TestSupportError("no summary") }
        print("slow client: \(s.packets) packets, \(s.lostInAgent) lost in the agent, \(s.lostInKernel) in the kernel")
        #expect(s.packets == packets)
        #expect(s.lostInAgent > 0)
        #expect(s.packets + s.lostInAgent == sent)
        #expect(s.lostInKernel == 7 && s.lost == s.lostInAgent + 7)
        await t.stop()
    }
}
