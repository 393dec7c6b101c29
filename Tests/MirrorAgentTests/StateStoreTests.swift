import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorTestSupport
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

    /// A state file that is not strict JSON is corrupt, even where Foundation's
    /// decoder would read something from it: a duplicated member (which it resolves
    /// silently, here to an empty document that the next create would have replaced
    /// every object with), a trailing comma, a truncated write. The agent refuses to
    /// start, names the file and where it stops parsing, and leaves the file as it was.
    @Test(arguments: [
        ("duplicate member", #"{"document":{},"document":DOC,"formatVersion":1,"generation":4,"vnis":{"s1":100}}"#),
        ("trailing comma", #"{"document":DOC,"formatVersion":1,"generation":4,"vnis":{"s1":100,},}"#),
        ("truncated", #"{"document":DOC,"formatVersion":1,"generation":4,"vn"#),
    ])
    func stateFileThatIsNotStrictJSONStopsTheAgentAndStaysAsItWas(_ kind: String, _ text: String) async throws {
        let dir = try TempDir()
        let doc = try #require(try? JSONParser.parse(Fixtures.valid).get())
        let bytes = Array(text.replacingOccurrences(of: "DOC", with: doc.serialized(pretty: false)).utf8)
        let path = dir.path + "/state/state.json"
        try FileManager.default.createDirectory(atPath: dir.path + "/state", withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        for _ in 0..<2 {
            do {
                let t = try await TestAgent(dir: dir)
                _ = try? await t.request(
                    "POST", APIPath.kind(.filters), #"{"id":"f9","inbound":[{"priority":1,"action":"accept","ethertype":"ipv4"}]}"#)
                await t.stop()
                Issue.record("\(kind): the agent started on a corrupt state file")
            } catch let e as StateError {
                #expect(
                    e.message.contains(path) && e.message.contains("corrupt") && e.message.contains("line 1, column"),
                    "\(kind): \(e.message)")
            }
            #expect(FileManager.default.contents(atPath: path).map(Array.init) == bytes, "\(kind): the state file changed")
        }
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
