import ArgumentParser
import EtcdClient
import Foundation
import Logging
import MirrorAPI
import MirrorCore
import MirrorFleet

// Fleet mode (SPEC §9): with --etcd, apply and get act on the region document in etcd,
// and `fleet status` shows one row per host. Exit status as for the agent-backed
// commands: 0 done, 1 refused / unreachable / invalid, 2 usage.

extension AgentOptions {
    /// The etcd client of --etcd and its TLS flags; a bad flag is a usage error.
    func etcdClient() throws -> EtcdClient {
        guard etcd != nil else {
            CLIOutput.error("Error: this command needs --etcd ENDPOINTS")
            throw CLIExit.usage
        }
        do {
            guard let config = try fleet.configuration() else { throw CLIExit.usage }
            // A command's answer is its output: moving between endpoints is not news here.
            var logger = Logger(label: "etcd")
            logger.logLevel = .error
            return try EtcdClient(config, logger: logger)
        } catch {
            CLIOutput.error("Error: \(error)")
            throw CLIExit.usage
        }
    }

    /// Runs `body` against etcd; an etcd failure is one line and exit 1.
    func withEtcd<T>(_ body: (EtcdClient) async throws -> T) async throws -> T {
        let client = try etcdClient()
        defer { client.close() }
        do { return try await body(client) } catch let e as EtcdError {
            CLIOutput.error("Error: \(e)")
            throw CLIExit.invalidInput
        }
    }
}

enum FleetApply {
    /// `agentctl --etcd … apply -f region.json`: validates the whole region document
    /// (every error with its path) and stores it atomically; nothing is stored when
    /// anything is wrong.
    static func run(_ agent: AgentOptions, file: String, output: OutputFormat) async throws {
        let (_, value) = try agent.readJSON(file, errors: output)
        switch RegionParser.parse(json: value) {
        case .failure(let e):
            let errors = e.errors.map { FieldError(path: $0.path, message: $0.message) }
            CLIOutput.failure(
                "the region document is invalid (\(errors.count) error\(errors.count == 1 ? "" : "s")); nothing was stored",
                errors, output)
            throw CLIExit.invalidInput
        case .success(let region):
            let revision = try await agent.withEtcd { try await RegionStore(etcd: $0).store(region) }
            switch output {
            case .json:
                CLIOutput.out(
                    JSONValue.object([("revision", .int(revision)), ("hosts", .int(Int64(region.hostNames.count)))]).serialized(
                        pretty: true))
            case .text: CLIOutput.out("stored \(file) as the region document: revision \(revision), \(region.hostNames.count) hosts")
            }
        }
    }
}

enum FleetGet {
    /// `agentctl --etcd … get KIND [ID]`: the region document's objects of a kind.
    static func run(_ agent: AgentOptions, kind: ObjectKind, id: String?, output: OutputFormat) async throws {
        let loaded = try await agent.withEtcd { try await RegionStore(etcd: $0).load() }
        var items: [JSONValue] = []
        // Only this kind's chunks are parsed, in the region's order.
        if let loaded, let regionKind = RegionKind(rawValue: kind.documentKey) {
            do { items = try loaded.objects(regionKind) } catch {
                CLIOutput.error("Error: \(error)")
                throw CLIExit.invalidInput
            }
        }
        if let id {
            guard let object = items.first(where: { $0["id"]?.stringValue == id }) else {
                CLIOutput.error("Error: \(kind.singular) \(id) not found in the region document")
                throw CLIExit.invalidInput
            }
            items = [object]
            switch output {
            case .json: CLIOutput.out(object.serialized(pretty: true))
            case .text: CLIOutput.out(Table.objects(kind, items) + Table.rules(object))
            }
            return
        }
        switch output {
        case .json: CLIOutput.out(JSONValue.array(items).serialized(pretty: true))
        case .text: CLIOutput.out(items.isEmpty ? "no \(kind.rawValue)" : Table.objects(kind, items))
        }
    }
}

struct Fleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fleet mode (needs --etcd): the hosts of the region.", subcommands: [FleetStatusCommand.self])
}

struct FleetStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "One row per host: alive, desired and applied revisions, sources attached and pending, last error.")

    @OptionGroup var agent: AgentOptions

    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() async throws {
        let report = try await agent.withEtcd { try await FleetStatus.read($0) }
        switch output {
        case .json:
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted]
            CLIOutput.out(String(decoding: try e.encode(report), as: UTF8.self))
        case .text:
            if report.hosts.isEmpty {
                CLIOutput.out("no hosts")
                return
            }
            CLIOutput.out(
                Table.render(
                    ["HOST", "ALIVE", "DESIRED", "APPLIED", "ATTACHED", "PENDING", "ERROR"],
                    report.hosts.map {
                        [
                            $0.host, $0.alive ? "yes" : "no", String($0.desiredRevision), String($0.appliedRevision),
                            String($0.sources.attached), String($0.sources.pending), $0.error ?? "-",
                        ]
                    }))
        }
    }
}
