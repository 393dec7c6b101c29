import ArgumentParser
import Foundation
import MirrorAPI
import MirrorCore

/// `--socket PATH` for every agent-backed command (default: $MIRROR_AGENT_SOCKET, else
/// /run/mirror-agent/agent.sock). The transport is MirrorAPI's `ControlClient`: a tiny
/// blocking client on POSIX sockets, no SwiftNIO (agentctl makes one request and must
/// start fast).
struct AgentOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The agent's control socket (default: $\(ControlClient.socketEnvironment) or \(ControlClient.defaultSocket)).",
                               valueName: "path"))
    var socket: String?

    var socketPath: String {
        if let socket { return socket }
        if let env = ProcessInfo.processInfo.environment[ControlClient.socketEnvironment], !env.isEmpty { return env }
        return ControlClient.defaultSocket
    }

    var client: ControlClient { ControlClient(socketPath: socketPath) }

    /// Runs one request; any failure becomes one clear line on stderr and exit 1.
    func request(_ method: String, _ path: String, body: [UInt8]? = nil) throws -> JSONValue {
        try Self.value(of: try send(method, path, body: body))
    }

    /// The answer's JSON; an error answer becomes its message and field errors on stderr.
    private static func value(of response: ControlClient.Response) throws -> JSONValue {
        // The core's parser keeps member order, so -o json prints fields as the agent sent them.
        let value: JSONValue
        switch JSONParser.parse(response.body) {
        case .success(let v): value = v
        case .failure(let e):
            CLIOutput.error("Error: unexpected answer from mirror-agent (HTTP \(response.status)): \(e)")
            throw CLIExit.invalidInput
        }
        guard (200..<300).contains(response.status) else {
            CLIOutput.error("Error: \(APIError.decode(status: response.status, body: response.body))")
            throw CLIExit.invalidInput
        }
        return value
    }

    /// A 2xx answer's body as sent, for callers that decode it themselves (GET
    /// /v1/stats at the quotas is 47 MB: no detour through a JSONValue tree); an error
    /// answer is reported as `request` reports it.
    func requestBody(_ method: String, _ path: String) throws -> [UInt8] {
        let response = try send(method, path, body: nil)
        guard (200..<300).contains(response.status) else {
            _ = try Self.value(of: response)  // reports it and throws
            throw CLIExit.invalidInput
        }
        return response.body
    }

    private func send(_ method: String, _ path: String, body: [UInt8]?) throws -> ControlClient.Response {
        do { return try client.send(method: method, path: path, body: body) } catch {
            CLIOutput.error("Error: \(error)")
            throw CLIExit.invalidInput
        }
    }

    /// Reads a JSON file and checks it is JSON (the agent validates the rest).
    func readJSON(_ file: String) throws -> (bytes: [UInt8], value: JSONValue) {
        let bytes = try CLIOutput.read(file)
        switch JSONParser.parse(bytes) {
        case .success(let v): return (bytes, v)
        case .failure(let e):
            CLIOutput.error("Error: \(file) is not valid JSON: \(e)")
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
            return [("ID", f("id")), ("PRIORITY", f("priority")), ("FILTER", f("filter")), ("SOURCES", f("sources")),
                    ("TARGET", f("target")), ("VNI", f("vni")),
                    ("ENABLED", { $0["enabled"]?.boolValue == false ? "false" : "true" }),
                    ("PACKET-LENGTH", f("packetLength")), ("DESCRIPTION", f("description"))]
        case .filters:
            return [("ID", f("id")), ("INBOUND", count("inbound")), ("OUTBOUND", count("outbound")), ("DESCRIPTION", f("description"))]
        case .targets:
            return [("ID", f("id")), ("TYPE", f("type")),
                    ("ADDRESSES", { ($0["address"] ?? $0["backends"])?.displayText ?? "-" }), ("DESCRIPTION", f("description"))]
        case .sources:
            return [("ID", f("id")), ("INTERFACE", f("interface")), ("ADDRESSES", f("addresses")),
                    ("SECURITY-GROUPS", f("securityGroups")), ("NETWORK-ACL", f("networkAcl")),
                    ("ENFORCE", { $0["enforce"]?.boolValue == true ? "true" : "false" })]
        case .securityGroups:
            return [("ID", f("id")), ("RULES", count("rules")), ("DESCRIPTION", f("description"))]
        case .networkAcls:
            return [("ID", f("id")), ("INBOUND", count("inbound")), ("OUTBOUND", count("outbound")), ("DESCRIPTION", f("description"))]
        }
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
