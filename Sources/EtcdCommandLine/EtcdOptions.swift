import ArgumentParser
import EtcdClient

/// SPEC §9: `--etcd ENDPOINTS` and etcdctl's TLS flags, declared once for every
/// command that reaches etcd (mirror-agent, mirror-controller, agentctl). Each command
/// says in its own help what `--etcd` changes for it.
public struct EtcdOptions: ParsableArguments {
    @Option(
        name: .customLong("etcd"),
        help: ArgumentHelp("Fleet mode: the region's etcd endpoints, comma-separated https://HOST:PORT.", valueName: "endpoints"))
    public var etcd: String?

    @Option(name: .customLong("etcd-cacert"), help: ArgumentHelp("The CA of the etcd members' certificates.", valueName: "file"))
    public var etcdCACert: String?

    @Option(name: .customLong("etcd-cert"), help: ArgumentHelp("This client's certificate for etcd.", valueName: "file"))
    public var etcdCert: String?

    @Option(name: .customLong("etcd-key"), help: ArgumentHelp("The key of --etcd-cert.", valueName: "file"))
    public var etcdKey: String?

    public init() {}

    /// The TLS flags mean nothing without endpoints: refused rather than ignored.
    public func validate() throws {
        if etcd == nil && (etcdCACert != nil || etcdCert != nil || etcdKey != nil) {
            throw ValidationError("--etcd-cacert, --etcd-cert and --etcd-key need --etcd")
        }
    }

    /// The client configuration, or nil without `--etcd`; a bad endpoint or an
    /// unreadable certificate throws with its reason.
    public func configuration() throws -> EtcdConfiguration? {
        guard let etcd else { return nil }
        return try EtcdConfiguration.parse(endpoints: etcd, cacert: etcdCACert, cert: etcdCert, key: etcdKey)
    }
}
