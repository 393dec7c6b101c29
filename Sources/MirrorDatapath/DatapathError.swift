import Glibc

/// A datapath failure, with what was being done and on what ("attach tc egress on
/// tap3: No such device"). `log` holds libbpf's output (the verifier log) when any.
public struct DatapathError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Int32?
    public var detail: String?
    public var log: String?

    public init(_ operation: String, errno: Int32? = nil, detail: String? = nil, log: String? = nil) {
        self.operation = operation; self.errno = errno; self.detail = detail; self.log = log
    }

    public var description: String {
        var s = operation
        if let errno { s += ": " + String(cString: strerror(errno)) }
        if let detail { s += ": " + detail }
        if let log, !log.isEmpty {
            let lines = log.split(separator: "\n").suffix(20)
            s += "\n" + lines.joined(separator: "\n")
        }
        return s
    }

    /// From a libbpf return value (negative errno) or -1 with errno set.
    static func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(DatapathError) {
        guard rc < 0 else { return }
        let e = rc == -1 ? Glibc.errno : -rc
        throw DatapathError(operation(), errno: e)
    }
}
