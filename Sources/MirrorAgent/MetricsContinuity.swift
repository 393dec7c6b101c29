import Foundation

/// Keeps every rendered counter series monotonic (issue 5: counters never go backwards
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
/// The state is small and changes only on those events; the agent persists it in its
/// state directory so that a restart keeps the carried amounts.
///
/// Limits (documented, not hidden): hits counted between the last scrape and an apply
/// that moves a rule position are attributed to the position's new rule; counts between
/// the last scrape and an unexpected reset are lost (undercount, never a decrease).
public struct MetricsContinuity: Codable, Hashable, Sendable {
    struct KeyState: Codable, Hashable, Sendable {
        /// The series' labels as `labelID` (at 400,000 series the label strings
        /// made the persisted file 138 MB; with ids it is 50 MB).
        var labels: UInt64
        var owner: String
        var base: UInt64
        var lastRaw: UInt64
        /// false: the key is not in the policy in force (its labels were carried).
        var live: Bool

        init(labels: UInt64, owner: String, base: UInt64, lastRaw: UInt64, live: Bool) {
            self.labels = labels; self.owner = owner; self.base = base; self.lastRaw = lastRaw; self.live = live
        }

        // In the file: [labels (hex), owner, base, lastRaw, live]. Files written
        // before the labels were hashed hold objects with the label string.
        private enum Legacy: String, CodingKey { case labels, owner, base, lastRaw, live }

        init(from decoder: Decoder) throws {
            if var a = try? decoder.unkeyedContainer() {
                guard let id = UInt64(try a.decode(String.self), radix: 16) else {
                    throw DecodingError.dataCorruptedError(in: a, debugDescription: "labels id is not hex")
                }
                labels = id
                owner = try a.decode(String.self); base = try a.decode(UInt64.self)
                lastRaw = try a.decode(UInt64.self); live = try a.decode(Bool.self)
            } else {
                let o = try decoder.container(keyedBy: Legacy.self)
                labels = MetricsContinuity.labelID(try o.decode(String.self, forKey: .labels))
                owner = try o.decode(String.self, forKey: .owner); base = try o.decode(UInt64.self, forKey: .base)
                lastRaw = try o.decode(UInt64.self, forKey: .lastRaw); live = try o.decode(Bool.self, forKey: .live)
            }
        }

        func encode(to encoder: Encoder) throws {
            var a = encoder.unkeyedContainer()
            try a.encode(String(labels, radix: 16)); try a.encode(owner); try a.encode(base)
            try a.encode(lastRaw); try a.encode(live)
        }
    }

    /// A label set's identity: FNV-1a over its rendered form. Stable across runs
    /// (Swift's Hasher is seeded per process), so the persisted state keeps its
    /// meaning after a restart; at 64 bits a collision among a host's series is
    /// not a practical concern.
    static func labelID(_ labels: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in labels.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    public struct Sample: Hashable, Sendable {
        /// The map counter: map, slot key and field, e.g. "rule/3/inbound/1/hits".
        public var key: String
        /// Whose slot it is (session or source id): a new owner means the slot was cleared.
        public var owner: String
        /// The series: metric name and rendered labels.
        public var labels: String
        public var raw: UInt64
        public init(key: String, owner: String, labels: String, raw: UInt64) {
            self.key = key; self.owner = owner; self.labels = labels; self.raw = raw
        }
    }

    var keys: [String: KeyState] = [:]
    /// By label set (`labelID`).
    var carried: [UInt64: UInt64] = [:]

    public init() {}

    // The file: {"version": 2, "keys": {...}, "carried": {"<labels id, hex>": n}}.
    // Version 1 (no "version") keyed `carried` by the label strings.
    private enum CodingKeys: String, CodingKey { case version, keys, carried }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let version = try c.decodeIfPresent(Int.self, forKey: .version) ?? 1
        keys = try c.decode([String: KeyState].self, forKey: .keys)
        for (label, n) in try c.decode([String: UInt64].self, forKey: .carried) {
            guard let id = version >= 2 ? UInt64(label, radix: 16) : Self.labelID(label) else {
                throw DecodingError.dataCorruptedError(forKey: .carried, in: c, debugDescription: "labels id '\(label)' is not hex")
            }
            carried[id, default: 0] &+= n
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(2, forKey: .version)
        try c.encode(keys, forKey: .keys)
        try c.encode(Dictionary(uniqueKeysWithValues: carried.map { (String($0.key, radix: 16), $0.value) }), forKey: .carried)
    }

    /// The value to show for each sample, in order. `changed` is true when the state
    /// moved in a way worth persisting (a carry or a new association).
    public mutating func adjust(_ samples: [Sample]) -> (values: [UInt64], changed: Bool) {
        var changed = false
        // Pass 1: retire label sets that left their key, before any key takes them on,
        // so that a label set moving between keys in one read keeps its value.
        let ids = samples.map { Self.labelID($0.labels) }
        var present: [String: Int] = [:]
        present.reserveCapacity(samples.count)
        for (i, s) in samples.enumerated() { present[s.key] = i }
        for (key, st) in keys where st.live {
            let moved = present[key].map { ids[$0] != st.labels } ?? true
            if moved {
                carried[st.labels, default: 0] &+= st.lastRaw &- st.base
                keys[key]?.live = false
                changed = true
            }
        }
        // Pass 2: values.
        var values: [UInt64] = []
        values.reserveCapacity(samples.count)
        for (s, id) in zip(samples, ids) {
            var st: KeyState
            if var old = keys[s.key] {
                if old.live {
                    if s.raw < old.lastRaw {
                        carried[id, default: 0] &+= old.lastRaw &- old.base
                        old.base = 0
                        changed = true
                    }
                    old.lastRaw = s.raw
                    st = old
                } else {
                    let base = old.owner == s.owner && s.raw >= old.lastRaw ? old.lastRaw : 0
                    st = KeyState(labels: id, owner: s.owner, base: base, lastRaw: s.raw, live: true)
                    changed = true
                }
            } else {
                st = KeyState(labels: id, owner: s.owner, base: 0, lastRaw: s.raw, live: true)
                changed = true
            }
            keys[s.key] = st
            values.append((carried[id] ?? 0) &+ (s.raw &- st.base))
        }
        return (values, changed)
    }

    // MARK: persistence

    public static func load(from path: String) -> MetricsContinuity? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(MetricsContinuity.self, from: data)
    }

    public func save(to path: String) throws {
        try StateStore.writeAtomically(try JSONEncoder().encode(self), to: path)
    }
}
