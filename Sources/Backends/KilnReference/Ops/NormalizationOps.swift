#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// Normalization layers (BatchNormalization, LayerNormalization, RMSNormalization, GroupNormalization,
/// InstanceNormalization, LpNormalization, MeanVarianceNormalization, LRN) and the two classification
/// losses (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss).
enum NormalizationOps {
    static func register(into table: inout KernelTable) {
        table.add("BatchNormalization") { ctx in try batchNormalization(ctx) }
        table.add("LayerNormalization") { ctx in try layerNormalization(ctx) }
        table.add("RMSNormalization") { ctx in [.tensor(try rmsNormalization(ctx))] }
        table.add("GroupNormalization") { ctx in [.tensor(try groupNormalization(ctx))] }
        table.add("InstanceNormalization") { ctx in [.tensor(try instanceNormalization(ctx))] }
        table.add("LpNormalization") { ctx in [.tensor(try lpNormalization(ctx))] }
        table.add("MeanVarianceNormalization") { ctx in [.tensor(try meanVarianceNormalization(ctx))] }
        table.add("LRN") { ctx in [.tensor(try lrn(ctx))] }
        table.add("NegativeLogLikelihoodLoss") { ctx in
            let x = try floatingInput(ctx, 0)
            return [.tensor(try negativeLogLikelihood(ctx, logProb: x.asDoubles(), shape: x.shape, dtype: x.dtype))]
        }
        table.add("SoftmaxCrossEntropyLoss") { ctx in try softmaxCrossEntropy(ctx) }
    }

    /// Input `index`, which must be a floating-point tensor.
    static func floatingInput(_ ctx: KernelContext, _ index: Int) throws -> Tensor {
        let t = try ctx.tensor(index)
        guard t.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(t.dtype)") }
        return t
    }

    /// A tensor of `dtype` from Double values (a direct Float array for float32).
    static func make(_ dtype: DType, _ shape: [Int], _ values: [Double]) -> Tensor {
        if dtype == .float32 { return Tensor(shape: shape, values.map { Float($0) }) }
        return Tensor(dtype: dtype, shape: shape, doubles: values)
    }

    /// The values of a per-channel parameter (one per channel, or a single value broadcast to all).
    static func perChannel(_ ctx: KernelContext, _ index: Int, channels: Int, name: String) throws -> [Double] {
        let t = try ctx.tensor(index)
        let v = t.asDoubles()
        if v.count == channels { return v }
        if v.count == 1 { return Array(repeating: v[0], count: channels) }
        throw ctx.fail("\(name) has \(v.count) elements for \(channels) channels")
    }

    /// Per-channel mean and (population) variance of `x` laid out as [N, C, spatial…].
    static func channelMoments(_ x: [Double], n: Int, c: Int, spatial: Int) -> (mean: [Double], variance: [Double]) {
        var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
        let count = Double(n * spatial)
        for ch in 0..<c {
            var total = 0.0
            for b in 0..<n { for s in 0..<spatial { total += x[(b * c + ch) * spatial + s] } }
            let m = total / count
            var sq = 0.0
            for b in 0..<n { for s in 0..<spatial { let d = x[(b * c + ch) * spatial + s] - m; sq += d * d } }
            mean[ch] = m
            variance[ch] = sq / count
        }
        return (mean, variance)
    }

    /// BatchNormalization: inference with the given statistics, or (training_mode) with the batch's
    /// own statistics, also returning the updated running mean and variance.
    static func batchNormalization(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let x = try floatingInput(ctx, 0)
        guard x.rank >= 2 else { throw ctx.fail("input must have rank ≥ 2, got \(x.shape)") }
        let n = x.shape[0], c = x.shape[1], spatial = x.shape[2...].reduce(1, *)
        let epsilon = Double(try ctx.float("epsilon", 1e-5))
        let momentum = Double(try ctx.float("momentum", 0.9))
        let training = try ctx.int("training_mode", 0) != 0
        let scale = try perChannel(ctx, 1, channels: c, name: "scale")
        let bias = try perChannel(ctx, 2, channels: c, name: "B")
        var mean = try perChannel(ctx, 3, channels: c, name: "input_mean")
        var variance = try perChannel(ctx, 4, channels: c, name: "input_var")
        let values = x.dtype == .float32 ? nil : x.asDoubles()
        var outputs: [RuntimeValue?] = []
        var running: (mean: [Double], variance: [Double])? = nil
        if training {
            let moments = channelMoments(values ?? x.asDoubles(), n: n, c: c, spatial: spatial)
            running = ((0..<c).map { mean[$0] * momentum + moments.mean[$0] * (1 - momentum) },
                       (0..<c).map { variance[$0] * momentum + moments.variance[$0] * (1 - momentum) })
            mean = moments.mean
            variance = moments.variance
        }
        let a = (0..<c).map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
        let b = (0..<c).map { bias[$0] - mean[$0] * a[$0] }
        if x.dtype == .float32 {
            var y = x.elements(as: Float.self)
            for batch in 0..<n {
                for ch in 0..<c {
                    let fa = Float(a[ch]), fb = Float(b[ch])
                    let base = (batch * c + ch) * spatial
                    for s in 0..<spatial { y[base + s] = y[base + s] * fa + fb }
                }
            }
            outputs.append(.tensor(Tensor(shape: x.shape, y)))
        } else {
            var y = values!
            for batch in 0..<n {
                for ch in 0..<c {
                    let base = (batch * c + ch) * spatial
                    for s in 0..<spatial { y[base + s] = y[base + s] * a[ch] + b[ch] }
                }
            }
            outputs.append(.tensor(make(x.dtype, x.shape, y)))
        }
        if let running {
            outputs.append(.tensor(make(x.dtype, [c], running.mean)))
            outputs.append(.tensor(make(x.dtype, [c], running.variance)))
        }
        return outputs
    }

    /// The element type named by a `stash_type` attribute (float32 by default).
    static func stashType(_ ctx: KernelContext) throws -> DType {
        let code = try ctx.int("stash_type", 1)
        guard let t = DType(onnxCode: code), t.isFloatingPoint else { throw ctx.fail("bad stash_type \(code)") }
        return t
    }

    /// LayerNormalization over the dims from `axis` on, with broadcast scale and optional bias; also
    /// returns the mean and inverse standard deviation (in the stash type) when asked.
    static func layerNormalization(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let x = try floatingInput(ctx, 0)
        let scale = try ctx.tensor(1)
        let bias = try ctx.optionalTensor(2)
        let axis = try ctx.axis(try ctx.int("axis", -1), rank: x.rank)
        let epsilon = Double(try ctx.float("epsilon", 1e-5))
        let stash = try stashType(ctx)
        let rows = x.shape[..<axis].reduce(1, *), cols = x.shape[axis...].reduce(1, *)
        let v = x.asDoubles()
        let s = scale.asDoubles(), sIndex = try ctx.sourceIndices(from: scale.shape, to: x.shape, "scale")
        let bValues = bias?.asDoubles()
        let bIndex = try bias.map { try ctx.sourceIndices(from: $0.shape, to: x.shape, "bias") }
        var y = [Double](repeating: 0, count: v.count)
        var means = [Double](repeating: 0, count: rows), invStd = [Double](repeating: 0, count: rows)
        for r in 0..<rows {
            let base = r * cols
            var total = 0.0
            for j in 0..<cols { total += v[base + j] }
            let mean = total / Double(cols)
            var sq = 0.0
            for j in 0..<cols { let d = v[base + j] - mean; sq += d * d }
            let inv = 1 / (sq / Double(cols) + epsilon).squareRoot()
            means[r] = mean
            invStd[r] = inv
            for j in 0..<cols {
                let k = base + j
                var out = (v[k] - mean) * inv * s[sIndex[k]]
                if let bValues, let bIndex { out += bValues[bIndex[k]] }
                y[k] = out
            }
        }
        let statShape = Array(x.shape[..<axis]) + Array(repeating: 1, count: x.rank - axis)
        var outputs: [RuntimeValue?] = [.tensor(make(x.dtype, x.shape, y))]
        if ctx.wants(1) || ctx.wants(2) {
            outputs.append(.tensor(make(stash, statShape, means)))
            outputs.append(.tensor(make(stash, statShape, invStd)))
        }
        return outputs
    }

    /// RMSNormalization: `x / sqrt(mean(x²) + epsilon) · scale` over the dims from `axis` on.
    static func rmsNormalization(_ ctx: KernelContext) throws -> Tensor {
        let x = try floatingInput(ctx, 0)
        let scale = try ctx.tensor(1)
        let axis = try ctx.axis(try ctx.int("axis", -1), rank: x.rank)
        let epsilon = Double(try ctx.float("epsilon", 1e-5))
        let rows = x.shape[..<axis].reduce(1, *), cols = x.shape[axis...].reduce(1, *)
        let v = x.asDoubles()
        let s = scale.asDoubles(), sIndex = try ctx.sourceIndices(from: scale.shape, to: x.shape, "scale")
        var y = [Double](repeating: 0, count: v.count)
        for r in 0..<rows {
            let base = r * cols
            var sq = 0.0
            for j in 0..<cols { sq += v[base + j] * v[base + j] }
            let inv = 1 / (sq / Double(cols) + epsilon).squareRoot()
            for j in 0..<cols { y[base + j] = v[base + j] * inv * s[sIndex[base + j]] }
        }
        return make(x.dtype, x.shape, y)
    }

    /// Normalizes each of `groups` consecutive blocks of `x` (length `blockLength` each, in order)
    /// to zero mean and unit variance, then applies `affine(block, offsetInBlock, value)`.
    static func normalizeBlocks(_ v: [Double], blockLength: Int, epsilon: Double,
                                _ affine: (Int, Int, Double) -> Double) -> [Double] {
        var y = [Double](repeating: 0, count: v.count)
        guard blockLength > 0 else { return y }
        for block in 0..<(v.count / blockLength) {
            let base = block * blockLength
            var total = 0.0
            for j in 0..<blockLength { total += v[base + j] }
            let mean = total / Double(blockLength)
            var sq = 0.0
            for j in 0..<blockLength { let d = v[base + j] - mean; sq += d * d }
            let inv = 1 / (sq / Double(blockLength) + epsilon).squareRoot()
            for j in 0..<blockLength { y[base + j] = affine(block, j, (v[base + j] - mean) * inv) }
        }
        return y
    }

    /// GroupNormalization: statistics per (batch, group of channels); scale and bias per channel
    /// (or, in the older form, per group).
    static func groupNormalization(_ ctx: KernelContext) throws -> Tensor {
        let x = try floatingInput(ctx, 0)
        guard x.rank >= 2 else { throw ctx.fail("input must have rank ≥ 2, got \(x.shape)") }
        let groups = try ctx.int("num_groups", 1)
        let c = x.shape[1], spatial = x.shape[2...].reduce(1, *)
        guard groups > 0, c % groups == 0 else { throw ctx.fail("\(c) channels do not split into \(groups) groups") }
        let epsilon = Double(try ctx.float("epsilon", 1e-5))
        let scaleT = try ctx.tensor(1)
        let perGroup = scaleT.count == groups && groups != c
        let scale = try perChannel(ctx, 1, channels: perGroup ? groups : c, name: "scale")
        let bias = try perChannel(ctx, 2, channels: perGroup ? groups : c, name: "bias")
        let channelsPerGroup = c / groups
        let blockLength = channelsPerGroup * spatial
        let y = normalizeBlocks(x.asDoubles(), blockLength: blockLength, epsilon: epsilon) { block, offset, value in
            let group = block % groups
            let p = perGroup ? group : group * channelsPerGroup + offset / Swift.max(spatial, 1)
            return value * scale[p] + bias[p]
        }
        return make(x.dtype, x.shape, y)
    }

    /// InstanceNormalization: statistics per (batch, channel) over the spatial dims.
    static func instanceNormalization(_ ctx: KernelContext) throws -> Tensor {
        let x = try floatingInput(ctx, 0)
        guard x.rank >= 2 else { throw ctx.fail("input must have rank ≥ 2, got \(x.shape)") }
        let c = x.shape[1], spatial = x.shape[2...].reduce(1, *)
        let epsilon = Double(try ctx.float("epsilon", 1e-5))
        let scale = try perChannel(ctx, 1, channels: c, name: "scale")
        let bias = try perChannel(ctx, 2, channels: c, name: "B")
        let y = normalizeBlocks(x.asDoubles(), blockLength: spatial, epsilon: epsilon) { block, _, value in
            value * scale[block % c] + bias[block % c]
        }
        return make(x.dtype, x.shape, y)
    }

    /// LpNormalization: `x` divided by its L1 or L2 norm along `axis` (0 where the norm is 0).
    static func lpNormalization(_ ctx: KernelContext) throws -> Tensor {
        let x = try floatingInput(ctx, 0)
        let axis = try ctx.axis(try ctx.int("axis", -1), rank: x.rank)
        let p = try ctx.int("p", 2)
        guard p == 1 || p == 2 else { throw ctx.fail("p must be 1 or 2, got \(p)") }
        let (outer, length, inner) = ReductionOps.split(x.shape, at: axis)
        let v = x.asDoubles()
        var y = [Double](repeating: 0, count: v.count)
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                var norm = 0.0
                for k in 0..<length { let e = v[base + k * inner]; norm += p == 1 ? abs(e) : e * e }
                if p == 2 { norm = norm.squareRoot() }
                for k in 0..<length { y[base + k * inner] = norm == 0 ? 0 : v[base + k * inner] / norm }
            }
        }
        return make(x.dtype, x.shape, y)
    }

    /// MeanVarianceNormalization: `(x − mean) / (sqrt(mean(x²) − mean²) + 1e-9)` over `axes`
    /// (default [0, 2, 3]).
    static func meanVarianceNormalization(_ ctx: KernelContext) throws -> Tensor {
        let x = try floatingInput(ctx, 0)
        let axisList = try ctx.ints("axes") ?? [0, 2, 3]
        var axes = Set<Int>()
        for a in axisList { axes.insert(try ctx.axis(a, rank: x.rank)) }
        let plan = ReductionOps.plan(shape: x.shape, axes: axes, keepDims: true)
        let v = x.asDoubles()
        var sum = [Double](repeating: 0, count: plan.outCount), sq = sum
        for i in 0..<v.count { sum[plan.target[i]] += v[i]; sq[plan.target[i]] += v[i] * v[i] }
        let count = Double(plan.groupSize)
        let mean = sum.map { $0 / count }
        let std = (0..<plan.outCount).map { (Swift.max(sq[$0] / count - mean[$0] * mean[$0], 0)).squareRoot() }
        var y = [Double](repeating: 0, count: v.count)
        for i in 0..<v.count { let t = plan.target[i]; y[i] = (v[i] - mean[t]) / (std[t] + 1e-9) }
        return make(x.dtype, x.shape, y)
    }

    /// LRN: local response normalization across channels.
    static func lrn(_ ctx: KernelContext) throws -> Tensor {
        let x = try floatingInput(ctx, 0)
        guard x.rank >= 2 else { throw ctx.fail("input must have rank ≥ 2, got \(x.shape)") }
        let alpha = Double(try ctx.float("alpha", 1e-4)), beta = Double(try ctx.float("beta", 0.75))
        let bias = Double(try ctx.float("bias", 1))
        guard let size = try ctx.int("size"), size > 0 else { throw ctx.fail("attribute 'size' is required") }
        let n = x.shape[0], c = x.shape[1], spatial = x.shape[2...].reduce(1, *)
        let before = (size - 1) / 2, after = size - 1 - before
        let v = x.asDoubles()
        var y = [Double](repeating: 0, count: v.count)
        for b in 0..<n {
            for ch in 0..<c {
                let lo = Swift.max(0, ch - before), hi = Swift.min(c - 1, ch + after)
                for s in 0..<spatial {
                    var total = 0.0
                    for k in lo...hi { let e = v[(b * c + k) * spatial + s]; total += e * e }
                    let idx = (b * c + ch) * spatial + s
                    y[idx] = v[idx] / pow(bias + alpha / Double(size) * total, beta)
                }
            }
        }
        return make(x.dtype, x.shape, y)
    }

    /// NegativeLogLikelihoodLoss over log-probabilities `logProb` of shape [N, C, d…] with targets
    /// (input 1) of shape [N, d…], optional class weights (input 2), ignore_index and reduction.
    static func negativeLogLikelihood(_ ctx: KernelContext, logProb: [Double], shape: [Int], dtype: DType) throws -> Tensor {
        let target = try ctx.tensor(1)
        let weight = try ctx.optionalTensor(2)?.asDoubles()
        let ignore = try ctx.int("ignore_index")
        let reduction = try ctx.string("reduction", "mean")
        guard shape.count >= 2 else { throw ctx.fail("input must have rank ≥ 2, got \(shape)") }
        let n = shape[0], c = shape[1], inner = shape[2...].reduce(1, *)
        guard target.shape == [n] + Array(shape[2...]) else { throw ctx.fail("target shape \(target.shape) does not fit input \(shape)") }
        if let weight, weight.count != c { throw ctx.fail("weight has \(weight.count) values for \(c) classes") }
        let t = target.asInt64s()
        var loss = [Double](repeating: 0, count: t.count)
        var weights = [Double](repeating: 0, count: t.count)
        for b in 0..<n {
            for d in 0..<inner {
                let k = b * inner + d
                let cls = Int(t[k])
                if let ignore, cls == ignore { continue }
                guard cls >= 0, cls < c else { throw ctx.fail("target \(cls) is out of range for \(c) classes") }
                let w = weight?[cls] ?? 1
                weights[k] = w
                loss[k] = -logProb[(b * c + cls) * inner + d] * w
            }
        }
        switch reduction {
        case "none":
            return make(dtype, target.shape, loss)
        case "sum":
            return make(dtype, [], [loss.reduce(0, +)])
        case "mean":
            return make(dtype, [], [loss.reduce(0, +) / weights.reduce(0, +)])
        default:
            throw ctx.fail("unknown reduction '\(reduction)'")
        }
    }

    /// SoftmaxCrossEntropyLoss: log-softmax over the class axis (1), then the NLL loss; the
    /// log-probabilities are the optional second output.
    static func softmaxCrossEntropy(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let x = try floatingInput(ctx, 0)
        guard x.rank >= 2 else { throw ctx.fail("input must have rank ≥ 2, got \(x.shape)") }
        let (outer, length, inner) = ReductionOps.split(x.shape, at: 1)
        let v = x.asDoubles()
        var logProb = [Double](repeating: 0, count: v.count)
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                var peak = -Double.infinity
                for k in 0..<length { peak = Swift.max(peak, v[base + k * inner]) }
                var total = 0.0
                for k in 0..<length { total += exp(v[base + k * inner] - peak) }
                let shift = peak + log(total)
                for k in 0..<length { logProb[base + k * inner] = v[base + k * inner] - shift }
            }
        }
        // Round the log-probabilities to the input type first, as the loss reads them from a tensor of that type.
        let logTensor = make(x.dtype, x.shape, logProb)
        let loss = try negativeLogLikelihood(ctx, logProb: logTensor.asDoubles(), shape: x.shape, dtype: x.dtype)
        var outputs: [RuntimeValue?] = [.tensor(loss)]
        if ctx.wants(1) { outputs.append(.tensor(logTensor)) }
        return outputs
    }
}
