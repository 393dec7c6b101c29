import Foundation
import Logging
import MirrorAPI
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

@testable import MirrorAgent

/// Collects log lines (level, message, metadata) in memory.
final class CapturedLogs: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [(Logger.Level, String, Logger.Metadata)] = []
    func append(_ l: (Logger.Level, String, Logger.Metadata)) { lock.withLock { lines.append(l) } }
    var all: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { lock.withLock { lines.map { ($0.0, $0.1, $0.2) } } }
    func take() -> [(level: Logger.Level, message: String, metadata: Logger.Metadata)] {
        lock.withLock {
            defer { lines = [] }; return lines.map { ($0.0, $0.1, $0.2) }
        }
    }
}

struct CapturingLogHandler: LogHandler {
    let sink: CapturedLogs
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        sink.append((level, message.description, self.metadata.merging(metadata ?? [:]) { $1 }))
    }
}

@Suite("Metrics: structured event logs")
struct MetricsEventsTests {
    @Test func oneLinePerSourceStateChangeWithContext() async throws {
        let logs = CapturedLogs()
        let dir = try TempDir()
        let datapath = InMemoryDatapath(interfaces: ["tap-vm1": 7])
        let agent = Agent(
            store: StateStore(directory: dir.path + "/state"), datapath: datapath,
            logger: Logger(label: "test") { _ in CapturingLogHandler(sink: logs) })
        try await agent.start(resetState: false)
        _ = logs.take()

        _ = try await agent.apply(try JSONParser.parse(Fixtures.valid).get())
        var lines = logs.take()
        #expect(lines.contains { $0.message == "applied" && $0.metadata["generation"] == "1" && $0.metadata["seconds"] != nil })
        let attached = lines.filter { $0.message == "source attached" }
        #expect(attached.count == 1)
        #expect(attached.first?.metadata["source"] == "vm1")
        #expect(attached.first?.metadata["interface"] == "tap-vm1")
        #expect(attached.first?.metadata["ifindex"] == "7")
        let pending = lines.filter { $0.message.hasPrefix("source pending") }
        #expect(pending.map { $0.metadata["source"] } == ["vm2"])

        // The same document again: no change, no source lines.
        await agent.linkChanged(name: "unrelated0", ifindex: 99, present: true)
        #expect(logs.take().filter { $0.message.hasPrefix("source") }.isEmpty)

        // vm2's interface appears.
        await agent.linkChanged(name: "tap-vm2", ifindex: 9, present: true)
        lines = logs.take()
        #expect(
            lines.contains { $0.message == "source attached" && $0.metadata["source"] == "vm2" && $0.metadata["after"] == "link event" })

        // vm2 leaves the document.
        _ = try await agent.delete(.sessions, "s2")
        _ = try await agent.delete(.sources, "vm2")
        lines = logs.take()
        #expect(lines.contains { $0.message.hasPrefix("source detached") && $0.metadata["source"] == "vm2" })
        #expect(lines.filter { $0.message.hasPrefix("source") }.count == 1)

        // A refused apply: one error line with the generation it would have had.
        datapath.failNextApply("simulated datapath failure")
        _ = try? await agent.setSessionEnabled("s1", false)
        lines = logs.take()
        let refused = lines.filter { $0.level == .error && $0.message.hasPrefix("apply refused") }
        #expect(refused.count == 1)
        #expect(refused.first?.metadata["error"].map { "\($0)".contains("simulated datapath failure") } == true)
    }
}

/// A datapath whose session counter the test sets, standing for the BPF maps.
final class CountingDatapath: Datapath, @unchecked Sendable {
    let inner = InMemoryDatapath(interfaces: ["tap-vm1": 11, "tap-vm2": 12])
    var packets: UInt64 = 0
    let kind = "memory"
    func start() throws { try inner.start() }
    func apply(document: Document, generation: UInt64) throws { try inner.apply(document: document, generation: generation) }
    func linkChanged(name: String, ifindex: Int, present: Bool) {}
    func status(verified: Bool) -> DatapathStatus { inner.status(verified: verified) }
    func explain(source: String, direction: Direction, packet: PacketDescription) throws -> Decision? { nil }
    func shutdown() { inner.shutdown() }
    func cleanup() throws {}
    func counters() throws -> DatapathCounters? {
        var s = DatapathCounters.Session(slot: 0, id: "s1")
        s.packets = packets
        return DatapathCounters(sessions: [s])
    }
}

@Suite("Metrics: continuity across a stop, a cleanup and a start")
struct MetricsStopCleanupStartTests {
    /// Counts no scrape saw since the continuity file was last written are not lost
    /// when the maps are recreated: the stop writes the file, so the series resumes
    /// from its last value instead of going back to the new map's.
    @Test func aCounterNeverGoesBackAcrossStopCleanupAndStart() async throws {
        let dir = try TempDir()
        let first = CountingDatapath()
        let agent = Agent(store: StateStore(directory: dir.path + "/state"), datapath: first)
        try await agent.start(resetState: false)
        _ = try await agent.apply(try JSONParser.parse(Fixtures.valid).get())
        first.packets = 10
        #expect(await agent.stats().sessions.first { $0.session == "s1" }?.packets == 10)
        first.packets = 32  // counted, but no scrape reads it before the stop
        await agent.shutdown()

        // cleanup removed the maps: the next agent's counter starts again from 0.
        let second = CountingDatapath()
        let again = Agent(store: StateStore(directory: dir.path + "/state"), datapath: second)
        try await again.start(resetState: false)
        second.packets = 30
        let shown = await again.stats().sessions.first { $0.session == "s1" }?.packets
        #expect(shown == 62, "the series went from 32 to \(shown.map(String.init) ?? "nothing")")
        await again.shutdown()
    }
}
