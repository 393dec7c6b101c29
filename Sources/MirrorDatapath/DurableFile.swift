import Foundation
import Glibc

/// A file replaced whole or not at all, and on disk when `write` returns: the
/// agent's state file, the datapath's slot assignment, the metrics continuity.
public enum DurableFile {
    public struct Failure: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// temp file (0600), write, fsync, rename, fsync of the directory.
    public static func write(_ data: Data, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let tmp = path + ".tmp"
        func fail(_ what: String) -> DurableFile.Failure { Failure(message: "\(what): \(String(cString: strerror(errno)))") }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw fail("open \(tmp)") }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        let written = data.withUnsafeBytes { raw -> Bool in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; return false }
                off += n
            }
            return true
        }
        guard written else { let e = fail("write"); close(fd); throw e }
        guard fsync(fd) == 0 else { let e = fail("fsync"); close(fd); throw e }
        close(fd)
        guard rename(tmp, path) == 0 else { throw fail("rename") }
        ok = true
        // The rename is durable only once the directory entry is on disk.
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}
