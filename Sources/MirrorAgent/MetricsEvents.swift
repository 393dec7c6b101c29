import Foundation
import Logging
import MirrorAPI

// Structured event logs: one line per source state change (attached,
// pending, detached), with the source, its interface and ifindex as metadata. Derived
// from `status()` after every apply, link event and resync, so every datapath
// implementation gets the same lines. Nothing here runs per packet.

/// The last source states logged, so that only changes are logged.
final class SourceStateLog: @unchecked Sendable {
    private let lock = NSLock()
    private var last: [String: StatusResponse.SourceStatus] = [:]

    /// The lines to log for the change from the previous call to `now`.
    func changes(_ now: [StatusResponse.SourceStatus]) -> [(Logger.Level, String, Logger.Metadata)] {
        lock.withLock {
            var out: [(Logger.Level, String, Logger.Metadata)] = []
            var next: [String: StatusResponse.SourceStatus] = [:]
            for s in now {
                next[s.id] = s
                let before = last[s.id]
                var md: Logger.Metadata = ["source": "\(s.id)", "interface": "\(s.interface)"]
                if let i = s.ifindex { md["ifindex"] = "\(i)" }
                switch (before?.state, s.state) {
                case (.attached?, .attached) where before?.ifindex == s.ifindex && before?.interface == s.interface: break
                case (.pending?, .pending) where before?.interface == s.interface: break
                case (_, .attached):
                    out.append((.info, "source attached", md))
                case (_, .pending):
                    out.append(
                        (
                            before?.state == .attached ? .warning : .notice,
                            "source pending: its interface is not present; attached when it appears", md
                        ))
                }
            }
            for (id, s) in last where next[id] == nil && s.state == .attached {
                var md: Logger.Metadata = ["source": "\(id)", "interface": "\(s.interface)"]
                if let i = s.ifindex { md["ifindex"] = "\(i)" }
                out.append((.info, "source detached: no longer in the document", md))
            }
            last = next
            return out
        }
    }
}

extension Agent {
    /// Logs the source state changes since the last call (see SourceStateLog).
    func logSourceChanges(after event: String) {
        for (level, message, md) in metrics.sourceStates.changes(status(verified: false).sources) {
            var m = md
            m["after"] = "\(event)"
            metrics.logger.log(level: level, "\(message)", metadata: m)
        }
    }
}
