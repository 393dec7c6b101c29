import ArgumentParser
import MirrorAPI
import MirrorCore

/// `agentctl explain -f FILE --source ID --direction inbound|outbound --protocol P
/// --src ADDR[:PORT] --dst ADDR[:PORT] [--fragment later] [-o json]`: which session and
/// rule the described packet would hit under the document, and why (SPEC §4, §5).
struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain which session and rule a described packet would hit, and why.",
        discussion: """
            The ethertype follows from the addresses. IPv6 endpoints with a port are written [ADDR]:PORT.
            Exit status: 0 explained, 1 invalid document, 2 usage error.
            """)

    enum Fragment: String, ExpressibleByArgument, CaseIterable { case first, later }

    @Option(
        name: [.customShort("f"), .long],
        help: "The JSON document. Without it the running agent answers from its live policy (see AgentExplain).")
    var file: String?

    @OptionGroup var agent: AgentOptions

    @Option(help: "The source id the packet is seen on.")
    var source: String

    @Option(help: "inbound (received by the ENI) or outbound (sent by the ENI).")
    var direction: Direction

    @Option(name: .customLong("protocol"), help: "tcp, udp, icmp, icmpv6, all (unknown transport) or a number 0-255.")
    var proto: String?

    @Option(help: "Source endpoint: ADDR, ADDR:PORT or [IPv6]:PORT.")
    var src: String?

    @Option(help: "Destination endpoint: ADDR, ADDR:PORT or [IPv6]:PORT.")
    var dst: String?

    @Option(help: "first (default) or later: an IP fragment after the first has no ports.")
    var fragment: Fragment = .first

    @Flag(name: .customLong("non-ip"), help: "A non-IP frame (ARP and others): it matches no rule.")
    var nonIP = false

    @Flag(help: "The packet belongs to a connection the security group already allowed (stateful reply).")
    var established = false

    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func validate() throws {
        if case .failure(let p) = PacketArguments.packet(
            protocol: proto, src: src, dst: dst,
            laterFragment: fragment == .later, nonIP: nonIP)
        {
            throw ValidationError(p.description)
        }
    }

    func run() throws {
        guard let file else {
            return try AgentExplain.run(
                agent: agent, source: source, direction: direction, protocol: proto, src: src, dst: dst,
                laterFragment: fragment == .later, nonIP: nonIP, established: established, output: output)
        }
        let packet: PacketDescription
        switch PacketArguments.packet(protocol: proto, src: src, dst: dst, laterFragment: fragment == .later, nonIP: nonIP) {
        case .success(let p): packet = p
        case .failure(let p):
            CLIOutput.error("Error: \(p)")
            throw CLIExit.usage
        }
        let bytes = try CLIOutput.read(file)
        let document: Document
        switch DocumentParser.parse(bytes) {
        case .success(let d): document = d
        case .failure(let e):
            switch output {
            case .json: CLIOutput.out(Reports.validationJSON(e.errors).serialized(pretty: true))
            case .text: CLIOutput.error(Reports.validationText(.failure(e), name: file))
            }
            throw CLIExit.invalidInput
        }
        guard document.sources.contains(where: { $0.id == source }) else {
            let ids = document.sources.map(\.id)
            CLIOutput.error(
                "Error: --source: \"\(source)\" is not a source of \(file)"
                    + (ids.isEmpty ? " (it defines none)" : "; its sources: " + ids.joined(separator: ", ")))
            throw CLIExit.usage
        }
        let decision = Oracle.decide(
            document: document, source: source, direction: direction, packet: packet,
            connection: established ? .established : .new)
        switch output {
        // The decision's one JSON form (its Codable, as the agent answers with it), in its own member order.
        case .json: try CLIOutput.json(decision, sortedKeys: false)
        case .text: CLIOutput.out(Reports.decisionText(decision, packet: packet, source: source, direction: direction))
        }
    }
}

extension Direction: ExpressibleByArgument {}
