import Foundation

/// Keeps every rendered counter series monotonic (counters never go backwards
/// across a policy change or an agent restart).
///
/// The BPF counters live in per-CPU arrays keyed by stable slots (pinned, so they
/// survive restarts). Their value under one label set can still move backwards:
/// - a slot freed by an apply is cleared before another id reuses it;
/// - rule counters are keyed by position (session slot, direction, rule index): when a
///   filter's rules change, a position may now hold another rule (other labels);
/// - the maps were recreated (`mirror-agent cleanup`, a fresh bpffs).
///
/// Each map counter (`key`) remembers the labels it was last shown under, its raw value
/// then and a `base`; each label set has a `carried` amount. A series renders as
/// `carried + raw - base`:
/// - same labels, raw went down: a reset; the old value is carried, base 0;
/// - labels changed or the key vanished: the old labels' value is carried (so the
///   series resumes where it stopped if those labels come back, on any key); the new
///   labels start at `base` = the last raw value when the owner (session or source id)
///   is the same (the position was not cleared, its old hits are not the new rule's),
///   else at 0 (a new owner's slot was cleared by the apply, so all of raw is its own).
/// A counter whose raw value is 0 needs no state: with nothing counted there is nothing
/// to carry or to subtract, whatever its labels were. Only counters that have counted
/// something are remembered, so the state grows with the traffic, not with the policy
/// (20,000 sessions at the quotas have 400,000 rule counters, most of them idle).
/// Keys, owners and label sets are remembered as 64-bit FNV-1a ids (`ID`): a key is
/// the id of its map, slot and the family's declared field ("session/3/packets"), a
/// label set the id of the family's declared continuity identity and its label values
/// (`SeriesID`, `MetricFamily.Continuity`), never of the exposition's text.
/// The agent persists the state in its state directory so that a restart keeps the
/// carried amounts: at once after a carry, and at most every few minutes when
/// counters only started counting (`AgentMetrics.newCountersSaveInterval`).
///
/// Limits (documented, not hidden): hits counted between the last scrape and an apply
/// that moves a rule position are attributed to the position's new rule; counts between
/// the last scrape and an unexpected reset are lost (undercount, never a decrease).
/// Raw values are persisted only with the events above, so an agent restarting over
/// recreated maps (`cleanup`, a fresh bpffs) resumes from the persisted values, which
/// can be older than the last scrape: Prometheus then sees a counter reset.
public struct MetricsContinuity: Hashable, Sendable {
    struct KeyState: Hashable, Sendable {
        /// The series (metric name and labels) as an id (`ID`).
        var labels: UInt64
        /// The slot's owner (session or source id) as an id.
        var owner: UInt64
        var base: UInt64
        var lastRaw: UInt64
        /// false: the key is not in the policy in force (its labels were carried).
        var live: Bool
    }

    /// FNV-1a, 64 bits, over the UTF-8 of a text, fed in pieces so that no string is
    /// built for it. Stable across runs (Swift's Hasher is seeded per process), so the
    /// persisted state keeps its meaning after a restart; at 64 bits a collision among
    /// a host's series is not a practical concern.
    public struct ID: Hashable, Sendable {
        public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
        public init() {}
        public init(_ text: String) { add(text) }

        @inline(__always) mutating func byte(_ b: UInt8) { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        public mutating func add(_ text: String) { for b in text.utf8 { byte(b) } }
        /// Decimal, as `String(n)` renders it (a small string: no allocation).
        public mutating func add<T: BinaryInteger>(_ n: T) { add(String(n)) }
        /// A label value escaped as the exposition escapes it (`MetricsRenderer.escapeLabel`):
        /// the ids were once hashes of the rendered text, and the persisted ones still are.
        mutating func addEscaped(_ text: String) {
            for b in text.utf8 {
                switch b {
                case UInt8(ascii: "\\"): byte(b); byte(b)
                case UInt8(ascii: "\""): byte(UInt8(ascii: "\\")); byte(b)
                case UInt8(ascii: "\n"): byte(UInt8(ascii: "\\")); byte(UInt8(ascii: "n"))
                default: byte(b)
                }
            }
        }
    }

    /// The id of one series of a datapath family: its declared continuity identity and
    /// the values of its identity labels (`MetricFamily.Continuity`), fed one by one in
    /// their declared order. Not the rendered text: renaming the family, or a label as
    /// the exposition shows it, keeps the id. The bytes hashed are those the rendered
    /// text had when the identities were the names (`identity{label="value",...}`), so
    /// the files of earlier versions keep their meaning.
    public struct SeriesID {
        private var id: ID
        private let labels: [String]
        private var next = 0
        public init(_ family: MetricFamily) {
            guard let c = family.continuity else { preconditionFailure("\(family.name) is not a datapath counter") }
            id = c.identityID; labels = c.labels
        }
        /// The value of the next identity label.
        public mutating func add(_ value: String) {
            precondition(next < labels.count, "more label values than the family's identity labels")
            id.add(next == 0 ? "{" : ","); id.add(labels[next]); id.add("=\""); id.addEscaped(value); id.add("\"")
            next += 1
        }
        public var value: UInt64 {
            assert(next == labels.count, "fewer label values than the family's identity labels")
            guard next > 0 else { return id.value }
            var closed = id; closed.add("}")
            return closed.value
        }
    }

    public struct Sample: Hashable, Sendable {
        /// The map counter: the id of its map, slot key and field, e.g. "rule/3/inbound/1"
        /// or "session/3/packets".
        public var key: UInt64
        /// Whose slot it is (session or source id): a new owner means the slot was cleared.
        public var owner: UInt64
        /// The series (`SeriesID`).
        public var labels: UInt64
        public var raw: UInt64
        public init(key: UInt64, owner: UInt64, labels: UInt64, raw: UInt64) {
            self.key = key; self.owner = owner; self.labels = labels; self.raw = raw
        }
        /// From the texts (tests, and the files of earlier versions).
        public init(key: String, owner: String, labels: String, raw: UInt64) {
            self.init(key: ID(key).value, owner: ID(owner).value, labels: ID(labels).value, raw: raw)
        }
    }

    /// Only counters that have counted something (see above).
    var keys = KeyTable()
    /// By label set.
    var carried: [UInt64: UInt64] = [:]

    public init() {}

    /// Counters remembered (for tests and the log).
    public var rememberedKeys: Int { keys.count }

    /// Key states in arrays sorted by key. At 400,000 remembered counters a Dictionary
    /// would take 2^20 buckets of 48 bytes (50 MB, its load factor stops at 3/4);
    /// these arrays take 48 bytes a counter (19 MB). Lookups are binary searches; new
    /// keys and forgotten ones (`lastRaw` 0: nothing to remember) are merged in by
    /// `settle`, once per read.
    struct KeyTable: Hashable, Sendable {
        private(set) var keys: [UInt64] = []
        var states: [KeyState] = []
        private var added: [(key: UInt64, state: KeyState)] = []
        private var forgotten = false

        var count: Int { keys.count }
        var isEmpty: Bool { keys.isEmpty }

        func index(of key: UInt64) -> Int? {
            var lo = 0, hi = keys.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if keys[mid] < key { lo = mid + 1 } else { hi = mid }
            }
            return lo < keys.count && keys[lo] == key ? lo : nil
        }

        subscript(key: UInt64) -> KeyState? { index(of: key).map { states[$0] } }

        /// A key not in the table yet (in the table after `settle`).
        mutating func add(_ key: UInt64, _ state: KeyState) { added.append((key, state)) }

        /// Drops the state at `i` (at `settle`).
        mutating func forget(at i: Int) { states[i].lastRaw = 0; states[i].base = 0; forgotten = true }

        mutating func settle() {
            guard forgotten || !added.isEmpty else { return }
            added.sort { $0.key < $1.key }
            var k: [UInt64] = [], st: [KeyState] = []
            k.reserveCapacity(keys.count + added.count); st.reserveCapacity(keys.count + added.count)
            var a = 0
            for i in keys.indices where states[i].lastRaw > 0 {
                while a < added.count && added[a].key < keys[i] { k.append(added[a].key); st.append(added[a].state); a += 1 }
                k.append(keys[i]); st.append(states[i])
            }
            for e in added[a...] { k.append(e.key); st.append(e.state) }
            keys = k; states = st; added = []; forgotten = false
        }

        static func == (a: KeyTable, b: KeyTable) -> Bool {
            a.keys == b.keys && a.states == b.states && a.added.elementsEqual(b.added, by: { $0.key == $1.key && $0.state == $1.state })
        }
        func hash(into h: inout Hasher) { h.combine(keys); h.combine(states) }
    }

    /// How much a read's change of state matters to a restart.
    public enum Change: Int, Comparable, Sendable {
        case none
        /// Only counters seen counting for the first time. Losing that to a restart
        /// loses nothing: a counter without state starts from base 0, as it did.
        case newCounters
        /// A carry or a re-association: a restart without it would show a series
        /// lower than it was (a carried amount lost) or count a position's old hits
        /// twice (a base lost).
        case carried
        public static func < (a: Change, b: Change) -> Bool { a.rawValue < b.rawValue }
    }

    /// The value to show for each sample, in order, and how the state changed.
    public mutating func adjust(_ samples: [Sample]) -> (values: [UInt64], change: Change) {
        var change = Change.none
        // Where each sample's key is in the table (-1: not there), looked up once.
        var entry = [Int32](repeating: -1, count: keys.isEmpty ? 0 : samples.count)
        // Pass 1: retire label sets that left their key, before any key takes them on,
        // so that a label set moving between keys in one read keeps its value.
        if !keys.isEmpty {
            var sampleOf = [Int32](repeating: -1, count: keys.count)
            for (j, s) in samples.enumerated() {
                if let i = keys.index(of: s.key) { entry[j] = Int32(i); sampleOf[i] = Int32(j) }
            }
            for i in keys.states.indices where keys.states[i].live {
                let st = keys.states[i]
                if sampleOf[i] < 0 || samples[Int(sampleOf[i])].labels != st.labels {
                    carried[st.labels, default: 0] &+= st.lastRaw &- st.base
                    keys.states[i].live = false
                    change = .carried
                }
            }
        }
        // Pass 2: values.
        var values: [UInt64] = []
        values.reserveCapacity(samples.count)
        for (j, s) in samples.enumerated() {
            let i = entry.isEmpty || entry[j] < 0 ? nil : Int(entry[j])
            var st: KeyState?
            if let i {
                var old = keys.states[i]
                if old.live {
                    if s.raw < old.lastRaw {
                        carried[s.labels, default: 0] &+= old.lastRaw &- old.base
                        old.base = 0
                        change = .carried
                    }
                    old.lastRaw = s.raw
                    st = old
                } else {
                    let base = old.owner == s.owner && s.raw >= old.lastRaw ? old.lastRaw : 0
                    st = KeyState(labels: s.labels, owner: s.owner, base: base, lastRaw: s.raw, live: true)
                    change = .carried
                }
            } else if s.raw > 0 {
                st = KeyState(labels: s.labels, owner: s.owner, base: 0, lastRaw: s.raw, live: true)
                change = Swift.max(change, .newCounters)
            }
            // base <= lastRaw always, so lastRaw 0 means nothing to remember.
            if let st, st.lastRaw > 0 {
                if let i { keys.states[i] = st } else { keys.add(s.key, st) }
                values.append((carried[s.labels] ?? 0) &+ (s.raw &- st.base))
            } else {
                // (Only after a reset or a re-association: already `.carried`.)
                if let i { keys.forget(at: i); change = Swift.max(change, .newCounters) }
                values.append(carried[s.labels] ?? 0)
            }
        }
        keys.settle()
        return (values, change)
    }
}

// MARK: persistence

extension MetricsContinuity: Decodable {
    // The file, version 3: {"version": 3, "keys": [[key, labels, owner (ids in hex),
    // base, lastRaw, live], ...], "carried": {"<labels id, hex>": n}}.
    // Version 2 keyed `keys` by the key's text and held the owner's text; version 1
    // (no "version") also held the label texts. Both are still read.
    private enum CodingKeys: String, CodingKey { case version, keys, carried }

    private static func hex(_ s: String, _ what: String, _ c: KeyedDecodingContainer<CodingKeys>) throws -> UInt64 {
        guard let v = UInt64(s, radix: 16) else {
            throw DecodingError.dataCorruptedError(forKey: .keys, in: c, debugDescription: "\(what) id '\(s)' is not hex")
        }
        return v
    }

    /// A version 3 entry.
    private struct Entry: Decodable {
        var key: String, labels: String, owner: String, base: UInt64, lastRaw: UInt64, live: Bool
        init(from decoder: Decoder) throws {
            var a = try decoder.unkeyedContainer()
            key = try a.decode(String.self); labels = try a.decode(String.self); owner = try a.decode(String.self)
            base = try a.decode(UInt64.self); lastRaw = try a.decode(UInt64.self); live = try a.decode(Bool.self)
        }
    }

    /// A version 1 or 2 entry: [labels id (hex), owner, base, lastRaw, live] (version 2)
    /// or an object holding the label text (version 1).
    private struct LegacyEntry: Decodable {
        var labels: UInt64, owner: String, base: UInt64, lastRaw: UInt64, live: Bool
        private enum Keys: String, CodingKey { case labels, owner, base, lastRaw, live }
        init(from decoder: Decoder) throws {
            if var a = try? decoder.unkeyedContainer() {
                guard let id = UInt64(try a.decode(String.self), radix: 16) else {
                    throw DecodingError.dataCorruptedError(in: a, debugDescription: "labels id is not hex")
                }
                labels = id
                owner = try a.decode(String.self); base = try a.decode(UInt64.self)
                lastRaw = try a.decode(UInt64.self); live = try a.decode(Bool.self)
            } else {
                let o = try decoder.container(keyedBy: Keys.self)
                labels = ID(try o.decode(String.self, forKey: .labels)).value
                owner = try o.decode(String.self, forKey: .owner); base = try o.decode(UInt64.self, forKey: .base)
                lastRaw = try o.decode(UInt64.self, forKey: .lastRaw); live = try o.decode(Bool.self, forKey: .live)
            }
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let version = try c.decodeIfPresent(Int.self, forKey: .version) ?? 1
        if version >= 3 {
            for e in try c.decode([Entry].self, forKey: .keys) where e.lastRaw > 0 {
                keys.add(
                    try Self.hex(e.key, "key", c),
                    KeyState(
                        labels: try Self.hex(e.labels, "labels", c), owner: try Self.hex(e.owner, "owner", c),
                        base: e.base, lastRaw: e.lastRaw, live: e.live))
            }
        } else {
            for (key, e) in try c.decode([String: LegacyEntry].self, forKey: .keys) where e.lastRaw > 0 {
                keys.add(
                    ID(key).value,
                    KeyState(
                        labels: e.labels, owner: ID(e.owner).value, base: e.base,
                        lastRaw: e.lastRaw, live: e.live))
            }
        }
        keys.settle()
        for (label, n) in try c.decode([String: UInt64].self, forKey: .carried) {
            let id = version >= 2 ? try Self.hex(label, "labels", c) : ID(label).value
            carried[id, default: 0] &+= n
        }
    }

    /// The file's bytes, written here rather than by JSONEncoder: at 400,000 remembered
    /// counters its tree of boxed values took seconds and left tens of MB of the heap
    /// fragmented. Only hex ids, integers and booleans: nothing to escape.
    public func fileData() -> Data {
        var o = [UInt8]()
        o.reserveCapacity(64 + keys.count * 72 + carried.count * 40)
        func put(_ s: String) { o.append(contentsOf: s.utf8) }
        put(#"{"version":3,"keys":["#)
        for (i, (key, st)) in zip(keys.keys, keys.states).enumerated() {
            put(i == 0 ? "[\"" : ",[\""); put(String(key, radix: 16)); put("\",\""); put(String(st.labels, radix: 16))
            put("\",\""); put(String(st.owner, radix: 16)); put("\","); put(String(st.base)); put(",")
            put(String(st.lastRaw)); put(st.live ? ",true]" : ",false]")
        }
        put(#"],"carried":{"#)
        for (i, (id, n)) in carried.sorted(by: { $0.key < $1.key }).enumerated() {
            put(i == 0 ? "\"" : ",\""); put(String(id, radix: 16)); put("\":"); put(String(n))
        }
        put("}}")
        return Data(o)
    }

    public static func load(from path: String) -> MetricsContinuity? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(MetricsContinuity.self, from: data)
    }

    public func save(to path: String) throws {
        try StateStore.writeAtomically(fileData(), to: path)
    }
}
