/// A deterministic random number generator (SplitMix64). The same seed gives the same
/// sequence on every platform and run, so a failing property or differential test can
/// be replayed from the seed it prints.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// True with probability `p` (0...1).
    public mutating func chance(_ p: Double) -> Bool {
        Double(next() >> 11) / Double(1 << 53) < p
    }

    /// A uniformly chosen element; `nil` only for an empty collection.
    public mutating func pick<C: Collection>(_ c: C) -> C.Element? {
        guard !c.isEmpty else { return nil }
        let i = Int.random(in: 0..<c.count, using: &self)
        return c[c.index(c.startIndex, offsetBy: i)]
    }

    public mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &self) }
}
