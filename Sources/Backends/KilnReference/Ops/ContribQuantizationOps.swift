#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// ONNX Runtime's quantized contrib ops (domain `com.microsoft`) that `quantize_static` writes in QOperator
/// form: QLinearAdd, QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat, QLinearSigmoid and
/// QLinearLeakyRelu. Each dequantizes its operands (`(q − zero_point) · scale`), computes in float and
/// requantizes (`saturate(round_half_even(y / y_scale) + y_zero_point)`) to the output zero point's type.
enum ContribQuantizationOps {
    static let domain = "com.microsoft"

    static func register(into table: inout KernelTable) {
        table.add("QLinearAdd", domain: domain) { ctx in [.tensor(try binary(ctx, +))] }
        table.add("QLinearMul", domain: domain) { ctx in [.tensor(try binary(ctx, *))] }
        table.add("QLinearGlobalAveragePool", domain: domain) { ctx in [.tensor(try globalAverage(ctx))] }
        table.add("QLinearAveragePool", domain: domain) { ctx in [.tensor(try averagePool(ctx))] }
        table.add("QLinearConcat", domain: domain) { ctx in [.tensor(try concat(ctx))] }
        table.add("QGemm", domain: domain) { ctx in [.tensor(try qgemm(ctx))] }
        table.add("QLinearSoftmax", domain: domain) { ctx in [.tensor(try softmax(ctx))] }
        table.add("QLinearSigmoid", domain: domain) { ctx in
            [.tensor(try unary(ctx) { 1 / (1 + exp(-$0)) })]
        }
        table.add("QLinearLeakyRelu", domain: domain) { ctx in
            let alpha = Double(try ctx.float("alpha", 0.01))
            return [.tensor(try unary(ctx) { $0 >= 0 ? $0 : alpha * $0 })]
        }
    }

    /// The real values of quantized `q` with per-tensor `scale` and optional `zeroPoint`.
    static func dequantized(_ ctx: KernelContext, _ q: Tensor, _ scale: Tensor, _ zeroPoint: Tensor?, _ what: String) throws -> [Double] {
        guard QuantizationOps.integerRange(q.dtype) != nil else { throw ctx.unsupported("\(what) of element type \(q.dtype)") }
        guard scale.count == 1, (zeroPoint?.count ?? 1) == 1 else { throw ctx.unsupported("per-axis \(what) parameters") }
        let s = Double(Float(scale.asDoubles()[0])), z = zeroPoint?.asDoubles()[0] ?? 0
        return q.asDoubles().map { ($0 - z) * s }
    }

    /// `values` quantized with `scale` and `zeroPoint` (its type is the result's; uint8 without one).
    static func requantized(_ ctx: KernelContext, _ values: [Double], shape: [Int], _ scale: Tensor, _ zeroPoint: Tensor?) throws -> Tensor {
        let type = zeroPoint?.dtype ?? .uint8
        guard let (lo, hi) = QuantizationOps.integerRange(type) else { throw ctx.unsupported("output type \(type)") }
        guard scale.count == 1, (zeroPoint?.count ?? 1) == 1 else { throw ctx.unsupported("per-axis output parameters") }
        let s = Double(Float(scale.asDoubles()[0])), z = zeroPoint?.asDoubles()[0] ?? 0
        guard s != 0 else { throw ctx.fail("the output scale is 0") }
        let out: [Int64] = values.map { v in
            let r = (Double(Float(v / s))).rounded(.toNearestOrEven) + z
            return r.isNaN ? min(max(0, lo), hi) : (r <= Double(lo) ? lo : (r >= Double(hi) ? hi : Int64(r)))
        }
        return Tensor(dtype: type, shape: shape, int64s: out)
    }

    /// QLinearAdd and QLinearMul: A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point,
    /// with multidirectional broadcasting.
    static func binary(_ ctx: KernelContext, _ op: (Double, Double) -> Double) throws -> Tensor {
        let a = try ctx.tensor(0), b = try ctx.tensor(3)
        let x = try dequantized(ctx, a, try ctx.tensor(1), try ctx.optionalTensor(2), "A")
        let y = try dequantized(ctx, b, try ctx.tensor(4), try ctx.optionalTensor(5), "B")
        guard let shape = Broadcast.shape([a.shape, b.shape]) else {
            throw ctx.fail("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        try ctx.checkedCount(shape)
        let ia = Broadcast.sourceIndices(from: a.shape, to: shape), ib = Broadcast.sourceIndices(from: b.shape, to: shape)
        let values = zip(ia, ib).map { op(x[$0], y[$1]) }
        return try requantized(ctx, values, shape: shape, try ctx.tensor(6), try ctx.optionalTensor(7))
    }

    /// QLinearSigmoid and QLinearLeakyRelu: X, X_scale, X_zero_point, Y_scale, Y_zero_point.
    static func unary(_ ctx: KernelContext, _ f: (Double) -> Double) throws -> Tensor {
        let x = try ctx.tensor(0)
        let values = try dequantized(ctx, x, try ctx.tensor(1), try ctx.optionalTensor(2), "X").map(f)
        return try requantized(ctx, values, shape: x.shape, try ctx.tensor(3), try ctx.optionalTensor(4))
    }

    /// QLinearAveragePool: X, x_scale, x_zero_point, y_scale, y_zero_point, with AveragePool's attributes
    /// (kernel_shape, strides, pads, auto_pad, ceil_mode, dilations, count_include_pad) over NCHW data: the
    /// dequantized values pooled as AveragePool pools them (in Double), then requantized.
    static func averagePool(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard try ctx.int("channels_last", 0) == 0 else { throw ctx.unsupported("channels_last 1") }
        let values = try dequantized(ctx, x, try ctx.tensor(1), try ctx.optionalTensor(2), "X")
        let real = KernelContext(node: ctx.node, inputs: [.tensor(Tensor(dtype: .float64, shape: x.shape, doubles: values))],
                                 runSubgraph: ctx.runSubgraph)
        let pooled = try PoolingOps.pool(real, try ctx.int("count_include_pad", 0) != 0 ? .averageIncludingPad : .average).values
        return try requantized(ctx, pooled.asDoubles(), shape: pooled.shape, try ctx.tensor(3), try ctx.optionalTensor(4))
    }

    /// QLinearGlobalAveragePool: X, x_scale, x_zero_point, y_scale, y_zero_point; the mean over the spatial
    /// dims (after the channels, or before them with `channels_last` = 1), which are kept as 1s.
    static func globalAverage(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.rank >= 3 else { throw ctx.fail("X must have rank 3 or more, not \(x.rank)") }
        let values = try dequantized(ctx, x, try ctx.tensor(1), try ctx.optionalTensor(2), "X")
        let channelsLast = try ctx.int("channels_last", 0) != 0
        let n = x.shape[0], c = channelsLast ? x.shape[x.rank - 1] : x.shape[1]
        let spatial = channelsLast ? Array(x.shape[1..<(x.rank - 1)]) : Array(x.shape[2...])
        let area = spatial.reduce(1, *)
        var out = [Double](repeating: 0, count: n * c)
        for b in 0..<n {
            for ch in 0..<c {
                var sum = 0.0
                for p in 0..<area {
                    sum += values[channelsLast ? (b * area + p) * c + ch : (b * c + ch) * area + p]
                }
                out[b * c + ch] = area == 0 ? 0 : sum / Double(area)
            }
        }
        let ones = [Int](repeating: 1, count: spatial.count)
        let shape = channelsLast ? [n] + ones + [c] : [n, c] + ones
        return try requantized(ctx, out, shape: shape, try ctx.tensor(3), try ctx.optionalTensor(4))
    }

    /// QGemm: A, a_scale, a_zero_point, B, b_scale, b_zero_point (per tensor, or per output column of B),
    /// C (an optional int32 bias at scale a_scale · b_scale, broadcast to [M, N]), y_scale, y_zero_point:
    /// `alpha · Σ (A − za)(B − zb) · sa · sb + C · sa · sb`, requantized when y_scale is given, else float32.
    static func qgemm(_ ctx: KernelContext) throws -> Tensor {
        let a = try ctx.tensor(0), aScale = try ctx.tensor(1), aZero = try ctx.optionalTensor(2)
        let b = try ctx.tensor(3), bScale = try ctx.tensor(4), bZero = try ctx.optionalTensor(5)
        let c = try ctx.optionalTensor(6), yScale = try ctx.optionalTensor(7), yZero = try ctx.optionalTensor(8)
        let transA = try ctx.int("transA", 0) != 0, transB = try ctx.int("transB", 0) != 0
        let alpha = Double(try ctx.float("alpha", 1))
        guard a.rank == 2, b.rank == 2 else { throw ctx.fail("A and B must be matrices, not of shapes \(a.shape) and \(b.shape)") }
        for t in [a, b] where QuantizationOps.integerRange(t.dtype) == nil { throw ctx.unsupported("operands of element type \(t.dtype)") }
        let (m, k) = transA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let (kb, n) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == kb else { throw ctx.fail("A's \(k) columns do not match B's \(kb) rows") }
        guard aScale.count == 1, (aZero?.count ?? 1) == 1 else { throw ctx.unsupported("per-axis a_scale or a_zero_point") }
        guard bScale.count == 1 || bScale.count == n, [1, n].contains(bZero?.count ?? 1) else {
            throw ctx.fail("b_scale and b_zero_point must have 1 or \(n) elements")
        }
        try ctx.checkedCount([m, n])
        let av = a.asDoubles(), bv = b.asDoubles()
        let sa = Double(Float(aScale.asDoubles()[0])), za = aZero?.asDoubles()[0] ?? 0
        let sb = bScale.asDoubles().map { Double(Float($0)) }, zb = bZero?.asDoubles() ?? [0]
        let cIndex = try c.map { try ctx.sourceIndices(from: $0.shape, to: [m, n], "C") }
        let cv = c?.asDoubles()
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                let zj = zb[zb.count == 1 ? 0 : j]
                var sum = 0.0
                for p in 0..<k {
                    sum += (av[transA ? p * m + i : i * k + p] - za) * (bv[transB ? j * k + p : p * n + j] - zj)
                }
                let scale = sa * sb[sb.count == 1 ? 0 : j]
                out[i * n + j] = alpha * sum * scale + (cv.map { $0[cIndex![i * n + j]] * scale } ?? 0)
            }
        }
        if let yScale { return try requantized(ctx, out, shape: [m, n], yScale, yZero) }
        return Tensor(dtype: .float32, shape: [m, n], doubles: out)
    }

    /// QLinearSoftmax: X, X_scale, X_zero_point, Y_scale, Y_zero_point. With `opset` ≥ 13 (the ONNX Softmax it
    /// replaces) the softmax runs along `axis` (default −1); before 13, over all dims from `axis` (default 1) on.
    static func softmax(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let values = try dequantized(ctx, x, try ctx.tensor(1), try ctx.optionalTensor(2), "X")
        let opset = try ctx.int("opset", 13)
        guard x.rank >= 1 else { throw ctx.fail("X must have rank 1 or more") }
        let axis = try ctx.axis(try ctx.int("axis", opset >= 13 ? -1 : 1), rank: x.rank)
        // Groups of `length` elements `stride` apart: along one axis, or the flattened trailing dims.
        let length = opset >= 13 ? x.shape[axis] : x.shape[axis...].reduce(1, *)
        let stride = opset >= 13 ? x.shape[(axis + 1)...].reduce(1, *) : 1
        var out = values
        let groups = length == 0 ? 0 : values.count / length
        for g in 0..<groups {
            let base = (g / stride) * length * stride + g % stride
            var top = -Double.infinity
            for k in 0..<length { top = max(top, values[base + k * stride]) }
            var sum = 0.0
            for k in 0..<length { sum += exp(values[base + k * stride] - top) }
            for k in 0..<length { out[base + k * stride] = exp(values[base + k * stride] - top) / sum }
        }
        return try requantized(ctx, out, shape: x.shape, try ctx.tensor(3), try ctx.optionalTensor(4))
    }

    /// QLinearConcat: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per operand; `axis`.
    static func concat(_ ctx: KernelContext) throws -> Tensor {
        let count = ctx.inputCount
        guard count >= 5, (count - 2) % 3 == 0 else { throw ctx.fail("expected Y_scale, Y_zero_point and triples of X, scale, zero point; got \(count) inputs") }
        var parts: [(Tensor, [Double])] = []
        for i in stride(from: 2, to: count, by: 3) {
            let x = try ctx.tensor(i)
            parts.append((x, try dequantized(ctx, x, try ctx.tensor(i + 1), try ctx.optionalTensor(i + 2), "input \(i)")))
        }
        let first = parts[0].0
        let axis = try ctx.axis(try ctx.int("axis", 0), rank: first.rank)
        for (x, _) in parts where x.rank != first.rank || (0..<x.rank).contains(where: { $0 != axis && x.shape[$0] != first.shape[$0] }) {
            throw ctx.fail("input of shape \(x.shape) does not concatenate with \(first.shape) along axis \(axis)")
        }
        var shape = first.shape
        shape[axis] = parts.reduce(0) { $0 + $1.0.shape[axis] }
        try ctx.checkedCount(shape)
        let outer = first.shape[..<axis].reduce(1, *)
        var out: [Double] = []
        out.reserveCapacity(shape.reduce(1, *))
        for o in 0..<outer {
            for (x, values) in parts {
                let block = x.shape[axis...].reduce(1, *)
                out += values[(o * block)..<((o + 1) * block)]
            }
        }
        return try requantized(ctx, out, shape: shape, try ctx.tensor(0), try ctx.optionalTensor(1))
    }
}
