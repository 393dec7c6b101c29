import ArgumentParser
import Foundation
import MirrorAPI
import MirrorCore

/// `agentctl stats`: the datapath counters (the numbers GET /metrics shows) per session,
/// rule and source; with --watch, polled every --interval seconds with per-second rates.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show packet counters per session, rule and source (--watch: refresh with rates).")

    @OptionGroup var agent: AgentOptions

    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Option(name: .customLong("session"), help: ArgumentHelp("Only this session and its rules (repeatable).", valueName: "id"))
    var sessions: [String] = []

    @Option(name: .customLong("source"), help: ArgumentHelp("Only this source (repeatable).", valueName: "id"))
    var sources: [String] = []

    @Flag(name: [.customShort("w"), .long], help: "Keep polling and show rates per second.")
    var watch = false

    @Option(help: "Seconds between polls with --watch.")
    var interval: Double = 2

    @Option(help: ArgumentHelp("Stop after this many polls with --watch (0: until interrupted).", visibility: .hidden))
    var count: Int = 0

    func validate() throws {
        guard interval >= 0.1 && interval <= 3600 else { throw ValidationError("--interval: must be 0.1-3600 seconds") }
        guard count >= 0 else { throw ValidationError("--count: must be 0 or more") }
    }

    func run() throws {
        // watch(1)'s way on a terminal: each poll redraws the screen from the top.
        // Into a pipe or a file the polls follow one another, as before.
        let redraw = watch && output == .text && isatty(STDOUT_FILENO) == 1
        var previous: StatsResponse?
        var polls = 0
        var lastFailed = false
        while true {
            polls += 1
            do {
                let stats = try fetch()
                lastFailed = false
                switch output {
                case .json:
                    let e = JSONEncoder()
                    e.outputFormatting = watch ? [.sortedKeys] : [.sortedKeys, .prettyPrinted]
                    let data = (try? e.encode(stats)) ?? Data()
                    CLIOutput.out(String(decoding: data, as: UTF8.self))
                case .text:
                    if redraw {
                        print(
                            Self.clearScreen + "Every \(Self.seconds(interval)): agentctl stats" + "    " + Self.clock(), terminator: "\n\n"
                        )
                    } else if watch && polls > 1 {
                        CLIOutput.out("")
                    }
                    // A filter on one kind leaves the other kind out (the agent sends none of it).
                    let filtered = !sessions.isEmpty || !sources.isEmpty
                    CLIOutput.out(
                        StatsTables.render(
                            stats, previous: watch ? previous : nil,
                            sessions: !filtered || !sessions.isEmpty, sources: !filtered || !sources.isEmpty))
                }
                previous = stats
            } catch {
                // The first poll stops at once on what is wrong (no agent there, an
                // unknown --session). Once watching, a failed poll is one line and the
                // watch goes on: the agent may be restarting.
                guard watch, polls > 1 else {
                    AgentOptions.report(error)
                    throw CLIExit.invalidInput
                }
                CLIOutput.error(Self.retryLine(error, interval: interval))
                lastFailed = true
            }
            fflush(stdout)
            guard watch, count == 0 || polls < count else {
                if lastFailed { throw CLIExit.invalidInput }
                return
            }
            usleep(UInt32(interval * 1_000_000))
        }
    }

    /// Decoded straight from the body (at the quotas 47 MB: no JSONValue tree on the way).
    func fetch() throws -> StatsResponse {
        try agent.client.call("GET", StatsPath.stats(sessions: sessions, sources: sources), as: StatsResponse.self)
    }

    /// Cursor home, then erase the screen (ANSI), as watch(1) redraws.
    static let clearScreen = "\u{1B}[H\u{1B}[2J"

    /// One line for a failed poll while watching.
    static func retryLine(_ error: Error, interval: Double) -> String {
        let retry = "retrying every \(seconds(interval))"
        switch error {
        case ControlClient.ClientError.unreachable(let path, let e):
            return "agent not answering at \(path) (\(String(cString: strerror(e)))); \(retry)"
        case ControlClient.ClientError.api(let e):
            return "the agent refused the poll: \(e.message) (HTTP \(e.status)); \(retry)"
        default:
            return "agent not answering (\(error)); \(retry)"
        }
    }

    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s))s" : String(format: "%.1fs", s)
    }

    static func clock() -> String {
        var t = time(nil)
        var parts = tm()
        localtime_r(&t, &parts)
        return String(format: "%02d:%02d:%02d", parts.tm_hour, parts.tm_min, parts.tm_sec)
    }
}

/// The text form of `agentctl stats`. Rates are per second since `previous`.
enum StatsTables {
    /// `sessions`, `sources`: whether to show those sections (sessions with their rules).
    static func render(
        _ s: StatsResponse, previous: StatsResponse?, sessions showSessions: Bool = true,
        sources showSources: Bool = true
    ) -> String {
        var out = ["generation \(s.generation), datapath \(s.datapath)"]
        guard s.countersAvailable else {
            out.append("no counters: the \(s.datapath) datapath does not count packets")
            return out.joined(separator: "\n")
        }
        let dt = previous.map { s.time - $0.time } ?? 0
        let withRates = previous != nil && dt > 0
        func rate(_ now: UInt64, _ before: UInt64?) -> String {
            guard let before, now >= before else { return "-" }
            return String(format: "%.1f", Double(now - before) / dt)
        }

        let prevSessions = Dictionary((previous?.sessions ?? []).map { ($0.session, $0) }, uniquingKeysWith: { a, _ in a })
        var header = ["SESSION", "PACKETS", "BYTES", "COPIES-SENT", "TRUNCATED", "DROPPED"]
        if withRates { header += ["PKT/S", "BYTES/S"] }
        let sessionRows = s.sessions.map { x -> [String] in
            var row = [
                x.session, String(x.packets), String(x.bytes), String(x.copiesSent),
                String(x.truncated.values.reduce(0, +)), String(x.dropped.values.reduce(0, +)),
            ]
            if withRates { row += [rate(x.packets, prevSessions[x.session]?.packets), rate(x.bytes, prevSessions[x.session]?.bytes)] }
            return row
        }
        if showSessions { out.append("\nsessions:\n" + (sessionRows.isEmpty ? "none" : Table.render(header, sessionRows))) }

        func ruleKey(_ r: RuleStats) -> String { "\(r.session)/\(r.direction)/\(r.priority)/\(r.filter)/\(r.action)" }
        let prevRules = Dictionary((previous?.rules ?? []).map { (ruleKey($0), $0) }, uniquingKeysWith: { a, _ in a })
        header = ["SESSION", "FILTER", "DIRECTION", "PRIORITY", "ACTION", "HITS"]
        if withRates { header += ["HITS/S"] }
        let ruleRows = s.rules.map { r -> [String] in
            var row = [r.session, r.filter, r.direction.rawValue, String(r.priority), r.action.rawValue, String(r.hits)]
            if withRates { row.append(rate(r.hits, prevRules[ruleKey(r)]?.hits)) }
            return row
        }
        if showSessions { out.append("\nrules:\n" + (ruleRows.isEmpty ? "none" : Table.render(header, ruleRows))) }

        let reasons = Array(Set(s.sources.flatMap { $0.notMirrored.keys })).sorted()
        let prevSources = Dictionary(
            (previous?.sources ?? []).map { ("\($0.source)/\($0.direction)", $0) }, uniquingKeysWith: { a, _ in a })
        header =
            ["SOURCE", "INTERFACE", "STATE", "DIRECTION", "SEEN", "MIRRORED"]
            + reasons.map { $0.uppercased().replacingOccurrences(of: "_", with: "-") }
        if withRates { header += ["SEEN/S", "MIRRORED/S"] }
        let sourceRows = s.sources.map { x -> [String] in
            var row = [x.source, x.interface, x.state.rawValue, x.direction.rawValue, String(x.seen), String(x.mirrored)]
            row += reasons.map { x.notMirrored[$0].map(String.init) ?? "-" }
            if withRates {
                let p = prevSources["\(x.source)/\(x.direction)"]
                row += [rate(x.seen, p?.seen), rate(x.mirrored, p?.mirrored)]
            }
            return row
        }
        if showSources { out.append("\nsources:\n" + (sourceRows.isEmpty ? "none" : Table.render(header, sourceRows))) }
        if s.mirrorDeviceForeignDropped > 0 {
            out.append("\nframes on the mirror device that were not copies (dropped): \(s.mirrorDeviceForeignDropped)")
        }
        return out.joined(separator: "\n")
    }
}
