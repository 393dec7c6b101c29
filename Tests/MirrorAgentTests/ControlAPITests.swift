import Foundation
import MirrorAPI
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

@testable import MirrorAgent

@Suite("Control API over the unix socket")
struct ControlAPITests {
    @Test func applyValidDocumentAssignsVNIsAndIsListed() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        let r: ApplyResponse = try await t.call("POST", APIPath.apply, body: Array(Fixtures.valid.utf8))
        #expect(r.changed)
        #expect(r.generation == 1)
        #expect(r.vnis["s2"] == 4242)
        let s1 = try #require(r.vnis["s1"])
        #expect(s1 != 4242)

        let list: ListResponse = try await t.call("GET", APIPath.kind(.sessions))
        #expect(list.items.map { $0.value["id"]?.stringValue } == ["s1", "s2"])
        #expect(list.items.first?.value["vni"]?.intValue == s1)

        // Re-applying the same document changes nothing and keeps the VNI.
        let again: ApplyResponse = try await t.call("POST", APIPath.apply, body: Array(Fixtures.valid.utf8))
        #expect(!again.changed)
        #expect(again.generation == 1)
        #expect(again.vnis["s1"] == s1)
        #expect(t.datapath.appliedDocument.sessions.first?.vni == s1)
    }

    @Test func invalidDocumentIsRefusedWithEveryPathAndStateIsUnchanged() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let before = t.datapath.appliedDocument
        let (status, body) = try await t.request("POST", APIPath.apply, Fixtures.invalid)
        #expect(status == 422)
        let paths = t.errorPaths(body)
        #expect(paths.contains("filters[0].inbound[0].source"))
        #expect(paths.contains("sessions[0].priority"))
        #expect(paths.contains("sessions[1].target"))
        #expect(t.datapath.appliedDocument == before)
        let st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.generation == 1)
    }

    @Test func malformedJSONAndWrongRoutesGetClearErrors() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        let (s1, b1) = try await t.request("POST", APIPath.apply, "{\"filters\": [")
        #expect(s1 == 400)
        #expect(b1.contains("not valid JSON"))
        let (s2, _) = try await t.request("GET", "/v1/widgets")
        #expect(s2 == 404)
        let (s3, _) = try await t.request("DELETE", APIPath.apply)
        #expect(s3 == 405)
        let (s4, _) = try await t.request("POST", APIPath.apply, "[1,2]")
        #expect(s4 == 400)
        let deep = String(repeating: "[", count: 100_000)
        let (s5, _) = try await t.request("POST", APIPath.apply, deep)
        #expect(s5 == 400)
        // The agent still answers.
        let (s6, _) = try await t.request("GET", APIPath.status)
        #expect(s6 == 200)
    }

    @Test func crudPerKindValidatesTheWholeDocument() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)

        // create
        let target = #"{"id": "t2", "type": "loadBalancer", "backends": ["198.51.100.3", "198.51.100.4"]}"#
        let (c1, _) = try await t.request("POST", APIPath.kind(.targets), target)
        #expect(c1 == 201)
        let (c2, _) = try await t.request("POST", APIPath.kind(.targets), target)
        #expect(c2 == 409)
        let (c3, b3) = try await t.request("POST", APIPath.kind(.targets), #"{"type": "nic"}"#)
        #expect(c3 == 400)
        #expect(t.errorPaths(b3) == ["id"])

        // update: a bad value is refused with its path, the object named by id, nothing changes
        let (u1, ub1) = try await t.request(
            "PUT", APIPath.object(.sessions, "s1"),
            #"{"priority": 99999, "filter": "f1", "sources": ["vm1"], "target": "t2"}"#)
        #expect(u1 == 422)
        #expect(t.errorPaths(ub1).contains("sessions[id=s1].priority"))
        let (u2, _) = try await t.request(
            "PUT", APIPath.object(.sessions, "s1"),
            #"{"priority": 5, "filter": "f1", "sources": ["vm1"], "target": "t2"}"#)
        #expect(u2 == 200)
        let got: ObjectResponse = try await t.call("GET", APIPath.object(.sessions, "s1"))
        #expect(got.object.value["target"]?.stringValue == "t2")
        #expect(got.object.value["priority"]?.intValue == 5)
        let (u3, _) = try await t.request("PUT", APIPath.object(.sessions, "nope"), #"{"priority": 5}"#)
        #expect(u3 == 404)
        let (u4, _) = try await t.request("PUT", APIPath.object(.sessions, "s1"), #"{"id": "other", "priority": 5}"#)
        #expect(u4 == 400)

        // delete: a filter still used by sessions cannot go (dangling reference)
        let (d1, db1) = try await t.request("DELETE", APIPath.object(.filters, "f1"))
        #expect(d1 == 409)
        #expect(!t.errorPaths(db1).isEmpty)
        let (d2, _) = try await t.request("DELETE", APIPath.object(.sessions, "s2"))
        #expect(d2 == 200)
        let (d3, _) = try await t.request("DELETE", APIPath.object(.sessions, "s2"))
        #expect(d3 == 404)
        #expect(t.datapath.appliedDocument.sessions.map(\.id) == ["s1"])
    }

    /// A document where every kind is referred to: sessions use filters, targets and
    /// sources; sources use security groups and network ACLs.
    static let referring = """
        {
          "filters": [ { "id": "f1", "inbound": [ { "priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "all" } ] },
                       { "id": "f2" } ],
          "targets": [ { "id": "t1", "type": "nic", "address": "198.51.100.2" } ],
          "sources": [ { "id": "vm1", "interface": "tap-vm1", "securityGroups": ["sg0", "sg1"], "networkAcl": "acl1" },
                       { "id": "vm2", "interface": "tap-vm2", "securityGroups": ["sg1"] } ],
          "sessions": [
            { "id": "s1", "priority": 1, "filter": "f1", "sources": ["vm1"], "target": "t1" },
            { "id": "s2", "priority": 2, "filter": "f1", "sources": ["vm1", "vm2"], "target": "t1" }
          ],
          "securityGroups": [ { "id": "sg0", "rules": [] },
                              { "id": "sg1", "rules": [ { "direction": "ingress", "priority": 1, "action": "allow", "ethertype": "ipv4" } ] } ],
          "networkAcls": [ { "id": "acl1", "inbound": [ { "priority": 1, "action": "allow", "ethertype": "ipv4" } ] } ]
        }
        """

    /// Before, deleting f1 validated the document without it and answered
    /// `sessions[0].filter: filter "f1" does not exist`: true of a document the
    /// operator never wrote, silent on what to do. Now: who uses it, by id.
    @Test func deletingAnObjectStillReferredToNamesWhoRefersToIt() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        let (s, b) = try await t.request("POST", APIPath.apply, Self.referring)
        #expect(s == 200, "\(b)")
        let cases: [(ObjectKind, String, String, [String])] = [
            (
                .filters, "f1", "filter f1 is used by sessions s1, s2; delete or change them first",
                ["sessions[id=s1].filter", "sessions[id=s2].filter"]
            ),
            (
                .targets, "t1", "target t1 is used by sessions s1, s2; delete or change them first",
                ["sessions[id=s1].target", "sessions[id=s2].target"]
            ),
            (.sources, "vm2", "source vm2 is used by session s2; delete or change it first", ["sessions[id=s2].sources[1]"]),
            (
                .securityGroups, "sg1", "security group sg1 is used by sources vm1, vm2; delete or change them first",
                ["sources[id=vm1].securityGroups[1]", "sources[id=vm2].securityGroups[0]"]
            ),
            (.networkAcls, "acl1", "network ACL acl1 is used by source vm1; delete or change it first", ["sources[id=vm1].networkAcl"]),
        ]
        for (kind, id, message, paths) in cases {
            do {
                let _: ObjectResponse = try await t.call("DELETE", APIPath.object(kind, id))
                Issue.record("delete \(kind) \(id) was not refused")
            } catch ControlClient.ClientError.api(let e) {
                #expect(e.status == 409, "\(e)")
                #expect(e.message == message)
                #expect(e.errors.map(\.path) == paths)
                #expect(e.errors.allSatisfy { $0.message == "refers to \(kind.singular) \(id)" }, "\(e)")
            }
        }
        let st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.generation == 1)
        // Nothing refers to these: they go.
        for (kind, id) in [(ObjectKind.filters, "f2"), (.sessions, "s2"), (.sources, "vm2")] {
            let (status, body) = try await t.request("DELETE", APIPath.object(kind, id))
            #expect(status == 200, "\(kind) \(id): \(body)")
        }
    }

    /// create, update and enable validate the whole document they make; its errors
    /// name objects by id (`sources[id=bad].interface`), in paths and in messages,
    /// not by their index in that document. apply keeps the client's own indices.
    @Test func objectChangesAreRefusedWithPathsThatNameTheObject() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        func refusal(_ method: String, _ path: String, _ body: String) async throws -> APIError? {
            do {
                let _: AnyJSON = try await t.call(method, path, body: Array(body.utf8))
                return nil
            } catch ControlClient.ClientError.api(let e) { return e }
        }
        var e = try await refusal("POST", APIPath.kind(.sources), #"{"id": "bad", "interface": "a/b"}"#)
        #expect(e?.status == 422)
        #expect(e?.message.hasPrefix("source bad not created: ") == true, "\(String(describing: e))")
        #expect(e?.errors.map(\.path) == ["sources[id=bad].interface"])

        e = try await refusal("POST", APIPath.kind(.sources), #"{"id": "bad", "interface": "tap-vm1"}"#)
        #expect(e?.errors.map(\.path) == ["sources[id=bad].interface"])
        #expect(e?.errors.first?.message.contains("also used by sources[id=vm1]") == true, "\(String(describing: e))")

        e = try await refusal(
            "PUT", APIPath.object(.sessions, "s2"),
            #"{"priority": 1, "filter": "f1", "sources": ["vm1", "vm2"], "target": "t1"}"#)
        #expect(e?.message.hasPrefix("session s2 not updated: ") == true, "\(String(describing: e))")
        #expect(e?.errors.map(\.path) == ["sessions[id=s2].priority"])
        #expect(e?.errors.first?.message.contains("(sessions[id=s1])") == true, "\(String(describing: e))")

        e = try await refusal(
            "POST", APIPath.kind(.sessions), #"{"id": "s9", "priority": 9, "filter": "nope", "sources": ["vm2"], "target": "t1"}"#)
        #expect(e?.errors.map(\.path) == ["sessions[id=s9].filter"])
        // No index of the merged document anywhere in the answer.
        #expect(e.map { "\($0)" }?.contains("sessions[2]") == false)

        let (status, body) = try await t.request("POST", APIPath.apply, Fixtures.invalid)
        #expect(status == 422)
        #expect(t.errorPaths(body).contains("sessions[1].target"))
    }

    @Test func errorPathsNameObjectsByIdOnlyWhereAPathStarts() throws {
        let doc = try JSONParser.parse(#"{"sessions": [{"id": "s1"}, {"id": "a b"}], "sources": [{"id": "vm1"}]}"#).get()
        let errors = ObjectPaths.namingObjects(
            [
                FieldError(path: "sessions[0].sources[0]", message: "also used by sessions[1] and sources[0]; sessions[7] is not there"),
                FieldError(path: "sources[0].securityGroups[3]", message: "x.sessions[0] stays"),
            ], in: doc)
        #expect(errors[0].path == "sessions[id=s1].sources[0]")
        #expect(errors[0].message == #"also used by sessions[id="a b"] and sources[id=vm1]; sessions[7] is not there"#)
        #expect(errors[1].path == "sources[id=vm1].securityGroups[3]")
        #expect(errors[1].message == "x.sessions[0] stays")
    }

    /// `?dryRun=true`: validated like an apply, diffed against the policy in force,
    /// and nothing else: no new generation, no state file written, the datapath
    /// never asked (a failure armed for its next apply is still there afterwards).
    @Test func dryRunApplyDiffsAndChangesNothing() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let before: AnyJSON = try await t.call("GET", APIPath.document)
        let dpBefore = t.datapath.appliedDocument
        var next = try JSONParser.parse(Fixtures.valid).get()
        next = next.setting(
            "targets",
            .array([
                .object([("id", .string("t1")), ("type", .string("nic")), ("address", .string("198.51.100.2"))]),
                .object([("id", .string("t2")), ("type", .string("nic")), ("address", .string("198.51.100.3"))]),
            ]))
        next = next.setting("sources", .array([.object([("id", .string("vm1")), ("interface", .string("tap-vm1"))])]))
        next = next.setting(
            "sessions",
            .array([
                .object([
                    ("id", .string("s1")), ("priority", .int(7)), ("filter", .string("f1")), ("sources", .array([.string("vm1")])),
                    ("target", .string("t1")),
                ])
            ]))
        t.datapath.failNextApply("the dry run reached the datapath")
        let plan: ApplyPlan = try await t.call("POST", APIPath.applyDryRun, body: Array(next.serialized(pretty: false).utf8))
        #expect(plan.dryRun && plan.changed && plan.generation == 1)
        #expect(plan[.targets] == ApplyPlan.Changes(added: ["t2"]))
        #expect(plan[.sources] == ApplyPlan.Changes(removed: ["vm2"]))
        #expect(plan[.sessions] == ApplyPlan.Changes(changed: ["s1"], removed: ["s2"]))
        #expect(plan[.filters].isEmpty && plan[.securityGroups].isEmpty && plan[.networkAcls].isEmpty)
        #expect(Set(plan.changes.keys) == Set(ObjectKind.allCases.map(\.documentKey)))

        // The same document: no changes. An invalid one: refused as apply refuses it.
        let same: ApplyPlan = try await t.call("POST", APIPath.applyDryRun, body: Array(Fixtures.valid.utf8))
        #expect(!same.changed)
        let (s, body) = try await t.request("POST", APIPath.applyDryRun, Fixtures.invalid)
        #expect(s == 422)
        #expect(t.errorPaths(body).contains("sessions[0].priority"))
        let (q, qb) = try await t.request("POST", "/v1/apply?dryrun=1", Fixtures.valid)
        #expect(q == 400 && qb.contains("dryRun=true"), "\(qb)")

        let after: AnyJSON = try await t.call("GET", APIPath.document)
        #expect(after == before)
        #expect(t.datapath.appliedDocument == dpBefore)
        #expect(try StateStore(directory: t.stateDir).load()?.generation == 1)
        let st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.generation == 1 && st.datapathGeneration == 1)
        // The failure armed before the dry runs is still waiting for a real apply.
        let (real, realBody) = try await t.request("POST", APIPath.apply, next.serialized(pretty: false))
        #expect(real == 500 && realBody.contains("the dry run reached the datapath"), "\(realBody)")
    }

    @Test func sessionEnableDisable() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let off: ObjectResponse = try await t.call("POST", APIPath.session("s1", enable: false))
        #expect(off.object.value["enabled"]?.boolValue == false)
        #expect(t.datapath.appliedDocument.sessions.first { $0.id == "s1" }?.isEnabled == false)
        let st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.enabledSessions == 1)
        let on: ObjectResponse = try await t.call("POST", APIPath.session("s1", enable: true))
        #expect(on.object.value["enabled"]?.boolValue != false)
        #expect(t.datapath.appliedDocument.sessions.first { $0.id == "s1" }?.isEnabled == true)
        let (s, _) = try await t.request("POST", APIPath.session("ghost", enable: true))
        #expect(s == 404)
    }

    @Test func statusShowsPendingAndAttachedSources() async throws {
        let t = try await TestAgent(interfaces: ["tap-vm1": 7])
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        var st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.datapath == "memory")
        #expect(st.sources.map(\.state) == [.attached, .pending])
        #expect(st.sources.first?.ifindex == 7)
        #expect(st.sources.first?.sessions == ["s1", "s2"])
        await t.agent.linkChanged(name: "tap-vm2", ifindex: 9, present: true)
        st = try await t.call("GET", APIPath.status)
        #expect(st.sources.map(\.state) == [.attached, .attached])
        await t.agent.linkChanged(name: "tap-vm1", ifindex: 7, present: false)
        st = try await t.call("GET", APIPath.status)
        #expect(st.sources.map(\.state) == [.pending, .attached])
    }

    @Test func explainAnswersFromTheLivePolicy() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let req = ExplainRequest(
            source: "vm1", direction: .inbound,
            packet: PacketSpec(protocol: "tcp", src: "203.0.113.5:40000", dst: "192.0.2.10:80"))
        let r: ExplainResponse = try await t.call("POST", APIPath.explain, json: req)
        #expect(r.oracle.mirrored)
        #expect(r.oracle.session == "s1")
        #expect(r.kernel == nil)
        #expect(r.agree == nil)
        #expect(r.kernelNote != nil)

        let bad = ExplainRequest(source: "vm1", direction: .inbound, packet: PacketSpec(protocol: "tcp", src: "nope", dst: "192.0.2.10:80"))
        let (s, body) = try await t.request("POST", APIPath.explain, String(decoding: try JSONEncoder().encode(bad), as: UTF8.self))
        #expect(s == 400)
        #expect(t.errorPaths(body) == ["packet.src"])
        let ghost = ExplainRequest(source: "ghost", direction: .inbound, packet: PacketSpec(nonIP: true))
        let (s2, _) = try await t.request("POST", APIPath.explain, String(decoding: try JSONEncoder().encode(ghost), as: UTF8.self))
        #expect(s2 == 404)
    }

    @Test func datapathFailureLeavesEverythingUnchanged() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        t.datapath.failNextApply("injected failure")
        let (s, body) = try await t.request("POST", APIPath.session("s1", enable: false))
        #expect(s == 500)
        #expect(body.contains("injected failure"))
        let got: ObjectResponse = try await t.call("GET", APIPath.object(.sessions, "s1"))
        #expect(got.object.value["enabled"] == nil)
        // The state file still holds generation 1.
        let persisted = try #require(try StateStore(directory: t.stateDir).load())
        #expect(persisted.generation == 1)
    }

    /// A datapath that puts the new policy in force, then fails and cannot undo it
    /// (the kernel datapath when nft fails and the flip back fails too).
    final class InForceThenFailing: Datapath, @unchecked Sendable {
        let inner = InMemoryDatapath(interfaces: [:])
        var fail = false
        let kind = "memory"
        func start() throws { try inner.start() }
        func apply(document: Document, generation: UInt64) throws {
            try inner.apply(document: document, generation: generation)
            if fail { throw PolicyInForceError("nft failed, and so did the flip back") }
        }
        func linkChanged(name: String, ifindex: Int, present: Bool) {}
        func status(verified: Bool) -> DatapathStatus { inner.status(verified: verified) }
        func explain(source: String, direction: Direction, packet: PacketDescription) throws -> Decision? { nil }
        func shutdown() { inner.shutdown() }
        func cleanup() throws {}
    }

    /// The answer agrees with what runs: a failed change whose policy is in force
    /// anyway is reported as such and kept (state, generation, state file).
    @Test func aFailedChangeWhosePolicyRunsAnywayIsReportedAndKept() async throws {
        let dir = try TempDir()
        let dp = InForceThenFailing()
        let store = StateStore(directory: dir.path + "/state")
        let agent = Agent(store: store, datapath: dp)
        try await agent.start(resetState: false)
        _ = try await agent.apply(try JSONParser.parse(Fixtures.valid).get())
        dp.fail = true
        await #expect {
            try await agent.setSessionEnabled("s1", false)
        } throws: { error in
            let e = error as? AgentError
            return e?.status == 500 && e?.message.contains("is in force") == true && e?.message.contains("flip back") == true
        }
        #expect(await agent.currentGeneration() == 2)
        #expect(dp.inner.appliedDocument.sessions.first { $0.id == "s1" }?.isEnabled == false)
        #expect(try await agent.get(.sessions, "s1").object.value["enabled"] == .bool(false))
        #expect(try store.load()?.generation == 2)
        await agent.shutdown()
    }

    /// The agent's refusals (404, 409, 422, a datapath failure), the router's (no
    /// route, 405, a body that does not decode) and the HTTP layer's (413, a request
    /// that is not HTTP) all arrive as the one APIError the client decodes.
    @Test func everyRefusalIsTheOneAPIError() async throws {
        let t = try await TestAgent(maxBodyBytes: 4096)
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let big = "{\"filters\": [" + String(repeating: " ", count: 8192) + "]}"
        let cases: [(method: String, path: String, body: String?, status: Int, says: String)] = [
            ("GET", "/v2/status", nil, 404, "no such route"),
            ("GET", "/v1/widgets", nil, 404, "no such kind"),
            ("DELETE", APIPath.apply, nil, 405, "not allowed"),
            ("POST", APIPath.apply, "{\"filters\": [", 400, "not valid JSON"),
            ("POST", APIPath.explain, #"{"source": 1}"#, 400, "not valid"),
            ("POST", APIPath.apply, Fixtures.invalid, 422, "invalid"),
            ("POST", APIPath.kind(.targets), #"{"id": "t1", "type": "nic", "address": "198.51.100.9"}"#, 409, "already exists"),
            ("GET", APIPath.object(.sessions, "ghost"), nil, 404, "not found"),
            ("GET", StatsPath.stats(sessions: ["ghost"], sources: []), nil, 404, "ghost"),
            ("POST", APIPath.apply, big, 413, "larger than 4096"),
        ]
        for c in cases {
            do {
                let _: AnyJSON = try await t.call(c.method, c.path, body: c.body.map { Array($0.utf8) })
                Issue.record("\(c.method) \(c.path) was not refused")
            } catch ControlClient.ClientError.api(let e) {
                #expect(e.status == c.status, "\(c.method) \(c.path): \(e)")
                #expect(e.message.contains(c.says), "\(c.method) \(c.path): \(e)")
                if c.status == 422 { #expect(e.errors.map(\.path).contains("sessions[0].priority")) }
            }
        }
        t.datapath.failNextApply("injected failure")
        do {
            let _: AnyJSON = try await t.call("POST", APIPath.session("s1", enable: false))
            Issue.record("a refused datapath apply was not an error")
        } catch ControlClient.ClientError.api(let e) {
            #expect(e.status == 500 && e.message.contains("injected failure"), "\(e)")
        }
        // Not HTTP at all: the HTTP layer answers with the same body.
        let raw = try await StatsStreamingTests.raw(t.socketPath, "GARBAGE\r\n\r\n")
        let answer = try ControlClient.parse(raw)
        let e = try JSONDecoder().decode(APIError.self, from: Data(answer.body))
        #expect(answer.status == 400 && e.message.contains("malformed HTTP request"), "\(e)")
    }

    /// A source on the agent's own mirror device or segmenter would put a classifier
    /// link in the place of stage 2: refused with the field's path, nothing applied.
    @Test func theAgentsOwnDevicesAreRefusedAsSources() async throws {
        let t = try await TestAgent(ownInterfaces: ["mirror0", "mirseg0", "mirseg1"])
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let onMirror = Fixtures.valid.replacingOccurrences(of: #""interface": "tap-vm2""#, with: #""interface": "mirror0""#)
        let (status, body) = try await t.request("POST", APIPath.apply, onMirror)
        #expect(status == 422, "\(body)")
        #expect(t.errorPaths(body) == ["sources[1].interface"], "\(body)")
        #expect(body.contains("mirror0"))
        let (createStatus, createBody) = try await t.request("POST", APIPath.kind(.sources), #"{"id": "bad", "interface": "mirseg1"}"#)
        #expect(createStatus == 422, "\(createBody)")
        #expect(createBody.contains("mirseg1"), "\(createBody)")
        #expect(t.errorPaths(createBody) == ["sources[id=bad].interface"], "\(createBody)")
        #expect(t.datapath.appliedDocument.sources.map(\.interface).sorted() == ["tap-vm1", "tap-vm2"])
    }

    /// The device copies leave through (issue 22): every copy would cross the source
    /// it came from. Refused with the path and the collector that routes there.
    @Test func theUnderlayDeviceIsRefusedAsASource() async throws {
        let t = try await TestAgent(underlayRoutes: ["198.51.100.2": "underlay0"])
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        let onUnderlay = Fixtures.valid.replacingOccurrences(of: #""interface": "tap-vm2""#, with: #""interface": "underlay0""#)
        let (status, body) = try await t.request("POST", APIPath.apply, onUnderlay)
        #expect(status == 422, "\(body)")
        #expect(t.errorPaths(body) == ["sources[1].interface"], "\(body)")
        #expect(body.contains("underlay0") && body.contains("198.51.100.2"), "\(body)")
        let (createStatus, createBody) = try await t.request("POST", APIPath.kind(.sources), #"{"id": "ul", "interface": "underlay0"}"#)
        #expect(createStatus == 422, "\(createBody)")
        #expect(t.errorPaths(createBody) == ["sources[id=ul].interface"], "\(createBody)")
        // Another device (a bridge port behind it, say) is fine.
        let (okStatus, okBody) = try await t.request("POST", APIPath.kind(.sources), #"{"id": "port", "interface": "ul-port"}"#)
        #expect(okStatus == 201 || okStatus == 200, "\(okBody)")
        #expect(t.datapath.appliedDocument.sources.map(\.interface).sorted() == ["tap-vm1", "tap-vm2", "ul-port"])
    }

    @Test func oversizedBodyGets413() async throws {
        let t = try await TestAgent(maxBodyBytes: 1024)
        defer { t.stopNow() }
        let big = "{\"filters\": [" + String(repeating: " ", count: 4096) + "]}"
        let (s, body) = try await t.request("POST", APIPath.apply, big)
        #expect(s == 413)
        #expect(body.contains("larger than 1024"))
        let (s2, _) = try await t.request("GET", APIPath.status)
        #expect(s2 == 200)
    }

    @Test func socketIsMode0600() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        var st = stat()
        #expect(stat(t.socketPath, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(st.st_mode & S_IFMT == S_IFSOCK)
    }

    @Test func staleSocketIsReplacedButALiveAgentIsNot() async throws {
        let dir = try TempDir()
        // A stale socket file: bound once, nobody listening.
        let path = dir.path + "/agent.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let rc = withUnixAddress(path) { bind(fd, $0, $1) }
        #expect(rc == 0)
        close(fd)

        let first = try await TestAgent(dir: dir)
        let (s, _) = try await first.request("GET", APIPath.status)
        #expect(s == 200)
        // Refused: by the state directory's lock first (the same directory), which
        // comes before the socket's check; either way the live agent is left alone.
        let refusal = await #expect(throws: (any Error).self) {
            let second = try await TestAgent(dir: dir)
            await second.stop()
        }
        #expect("\(refusal.map { "\($0)" } ?? "")".contains("in use by another mirror-agent"))
        let (s2, _) = try await first.request("GET", APIPath.status)
        #expect(s2 == 200)
        await first.stop()
        #expect(access(path, F_OK) != 0)  // removed on stop
    }

    @Test func connectionLimitIsEnforcedAndFreedOnClose() async throws {
        let t = try await TestAgent(maxConnections: 2)
        defer { t.stopNow() }
        func connectRaw() -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            _ = withUnixAddress(t.socketPath) { connect(fd, $0, $1) }
            return fd
        }
        let a = connectRaw(), b = connectRaw()
        // The server accepts on its own event loop: wait for it (a loaded host can
        // take a while), then hold it to the limit.
        for _ in 0..<100 where t.server.activeConnections < 2 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(t.server.activeConnections == 2)
        // A third is closed at once: the request fails.
        await #expect(throws: ControlClient.ClientError.self) { _ = try await t.request("GET", APIPath.status) }
        close(a); close(b)
        for _ in 0..<100 where t.server.activeConnections > 0 { try await Task.sleep(for: .milliseconds(50)) }
        let (s, _) = try await t.request("GET", APIPath.status)
        #expect(s == 200)
    }
}
