import ArgumentParser
import MirrorAPI
import MirrorCore

// Agent-backed commands. Each is one request on the control socket.
// Exit status: 0 done, 1 refused by the agent / agent unreachable / bad file, 2 usage.

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the agent's whole desired state with a document (atomic: all or nothing).")

    @OptionGroup var agent: AgentOptions

    @Option(name: [.customShort("f"), .long], help: "The JSON document.")
    var file: String

    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Flag(name: .customLong("dry-run"), help: "Show what the document would add, change and remove; change nothing.")
    var dryRun = false

    @Flag(help: "Apply a document that removes every session without asking (asked only when standard input is a terminal).")
    var force = false

    func run() async throws {
        if agent.etcd != nil {
            if dryRun {
                CLIOutput.error("Error: --dry-run is not available with --etcd")
                throw CLIExit.usage
            }
            return try await FleetApply.run(agent, file: file, output: output)
        }
        let (bytes, value) = try agent.readJSON(file, errors: output)
        if InputHints.isOneObject(value) {
            CLIOutput.failure(
                "\(file) is one object (it has an \"id\"), not a whole document: "
                    + "use agentctl create KIND -f \(file) to add it, or update KIND -f \(file) to replace it", [], output)
            throw CLIExit.invalidInput
        }
        if dryRun {
            let plan = try agent.call("POST", APIPath.applyDryRun, body: bytes, as: ApplyPlan.self, errors: output)
            switch output {
            case .json: try CLIOutput.json(plan, sortedKeys: true)
            case .text: CLIOutput.out(PlanText.render(plan, file: file))
            }
            return
        }
        if !force, SessionGuard.removesEverySession(value), SessionGuard.interactive() {
            // Asked of the agent only here: a terminal, and a document without sessions.
            let plan = try agent.call("POST", APIPath.applyDryRun, body: bytes, as: ApplyPlan.self, errors: output)
            if let refusal = SessionGuard.refusal(
                file: file, document: value, removedSessions: plan[.sessions].removed,
                force: force, interactive: true)
            {
                CLIOutput.failure(refusal, [], output)
                throw CLIExit.invalidInput
            }
        }
        let r = try agent.call("POST", APIPath.apply, body: bytes, as: ApplyResponse.self, errors: output)
        switch output {
        case .json: try CLIOutput.json(r, sortedKeys: true)
        case .text:
            CLIOutput.out(r.changed ? "applied \(file): generation \(r.generation)" : "\(file): unchanged (generation \(r.generation))")
            let vnis = r.vnis.sorted { $0.key < $1.key }
            if !vnis.isEmpty {
                CLIOutput.out(Table.render(["SESSION", "VNI"], vnis.map { [$0.key, String($0.value)] }))
            }
        }
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show objects: sessions, filters, targets, sources, security-groups or network-acls.")

    @OptionGroup var agent: AgentOptions

    @Argument(help: "sessions | filters | targets | sources | security-groups | network-acls")
    var kind: ObjectKind

    @Argument(help: "One object's id (default: all of the kind).")
    var id: String?

    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() async throws {
        if agent.etcd != nil { return try await FleetGet.run(agent, kind: kind, id: id, output: output) }
        if let id {
            let object = try agent.call("GET", APIPath.object(kind, id), as: ObjectResponse.self).object.value
            switch output {
            case .json: CLIOutput.out(object.serialized(pretty: true))
            case .text: CLIOutput.out(Table.objects(kind, try withHealth([object])) + Table.rules(object))
            }
        } else {
            let items = try agent.call("GET", APIPath.kind(kind), as: ListResponse.self).items.map(\.value)
            switch output {
            case .json: CLIOutput.out(JSONValue.array(items).serialized(pretty: true))
            case .text: CLIOutput.out(items.isEmpty ? "no \(kind.rawValue)" : Table.objects(kind, try withHealth(items)))
            }
        }
    }

    /// Targets in the table get their collectors' health (SPEC §10) from the status;
    /// the JSON form stays the objects as applied, so it can be applied again.
    func withHealth(_ items: [JSONValue]) throws -> [JSONValue] {
        guard kind == .targets else { return items }
        let status = try agent.call("GET", APIPath.status, as: StatusResponse.self)
        let health = Dictionary((status.targets ?? []).map { ($0.id, Table.health($0)) }, uniquingKeysWith: { a, _ in a })
        return items.map { t in
            guard let id = t["id"]?.stringValue, let h = health[id] else { return t }
            return t.setting("health", .string(h))
        }
    }
}

/// The object of `create`/`update` given as flags instead of a JSON file, for the
/// kinds without nested rules (sessions, targets, sources; filters, security
/// groups and network ACLs carry rule lists: use -f). Field names are the SPEC's.
struct ObjectFlags: ParsableArguments {
    @Option(help: "sessions: priority (1-32766).") var priority: Int?
    @Option(help: "sessions: the filter's id.") var filter: String?
    @Option(name: .customLong("source"), help: "sessions: a source id (repeat for several).") var sources: [String] = []
    @Option(help: "sessions: the target's id.") var target: String?
    @Option(help: "sessions: the VNI (default: assigned by the agent).") var vni: Int?
    @Option(name: .customLong("packet-length"), help: "sessions: bytes of each packet to keep.") var packetLength: Int?
    @Option(help: "sessions: true or false.") var enabled: Bool?
    @Option(help: "targets: nic or loadBalancer.") var type: String?
    @Option(help: "targets (nic): the collector's address.") var address: String?
    @Option(name: .customLong("backend"), help: "targets (loadBalancer): a backend address (repeat for several).") var backends: [String] =
        []
    @Option(help: "targets: what collectors receive: vxlan (default), geneve or erspan.") var encapsulation: String?
    @Option(name: .customLong("interface"), help: "sources: the host-side interface.") var interface: String?
    @Option(name: .customLong("security-group"), help: "sources: a security group id (repeat for several).") var securityGroups: [String] =
        []
    @Option(name: .customLong("network-acl"), help: "sources: the network ACL's id.") var networkAcl: String?

    /// The fields given, by kind; an error names flags that do not belong to `kind`.
    func object(kind: ObjectKind, id: String?) throws -> JSONValue {
        var m: [(key: String, value: JSONValue)] = []
        if let id { m.append(("id", .string(id))) }
        var given: [(flag: String, kinds: [ObjectKind], field: String, value: JSONValue)] = []
        func add(_ flag: String, _ kinds: [ObjectKind], _ field: String, _ v: JSONValue?) {
            if let v { given.append((flag, kinds, field, v)) }
        }
        add("--priority", [.sessions], "priority", priority.map { .int(Int64($0)) })
        add("--filter", [.sessions], "filter", filter.map { .string($0) })
        add("--source", [.sessions], "sources", sources.isEmpty ? nil : .array(sources.map { .string($0) }))
        add("--target", [.sessions], "target", target.map { .string($0) })
        add("--vni", [.sessions], "vni", vni.map { .int(Int64($0)) })
        add("--packet-length", [.sessions], "packetLength", packetLength.map { .int(Int64($0)) })
        add("--enabled", [.sessions], "enabled", enabled.map { .bool($0) })
        add("--type", [.targets], "type", type.map { .string($0) })
        add("--address", [.targets], "address", address.map { .string($0) })
        add("--backend", [.targets], "backends", backends.isEmpty ? nil : .array(backends.map { .string($0) }))
        add("--encapsulation", [.targets], "encapsulation", encapsulation.map { .string($0) })
        add("--interface", [.sources], "interface", interface.map { .string($0) })
        add("--security-group", [.sources], "securityGroups", securityGroups.isEmpty ? nil : .array(securityGroups.map { .string($0) }))
        add("--network-acl", [.sources], "networkAcl", networkAcl.map { .string($0) })
        if ![.sessions, .targets, .sources].contains(kind) {
            CLIOutput.error("Error: \(kind.rawValue) carry rule lists: give the object as JSON with -f FILE")
            throw CLIExit.usage
        }
        let foreign = given.filter { !$0.kinds.contains(kind) }.map(\.flag)
        if !foreign.isEmpty {
            CLIOutput.error("Error: \(foreign.joined(separator: ", ")) do\(foreign.count == 1 ? "es" : "") not apply to \(kind.rawValue)")
            throw CLIExit.usage
        }
        m += given.map { (key: $0.field, value: $0.value) }
        return .object(m)
    }

    var isEmpty: Bool {
        priority == nil && filter == nil && sources.isEmpty && target == nil && vni == nil && packetLength == nil && enabled == nil
            && type == nil && address == nil && backends.isEmpty && interface == nil && securityGroups.isEmpty && networkAcl == nil
    }
}

/// What `create` and `update` take: a kind, an id, and the object as a JSON file
/// or as flags.
struct ObjectInput: ParsableArguments {
    @Argument(help: "sessions | filters | targets | sources | security-groups | network-acls")
    var kind: ObjectKind
    @Argument(help: "The object's id (with -f: the file's id).")
    var id: String?
    @Option(name: [.customShort("f"), .long], help: "The object as JSON.")
    var file: String?
    @OptionGroup(title: "Object fields (instead of -f)") var flags: ObjectFlags

    /// The request body: the JSON file, or the object built from the flags.
    func body(_ agent: AgentOptions, errors: OutputFormat = .text) throws -> (bytes: [UInt8], value: JSONValue) {
        if let file {
            guard flags.isEmpty else {
                CLIOutput.error("Error: give the object either as -f FILE or as flags, not both")
                throw CLIExit.usage
            }
            let read = try agent.readJSON(file, errors: errors)
            if let keys = InputHints.documentKeys(read.value) {
                CLIOutput.failure(
                    "\(file) is a whole document (it has \(keys.map { "\"\($0)\"" }.joined(separator: ", "))), not one \(kind.singular): "
                        + "use agentctl apply -f \(file) to replace the whole state, or give one \(kind.singular) with its \"id\"", [],
                    errors)
                throw CLIExit.invalidInput
            }
            return read
        }
        guard !flags.isEmpty || id != nil else {
            CLIOutput.error("Error: give the object as -f FILE or as flags (see --help)")
            throw CLIExit.usage
        }
        let value = try flags.object(kind: kind, id: id)
        return (Array(value.serialized(pretty: false).utf8), value)
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add one object, from a JSON file or from flags; the whole document is validated.",
        discussion: "Flags (sessions, targets, sources): agentctl create sessions s1 --priority 1 --filter f1 --source vm1 --target t1")

    @OptionGroup var agent: AgentOptions
    @OptionGroup var input: ObjectInput
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        if input.file != nil, input.id != nil {
            CLIOutput.error("Error: with -f the id comes from the file")
            throw CLIExit.usage
        }
        let (bytes, _) = try input.body(agent, errors: output)
        let r = try agent.call("POST", APIPath.kind(input.kind), body: bytes, as: ObjectResponse.self, errors: output)
        ObjectOutput.print(r, input.kind, verb: "created", output)
    }
}

struct Update: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace one object, from a JSON file or from flags; the whole document is validated.",
        discussion: "A file replaces the object; flags change only the fields given: agentctl update sessions s1 --priority 5")

    @OptionGroup var agent: AgentOptions
    @OptionGroup var input: ObjectInput
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let kind = input.kind
        var (bytes, value) = try input.body(agent, errors: output)
        if input.file == nil, let id = input.id, case .object(let changes) = value {
            // Flags change fields of the object in force; the rest stays as it is.
            var merged = try agent.call("GET", APIPath.object(kind, id), as: ObjectResponse.self, errors: output).object.value
            for (k, v) in changes { merged = merged.setting(k, v) }
            (bytes, value) = (Array(merged.serialized(pretty: false).utf8), merged)
        }
        guard let id = input.id ?? value["id"]?.stringValue else {
            CLIOutput.error("Error: give the id as an argument or as \"id\" in \(input.file ?? "the file")")
            throw CLIExit.usage
        }
        let r = try agent.call("PUT", APIPath.object(kind, id), body: bytes, as: ObjectResponse.self, errors: output)
        ObjectOutput.print(r, kind, verb: "updated", output)
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove one object; refused while others still refer to it.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "sessions | filters | targets | sources | security-groups | network-acls")
    var kind: ObjectKind
    @Argument(help: "The object's id.")
    var id: String
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let r = try agent.call("DELETE", APIPath.object(kind, id), as: ObjectResponse.self, errors: output)
        ObjectOutput.print(r, kind, verb: "deleted", output)
    }
}

struct SessionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session", abstract: "Enable or disable a session.",
        subcommands: [Enable.self, Disable.self])

    /// What both subcommands take: the agent, the session id and the output format.
    struct Target: ParsableArguments {
        @OptionGroup var agent: AgentOptions
        @Argument(help: "The session id.") var id: String
        @Option(name: [.customShort("o"), .long], help: "Output format: text or json.") var output: OutputFormat = .text

        func set(enabled: Bool) throws {
            ObjectOutput.print(
                try agent.call("POST", APIPath.session(id, enable: enabled)), .sessions, verb: enabled ? "enabled" : "disabled",
                output)
        }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start mirroring for a session.")
        @OptionGroup var session: Target
        func run() throws { try session.set(enabled: true) }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop mirroring for a session (it stays defined).")
        @OptionGroup var session: Target
        func run() throws { try session.set(enabled: false) }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Datapath, generation, and each source's interface and sessions.")

    @OptionGroup var agent: AgentOptions
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let r = try agent.call("GET", APIPath.status, as: StatusResponse.self)
        if output == .json { try CLIOutput.json(r, sortedKeys: true); return }
        var lines = [
            "agent:       \(r.version)",
            "datapath:    \(r.datapath) (\(r.datapathLoaded ? "loaded" : "not loaded")"
                + (r.tcAttach.map { ", attached through \($0)" } ?? "")
                + (r.tcxPending.flatMap { $0 > 0 ? "; \($0) interfaces on clsact until their tcx links are made" : nil } ?? "")
                + ")",
            "generation:  \(r.generation) (datapath at \(r.datapathGeneration))",
            "sessions:    \(r.sessions) (\(r.enabledSessions) enabled)",
        ]
        if let dev = r.mirrorDevice { lines.append("mirror device: \(dev)") }
        if let pins = r.pins {
            lines.append("pins:        \(pins)" + (r.pinsDetail.map { " (\($0))" } ?? ""))
        }
        if let layout = r.layout {
            let moved = (r.layoutMovedFrom ?? []).map { $0 == 0 ? "unversioned pins" : "layout \($0)" }
            lines.append(
                "layout:      \(layout)" + (r.layoutDirectory.map { " (pins in \($0)" } ?? " (")
                    + (moved.isEmpty ? "" : "; moved from \(moved.joined(separator: ", ")) at start") + ")")
        }
        if let health = r.health {
            let repaired = (r.repairs ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            lines.append("health:      \(health)" + (repaired.isEmpty ? "" : " (repaired: \(repaired.joined(separator: ", ")))"))
            for p in r.problems ?? [] { lines.append("  problem:   \(p)") }
        }
        lines.append("")
        if r.sources.isEmpty {
            lines.append("no sources")
        } else {
            lines.append(
                Table.render(
                    ["SOURCE", "INTERFACE", "IFINDEX", "STATE", "SESSIONS"],
                    r.sources.map { s in
                        [
                            s.id, s.interface, s.ifindex.map(String.init) ?? "-", s.state.rawValue,
                            s.sessions.isEmpty ? "-" : s.sessions.joined(separator: ","),
                        ]
                    }))
        }
        // SPEC §10: each collector of each target with a health check.
        let checked = (r.targets ?? []).filter { $0.healthCheck != nil }
        if !checked.isEmpty {
            lines.append("")
            lines.append(
                Table.render(
                    ["TARGET", "HEALTH-CHECK", "COLLECTOR", "HEALTH", "LAST-ERROR"],
                    checked.flatMap { t in
                        t.collectors.map { c in [t.id, t.healthCheck ?? "-", c.address, c.health, c.lastError ?? "-"] }
                    }))
        }
        CLIOutput.out(lines.joined(separator: "\n"))
    }
}

enum ObjectOutput {
    static func print(_ r: ObjectResponse, _ kind: ObjectKind, verb: String, _ output: OutputFormat) {
        let object = r.object.value
        switch output {
        case .json: CLIOutput.out(object.serialized(pretty: true))
        case .text:
            // Objects are the user's JSON (the protocol carries them so); the id is the SPEC's field.
            CLIOutput.out("\(kind.singular) \(object["id"]?.displayText ?? "?") \(verb) (generation \(r.generation))")
        }
    }
}
