import ArgumentParser
import EtcdClient
import EtcdCommandLine
import Foundation
import Logging
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorDatapath
import MirrorFleet
import ServiceLifecycle

/// `mirror-agent`: the daemon (SPEC §7). All logic lives in MirrorAgent; this file
/// parses flags, checks privileges, starts the agent and runs its parts as services
/// until SIGTERM/SIGINT.
@main
struct MirrorAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mirror-agent",
        abstract: "The traffic mirroring agent: serves the control socket and keeps the datapath in line with the applied document.",
        version: MirrorAgentInfo.version,
        subcommands: [Run.self, Cleanup.self],
        defaultSubcommand: Run.self)
}

struct CommonOptions: ParsableArguments {
    @Option(help: "Control socket (mode 0600).")
    var socket = ControlClient.defaultSocket

    @Option(name: .customLong("state-dir"), help: "Where the applied document and assigned VNIs are kept.")
    var stateDir = "/var/lib/mirror-agent"

    @Option(help: "bpffs directory for pinned programs and maps.")
    var bpffs = "/sys/fs/bpf/mirror-agent"

    @Option(name: .customLong("metrics-address"), help: "HOST:PORT of the Prometheus endpoint.")
    var metricsAddress = "127.0.0.1:9469"

    @Option(name: .customLong("mirror-device"), help: "Name of the VXLAN external device copies leave through.")
    var mirrorDevice = "mirror0"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(
        name: .customLong("tc-attach"),
        help: "How programs sit on the TC hooks: auto (tcx links when the kernel has them, else clsact), tcx or clsact.")
    var tcAttach = "auto"

    @Option(
        name: .customLong("tcx-links-per-apply"),
        help: ArgumentHelp(
            "tcx links an apply creates itself; further hooks start on clsact and move to tcx in the background.",
            visibility: .hidden))
    var tcxLinksPerApply = 32

    @Option(
        help: ArgumentHelp(
            "kernel, or memory: no kernel datapath, mirrors nothing (tests). automatic is kernel.",
            visibility: .hidden))
    var datapath: String = "kernel"

    @Option(help: ArgumentHelp("The nft binary enforcement runs (default: the installed nft; tests).", visibility: .hidden))
    var nft: String?

    @Option(
        name: .customLong("bpf-objects"),
        help: ArgumentHelp(
            "Load classify.bpf.o and encap.bpf.o from this directory instead of the built-in objects (tests: an object of another map layout).",
            valueName: "dir", visibility: .hidden))
    var bpfObjects: String?

    @Flag(
        name: .customLong("ephemeral-pins"),
        help:
            "Start even when the --bpffs pins would die with the agent (a bpffs only this process's mount namespace has, as under `ip netns exec`): mirroring then stops on every restart until the new agent has rebuilt it."
    )
    var ephemeralPins = false

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        guard DatapathFactory.Choice(rawValue: datapath) != nil else {
            throw ValidationError("--datapath: '\(datapath)' is not one of kernel, memory, automatic")
        }
        guard tcAttach == "auto" || TCAttachMode(rawValue: tcAttach) != nil else {
            throw ValidationError("--tc-attach: '\(tcAttach)' is not one of auto, tcx, clsact")
        }
        guard tcxLinksPerApply >= 0 else { throw ValidationError("--tcx-links-per-apply: must be 0 or more") }
        let parts = metricsAddress.split(separator: ":")
        guard parts.count >= 2, let port = Int(parts.last!), (1...65535).contains(port) else {
            throw ValidationError("--metrics-address: '\(metricsAddress)' is not HOST:PORT")
        }
        guard !socket.isEmpty, socket.utf8.count < 108 else {
            throw ValidationError("--socket: a unix socket path must be 1-107 bytes")
        }
        guard !mirrorDevice.isEmpty, mirrorDevice.utf8.count <= 15 else {
            throw ValidationError("--mirror-device: an interface name is 1-15 bytes")
        }
    }

    func makeLogger() -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        return Logger(label: "mirror-agent")
    }

    /// Refuses to go on without root and the capabilities, saying which are missing.
    func requirePrivileges(_ what: String) throws {
        let missing = Privileges.missing()
        guard missing.isEmpty else {
            fail("mirror-agent: cannot \(what): " + missing.joined(separator: "; "))
        }
    }

    var datapathOptions: DatapathFactory.Options {
        var o = DatapathFactory.Options(
            bpffs: bpffs, mirrorDevice: mirrorDevice, stateDirectory: stateDir,
            attachMode: TCAttachMode(rawValue: tcAttach), tcxLinksPerApply: tcxLinksPerApply,
            nftCommand: nft.map { [$0] }, ephemeralPins: ephemeralPins)
        o.bpfObjectDirectory = bpfObjects
        return o
    }
}

/// One line on stderr, exit 1.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(1)
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the agent (the default).")

    @OptionGroup var options: CommonOptions

    @Flag(name: .customLong("reset-state"), help: "Start empty; the previous state file is kept aside, renamed.")
    var resetState = false

    @Option(
        name: .customLong("max-mirror-bps"),
        help: ArgumentHelp(
            "Host mirroring budget: bits a second of all copies together, outer headers included; copies over it are skipped (SPEC §10). Default: none.",
            valueName: "N"))
    var maxMirrorBps: Int?

    func validate() throws {
        if let n = maxMirrorBps, !Quota.bitsPerSecond.contains(n) {
            throw ValidationError("--max-mirror-bps: \(n) is out of range: bits a second, 1000–1000000000000")
        }
    }

    @Option(
        name: .customLong("metrics-rules"),
        help: ArgumentHelp(
            "Which mirror_rule_hits_total series /metrics carries: none, counted (rules that have counted a packet) or all.",
            valueName: "none|counted|all"))
    var metricsRules: MetricsSnapshot.RuleSeriesShown = .counted

    @OptionGroup var fleet: FleetOptions

    func run() async throws {
        let logger = options.makeLogger()
        try options.requirePrivileges("start")
        Agent.tuneAllocator()
        guard let (metricsHost, metricsPort) = MetricsServer.parse(address: options.metricsAddress) else {
            fail("mirror-agent: --metrics-address: '\(options.metricsAddress)' is not HOST:PORT")
        }

        // A write to nft's pipe after it exited must be an error, not the end of the agent.
        signal(SIGPIPE, SIG_IGN)

        // Before anything touches the kernel or the state: the state directory's lock.
        let store = StateStore(directory: options.stateDir)
        let stateLock: OwnerLock
        do {
            try store.prepare()
            stateLock = try store.lock()
        } catch {
            fail("mirror-agent: cannot start: \(error)")
        }

        // Made, not started: the agent starts it after reading and checking its state,
        // so a state file that no longer validates stops it before the kernel is touched.
        let choice = DatapathFactory.Choice(rawValue: options.datapath) ?? .kernel
        let datapath: Datapath
        var datapathOptions = options.datapathOptions
        datapathOptions.maxMirrorBitsPerSecond = maxMirrorBps.map { UInt64($0) }
        do { datapath = try DatapathFactory.make(choice, options: datapathOptions) } catch {
            fail("mirror-agent: cannot start: \(error)")
        }
        let agent = Agent(store: store, datapath: datapath, logger: logger)
        let metricsServer = MetricsServer(agent: agent, host: metricsHost, port: metricsPort, logger: logger, rules: metricsRules)
        // Fleet mode: the document comes from etcd; local changes are refused.
        var etcd: EtcdClient?
        do {
            if let config = try fleet.etcd.configuration() { etcd = try EtcdClient(config, logger: logger) }
        } catch {
            fail("mirror-agent: cannot start: \(error)")
        }
        let fleetOrigin = fleet.etcd.etcd.map { FleetSyncService.describe(endpoints: $0, host: fleet.host ?? "") }
        let controlServer = ControlServer(
            router: Router(agent: agent, fleet: fleetOrigin), configuration: .init(socketPath: options.socket), logger: logger)

        // Then the control socket and the metrics port, bound and held: another agent
        // answering, or a port in use, stops this one before the kernel is touched.
        do {
            try await controlServer.bindNow()
            try await metricsServer.bindNow()
        } catch {
            await controlServer.unbind()
            fail("mirror-agent: cannot start: \(error)")
        }

        logger.info(
            "starting",
            metadata: [
                "version": "\(MirrorAgentInfo.version)", "datapath": "\(datapath.kind)",
                "socket": "\(options.socket)", "stateDir": "\(options.stateDir)",
            ])
        do {
            try await agent.start(resetState: resetState, holding: stateLock)
        } catch {
            await controlServer.unbind()
            await metricsServer.unbind()
            if let refusal = (error as? DatapathStartFailure)?.underlying as? EphemeralPinsError {
                fail("mirror-agent: cannot start: \(refusal)")
            }
            if let error = error as? DatapathStartFailure {
                // Never on without it: an agent that takes applies and mirrors nothing looks healthy.
                fail(
                    "mirror-agent: cannot start: the kernel datapath did not load, so nothing could be mirrored: \(error)\n"
                        + "Fix that and start again (only --datapath memory runs without it, mirroring nothing, for tests).")
            }
            fail("mirror-agent: cannot start: \(error)")
        }

        // Started in this order and stopped in the reverse one: control requests and
        // scrapes first, then link events, then the agent (the datapath stays pinned
        // and attached: mirroring goes on while the agent is down).
        var services: [Service] = [
            AgentService(agent: agent, logger: logger),
            LinkEventService(agent: agent, logger: logger),
            // SPEC §10: probes the collectors of targets with a healthCheck.
            HealthCheckService(agent: agent, logger: logger),
        ]
        // After the agent has started from its state directory: while etcd is down the
        // cached document is in force, and the sync converges once etcd answers.
        if let etcd, let host = fleet.host {
            services.append(FleetSyncService(agent: agent, etcd: etcd, host: host, stateDirectory: options.stateDir, logger: logger))
        }
        services += [metricsServer, controlServer]
        var configuration = ServiceGroupConfiguration(
            services: services.map {
                .init(
                    service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup)
            },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Then connections still open (a client not reading its answer) are closed.
        configuration.maximumGracefulShutdownDuration = .seconds(10)
        let group = ServiceGroup(configuration: configuration)
        do { try await group.run() } catch {
            fail("mirror-agent: \(error)")
        }
        logger.info("stopped")
    }
}

/// SPEC §9: `--etcd ENDPOINTS --host NAME` and etcdctl's TLS flags (EtcdOptions):
/// the agent follows this host's document in etcd, and local changes are refused.
struct FleetOptions: ParsableArguments {
    @OptionGroup var etcd: EtcdOptions

    @Option(help: "Fleet mode: this host's name in the region document's sources.")
    var host: String?

    func validate() throws {
        if etcd.etcd != nil {
            guard let host else { throw ValidationError("--etcd needs --host NAME (this host's name in the region document)") }
            if let problem = HostName.problem(host) { throw ValidationError("--host: '\(host)' \(problem)") }
        } else if host != nil {
            throw ValidationError("--host needs --etcd")
        }
    }
}

struct Cleanup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove everything the agent put in the kernel (filters, programs, maps, pins, the mirror device).")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        let logger = options.makeLogger()
        try options.requirePrivileges("clean up")
        // Never pull the datapath from under a running agent.
        if (try? ControlClient(socketPath: options.socket, timeout: 2).send(method: "GET", path: APIPath.status)) != nil {
            fail("mirror-agent: an agent is running on \(options.socket); stop it before cleanup")
        }
        let choice = DatapathFactory.Choice(rawValue: options.datapath) ?? .kernel
        var problems: [String] = []
        do { try DatapathFactory.make(choice, options: options.datapathOptions).cleanup() } catch {
            problems.append("datapath: \(error)")
        }
        unlink(options.socket)
        guard problems.isEmpty else { fail("mirror-agent: cleanup incomplete: " + problems.joined(separator: "; ")) }
        logger.info("cleanup done")
    }
}

extension MetricsSnapshot.RuleSeriesShown: ExpressibleByArgument {}
