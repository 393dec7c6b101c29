import MirrorAPI
import MirrorCore

/// The seam to the core's validation: turn a JSON document into a validated model,
/// or return every error with its JSON path. The agent never validates by itself; a
/// protocol so that tests can inject failures.
public protocol DocumentChecking: Sendable {
    /// Parses and validates the whole document (SPEC §7: all errors, with paths).
    func check(_ json: JSONValue) -> Result<Document, FieldErrors>
    /// Fills every session's `vni`: given ones kept, missing ones assigned unique and
    /// stable (SPEC §2). `previous` and the returned `assigned` are the auto-assigned
    /// VNIs by session id (what the state file keeps).
    func assignVNIs(_ document: Document, previous: [String: Int]) -> (document: Document, assigned: [String: Int])
}

/// MirrorCore's `DocumentParser` and `VNIAssigner`.
public struct CoreDocumentChecker: DocumentChecking {
    /// The filters of the last document checked, reused when the next one has them
    /// unchanged (`DecodeMemo`). The agent checks from its actor, one at a time.
    let memo = DecodeMemo()

    public init() {}

    public func check(_ json: JSONValue) -> Result<Document, FieldErrors> {
        switch DocumentParser.parse(json: json, memo: memo) {
        case .success(let d): return .success(d)
        case .failure(let e): return .failure(FieldErrors(e.errors.map { FieldError(path: $0.path, message: $0.message) }))
        }
    }

    public func assignVNIs(_ document: Document, previous: [String: Int]) -> (document: Document, assigned: [String: Int]) {
        let r = VNIAssigner.assign(document, previous: previous)
        return (r.document, r.assigned)
    }
}
