import ArgumentParser
import Foundation
import MirrorAPI
import MirrorCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// SIGINT and SIGTERM while capturing: the first stops the capture (its summary still
/// comes), the second leaves at once. A global: a signal handler captures nothing.
nonisolated(unsafe) private var captureSignals: sig_atomic_t = 0

/// `agentctl capture` (SPEC §11): the packets a session (or a source and direction)
/// mirrors, read from the live datapath through the agent, written as pcapng: one
/// interface per source and direction, each packet's comment naming its session and
/// rule, nanosecond wall-clock timestamps. `-w -` streams to standard output.
struct Capture: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the packets a session or a source mirrors to a pcapng file, from the live datapath.",
        discussion: """
            Runs until -c packets, --duration seconds or Ctrl-C. Collectors receive every copy as \
            without a capture. Packets the capture could not keep up with are counted and reported \
            at the end (stderr; the summary with -o json).
            """)

    @OptionGroup var agent: AgentOptions

    @Option(help: ArgumentHelp("Capture what this session mirrors.", valueName: "id"))
    var session: String?

    @Option(help: ArgumentHelp("Capture what this source mirrors (every session).", valueName: "id"))
    var source: String?

    @Option(help: "inbound or outbound (default: both).")
    var direction: Direction?

    @Option(name: [.customShort("c"), .customLong("count")], help: "Stop after this many packets.")
    var count: Int?

    @Option(help: ArgumentHelp("Stop after this many seconds.", valueName: "seconds"))
    var duration: Double?

    @Option(help: "Bytes of each packet to keep (1-\(CaptureRequest.maxSnaplen), default \(CaptureRequest.maxSnaplen)).")
    var snaplen: Int?

    @Option(
        name: [.customShort("w"), .customLong("write")], help: ArgumentHelp("The pcapng file; - for standard output.", valueName: "file"))
    var file: String

    @Option(name: [.customShort("o"), .long], help: "The summary at the end: text (stderr) or json (stdout; stderr with -w -).")
    var output: OutputFormat = .text

    var request: CaptureRequest {
        CaptureRequest(session: session, source: source, direction: direction, count: count, duration: duration, snaplen: snaplen)
    }

    func validate() throws {
        if session != nil && source != nil { throw ValidationError("--session and --source cannot be used together: give one") }
        if session == nil && source == nil { throw ValidationError("give --session ID or --source ID") }
        if let problem = request.problems.first { throw ValidationError("--\(problem.path): \(problem.message)") }
        if file.isEmpty { throw ValidationError("-w: give a file name, or - for standard output") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let out = try CaptureOutput(file)
        let body: Data
        do { body = try JSONEncoder().encode(request) } catch {
            CLIOutput.error("Error: cannot encode the request: \(error)")
            throw CLIExit.invalidInput
        }
        let stream: ControlStream
        do { stream = try ControlStream(agent.client, method: "POST", path: APIPath.captures, body: [UInt8](body)) } catch {
            out.abandon()
            AgentOptions.report(error)
            throw CLIExit.invalidInput
        }
        defer { stream.close() }
        signal(SIGINT) { _ in captureSignals += 1 }
        signal(SIGTERM) { _ in captureSignals += 1 }

        var decoder = CaptureFrameDecoder()
        var pcapng = PcapngWriter()
        var started: CaptureStarted?
        var summary: CaptureSummary?
        var stopSent = false
        var failure: String?
        /// The output cannot be written (a reader that went away): the capture is stopped,
        /// and its summary still read and reported.
        var outputFailed = false
        var stopDeadline: ContinuousClock.Instant?
        func stop() {
            guard !stopSent, let id = started?.id else { return }
            stopSent = true
            // Its own connection; the stream then ends with the summary.
            _ = try? ControlClient(socketPath: agent.socketPath, timeout: 5).send(method: "DELETE", path: APIPath.capture(id))
        }
        while summary == nil {
            if captureSignals >= 2 { break }
            if captureSignals == 1 { stop() }
            if stopSent && stopDeadline == nil { stopDeadline = .now + .seconds(10) }
            if let stopDeadline, ContinuousClock.now > stopDeadline {
                failure = failure ?? "the agent did not end the capture within 10 s of being asked"
                break
            }
            let bytes: [UInt8]?
            do { bytes = try stream.read(timeoutMs: 200) } catch {
                failure = "\(error)"
                break
            }
            guard let bytes else { break }
            if bytes.isEmpty { continue }
            let frames: [CaptureFrame]
            do { frames = try decoder.feed(bytes) } catch {
                failure = "unexpected answer from mirror-agent: \(error)"
                break
            }
            var chunk: [UInt8] = []
            for frame in frames {
                switch frame {
                case .started(let s):
                    started = s
                    chunk += PcapngWriter.sectionHeader(application: "agentctl capture \(MirrorAPIVersion.release)")
                    for i in s.interfaces { chunk += pcapng.describe(Self.interface(i, snaplen: s.snaplen)) }
                    CLIOutput.error("capturing \(Self.what(s)) (\(s.id), snaplen \(s.snaplen)); Ctrl-C to stop")
                case .packet(let p):
                    chunk += pcapng.packet(
                        on: Self.interface(p.captureInterface, snaplen: started?.snaplen ?? CaptureRequest.maxSnaplen),
                        timestampNs: p.timestampNs, originalLength: p.length, data: p.data,
                        comment: "session \(p.session) rule \(p.rulePriority) (filter \(p.filter), \(p.direction))",
                        direction: p.direction == .inbound ? .inbound : .outbound)
                case .summary(let s):
                    summary = s
                }
            }
            if !chunk.isEmpty && !outputFailed {
                do { try out.write(chunk) } catch {
                    failure = "\(error)"
                    outputFailed = true
                    stop()
                }
            }
        }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        out.close()
        if let summary {
            report(summary)
            if let failure { CLIOutput.error("Error: \(failure)") }
            if failure != nil { throw CLIExit.invalidInput }
            return
        }
        if captureSignals >= 2 {
            CLIOutput.error("interrupted again: left without the capture's summary")
            throw ExitCode(130)
        }
        CLIOutput.error(
            "Error: the capture ended without its summary (did the agent stop?): \(failure ?? "the agent closed the stream")"
                + (started == nil ? "" : "; \(file == "-" ? "the output" : file) holds what came before"))
        throw CLIExit.invalidInput
    }

    func report(_ s: CaptureSummary) {
        switch output {
        case .json:
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .prettyPrinted]
            let text = String(decoding: (try? e.encode(s)) ?? Data(), as: UTF8.self)
            // Standard output carries the packets with -w -.
            if file == "-" { CLIOutput.error(text) } else { CLIOutput.out(text) }
        case .text:
            let to = file == "-" ? "" : " to \(file)"
            CLIOutput.error(
                "\(s.packets) packet\(s.packets == 1 ? "" : "s") captured\(to) (\(s.id), ended: \(s.ended.replacingOccurrences(of: "_", with: " ")))\n"
                    + "\(s.lost) packet\(s.lost == 1 ? "" : "s") lost (\(s.lostInKernel) in the datapath's ring, \(s.lostInAgent) in the agent's queue)"
                    + (s.lost > 0 ? ": the capture could not keep up; collectors still received every copy" : ""))
        }
    }

    static func what(_ s: CaptureStarted) -> String {
        let directions = s.directions.count == 1 ? " \(s.directions[0])" : ""
        if let session = s.session { return "session \(session)\(directions)" }
        return "source \(s.source ?? "?")\(directions)"
    }

    /// One pcapng interface per source and direction.
    static func interface(_ i: CaptureInterface, snaplen: Int) -> PcapngWriter.Interface {
        let seen = i.direction == .inbound ? "packets the ENI receives" : "packets the ENI sends"
        return PcapngWriter.Interface(
            name: "\(i.source)/\(i.direction)", description: "source \(i.source) (\(i.interface)) \(i.direction): \(seen)",
            snaplen: UInt32(snaplen))
    }
}

/// Where the pcapng goes: a file (created or truncated) or standard output, written
/// as it comes.
final class CaptureOutput {
    let name: String
    private var fd: Int32
    private let isFile: Bool
    /// The file did not exist before: a refused capture leaves none.
    private let created: Bool
    /// A file that existed is truncated at the first write, not before: a refused
    /// capture leaves it as it was.
    private var truncated = false

    /// Opened before the capture starts, so that a file that cannot be written stops
    /// agentctl before the agent does anything.
    init(_ path: String) throws {
        name = path
        if path == "-" {
            fd = STDOUT_FILENO
            isFile = false
            created = false
        } else {
            created = access(path, F_OK) != 0
            fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            isFile = true
            if fd < 0 {
                CLIOutput.error("Error: cannot write \(path): \(String(cString: strerror(errno)))")
                throw CLIExit.usage
            }
        }
    }

    func write(_ bytes: [UInt8]) throws {
        if isFile && !truncated {
            truncated = true
            if ftruncate(fd, 0) != 0 {
                throw UsageError(message: "cannot write \(name): \(String(cString: strerror(errno)))")
            }
        }
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw UsageError(message: "cannot write \(name == "-" ? "standard output" : name): \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    func close() {
        if isFile && fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Nothing was captured (the agent refused): no empty file left behind.
    func abandon() {
        close()
        if created { unlink(name) }
    }
}
