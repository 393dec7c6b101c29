import ArgumentParser
import MirrorAPI
import MirrorCore

// Agent-backed commands (issue 4). Each is one request on the control socket.
// Exit status: 0 done, 1 refused by the agent / agent unreachable / bad file, 2 usage.

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the agent's whole desired state with a document (atomic: all or nothing).")

    @OptionGroup var agent: AgentOptions

    @Option(name: [.customShort("f"), .long], help: "The JSON document.")
    var file: String

    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let (bytes, _) = try agent.readJSON(file)
        let r = try agent.request("POST", APIPath.apply, body: bytes)
        switch output {
        case .json: CLIOutput.out(r.serialized(pretty: true))
        case .text:
            let generation = r["generation"]?.displayText ?? "?"
            let changed = r["changed"]?.boolValue ?? true
            CLIOutput.out(changed ? "applied \(file): generation \(generation)" : "\(file): unchanged (generation \(generation))")
            let vnis = (r["vnis"]?.members ?? []).sorted { $0.key < $1.key }
            if !vnis.isEmpty {
                CLIOutput.out(Table.render(["SESSION", "VNI"], vnis.map { [$0.key, $0.value.displayText] }))
            }
        }
    }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show objects: sessions, filters, targets, sources, security-groups or network-acls.")

    @OptionGroup var agent: AgentOptions

    @Argument(help: "sessions | filters | targets | sources | security-groups | network-acls")
    var kind: ObjectKind

    @Argument(help: "One object's id (default: all of the kind).")
    var id: String?

    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        if let id {
            let r = try agent.request("GET", APIPath.object(kind, id))
            let object = r["object"] ?? .null
            switch output {
            case .json: CLIOutput.out(object.serialized(pretty: true))
            case .text: CLIOutput.out(Table.objects(kind, [object]) + Table.rules(object))
            }
        } else {
            let r = try agent.request("GET", APIPath.kind(kind))
            let items = r["items"]?.arrayValue ?? []
            switch output {
            case .json: CLIOutput.out(JSONValue.array(items).serialized(pretty: true))
            case .text: CLIOutput.out(items.isEmpty ? "no \(kind.rawValue)" : Table.objects(kind, items))
            }
        }
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Add one object (JSON file with its id); the whole document is validated.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "sessions | filters | targets | sources | security-groups | network-acls")
    var kind: ObjectKind
    @Option(name: [.customShort("f"), .long], help: "The object as JSON.")
    var file: String
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let (bytes, _) = try agent.readJSON(file)
        let r = try agent.request("POST", APIPath.kind(kind), body: bytes)
        ObjectOutput.print(r, kind, verb: "created", output)
    }
}

struct Update: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Replace one object (JSON file); the whole document is validated.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "sessions | filters | targets | sources | security-groups | network-acls")
    var kind: ObjectKind
    @Argument(help: "The object's id (default: the file's id).")
    var id: String?
    @Option(name: [.customShort("f"), .long], help: "The object as JSON.")
    var file: String
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let (bytes, value) = try agent.readJSON(file)
        guard let id = id ?? value["id"]?.stringValue else {
            CLIOutput.error("Error: give the id as an argument or as \"id\" in \(file)")
            throw CLIExit.usage
        }
        let r = try agent.request("PUT", APIPath.object(kind, id), body: bytes)
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
        let r = try agent.request("DELETE", APIPath.object(kind, id))
        ObjectOutput.print(r, kind, verb: "deleted", output)
    }
}

struct SessionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session", abstract: "Enable or disable a session.",
        subcommands: [Enable.self, Disable.self])

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start mirroring for a session.")
        @OptionGroup var agent: AgentOptions
        @Argument(help: "The session id.") var id: String
        @Option(name: [.customShort("o"), .long], help: "Output format: text or json.") var output: OutputFormat = .text
        func run() throws {
            ObjectOutput.print(try agent.request("POST", APIPath.session(id, enable: true)), .sessions, verb: "enabled", output)
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop mirroring for a session (it stays defined).")
        @OptionGroup var agent: AgentOptions
        @Argument(help: "The session id.") var id: String
        @Option(name: [.customShort("o"), .long], help: "Output format: text or json.") var output: OutputFormat = .text
        func run() throws {
            ObjectOutput.print(try agent.request("POST", APIPath.session(id, enable: false)), .sessions, verb: "disabled", output)
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Datapath, generation, and each source's interface and sessions.")

    @OptionGroup var agent: AgentOptions
    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let r = try agent.request("GET", APIPath.status)
        if output == .json { CLIOutput.out(r.serialized(pretty: true)); return }
        let loaded = r["datapathLoaded"]?.boolValue == true
        var lines = [
            "agent:       \(r["version"]?.displayText ?? "?")",
            "datapath:    \(r["datapath"]?.displayText ?? "?") (\(loaded ? "loaded" : "not loaded"))",
            "generation:  \(r["generation"]?.displayText ?? "?") (datapath at \(r["datapathGeneration"]?.displayText ?? "?"))",
            "sessions:    \(r["sessions"]?.displayText ?? "0") (\(r["enabledSessions"]?.displayText ?? "0") enabled)",
        ]
        if let dev = r["mirrorDevice"]?.stringValue { lines.append("mirror device: \(dev)") }
        let sources = r["sources"]?.arrayValue ?? []
        lines.append("")
        if sources.isEmpty {
            lines.append("no sources")
        } else {
            lines.append(Table.render(["SOURCE", "INTERFACE", "IFINDEX", "STATE", "SESSIONS"], sources.map { s in
                [s["id"]?.displayText ?? "-", s["interface"]?.displayText ?? "-", s["ifindex"]?.displayText ?? "-",
                 s["state"]?.displayText ?? "-", s["sessions"]?.displayText ?? "-"]
            }))
        }
        CLIOutput.out(lines.joined(separator: "\n"))
    }
}

enum ObjectOutput {
    static func print(_ r: JSONValue, _ kind: ObjectKind, verb: String, _ output: OutputFormat) {
        let object = r["object"] ?? .null
        switch output {
        case .json: CLIOutput.out(object.serialized(pretty: true))
        case .text:
            CLIOutput.out("\(kind.singular) \(object["id"]?.displayText ?? "?") \(verb) (generation \(r["generation"]?.displayText ?? "?"))")
        }
    }
}
