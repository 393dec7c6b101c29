import Foundation

/// One problem with one field, located by its JSON path (`sessions[2].sources[10]`),
/// or, where the document is one the agent made from a change to one object, by
/// the object's id (`sessions[id=s2].sources[1]`).
public struct FieldError: Hashable, Sendable, Codable, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(path: String, message: String) { self.path = path; self.message = message }
    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Every refusal of the control API, whoever makes it: the agent's own checks
/// (404, 409, 422 with every field's path, a datapath that refused), the router
/// (no such route, 405, a body that does not decode) and the HTTP server (a
/// malformed request, 413). The agent throws it and writes it; clients decode it.
///
/// On the wire the HTTP status line carries `status`; the body is
/// `{"error": {"message": "...", "errors": [{"path": "...", "message": "..."}]}}`.
public struct APIError: Error, Hashable, Sendable, Codable, CustomStringConvertible {
    /// The HTTP status. Not in the body: a decoded error gets it from the status
    /// line (`decode(status:body:)`); `init(from:)` alone leaves 0.
    public var status: Int
    public var message: String
    public var errors: [FieldError]

    public init(status: Int, _ message: String, errors: [FieldError] = []) {
        self.status = status; self.message = message; self.errors = errors
    }

    public static func badRequest(_ m: String, _ e: [FieldError] = []) -> APIError { APIError(status: 400, m, errors: e) }
    public static func notFound(_ m: String) -> APIError { APIError(status: 404, m) }

    /// The message, then one indented line per field error.
    public var description: String {
        ([message] + errors.map { "  \($0)" }).joined(separator: "\n")
    }

    private enum Envelope: String, CodingKey { case error }
    private enum Keys: String, CodingKey { case message, errors }

    public init(from decoder: Decoder) throws {
        let body = try decoder.container(keyedBy: Envelope.self).nestedContainer(keyedBy: Keys.self, forKey: .error)
        status = 0
        message = try body.decode(String.self, forKey: .message)
        errors = try body.decode([FieldError].self, forKey: .errors)
    }

    public func encode(to encoder: Encoder) throws {
        var envelope = encoder.container(keyedBy: Envelope.self)
        var body = envelope.nestedContainer(keyedBy: Keys.self, forKey: .error)
        try body.encode(message, forKey: .message)
        try body.encode(errors, forKey: .errors)
    }

    /// The error an answer with a non-2xx `status` carries. A body that is not the
    /// documented shape (not from the agent, or cut short) still gives an error
    /// that says what came.
    public static func decode(status: Int, body: [UInt8]) -> APIError {
        guard var e = try? JSONDecoder().decode(APIError.self, from: Data(body)) else {
            let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return APIError(status: status, "HTTP \(status)" + (text.isEmpty ? "" : ": \(text)"))
        }
        e.status = status
        return e
    }
}

/// Several field errors as one thrown or returned error.
public struct FieldErrors: Error, Hashable, Sendable, CustomStringConvertible {
    public var errors: [FieldError]
    public init(_ errors: [FieldError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
