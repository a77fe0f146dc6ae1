/// SplitMix64 (Steele, Lea and Flood, 2014): a small, fast random number generator whose whole sequence is
/// determined by its seed. Kiln uses it wherever a seed must always mean the same numbers: `kiln run --random
/// --seed N`, the seeded ONNX random ops of kiln.reference, and the tests. It is not for cryptography.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The generator's state; the next value is a function of it alone.
    public var state: UInt64

    /// A generator whose sequence is determined by `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1), from the top 53 bits of the next value.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
