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
        var labels: String
        var owner: String
        var base: UInt64
        var lastRaw: UInt64
        /// false: the key is not in the policy in force (its labels were carried).
        var live: Bool
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
    var carried: [String: UInt64] = [:]

    public init() {}

    /// The value to show for each sample, in order. `changed` is true when the state
    /// moved in a way worth persisting (a carry or a new association).
    public mutating func adjust(_ samples: [Sample]) -> (values: [UInt64], changed: Bool) {
        var changed = false
        // Pass 1: retire label sets that left their key, before any key takes them on,
        // so that a label set moving between keys in one read keeps its value.
        var present: [String: Int] = [:]
        for (i, s) in samples.enumerated() { present[s.key] = i }
        for (key, st) in keys where st.live {
            let moved = present[key].map { samples[$0].labels != st.labels } ?? true
            if moved {
                carried[st.labels, default: 0] &+= st.lastRaw &- st.base
                keys[key]?.live = false
                changed = true
            }
        }
        // Pass 2: values.
        var values: [UInt64] = []
        values.reserveCapacity(samples.count)
        for s in samples {
            var st: KeyState
            if var old = keys[s.key] {
                if old.live {
                    if s.raw < old.lastRaw {
                        carried[s.labels, default: 0] &+= old.lastRaw &- old.base
                        old.base = 0
                        changed = true
                    }
                    old.lastRaw = s.raw
                    st = old
                } else {
                    let base = old.owner == s.owner && s.raw >= old.lastRaw ? old.lastRaw : 0
                    st = KeyState(labels: s.labels, owner: s.owner, base: base, lastRaw: s.raw, live: true)
                    changed = true
                }
            } else {
                st = KeyState(labels: s.labels, owner: s.owner, base: 0, lastRaw: s.raw, live: true)
                changed = true
            }
            keys[s.key] = st
            values.append((carried[s.labels] ?? 0) &+ (s.raw &- st.base))
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
