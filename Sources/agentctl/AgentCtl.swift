import ArgumentParser
import MirrorAPI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `agentctl`: the admin CLI (SPEC §7). Offline commands work on a file; agent-backed
/// commands (apply, get, ...) join `subcommands` as they are written.
///
/// Exit codes: 0 valid / explained, 1 invalid input, 2 usage error.
@main
struct AgentCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agentctl",
        abstract: "Control the traffic mirroring agent, and check configuration offline.",
        version: "agentctl \(MirrorAPIVersion.release) (control API v\(MirrorAPIVersion.current))",
        subcommands: [
            Validate.self, Explain.self, Apply.self, Get.self, Create.self, Update.self, Delete.self, SessionCommand.self, Status.self,
            Stats.self, Fleet.self,
        ])

    /// `agentctl --socket PATH <command>`: also accepted before the command (see AgentOptions).
    @OptionGroup var agent: AgentOptions

    /// ArgumentParser exits 64 on usage errors; the contract says 2, and never a stack trace.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let code as ExitCode {
            Self.terminate(code.rawValue)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }  // --help, --version
            CLIOutput.error(fullMessage(for: error))
            Self.terminate(CLIExit.usage.rawValue)
        }
    }

    static func terminate(_ code: Int32) -> Never {
        fflush(stdout)
        #if canImport(Glibc)
            Glibc.exit(code)
        #else
            Darwin.exit(code)
        #endif
    }
}

enum CLIExit {
    static let ok = ExitCode(0)
    static let invalidInput = ExitCode(1)
    static let usage = ExitCode(2)
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// A usage error (exit 2) with the option at fault.
struct UsageError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

enum CLIOutput {
    static func out(_ s: String) {
        print(s)
    }

    static func error(_ s: String) {
        var line = s
        if !line.hasSuffix("\n") { line += "\n" }
        _ = line.withCString { fputs($0, stderr) }
    }

    /// Reads a whole file; a missing or unreadable file is a usage error (exit 2).
    /// `-` reads standard input.
    static func read(_ path: String) throws -> [UInt8] {
        guard let f = path == "-" ? stdin : fopen(path, "rb") else {
            let reason = String(cString: strerror(errno))
            error("Error: cannot read \(path): \(reason)")
            throw CLIExit.usage
        }
        defer { if path != "-" { fclose(f) } }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n > 0 { bytes.append(contentsOf: buffer[0..<n]) }
            if n < buffer.count {
                if ferror(f) != 0 {
                    error("Error: cannot read \(path): read error")
                    throw CLIExit.usage
                }
                break
            }
            if bytes.count > 64 << 20 {
                error("Error: \(path) is larger than 64 MiB")
                throw CLIExit.invalidInput
            }
        }
        return bytes
    }
}
