/// SPEC §10: a collector's health, as its target's health check decides it.
public enum CollectorState: String, Codable, Sendable, CaseIterable {
    /// Gets copies (also every collector of a target without a health check, and a
    /// collector not probed yet: copies keep flowing until probes say otherwise).
    case healthy
    /// `unhealthyThreshold` probes in a row failed: gets no copies.
    case unhealthy
}

/// One collector's probe results turned into its state: `unhealthyThreshold` failures
/// in a row make a healthy collector unhealthy, `healthyThreshold` successes in a row
/// make it healthy again. A result that agrees with the state resets the other count.
public struct HealthTracker: Hashable, Sendable {
    public private(set) var state: CollectorState = .healthy
    /// Failures (when healthy) or successes (when unhealthy) in a row so far.
    public private(set) var streak = 0
    public let unhealthyThreshold: Int
    public let healthyThreshold: Int

    public init(unhealthyThreshold: Int, healthyThreshold: Int) {
        self.unhealthyThreshold = max(1, unhealthyThreshold); self.healthyThreshold = max(1, healthyThreshold)
    }

    public init(_ check: HealthCheck) {
        self.init(unhealthyThreshold: check.unhealthyThreshold, healthyThreshold: check.healthyThreshold)
    }

    /// Records one probe. Returns the new state when this probe changed it (so a
    /// transition is reported exactly once), nil otherwise.
    public mutating func record(success: Bool) -> CollectorState? {
        let against = (state == .healthy) != success
        guard against else { streak = 0; return nil }
        streak += 1
        guard streak >= (state == .healthy ? unhealthyThreshold : healthyThreshold) else { return nil }
        state = state == .healthy ? .unhealthy : .healthy
        streak = 0
        return state
    }
}

/// The health of every probed collector of a document: one tracker per target and
/// collector address. Pure: the agent feeds it probe results and reads what stage 2
/// must avoid.
public struct HealthBook: Sendable {
    public struct Key: Hashable, Sendable, CustomStringConvertible {
        public var target: String
        public var collector: IPAddress
        public init(target: String, collector: IPAddress) { self.target = target; self.collector = collector }
        public var description: String { "\(target)/\(collector)" }
    }

    public struct Transition: Hashable, Sendable {
        public var key: Key
        public var state: CollectorState
        public init(key: Key, state: CollectorState) { self.key = key; self.state = state }
    }

    struct Entry: Sendable {
        var check: HealthCheck
        var tracker: HealthTracker
        var lastError: String?
    }

    var entries: [Key: Entry] = [:]

    public init() {}

    /// What to probe for `doc`: every collector of every target with a health check.
    /// A collector whose check is unchanged keeps its state; a new one (or one whose
    /// check changed) starts healthy; the rest are forgotten.
    public mutating func reconcile(_ doc: Document) {
        var next: [Key: Entry] = [:]
        for t in doc.targets {
            guard let check = t.healthCheck else { continue }
            for a in t.collectorAddresses {
                let key = Key(target: t.id, collector: a)
                if let e = entries[key], e.check == check {
                    next[key] = e
                } else {
                    next[key] = Entry(check: check, tracker: HealthTracker(check))
                }
            }
        }
        entries = next
    }

    /// The probes to run, each with its check.
    public var probes: [Key: HealthCheck] { entries.mapValues(\.check) }

    /// Records a probe of `key` made with `check`. A result for a collector no longer
    /// probed, or probed with another check since, is ignored. Returns the transition
    /// when this probe made one.
    public mutating func record(_ key: Key, check: HealthCheck, success: Bool, error: String? = nil) -> Transition? {
        guard var e = entries[key], e.check == check else { return nil }
        let changed = e.tracker.record(success: success)
        e.lastError = success ? nil : error
        entries[key] = e
        return changed.map { Transition(key: key, state: $0) }
    }

    public func state(_ key: Key) -> CollectorState? { entries[key]?.tracker.state }

    /// Why the last probe of `key` failed (nil after a success).
    public func lastError(_ key: Key) -> String? { entries[key]?.lastError }

    /// The unhealthy collectors, by target id (targets with none are absent).
    public var unhealthy: [String: Set<IPAddress>] {
        var out: [String: Set<IPAddress>] = [:]
        for (k, e) in entries where e.tracker.state == .unhealthy { out[k.target, default: []].insert(k.collector) }
        return out
    }
}
