import CKilnKernels
import KilnIR

/// QuantizeLinear and DequantizeLinear in plain Swift: per-tensor, per-axis and blocked scales and zero
/// points; integer (8/16/32-bit, 4- and 2-bit) and float8/float4 quantized types.
extension SwiftOps {
    /// The saturation range of an integer quantized type; nil for the float formats.
    static func quantizedRange(_ t: DType) -> ClosedRange<Int64>? {
        switch t {
        case .int8: -128...127
        case .uint8: 0...255
        case .int16: -32768...32767
        case .uint16: 0...65535
        case .int32: Int64(Int32.min)...Int64(Int32.max)
        case .uint32: 0...Int64(UInt32.max)
        case .int4: -8...7
        case .uint4: 0...15
        case .int2: -2...1
        case .uint2: 0...3
        default: nil
        }
    }

    /// Why kiln.cpu cannot run a QuantizeLinear or DequantizeLinear node, or nil.
    static func quantizationRejection(_ node: Node, _ facts: SupportFacts) -> String? {
        let outputType = (try? node.int("output_dtype", 0)).flatMap { $0 == 0 ? nil : DType(onnxCode: $0) }
        if node.op.name == "QuantizeLinear" {
            let target = facts.types[node.input(2)] ?? outputType ?? .uint8
            guard quantizedRange(target) != nil || CastOperation.lowPrecisionFloats.contains(target) else {
                return "QuantizeLinear to \(target) is not supported"
            }
            if let x = facts.types[node.input(0)], ![.float32, .float16, .bfloat16, .int32].contains(x) {
                return "QuantizeLinear of \(x) is not supported"
            }
        } else {
            if let outputType, let scale = facts.types[node.input(1)], outputType != scale {
                return "DequantizeLinear with output_dtype \(outputType) other than the scale's \(scale) is not supported"
            }
            if let x = facts.types[node.input(0)], quantizedRange(x) == nil, !CastOperation.lowPrecisionFloats.contains(x) {
                return "DequantizeLinear of \(x) is not supported"
            }
        }
        for k in [1, 2] where !node.input(k).isEmpty {
            if let t = facts.types[node.input(k)], k == 1, ![.float32, .float16, .bfloat16].contains(t) {
                return "\(node.op.name) scale of type \(t) is not supported"
            }
        }
        return nil
    }

    /// For each element of a value of `shape`, the element of a scale or zero-point parameter of shape
    /// `param` that applies: nil for a single value; otherwise one per index along `axis` (`block` 0) or
    /// one per `block` consecutive indices along it. Throws when `param` fits neither.
    static func quantizationIndex(_ b: PlanBuilder, param: [Int], shape: [Int], axis: Int, block: Int, what: String) throws -> [Int]? {
        let count = param.reduce(1, *)
        if count == 1 && (param.count <= 1 || block == 0) { return nil }
        guard let a = normalizedAxis(axis, rank: shape.count) else { throw b.invalid("axis \(axis) is out of range for rank \(shape.count)") }
        let length = shape[a], inner = shape[(a + 1)...].reduce(1, *), total = shape.reduce(1, *)
        if block <= 0 {
            guard param == [length] else { throw b.invalid("per-axis \(what) of shape \(param) does not match dim \(a) of \(shape)") }
            return try b.indexTable(total) { ($0 / max(inner, 1)) % max(length, 1) }
        }
        var expected = shape
        expected[a] = length / block + (length % block == 0 ? 0 : 1)  // a block_size near Int.max must not overflow
        guard param == expected else { throw b.invalid("blocked \(what) of shape \(param) does not fit \(shape) with block_size \(block)") }
        let blocks = expected[a]
        return try b.indexTable(total) { i in
            let j = i % max(inner, 1), k = (i / max(inner, 1)) % max(length, 1), o = i / max(length * inner, 1)
            return (o * blocks + k / block) * inner + j
        }
    }

    /// The elements of the value at `p` (type `t`, `count` elements) as Doubles.
    static func doubles(_ p: UnsafeRawPointer, _ t: DType, _ count: Int) -> [Double] {
        let width = t.byteWidth ?? 1
        let storage = TensorStorage(byteCount: count * width) { dst in
            if count > 0 { dst.baseAddress!.copyMemory(from: p, byteCount: count * width) }
        }
        return Tensor(dtype: t, shape: [count], storage: storage).asDoubles()
    }

    /// `x` rounded to the floating-point type `t` that the arithmetic runs in.
    static func rounded(_ x: Double, to t: DType) -> Double {
        switch t {
        case .float32: Double(Float(x))
        case .float16: Double(Float16(Float(x)))
        case .bfloat16: Double(FloatFormats.bfloat16ToFloat(FloatFormats.floatToBFloat16(Float(x))))
        default: x
        }
    }

    /// QuantizeLinear: `saturate(round_half_even(x / scale) + zero_point)` into an integer type, or the
    /// (by `saturate`) saturating conversion of `x / scale + zero_point` into a float8/float4 type. The
    /// division runs in `x`'s type (or `precision`'s).
    static func quantizeLinear(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 2, ins[0] >= 0, ins[1] >= 0, outs.count >= 1 else { throw b.invalid("needs x and y_scale") }
        let zp = ins.count > 2 ? ins[2] : -1
        let xs = try b.shape(ins[0]), xt = try b.dtype(ins[0]), st = try b.dtype(ins[1])
        var target = DType.uint8
        if case let code = try node.int("output_dtype", 0), code != 0 {
            guard let t = DType(onnxCode: code) else { throw b.invalid("unknown output_dtype \(code)") }
            target = t
        }
        if zp >= 0 { target = try b.dtype(zp) }
        var precision = xt
        if case let code = try node.int("precision", 0), code != 0, let t = DType(onnxCode: code) { precision = t }
        let range = quantizedRange(target)
        guard range != nil || CastOperation.lowPrecisionFloats.contains(target) else { throw b.unsupported("quantizing to \(target)") }
        let axis = try node.int("axis", 1), block = try node.int("block_size", 0)
        let saturate = try node.int("saturate", 1) != 0 || target == .float4e2m1
        let sIndex = try quantizationIndex(b, param: try b.shape(ins[1]), shape: xs, axis: axis, block: block, what: "y_scale")
        let zIndex = zp >= 0 ? try quantizationIndex(b, param: try b.shape(zp), shape: xs, axis: axis, block: block, what: "y_zero_point") : nil
        let zt = zp >= 0 ? try b.dtype(zp) : target
        let zCount = zp >= 0 ? try b.shape(zp).reduce(1, *) : 0, sCount = try b.shape(ins[1]).reduce(1, *)
        let count = xs.reduce(1, *)
        if xt == .float32, st == .float32, precision == .float32, target == .uint8 || target == .int8, sIndex == nil, zIndex == nil {
            // The common int8 case in C (kiln_quantize_u8): the same arithmetic as below, without the Double arrays,
            // in chunks across the threads.
            let chunks = splitRange(count, parts: b.threads, granule: 256)
            try b.computeSplit([(outs[0], xs, target)], from: [ins[0], ins[1], zp]) { p, o, split in
                let z: Int32 = zCount == 0 ? 0 : (target == .uint8 ? Int32(p[2].load(as: UInt8.self)) : Int32(p[2].load(as: Int8.self)))
                let x = p[0].assumingMemoryBound(to: Float.self), s = p[1].load(as: Float.self), y = o[0].assumingMemoryBound(to: UInt8.self)
                split(chunks.count) { u in
                    let r = chunks[u]
                    kiln_quantize_u8(x + r.lowerBound, r.count, s, z, target == .int8 ? 1 : 0, y + r.lowerBound)
                }
            }
            return
        }
        try b.compute([(outs[0], xs, target)], from: [ins[0], ins[1], zp]) { p, o in
            let x = doubles(p[0], xt, count), scale = doubles(p[1], st, sCount)
            let zero = zCount > 0 ? doubles(p[2], zt, zCount) : []
            var values = [Int64](), codes = [UInt8]()
            if range != nil { values.reserveCapacity(count) } else { codes.reserveCapacity(count) }
            for i in 0..<count {
                let s = rounded(scale[sIndex?[i] ?? 0], to: precision)
                let q = rounded(rounded(x[i], to: precision) / s, to: precision)
                let z = zero.isEmpty ? 0 : zero[zIndex?[i] ?? 0]
                if let range {
                    // NaN has no integer value: it becomes 0, clamped to the range.
                    let r = q.isNaN ? 0 : q.rounded(.toNearestOrEven) + z
                    values.append(r <= Double(range.lowerBound) ? range.lowerBound : (r >= Double(range.upperBound) ? range.upperBound : Int64(r)))
                } else {
                    var f = Float(q + z)
                    if saturate, f.isInfinite { f = f < 0 ? -.greatestFiniteMagnitude : .greatestFiniteMagnitude }
                    codes.append(target == .float4e2m1 && f.isNaN ? 0x08 : FloatFormats.encode(f, target, saturate: saturate))
                }
            }
            let result = range != nil ? Tensor(dtype: target, shape: [count], int64s: values)
                : Tensor(dtype: target, shape: [count], bitPatterns: codes)
            if let bytes = result.rawBytes, bytes.count > 0 { o[0].copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        }
    }

    /// DequantizeLinear: `(x − zero_point) · scale` in float32, in the scale's type (a float8/float4 `x`
    /// has no zero point).
    static func dequantizeLinear(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 2, ins[0] >= 0, ins[1] >= 0, outs.count >= 1 else { throw b.invalid("needs x and x_scale") }
        let xs = try b.shape(ins[0]), xt = try b.dtype(ins[0]), st = try b.dtype(ins[1])
        let zp = ins.count > 2 && !xt.isFloatingPoint ? ins[2] : -1
        let axis = try node.int("axis", 1), block = try node.int("block_size", 0)
        let sIndex = try quantizationIndex(b, param: try b.shape(ins[1]), shape: xs, axis: axis, block: block, what: "x_scale")
        let zIndex = zp >= 0 ? try quantizationIndex(b, param: try b.shape(zp), shape: xs, axis: axis, block: block, what: "x_zero_point") : nil
        let zt = zp >= 0 ? try b.dtype(zp) : xt
        let zCount = zp >= 0 ? try b.shape(zp).reduce(1, *) : 0, sCount = try b.shape(ins[1]).reduce(1, *)
        let count = xs.reduce(1, *)
        if xt == .uint8 || xt == .int8, st == .float32, zt == xt, sIndex == nil, zIndex == nil {
            // The common int8 case in C (kiln_dequantize_u8), with the same float32 arithmetic as below, in chunks
            // across the threads.
            let chunks = splitRange(count, parts: b.threads, granule: 256)
            try b.computeSplit([(outs[0], xs, st)], from: [ins[0], ins[1], zp]) { p, o, split in
                let s = p[1].load(as: Float.self)
                let z: Int32 = zCount == 0 ? 0 : (xt == .uint8 ? Int32(p[2].load(as: UInt8.self)) : Int32(p[2].load(as: Int8.self)))
                let x = p[0].assumingMemoryBound(to: UInt8.self), y = o[0].assumingMemoryBound(to: Float.self)
                split(chunks.count) { u in
                    let r = chunks[u]
                    kiln_dequantize_u8(x + r.lowerBound, r.count, xt == .int8 ? 1 : 0, z, s, y + r.lowerBound)
                }
            }
            return
        }
        try b.compute([(outs[0], xs, st)], from: [ins[0], ins[1], zp]) { p, o in
            let x = doubles(p[0], xt, count), scale = doubles(p[1], st, sCount)
            let zero = zCount > 0 ? doubles(p[2], zt, zCount) : []
            var out = [Double](repeating: 0, count: count)
            for i in 0..<count {
                let centered = Float(x[i] - (zero.isEmpty ? 0 : zero[zIndex?[i] ?? 0]))
                out[i] = Double(centered * Float(scale[sIndex?[i] ?? 0]))
            }
            let result = Tensor(dtype: st, shape: [count], doubles: out)
            if let bytes = result.rawBytes, bytes.count > 0 { o[0].copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        }
    }
}

extension SwiftOps {
    /// DynamicQuantizeLinear over float32: a uint8 scale and zero point from the range of `x` widened to
    /// include 0 (a range of zero takes the scale 1/255, as kiln.reference does), then `x` quantized with
    /// them (rounding half to even, saturating). Outputs y, y_scale and y_zero_point.
    static func dynamicQuantizeLinear(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 1, ins[0] >= 0, outs.count >= 1 else { throw b.invalid("needs x") }
        try b.requireFloat(ins[0])
        let xs = try b.shape(ins[0]), count = xs.reduce(1, *)
        let scaleOut = outs.count > 1 ? outs[1] : -1, zeroOut = outs.count > 2 ? outs[2] : -1
        try b.compute([(outs[0], xs, .uint8), (scaleOut, [], .float32), (zeroOut, [], .uint8)], from: [ins[0]]) { p, o in
            let x = p[0].assumingMemoryBound(to: Float.self)
            let (lo, hi) = floatRange(x, count)
            let scale: Float = (hi == lo ? 1 : hi - lo) / 255
            let zero = Swift.min(Swift.max(-lo / scale, 0), 255).rounded(.toNearestOrEven)
            // rint(x / scale) + zero, saturated, NaN to 0: the C kernel, vectorized.
            kiln_quantize_u8(x, count, scale, Int32(zero), 0, o[0].assumingMemoryBound(to: UInt8.self))
            o[1].storeBytes(of: scale, as: Float.self)
            o[2].storeBytes(of: UInt8(zero), as: UInt8.self)
        }
    }
}

/// The least and greatest of `count` floats at `x`, and 0 (the range DynamicQuantizeLinear and dynamically
/// quantized LSTMs quantize over); NaNs are skipped (`kiln_float_range`).
func floatRange(_ x: UnsafePointer<Float>, _ count: Int) -> (lo: Float, hi: Float) {
    var lo: Float = 0, hi: Float = 0
    kiln_float_range(x, count, &lo, &hi)
    return (lo, hi)
}
