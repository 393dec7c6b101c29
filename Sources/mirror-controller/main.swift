import ArgumentParser
import EtcdClient
import EtcdCommandLine
import Foundation
import Logging
import MirrorFleet
import ServiceLifecycle

/// `mirror-controller --etcd ENDPOINTS` (SPEC §9): renders the region document into
/// one desired document per host. Several may run: an etcd lease elects the one that
/// writes; the others wait and take over within the lease's TTL.
@main
struct MirrorControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mirror-controller",
        abstract: "Render the region document in etcd into each host's document (one elected writer).")

    /// `--etcd` is required here: the region and the hosts' documents live there.
    @OptionGroup var etcd: EtcdOptions

    @Option(name: .customLong("lease-ttl"), help: "Seconds without this controller before another takes over (2-60).")
    var leaseTTL: Int64 = 5

    @Option(help: "This controller's name in the leader key (default: HOSTNAME-PID).")
    var id: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard etcd.etcd != nil else { throw ValidationError("--etcd ENDPOINTS is required") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        guard (2...60).contains(leaseTTL) else { throw ValidationError("--lease-ttl: must be 2-60 seconds") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "mirror-controller")
        FleetController.tuneAllocator()
        let client: EtcdClient
        do {
            guard let config = try etcd.configuration() else { throw ExitCode(2) }
            client = try EtcdClient(config, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("mirror-controller: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let name = id ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        logger.info("starting", metadata: ["id": "\(name)", "etcd": "\(etcd.etcd ?? "")", "leaseTTL": "\(leaseTTL)"])
        let controller = FleetController(etcd: client, id: name, leaseTTL: leaseTTL, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: controller)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        client.close()
        logger.info("stopped")
    }
}
