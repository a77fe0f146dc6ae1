import KilnIR

/// Linear quantization: QuantizeLinear and DequantizeLinear (per-tensor, per-axis and blocked),
/// DynamicQuantizeLinear and QLinearMatMul.
enum QuantizationOps {
    static func register(into table: inout KernelTable) {
        table.add("QuantizeLinear") { ctx in [.tensor(try quantize(ctx))] }
        table.add("DequantizeLinear") { ctx in [.tensor(try dequantize(ctx))] }
        table.add("DynamicQuantizeLinear") { ctx in try dynamicQuantize(ctx).map { .tensor($0) } }
        table.add("QLinearMatMul") { ctx in [.tensor(try qlinearMatMul(ctx))] }
    }

    /// The clipping range of an integer quantized type, or nil for float formats.
    static func integerRange(_ dtype: DType) -> (Int64, Int64)? {
        switch dtype {
        case .uint8: (0, 255)
        case .int8: (-128, 127)
        case .uint16: (0, 65535)
        case .int16: (-32768, 32767)
        case .uint4: (0, 15)
        case .int4: (-8, 7)
        case .uint2: (0, 3)
        case .int2: (-2, 1)
        case .int32: (Int64(Int32.min), Int64(Int32.max))
        case .uint32: (0, Int64(UInt32.max))
        default: nil
        }
    }

    /// `x` rounded to the nearest value of the floating-point type `dtype` (the type arithmetic runs in).
    static func roundTo(_ dtype: DType, _ x: Double) -> Double {
        switch dtype {
        case .float32: Double(Float(x))
        case .float16: Double(FloatFormats.halfToFloat(FloatFormats.floatToHalf(Float(x))))
        case .bfloat16: Double(FloatFormats.bfloat16ToFloat(FloatFormats.floatToBFloat16(Float(x))))
        default: x
        }
    }

    /// For each element of a tensor of shape `shape`, the index into a scale or zero-point tensor
    /// `param` that applies to it: one value for the whole tensor, one per slice along `axis`, or
    /// (with `blockSize` > 0) one per block of `blockSize` consecutive elements along `axis`.
    /// nil means `param` has a single element.
    static func paramIndex(_ ctx: KernelContext, _ param: Tensor, shape: [Int], axis rawAxis: Int, blockSize: Int) throws -> [Int]? {
        if param.count == 1 && (param.rank <= 1 || blockSize == 0) { return nil }
        let axis = try ctx.axis(rawAxis, rank: shape.count)
        let count = shape.reduce(1, *)
        if blockSize <= 0 {
            guard param.rank == 1, param.count == shape[axis] else {
                throw ctx.fail("per-axis parameter of shape \(param.shape) does not match dim \(axis) of \(shape)")
            }
            let inner = shape[(axis + 1)...].reduce(1, *)
            return (0..<count).map { ($0 / inner) % shape[axis] }
        }
        guard param.rank == shape.count else {
            throw ctx.fail("blocked parameter of shape \(param.shape) must have the rank of \(shape)")
        }
        for d in 0..<shape.count {
            let expected = d == axis ? (shape[d] == 0 ? 0 : (shape[d] - 1) / blockSize + 1) : shape[d]
            guard param.shape[d] == expected else {
                throw ctx.fail("blocked parameter of shape \(param.shape) does not fit \(shape) with block_size \(blockSize)")
            }
        }
        let pStrides = strides(of: param.shape), xStrides = strides(of: shape)
        return (0..<count).map { flat in
            var index = 0
            for d in 0..<shape.count {
                var coordinate = (flat / xStrides[d]) % shape[d]
                if d == axis { coordinate /= blockSize }
                index += coordinate * pStrides[d]
            }
            return index
        }
    }

    /// QuantizeLinear: `saturate(round(x / scale) + zero_point)`, rounding half to even; float8/float4
    /// outputs are a (saturating) conversion of `x / scale`.
    static func quantize(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), scale = try ctx.tensor(1)
        let zeroPoint = try ctx.optionalTensor(2)
        let axis = try ctx.int("axis", 1), blockSize = try ctx.int("block_size", 0)
        let saturate = try ctx.int("saturate", 1) != 0
        var outType = DType.uint8
        if let code = try ctx.int("output_dtype"), code != 0 {
            guard let t = DType(onnxCode: code) else { throw ctx.fail("unknown output_dtype \(code)") }
            outType = t
        }
        if let zeroPoint { outType = zeroPoint.dtype }
        var computeType = x.dtype
        if let code = try ctx.int("precision"), code != 0, let t = DType(onnxCode: code) { computeType = t }

        let xs = x.asDoubles(), ss = scale.asDoubles()
        let zs = zeroPoint?.asDoubles()
        let sIndex = try paramIndex(ctx, scale, shape: x.shape, axis: axis, blockSize: blockSize)
        let zIndex = try zeroPoint.flatMap { try paramIndex(ctx, $0, shape: x.shape, axis: axis, blockSize: blockSize) }
        var quotient = [Double](repeating: 0, count: xs.count)
        for i in 0..<xs.count {
            let s = roundTo(computeType, ss[sIndex?[i] ?? 0])
            quotient[i] = roundTo(computeType, roundTo(computeType, xs[i]) / s)
        }
        func zero(_ i: Int) -> Double { zs.map { $0[zIndex?[i] ?? 0] } ?? 0 }

        if let (lo, hi) = integerRange(outType) {
            var out = [Int64](repeating: 0, count: xs.count)
            for i in 0..<xs.count {
                let q = quotient[i]
                let r = q.isNaN ? 0 : q.rounded(.toNearestOrEven) + zero(i)
                out[i] = r.isNaN ? min(max(0, lo), hi) : (r <= Double(lo) ? lo : (r >= Double(hi) ? hi : Int64(r)))
            }
            return Tensor(dtype: outType, shape: x.shape, int64s: out)
        }
        switch outType {
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float4e2m1:
            var codes = [UInt8](repeating: 0, count: xs.count)
            for i in 0..<xs.count {
                let v = outType == .float4e2m1 ? quotient[i] + zero(i) : quotient[i]
                codes[i] = FloatFormats.encode(Float(v), outType, saturate: saturate || outType == .float4e2m1)
            }
            return Tensor(dtype: outType, shape: x.shape, bitPatterns: codes)
        default:
            throw ctx.unsupported("quantizing to \(outType)")
        }
    }

    /// DequantizeLinear: `(x − zero_point) · scale` in float32, converted to the scale's type
    /// (or `output_dtype`).
    static func dequantize(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), scale = try ctx.tensor(1)
        let zeroPoint = try ctx.optionalTensor(2)
        let axis = try ctx.int("axis", 1), blockSize = try ctx.int("block_size", 0)
        var outType = scale.dtype
        if let code = try ctx.int("output_dtype"), code != 0 {
            guard let t = DType(onnxCode: code) else { throw ctx.fail("unknown output_dtype \(code)") }
            outType = t
        }
        let floatInput = x.dtype.isFloatingPoint
        let xs = x.asDoubles(), ss = scale.asDoubles()
        let zs = floatInput ? nil : zeroPoint?.asDoubles()
        let sIndex = try paramIndex(ctx, scale, shape: x.shape, axis: axis, blockSize: blockSize)
        let zIndex = try (floatInput ? nil : zeroPoint).flatMap {
            try paramIndex(ctx, $0, shape: x.shape, axis: axis, blockSize: blockSize)
        }
        var out = [Double](repeating: 0, count: xs.count)
        for i in 0..<xs.count {
            let centered = Float(xs[i] - (zs.map { $0[zIndex?[i] ?? 0] } ?? 0))
            out[i] = Double(centered * Float(ss[sIndex?[i] ?? 0]))
        }
        return Tensor(dtype: outType, shape: x.shape, doubles: out)
    }

    /// DynamicQuantizeLinear: uint8 quantization of float32 `x` with a scale and zero point chosen
    /// from its range (which always includes 0).
    static func dynamicQuantize(_ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.tensor(0)
        let xs = x.asDoubles().map { Float($0) }
        var lo: Float = 0, hi: Float = 0
        for v in xs { lo = min(lo, v); hi = max(hi, v) }
        let scale: Float = (hi == lo ? 1 : hi - lo) / 255
        let initial = 0 - lo / scale
        let zeroPoint = max(0, min(255, initial)).rounded(.toNearestOrEven)
        let y: [UInt8] = xs.map { v in
            let q = (v / scale).rounded(.toNearestOrEven) + zeroPoint
            return UInt8(max(0, min(255, q.isNaN ? 0 : q)))
        }
        return [Tensor(shape: x.shape, y),
                Tensor(dtype: x.dtype, shape: [], doubles: [Double(scale)]),
                Tensor(shape: [], [UInt8(zeroPoint)])]
    }

    /// QLinearMatMul: integer product of the centered operands, rescaled by
    /// `a_scale · b_scale / y_scale`, rounded half to even, plus `y_zero_point`, saturated.
    static func qlinearMatMul(_ ctx: KernelContext) throws -> Tensor {
        let a = try ctx.tensor(0), aScale = try ctx.tensor(1), aZero = try ctx.optionalTensor(2)
        let b = try ctx.tensor(3), bScale = try ctx.tensor(4), bZero = try ctx.optionalTensor(5)
        let yScale = try ctx.tensor(6), yZero = try ctx.optionalTensor(7)
        let x = try LinearAlgebraOps.centered(ctx, a, aZero, perRow: true)
        let y = try LinearAlgebraOps.centered(ctx, b, bZero, perRow: false)
        let g = try LinearAlgebraOps.geometry(ctx, a.shape, b.shape)
        let product = LinearAlgebraOps.productInt(x, y, g)
        let outType = yZero?.dtype ?? a.dtype
        guard let (lo, hi) = integerRange(outType) else { throw ctx.unsupported("output type \(outType)") }
        let scaleType = aScale.dtype
        let sa = aScale.asDoubles(), sb = bScale.asDoubles(), sy = yScale.asDoubles()
        guard sa.count == 1, sy.count == 1 else { throw ctx.unsupported("per-axis a_scale or y_scale") }
        guard !sb.isEmpty else { throw ctx.fail("b_scale is empty") }
        let zy = yZero?.asDoubles().first ?? 0
        // Per-column b scales (shape [N] or [..., 1, N]) are allowed; the others are scalars.
        let n = g.n
        let multipliers: [Double] = sb.map { roundTo(scaleType, roundTo(scaleType, sa[0] * $0) / sy[0]) }
        var out = [Int64](repeating: 0, count: product.count)
        for i in 0..<product.count {
            let m = multipliers.count == 1 ? multipliers[0] : multipliers[(i % n) % multipliers.count]
            let r = (Double(product[i]) * m + zy).rounded(.toNearestOrEven)
            out[i] = r.isNaN ? min(max(0, lo), hi) : (r <= Double(lo) ? lo : (r >= Double(hi) ? hi : Int64(r)))
        }
        return Tensor(dtype: outType, shape: g.outShape, int64s: out)
    }
}
