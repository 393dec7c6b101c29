import Foundation
import NIOConcurrencyHelpers

/// Socket file housekeeping around bind.
enum SocketPath {
    static func prepare(_ path: String) throws {
        guard path.utf8.count < 108 else { throw ServerError("socket path \(path) is longer than 107 bytes") }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            do {
                try FileManager.default.createDirectory(
                    atPath: dir, withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o755])
            } catch { throw ServerError("cannot create socket directory \(dir): \(error.localizedDescription)") }
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw ServerError("\(path) exists and is not a socket; refusing to replace it")
        }
        switch probe(path) {
        case 0:
            throw ServerError("another agent is already answering on \(path); refusing to start a second one")
        case ECONNREFUSED, ENOENT:
            // A socket file left by an agent that did not stop cleanly.
            guard unlink(path) == 0 || errno == ENOENT else {
                throw ServerError("cannot remove stale socket \(path): \(HTTPServer.describe(errno: errno))")
            }
        case let e:
            throw ServerError("cannot check existing socket \(path): \(HTTPServer.describe(errno: e))")
        }
    }

    /// A unix stream socket bound to `path`, mode 0600 (root only: whoever can write to
    /// the control socket controls mirroring). bind() creates the file; a restrictive
    /// umask makes it 0600 from its first instant, and chmod makes it so whatever umask
    /// did. NIO listens on it.
    static func bind(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServerError("cannot listen on \(path): \(HTTPServer.describe(errno: errno))") }
        // umask is per process: serialise with other servers in this process (tests).
        let rc = umaskLock.withLock { () -> Int32 in
            let old = umask(0o177)
            defer { umask(old) }
            return withAddress(path) { Glibc.bind(fd, $0, $1) } == 0 ? 0 : errno
        }
        guard rc == 0 else {
            close(fd)
            throw ServerError("cannot listen on \(path): \(HTTPServer.describe(errno: rc))")
        }
        guard chmod(path, 0o600) == 0 else {
            let e = errno
            close(fd)
            unlink(path)
            throw ServerError("cannot set mode 0600 on \(path): \(HTTPServer.describe(errno: e))")
        }
        return fd
    }

    private static let umaskLock = NIOLock()

    /// 0 when something accepts connections on `path`, else the connect errno.
    static func probe(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        return withAddress(path) { connect(fd, $0, $1) } == 0 ? 0 : errno
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
