import ArgumentParser
import MirrorCore

/// `agentctl validate -f FILE [-o json]`: parse and validate a document offline
/// (SPEC §2, §3, §5), listing every error with its JSON path.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a configuration document; list every error with its JSON path.",
        discussion: "Exit status: 0 valid, 1 invalid document, 2 usage error.")

    @Option(name: [.customShort("f"), .long], help: "The JSON document to validate (- for standard input).")
    var file: String

    @Option(name: [.customShort("o"), .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let bytes = try CLIOutput.read(file)
        let result = DocumentParser.parse(bytes)
        let errors: [MirrorCore.ValidationError]
        switch result {
        case .success: errors = []
        case .failure(let e):
            // Not JSON at all (the one error at "document"): say so when it reads like YAML.
            errors = e.errors.map { error in
                guard error.path == "document", error.message.hasPrefix("invalid JSON"), let hint = InputHints.yaml(bytes) else {
                    return error
                }
                return MirrorCore.ValidationError(path: error.path, message: error.message + "; " + hint)
            }
        }
        switch output {
        case .json: CLIOutput.out(Reports.validationJSON(errors).serialized(pretty: true))
        case .text:
            let text = Reports.validationText(errors.isEmpty ? result : .failure(ValidationErrors(errors)), name: file)
            if errors.isEmpty { CLIOutput.out(text) } else { CLIOutput.error(text) }
        }
        if !errors.isEmpty { throw CLIExit.invalidInput }
    }
}
