import Foundation
import MirrorAPI
import MirrorCore
import MirrorDatapath

/// What survives a restart: the document as the user applied it (sessions without
/// `vni` stay without it) and the VNIs assigned to them (SPEC §2: stable across
/// restarts).
public struct PersistedState: Hashable, Sendable, Codable {
    public static let currentFormat = 1
    public var formatVersion: Int
    public var generation: UInt64
    public var document: AnyJSON
    public var vnis: [String: Int]
    public init(generation: UInt64, document: AnyJSON, vnis: [String: Int]) {
        self.formatVersion = PersistedState.currentFormat
        self.generation = generation; self.document = document; self.vnis = vnis
    }
}

public struct StateError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The state file in the state directory, written atomically: temp file, fsync,
/// rename, fsync of the directory (a crash mid-write leaves the previous
/// state loadable).
public struct StateStore: Sendable {
    public let directory: String
    public var path: String { directory + "/state.json" }

    public init(directory: String) { self.directory = directory }

    /// Creates the directory (0700) when missing.
    public func prepare() throws {
        var st = stat()
        if stat(directory, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw StateError("state directory \(directory) exists and is not a directory") }
            return
        }
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw StateError("cannot create state directory \(directory): \(error.localizedDescription)")
        }
    }

    /// The directory's owner lock: held by the running agent, so a second agent (or
    /// a `cleanup`) given the same directory refuses before it reads or moves anything.
    public func lock() throws -> OwnerLock {
        do { return try OwnerLock(directory: directory, what: "state directory") } catch { throw StateError("\(error)") }
    }

    /// nil when there is no state file yet. Throws when it exists but cannot be read
    /// or decoded: the agent must stop rather than start empty.
    public func load() throws -> PersistedState? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw StateError("cannot read state file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw StateError("cannot read state file \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        return try Self.decode([UInt8](data), path: path)
    }

    /// The state file through the core's strict parser, the one that reads every
    /// document the agent takes and that reads its applied document back for each
    /// change. Foundation's decoder is lenient where that one is not: it takes the
    /// first of two members with the same name (the agent would start from the
    /// wrong document, say an empty one, and the next create would then replace
    /// everything with its one object) and skips trailing commas. Anything but the
    /// file as `encode` writes it is corrupt, and the agent does not start on it.
    static func decode(_ bytes: [UInt8], path: String) throws -> PersistedState {
        func corrupt(_ why: String) -> StateError {
            StateError("state file \(path) is corrupt (\(why)); fix or move it away, or start with --reset-state to start empty")
        }
        let root: JSONValue
        switch JSONParser.parse(bytes) {
        case .failure(let e): throw corrupt("\(e)")
        case .success(let v): root = v
        }
        guard root.isObject else { throw corrupt("not a JSON object") }
        guard case .int(let format)? = root["formatVersion"] else { throw corrupt("no integer formatVersion") }
        guard format == Int64(PersistedState.currentFormat) else {
            throw StateError("state file \(path) has format \(format), this agent reads \(PersistedState.currentFormat)")
        }
        guard case .int(let generation)? = root["generation"] else { throw corrupt("no integer generation") }
        guard let document = root["document"], document.isObject else { throw corrupt("no document object") }
        guard let vniMembers = root["vnis"]?.members else { throw corrupt("no vnis object") }
        var vnis: [String: Int] = [:]
        for (id, value) in vniMembers {
            guard let vni = value.intValue else { throw corrupt("vnis.\(id) is not an integer") }
            vnis[id] = vni
        }
        // `encode` writes the generation as Int64's bit pattern.
        return PersistedState(generation: UInt64(bitPattern: generation), document: AnyJSON(document), vnis: vnis)
    }

    /// `documentText`: the document already serialized compactly (the agent keeps it
    /// so), written as is instead of serializing the document again.
    public func save(_ state: PersistedState, documentText: [UInt8]? = nil) throws {
        try Self.writeAtomically(Data(Self.encode(state, documentText: documentText)), to: path)
    }

    /// The state file's JSON (keys sorted, as `load` reads it), written by the
    /// core's serializer: Foundation's JSONEncoder builds a second tree of the whole
    /// document first, which at 20,000 sessions costs about a quarter of a second
    /// and tens of MB of short-lived allocations per apply.
    static func encode(_ state: PersistedState, documentText: [UInt8]? = nil) -> [UInt8] {
        let vnis = state.vnis.sorted { $0.key < $1.key }.map { (key: $0.key, value: JSONValue.int(Int64($0.value))) }
        let rest = JSONValue.object([
            (key: "formatVersion", value: .int(Int64(state.formatVersion))),
            (key: "generation", value: .int(Int64(truncatingIfNeeded: state.generation))),
            (key: "vnis", value: .object(vnis)),
        ]).serialized(pretty: false)
        var out = Array(#"{"document":"#.utf8)
        out += documentText ?? Array(state.document.value.serialized(pretty: false).utf8)
        out += Array(",".utf8)
        out += rest.utf8.dropFirst()  // the other members, after their object's "{"
        out += Array("\n".utf8)
        return out
    }

    /// temp file (0600), write, fsync, rename, fsync of the directory.
    public static func writeAtomically(_ data: Data, to path: String) throws {
        do { try DurableFile.write(data, to: path) } catch { throw StateError("cannot write state file \(path): \(error)") }
    }

    /// `--reset-state`: the old file is kept beside, renamed, never silently dropped.
    /// Returns the name it was moved to, or nil when there was none.
    @discardableResult
    public func reset() throws -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let aside = path + ".reset-\(Int(Date().timeIntervalSince1970))"
        guard rename(path, aside) == 0 else {
            throw StateError("cannot move \(path) aside: \(String(cString: strerror(errno)))")
        }
        return aside
    }
}
