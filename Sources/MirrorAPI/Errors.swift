/// One problem with one field, located by its JSON path (`sessions[2].sources[10]`).
public struct FieldError: Hashable, Sendable, Codable, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(path: String, message: String) { self.path = path; self.message = message }
    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// The body of every non-2xx response:
/// `{"error": {"message": "...", "errors": [{"path": "...", "message": "..."}]}}`.
public struct ErrorResponse: Hashable, Sendable, Codable {
    public struct Body: Hashable, Sendable, Codable {
        public var message: String
        public var errors: [FieldError]
        public init(message: String, errors: [FieldError] = []) { self.message = message; self.errors = errors }
    }
    public var error: Body
    public init(message: String, errors: [FieldError] = []) { self.error = Body(message: message, errors: errors) }
}

/// Several field errors as one thrown or returned error.
public struct FieldErrors: Error, Hashable, Sendable, CustomStringConvertible {
    public var errors: [FieldError]
    public init(_ errors: [FieldError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
