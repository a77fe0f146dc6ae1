import KilnIR
// Tests that import only KilnTestSupport draw from the same generator.
@_exported import struct KilnIR.SplitMix64

/// Test helpers on KilnIR's `SplitMix64`, so that a seed always means the same shapes, data and cases.
extension SplitMix64 {
    /// Uniform in [lo, hi), from the top 24 bits of the next value.
    public mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }

    /// `n` floats uniform in [lo, hi).
    public mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<n).map { _ in float(lo, hi) }
    }

    /// An integer in `range` (modulo the range's size: a bias too small to matter for tests).
    public mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }

    /// An integer in 0..<n.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    public mutating func bool() -> Bool { next() & 1 == 1 }

    /// One of `items` (not empty).
    public mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }

    /// A float32 tensor of `shape`, uniform in [lo, hi).
    public mutating func tensor(_ shape: [Int], _ lo: Float = -1, _ hi: Float = 1) -> Tensor {
        Tensor(shape: shape, floats(shape.reduce(1, *), lo, hi))
    }
}

/// A 64-bit linear congruential generator (Knuth's MMIX constants). The golden artifact fixtures
/// (`TestModels`) and the pass tests' models were drawn from it, so it stays as it is: new tests use `SplitMix64`.
public struct TestRandom: Sendable {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }

    /// Advances the state and returns it.
    public mutating func step() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state
    }

    /// A float in [-1, 1).
    public mutating func next() -> Float { Float(step() >> 40) / Float(1 << 24) * 2 - 1 }

    /// A float32 tensor of `shape` in [-1, 1), or in [0.5, 1.5] when `positive`.
    public mutating func tensor(_ shape: [Int], positive: Bool = false) -> Tensor {
        Tensor(shape: shape, (0..<shape.reduce(1, *)).map { _ in positive ? abs(next()) + 0.5 : next() })
    }

    /// `count` bytes (bits 33–40 of each state), for corrupt-file tests.
    public mutating func bytes(count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: step() >> 33) }
    }
}
