import Foundation
import MirrorAPI
import MirrorCore

/// Maps control-API requests (see MirrorAPI/Messages.swift for the route table) onto
/// the agent. Independent of HTTP plumbing so that it can be tested directly.
public struct Router: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var body: Data
        /// A body too large to build at once (GET /v1/stats at the quotas): its pieces,
        /// which the server sends in turn instead of `body` (chunked on HTTP/1.1), then closes.
        public var pieces: Pieces?
        /// Answering made and freed much more than the answer holds (a counter read at
        /// the quotas is tens of MB, even for a filtered answer): the server trims the heap after it.
        public var trimAfter = false

        public init(status: Int, body: Data, pieces: Pieces? = nil, trimAfter: Bool = false) {
            self.status = status; self.body = body; self.pieces = pieces; self.trimAfter = trimAfter
        }
    }

    /// A body's pieces, each made when it is asked for (on one task at a time).
    public final class Pieces: @unchecked Sendable {
        private var next: (() -> String?)?
        init(_ next: @escaping () -> String?) { self.next = next }
        /// nil at the end, and from then on: what made the pieces is released then
        /// (the counters and their view, until the server trims the heap).
        public func nextPiece() -> String? {
            guard let piece = next?() else { next = nil; return nil }
            return piece
        }
        /// The rest is not wanted (the client went away): release what makes it.
        public func drop() { next = nil }
    }

    let agent: Agent
    /// Answers larger than this are sent in pieces of about this size.
    let pieceBytes: Int
    /// In fleet mode (SPEC §9), where the configuration lives: every local change is
    /// refused, naming it. nil: the agent is configured through this socket.
    let fleet: String?

    public init(agent: Agent, pieceBytes: Int = 256 * 1024, fleet: String? = nil) {
        self.agent = agent; self.pieceBytes = max(1, pieceBytes); self.fleet = fleet
    }

    /// SPEC §9: in fleet mode the host's document comes from etcd only.
    func refuseInFleetMode(_ what: String) throws {
        guard let fleet else { return }
        throw APIError(
            status: 409,
            "\(what) refused: this agent runs in fleet mode and its configuration lives in \(fleet); "
                + "change the region document there (agentctl --etcd ENDPOINTS apply -f region.json)")
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    public func handle(method: String, uri: String, body: Data) async -> Response {
        do {
            return try await route(method: method, uri: uri, body: body)
        } catch let e as APIError {
            return Self.error(e)
        } catch {
            return Self.error(APIError(status: 500, "internal error: \(error)"))
        }
    }

    /// Every error body the control server sends, from the router or from the HTTP layer.
    static func error(_ e: APIError) -> Response {
        // Strings and arrays of them always encode; the body is never empty in practice.
        Response(status: e.status, body: (try? encoder.encode(e)) ?? Data())
    }

    static func ok<T: Encodable>(_ value: T, status: Int = 200) throws -> Response {
        do { return Response(status: status, body: try encoder.encode(value)) } catch {
            throw APIError(status: 500, "cannot encode the response: \(error)")
        }
    }

    static func ok(_ value: JSONValue, status: Int = 200) -> Response {
        Response(status: status, body: Data(value.serialized(pretty: false).utf8))
    }

    func decode<T: Decodable>(_ type: T.Type, _ body: Data) throws -> T {
        guard !body.isEmpty else { throw APIError.badRequest("the request needs a JSON body") }
        do { return try JSONDecoder().decode(T.self, from: body) } catch {
            throw APIError.badRequest(
                "the request body is not valid: \(Self.describe(error))",
                Self.path(of: error).map { [FieldError(path: $0, message: Self.describe(error))] } ?? [])
        }
    }

    /// Request bodies that carry documents or objects go through the core's strict,
    /// depth-bounded parser (duplicate keys refused, numbers kept exact).
    func json(_ body: Data) throws -> JSONValue {
        guard !body.isEmpty else { throw APIError.badRequest("the request needs a JSON body") }
        switch JSONParser.parse([UInt8](body)) {
        case .success(let v): return v
        case .failure(let e): throw APIError.badRequest("the request body is not valid JSON: \(e)")
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c):
            if let u = c.underlyingError { return "not valid JSON (\(u.localizedDescription))" }
            return c.debugDescription
        case DecodingError.keyNotFound(let k, _): return "missing field \(k.stringValue)"
        case DecodingError.typeMismatch(let t, _): return "wrong type (expected \(t))"
        case DecodingError.valueNotFound(let t, _): return "missing value (expected \(t))"
        default: return "\(error)"
        }
    }

    static func path(of error: Error) -> String? {
        let ctx: DecodingError.Context?
        switch error {
        case DecodingError.keyNotFound(let k, let c):
            return (c.codingPath + [k]).map(\.stringValue).joined(separator: ".")
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c): ctx = c
        default: ctx = nil
        }
        guard let ctx, !ctx.codingPath.isEmpty else { return nil }
        return ctx.codingPath.map(\.stringValue).joined(separator: ".")
    }

    func route(method: String, uri: String, body: Data) async throws -> Response {
        let pathPart = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let raw = pathPart.split(separator: "/", omittingEmptySubsequences: true)
        var segments: [String] = []
        for s in raw {
            guard let d = APIPath.percentDecode(s) else { throw APIError.badRequest("bad percent-encoding in \(uri)") }
            segments.append(d)
        }
        guard segments.first == "v1" else { throw APIError.notFound("no such route: \(method) \(uri) (the API lives under /v1)") }
        let rest = Array(segments.dropFirst())
        func allow(_ methods: String...) throws {
            guard methods.contains(method) else {
                throw APIError(status: 405, "\(method) is not allowed on \(pathPart) (use \(methods.joined(separator: " or ")))")
            }
        }

        switch rest.count {
        case 1 where rest[0] == "apply":
            try allow("POST")
            try refuseInFleetMode("apply")
            if try Self.dryRun(uri) { return try Self.ok(try await agent.plan(try json(body))) }
            return try Self.ok(try await agent.apply(try json(body)))
        case 1 where rest[0] == "status":
            try allow("GET")
            return try Self.ok(await agent.status())
        case 1 where rest[0] == "stats":
            try allow("GET")
            let filter = try await statsFilter(uri)
            var (stats, rules) = await agent.statsAndRules()
            if let filter { (stats, rules) = filter.apply(stats, rules) }
            var pieces = StatsJSON.pieces(stats, rules: rules, pieceBytes: pieceBytes)
            let first = pieces.next() ?? ""
            guard let second = pieces.next() else { return Response(status: 200, body: Data(first.utf8), trimAfter: true) }
            var queued: [String] = [second, first]
            return Response(status: 200, body: Data(), pieces: Pieces { queued.popLast() ?? pieces.next() })
        case 1 where rest[0] == "document":
            try allow("GET")
            return Self.ok(await agent.appliedDocument())
        case 1 where rest[0] == "explain":
            try allow("POST")
            return try Self.ok(try await agent.explain(try decode(ExplainRequest.self, body)))
        case 1:
            let kind = try Self.kind(rest[0])
            try allow("GET", "POST")
            if method == "GET" { return Self.ok(try await agent.list(kind).json) }
            try refuseInFleetMode("create")
            return Self.ok(try await agent.create(kind, try json(body)).json, status: 201)
        case 2:
            let kind = try Self.kind(rest[0])
            try allow("GET", "PUT", "DELETE")
            switch method {
            case "GET": return Self.ok(try await agent.get(kind, rest[1]).json)
            case "PUT":
                try refuseInFleetMode("update")
                return Self.ok(try await agent.update(kind, rest[1], try json(body)).json)
            default:
                try refuseInFleetMode("delete")
                return Self.ok(try await agent.delete(kind, rest[1]).json)
            }
        case 3 where rest[0] == "sessions" && (rest[2] == "enable" || rest[2] == "disable"):
            try allow("POST")
            try refuseInFleetMode(rest[2])
            return Self.ok(try await agent.setSessionEnabled(rest[1], rest[2] == "enable").json)
        default:
            throw APIError.notFound("no such route: \(method) \(pathPart)")
        }
    }

    /// `?session=ID&source=ID` (each repeatable) of GET /v1/stats; nil without a query.
    /// Unknown parameters and ids that are in no policy in force are refused by name.
    func statsFilter(_ uri: String) async throws -> StatsFilter? {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty else { return nil }
        var filter = StatsFilter()
        for item in parts[1].split(separator: "&") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, let value = APIPath.percentDecode(kv[1]), !value.isEmpty else {
                throw APIError.badRequest("bad query item '\(item)' (use session=ID or source=ID)")
            }
            switch kv[0] {
            case "session": filter.sessions.insert(value)
            case "source": filter.sources.insert(value)
            default: throw APIError.badRequest("unknown query parameter '\(kv[0])' (use session=ID or source=ID)")
            }
        }
        let known = await agent.ids()
        if let missing = filter.sessions.subtracting(known.sessions).sorted().first {
            throw APIError.notFound("no session '\(missing)' in the policy in force")
        }
        if let missing = filter.sources.subtracting(known.sources).sorted().first {
            throw APIError.notFound("no source '\(missing)' in the policy in force")
        }
        return filter
    }

    /// `?dryRun=true` (or `false`) of POST /v1/apply; anything else is refused by name.
    static func dryRun(_ uri: String) throws -> Bool {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty else { return false }
        var dryRun = false
        for item in parts[1].split(separator: "&") {
            switch item {
            case "dryRun=true": dryRun = true
            case "dryRun=false": dryRun = false
            default: throw APIError.badRequest("bad query item '\(item)' on /v1/apply (use dryRun=true or dryRun=false)")
            }
        }
        return dryRun
    }

    static func kind(_ name: String) throws -> ObjectKind {
        guard let k = ObjectKind(rawValue: name) else {
            throw APIError.notFound("no such kind '\(name)' (one of \(ObjectKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return k
    }
}
