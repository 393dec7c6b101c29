import MirrorCore
import Testing

/// One invalid document: the base document with one change, and the error paths it must report.
struct InvalidCase: Sendable, CustomStringConvertible {
    var name: String
    var json: JSONValue
    var paths: [String]
    /// A word the message must contain (what is allowed, or the quota's name).
    var mentions: String?
    var description: String { name }

    init(_ name: String, _ path: String, _ value: JSONValue?, expect: [String]? = nil, mentions: String? = nil) {
        self.name = name
        self.json = baseJSON().setting(path, value)
        self.paths = expect ?? [path]
        self.mentions = mentions
    }

    init(_ name: String, json: JSONValue, expect: [String], mentions: String? = nil) {
        self.name = name; self.json = json; self.paths = expect; self.mentions = mentions
    }
}

let v4Rule = obj([("priority", num(9)), ("action", str("accept")), ("ethertype", str("ipv4"))])

let invalidCases: [InvalidCase] = [
    // ids (SPEC §2)
    InvalidCase("empty id", "filters[0].id", str(""), mentions: "1–64"),
    InvalidCase("id with a space", "targets[0].id", str("my target"), mentions: "A-Z"),
    InvalidCase("id of 65 characters", "sources[1].id", str(String(repeating: "x", count: 65)), mentions: "1–64"),
    InvalidCase("id that is a number", "sessions[1].id", num(7), mentions: "string"),
    InvalidCase("duplicate filter id", "filters[1].id", str("f1"), expect: ["filters[1].id"], mentions: "duplicate"),
    InvalidCase("duplicate session id", "sessions[1].id", str("a"), mentions: "duplicate"),
    // unknown and missing fields
    InvalidCase("misspelled field", "sessions[0].prioirty", num(3), mentions: "did you mean \"priority\""),
    InvalidCase("unknown top-level field", "session", .array([]), mentions: "did you mean \"sessions\""),
    InvalidCase("unknown rule field", "filters[0].inbound[0].destinationPort", str("80"), mentions: "destinationPorts"),
    InvalidCase("missing session priority", "sessions[1].priority", nil, mentions: "missing"),
    InvalidCase("missing source interface", "sources[0].interface", nil, mentions: "missing"),
    InvalidCase("missing rule action", "filters[0].outbound[0].action", nil, mentions: "missing"),
    // rules
    InvalidCase("rule priority 0", "filters[0].inbound[0].priority", num(0), mentions: "1–65535"),
    InvalidCase("rule priority 65536", "filters[0].inbound[1].priority", num(65536), mentions: "1–65535"),
    InvalidCase("rule priority 1.5", "filters[0].inbound[0].priority", .double(1.5), mentions: "integer"),
    InvalidCase("rule priority as a boolean", "filters[0].inbound[0].priority", .bool(true), mentions: "integer"),
    InvalidCase("duplicate rule priority in a direction", "filters[0].inbound[1].priority", num(1), mentions: "unique"),
    InvalidCase("action Accept", "filters[0].inbound[0].action", str("Accept"), mentions: "did you mean \"accept\""),
    InvalidCase("ethertype ipv5", "filters[0].inbound[0].ethertype", str("ipv5"), mentions: "\"ipv4\" or \"ipv6\""),
    InvalidCase("unknown protocol name", "filters[0].inbound[0].protocol", str("tpc"), mentions: "did you mean \"tcp\""),
    InvalidCase("protocol 256", "filters[0].inbound[0].protocol", num(256), mentions: "0–255"),
    InvalidCase("icmp with ipv6", "filters[0].inbound[1].protocol", str("icmp"), mentions: "icmpv6"),
    InvalidCase("icmpv6 with ipv4", "filters[0].outbound[0].protocol", str("icmpv6"), mentions: "use icmp"),
    InvalidCase("CIDR with host bits set", "filters[0].inbound[0].source", str("198.51.100.1/24"), mentions: "198.51.100.0/24"),
    InvalidCase("CIDR prefix out of range", "filters[0].inbound[0].source", str("198.51.100.0/33"), mentions: "0–32"),
    InvalidCase("IPv6 CIDR prefix 129", "filters[0].inbound[1].destination", str("2001:db8::/129"), mentions: "0–128"),
    InvalidCase("CIDR family differs from ethertype", "filters[0].inbound[0].destination", str("2001:db8::/32"), mentions: "family"),
    InvalidCase("CIDR that is not an address", "filters[0].inbound[0].source", str("10.0.0/8"), mentions: "address/prefix"),
    InvalidCase("CIDR with a leading-zero prefix", "filters[0].inbound[0].source", str("198.51.100.0/024")),
    InvalidCase("port range 80-70", "filters[0].inbound[0].destinationPorts", str("80-70"), mentions: "N ≤ M"),
    InvalidCase("port 65536", "filters[0].inbound[0].sourcePorts", str("65536"), mentions: "65535"),
    InvalidCase("port range garbage", "filters[0].inbound[0].sourcePorts", str("http"), mentions: "N-M"),
    InvalidCase("ports on icmpv6", "filters[0].inbound[1].destinationPorts", str("80"), mentions: "tcp or udp"),
    InvalidCase(
        "ports on protocol all", "filters[0].inbound[0].protocol", str("all"),
        expect: ["filters[0].inbound[0].destinationPorts"], mentions: "tcp or udp"),
    InvalidCase(
        "ports on protocol number 47", "filters[0].outbound[0].protocol", num(47),
        expect: ["filters[0].outbound[0].sourcePorts"]),
    InvalidCase("rules is not an array", "filters[1].inbound", str("none"), mentions: "array"),
    // targets
    InvalidCase("target type vm", "targets[0].type", str("vm"), mentions: "\"nic\" or \"loadBalancer\""),
    InvalidCase("nic target without address", "targets[0].address", nil),
    // SPEC §11: encapsulations
    InvalidCase(
        "encapsulation gre", "targets[0].encapsulation", str("gre"), mentions: "\"vxlan\" or \"geneve\" or \"erspan\""),
    InvalidCase("encapsulation that is a number", "targets[1].encapsulation", num(1), mentions: "encapsulation"),
    InvalidCase(
        "vni 1024 at an erspan target",
        json: baseJSON().setting("targets[0].encapsulation", str("erspan")).setting("sessions[0].vni", num(1024)),
        expect: ["sessions[0].vni"], mentions: "0–1023"),
    InvalidCase("nic target with a bad address", "targets[0].address", str("192.0.2.256"), mentions: "IP address"),
    InvalidCase("nic target with a multicast address", "targets[0].address", str("224.0.0.1"), mentions: "unicast"),
    InvalidCase("load balancer with no backends", "targets[1].backends", .array([]), mentions: "1–16"),
    InvalidCase("load balancer with a duplicate backend", "targets[1].backends[1]", str("203.0.113.1"), mentions: "twice"),
    InvalidCase("load balancer with an address", "targets[1].address", str("192.0.2.99"), mentions: "backends"),
    InvalidCase(
        "target address equal to a source address", "targets[0].address", str("198.18.0.10"),
        mentions: "cannot be a mirror target"),
    InvalidCase(
        "backend equal to a source address", "targets[1].backends[0]", str("198.18.0.10"),
        mentions: "cannot be a mirror target"),
    // sources
    InvalidCase("interface name of 16 bytes", "sources[0].interface", str("abcdefghijklmnop"), mentions: "1–15"),
    InvalidCase("interface name with a slash", "sources[0].interface", str("tap/0")),
    InvalidCase("interface name with a space", "sources[0].interface", str("tap 0")),
    InvalidCase("interface name ..", "sources[0].interface", str("..")),
    InvalidCase("empty interface name", "sources[0].interface", str("")),
    InvalidCase("two sources on one interface", "sources[1].interface", str("tap0"), mentions: "also used"),
    InvalidCase("source address that is not an address", "sources[0].addresses[0]", str("198.18.0.300")),
    InvalidCase("enforce as a string", "sources[0].enforce", str("yes"), mentions: "true or false"),
    InvalidCase("dangling security group", "sources[0].securityGroups[0]", str("sg9"), mentions: "does not exist"),
    InvalidCase("dangling network ACL", "sources[0].networkAcl", str("acl-typo"), mentions: "does not exist"),
    // sessions
    InvalidCase("session priority 0", "sessions[0].priority", num(0), mentions: "1–32766"),
    InvalidCase("session priority 32767", "sessions[0].priority", num(32767), mentions: "1–32766"),
    InvalidCase("vni 16777216", "sessions[0].vni", num(16_777_216), mentions: "0–16777215"),
    InvalidCase("negative vni", "sessions[0].vni", num(-1)),
    InvalidCase("duplicate explicit vni", "sessions[1].vni", num(100), mentions: "vni 100"),
    InvalidCase("packetLength 63", "sessions[0].packetLength", num(63), mentions: "64–9216"),
    InvalidCase("packetLength 9217", "sessions[0].packetLength", num(9217), mentions: "64–9216"),
    InvalidCase("enabled as 1", "sessions[0].enabled", num(1), mentions: "true or false"),
    // SPEC §10
    InvalidCase("sampleOneIn 0", "sessions[0].sampleOneIn", num(0), mentions: "1–65535"),
    InvalidCase("sampleOneIn 65536", "sessions[0].sampleOneIn", num(65536), mentions: "1–65535"),
    InvalidCase("sampleOneIn as a string", "sessions[0].sampleOneIn", str("10"), mentions: "integer"),
    InvalidCase("empty rateLimit", "sessions[0].rateLimit", obj([]), mentions: "packetsPerSecond, bitsPerSecond or both"),
    InvalidCase("rateLimit as a number", "sessions[0].rateLimit", num(1000), mentions: "object"),
    InvalidCase(
        "packetsPerSecond 0", "sessions[0].rateLimit", obj([("packetsPerSecond", num(0))]),
        expect: ["sessions[0].rateLimit.packetsPerSecond"], mentions: "1–1000000000"),
    InvalidCase(
        "bitsPerSecond 1.5", "sessions[0].rateLimit", obj([("bitsPerSecond", .double(1.5))]),
        expect: ["sessions[0].rateLimit.bitsPerSecond"], mentions: "integer"),
    InvalidCase(
        "bitsPerSecond over a terabit", "sessions[0].rateLimit", obj([("bitsPerSecond", num(1_000_000_000_001))]),
        expect: ["sessions[0].rateLimit.bitsPerSecond"], mentions: "1000–1000000000000"),
    InvalidCase(
        "misspelled rate limit field", "sessions[0].rateLimit", obj([("packetPerSecond", num(10))]),
        expect: ["sessions[0].rateLimit.packetPerSecond"], mentions: "did you mean \"packetsPerSecond\""),
    InvalidCase("dangling filter", "sessions[0].filter", str("f3"), mentions: "did you mean \"f1\""),
    InvalidCase("dangling target", "sessions[0].target", str("t9"), mentions: "does not exist"),
    InvalidCase("dangling source", "sessions[0].sources[1]", str("s3"), mentions: "does not exist"),
    InvalidCase("source listed twice in a session", "sessions[0].sources[1]", str("s1"), mentions: "twice"),
    InvalidCase("session with no sources", "sessions[0].sources", .array([]), mentions: "1–10"),
    InvalidCase("same priority on sessions sharing a source", "sessions[1].priority", num(1), mentions: "distinct priorities"),
    InvalidCase("description too long", "sessions[0].description", str(String(repeating: "d", count: 256)), mentions: "255"),
    // security groups and ACLs (SPEC §5)
    InvalidCase("security group rule priority 101", "securityGroups[0].rules[0].priority", num(101), mentions: "1–100"),
    InvalidCase(
        "security group rule direction inbound", "securityGroups[0].rules[0].direction", str("inbound"),
        mentions: "\"ingress\" or \"egress\""),
    InvalidCase(
        "security group rule action accept", "securityGroups[0].rules[0].action", str("accept"),
        mentions: "\"allow\" or \"deny\""),
    InvalidCase(
        "security group ports on protocol all", "securityGroups[0].rules[0].protocol", str("all"),
        expect: ["securityGroups[0].rules[0].ports"]),
    InvalidCase("security group remote family mismatch", "securityGroups[0].rules[0].remote", str("2001:db8::/32")),
    InvalidCase(
        "duplicate security group rule priority", "securityGroups[0].rules[2]",
        obj([("direction", str("ingress")), ("priority", num(1)), ("action", str("deny")), ("ethertype", str("ipv4"))]),
        expect: ["securityGroups[0].rules[2].priority"]),
    InvalidCase("ACL rule priority 0", "networkAcls[0].inbound[0].priority", num(0)),
    InvalidCase("ACL rule with host bits", "networkAcls[0].outbound[0].source", str("198.18.0.1/16")),
    InvalidCase("ACL rule unknown field", "networkAcls[0].outbound[0].remote", str("198.18.0.0/16"), mentions: "unknown field"),
    InvalidCase(
        "duplicate ACL rule priority", "networkAcls[0].inbound[1]", v4Rule.setting("priority", num(1)).setting("action", str("allow")),
        expect: ["networkAcls[0].inbound[1].priority"]),
    // target healthCheck (SPEC §10)
    InvalidCase(
        "health check without protocol", "targets[0].healthCheck", obj([("intervalMs", num(500))]),
        expect: ["targets[0].healthCheck.protocol"], mentions: "missing"),
    InvalidCase(
        "health check protocol udp", "targets[0].healthCheck", obj([("protocol", str("udp"))]),
        expect: ["targets[0].healthCheck.protocol"], mentions: "\"icmp\" or \"tcp\""),
    InvalidCase(
        "tcp health check without port", "targets[1].healthCheck", obj([("protocol", str("tcp"))]),
        expect: ["targets[1].healthCheck.port"], mentions: "port"),
    InvalidCase(
        "icmp health check with a port", "targets[1].healthCheck", obj([("protocol", str("icmp")), ("port", num(80))]),
        expect: ["targets[1].healthCheck.port"], mentions: "tcp"),
    InvalidCase(
        "health check port 0", "targets[0].healthCheck", obj([("protocol", str("tcp")), ("port", num(0))]),
        expect: ["targets[0].healthCheck.port"], mentions: "1–65535"),
    InvalidCase(
        "health check interval too short", "targets[0].healthCheck", obj([("protocol", str("icmp")), ("intervalMs", num(99))]),
        expect: ["targets[0].healthCheck.intervalMs"], mentions: "100–60000"),
    InvalidCase(
        "health check threshold 0", "targets[1].healthCheck", obj([("protocol", str("icmp")), ("unhealthyThreshold", num(0))]),
        expect: ["targets[1].healthCheck.unhealthyThreshold"], mentions: "1–10"),
    InvalidCase(
        "health check threshold 11", "targets[1].healthCheck", obj([("protocol", str("icmp")), ("healthyThreshold", num(11))]),
        expect: ["targets[1].healthCheck.healthyThreshold"], mentions: "1–10"),
    InvalidCase(
        "health check unknown field", "targets[0].healthCheck", obj([("protocol", str("icmp")), ("timeoutMs", num(5))]),
        expect: ["targets[0].healthCheck.timeoutMs"], mentions: "unknown field"),
    InvalidCase(
        "health check that is a string", "targets[0].healthCheck", str("icmp"),
        expect: ["targets[0].healthCheck"], mentions: "object"),
    // document shape
    InvalidCase("document is an array", json: .array([]), expect: ["document"], mentions: "object"),
    InvalidCase("filters is an object", "filters", obj([]), mentions: "array"),
    InvalidCase("a session that is a string", "sessions[1]", str("b"), mentions: "object"),
    // A session broken in one field still has its references checked: every error at once.
    InvalidCase(
        "bad priority and a dangling filter in one session",
        json: baseJSON().setting("sessions[0].priority", num(0)).setting("sessions[0].filter", str("nope")),
        expect: ["sessions[0].priority", "sessions[0].filter"], mentions: "does not exist"),
]

@Test(arguments: invalidCases)
func invalidDocumentReportsItsPaths(_ c: InvalidCase) {
    let errs = errors(c.json)
    #expect(!errs.isEmpty, "\(c.name) was accepted")
    for p in c.paths {
        #expect(errs.contains { $0.path == p }, "\(c.name): expected an error at \(p), got \(errs)")
    }
    if let word = c.mentions {
        #expect(
            errs.contains { c.paths.contains($0.path) && $0.message.contains(word) },
            "\(c.name): expected a message mentioning \(word), got \(errs)")
    }
}

@Test func thereAreAtLeastFortyDistinctInvalidDocuments() {
    #expect(Set(invalidCases.map(\.json)).count >= 40)
    #expect(Set(invalidCases.map(\.name)).count == invalidCases.count)
}

@Test func baseDocumentIsValid() {
    #expect(errors(baseJSON()) == [])
}

@Test func aDocumentWithSeveralProblemsReportsAllOfThem() {
    let json = baseJSON()
        .setting("filters[0].inbound[0].source", str("198.51.100.7/24"))
        .setting("targets[0].address", str("198.18.0.10"))
        .setting("sessions[0].vni", num(99_999_999))
        .setting("sessions[1].filter", str("nope"))
        .setting("sources[1].interfac", str("tap1"))
        .setting("securityGroups[0].rules[0].priority", num(0))
    let paths = Set(errorPaths(json))
    #expect(
        paths.isSuperset(of: [
            "filters[0].inbound[0].source", "targets[0].address", "sessions[0].vni", "sessions[1].filter",
            "sources[1].interfac", "securityGroups[0].rules[0].priority",
        ]), "\(paths)")
}

@Test func invalidJSONSyntaxIsAnErrorWithItsPosition() {
    let errs = errors("{\"filters\": [\n  {\"id\": \"x\",}\n]}")
    #expect(errs.count == 1)
    #expect(errs.first?.path == "document")
    #expect(errs.first?.message.contains("line 2") == true)
}

@Test func duplicateJSONMembersAreRefused() {
    let errs = errors("{\"filters\": [], \"filters\": []}")
    #expect(errs.first?.message.contains("duplicate member") == true)
}

@Test func errorsPrintAsPathColonMessage() {
    let e = ValidationError(path: "sessions[2].sources[10]", message: "too many")
    #expect("\(e)" == "sessions[2].sources[10]: too many")
}

@Test func aBrokenObjectDoesNotCauseDanglingReferenceNoise() {
    // The filter has a bad rule; the session that uses it must not also be told the filter is missing.
    let json = baseJSON().setting("filters[0].inbound[0].priority", num(0))
    #expect(errorPaths(json) == ["filters[0].inbound[0].priority"])
}

@Test func aTargetThatFailsForAnotherReasonIsStillCheckedAgainstSourceAddresses() {
    let json = baseJSON()
        .setting("targets[1].backends[1]", str("198.18.0.10"))
        .setting("targets[1].description", num(5))
    let paths = Set(errorPaths(json))
    #expect(paths == ["targets[1].backends[1]", "targets[1].description"], "\(paths)")
}

@Test func danglingReferencesSuggestTheClosestId() {
    let e = errors(baseJSON().setting("sessions[0].target", str("t2")))
    #expect(e.count == 1)
    #expect(e.first?.message.hasSuffix("did you mean \"t1\"?") == true, "\(e)")
}
