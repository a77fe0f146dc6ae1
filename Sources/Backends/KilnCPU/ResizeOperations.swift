import CKilnKernels
import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Resize (nearest, linear and cubic, without antialiasing) and ConvTranspose, as `NodePlanner`s.
extension SwiftOps {
    static let resizeTransforms: Set<String> = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                                                 "tf_half_pixel_for_nn", "half_pixel_symmetric"]

    /// Why kiln.cpu does not run a Resize node, or nil.
    @Sendable static func resizeRejection(_ node: Node, _ facts: SupportFacts) -> String? {
        let mode = (try? node.string("mode", "nearest")) ?? "?"
        guard ["nearest", "linear", "cubic"].contains(mode) else { return "Resize mode '\(mode)' is not supported (nearest, linear and cubic are)" }
        let transform = (try? node.string("coordinate_transformation_mode", "half_pixel")) ?? "?"
        guard resizeTransforms.contains(transform) else { return "Resize coordinate_transformation_mode '\(transform)' is not supported" }
        if (try? node.int("antialias", 0)) ?? 1 != 0 { return "Resize with antialias is not supported" }
        let nearest = (try? node.string("nearest_mode", "round_prefer_floor")) ?? "?"
        guard ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(nearest) else { return "nearest_mode '\(nearest)' is not supported" }
        if mode != "nearest", let t = facts.types[node.input(0)], t != .float32 { return "\(mode) Resize of \(t) is not supported" }
        return nil
    }

    /// The source coordinate of output index `y` along an axis of `input` elements resized to `output`.
    static func sourceCoordinate(_ y: Int, input: Int, output: Int, scale: Double, transform: String) -> Double {
        let yd = Double(y), inW = Double(input), outF = scale * inW
        var x: Double
        switch transform {
        case "pytorch_half_pixel": x = outF == 1 ? -0.5 : (yd + 0.5) / scale - 0.5
        case "align_corners": x = outF == 1 ? 0 : yd * (inW - 1) / (outF - 1)
        case "asymmetric": x = yd / scale
        case "tf_half_pixel_for_nn": x = (yd + 0.5) / scale
        case "half_pixel_symmetric":
            let adjustment = Double(output) / outF
            x = inW / 2 * (1 - adjustment) + (yd + 0.5) / scale - 0.5
        default: x = (yd + 0.5) / scale - 0.5
        }
        if !x.isFinite { x = 0 }
        return min(max(x, -0x1p40), 0x1p40)
    }

    static func resize(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let x = ins[0], xs = try b.shape(x), dtype = try b.dtype(x), r = xs.count
        let mode = try node.string("mode", "nearest"), transform = try node.string("coordinate_transformation_mode", "half_pixel")
        let nearestMode = try node.string("nearest_mode", "round_prefer_floor")
        let policy = try node.string("keep_aspect_ratio_policy", "stretch")
        let axes = try (node.ints("axes") ?? Array(0..<r)).map { a -> Int in
            guard let n = normalizedAxis(a, rank: r) else { throw b.invalid("axis \(a) out of range") }
            return n
        }
        var scales = [Double](repeating: 1, count: r), outShape = xs
        let sizes = ins.count > 3 && ins[3] >= 0 ? try b.requireKnownInts(ins[3]) : []
        let given = ins.count > 2 && ins[2] >= 0 ? try b.requireKnown(ins[2]).asDoubles() : []
        if !sizes.isEmpty {
            guard sizes.count == axes.count, sizes.allSatisfy({ $0 >= 0 }) else { throw b.invalid("sizes \(sizes) do not fit axes \(axes)") }
            for (i, a) in axes.enumerated() {
                scales[a] = Double(sizes[i]) / Double(xs[a])
                outShape[a] = sizes[i]
            }
            if policy != "stretch" {
                let chosen = axes.map { scales[$0] }
                guard let s = policy == "not_larger" ? chosen.min() : policy == "not_smaller" ? chosen.max() : nil else {
                    throw b.unsupported("keep_aspect_ratio_policy '\(policy)'")
                }
                for a in axes {
                    scales[a] = s
                    outShape[a] = Int(s * Double(xs[a]) + 0.5)
                }
            }
        } else if !given.isEmpty {
            guard given.count == axes.count else { throw b.invalid("scales \(given) do not fit axes \(axes)") }
            for (i, a) in axes.enumerated() {
                // Beyond 2^40 elements per dim no output fits; refusing first keeps the Int conversion safe.
                guard given[i] > 0, given[i].isFinite, given[i] * Double(xs[a]) < 0x1p40 else {
                    throw b.invalid("scales must be positive, finite and give dims below 2^40")
                }
                scales[a] = given[i]
                outShape[a] = Int((given[i] * Double(xs[a])).rounded(.down))
            }
        } else {
            throw b.invalid("one of scales and sizes is required")
        }
        for a in 0..<r where xs[a] == 0 && outShape[a] > 0 { throw b.invalid("cannot resize an empty axis") }
        // The per-axis index tables below are as long as the output's dims: bound them first.
        _ = try b.checkedBytes(outShape, width: dtype.byteWidth ?? 1, name: b.name(outs[0]))
        let changed = (0..<r).filter { !(abs(scales[$0] - 1) < 1e-9 && outShape[$0] == xs[$0]) }
        if mode == "nearest" {
            var maps = try b.identityMaps(xs)
            for a in changed {
                maps[a] = try b.indexTable(outShape[a]) { y in
                    let c = sourceCoordinate(y, input: xs[a], output: outShape[a], scale: scales[a], transform: transform)
                    let x0 = c.rounded(.down), frac = c - x0
                    var up = false
                    if frac > 0 {
                        switch nearestMode {
                        case "round_prefer_ceil": up = frac >= 0.5
                        case "floor": up = false
                        case "ceil": up = true
                        default: up = frac > 0.5
                        }
                    }
                    return min(max(Int(x0) + (up ? 1 : 0), 0), xs[a] - 1)
                }
            }
            try planRemap(b, x: x, output: outs[0], outShape: outShape, maps: maps)
            return
        }
        guard mode == "linear" || mode == "cubic", dtype == .float32 else { throw b.unsupported("Resize mode '\(mode)' of \(dtype)") }
        let cubic = mode == "cubic"
        let coefficient = Double(try node.float("cubic_coeff_a", -0.75)), excludeOutside = try node.int("exclude_outside", 0) != 0
        /// The weight of a cubic tap at distance `d` (Keys' kernel with parameter `coefficient`).
        func keys(_ d: Double) -> Double {
            let a = coefficient, d = abs(d)
            if d <= 1 { return ((a + 2) * d - (a + 3)) * d * d + 1 }
            if d < 2 { return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a }
            return 0
        }
        // Linear and cubic interpolation are separable: one pass per changed axis, each output a weighted
        // sum of `taps` neighbours (2 for linear, 4 for cubic) along that axis, clamped to the edge.
        let taps = cubic ? 4 : 2
        var passes: [(outer: Int, input: Int, output: Int, inner: Int, index: [Int], weight: [Float])] = []
        var shape = xs
        for a in changed {
            var index: [Int] = [], weight: [Float] = []
            for y in 0..<outShape[a] {
                let c = sourceCoordinate(y, input: xs[a], output: outShape[a], scale: scales[a], transform: transform)
                let x0 = c.rounded(.down), frac = c - x0
                if cubic {
                    var ws = (0..<4).map { keys(frac - Double($0 - 1)) }
                    let positions = (0..<4).map { Int(x0) + $0 - 1 }
                    if excludeOutside {
                        // Taps outside the input weigh nothing; the rest are renormalized.
                        for k in 0..<4 where positions[k] < 0 || positions[k] >= xs[a] { ws[k] = 0 }
                        let total = ws.reduce(0, +)
                        if total != 0 { ws = ws.map { $0 / total } }
                    }
                    for k in 0..<4 {
                        index.append(min(max(positions[k], 0), xs[a] - 1))
                        weight.append(Float(ws[k]))
                    }
                } else {
                    index += [min(max(Int(x0), 0), xs[a] - 1), min(max(Int(x0) + 1, 0), xs[a] - 1)]
                    weight += [Float(1 - frac), Float(frac)]
                }
            }
            passes.append((shape[..<a].reduce(1, *), shape[a], outShape[a], shape[(a + 1)...].reduce(1, *), index, weight))
            shape[a] = outShape[a]
        }
        if passes.isEmpty {
            try b.defineView(outs[0], of: x, shape: xs)
            return
        }
        let count = xs.reduce(1, *)
        try b.compute([(outs[0], outShape, .float32)], from: [x]) { p, o in
            var current = Array(UnsafeBufferPointer(start: p[0].assumingMemoryBound(to: Float.self), count: count))
            for pass in passes {
                var next = [Float](repeating: 0, count: pass.outer * pass.output * pass.inner)
                current.withUnsafeBufferPointer { src in
                    next.withUnsafeMutableBufferPointer { dst in
                        for q in 0..<pass.outer {
                            for y in 0..<pass.output {
                                let d = (q * pass.output + y) * pass.inner
                                if taps == 2 {
                                    let a0 = (q * pass.input + pass.index[2 * y]) * pass.inner, a1 = (q * pass.input + pass.index[2 * y + 1]) * pass.inner
                                    let s = pass.weight[2 * y], t = pass.weight[2 * y + 1]
                                    for i in 0..<pass.inner { dst[d + i] = s * src[a0 + i] + t * src[a1 + i] }
                                } else {
                                    for k in 0..<taps {
                                        let w = pass.weight[taps * y + k], from = (q * pass.input + pass.index[taps * y + k]) * pass.inner
                                        for i in 0..<pass.inner { dst[d + i] += w * src[from + i] }
                                    }
                                }
                            }
                        }
                    }
                }
                current = next
            }
            current.withUnsafeBytes { o[0].copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
    }

    /// ConvTranspose over float32 of any spatial rank: each input pixel scatters its kernel window.
    static func convTranspose(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        for v in ins where v >= 0 { try b.requireFloat(v) }
        let xs = try b.shape(ins[0]), ws = try b.shape(ins[1])
        let group = try node.int("group", 1)
        guard xs.count >= 3, ws.count == xs.count, group > 0, xs[1] == ws[0], xs[1] % group == 0 else {
            throw b.invalid("X \(xs) and W \(ws) do not fit group \(group)")
        }
        let r = xs.count - 2
        let inSpatial = Array(xs[2...]), kernel = Array(ws[2...])
        let strides = try node.ints("strides") ?? Array(repeating: 1, count: r)
        let dilations = try node.ints("dilations") ?? Array(repeating: 1, count: r)
        let outputPadding = try node.ints("output_padding") ?? Array(repeating: 0, count: r)
        guard strides.count == r, dilations.count == r, outputPadding.count == r,
              strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else { throw b.invalid("bad strides, dilations or output_padding") }
        let autoPad = try node.string("auto_pad", "NOTSET")
        var outputShape = try node.ints("output_shape")
        if let os = outputShape, os.count == r + 2 { outputShape = Array(os[2...]) }
        if let os = outputShape, os.count != r { throw b.invalid("output_shape must have \(r) entries") }
        let explicitPads = try node.ints("pads")
        if let p = explicitPads, p.count != 2 * r { throw b.invalid("pads must have \(2 * r) entries") }
        // Attributes bounded so that the output-size arithmetic below cannot overflow (dims are < 2^40 by the
        // element cap; any real model is far inside these).
        let attributeLimit = 1 << 20, sizeLimit = 1 << 40
        guard (strides + dilations + outputPadding).allSatisfy({ abs($0) <= attributeLimit }),
              (explicitPads ?? []).allSatisfy({ abs($0) <= sizeLimit }), (outputShape ?? []).allSatisfy({ $0 >= 0 && $0 <= sizeLimit }),
              (inSpatial + kernel).allSatisfy({ $0 <= sizeLimit }) else {
            throw b.unsupported("strides, dilations or output_padding beyond \(attributeLimit), or pads, output_shape or dims beyond 2^40")
        }
        var begin = [Int](repeating: 0, count: r), outSpatial = [Int](repeating: 0, count: r)
        for j in 0..<r {
            let full = strides[j] * (inSpatial[j] - 1) + outputPadding[j] + (kernel[j] - 1) * dilations[j] + 1
            if explicitPads == nil && (autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" || outputShape != nil) {
                let target = outputShape?[j] ?? inSpatial[j] * strides[j]
                let total = full - target
                let half = Int((Double(total) / 2).rounded(.down))
                begin[j] = autoPad == "SAME_UPPER" ? half : total - half
                outSpatial[j] = target
            } else {
                var end = 0
                if let p = explicitPads { begin[j] = p[j]; end = p[j + r] }
                outSpatial[j] = outputShape?[j] ?? (full - begin[j] - end)
            }
        }
        guard outSpatial.allSatisfy({ $0 >= 0 }) else { throw b.invalid("output shape \(outSpatial) is negative") }
        let n = xs[0], c = xs[1], cg = c / group, mg = ws[1], m = mg * group
        if ins.count > 2, ins[2] >= 0, try b.shape(ins[2]).reduce(1, *) != m { throw b.invalid("B must have \(m) elements") }
        let outShape = [n, m] + outSpatial
        _ = try b.checkedBytes([max(n, 1), max(m, 1)] + outSpatial, width: 4, name: b.name(outs[0]))
        let I = inSpatial.reduce(1, *), K = kernel.reduce(1, *), O = outSpatial.reduce(1, *)
        let inStrides = contiguousStrides(inSpatial), kStrides = contiguousStrides(kernel), oStrides = contiguousStrides(outSpatial)
        // For each (kernel tap, input pixel): the output pixel, or -1 when it falls in the padding.
        let (taps, overflow) = I.multipliedReportingOverflow(by: K)
        guard !overflow else { throw b.unsupported("\(I) input pixels × \(K) kernel taps overflow") }
        var target = try b.indexTable(taps) { _ in -1 }
        for k in 0..<K {
            for p in 0..<I {
                var o = 0
                var inside = true
                for j in 0..<r {
                    let pj = (p / inStrides[j]) % inSpatial[j], kj = (k / kStrides[j]) % kernel[j]
                    let oj = pj * strides[j] - begin[j] + kj * dilations[j]
                    if oj < 0 || oj >= outSpatial[j] { inside = false; break }
                    o += oj * oStrides[j]
                }
                if inside { target[k * I + p] = o }
            }
        }
        // Per image and group, one GEMM gives every (output channel, tap) row of contributions of every input
        // pixel, cols[mg·K × I] = W_gᵀ · X_g (W_g is [cg, mg·K] as stored); then each row is added into the
        // output pixels its tap reaches (col2im).
        let (rows, rowsOverflow) = mg.multipliedReportingOverflow(by: K)
        let (colCount, colsOverflow) = rows.multipliedReportingOverflow(by: I)
        guard !rowsOverflow, !colsOverflow, colCount <= Int.max / 4 else { throw b.unsupported("a \(rows) × \(I) column buffer overflows") }
        try b.define(outs[0], shape: outShape)
        let cols = try b.scratch(bytes: max(colCount, 1) * 4)
        let x = ins[0], weights = ins[1], bias = ins.count > 2 ? ins[2] : -1, out = outs[0], table = target
        // The GEMM splits its rows among the pool's threads, and the col2im its output channels (each writes
        // only its own planes): at 2 threads a U-Net decoder's ConvTransposes ran on one.
        let rowSlices = splitRange(rows, parts: b.pool.threadCount, granule: Int(KILN_SGEMM_MR))
        b.step("ConvTranspose") { frame in
            let xp = frame.f(x), wp = frame.f(weights), y = frame.f(out)
            let col = frame.scratch(cols).assumingMemoryBound(to: Float.self)
            y.initialize(repeating: 0, count: n * m * O)
            table.withUnsafeBufferPointer { t in
                let taps = t.baseAddress!
                for bi in 0..<n {
                    for g in 0..<group where rows > 0 && I > 0 && cg > 0 {
                        let a = wp + g * cg * rows, xg = xp + (bi * c + g * cg) * I
                        frame.pool.parallelFor(rowSlices.count) { p in
                            let slice = rowSlices[p]
                            kiln_sgemm(1, 0, slice.count, I, cg, 1, a + slice.lowerBound, rows, xg, I, 0, col + slice.lowerBound * I, I, nil)
                        }
                        frame.pool.parallelFor(mg) { oc in
                            let dst = y + (bi * m + g * mg + oc) * O
                            for k in 0..<K {
                                let row = col + (oc * K + k) * I, tap = taps + k * I
                                for pix in 0..<I where tap[pix] >= 0 { dst[tap[pix]] += row[pix] }
                            }
                        }
                    }
                    if let bp = frame.optionalF(bias) {
                        for ch in 0..<m { let plane = y + (bi * m + ch) * O; for i in 0..<O { plane[i] += bp[ch] } }
                    }
                }
            }
        }
    }
}

extension SwiftOps {
    static let gridSampleModes: Set<String> = ["nearest", "linear", "bilinear", "cubic", "bicubic"]

    /// Why kiln.cpu cannot run a GridSample node, or nil.
    static func gridSampleRejection(_ node: Node, _ facts: SupportFacts) -> String? {
        let mode = (try? node.string("mode", "linear")) ?? "?", padding = (try? node.string("padding_mode", "zeros")) ?? "?"
        guard gridSampleModes.contains(mode) else { return "GridSample mode '\(mode)' is not supported" }
        guard ["zeros", "border", "reflection"].contains(padding) else { return "GridSample padding_mode '\(padding)' is not supported" }
        return nil
    }

    /// `x` mirrored at `lo` and `hi` as often as it takes to land in [`lo`, `hi`].
    static func mirrored(_ x: Double, _ lo: Double, _ hi: Double) -> Double {
        let range = hi - lo
        guard range > 0 else { return lo }
        var m = (x - lo).truncatingRemainder(dividingBy: 2 * range)
        if m < 0 { m += 2 * range }
        return m <= range ? lo + m : lo + 2 * range - m
    }

    /// GridSample over float32 of any spatial rank: each output point samples X at the grid's normalized
    /// coordinates (x first, so the innermost dim) by nearest (ties to even), linear or cubic (Keys, a = -0.75)
    /// interpolation, one axis at a time, with zeros, border or reflection padding and align_corners.
    static func gridSample(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 2, ins[0] >= 0, ins[1] >= 0, outs.count >= 1 else { throw b.invalid("needs X and grid") }
        try b.requireFloat(ins[0])
        try b.requireFloat(ins[1])
        let xs = try b.shape(ins[0]), gs = try b.shape(ins[1])
        let r = xs.count - 2
        guard r >= 1, gs.count == xs.count, gs[0] == xs[0], gs[gs.count - 1] == r else {
            throw b.invalid("grid of shape \(gs) does not fit X of shape \(xs)")
        }
        let mode = try node.string("mode", "linear"), padding = try node.string("padding_mode", "zeros")
        let align = try node.int("align_corners", 0) != 0
        guard gridSampleModes.contains(mode), ["zeros", "border", "reflection"].contains(padding) else {
            throw b.unsupported("GridSample mode '\(mode)', padding_mode '\(padding)'")
        }
        let dims = Array(xs[2...]), outSpatial = Array(gs[1..<(gs.count - 1)])
        let batch = xs[0], channels = xs[1], points = outSpatial.reduce(1, *), plane = dims.reduce(1, *)
        guard plane > 0 || batch * channels * points == 0 else { throw b.invalid("X of shape \(xs) has an empty spatial dim") }
        let dimStrides = contiguousStrides(dims)
        let lows = dims.map { _ in align ? 0.0 : -0.5 }, highs = dims.map { align ? Double($0 - 1) : Double($0) - 0.5 }
        let cubic = mode == "cubic" || mode == "bicubic", nearest = mode == "nearest"
        /// The index read at integer position `i` of dim `j`, or nil for a zero (zeros padding outside X).
        func index(_ i: Int, _ j: Int) -> Int? {
            switch padding {
            case "zeros": return i >= 0 && i < dims[j] ? i : nil
            case "border": return Swift.min(Swift.max(i, 0), dims[j] - 1)
            default: return Swift.min(Swift.max(Int(mirrored(Double(i), lows[j], highs[j]).rounded(.towardZero)), 0), dims[j] - 1)
            }
        }
        /// Keys' cubic weights (a = -0.75) of the four taps around fraction `t`.
        func keys(_ t: Double) -> [Double] {
            let a = -0.75
            func near(_ d: Double) -> Double { ((a + 2) * d - (a + 3)) * d * d + 1 }
            func far(_ d: Double) -> Double { ((a * d - 5 * a) * d + 8 * a) * d - 4 * a }
            return [far(t + 1), near(t), near(1 - t), far(2 - t)]
        }
        try b.compute([(outs[0], [batch, channels] + outSpatial, .float32)], from: [ins[0], ins[1]]) { p, o in
            let x = p[0].assumingMemoryBound(to: Float.self), grid = p[1].assumingMemoryBound(to: Float.self)
            let y = o[0].assumingMemoryBound(to: Float.self)
            for n in 0..<batch {
                for point in 0..<points {
                    var taps: [(offset: Int, weight: Double)] = [(0, 1)]
                    for j in 0..<r {
                        let g = grid[(n * points + point) * r + (r - 1 - j)], size = dims[j]
                        // Unnormalized in float32, as the grid is.
                        var c = Double(align ? (g + 1) / 2 * Float(size - 1) : ((g + 1) * Float(size) - 1) / 2)
                        if nearest { c = c.rounded(.toNearestOrEven) }
                        if c < lows[j] || c > highs[j] {
                            if padding == "border" { c = Swift.min(Swift.max(c, 0), Double(size - 1)) }
                            if padding == "reflection" { c = mirrored(c, lows[j], highs[j]) }
                        }
                        if !c.isFinite { c = -2 }
                        c = Swift.min(Swift.max(c, -Double(size) - 4), 2 * Double(size) + 4)
                        var axis: [(Int, Double)] = []
                        if nearest {
                            if let i = index(Int(c.rounded(.towardZero)), j) { axis.append((i, 1)) }
                        } else {
                            let f = c.rounded(.down), t = c - f, base = Int(f)
                            let weights = cubic ? keys(t) : [1 - t, t]
                            let first = cubic ? base - 1 : base
                            for (k, w) in weights.enumerated() { if let i = index(first + k, j) { axis.append((i, w)) } }
                        }
                        taps = taps.flatMap { tap in axis.map { (tap.offset + $0.0 * dimStrides[j], tap.weight * $0.1) } }
                        if taps.isEmpty { break }
                    }
                    for ch in 0..<channels {
                        let source = (n * channels + ch) * plane
                        var sum = 0.0
                        for tap in taps { sum += tap.weight * Double(x[source + tap.offset]) }
                        y[(n * channels + ch) * points + point] = Float(sum)
                    }
                }
            }
        }
    }
}

extension SwiftOps {
    /// The element type of a window op's output (`output_datatype`, float32 by default).
    static func windowType(_ node: Node) -> DType? {
        guard let code = try? node.int("output_datatype", 1) else { return nil }
        return DType(onnxCode: code)
    }

    /// Why kiln.cpu cannot run a HannWindow, HammingWindow or BlackmanWindow node, or nil.
    static func windowRejection(_ node: Node, _ facts: SupportFacts) -> String? {
        guard let t = windowType(node), t.isFloatingPoint || t.isInteger, Support.castTypes.contains(t) else {
            return "\(node.op.name) of this output_datatype is not supported"
        }
        return nil
    }

    /// HannWindow, HammingWindow and BlackmanWindow: `size` points of the window (periodic: over a period of
    /// `size`; symmetric: `size - 1`), computed in Double and stored in `output_datatype`. The size is read
    /// while planning (a run-time size plans what follows once it is known).
    static func window(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 1, ins[0] >= 0, outs.count >= 1 else { throw b.invalid("needs a size") }
        let sizes = try b.requireKnownInts(ins[0])
        guard sizes.count == 1, sizes[0] >= 0 else { throw b.invalid("size must be a non-negative scalar, got \(sizes)") }
        guard let dtype = windowType(node), Support.castTypes.contains(dtype), dtype.isFloatingPoint || dtype.isInteger else {
            throw b.unsupported("\(node.op.name) output_datatype")
        }
        let size = sizes[0], period = Double(try node.int("periodic", 1) != 0 ? size : size - 1)
        _ = try b.checkedBytes([size], width: 8, name: b.name(outs[0]))
        let op = node.op.name
        try b.compute([(outs[0], [size], dtype)], from: []) { _, o in
            let values = (0..<size).map { n -> Double in
                let angle = 2 * Double.pi * Double(n) / period
                switch op {
                case "HannWindow": return 0.5 - 0.5 * cos(angle)
                case "HammingWindow": return 25.0 / 46 - (1 - 25.0 / 46) * cos(angle)
                default: return 0.42 - 0.5 * cos(angle) + 0.08 * cos(2 * angle)
                }
            }
            let t = Tensor(dtype: dtype, shape: [size], doubles: values)
            if let bytes = t.rawBytes, bytes.count > 0 { o[0].copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        }
    }
}

extension SwiftOps {
    /// AffineGrid over float32 theta ([N, 2, 3] or [N, 3, 4]): for every point of the output `size` (N, C,
    /// H, W or N, C, D, H, W; read while planning), theta times the point's normalized homogeneous coordinate
    /// (x along the last dim; with align_corners the corner pixels' centres are ±1, else their outer edges).
    static func affineGrid(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 2, ins[0] >= 0, ins[1] >= 0, outs.count >= 1 else { throw b.invalid("needs theta and size") }
        try b.requireFloat(ins[0])
        let size = try b.requireKnownInts(ins[1])
        guard size.count == 4 || size.count == 5, size.allSatisfy({ $0 >= 0 }) else { throw b.invalid("size \(size) must have 4 or 5 entries") }
        let r = size.count - 2, n = size[0], spatial = Array(size[2...])
        guard try b.shape(ins[0]) == [n, r, r + 1] else { throw b.invalid("theta must have shape \([n, r, r + 1])") }
        let align = try node.int("align_corners", 0) != 0
        let outShape = [n] + spatial + [r]
        _ = try b.checkedBytes(outShape, width: 4, name: b.name(outs[0]))
        let points = spatial.reduce(1, *)
        /// The normalized coordinate of index `i` of a dim of `s` points.
        func coordinate(_ i: Int, _ s: Int) -> Double {
            if align { return s == 1 ? -1 : 2 * Double(i) / Double(s - 1) - 1 }
            return (2 * Double(i) + 1) / Double(s) - 1
        }
        try b.compute([(outs[0], outShape, .float32)], from: [ins[0]]) { p, o in
            let theta = p[0].assumingMemoryBound(to: Float.self), y = o[0].assumingMemoryBound(to: Float.self)
            var homogeneous = [Double](repeating: 1, count: r + 1)
            for point in 0..<points {
                var rest = point
                // Spatial dims from the last (x) inward.
                for j in 0..<r {
                    let dim = r - 1 - j
                    homogeneous[j] = coordinate(rest % spatial[dim], spatial[dim])
                    rest /= spatial[dim]
                }
                for batch in 0..<n {
                    for row in 0..<r {
                        var sum = 0.0
                        for k in 0...r { sum += Double(theta[(batch * r + row) * (r + 1) + k]) * homogeneous[k] }
                        y[(batch * points + point) * r + row] = Float(sum)
                    }
                }
            }
        }
    }
}

extension SwiftOps {
    /// CenterCropPad: each of `axes` (all by default) cropped or zero-padded to the target size of input 1
    /// (read while planning), centred: the extra elements are split with the smaller half first.
    static func centerCropPad(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 2, ins[0] >= 0, ins[1] >= 0, outs.count >= 1 else { throw b.invalid("needs input_data and shape") }
        let xs = try b.shape(ins[0]), dtype = try b.dtype(ins[0]), target = try b.requireKnownInts(ins[1])
        let axes = try (node.ints("axes") ?? Array(0..<xs.count)).map { a -> Int in
            guard let n = normalizedAxis(a, rank: xs.count) else { throw b.invalid("axis \(a) is out of range for rank \(xs.count)") }
            return n
        }
        guard target.count == axes.count, target.allSatisfy({ $0 >= 0 }), Set(axes).count == axes.count else {
            throw b.invalid("shape \(target) does not fit axes \(axes)")
        }
        var outShape = xs
        for (size, a) in zip(target, axes) { outShape[a] = size }
        let count = try b.checkedBytes(outShape, width: 1, name: b.name(outs[0]))
        // For each output index along each dim, the input index it copies (-1: padding, zero).
        var maps = try b.identityMaps(xs)
        for (size, a) in zip(target, axes) {
            let dim = xs[a]
            maps[a] = size <= dim ? try b.indexTable(size) { $0 + (dim - size) / 2 }
                : try b.indexTable(size) { o in o - (size - dim) / 2 < dim && o >= (size - dim) / 2 ? o - (size - dim) / 2 : -1 }
        }
        guard let width = dtype.byteWidth else { throw b.unsupported("CenterCropPad of \(dtype)") }
        let inStrides = contiguousStrides(xs)
        let rank = xs.count
        try b.compute([(outs[0], outShape, dtype)], from: [ins[0]]) { p, o in
            var index = [Int](repeating: 0, count: rank)
            for flat in 0..<count {
                var source = 0
                for a in 0..<rank {
                    let i = maps[a][index[a]]
                    if i < 0 { source = -1; break }
                    source += i * inStrides[a]
                }
                if source >= 0 {
                    (o[0] + flat * width).copyMemory(from: p[0] + source * width, byteCount: width)
                } else {
                    (o[0] + flat * width).initializeMemory(as: UInt8.self, repeating: 0, count: width)
                }
                var a = rank - 1
                while a >= 0 {
                    index[a] += 1
                    if index[a] < outShape[a] { break }
                    index[a] = 0
                    a -= 1
                }
            }
        }
    }
}
