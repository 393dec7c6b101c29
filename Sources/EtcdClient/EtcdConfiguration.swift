import Foundation

/// Where the cluster is and how to reach it (SPEC §9: `--etcd ENDPOINTS` and the
/// etcdctl-named TLS flags `--etcd-cacert`, `--etcd-cert`, `--etcd-key`).
public struct EtcdConfiguration: Sendable {
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Client TLS: the CA that signed the members' certificates, and the client's own
    /// certificate and key (etcd's `--client-cert-auth` refuses clients without one).
    public struct TLS: Sendable, Equatable {
        public var caFile: String
        public var certFile: String?
        public var keyFile: String?
        public init(caFile: String, certFile: String? = nil, keyFile: String? = nil) {
            self.caFile = caFile; self.certFile = certFile; self.keyFile = keyFile
        }
    }

    public var endpoints: [Endpoint]
    public var tls: TLS?
    /// Per unary request; a member that does not answer within it is skipped.
    public var requestTimeout: Duration = .seconds(3)
    /// How long connecting to one member may take before the next is tried.
    public var connectTimeout: Duration = .seconds(2)

    public init(endpoints: [Endpoint], tls: TLS? = nil) {
        self.endpoints = endpoints; self.tls = tls
    }

    /// `ENDPOINTS` as etcdctl takes it: comma-separated `https://HOST:PORT`,
    /// `http://HOST:PORT` or `HOST:PORT`. `https` needs `cacert`; a certificate and a
    /// key go together.
    public static func parse(
        endpoints text: String, cacert: String? = nil, cert: String? = nil, key: String? = nil
    ) throws -> EtcdConfiguration {
        var list: [Endpoint] = []
        var schemes = Set<String>()
        for raw in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !raw.isEmpty {
            var rest = Substring(raw)
            var scheme = ""
            if let r = rest.range(of: "://") {
                scheme = String(rest[..<r.lowerBound]).lowercased()
                rest = rest[r.upperBound...]
                guard scheme == "http" || scheme == "https" else {
                    throw EtcdError.configuration("--etcd: '\(raw)': the scheme must be http or https")
                }
            }
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            let host: String
            let portText: Substring
            if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
                host = String(rest[rest.index(after: rest.startIndex)..<close])
                portText = rest[close...].dropFirst().drop(while: { $0 == ":" })
            } else if let colon = rest.lastIndex(of: ":") {
                host = String(rest[..<colon]); portText = rest[rest.index(after: colon)...]
            } else {
                host = String(rest); portText = ""
            }
            let port = portText.isEmpty ? 2379 : Int(portText) ?? -1
            guard !host.isEmpty, (1...65535).contains(port) else {
                throw EtcdError.configuration("--etcd: '\(raw)' is not [http(s)://]HOST[:PORT]")
            }
            list.append(Endpoint(host: host, port: port))
            schemes.insert(scheme.isEmpty ? (cacert == nil ? "http" : "https") : scheme)
        }
        guard !list.isEmpty else { throw EtcdError.configuration("--etcd: no endpoint given") }
        guard schemes.count == 1 else { throw EtcdError.configuration("--etcd: mixes http and https endpoints") }
        guard (cert == nil) == (key == nil) else {
            throw EtcdError.configuration("--etcd-cert and --etcd-key go together")
        }
        var tls: TLS?
        if schemes.first == "https" {
            guard let cacert else {
                throw EtcdError.configuration("--etcd: https endpoints need --etcd-cacert (the CA of the members' certificates)")
            }
            tls = TLS(caFile: cacert, certFile: cert, keyFile: key)
        } else if cert != nil || cacert != nil {
            throw EtcdError.configuration("--etcd-cacert/--etcd-cert/--etcd-key need https:// endpoints")
        }
        for file in [tls?.caFile, tls?.certFile, tls?.keyFile].compactMap({ $0 }) {
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw EtcdError.configuration("cannot read \(file)")
            }
        }
        return EtcdConfiguration(endpoints: list, tls: tls)
    }
}
