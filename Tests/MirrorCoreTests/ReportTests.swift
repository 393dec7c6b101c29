import Foundation
import MirrorCore
import Testing

/// A decision's JSON is its Codable form: the agent answers with it and agentctl prints it.
func decisionJSON(_ d: Decision) throws -> JSONValue {
    try JSONParser.parse(Array(JSONEncoder().encode(d))).get()
}

@Test func explainJSONHasTheIssuesShape() throws {
    let d = Decision(mirrored: false, session: nil, rule: nil, reason: .noMatch, tried: ["a", "b"], explanation: "x")
    let j = try decisionJSON(d)
    #expect(j["mirrored"] == .bool(false))
    #expect(j["session"] == .null)
    #expect(j["rule"] == .null)
    #expect(j["reason"] == .string("no_match"))
    #expect(j["tried"] == .array([.string("a"), .string("b")]))
    #expect(j["suppression"] == nil)
    let m = Decision(
        mirrored: true, session: "s", rule: .init(filter: "f", direction: .outbound, priority: 3, action: .accept),
        reason: .accepted, tried: ["s"], explanation: "y")
    let r = try decisionJSON(m)["rule"]
    #expect(r?["direction"] == .string("outbound") && r?["priority"] == .int(3) && r?["action"] == .string("accept"))
    #expect(try JSONDecoder().decode(Decision.self, from: JSONEncoder().encode(m)) == m)
}

/// A security group's default deny has no rule: `rulePriority` is there, null.
@Test func aSuppressionWithoutARuleSaysSoWithNull() throws {
    let d = Decision(
        mirrored: false, session: nil, rule: nil, reason: .suppressedBySecurityGroup, tried: [],
        suppression: .init(kind: "securityGroup", id: "web,ops", rulePriority: nil), explanation: "x")
    let s = try decisionJSON(d)["suppression"]
    #expect(s?["kind"] == .string("securityGroup") && s?["id"] == .string("web,ops") && s?["rulePriority"] == .null)
    #expect(try JSONDecoder().decode(Decision.self, from: JSONEncoder().encode(d)) == d)
}

@Test func validateJSONHasTheIssuesShape() {
    let j = Reports.validationJSON([ValidationError(path: "sessions[0].vni", message: "m")])
    #expect(
        j
            == .object([
                ("valid", .bool(false)), ("errors", .array([.object([("path", .string("sessions[0].vni")), ("message", .string("m"))])])),
            ]))
    #expect(Reports.validationJSON([])["valid"] == .bool(true))
}

@Test func explainPacketArgumentsAcceptEveryForm() throws {
    let v6 = try PacketArguments.packet(
        protocol: "tcp", src: "[2001:db8::1]:443", dst: "[2001:db8::2]:80", laterFragment: false, nonIP: false
    ).get()
    #expect(v6.ethertype == .ipv6 && v6.sourcePort == 443 && v6.destinationPort == 80 && v6.protocol == 6)
    let n = try PacketArguments.packet(protocol: "17", src: "192.0.2.1:53", dst: "192.0.2.2:53", laterFragment: false, nonIP: false).get()
    #expect(n.protocol == 17 && n.ethertype == .ipv4)
    let all = try PacketArguments.packet(protocol: "all", src: "2001:db8::1", dst: "2001:db8::2", laterFragment: false, nonIP: false).get()
    #expect(all.protocol == nil)
    let frag = try PacketArguments.packet(protocol: "tcp", src: "192.0.2.1", dst: "192.0.2.2", laterFragment: true, nonIP: false).get()
    #expect(frag.laterFragment && frag.sourcePort == nil)
    #expect(try PacketArguments.packet(protocol: nil, src: nil, dst: nil, laterFragment: false, nonIP: true).get() == .notIP)
}

@Test func explainPacketArgumentsRefuseNonsense() {
    let bad: [(String?, String?, String?)] = [
        ("tcp", "192.0.2.1:99999", "192.0.2.2:80"), ("tcp", "192.0.2.1:1", "[2001:db8::2]:80"), ("icmp", "192.0.2.1:1", "192.0.2.2"),
        ("icmp", "2001:db8::1", "2001:db8::2"), ("bogus", "192.0.2.1", "192.0.2.2"), ("256", "192.0.2.1", "192.0.2.2"),
        ("tcp", "192.0.2.1", "192.0.2.2"), (nil, "192.0.2.1", "192.0.2.2"), ("udp", "not-an-ip:1", "192.0.2.2:2"),
        ("tcp", "[2001:db8::1:80", "[2001:db8::2]:80"),
    ]
    for (p, s, d) in bad {
        if case .success(let x) = PacketArguments.packet(protocol: p, src: s, dst: d, laterFragment: false, nonIP: false) {
            Issue.record("accepted \(String(describing: p)) \(String(describing: s)) \(String(describing: d)): \(x)")
        }
    }
}
