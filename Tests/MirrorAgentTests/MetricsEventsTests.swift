import Foundation
import Logging
import MirrorAPI
@testable import MirrorAgent
import MirrorDatapath
import MirrorCore
import MirrorTestSupport
import Testing

/// Collects log lines (level, message, metadata) in memory.
final class CapturedLogs: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [(Logger.Level, String, Logger.Metadata)] = []
    func append(_ l: (Logger.Level, String, Logger.Metadata)) { lock.withLock { lines.append(l) } }
    var all: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { lock.withLock { lines.map { ($0.0, $0.1, $0.2) } } }
    func take() -> [(level: Logger.Level, message: String, metadata: Logger.Metadata)] {
        lock.withLock { defer { lines = [] }; return lines.map { ($0.0, $0.1, $0.2) } }
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
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
             function: String, line: UInt) {
        sink.append((level, message.description, self.metadata.merging(metadata ?? [:]) { $1 }))
    }
}

@Suite("Metrics: structured event logs")
struct MetricsEventsTests {
    @Test func oneLinePerSourceStateChangeWithContext() async throws {
        let logs = CapturedLogs()
        let dir = try TempDir()
        let datapath = InMemoryDatapath(interfaces: ["tap-vm1": 7])
        let agent = Agent(store: StateStore(directory: dir.path + "/state"), datapath: datapath,
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
        #expect(lines.contains { $0.message == "source attached" && $0.metadata["source"] == "vm2" && $0.metadata["after"] == "link event" })

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
