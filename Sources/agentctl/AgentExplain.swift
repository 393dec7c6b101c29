import Foundation
import MirrorAPI
import MirrorCore

/// `explain` answered by the agent from the live policy: the oracle's
/// decision and the loaded program's (BPF_PROG_TEST_RUN), and whether they agree.
/// The packet travels as the same strings as the offline command's flags
/// (`PacketSpec` ↔ `PacketArguments`), so both accept exactly the same forms.
///
/// Hook for `Explain` (owned with the offline explain): when no `-f FILE` is given,
/// call `AgentExplain.run(...)` with the parsed flags.
enum AgentExplain {
    /// Exit status: 0 explained and agreeing (or no kernel decision to compare),
    /// 1 refused / unreachable / oracle and kernel disagree.
    static func run(agent: AgentOptions, source: String, direction: Direction, protocol proto: String?,
                    src: String?, dst: String?, laterFragment: Bool, nonIP: Bool, established: Bool,
                    output: OutputFormat) throws {
        let request = ExplainRequest(
            source: source, direction: direction,
            packet: PacketSpec(protocol: proto, src: src, dst: dst, laterFragment: laterFragment ? true : nil,
                               nonIP: nonIP ? true : nil),
            connection: established ? .established : nil)
        let body: Data
        do { body = try JSONEncoder().encode(request) } catch {
            CLIOutput.error("Error: cannot encode the request: \(error)")
            throw CLIExit.invalidInput
        }
        let r = try agent.request("POST", APIPath.explain, body: [UInt8](body))
        let agree = r["agree"]?.boolValue
        switch output {
        case .json:
            CLIOutput.out(r.serialized(pretty: true))
        case .text:
            var lines = ["\(direction) \(r["packet"]?.displayText ?? "?") on source \(source) (generation \(r["generation"]?.displayText ?? "?"))"]
            lines.append("oracle: " + (r["oracle"]?["explanation"]?.displayText ?? "?"))
            if let tried = r["oracle"]?["tried"]?.arrayValue, !tried.isEmpty {
                lines.append("        sessions tried: " + tried.map(\.displayText).joined(separator: ", "))
            }
            if let kernel = r["kernel"], kernel != .null {
                lines.append("kernel: " + (kernel["explanation"]?.displayText ?? "?"))
            } else {
                lines.append("kernel: no decision (" + (r["kernelNote"]?.displayText ?? "no kernel datapath") + ")")
            }
            if let agree { lines.append(agree ? "agree:  yes" : "agree:  NO: the loaded program decides differently") }
            CLIOutput.out(lines.joined(separator: "\n"))
        }
        if agree == false { throw CLIExit.invalidInput }
    }
}
