import KilnIR

/// Convolutions: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv and Col2Im.
///
/// Every convolution is computed in `Double` as im2col (or col2im) plus a blocked matrix product over
/// raw buffers, so that whole image models run at a usable speed through the reference backend.
enum ConvolutionOps {
    static func register(into table: inout KernelTable) {
        table.add("Conv") { ctx in [.tensor(try conv(ctx))] }
        table.add("ConvTranspose") { ctx in [.tensor(try convTranspose(ctx))] }
        table.add("ConvInteger") { ctx in [.tensor(try convInteger(ctx))] }
        table.add("QLinearConv") { ctx in [.tensor(try qlinearConv(ctx))] }
        table.add("DeformConv") { ctx in [.tensor(try deformConv(ctx))] }
        table.add("Col2Im") { ctx in [.tensor(try col2imOp(ctx))] }
    }

    // MARK: geometry

    /// The geometry of a sliding window over the spatial dims of a tensor: for output position `o` and
    /// kernel tap `k` along dim `j`, the window reads input coordinate `o*strides[j] - padsBegin[j] + k*dilations[j]`.
    struct Window {
        /// Spatial dims of the tensor the window slides over.
        var input: [Int]
        /// Kernel (window) dims.
        var kernel: [Int]
        /// Step between window positions, per dim.
        var strides: [Int]
        /// Step between kernel taps, per dim.
        var dilations: [Int]
        /// Padding before each dim.
        var padsBegin: [Int]
        /// Padding after each dim.
        var padsEnd: [Int]
        /// Number of window positions along each dim.
        var output: [Int]

        /// Number of kernel taps.
        var kernelCount: Int { kernel.reduce(1, *) }
        /// Number of window positions.
        var outputCount: Int { output.reduce(1, *) }
        /// Number of input elements per channel.
        var inputCount: Int { input.reduce(1, *) }
        /// Number of spatial dims.
        var rank: Int { input.count }

        /// For every dim, `kernel[j] * output[j]` entries concatenated: the input coordinate read by tap `k` at
        /// position `o` (at `offsets[j] + k * output[j] + o`), or -1 where it falls outside the input.
        func tapTable() -> (table: [Int], offsets: [Int]) {
            var table = [Int]()
            var offsets = [Int]()
            for j in 0..<rank {
                offsets.append(table.count)
                for k in 0..<kernel[j] {
                    for o in 0..<output[j] {
                        let p = o * strides[j] - padsBegin[j] + k * dilations[j]
                        table.append(p >= 0 && p < input[j] ? p : -1)
                    }
                }
            }
            return (table, offsets)
        }
    }

    /// Reads `strides`, `dilations`, `pads` and `auto_pad` for a convolution whose kernel dims are `kernel`
    /// over spatial dims `input`, and computes the output dims.
    static func convWindow(_ ctx: KernelContext, input: [Int], kernel: [Int]) throws -> Window {
        let r = input.count
        let strides = try ctx.ints("strides") ?? Array(repeating: 1, count: r)
        let dilations = try ctx.ints("dilations") ?? Array(repeating: 1, count: r)
        guard strides.count == r, dilations.count == r, kernel.count == r else {
            throw ctx.fail("strides, dilations and kernel_shape must have \(r) entries")
        }
        guard strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
            throw ctx.fail("strides and dilations must be positive")
        }
        try ctx.checkRange(strides, "strides", 1...windowLimit)
        try ctx.checkRange(dilations, "dilations", 1...windowLimit)
        try ctx.checkRange(kernel, "the kernel shape", 0...windowLimit)
        try ctx.checkRange(input, "the input's spatial dims", 0...windowLimit)
        let autoPad = try ctx.string("auto_pad", "NOTSET")
        var begin = [Int](repeating: 0, count: r), end = [Int](repeating: 0, count: r)
        var output = [Int](repeating: 0, count: r)
        for j in 0..<r {
            let span = (kernel[j] - 1) * dilations[j] + 1
            switch autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                output[j] = (input[j] + strides[j] - 1) / strides[j]
                let total = max(0, (output[j] - 1) * strides[j] + span - input[j])
                begin[j] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                end[j] = total - begin[j]
            case "VALID":
                // A kernel wider than the input fits nowhere (integer division would round -1/3 up to 0).
                output[j] = input[j] < span ? 0 : (input[j] - span) / strides[j] + 1
            case "NOTSET", "":
                if let pads = try ctx.ints("pads") {
                    guard pads.count == 2 * r else { throw ctx.fail("pads must have \(2 * r) entries") }
                    try ctx.checkRange(pads, "pads", -windowLimit...windowLimit)
                    begin[j] = pads[j]
                    end[j] = pads[j + r]
                }
                let padded = input[j] + begin[j] + end[j] - span
                output[j] = padded < 0 ? 0 : padded / strides[j] + 1
            default:
                throw ctx.fail("unknown auto_pad '\(autoPad)'")
            }
        }
        try ctx.checkedCount(kernel + output, "the convolution window (kernel taps × output positions)")
        return Window(input: input, kernel: kernel, strides: strides, dilations: dilations,
                      padsBegin: begin, padsEnd: end, output: output)
    }

    // MARK: im2col, col2im, matrix product

    /// Fills `col` (`channels * kernelCount` rows of `outputCount` columns) with the input values each kernel
    /// tap reads at each window position; `x` holds `channels` planes of `inputCount` values. Padding reads 0.
    static func im2col(_ x: UnsafePointer<Double>, channels: Int, _ w: Window, into col: UnsafeMutablePointer<Double>) {
        let r = w.rank
        let K = w.kernelCount, O = w.outputCount, I = w.inputCount
        guard K > 0, O > 0 else { return }
        let (table, offsets) = w.tapTable()
        let inStrides = strides(of: w.input)
        let lastO = w.output[r - 1]
        let outer = O / lastO
        var k = [Int](repeating: 0, count: r)
        table.withUnsafeBufferPointer { table in
            for kflat in 0..<K {
                var rem = kflat
                for j in stride(from: r - 1, through: 0, by: -1) {
                    k[j] = rem % w.kernel[j]
                    rem /= w.kernel[j]
                }
                let last = table.baseAddress! + offsets[r - 1] + k[r - 1] * lastO
                for ob in 0..<outer {
                    var rem = ob, offset = 0, valid = true
                    for j in stride(from: r - 2, through: 0, by: -1) {
                        let o = rem % w.output[j]
                        rem /= w.output[j]
                        let p = table[offsets[j] + k[j] * w.output[j] + o]
                        if p < 0 { valid = false; break }
                        offset += p * inStrides[j]
                    }
                    for c in 0..<channels {
                        let dst = col + (c * K + kflat) * O + ob * lastO
                        if !valid {
                            dst.update(repeating: 0, count: lastO)
                            continue
                        }
                        let src = x + c * I + offset
                        for ol in 0..<lastO {
                            let p = last[ol]
                            dst[ol] = p >= 0 ? src[p] : 0
                        }
                    }
                }
            }
        }
    }

    /// The inverse of `im2col`: adds every entry of `col` (`channels * kernelCount` rows of `outputCount`
    /// columns) into the input position its tap reads, in `x` (`channels` planes of `inputCount` values).
    static func col2im(_ col: UnsafePointer<Double>, channels: Int, _ w: Window, into x: UnsafeMutablePointer<Double>) {
        let r = w.rank
        let K = w.kernelCount, O = w.outputCount, I = w.inputCount
        guard K > 0, O > 0 else { return }
        let (table, offsets) = w.tapTable()
        let inStrides = strides(of: w.input)
        let lastO = w.output[r - 1]
        let outer = O / lastO
        var k = [Int](repeating: 0, count: r)
        table.withUnsafeBufferPointer { table in
            for kflat in 0..<K {
                var rem = kflat
                for j in stride(from: r - 1, through: 0, by: -1) {
                    k[j] = rem % w.kernel[j]
                    rem /= w.kernel[j]
                }
                let last = table.baseAddress! + offsets[r - 1] + k[r - 1] * lastO
                for ob in 0..<outer {
                    var rem = ob, offset = 0, valid = true
                    for j in stride(from: r - 2, through: 0, by: -1) {
                        let o = rem % w.output[j]
                        rem /= w.output[j]
                        let p = table[offsets[j] + k[j] * w.output[j] + o]
                        if p < 0 { valid = false; break }
                        offset += p * inStrides[j]
                    }
                    if !valid { continue }
                    for c in 0..<channels {
                        let src = col + (c * K + kflat) * O + ob * lastO
                        let dst = x + c * I + offset
                        for ol in 0..<lastO {
                            let p = last[ol]
                            if p >= 0 { dst[p] += src[ol] }
                        }
                    }
                }
            }
        }
    }

    /// `c[m×n] += a[m×k] · b[k×n]`, where `a`'s element (i, p) is at `a[i*aRowStride + p*aColStride]` and
    /// `b` and `c` are row-major and contiguous. Blocked over `n` and `k` to stay in cache.
    static func gemm(m: Int, n: Int, k: Int, a: UnsafePointer<Double>, aRowStride: Int, aColStride: Int,
                     b: UnsafePointer<Double>, c: UnsafeMutablePointer<Double>) {
        let nTile = 256, kTile = 128
        var n0 = 0
        while n0 < n {
            let nt = min(nTile, n - n0)
            var k0 = 0
            while k0 < k {
                let kt = min(kTile, k - k0)
                var i = 0
                while i + 4 <= m {
                    let c0 = c + i * n + n0, c1 = c0 + n, c2 = c1 + n, c3 = c2 + n
                    for p in k0..<(k0 + kt) {
                        let ap = a + i * aRowStride + p * aColStride
                        let a0 = ap[0], a1 = ap[aRowStride], a2 = ap[2 * aRowStride], a3 = ap[3 * aRowStride]
                        let bp = b + p * n + n0
                        for j in 0..<nt {
                            let v = bp[j]
                            c0[j] += a0 * v
                            c1[j] += a1 * v
                            c2[j] += a2 * v
                            c3[j] += a3 * v
                        }
                    }
                    i += 4
                }
                while i < m {
                    let c0 = c + i * n + n0
                    for p in k0..<(k0 + kt) {
                        let a0 = a[i * aRowStride + p * aColStride]
                        let bp = b + p * n + n0
                        for j in 0..<nt { c0[j] += a0 * bp[j] }
                    }
                    i += 1
                }
                k0 += kt
            }
            n0 += nt
        }
    }

    /// A grouped convolution of `x` (`[N, C, spatial…]`) with `w` (`[M, C/group, kernel…]`), plus `bias`
    /// (`[M]`) when given; the result has shape `[N, M, window.output…]`, row-major.
    static func convolve(x: [Double], n: Int, channels: Int, w: [Double], filters: Int, group: Int,
                         bias: [Double]?, window: Window) -> [Double] {
        let cg = channels / group, mg = filters / group
        let K = window.kernelCount, O = window.outputCount, I = window.inputCount
        var out = [Double](repeating: 0, count: n * filters * O)
        if O == 0 { return out }
        // A 1×…×1 kernel with unit strides and no padding reads the input as it is.
        let direct = window.kernel.allSatisfy { $0 == 1 } && window.strides.allSatisfy { $0 == 1 }
            && window.padsBegin.allSatisfy { $0 == 0 } && window.output == window.input
        var col = [Double](repeating: 0, count: direct ? 0 : cg * K * O)
        x.withUnsafeBufferPointer { x in
            w.withUnsafeBufferPointer { w in
                out.withUnsafeMutableBufferPointer { out in
                    col.withUnsafeMutableBufferPointer { col in
                        for b in 0..<n {
                            for g in 0..<group {
                                let src = x.baseAddress! + (b * channels + g * cg) * I
                                let matrix: UnsafePointer<Double>
                                if direct {
                                    matrix = src
                                } else {
                                    im2col(src, channels: cg, window, into: col.baseAddress!)
                                    matrix = UnsafePointer(col.baseAddress!)
                                }
                                gemm(m: mg, n: O, k: cg * K, a: w.baseAddress! + g * mg * cg * K, aRowStride: cg * K,
                                     aColStride: 1, b: matrix, c: out.baseAddress! + (b * filters + g * mg) * O)
                            }
                        }
                        if let bias {
                            for b in 0..<n {
                                for m in 0..<filters {
                                    let base = (b * filters + m) * O
                                    let v = bias[m]
                                    for o in 0..<O { out[base + o] += v }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Checks the shapes of a convolution's data and weights and returns its window; `kernel_shape`, when
    /// given, must agree with the weights.
    static func convSetup(_ ctx: KernelContext, x: [Int], w: [Int], group: Int) throws -> Window {
        guard x.count >= 3, w.count == x.count else {
            throw ctx.fail("X \(x) and W \(w) must have the same rank, at least 3")
        }
        guard group > 0, group <= max(x[1], 1), x[1] % group == 0, w[0] % group == 0, w[1] * group == x[1] else {
            throw ctx.fail("channels of X \(x) and W \(w) do not match group \(group)")
        }
        let kernel = Array(w[2...])
        if let ks = try ctx.ints("kernel_shape"), ks != kernel {
            throw ctx.fail("kernel_shape \(ks) does not match W \(w)")
        }
        return try convWindow(ctx, input: Array(x[2...]), kernel: kernel)
    }

    // MARK: Conv family

    static func conv(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), w = try ctx.tensor(1)
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        let group = try ctx.int("group", 1)
        let window = try convSetup(ctx, x: x.shape, w: w.shape, group: group)
        try ctx.checkedCount([x.shape[0], w.shape[0]] + window.output)
        let bias = try ctx.optionalTensor(2)
        if let bias, bias.count != w.shape[0] { throw ctx.fail("B must have \(w.shape[0]) elements") }
        let out = convolve(x: x.asDoubles(), n: x.shape[0], channels: x.shape[1], w: w.asDoubles(), filters: w.shape[0],
                           group: group, bias: bias?.asDoubles(), window: window)
        return Tensor(dtype: x.dtype, shape: [x.shape[0], w.shape[0]] + window.output, doubles: out)
    }

    /// Integer values of `t` minus its zero point `zp` (a scalar, or one per output channel when `perChannel`).
    static func centered(_ t: Tensor, zeroPoint zp: Tensor?, channelAxisSize: Int?, _ ctx: KernelContext) throws -> [Double] {
        var v = t.asDoubles()
        guard let zp else { return v }
        let z = zp.asDoubles()
        if z.count == 1 {
            for i in v.indices { v[i] -= z[0] }
        } else if let m = channelAxisSize, z.count == m, t.shape.count > 0, t.shape[0] == m {
            let per = t.count / max(m, 1)
            for i in v.indices { v[i] -= z[i / per] }
        } else {
            throw ctx.fail("zero point of shape \(zp.shape) does not fit \(t.shape)")
        }
        return v
    }

    static func convInteger(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), w = try ctx.tensor(1)
        guard x.dtype == .uint8 || x.dtype == .int8, w.dtype == .uint8 || w.dtype == .int8 else {
            throw ctx.unsupported("element types \(x.dtype), \(w.dtype)")
        }
        let group = try ctx.int("group", 1)
        let window = try convSetup(ctx, x: x.shape, w: w.shape, group: group)
        let xv = try centered(x, zeroPoint: try ctx.optionalTensor(2), channelAxisSize: nil, ctx)
        let wv = try centered(w, zeroPoint: try ctx.optionalTensor(3), channelAxisSize: w.shape[0], ctx)
        let out = convolve(x: xv, n: x.shape[0], channels: x.shape[1], w: wv, filters: w.shape[0], group: group,
                           bias: nil, window: window)
        return Tensor(dtype: .int32, shape: [x.shape[0], w.shape[0]] + window.output, doubles: out)
    }

    static func qlinearConv(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), xScale = try ctx.tensor(1).asDoubles()
        let w = try ctx.tensor(3), wScale = try ctx.tensor(4).asDoubles()
        let yScale = try ctx.tensor(6).asDoubles()
        let yZero = try ctx.optionalTensor(7)
        guard xScale.count == 1, yScale.count == 1 else { throw ctx.fail("x_scale and y_scale must be scalars") }
        guard x.dtype == .uint8 || x.dtype == .int8, w.dtype == .uint8 || w.dtype == .int8 else {
            throw ctx.unsupported("element types \(x.dtype), \(w.dtype)")
        }
        let group = try ctx.int("group", 1)
        let window = try convSetup(ctx, x: x.shape, w: w.shape, group: group)
        let m = w.shape[0]
        guard wScale.count == 1 || wScale.count == m else { throw ctx.fail("w_scale must have 1 or \(m) elements") }
        let xv = try centered(x, zeroPoint: try ctx.optionalTensor(2), channelAxisSize: nil, ctx)
        let wv = try centered(w, zeroPoint: try ctx.optionalTensor(5), channelAxisSize: m, ctx)
        let bias = try ctx.optionalTensor(8)?.asDoubles()
        var acc = convolve(x: xv, n: x.shape[0], channels: x.shape[1], w: wv, filters: m, group: group,
                           bias: bias, window: window)
        let outType = yZero?.dtype ?? x.dtype
        let (lo, hi): (Double, Double) = outType == .int8 ? (-128, 127) : (0, 255)
        let zp = yZero?.asDoubles().first ?? 0
        let plane = window.outputCount
        for i in acc.indices {
            let channel = (i / max(plane, 1)) % m
            let scale = xScale[0] * wScale[wScale.count == 1 ? 0 : channel] / yScale[0]
            acc[i] = min(max((acc[i] * scale).rounded(.toNearestOrEven) + zp, lo), hi)
        }
        return Tensor(dtype: outType, shape: [x.shape[0], m] + window.output, doubles: acc)
    }

    // MARK: ConvTranspose

    static func convTranspose(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), w = try ctx.tensor(1)
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        let group = try ctx.int("group", 1)
        guard x.rank >= 3, w.rank == x.rank else { throw ctx.fail("X \(x.shape) and W \(w.shape) must have the same rank, at least 3") }
        guard group > 0, group <= max(x.shape[1], 1), x.shape[1] == w.shape[0], x.shape[1] % group == 0 else {
            throw ctx.fail("channels of X \(x.shape) and W \(w.shape) do not match group \(group)")
        }
        let r = x.rank - 2
        let inSpatial = Array(x.shape[2...])
        let kernel = Array(w.shape[2...])
        if let ks = try ctx.ints("kernel_shape"), ks != kernel { throw ctx.fail("kernel_shape \(ks) does not match W \(w.shape)") }
        let strides = try ctx.ints("strides") ?? Array(repeating: 1, count: r)
        let dilations = try ctx.ints("dilations") ?? Array(repeating: 1, count: r)
        let outputPadding = try ctx.ints("output_padding") ?? Array(repeating: 0, count: r)
        guard strides.count == r, dilations.count == r, outputPadding.count == r else {
            throw ctx.fail("strides, dilations and output_padding must have \(r) entries")
        }
        try ctx.checkRange(strides, "strides", 1...windowLimit)
        try ctx.checkRange(dilations, "dilations", 1...windowLimit)
        try ctx.checkRange(outputPadding, "output_padding", 0...windowLimit)
        try ctx.checkRange(kernel + inSpatial, "the kernel and input dims", 0...windowLimit)
        let autoPad = try ctx.string("auto_pad", "NOTSET")
        var outputShape = try ctx.ints("output_shape")
        if let os = outputShape, os.count == r + 2 { outputShape = Array(os[2...]) }
        if let os = outputShape, os.count != r { throw ctx.fail("output_shape must have \(r) entries") }
        var begin = [Int](repeating: 0, count: r), end = [Int](repeating: 0, count: r)
        var outSpatial = [Int](repeating: 0, count: r)
        let explicitPads = try ctx.ints("pads")
        if let p = explicitPads, p.count != 2 * r { throw ctx.fail("pads must have \(2 * r) entries") }
        try ctx.checkRange((explicitPads ?? []) + (outputShape ?? []), "pads and output_shape", -windowLimit...windowLimit)
        for j in 0..<r {
            let full = strides[j] * (inSpatial[j] - 1) + outputPadding[j] + (kernel[j] - 1) * dilations[j] + 1
            let same = autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER"
            if explicitPads == nil && (same || outputShape != nil) {
                let target = outputShape?[j] ?? inSpatial[j] * strides[j]
                let total = full - target
                let half = Int((Double(total) / 2).rounded(.down))
                if autoPad == "SAME_UPPER" {
                    begin[j] = half
                    end[j] = total - half
                } else {
                    begin[j] = total - half
                    end[j] = half
                }
                outSpatial[j] = target
            } else {
                if let p = explicitPads {
                    begin[j] = p[j]
                    end[j] = p[j + r]
                }
                outSpatial[j] = outputShape?[j] ?? (full - begin[j] - end[j])
            }
        }
        let n = x.shape[0], c = x.shape[1], cg = c / group, mg = w.shape[1], m = mg * group
        try ctx.checkedCount([n, m] + outSpatial)
        try ctx.checkedCount([mg] + kernel + inSpatial, "the column matrix")
        let window = Window(input: outSpatial, kernel: kernel, strides: strides, dilations: dilations,
                            padsBegin: begin, padsEnd: end, output: inSpatial)
        let K = window.kernelCount, I = window.outputCount, O = window.inputCount
        let bias = try ctx.optionalTensor(2)?.asDoubles()
        if let bias, bias.count != m { throw ctx.fail("B must have \(m) elements") }
        let xv = x.asDoubles(), wv = w.asDoubles()
        var out = [Double](repeating: 0, count: n * m * O)
        var col = [Double](repeating: 0, count: mg * K * I)
        if O > 0 && I > 0 {
            xv.withUnsafeBufferPointer { xp in
                wv.withUnsafeBufferPointer { wp in
                    col.withUnsafeMutableBufferPointer { colp in
                        out.withUnsafeMutableBufferPointer { outp in
                            for b in 0..<n {
                                for g in 0..<group {
                                    colp.update(repeating: 0)
                                    // col[(mg·K) × I] = W_gᵀ · X_g
                                    gemm(m: mg * K, n: I, k: cg, a: wp.baseAddress! + g * cg * mg * K, aRowStride: 1,
                                         aColStride: mg * K, b: xp.baseAddress! + (b * c + g * cg) * I, c: colp.baseAddress!)
                                    col2im(colp.baseAddress!, channels: mg, window,
                                           into: outp.baseAddress! + (b * m + g * mg) * O)
                                }
                            }
                        }
                    }
                }
            }
        }
        if let bias {
            for i in out.indices { out[i] += bias[(i / max(O, 1)) % m] }
        }
        return Tensor(dtype: x.dtype, shape: [n, m] + outSpatial, doubles: out)
    }

    // MARK: Col2Im

    static func col2imOp(_ ctx: KernelContext) throws -> Tensor {
        let input = try ctx.tensor(0)
        let image = try ctx.integers(try ctx.tensor(1), "image_shape"), block = try ctx.integers(try ctx.tensor(2), "block_shape")
        let r = image.count
        guard block.count == r, r > 0 else { throw ctx.fail("image_shape and block_shape must have the same length") }
        guard input.rank == 3 else { throw ctx.fail("input must have rank 3 (N, C·∏block, L)") }
        let strides = try ctx.ints("strides") ?? Array(repeating: 1, count: r)
        let dilations = try ctx.ints("dilations") ?? Array(repeating: 1, count: r)
        let pads = try ctx.ints("pads") ?? Array(repeating: 0, count: 2 * r)
        guard strides.count == r, dilations.count == r, pads.count == 2 * r else {
            throw ctx.fail("strides, dilations and pads do not match image_shape")
        }
        try ctx.checkRange(image, "image_shape", 0...windowLimit)
        try ctx.checkRange(block, "block_shape", 1...windowLimit)
        try ctx.checkRange(strides, "strides", 1...windowLimit)
        try ctx.checkRange(dilations, "dilations", 1...windowLimit)
        try ctx.checkRange(pads, "pads", 0...windowLimit)
        var blocks = [Int](repeating: 0, count: r)
        for j in 0..<r {
            let padded = image[j] + pads[j] + pads[j + r] - (block[j] - 1) * dilations[j] - 1
            blocks[j] = padded < 0 ? 0 : padded / strides[j] + 1
        }
        try ctx.checkedCount(block + blocks, "the blocks")
        let window = Window(input: image, kernel: block, strides: strides, dilations: dilations,
                            padsBegin: Array(pads[..<r]), padsEnd: Array(pads[r...]), output: blocks)
        let K = window.kernelCount, L = window.outputCount, O = window.inputCount
        guard input.shape[1] % max(K, 1) == 0, input.shape[2] == L else {
            throw ctx.fail("input \(input.shape) does not match block_shape \(block) and \(L) blocks")
        }
        let n = input.shape[0], c = input.shape[1] / K
        try ctx.checkedCount([n, c] + image)
        let values = input.asDoubles()
        var out = [Double](repeating: 0, count: n * c * O)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for b in 0..<n {
                    col2im(src.baseAddress! + b * c * K * L, channels: c, window, into: dst.baseAddress! + b * c * O)
                }
            }
        }
        return Tensor(dtype: input.dtype, shape: [n, c] + image, doubles: out)
    }

    // MARK: DeformConv

    static func deformConv(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), w = try ctx.tensor(1), offset = try ctx.tensor(2)
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        let group = try ctx.int("group", 1)
        let offsetGroup = try ctx.int("offset_group", 1)
        guard x.rank == 4 else { throw ctx.unsupported("DeformConv over \(x.rank - 2) spatial dims (only 2)") }
        let window = try convSetup(ctx, x: x.shape, w: w.shape, group: group)
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
        let m = w.shape[0], cg = c / group, mg = m / group
        let kh = window.kernel[0], kw = window.kernel[1], K = kh * kw
        let oh = window.output[0], ow = window.output[1], O = oh * ow
        guard offsetGroup > 0, offsetGroup <= max(c, 1), c % offsetGroup == 0 else { throw ctx.fail("C must be divisible by offset_group") }
        try ctx.checkedCount([n, m, oh, ow])
        guard offset.shape == [n, offsetGroup * 2 * K, oh, ow] else {
            throw ctx.fail("offset shape \(offset.shape) must be \([n, offsetGroup * 2 * K, oh, ow])")
        }
        let mask = try ctx.optionalTensor(4)
        if let mask, mask.shape != [n, offsetGroup * K, oh, ow] {
            throw ctx.fail("mask shape \(mask.shape) must be \([n, offsetGroup * K, oh, ow])")
        }
        let xv = x.asDoubles(), wv = w.asDoubles(), off = offset.asDoubles(), mv = mask?.asDoubles()
        let bias = try ctx.optionalTensor(3)?.asDoubles()
        let perOffsetGroup = c / offsetGroup
        var out = [Double](repeating: 0, count: n * m * O)
        var col = [Double](repeating: 0, count: cg * K * O)
        for b in 0..<n {
            for g in 0..<group {
                for ci in 0..<cg {
                    let channel = g * cg + ci
                    let og = channel / perOffsetGroup
                    let plane = (b * c + channel) * h * wd
                    for i in 0..<kh {
                        for j in 0..<kw {
                            let k = i * kw + j
                            let dyBase = ((b * offsetGroup * 2 * K) + og * 2 * K + 2 * k) * O
                            let dxBase = dyBase + O
                            let maskBase = ((b * offsetGroup * K) + og * K + k) * O
                            for y in 0..<oh {
                                for xo in 0..<ow {
                                    let o = y * ow + xo
                                    let py = Double(y * window.strides[0] - window.padsBegin[0] + i * window.dilations[0]) + off[dyBase + o]
                                    let px = Double(xo * window.strides[1] - window.padsBegin[1] + j * window.dilations[1]) + off[dxBase + o]
                                    var v = bilinear(xv, plane: plane, height: h, width: wd, y: py, x: px)
                                    if let mv { v *= mv[maskBase + o] }
                                    col[(ci * K + k) * O + o] = v
                                }
                            }
                        }
                    }
                }
                wv.withUnsafeBufferPointer { wp in
                    col.withUnsafeBufferPointer { colp in
                        out.withUnsafeMutableBufferPointer { outp in
                            gemm(m: mg, n: O, k: cg * K, a: wp.baseAddress! + g * mg * cg * K, aRowStride: cg * K, aColStride: 1,
                                 b: colp.baseAddress!, c: outp.baseAddress! + (b * m + g * mg) * O)
                        }
                    }
                }
            }
        }
        if let bias {
            guard bias.count == m else { throw ctx.fail("B must have \(m) elements") }
            for i in out.indices { out[i] += bias[(i / max(O, 1)) % m] }
        }
        return Tensor(dtype: x.dtype, shape: [n, m, oh, ow], doubles: out)
    }

    /// Bilinear interpolation of the plane at `plane` (`height × width`) at (`y`, `x`); neighbours outside read 0.
    static func bilinear(_ v: [Double], plane: Int, height: Int, width: Int, y: Double, x: Double) -> Double {
        // Points at least one pixel outside the plane (and NaN) read only zeros.
        guard y > -1, y < Double(height), x > -1, x < Double(width) else { return 0 }
        let y0 = Int(y.rounded(.down)), x0 = Int(x.rounded(.down))
        let fy = y - Double(y0), fx = x - Double(x0)
        func at(_ yy: Int, _ xx: Int) -> Double {
            yy >= 0 && yy < height && xx >= 0 && xx < width ? v[plane + yy * width + xx] : 0
        }
        return (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1))
    }
}
