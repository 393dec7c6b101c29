/// The canonical JSON form of a document (SPEC §7 field names, spec field order,
/// absent optionals omitted, protocols by name where they have one). Parsing it back
/// with `DocumentParser` gives an equal document.
public enum DocumentEncoding {
    public static func encode(_ d: Document) -> JSONValue {
        .object([
            ("filters", .array(d.filters.map(encode))),
            ("targets", .array(d.targets.map(encode))),
            ("sources", .array(d.sources.map(encode))),
            ("sessions", .array(d.sessions.map(encode))),
            ("securityGroups", .array(d.securityGroups.map(encode))),
            ("networkAcls", .array(d.networkAcls.map(encode))),
        ])
    }

    /// JSON text (pretty by default, as a person would write the file).
    public static func text(_ d: Document, pretty: Bool = true) -> String {
        encode(d).serialized(pretty: pretty)
    }

    typealias Members = [(key: String, value: JSONValue)]

    static func opt(_ m: inout Members, _ key: String, _ v: JSONValue?) {
        if let v { m.append((key, v)) }
    }

    static func proto(_ p: ProtocolSpec) -> JSONValue {
        switch p {
        case .all: return .string("all")
        case .number(let n):
            if let name = ProtocolSpec.names.first(where: { $0.value == n })?.key { return .string(name) }
            return .int(Int64(n))
        }
    }

    static func str(_ s: CustomStringConvertible?) -> JSONValue? { s.map { .string($0.description) } }

    public static func encode(_ f: Filter) -> JSONValue { ruleLists(f.id, f.description, f.inbound, f.outbound) }

    /// A filter or a network ACL: an id, a description and two rule lists.
    static func ruleLists<Action: RawRepresentable>(
        _ id: String, _ description: String?, _ inbound: [MatchRule<Action>], _ outbound: [MatchRule<Action>]
    ) -> JSONValue where Action.RawValue == String {
        var m: Members = [("id", .string(id))]
        opt(&m, "description", description.map(JSONValue.string))
        m.append(("inbound", .array(inbound.map(encode))))
        m.append(("outbound", .array(outbound.map(encode))))
        return .object(m)
    }

    /// A filter rule or a network ACL rule: the same fields, their own action.
    public static func encode<Action: RawRepresentable>(_ r: MatchRule<Action>) -> JSONValue where Action.RawValue == String {
        var m: Members = [
            ("priority", .int(Int64(r.priority))), ("action", .string(r.action.rawValue)),
            ("ethertype", .string(r.ethertype.rawValue)), ("protocol", proto(r.protocol)),
        ]
        opt(&m, "source", str(r.source))
        opt(&m, "destination", str(r.destination))
        opt(&m, "sourcePorts", str(r.sourcePorts))
        opt(&m, "destinationPorts", str(r.destinationPorts))
        return .object(m)
    }

    public static func encode(_ t: Target) -> JSONValue {
        var m: Members = [("id", .string(t.id)), ("type", .string(t.type.rawValue))]
        opt(&m, "address", str(t.address))
        opt(&m, "backends", t.backends.map { .array($0.map { .string($0.description) }) })
        opt(&m, "healthCheck", t.healthCheck.map(encode))
        opt(&m, "encapsulation", t.encapsulation.map { .string($0.rawValue) })
        opt(&m, "description", t.description.map(JSONValue.string))
        return .object(m)
    }

    /// Every field, defaults included: what the agent probes with is visible as it is.
    public static func encode(_ h: HealthCheck) -> JSONValue {
        var m: Members = [("protocol", .string(h.protocol.rawValue))]
        opt(&m, "port", h.port.map { .int(Int64($0)) })
        m.append(("intervalMs", .int(Int64(h.intervalMs))))
        m.append(("unhealthyThreshold", .int(Int64(h.unhealthyThreshold))))
        m.append(("healthyThreshold", .int(Int64(h.healthyThreshold))))
        return .object(m)
    }

    public static func encode(_ s: Source) -> JSONValue {
        var m: Members = [("id", .string(s.id)), ("interface", .string(s.interface))]
        opt(&m, "addresses", s.addresses.map { .array($0.map { .string($0.description) }) })
        opt(&m, "securityGroups", s.securityGroups.map { .array($0.map(JSONValue.string)) })
        opt(&m, "networkAcl", s.networkAcl.map(JSONValue.string))
        opt(&m, "enforce", s.enforce.map(JSONValue.bool))
        opt(&m, "description", s.description.map(JSONValue.string))
        return .object(m)
    }

    public static func encode(_ s: Session) -> JSONValue {
        var m: Members = [
            ("id", .string(s.id)), ("priority", .int(Int64(s.priority))), ("filter", .string(s.filter)),
            ("sources", .array(s.sources.map(JSONValue.string))), ("target", .string(s.target)),
        ]
        opt(&m, "vni", s.vni.map { .int(Int64($0)) })
        opt(&m, "enabled", s.enabled.map(JSONValue.bool))
        opt(&m, "packetLength", s.packetLength.map { .int(Int64($0)) })
        opt(&m, "rateLimit", s.rateLimit.map(encode))
        opt(&m, "sampleOneIn", s.sampleOneIn.map { .int(Int64($0)) })
        opt(&m, "description", s.description.map(JSONValue.string))
        return .object(m)
    }

    public static func encode(_ r: RateLimit) -> JSONValue {
        var m: Members = []
        opt(&m, "packetsPerSecond", r.packetsPerSecond.map { .int(Int64($0)) })
        opt(&m, "bitsPerSecond", r.bitsPerSecond.map { .int(Int64($0)) })
        return .object(m)
    }

    public static func encode(_ g: SecurityGroup) -> JSONValue {
        var m: Members = [("id", .string(g.id))]
        opt(&m, "description", g.description.map(JSONValue.string))
        m.append(
            (
                "rules",
                .array(
                    g.rules.map { r in
                        var rm: Members = [
                            ("direction", .string(r.direction.rawValue)), ("priority", .int(Int64(r.priority))),
                            ("action", .string(r.action.rawValue)), ("ethertype", .string(r.ethertype.rawValue)),
                            ("protocol", proto(r.protocol)),
                        ]
                        opt(&rm, "remote", str(r.remote))
                        opt(&rm, "ports", str(r.ports))
                        return .object(rm)
                    })
            ))
        return .object(m)
    }

    public static func encode(_ a: NetworkAcl) -> JSONValue { ruleLists(a.id, a.description, a.inbound, a.outbound) }
}
