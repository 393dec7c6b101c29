import ArgumentParser
import EtcdCommandLine
import Foundation
import MirrorAPI
import MirrorCore

/// `--socket PATH` for every agent-backed command (default: $MIRROR_AGENT_SOCKET, else
/// /run/mirror-agent/agent.sock). The transport is MirrorAPI's `ControlClient`: a tiny
/// blocking client on POSIX sockets, no SwiftNIO (agentctl makes one request and must
/// start fast).
struct AgentOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "The agent's control socket (default: $\(ControlClient.socketEnvironment) or \(ControlClient.defaultSocket)).",
            valueName: "path"))
    var socket: String?

    /// `--etcd` (fleet mode): apply and get then act on the region document.
    @OptionGroup var fleet: EtcdOptions

    var etcd: String? { fleet.etcd }

    var socketPath: String {
        if let socket { return socket }
        if let env = ProcessInfo.processInfo.environment[ControlClient.socketEnvironment], !env.isEmpty { return env }
        return ControlClient.defaultSocket
    }

    var client: ControlClient { ControlClient(socketPath: socketPath) }

    /// Runs one request and decodes its answer as the API's type for it; any failure
    /// (unreachable, refused by the agent, an answer cut short or of the wrong shape)
    /// becomes one clear message on stderr and exit 1, or with `errors: .json` the
    /// refusal as JSON on stdout (`CLIOutput.failure`).
    func call<T: Decodable>(
        _ method: String, _ path: String, body: [UInt8]? = nil, as: T.Type = T.self,
        errors: OutputFormat = .text
    ) throws -> T {
        try refuseEtcd()
        do { return try client.call(method, path, body: body, as: T.self) } catch {
            if errors == .json {
                if case ControlClient.ClientError.api(let e) = error {
                    CLIOutput.failure(e.message, e.errors, status: e.status, .json)
                } else {
                    CLIOutput.failure("\(error)", [], .json)
                }
            } else {
                Self.report(error)
            }
            throw CLIExit.invalidInput
        }
    }

    func call<T: Decodable, B: Encodable>(_ method: String, _ path: String, json: B, as: T.Type = T.self) throws -> T {
        try refuseEtcd()
        do { return try client.call(method, path, json: json, as: T.self) } catch {
            Self.report(error)
            throw CLIExit.invalidInput
        }
    }

    /// SPEC §9: with --etcd only apply, get and fleet status act on the region; the
    /// other commands talk to one agent, and must not seem to change the fleet.
    func refuseEtcd() throws {
        guard etcd != nil else { return }
        CLIOutput.error(
            "Error: with --etcd only apply -f, get and fleet status act on the region document; "
                + "change objects by editing the region document and applying it, and run other commands against one agent (--socket)")
        throw CLIExit.usage
    }

    /// An error answer is its message and one line per field error.
    static func report(_ error: Error) {
        if case ControlClient.ClientError.api(let e) = error { CLIOutput.error("Error: \(e)") } else { CLIOutput.error("Error: \(error)") }
    }

    /// Reads a JSON file and checks it is JSON (the agent validates the rest). Not
    /// JSON: `document: invalid JSON ...` as `validate` says it, with a hint when the
    /// file looks like YAML.
    func readJSON(_ file: String, errors: OutputFormat = .text) throws -> (bytes: [UInt8], value: JSONValue) {
        let bytes = try CLIOutput.read(file)
        switch JSONParser.parse(bytes) {
        case .success(let v): return (bytes, v)
        case .failure(let e):
            let hint = InputHints.yaml(bytes).map { "; \($0)" } ?? ""
            if errors == .json {
                CLIOutput.failure(
                    "\(file) is not valid JSON", [FieldError(path: "document", message: "invalid JSON at \(e)\(hint)")], .json)
            } else {
                CLIOutput.error("Error: \(file) is not valid JSON: \(e)\(hint)")
            }
            throw CLIExit.invalidInput
        }
    }
}

extension CLIOutput {
    /// A refusal, exit 1 to follow. Text: `Error: message` and one indented
    /// `path: message` line per field, on stderr. JSON (`-o json` of apply, create,
    /// update, delete), on stdout as `validate -o json` prints its errors:
    /// `{"message": ..., "status": HTTP status when the agent refused, "errors": [{"path", "message"}]}`.
    static func failure(_ message: String, _ errors: [FieldError], status: Int? = nil, _ format: OutputFormat) {
        switch format {
        case .text:
            error((["Error: \(message)"] + errors.map { "  \($0)" }).joined(separator: "\n"))
        case .json:
            var members: [(key: String, value: JSONValue)] = [("message", .string(message))]
            if let status { members.append(("status", .int(Int64(status)))) }
            members.append(("errors", .array(errors.map { .object([("path", .string($0.path)), ("message", .string($0.message))]) })))
            out(JSONValue.object(members).serialized(pretty: true))
        }
    }

    /// A typed answer as `-o json` prints it: the core's pretty JSON, members in the
    /// order the agent sends them (`sortedKeys`, as its encoder writes them) or in
    /// the type's own order.
    static func json<T: Encodable>(_ value: T, sortedKeys: Bool) throws {
        do { out(try JSONValueEncoder(sortedKeys: sortedKeys).encode(value).serialized(pretty: true)) } catch {
            CLIOutput.error("Error: cannot write the answer as JSON: \(error)")
            throw CLIExit.invalidInput
        }
    }
}

extension ObjectKind: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}

/// Aligned text tables.
enum Table {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        // Padded by hand: Foundation's `padding(toLength:)` made `agentctl stats` at the
        // quotas (400,000 rule rows) spend seconds here.
        var out = ""
        func line(_ cells: [String]) {
            if !out.isEmpty { out += "\n" }
            for (i, c) in cells.enumerated() {
                if i > 0 { out += "  " }
                out += c
                if i < cells.count - 1, i < widths.count, c.count < widths[i] {
                    out += String(repeating: " ", count: widths[i] - c.count)
                }
            }
        }
        line(header)
        for r in rows { line(r) }
        return out
    }

    /// The columns agentctl shows for each kind.
    static func columns(_ kind: ObjectKind) -> [(String, (JSONValue) -> String)] {
        func f(_ key: String) -> (JSONValue) -> String { { $0[key]?.displayText ?? "-" } }
        func count(_ key: String) -> (JSONValue) -> String { { String($0[key]?.arrayValue?.count ?? 0) } }
        switch kind {
        case .sessions:
            return [
                ("ID", f("id")), ("PRIORITY", f("priority")), ("FILTER", f("filter")), ("SOURCES", f("sources")),
                ("TARGET", f("target")), ("VNI", f("vni")),
                ("ENABLED", { $0["enabled"]?.boolValue == false ? "false" : "true" }),
                ("PACKET-LENGTH", f("packetLength")), ("DESCRIPTION", f("description")),
            ]
        case .filters:
            return [("ID", f("id")), ("INBOUND", count("inbound")), ("OUTBOUND", count("outbound")), ("DESCRIPTION", f("description"))]
        case .targets:
            return [
                ("ID", f("id")), ("TYPE", f("type")),
                ("ADDRESSES", { ($0["address"] ?? $0["backends"])?.displayText ?? "-" }),
                ("ENCAPSULATION", { $0["encapsulation"]?.displayText ?? "vxlan" }),
                // SPEC §10: not a field of the target; `get` adds it from the status.
                ("HEALTH", f("health")), ("DESCRIPTION", f("description")),
            ]
        case .sources:
            return [
                ("ID", f("id")), ("INTERFACE", f("interface")), ("ADDRESSES", f("addresses")),
                ("SECURITY-GROUPS", f("securityGroups")), ("NETWORK-ACL", f("networkAcl")),
                ("ENFORCE", { $0["enforce"]?.boolValue == true ? "true" : "false" }),
            ]
        case .securityGroups:
            return [("ID", f("id")), ("RULES", count("rules")), ("DESCRIPTION", f("description"))]
        case .networkAcls:
            return [("ID", f("id")), ("INBOUND", count("inbound")), ("OUTBOUND", count("outbound")), ("DESCRIPTION", f("description"))]
        }
    }

    /// SPEC §10, one cell of `get targets`: "-" without a health check, else
    /// "healthy", or how many collectors are healthy and which are not.
    static func health(_ t: StatusResponse.TargetStatus) -> String {
        guard t.healthCheck != nil else { return "-" }
        let down = t.collectors.filter { $0.health == "unhealthy" }.map(\.address)
        if down.isEmpty { return "healthy" }
        if t.collectors.count == 1 { return "unhealthy" }
        return "\(t.collectors.count - down.count)/\(t.collectors.count) healthy (unhealthy: \(down.joined(separator: ",")))"
    }

    static func objects(_ kind: ObjectKind, _ items: [JSONValue]) -> String {
        let cols = columns(kind)
        return render(cols.map(\.0), items.map { item in cols.map { $0.1(item) } })
    }

    /// Rules of one filter, ACL or security group, one table per list.
    static func rules(_ object: JSONValue) -> String {
        var out: [String] = []
        for key in ["inbound", "outbound", "rules"] {
            guard let rules = object[key]?.arrayValue, !rules.isEmpty else { continue }
            var header: [String] = []
            for r in rules { for (k, _) in r.members ?? [] where !header.contains(k) { header.append(k) } }
            let rows = rules.map { r in header.map { r[$0]?.displayText ?? "-" } }
            out.append("\n\(key):\n" + render(header.map { $0.uppercased() }, rows))
        }
        return out.joined(separator: "\n")
    }
}
