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
    static func run(
        agent: AgentOptions, source: String, direction: Direction, protocol proto: String?,
        src: String?, dst: String?, laterFragment: Bool, nonIP: Bool, established: Bool,
        output: OutputFormat
    ) throws {
        let request = ExplainRequest(
            source: source, direction: direction,
            packet: PacketSpec(
                protocol: proto, src: src, dst: dst, laterFragment: laterFragment ? true : nil,
                nonIP: nonIP ? true : nil),
            connection: established ? .established : nil)
        let r = try agent.call("POST", APIPath.explain, json: request, as: ExplainResponse.self)
        switch output {
        case .json:
            try CLIOutput.json(r, sortedKeys: true)
        case .text:
            var lines = ["\(direction) \(r.packet) on source \(source) (generation \(r.generation))"]
            lines.append("oracle: " + r.oracle.explanation)
            if !r.oracle.tried.isEmpty {
                lines.append("        sessions tried: " + r.oracle.tried.joined(separator: ", "))
            }
            if let kernel = r.kernel {
                lines.append("kernel: " + kernel.explanation)
            } else {
                lines.append("kernel: no decision (" + (r.kernelNote ?? "no kernel datapath") + ")")
            }
            if let agree = r.agree { lines.append(agree ? "agree:  yes" : "agree:  NO: the loaded program decides differently") }
            CLIOutput.out(lines.joined(separator: "\n"))
        }
        if r.agree == false { throw CLIExit.invalidInput }
    }
}
