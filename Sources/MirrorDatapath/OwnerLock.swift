import Foundation
import Glibc

/// An exclusive flock(2) on a directory, held for the life of the value: one agent
/// (or one `cleanup`) owns a state directory and a bpffs directory at a time. A
/// second one fails at once, before it has changed anything, instead of detaching
/// the first one's sources or moving its state aside. The kernel drops the lock
/// when the process dies, however it dies, so a crash never leaves a stale lock.
public final class OwnerLock: @unchecked Sendable {
    public struct Held: Error, CustomStringConvertible {
        public var description: String
    }

    public let path: String
    private var fd: Int32

    /// Locks `path` (a directory that exists). `what` names it in the error, e.g.
    /// "state directory".
    public init(directory path: String, what: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw Held(description: "cannot open \(what) \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            throw Held(
                description: e == EWOULDBLOCK
                    ? "\(what) \(path) is in use by another mirror-agent (running, or a cleanup); refusing to touch it"
                    : "cannot lock \(what) \(path): \(String(cString: strerror(e)))")
        }
    }

    /// Lets go early (a datapath that shuts down before the process ends).
    public func release() {
        guard fd >= 0 else { return }
        close(fd)  // closing the last descriptor drops the flock
        fd = -1
    }

    deinit { release() }
}
