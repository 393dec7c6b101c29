import MirrorCore

/// A small valid document that invalid-document tests mutate one field at a time.
func baseDocument() -> Document {
    Document(
        filters: [
            Filter(
                id: "f1",
                inbound: [
                    Rule(
                        priority: 1, action: .accept, ethertype: .ipv4, protocol: .tcp,
                        source: CIDR(address: IPAddress("198.51.100.0")!, prefixLength: 24),
                        destinationPorts: PortRange(80, 80)),
                    Rule(priority: 2, action: .reject, ethertype: .ipv6, protocol: .icmpv6),
                ],
                outbound: [
                    Rule(priority: 1, action: .accept, ethertype: .ipv4, protocol: .udp, sourcePorts: PortRange(53, 53))
                ]),
            Filter(id: "f2"),
        ],
        targets: [
            Target(id: "t1", type: .nic, address: IPAddress("192.0.2.10")!),
            Target(id: "lb", type: .loadBalancer, backends: [IPAddress("203.0.113.1")!, IPAddress("203.0.113.2")!]),
        ],
        sources: [
            Source(
                id: "s1", interface: "tap0", addresses: [IPAddress("198.18.0.10")!], securityGroups: ["sg1"],
                networkAcl: "acl1"),
            Source(id: "s2", interface: "tap1"),
        ],
        sessions: [
            Session(id: "a", priority: 1, filter: "f1", sources: ["s1", "s2"], target: "t1", vni: 100),
            Session(id: "b", priority: 2, filter: "f2", sources: ["s1"], target: "lb"),
        ],
        securityGroups: [
            SecurityGroup(
                id: "sg1",
                rules: [
                    SecurityGroupRule(
                        direction: .ingress, priority: 1, action: .allow, ethertype: .ipv4, protocol: .tcp,
                        remote: CIDR(address: IPAddress("198.51.100.0")!, prefixLength: 24), ports: PortRange(80, 80)),
                    SecurityGroupRule(direction: .egress, priority: 1, action: .allow, ethertype: .ipv4),
                ])
        ],
        networkAcls: [
            NetworkAcl(
                id: "acl1", inbound: [AclRule(priority: 1, action: .allow, ethertype: .ipv4)],
                outbound: [AclRule(priority: 1, action: .allow, ethertype: .ipv4)])
        ])
}

func baseJSON() -> JSONValue { DocumentEncoding.encode(baseDocument()) }

/// The error paths of a JSON document (empty when valid).
func errorPaths(_ json: JSONValue) -> [String] {
    switch DocumentParser.parse(json: json) {
    case .success: return []
    case .failure(let e): return e.paths
    }
}

func errors(_ json: JSONValue) -> [ValidationError] {
    switch DocumentParser.parse(json: json) {
    case .success: return []
    case .failure(let e): return e.errors
    }
}

func errors(_ text: String) -> [ValidationError] {
    switch DocumentParser.parse(text) {
    case .success: return []
    case .failure(let e): return e.errors
    }
}

enum PathStep { case key(String), index(Int) }

/// `sessions[0].sources[1]` → [.key(sessions), .index(0), .key(sources), .index(1)]
func steps(_ path: String) -> [PathStep] {
    var out: [PathStep] = []
    for part in path.split(separator: ".") {
        var name = Substring(part)
        var indices: [Int] = []
        while let open = name.lastIndex(of: "["), name.hasSuffix("]") {
            indices.insert(Int(name[name.index(after: open)..<name.index(before: name.endIndex)])!, at: 0)
            name = name[..<open]
        }
        if !name.isEmpty { out.append(.key(String(name))) }
        out += indices.map { .index($0) }
    }
    return out
}

extension JSONValue {
    /// A copy with the value at `path` replaced (nil removes it). Object keys that do
    /// not exist are added at the end; index == count appends.
    func setting(_ path: String, _ value: JSONValue?) -> JSONValue {
        set(steps(path)[...], value)
    }

    private func set(_ path: ArraySlice<PathStep>, _ value: JSONValue?) -> JSONValue {
        guard let first = path.first else { return value ?? .null }
        let rest = path.dropFirst()
        switch (self, first) {
        case (.object(var members), .key(let k)):
            if let i = members.firstIndex(where: { $0.key == k }) {
                if rest.isEmpty && value == nil { members.remove(at: i) } else { members[i].value = members[i].value.set(rest, value) }
            } else if let value {
                members.append((k, JSONValue.null.set(rest, value)))
            }
            return .object(members)
        case (.array(var items), .index(let i)):
            if i == items.count {
                if let value { items.append(JSONValue.null.set(rest, value)) }
            } else if rest.isEmpty && value == nil {
                items.remove(at: i)
            } else {
                items[i] = items[i].set(rest, value)
            }
            return .array(items)
        case (.null, .key(let k)):
            return JSONValue.object([]).set(path, value).withKey(k)
        case (.null, .index):
            return JSONValue.array([]).set(path, value)
        default:
            return self
        }
    }

    private func withKey(_ k: String) -> JSONValue { self }

    func value(at path: String) -> JSONValue? {
        var cur: JSONValue? = self
        for s in steps(path) {
            switch (cur, s) {
            case (.object(let m)?, .key(let k)): cur = m.first { $0.key == k }?.value
            case (.array(let a)?, .index(let i)): cur = i < a.count ? a[i] : nil
            default: return nil
            }
        }
        return cur
    }
}

func str(_ x: String) -> JSONValue { .string(x) }
func num(_ x: Int) -> JSONValue { .int(Int64(x)) }
func obj(_ m: [(String, JSONValue)]) -> JSONValue { .object(m.map { (key: $0.0, value: $0.1) }) }
