import Foundation
import MirrorAPI
import MirrorAgent
import MirrorCore
import Testing

/// agentctl decodes every answer into MirrorAPI's types and prints from them. Its
/// `-o json` stays what the agent sent because the typed value, encoded in the
/// core's JSON with sorted members, is exactly the tree the agent's encoder wrote.
@Suite("Typed answers: printed from the API's types, as the agent sent them")
struct TypedAnswerTests {
    static let agentEncoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static func asTheAgentSendsIt<T: Encodable>(_ v: T) throws -> JSONValue {
        try JSONParser.parse(Array(agentEncoder.encode(v))).get()
    }

    static let suppressed = Decision(
        mirrored: false, session: nil, rule: nil, reason: .suppressedBySecurityGroup, tried: [],
        suppression: .init(kind: "securityGroup", id: "web,ops", rulePriority: nil),
        explanation: "not mirrored: dropped by security group web,ops (no rule matched: default deny)")
    static let mirrored = Decision(
        mirrored: true, session: "s1",
        rule: .init(filter: "f1", direction: .inbound, priority: 3, action: .accept),
        reason: .accepted, tried: ["s0", "s1"], explanation: "mirrored by session s1")

    @Test func theSortedEncodingIsTheAgentsJSON() throws {
        let status = StatusResponse(
            version: "0.1.0", datapath: "kernel", datapathLoaded: true, generation: 7, datapathGeneration: 6, sessions: 3,
            enabledSessions: 2,
            sources: [
                .init(id: "vm1", interface: "tap-vm1", ifindex: 3, state: .attached, sessions: ["a", "b"]),
                .init(id: "vm2", interface: "tap-vm2", ifindex: nil, state: .pending, sessions: []),
            ],
            mirrorDevice: "mirror0", tcAttach: "tcx", tcxPending: 4)
        let bare = StatusResponse(
            version: "0.1.0", datapath: "memory", datapathLoaded: false, generation: 0, datapathGeneration: 0,
            sessions: 0, enabledSessions: 0, sources: [], mirrorDevice: nil)
        let apply = ApplyResponse(generation: 12, changed: true, vnis: ["b": 2, "B": 3, "a-1": 4, "a_1": 5, "a.1": 6, "Z9": 7, "z10": 8])
        let explains = [
            ExplainResponse(
                source: "vm1", direction: .inbound, packet: "ipv4 tcp 203.0.113.5:1 -> 192.0.2.10:80",
                oracle: Self.mirrored, kernel: Self.mirrored, agree: true, kernelNote: nil, generation: 3),
            ExplainResponse(
                source: "vm1", direction: .outbound, packet: "non-IP", oracle: Self.suppressed, kernel: nil,
                agree: nil, kernelNote: "no kernel", generation: 3),
        ]
        let sorted = JSONValueEncoder(sortedKeys: true)
        #expect(try sorted.encode(status) == Self.asTheAgentSendsIt(status))
        #expect(try sorted.encode(bare) == Self.asTheAgentSendsIt(bare))
        #expect(try sorted.encode(apply) == Self.asTheAgentSendsIt(apply))
        for e in explains { #expect(try sorted.encode(e) == Self.asTheAgentSendsIt(e)) }
        let error = APIError(status: 422, "invalid", errors: [FieldError(path: "sessions[0].priority", message: "out of range")])
        #expect(try sorted.encode(error) == Self.asTheAgentSendsIt(error))
    }

    /// Unsorted, members come in the order the type encodes them: a decision's JSON
    /// reads mirrored, session, rule, reason, tried, suppression, explanation.
    @Test func aDecisionKeepsItsOwnMemberOrder() throws {
        let j = try JSONValueEncoder().encode(Self.suppressed)
        #expect(j.members?.map(\.key) == ["mirrored", "session", "rule", "reason", "tried", "suppression", "explanation"])
        #expect(j["suppression"]?.members?.map(\.key) == ["kind", "id", "rulePriority"])
        #expect(j["suppression"]?["rulePriority"] == .null && j["session"] == .null && j["rule"] == .null)
        let m = try JSONValueEncoder().encode(Self.mirrored)
        #expect(m["rule"]?.members?.map(\.key) == ["filter", "direction", "priority", "action"])
        #expect(m["suppression"] == nil)
    }

    @Test func aValueTooLargeForAJSONIntegerIsAnErrorNotATrap() {
        #expect(throws: EncodingError.self) { try JSONValueEncoder().encode([UInt64.max]) }
    }

    /// Lists and objects are the user's JSON: decoded, they keep the members in the
    /// order the agent sent them (JSONDecoder would sort them).
    @Test func listAndObjectAnswersKeepTheAgentsMemberOrder() async throws {
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        for kind in ObjectKind.allCases {
            let (_, body) = try await t.request("GET", APIPath.kind(kind))
            let list: ListResponse = try await t.call("GET", APIPath.kind(kind))
            #expect(list.json == (try JSONParser.parse(body).get()), "\(kind)")
        }
        let (_, body) = try await t.request("GET", APIPath.object(.sessions, "s2"))
        let object: ObjectResponse = try await t.call("GET", APIPath.object(.sessions, "s2"))
        #expect(object.json == (try JSONParser.parse(body).get()))
        #expect(object.object.value.members?.first?.key == "id")
    }
}
