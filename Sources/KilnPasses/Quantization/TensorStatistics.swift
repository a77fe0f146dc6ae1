#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// How the range of an activation is chosen from what calibration saw.
public enum CalibrationMethod: String, Sendable, CaseIterable {
    /// The smallest and largest values seen.
    case minmax
    /// The range holding the given percentile of the values: each tail, below and above, loses half of
    /// the rest (99.99: the lowest 0.005% and the highest 0.005% are clipped).
    case percentile
    /// The |x| threshold whose clipped, quantized histogram is closest to the observed one in
    /// Kullback-Leibler divergence (the search TensorRT and ONNX Runtime call "entropy" calibration).
    case entropy
}

/// What calibration learned about one float tensor over all samples: its minimum, its maximum and a
/// histogram of |x|, from which `range(method:percentile:)` picks the range to quantize.
///
/// The histogram has `binCount` equal bins over `[0, binCount · binWidth)`. Its width is set by the first
/// non-zero value seen (the first sample's max |x| spans all bins) and doubles, merging neighbouring bins
/// exactly, whenever a later value falls beyond the last bin.
public struct TensorStatistics: Sendable, Equatable {
    /// Bins of the |x| histogram.
    public static let binCount = 2048
    /// Smallest value seen (+∞ before any).
    public private(set) var minimum = Float.infinity
    /// Largest value seen (−∞ before any).
    public private(set) var maximum = -Float.infinity
    /// Counts of |x| per bin.
    public private(set) var histogram = [Double](repeating: 0, count: TensorStatistics.binCount)
    /// Counts of |x| per bin for the negative values alone (`histogram` counts both signs).
    public private(set) var negativeHistogram = [Double](repeating: 0, count: TensorStatistics.binCount)
    /// Width of a histogram bin (0 while only zeros have been seen: they are all in bin 0).
    public private(set) var binWidth = 0.0
    /// Finite values seen (NaN and ±∞ are skipped).
    public private(set) var count = 0

    /// Empty statistics.
    public init() {}

    /// Statistics of `values`.
    public init(_ values: [Float]) { add(values) }

    /// The largest |x| seen (0 before any).
    public var absoluteMaximum: Float { count == 0 ? 0 : max(abs(minimum), abs(maximum)) }

    /// Adds the finite elements of `values`.
    public mutating func add(_ values: [Float]) {
        var top: Float = 0
        for v in values where v.isFinite {
            minimum = min(minimum, v)
            maximum = max(maximum, v)
            top = max(top, abs(v))
            count += 1
        }
        guard count > 0 else { return }
        if binWidth == 0 && top > 0 { binWidth = Double(top) / Double(Self.binCount) }
        while binWidth > 0 && Double(top) > binWidth * Double(Self.binCount) {
            // Double the width: bin i takes old bins 2i and 2i+1.
            var merged = [Double](repeating: 0, count: Self.binCount)
            var negative = [Double](repeating: 0, count: Self.binCount)
            for i in 0..<Self.binCount {
                merged[i / 2] += histogram[i]
                negative[i / 2] += negativeHistogram[i]
            }
            histogram = merged
            negativeHistogram = negative
            binWidth *= 2
        }
        for v in values where v.isFinite {
            let index = binWidth == 0 ? 0 : min(Int(Double(abs(v)) / binWidth), Self.binCount - 1)
            histogram[index] += 1
            if v < 0 { negativeHistogram[index] += 1 }
        }
    }

    /// The |x| below which `percent` percent of the values lie, to within one bin (the upper edge of
    /// the bin where the cumulative count reaches it), never above the largest |x|.
    public func percentileThreshold(_ percent: Double) -> Float {
        let total = histogram.reduce(0, +)
        guard total > 0, binWidth > 0 else { return absoluteMaximum }
        let target = total * min(max(percent, 0), 100) / 100
        var cumulative = 0.0
        for (i, c) in histogram.enumerated() {
            cumulative += c
            if cumulative >= target { return min(Float(Double(i + 1) * binWidth), absoluteMaximum) }
        }
        return absoluteMaximum
    }

    /// The smallest bin edge `t` such that at most `fraction` of all values lie beyond it on one side
    /// (`negative`: below −t; else above t), never above that side's largest magnitude.
    func tailThreshold(fraction: Double, negative: Bool) -> Float {
        let total = histogram.reduce(0, +)
        let side = negative ? negativeHistogram : zip(histogram, negativeHistogram).map { $0 - $1 }
        let extreme = negative ? max(0, -minimum) : max(0, maximum)
        guard total > 0, binWidth > 0 else { return extreme }
        let allowed = total * fraction
        var beyond = 0.0
        for i in stride(from: Self.binCount - 1, through: 0, by: -1) {
            if beyond + side[i] > allowed { return min(Float(Double(i + 1) * binWidth), extreme) }
            beyond += side[i]
        }
        return 0
    }

    /// The |x| threshold that loses least information when the values are clipped to it and quantized
    /// to `levels` levels of magnitude: for each candidate number of bins `n` (from `levels` to all),
    /// the reference distribution P is the first `n` bins with the clipped tail added to the last, the
    /// candidate Q merges those `n` bins into `levels` groups and spreads each group's mass evenly over
    /// its non-empty bins; the threshold is the upper edge of the `n` with the smallest KL(P ‖ Q).
    public func entropyThreshold(levels: Int = 128) -> Float {
        guard binWidth > 0, levels > 0 else { return absoluteMaximum }
        // Beyond the last non-empty bin every candidate is the same as the full one.
        let used = (histogram.lastIndex(where: { $0 > 0 }) ?? 0) + 1
        guard used > levels else { return absoluteMaximum }
        var suffix = [Double](repeating: 0, count: used + 1)
        for i in stride(from: used - 1, through: 0, by: -1) { suffix[i] = suffix[i + 1] + histogram[i] }
        var best = used, bestDivergence = Double.infinity
        var p = [Double](repeating: 0, count: used)
        var q = [Double](repeating: 0, count: used)
        for n in levels...used {
            for i in 0..<n { p[i] = histogram[i] }
            p[n - 1] += suffix[n]
            for j in 0..<levels {
                let start = j * n / levels, end = (j + 1) * n / levels
                var mass = 0.0, filled = 0
                for i in start..<end where histogram[i] > 0 {
                    mass += histogram[i]
                    filled += 1
                }
                for i in start..<end { q[i] = histogram[i] > 0 ? mass / Double(filled) : 0 }
            }
            let pTotal = p[0..<n].reduce(0, +), qTotal = q[0..<n].reduce(0, +)
            guard pTotal > 0, qTotal > 0 else { continue }
            // A bin P has and Q lacks (the clipped tail folded into an empty last bin) gets a small
            // floor instead of an infinite divergence.
            let floor = 1e-4 / Double(n)
            var divergence = 0.0
            for i in 0..<n where p[i] > 0 {
                let pi = p[i] / pTotal
                let qi = max(q[i] / qTotal, floor)
                divergence += pi * log(pi / qi)
            }
            if divergence < bestDivergence {
                bestDivergence = divergence
                best = n
            }
        }
        return min(Float(Double(best) * binWidth), absoluteMaximum)
    }

    /// The range `[lower, upper]` to quantize: the range seen (`minmax`); for `percentile` (`percent`),
    /// each tail clipped where it holds (100 − percent) / 2 percent of all values (to one bin); for
    /// `entropy`, the range seen clipped to ±`entropyThreshold()`. Empty statistics give `[0, 0]`.
    public func range(method: CalibrationMethod, percentile percent: Double = 99.99) -> (lower: Float, upper: Float) {
        guard count > 0 else { return (0, 0) }
        let threshold: Float
        switch method {
        case .minmax: return (minimum, maximum)
        case .percentile:
            let tail = (100 - min(max(percent, 0), 100)) / 200
            return (max(minimum, -tailThreshold(fraction: tail, negative: true)), min(maximum, tailThreshold(fraction: tail, negative: false)))
        case .entropy: threshold = entropyThreshold()
        }
        return (max(minimum, -threshold), min(maximum, threshold))
    }
}
