import CKilnKernels
import KilnIR

/// How the int32 sums of a `QuantizedLinearOperation` become its output.
enum QuantizedOutput: Equatable {
    /// The int32 sums themselves (MatMulInteger, ConvInteger).
    case int32
    /// QLinearMatMul and QLinearConv, rounded exactly as kiln.reference does (double arithmetic; the matmul adds
    /// the zero point before rounding, the convolution after).
    case reference
    /// A fused DequantizeLinear → Conv/MatMul/Gemm (→ Relu) → QuantizeLinear pattern, rounded as ONNX Runtime's
    /// int8 kernels do: `rint(float(acc) · m + bias / y_scale) + y_zero`, in float32, with
    /// `m = float(x_scale · w_scale) / y_scale`. `relu` clamps below at y_zero (Relu before quantizing).
    case fused(relu: Bool)
}

/// Integer matrix products and 1-D/2-D convolutions on the int8 kernels of `CKilnKernels`
/// (`kiln_qgemm`, `kiln_qim2row`, `kiln_qdepthwise`): QLinearMatMul, MatMulInteger, QLinearConv, ConvInteger
/// and the fused QDQ patterns of `Lowering`. Operands are uint8 or int8 (any mix); zero points are per tensor,
/// per output column / channel for the weight, and per row for MatMulInteger's A. Constant weights are packed
/// once, when the operation is built; others are packed each run. Scales and zero points may be computed at run
/// time (they are read when the step runs); their types and shapes are checked while planning.
final class QuantizedLinearOperation: Operation {
    /// The product computed.
    enum Form {
        /// `x · w` with NumPy batch broadcasting (`transB`: the constant `w` is held as `[N, K]`, Gemm's transB).
        case matmul(transB: Bool)
        /// Convolution of NCHW (or NCL) `x` with OIHW (OIL) `w`, with the window attributes of `node` (a
        /// QLinearConv, ConvInteger or Conv node).
        case conv(node: Node, group: Int)
    }

    let kind: String
    let label: String
    let form: Form
    let output: QuantizedOutput
    /// x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, bias (int32); -1 when absent.
    let x: Int, xScale: Int, xZero: Int, w: Int, wScale: Int, wZero: Int, yScale: Int, yZero: Int, bias: Int
    let y: Int
    /// A float32 bias (fused patterns whose bias is not quantized), one per output column.
    let floatBias: [Float]?
    /// The weight packed once (constant 2-D matmul weights; convolution weights per group), with column sums.
    private var prepacked: [(packed: [Int8], sums: [Int32])]?
    /// A constant 3×3 convolution weight (stride 1, dilation 1, one group) less its constant zero points (one per
    /// filter), transformed for kiln_qwinograd_conv, with its column sums, where the int8 kernels prefer it
    /// (kiln_qwinograd_preferred) and the result is exact; nil otherwise.
    private var winograd: (packed: [Int16], sums: [Int32], zeros: [Int32])?
    /// Whether the weight was prepared for kiln_qwinograd_conv.
    var preparedForWinograd: Bool { winograd != nil }
    private let constantWeight: Tensor?

    var inputs: [Int] { [x, xScale, xZero, w, wScale, wZero, yScale, yZero, bias] }
    var outputs: [Int] { [y] }

    /// An operation over the value ids given (-1 for absent ones); `constantWeight` is `w`'s value when it is
    /// a constant, which is then packed here, once, and `constantWeightZero` its zero point's when that is one.
    init(kind: String, label: String, form: Form, output: QuantizedOutput, x: Int, xScale: Int, xZero: Int, w: Int,
         wScale: Int, wZero: Int, yScale: Int, yZero: Int, bias: Int, floatBias: [Float]?, y: Int, constantWeight: Tensor?,
         constantWeightZero: Tensor?) {
        self.kind = kind
        self.label = label
        self.form = form
        self.output = output
        (self.x, self.xScale, self.xZero, self.w, self.wScale, self.wZero) = (x, xScale, xZero, w, wScale, wZero)
        (self.yScale, self.yZero, self.bias, self.y) = (yScale, yZero, bias, y)
        self.floatBias = floatBias
        self.constantWeight = constantWeight
        if let t = constantWeight, t.dtype == .uint8 || t.dtype == .int8, let bytes = t.rawBytes {
            switch form {
            case .matmul(let transB) where t.rank == 2:
                let k = transB ? t.shape[1] : t.shape[0], n = transB ? t.shape[0] : t.shape[1]
                prepacked = [Self.pack(bytes.baseAddress!, k: k, n: n, ks: transB ? 1 : n, ns: transB ? k : 1, unsigned: t.dtype == .uint8)]
            case .conv(let node, let group) where t.rank >= 3 && group > 0 && t.shape[0] % group == 0:
                let m = t.shape[0], k = t.shape.dropFirst().reduce(1, *), mg = m / group
                let hwc = Self.windowMajor(bytes.baseAddress!, filters: m, channels: t.shape[1], window: t.shape.dropFirst(2).reduce(1, *))
                prepacked = hwc.withUnsafeBytes { w in
                    (0..<group).map { g in Self.pack(w.baseAddress! + g * mg * k, k: k, n: mg, ks: 1, ns: k, unsigned: t.dtype == .uint8) }
                }
                let kernel = Array(t.shape.dropFirst(2)), c = t.shape[1]
                if group == 1, kernel == [3, 3], kiln_qwinograd_preferred() != 0, let zeros = Self.filterZeros(wZero, constantWeightZero, t.dtype, m),
                   let win = try? Window(node: node, kernel: kernel), win.strides == [1, 1], win.dilations == [1, 1] {
                    var packed = [Int16](repeating: 0, count: kiln_qwinograd_pack_size(c, m)), sums = [Int32](repeating: 0, count: m)
                    if kiln_qwinograd_pack(c, m, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), t.dtype == .uint8 ? 1 : 0, zeros,
                                           &packed, &sums) != 0 {
                        winograd = (packed, sums, zeros)
                    }
                }
            default: prepacked = nil
            }
        } else {
            prepacked = nil
        }
    }

    /// Each of `filters` filters' zero point, in the weight's type: 0 when it has none (`wZero` −1), from the constant
    /// `zero` (one value or one per filter); nil when the zero point is not a constant of that type.
    private static func filterZeros(_ wZero: Int, _ zero: Tensor?, _ type: DType, _ filters: Int) -> [Int32]? {
        if wZero < 0 { return [Int32](repeating: 0, count: filters) }
        guard let zero, zero.dtype == type, zero.count == 1 || zero.count == filters else { return nil }
        let values = type == .uint8 ? zero.elements(as: UInt8.self).map { Int32($0) } : zero.elements(as: Int8.self).map { Int32($0) }
        return values.count == 1 ? [Int32](repeating: values[0], count: filters) : values
    }

    /// A convolution weight [filters][channels][window] reordered to [filters][window][channels], the K order of
    /// kiln_qim2row_hwc.
    static func windowMajor(_ w: UnsafeRawPointer, filters: Int, channels: Int, window: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: filters * channels * window)
        let src = w.assumingMemoryBound(to: UInt8.self)
        for f in 0..<filters {
            for c in 0..<channels {
                for t in 0..<window { out[(f * window + t) * channels + c] = src[(f * channels + c) * window + t] }
            }
        }
        return out
    }

    /// `b` (k × n at strides ks, ns) packed by kiln_qgemm_pack_b, with its column sums.
    static func pack(_ b: UnsafeRawPointer, k: Int, n: Int, ks: Int, ns: Int, unsigned: Bool) -> (packed: [Int8], sums: [Int32]) {
        var packed = [Int8](repeating: 0, count: max(kiln_qgemm_pack_b_size(k, n), 1))
        var sums = [Int32](repeating: 0, count: max(n, 1))
        packed.withUnsafeMutableBufferPointer { p in
            sums.withUnsafeMutableBufferPointer { s in
                kiln_qgemm_pack_b(k, n, b, ks, ns, unsigned ? 1 : 0, p.baseAddress!, s.baseAddress!)
            }
        }
        return (packed, sums)
    }

    // MARK: planning

    /// Checks that `id` is absent or one of `types` and holds 1 element or `count` (nil: 1 only); returns how
    /// many it holds (0 when absent).
    private func parameter(_ b: PlanBuilder, _ id: Int, _ what: String, types: Set<DType>, count: Int?) throws -> Int {
        guard id >= 0 else { return 0 }
        let t = try b.dtype(id), shape = try b.shape(id), n = shape.reduce(1, *)
        guard types.contains(t) else { throw b.invalid("\(what) is \(t); expected \(types.map(\.description).sorted().joined(separator: " or "))") }
        guard n == 1 || (count != nil && n == count! && shape.filter({ $0 != 1 }).count <= 1) else {
            throw b.invalid("\(what) of shape \(shape) must be a scalar\(count.map { " or hold \($0) values" } ?? "")")
        }
        return n
    }

    /// The scale types accepted: float32, and float16 for QLinearMatMul and QLinearConv (as kiln.reference does).
    private var scaleTypes: Set<DType> { output == .reference ? [.float32, .float16] : [.float32] }

    func plan(_ b: PlanBuilder) throws {
        let xt = try b.dtype(x), wt = try b.dtype(w)
        let bytes: Set<DType> = [.uint8, .int8]
        guard bytes.contains(xt), bytes.contains(wt) else { throw b.invalid("operands are \(xt) and \(wt); uint8 or int8 expected") }
        if xZero >= 0, try b.dtype(xZero) != xt {
            throw b.invalid("the zero point of '\(b.name(x))' is \(try b.dtype(xZero)); expected \(xt), the type of '\(b.name(x))'")
        }
        let outType: DType
        switch output {
        case .int32: outType = .int32
        case .reference, .fused:
            outType = yZero >= 0 ? try b.dtype(yZero) : (output == .reference ? xt : .uint8)
            guard bytes.contains(outType) else { throw b.unsupported("quantized output type \(outType)") }
            _ = try parameter(b, xScale, "x_scale", types: scaleTypes, count: nil)
            _ = try parameter(b, yScale, "y_scale", types: scaleTypes, count: nil)
            _ = try parameter(b, yZero, "y_zero_point", types: [outType], count: nil)
            guard xScale >= 0, wScale >= 0, yScale >= 0 else { throw b.invalid("needs x_scale, w_scale and y_scale") }
            guard try b.dtype(wScale) == b.dtype(xScale), try b.dtype(yScale) == b.dtype(xScale) else {
                throw b.invalid("the scales are \(try b.dtype(xScale)), \(try b.dtype(wScale)) and \(try b.dtype(yScale)); they must have one type")
            }
        }
        switch form {
        case .matmul(let transB): try planMatMul(b, xt: xt, wt: wt, outType: outType, transB: transB)
        case .conv(let node, let group):
            try planConv(b, xt: xt, wt: wt, outType: outType, node: node, group: group)
        }
    }

    /// The run-time values of the scales, zero points and bias that the output stage reads.
    private struct Stage {
        var multipliers: [Double] = [0]
        var wZero: [Int32] = [0]
        var yZero: Int32 = 0
        var fbias: [Float]? = nil
        var round = KILN_QROUND_DOUBLE
        var out = KILN_QOUT_INT32
        var qmin: Int32 = 0, qmax: Int32 = 0
    }

    /// Reads the scales and zero points from `frame` and computes the output stage for `n` columns.
    private static func stage(_ frame: Frame, output: QuantizedOutput, isMatMul: Bool, outType: DType, n: Int,
                              xScale: Int, wScale: Int, wScaleCount: Int, yScale: Int, yZero: Int, wZero: Int,
                              wZeroCount: Int, wType: DType, floatBias: [Float]?, scaleType: DType) -> Stage {
        var s = Stage()
        if wZero >= 0 { s.wZero = int32s(frame.raw(wZero), wType, wZeroCount) }
        if output == .int32 { return s }
        let half = scaleType == .float16
        func scales(_ id: Int, _ count: Int) -> [Float] {
            let p = UnsafeRawPointer(frame.raw(id))
            return (0..<count).map { half ? Float(p.load(fromByteOffset: 2 * $0, as: Float16.self)) : p.load(fromByteOffset: 4 * $0, as: Float.self) }
        }
        /// `v` rounded to the scales' type, as kiln.reference rounds QLinearMatMul's multiplier.
        func rounded(_ v: Double) -> Double { half ? Double(Float16(Float(v))) : Double(Float(v)) }
        let xs = scales(xScale, 1)[0], ys = scales(yScale, 1)[0], ws = scales(wScale, wScaleCount)
        if yZero >= 0 { s.yZero = int32s(frame.raw(yZero), outType, 1)[0] }
        s.out = outType == .uint8 ? KILN_QOUT_UINT8 : KILN_QOUT_INT8
        (s.qmin, s.qmax) = outType == .uint8 ? (0, 255) : (-128, 127)
        switch output {
        case .int32: break
        case .reference where isMatMul:
            // kiln.reference: the multiplier rounded to float32 twice, the zero point added before rounding.
            s.multipliers = ws.map { rounded(rounded(Double(xs) * Double($0)) / Double(ys)) }
            s.round = KILN_QROUND_DOUBLE_ZERO_IN
        case .reference:
            s.multipliers = ws.map { Double(xs) * Double($0) / Double(ys) }
            s.round = KILN_QROUND_DOUBLE
        case .fused(let relu):
            s.multipliers = ws.map { Double(xs * $0 / ys) }
            s.round = KILN_QROUND_FLOAT
            s.fbias = floatBias.map { $0.map { $0 / ys } }
            if relu { s.qmin = max(s.qmin, min(s.yZero, s.qmax)) }
        }
        return s
    }

    /// The first `count` elements of an int8/uint8/int32 value as Int32.
    static func int32s(_ p: UnsafeRawPointer, _ t: DType, _ count: Int) -> [Int32] {
        switch t {
        case .uint8: (0..<count).map { Int32(p.load(fromByteOffset: $0, as: UInt8.self)) }
        case .int8: (0..<count).map { Int32(p.load(fromByteOffset: $0, as: Int8.self)) }
        default: (0..<count).map { p.load(fromByteOffset: 4 * $0, as: Int32.self) }
        }
    }

    // MARK: matrix products

    private func planMatMul(_ b: PlanBuilder, xt: DType, wt: DType, outType: DType, transB: Bool) throws {
        var aShape = try b.shape(x), bShape = try b.shape(w)
        guard !aShape.isEmpty, !bShape.isEmpty else { throw b.invalid("operands must have rank ≥ 1") }
        let aVector = aShape.count == 1, bVector = bShape.count == 1
        if aVector { aShape = [1, aShape[0]] }
        if bVector { bShape = [bShape[0], 1] }
        if transB { bShape.swapAt(bShape.count - 1, bShape.count - 2) }
        let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1], n = bShape[bShape.count - 1]
        guard bShape[bShape.count - 2] == k else { throw b.invalid("inner dims differ: \(try b.shape(x)) × \(try b.shape(w))") }
        let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
        guard let outBatch = Broadcasting.shape(aBatch, bBatch) else { throw b.invalid("batch dims \(aBatch) and \(bBatch) do not broadcast") }
        var outShape = outBatch + [m, n]
        if aVector { outShape.remove(at: outShape.count - 2) }
        if bVector { outShape.removeLast() }
        try b.define(y, shape: outShape, dtype: outType)

        let wScaleCount = output == .int32 ? 0 : try parameter(b, wScale, "w_scale", types: scaleTypes, count: n)
        let wZeroCount = try parameter(b, wZero, "the zero point of '\(b.name(w))'", types: [wt], count: n)
        var xZeroRows = 0
        if xZero >= 0, try b.shape(xZero).reduce(1, *) != 1 {
            // MatMulInteger's per-row zero point of a matrix A.
            guard output == .int32, aBatch.isEmpty, try b.shape(xZero).reduce(1, *) == m else {
                throw b.invalid("a_zero_point of shape \(try b.shape(xZero)) must be a scalar\(output == .int32 ? " or hold one value per row of a matrix A" : "")")
            }
            xZeroRows = m
        }
        if let floatBias, floatBias.count != n { throw b.invalid("bias has \(floatBias.count) values for \(n) columns") }
        if bias >= 0 { _ = try parameter(b, bias, "bias", types: [.int32], count: n) }
        let total = (outBatch + [m, n]).reduce(1, *)
        if total == 0 { return }
        if k == 0 { throw b.unsupported("empty inner dimension") }

        func offsets(_ batch: [Int], matrix: Int) -> [Int] {
            let padded = [Int](repeating: 1, count: outBatch.count - batch.count) + batch
            var strides = [Int](repeating: 0, count: padded.count), running = matrix
            for i in stride(from: padded.count - 1, through: 0, by: -1) {
                strides[i] = padded[i] == 1 ? 0 : running
                running *= padded[i]
            }
            return batchIndices(outBatch).map { idx in zip(idx, strides).reduce(0) { $0 + $1.0 * $1.1 } }
        }
        let aOffsets = offsets(aBatch, matrix: m * k), bOffsets = offsets(bBatch, matrix: k * n)
        let batchCount = outBatch.reduce(1, *)
        let bMatrices = bBatch.reduce(1, *)
        let prepacked = bBatch.isEmpty ? self.prepacked : nil
        let packBytes = kiln_qgemm_pack_b_size(k, n)
        let packScratch = prepacked == nil ? try b.scratch(bytes: bMatrices * (packBytes + 4 * n) + 64) : -1
        let rowParts = max(1, (b.threads * 2 + batchCount - 1) / batchCount)
        var units: [(batch: Int, rows: Range<Int>)] = []
        for i in 0..<batchCount {
            for r in splitRange(m, parts: rowParts, granule: Int(KILN_QGEMM_MR)) { units.append((i, r)) }
        }
        let (x, w, yID, bias, output) = (self.x, self.w, self.y, self.bias, self.output)
        let (xZero, xScale, wScale, yScale, yZero, wZero, floatBias) = (self.xZero, self.xScale, self.wScale, self.yScale, self.yZero, self.wZero, self.floatBias)
        let xSigned = xt == .int8, wUnsigned = wt == .uint8
        let scaleType = output == .int32 ? DType.float32 : try b.dtype(xScale)
        b.step { frame in
            let st = Self.stage(frame, output: output, isMatMul: true, outType: outType, n: n, xScale: xScale, wScale: wScale,
                                wScaleCount: wScaleCount, yScale: yScale, yZero: yZero, wZero: wZero, wZeroCount: wZeroCount,
                                wType: wt, floatBias: floatBias, scaleType: scaleType)
            let za: Int32 = xZero >= 0 && xZeroRows == 0 ? Self.int32s(frame.raw(xZero), xt, 1)[0] : 0
            let zaRows = xZeroRows > 0 ? Self.int32s(frame.raw(xZero), xt, xZeroRows) : []
            // Packed B per matrix: the constant, or packed now into scratch.
            var packs: [(UnsafePointer<Int8>, UnsafePointer<Int32>)] = []
            var keep: [Int8] = [], keepSums: [Int32] = []
            if let prepacked {
                keep = prepacked[0].packed
                keepSums = prepacked[0].sums
            } else {
                let base = frame.scratch(packScratch)
                let wp = UnsafeRawPointer(frame.raw(w))
                for j in 0..<bMatrices {
                    let pp = (base + j * (packBytes + 4 * n)).assumingMemoryBound(to: Int8.self)
                    let sp = (base + j * (packBytes + 4 * n) + packBytes).assumingMemoryBound(to: Int32.self)
                    kiln_qgemm_pack_b(k, n, wp + j * k * n, transB ? 1 : n, transB ? k : 1, wUnsigned ? 1 : 0, pp, sp)
                    packs.append((UnsafePointer(pp), UnsafePointer(sp)))
                }
            }
            let ap = UnsafeRawPointer(frame.raw(x)).assumingMemoryBound(to: UInt8.self)
            let cp = frame.raw(yID)
            let biasP: UnsafePointer<Int32>? = bias >= 0 ? UnsafePointer(frame.raw(bias).assumingMemoryBound(to: Int32.self)) : nil
            let width = outType == .int32 ? 4 : 1
            keep.withUnsafeBufferPointer { kp in keepSums.withUnsafeBufferPointer { ks in
            st.multipliers.withUnsafeBufferPointer { mp in st.wZero.withUnsafeBufferPointer { zp in
            zaRows.withUnsafeBufferPointer { zr in (st.fbias ?? []).withUnsafeBufferPointer { fb in
                frame.pool.parallelFor(units.count) { u in
                    let (i, rows) = units[u]
                    var p = kiln_qgemm_params()
                    p.m = m; p.n = n; p.k = k
                    p.a = ap + aOffsets[i]; p.lda = k; p.a_signed = xSigned ? 1 : 0; p.a_zero = za
                    p.a_zero_rows = zaRows.isEmpty ? nil : zr.baseAddress
                    if prepacked != nil {
                        p.packed_b = kp.baseAddress; p.col_sums = ks.baseAddress
                    } else {
                        let j = bMatrices == 1 ? 0 : bOffsets[i] / max(k * n, 1)
                        p.packed_b = packs[j].0; p.col_sums = packs[j].1
                    }
                    p.b_unsigned = wUnsigned ? 1 : 0
                    p.b_zero = wZero >= 0 ? zp.baseAddress : nil
                    p.b_zero_stride = wZeroCount > 1 ? 1 : 0
                    p.bias = biasP
                    p.out = st.out
                    p.c = cp + i * m * n * width
                    p.rs = n; p.cs = 1
                    p.multiplier = mp.baseAddress; p.multiplier_stride = st.multipliers.count > 1 ? 1 : 0
                    p.fbias = st.fbias == nil ? nil : fb.baseAddress
                    p.y_zero = st.yZero; p.qmin = st.qmin; p.qmax = st.qmax; p.round = st.round
                    kiln_qgemm(&p, rows.lowerBound, rows.upperBound, 0, n)
                }
            } } } } } }
        }
    }

    // MARK: convolutions

    private func planConv(_ b: PlanBuilder, xt: DType, wt: DType, outType: DType, node: Node, group: Int) throws {
        let xs = try b.shape(x), ws = try b.shape(w)
        guard xs.count == 3 || xs.count == 4, ws.count == xs.count else {
            throw b.unsupported("int8 convolutions over \(xs.count - 2)-D windows (X \(xs), W \(ws)); 1-D and 2-D run here")
        }
        let r = xs.count - 2
        let kernel = Array(ws[2...])
        if let kernelShape = try node.ints("kernel_shape"), kernelShape != kernel {
            throw b.invalid("kernel_shape \(kernelShape) does not match W \(ws)")
        }
        guard kernel.allSatisfy({ $0 > 0 }) else { throw b.invalid("empty kernel \(kernel)") }
        let win = try Window(node: node, kernel: kernel)
        let batch = xs[0], c = xs[1], mOut = ws[0]
        guard group > 0, c % group == 0, mOut % group == 0, ws[1] * group == c else {
            throw b.invalid("channels of X \(xs) and W \(ws) do not match group \(group)")
        }
        let resolved = win.resolve(Array(xs[2...]))
        let outShape = [batch, mOut] + resolved.output
        try b.define(y, shape: outShape, dtype: outType)
        _ = try parameter(b, xZero, "the zero point of '\(b.name(x))'", types: [xt], count: nil)
        let wScaleCount = output == .int32 ? 0 : try parameter(b, wScale, "w_scale", types: scaleTypes, count: mOut)
        let wZeroCount = try parameter(b, wZero, "the zero point of '\(b.name(w))'", types: [wt], count: mOut)
        if bias >= 0 { _ = try parameter(b, bias, "bias", types: [.int32], count: mOut) }
        if let floatBias, floatBias.count != mOut { throw b.invalid("bias has \(floatBias.count) values for \(mOut) channels") }
        if outShape.reduce(1, *) == 0 { return }

        let h = r == 2 ? xs[2] : 1, wd = xs[xs.count - 1]
        let oh = r == 2 ? resolved.output[0] : 1, ow = resolved.output[r - 1]
        let kh = r == 2 ? kernel[0] : 1, kw = kernel[r - 1]
        var p = kiln_conv2d_params()
        p.in_channels = c; p.in_height = h; p.in_width = wd
        p.out_channels = mOut; p.out_height = oh; p.out_width = ow
        p.kernel_h = kh; p.kernel_w = kw
        p.stride_h = r == 2 ? win.strides[0] : 1; p.stride_w = win.strides[r - 1]
        p.pad_top = r == 2 ? resolved.begin[0] : 0; p.pad_left = resolved.begin[r - 1]
        p.dilation_h = r == 2 ? win.dilations[0] : 1; p.dilation_w = win.dilations[r - 1]
        p.groups = group
        let geometry = p
        let planeIn = c * h * wd, planeOut = mOut * oh * ow, pixels = oh * ow
        let cg = c / group, mg = mOut / group, kDim = cg * kh * kw, ld = (kDim + 3) / 4 * 4
        let depthwise = cg == 1 && mg == 1
        // One group, no dilation, whole groups of 4 k per kernel row: the product reads each window straight from a
        // padded channels-last copy of the image (kiln_qpad_hwc, kiln_qgemm's a_segments), one kernel row a piece,
        // with no im2row copy. hp × paddedWidth: the padded pixels the windows cover.
        let implicit = !depthwise && group == 1 && p.dilation_h == 1 && p.dilation_w == 1 && (kw * c) % 4 == 0
        let hp = (oh - 1) * p.stride_h + kh, paddedWidth = (ow - 1) * p.stride_w + kw
        let threads = b.threads
        let prepacked = self.prepacked
        let packBytes = kiln_qgemm_pack_b_size(kDim, mg)
        let packScratch = !depthwise && prepacked == nil ? try b.scratch(bytes: group * (packBytes + 4 * mg) + 64) : -1
        let rowScratch = depthwise || implicit ? -1 : try b.scratch(bytes: pixels * ld + 64)
        // Winograd F(2×2, 3×3) (a prepared 3×3 weight, 2-D): 2×2 output tiles read 4×4 windows of a padded copy
        // wgWidth pixels wide, with rows and columns up to whole tiles.
        let winograd = r == 2 ? self.winograd : nil
        let tileRows = (oh + 1) / 2, wgWidth = 2 * ((ow + 1) / 2) + 2, wgBytes = winograd == nil ? 0 : (2 * tileRows + 2) * wgWidth * c
        let hwcScratch = depthwise ? -1 : try b.scratch(bytes: max(implicit ? hp * paddedWidth * c : planeIn, wgBytes) + 64)
        let wgPadChunks = splitRange(2 * tileRows + 2, parts: threads), tileChunks = splitRange(tileRows, parts: threads * 2)
        let padChunks = splitRange(hp, parts: threads)
        let outputRows = splitRange(oh, parts: threads * 2)
        let inputChunks = splitRange(h * wd, parts: threads, granule: 64)
        let chunks = splitRange(pixels, parts: threads * 2, granule: Int(KILN_QGEMM_MR) * 4)
        let channelChunks = splitRange(mOut, parts: threads * 2)
        let (x, w, yID, bias, output) = (self.x, self.w, self.y, self.bias, self.output)
        let (xZero, xScale, wScale, yScale, yZero, wZero, floatBias) = (self.xZero, self.xScale, self.wScale, self.yScale, self.yZero, self.wZero, self.floatBias)
        let xSigned = xt == .int8, wUnsigned = wt == .uint8
        let scaleType = output == .int32 ? DType.float32 : try b.dtype(xScale)
        b.step { frame in
            let st = Self.stage(frame, output: output, isMatMul: false, outType: outType, n: mOut, xScale: xScale, wScale: wScale,
                                wScaleCount: wScaleCount, yScale: yScale, yZero: yZero, wZero: wZero, wZeroCount: wZeroCount,
                                wType: wt, floatBias: floatBias, scaleType: scaleType)
            let za: Int32 = xZero >= 0 ? Self.int32s(frame.raw(xZero), xt, 1)[0] : 0
            let padByte = UInt8(truncatingIfNeeded: za)
            let xp = UnsafeRawPointer(frame.raw(x)).assumingMemoryBound(to: UInt8.self)
            let wp = UnsafeRawPointer(frame.raw(w))
            let cp = frame.raw(yID)
            let biasP: UnsafePointer<Int32>? = bias >= 0 ? UnsafePointer(frame.raw(bias).assumingMemoryBound(to: Int32.self)) : nil
            let width = outType == .int32 ? 4 : 1
            var packs: [(UnsafePointer<Int8>, UnsafePointer<Int32>)] = []
            if !depthwise, prepacked == nil {
                let base = frame.scratch(packScratch)
                let hwc = Self.windowMajor(wp, filters: mOut, channels: cg, window: kh * kw)
                hwc.withUnsafeBytes { w in
                    for g in 0..<group {
                        let pp = (base + g * (packBytes + 4 * mg)).assumingMemoryBound(to: Int8.self)
                        let sp = (base + g * (packBytes + 4 * mg) + packBytes).assumingMemoryBound(to: Int32.self)
                        kiln_qgemm_pack_b(kDim, mg, w.baseAddress! + g * mg * kDim, 1, kDim, wUnsigned ? 1 : 0, pp, sp)
                        packs.append((UnsafePointer(pp), UnsafePointer(sp)))
                    }
                }
            }
            let rows = depthwise || implicit ? nil : frame.scratch(rowScratch).assumingMemoryBound(to: UInt8.self)
            st.multipliers.withUnsafeBufferPointer { mp in st.wZero.withUnsafeBufferPointer { zp in
            (st.fbias ?? []).withUnsafeBufferPointer { fb in
                func params(group g: Int, image: Int) -> kiln_qgemm_params {
                    var q = kiln_qgemm_params()
                    q.m = pixels; q.n = mg; q.k = kDim
                    q.a_signed = xSigned ? 1 : 0; q.a_zero = za
                    q.b_unsigned = wUnsigned ? 1 : 0
                    let perChannelZero = wZeroCount > 1, perChannelScale = st.multipliers.count > 1
                    q.b_zero = wZero >= 0 ? zp.baseAddress! + (perChannelZero ? g * mg : 0) : nil
                    q.b_zero_stride = perChannelZero ? 1 : 0
                    q.bias = biasP.map { $0 + g * mg }
                    q.out = st.out
                    q.c = cp + (image * planeOut + g * mg * pixels) * width
                    q.rs = 1; q.cs = pixels
                    q.multiplier = mp.baseAddress! + (perChannelScale ? g * mg : 0)
                    q.multiplier_stride = perChannelScale ? 1 : 0
                    q.fbias = st.fbias == nil ? nil : fb.baseAddress! + g * mg
                    q.y_zero = st.yZero; q.qmin = st.qmin; q.qmax = st.qmax; q.round = st.round
                    return q
                }
                for image in 0..<batch {
                    let xi = xp + image * planeIn
                    if depthwise {
                        var q = params(group: 0, image: image)
                        q.rs = pixels; q.cs = 1
                        q.b_zero = nil
                        let wz = wZero >= 0 ? zp.baseAddress : nil
                        let wBytes = wp.assumingMemoryBound(to: UInt8.self)
                        frame.pool.parallelFor(channelChunks.count) { u in
                            var qq = q
                            withUnsafePointer(to: geometry) { pp in
                                kiln_qdepthwise(pp, xi, xSigned ? 1 : 0, za, wBytes, wUnsigned ? 0 : 1, wz, wZeroCount > 1 ? 1 : 0, &qq,
                                                channelChunks[u].lowerBound, channelChunks[u].upperBound)
                            }
                        }
                        continue
                    }
                    let hwc = frame.scratch(hwcScratch).assumingMemoryBound(to: UInt8.self)
                    // The Winograd filters hold the zero points they were prepared with: these, as the run reads them.
                    if let winograd, st.wZero.count == 1 ? winograd.zeros.allSatisfy({ $0 == st.wZero[0] }) : st.wZero == winograd.zeros {
                        frame.pool.parallelFor(wgPadChunks.count) { u in
                            kiln_qpad_hwc(xi, c, h, wd, geometry.pad_top, geometry.pad_left, wgWidth, padByte, hwc,
                                          wgPadChunks[u].lowerBound, wgPadChunks[u].upperBound)
                        }
                        var q = params(group: 0, image: image)
                        q.b_zero = nil
                        winograd.packed.withUnsafeBufferPointer { pk in winograd.sums.withUnsafeBufferPointer { ps in
                            q.col_sums = ps.baseAddress
                            let qq = q
                            frame.pool.parallelFor(tileChunks.count) { u in
                                withUnsafePointer(to: geometry) { gp in withUnsafePointer(to: qq) { qp in
                                    kiln_qwinograd_conv(gp, hwc, wgWidth, pk.baseAddress, qp, tileChunks[u].lowerBound, tileChunks[u].upperBound)
                                } }
                            }
                        } }
                        continue
                    }
                    if implicit {
                        frame.pool.parallelFor(padChunks.count) { u in
                            kiln_qpad_hwc(xi, c, h, wd, geometry.pad_top, geometry.pad_left, paddedWidth, padByte, hwc,
                                          padChunks[u].lowerBound, padChunks[u].upperBound)
                        }
                        var q = params(group: 0, image: image)
                        if let prepacked {
                            prepacked[0].packed.withUnsafeBufferPointer { pk in prepacked[0].sums.withUnsafeBufferPointer { ps in
                                q.packed_b = pk.baseAddress; q.col_sums = ps.baseAddress
                                Self.implicitRows(frame, geometry, UnsafePointer(hwc), paddedWidth, outputRows, width, q)
                            } }
                        } else {
                            q.packed_b = packs[0].0; q.col_sums = packs[0].1
                            Self.implicitRows(frame, geometry, UnsafePointer(hwc), paddedWidth, outputRows, width, q)
                        }
                        continue
                    }
                    // The image channels-last, so that each window row is one copy of adjacent pixels.
                    frame.pool.parallelFor(inputChunks.count) { u in
                        kiln_qtranspose_hwc(xi, c, h * wd, hwc, inputChunks[u].lowerBound, inputChunks[u].upperBound)
                    }
                    for g in 0..<group {
                        var q = params(group: g, image: image)
                        if let prepacked {
                            prepacked[g].packed.withUnsafeBufferPointer { pk in prepacked[g].sums.withUnsafeBufferPointer { ps in
                                q.packed_b = pk.baseAddress; q.col_sums = ps.baseAddress
                                let qq = q
                                Self.convChunks(frame, geometry, UnsafePointer(hwc), g, padByte, rows!, ld, chunks, qq)
                            } }
                        } else {
                            q.packed_b = packs[g].0; q.col_sums = packs[g].1
                            Self.convChunks(frame, geometry, UnsafePointer(hwc), g, padByte, rows!, ld, chunks, q)
                        }
                    }
                }
            } } }
        }
    }

    /// The product of one output row at a time, its windows read from the padded channels-last image `padded`
    /// (`wp` pixels a row): row ox of A at ox·stride·C, kernel row ky a piece wp·C bytes further (a_segments).
    /// `q` writes [channel][pixel] with elements of `width` bytes.
    private static func implicitRows(_ frame: Frame, _ params: kiln_conv2d_params, _ padded: UnsafePointer<UInt8>, _ wp: Int,
                                     _ rows: [Range<Int>], _ width: Int, _ q: kiln_qgemm_params) {
        let c = params.in_channels, ow = params.out_width
        frame.pool.parallelFor(rows.count) { u in
            for oy in rows[u] {
                var r = q
                r.a = padded + oy * params.stride_h * wp * c
                r.lda = params.stride_w * c
                r.m = ow
                r.a_segments = params.kernel_h
                r.a_segment_stride = wp * c
                r.c = q.c! + oy * ow * width
                kiln_qgemm(&r, 0, ow, 0, r.n)
            }
        }
    }

    /// im2row (from the channels-last image `input`) then the product, one chunk of output pixels per task.
    private static func convChunks(_ frame: Frame, _ params: kiln_conv2d_params, _ input: UnsafePointer<UInt8>, _ group: Int,
                                   _ padByte: UInt8, _ rows: UnsafeMutablePointer<UInt8>, _ ld: Int, _ chunks: [Range<Int>],
                                   _ q: kiln_qgemm_params) {
        frame.pool.parallelFor(chunks.count) { u in
            let range = chunks[u]
            var qq = q
            qq.a = UnsafePointer(rows)
            qq.lda = ld
            withUnsafePointer(to: params) { pp in
                kiln_qim2row_hwc(pp, input, group, padByte, rows + range.lowerBound * ld, ld, range.lowerBound, range.upperBound)
            }
            kiln_qgemm(&qq, range.lowerBound, range.upperBound, 0, qq.n)
        }
    }
}

extension QuantizedLinearOperation {
    /// Why kiln.cpu cannot run a QLinearMatMul, MatMulInteger, QLinearConv or ConvInteger node, or nil.
    static func rejection(_ node: Node, _ facts: SupportFacts) -> String? {
        let name = node.op.name
        let isConv = name == "QLinearConv" || name == "ConvInteger"
        let (xi, wi) = name.hasPrefix("QLinear") ? (0, 3) : (0, 1)
        for k in [xi, wi] {
            if let t = facts.types[node.input(k)], t != .uint8, t != .int8 { return "\(name) of \(t) is not supported (uint8 or int8)" }
        }
        if name.hasPrefix("QLinear") {
            for k in [1, 4, 6] where !node.input(k).isEmpty {
                if let t = facts.types[node.input(k)], t != .float32, t != .float16 {
                    return "\(name) with a \(t) scale is not supported (float32 or float16)"
                }
            }
        }
        if isConv {
            if let reason = Window.rejection(of: node) { return reason }
            let wName = node.input(wi)
            let rank = facts.constants[wName]?.rank
            if let k = ((try? node.ints("kernel_shape")) ?? nil)?.count ?? rank.map({ $0 - 2 }), k > 2 {
                return "\(name) over \(k)-D windows is not supported (1-D and 2-D)"
            }
        }
        return nil
    }
}

extension Lowering {
    /// QLinearMatMul, MatMulInteger, QLinearConv and ConvInteger: one `QuantizedLinearOperation` each, with a
    /// constant weight packed now.
    mutating func lowerQuantizedLinear(_ node: Node, at i: Int) throws {
        func v(_ k: Int) -> Int { node.input(k).isEmpty ? -1 : program.id(node.input(k)) }
        let name = node.op.name
        let isConv = name == "QLinearConv" || name == "ConvInteger"
        let group = isConv ? try node.int("group", 1) : 1
        guard group >= 1 else { throw KilnError(.invalidModel, "node '\(node.displayName)' (\(name)): group must be ≥ 1") }
        let form: QuantizedLinearOperation.Form = isConv ? .conv(node: node, group: group) : .matmul(transB: false)
        guard let out = node.outputs.first, !out.isEmpty else { throw KilnError(.invalidModel, "node '\(node.displayName)' (\(name)) has no output") }
        let op: QuantizedLinearOperation
        if name.hasPrefix("QLinear") {
            op = QuantizedLinearOperation(kind: name, label: node.displayName, form: form, output: .reference, x: v(0), xScale: v(1),
                                          xZero: v(2), w: v(3), wScale: v(4), wZero: v(5), yScale: v(6), yZero: v(7),
                                          bias: isConv ? v(8) : -1, floatBias: nil, y: program.id(out),
                                          constantWeight: constants[node.input(3)], constantWeightZero: constants[node.input(5)])
        } else {
            op = QuantizedLinearOperation(kind: name, label: node.displayName, form: form, output: .int32, x: v(0), xScale: -1,
                                          xZero: v(2), w: v(1), wScale: -1, wZero: v(3), yScale: -1, yZero: -1, bias: -1,
                                          floatBias: nil, y: program.id(out), constantWeight: constants[node.input(1)],
                                          constantWeightZero: constants[node.input(3)])
        }
        placeOperation(op, nodes: [i])
    }
}
