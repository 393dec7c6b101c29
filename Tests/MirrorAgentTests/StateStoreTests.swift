import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import Testing

@Suite("State persistence")
struct StateStoreTests {
    @Test func stateSurvivesARestartWithTheSameVNIs() async throws {
        let dir = try TempDir()
        let first = try await TestAgent(dir: dir)
        let applied: ApplyResponse = try await first.call("POST", APIPath.apply, body: Array(Fixtures.valid.utf8))
        _ = try await first.request("POST", APIPath.session("s2", enable: false))
        await first.stop()

        let second = try await TestAgent(dir: dir)
        defer { second.stopNow() }
        let st: StatusResponse = try await second.call("GET", APIPath.status)
        #expect(st.generation == 2)
        #expect(st.sessions == 2)
        #expect(st.enabledSessions == 1)
        let list: ListResponse = try await second.call("GET", APIPath.kind(.sessions))
        #expect(list.items.first { $0.value["id"]?.stringValue == "s1" }?.value["vni"]?.intValue == applied.vnis["s1"])
        #expect(second.datapath.appliedDocument.sessions.count == 2)
    }

    @Test func saveIsAtomicAndLeavesNoTempFile() throws {
        let dir = try TempDir()
        let store = StateStore(directory: dir.path + "/s")
        try store.prepare()
        let doc = try #require(try? JSONParser.parse(Fixtures.valid).get())
        try store.save(PersistedState(generation: 3, document: AnyJSON(doc), vnis: ["s1": 77]))
        let back = try #require(try store.load())
        #expect(back.generation == 3)
        #expect(back.vnis == ["s1": 77])
        #expect(back.document.value["sessions"]?.arrayValue?.count == 2)
        #expect(!FileManager.default.fileExists(atPath: store.path + ".tmp"))
        var st = stat()
        #expect(stat(store.path, &st) == 0 && st.st_mode & 0o777 == 0o600)
    }

    @Test func corruptStateFileStopsTheAgentWithAClearMessage() async throws {
        let dir = try TempDir()
        try FileManager.default.createDirectory(atPath: dir.path + "/state", withIntermediateDirectories: true)
        try Data("{\"formatVersion\": 1, \"generation\": ".utf8).write(to: URL(fileURLWithPath: dir.path + "/state/state.json"))
        do {
            let t = try await TestAgent(dir: dir)
            await t.stop()
            Issue.record("the agent started on a corrupt state file")
        } catch let e as StateError {
            #expect(e.message.contains("corrupt"))
            #expect(e.message.contains("--reset-state"))
        }
        // --reset-state starts empty and keeps the old file aside.
        let t = try await TestAgent(dir: dir, resetState: true)
        defer { t.stopNow() }
        let st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.sessions == 0)
        let aside = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/state").filter { $0.contains(".reset-") }
        #expect(aside.count == 1)
    }

    @Test func stateFileWithAnInvalidDocumentStopsTheAgent() async throws {
        let dir = try TempDir()
        let store = StateStore(directory: dir.path + "/state")
        try store.prepare()
        let doc = try #require(try? JSONParser.parse(Fixtures.invalid).get())
        try store.save(PersistedState(generation: 1, document: AnyJSON(doc), vnis: [:]))
        await #expect(throws: StateError.self) {
            let t = try await TestAgent(dir: dir)
            await t.stop()
        }
    }
}
