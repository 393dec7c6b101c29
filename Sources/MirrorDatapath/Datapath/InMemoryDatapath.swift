import Foundation
import MirrorCore

/// A datapath without a kernel: remembers the policy and which interfaces exist.
/// Used by tests and by `--datapath memory`.
public final class InMemoryDatapath: Datapath, @unchecked Sendable {
    private let lock = NSLock()
    private var document = Document()
    private var generation: UInt64 = 0
    private var present: [String: Int]
    private var started = false
    /// Test hook: the next `apply` throws this (then clears it).
    private var failNext: String?
    /// Test hook: what `counters()` returns (by default nothing: no kernel counts).
    private var testCounters: DatapathCounters?
    /// How interfaces are found at apply time; default: if_nametoindex in this netns.
    private let resolve: @Sendable (String) -> Int?

    public let kind = "memory"

    public func underlayInterfaces(for document: Document) -> [String: String] {
        var out: [String: String] = [:]
        for t in document.targets {
            for a in t.collectorAddresses { if let dev = underlayRoutes["\(a)"] { out[dev] = "\(a)" } }
        }
        return out
    }

    public let ownInterfaces: Set<String>
    /// Collector address (as written) → the device its copies would leave through.
    private let underlayRoutes: [String: String]

    public init(interfaces: [String: Int]? = nil, ownInterfaces: Set<String> = [], underlayRoutes: [String: String] = [:]) {
        self.ownInterfaces = ownInterfaces
        self.underlayRoutes = underlayRoutes
        present = interfaces ?? [:]
        if interfaces != nil {
            resolve = { _ in nil }
        } else {
            resolve = { name in
                let i = if_nametoindex(name)
                return i == 0 ? nil : Int(i)
            }
        }
    }

    public func start() throws { lock.withLock { started = true } }

    public func apply(document: Document, generation: UInt64) throws {
        try lock.withLock {
            if let f = failNext { failNext = nil; throw DatapathError(f) }
            for s in document.sources where present[s.interface] == nil {
                if let i = resolve(s.interface) { present[s.interface] = i }
            }
            self.document = document
            self.generation = generation
        }
    }

    public func linkChanged(name: String, ifindex: Int, present isPresent: Bool) {
        lock.withLock { present[name] = isPresent ? ifindex : nil }
    }

    public func status(verified: Bool) -> DatapathStatus {
        lock.withLock {
            var attached: [String: Int] = [:]
            for s in document.sources { if let i = present[s.interface] { attached[s.interface] = i } }
            return DatapathStatus(loaded: started, generation: generation, attached: attached, mirrorDevice: nil)
        }
    }

    public func explain(source: String, direction: Direction, packet: PacketDescription) throws -> Decision? { nil }

    public func shutdown() { lock.withLock { started = false } }
    public func cleanup() throws {}

    public func counters() throws -> DatapathCounters? { lock.withLock { testCounters } }

    /// Test hook: make the next apply fail with `message`.
    public func failNextApply(_ message: String) { lock.withLock { failNext = message } }
    /// Test hook: counters for `counters()` to return, as a kernel datapath would read
    /// them (a scrape then shows every datapath family).
    public func setCounters(_ counters: DatapathCounters?) { lock.withLock { testCounters = counters } }
    /// The last applied policy.
    public var appliedDocument: Document { lock.withLock { document } }
}
