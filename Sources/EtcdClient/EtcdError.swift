/// Errors of the etcd client, in words an operator can act on.
public enum EtcdError: Error, CustomStringConvertible, Sendable, Equatable {
    /// No endpoint answered (each one was tried in turn).
    case unavailable(String)
    /// The watch's start revision was compacted away: list again, then watch from there.
    case compacted(revision: Int64)
    /// The watch sent nothing, not even an answer to a progress request, for too long.
    case silentWatch(endpoint: String)
    /// The server cancelled the watch.
    case watchCanceled(String)
    /// The lease is gone (expired, revoked, or not kept alive within its TTL).
    case leaseLost(Int64)
    /// The server refused the request (the reason as etcd gave it).
    case refused(String)
    /// Bad endpoints or TLS files.
    case configuration(String)

    public var description: String {
        switch self {
        case .unavailable(let s): return "etcd unavailable: \(s)"
        case .compacted(let r): return "etcd: the requested revision was compacted (compact revision \(r))"
        case .silentWatch(let e): return "etcd watch on \(e) went silent"
        case .watchCanceled(let s): return "etcd cancelled the watch: \(s)"
        case .leaseLost(let id): return "etcd lease \(String(id, radix: 16)) lost"
        case .refused(let s): return "etcd refused the request: \(s)"
        case .configuration(let s): return "etcd: \(s)"
        }
    }
}
