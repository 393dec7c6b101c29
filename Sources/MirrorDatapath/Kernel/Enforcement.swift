import Foundation
import Logging
import MirrorCompiler
import MirrorCore

/// Applies `EnforcementRenderer`'s text with the nft CLI (Debian `nftables`).
/// Why the CLI: `nft -f` is the one public interface that takes a whole rule set
/// as one atomic transaction; libnftables would need another system-library
/// target for the same text, and raw nf_tables netlink (expression encoding for
/// every match) is a large amount of code to get exactly right. It runs once
/// per apply, not per packet.
public struct Enforcement: Sendable {
    /// The nft binary (found in the usual places), or a full command line that ends
    /// with nft (tests: `ip netns exec NAME nft`).
    public var command: [String]
    /// Where a failure that does not stop the apply is reported.
    public var logger: Logger

    public init(command: [String]? = nil, logger: Logger = Logger(label: "mirror-agent.enforcement")) {
        self.logger = logger
        self.command =
            command ?? [
                ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first {
                    FileManager.default.isExecutableFile(atPath: $0)
                } ?? "/usr/sbin/nft"
            ]
    }

    var installed: Bool { command.count > 1 || FileManager.default.isExecutableFile(atPath: command[0]) }

    public struct Failure: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Whether any source asks for enforcement.
    public static func wanted(_ doc: Document) -> Bool { doc.sources.contains { $0.enforce == true } }

    /// `nft -c`: the rule set parses and the kernel would take it. Nothing changes.
    public func check(_ doc: Document) throws {
        guard Self.wanted(doc) else { return }
        try run(["-c", "-f", "-"], input: EnforcementRenderer.render(doc), what: "check the enforcement rules")
    }

    /// Replaces the agent's table with the rules of `doc` in one transaction (or
    /// removes it when no source enforces). Without enforced sources nft's
    /// failures are reported on standard error, not thrown.
    public func apply(_ doc: Document) throws {
        guard Self.wanted(doc) else {
            // Nothing to enforce: a table left by an earlier apply must go, but a host
            // whose kernel or nft cannot do nftables at all still mirrors. Say so.
            do { try remove() } catch {
                logger.warning("\(error)")
            }
            return
        }
        try run(["-f", "-"], input: EnforcementRenderer.render(doc), what: "apply the enforcement rules")
    }

    /// Removes the agent's table (cleanup); fine when it does not exist or nft is
    /// not installed (then the agent never made one).
    public func remove() throws {
        guard installed else { return }
        try run(["-f", "-"], input: EnforcementRenderer.render(Document()), what: "remove table inet \(EnforcementRenderer.table)")
    }

    func run(_ args: [String], input: String, what: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: command[0])
        p.arguments = Array(command.dropFirst()) + args
        let stdin = Pipe(), stderr = Pipe()
        p.standardInput = stdin
        p.standardError = stderr
        p.standardOutput = FileHandle.nullDevice
        // Not waitUntilExit(): on Linux it spins a run loop on the calling thread,
        // and every pool thread that ever waited keeps one (an epoll, an eventfd and
        // a timerfd). The handler runs on Foundation's one process-monitor thread.
        let exited = DispatchSemaphore(value: 0)
        p.terminationHandler = { _ in exited.signal() }
        do { try p.run() } catch {
            throw Failure(
                message: "\(what): cannot run \(command.joined(separator: " ")) (install nftables): \(error.localizedDescription)")
        }
        // The throwing write: nft may exit before it has read everything (a bad rule
        // set, a missing kernel feature), and FileHandle.write(_:) traps on EPIPE. Its
        // exit status below says what went wrong.
        try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
        try? stdin.fileHandleForWriting.close()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        try? stderr.fileHandleForReading.close()
        exited.wait()
        p.terminationHandler = nil  // else the Process, its pipes and their fds stay (e2e security_groups)
        guard p.terminationStatus == 0 else {
            let text = String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw Failure(message: "\(what): nft exited with \(p.terminationStatus): \(text)")
        }
    }
}
