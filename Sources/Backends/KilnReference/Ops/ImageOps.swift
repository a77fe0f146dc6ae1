import KilnIR
#if canImport(Glibc)
import Glibc
#endif

/// Image ops: Resize, GridSample, AffineGrid, RoiAlign and NonMaxSuppression.
enum ImageOps {
    static func register(into table: inout KernelTable) {
        table.add("Resize") { ctx in [.tensor(try resize(ctx))] }
        table.add("GridSample") { ctx in [.tensor(try gridSample(ctx))] }
        table.add("AffineGrid") { ctx in [.tensor(try affineGrid(ctx))] }
        table.add("RoiAlign") { ctx in [.tensor(try roiAlign(ctx))] }
        table.add("NonMaxSuppression") { ctx in [.tensor(try nonMaxSuppression(ctx))] }
        registerDecoder(into: &table)
    }

    /// A tensor of `dtype` from computed values: integer types are rounded to nearest (ties to even) and
    /// saturated to their range, floats are rounded to the type.
    static func result(_ dtype: DType, _ shape: [Int], _ values: [Double]) -> Tensor {
        guard dtype.isInteger else { return Tensor(dtype: dtype, shape: shape, doubles: values) }
        let (lo, hi): (Double, Double)
        switch dtype {
        case .int8: (lo, hi) = (-128, 127)
        case .uint8: (lo, hi) = (0, 255)
        case .int16: (lo, hi) = (-32768, 32767)
        case .uint16: (lo, hi) = (0, 65535)
        case .int32: (lo, hi) = (-2147483648, 2147483647)
        case .uint32: (lo, hi) = (0, 4294967295)
        default: (lo, hi) = (-9.2e18, 9.2e18)
        }
        return Tensor(dtype: dtype, shape: shape, doubles: values.map { v in
            v.isNaN ? 0 : min(max(v.rounded(.toNearestOrEven), lo), hi)
        })
    }

    /// An optional input that is absent or empty reads as nil.
    static func present(_ ctx: KernelContext, _ index: Int) throws -> Tensor? {
        guard let t = try ctx.optionalTensor(index), t.count > 0 else { return nil }
        return t
    }

    // MARK: Resize

    /// The interpolation taps of one output index along one axis.
    struct Taps {
        /// Input indices (already clamped to the axis).
        var indices: [Int]
        /// Weights of those indices.
        var weights: [Double]
        /// True when the output index maps outside the crop region (`tf_crop_and_resize`).
        var extrapolated: Bool
    }

    /// Settings of a Resize node that decide the interpolation weights.
    struct ResizeSettings {
        var mode: String
        var transform: String
        var nearestMode: String
        var cubicA: Double
        var excludeOutside: Bool
        var antialias: Bool
    }

    /// Interpolation weights for a fractional position `ratio` ∈ (0, 1] past the lower neighbour, given the
    /// axis scale; their count decides how many neighbours are read.
    static func coefficients(_ ratio: Double, scale: Double, _ s: ResizeSettings) throws -> [Double] {
        switch s.mode {
        case "nearest":
            if ratio == 1 { return [0, 1] }
            let up: Bool
            switch s.nearestMode {
            case "round_prefer_floor": up = ratio > 0.5
            case "round_prefer_ceil": up = ratio >= 0.5
            case "floor": up = false
            case "ceil": up = true
            default: throw KilnError(.invalidArgument, "Resize: unknown nearest_mode '\(s.nearestMode)'")
            }
            return up ? [0, 1] : [1, 0]
        case "linear":
            if !s.antialias { return [1 - ratio, ratio] }
            let sc = min(scale, 1)
            let start = Int((-1 / sc).rounded(.down)) + 1
            let footprint = 2 - 2 * start
            var c = (0..<footprint).map { i in max(0, min(1, 1 - abs((Double(start + i) - ratio) * sc))) }
            let sum = c.reduce(0, +)
            if sum != 0 { c = c.map { $0 / sum } }
            return c
        case "cubic":
            let a = s.cubicA
            if !s.antialias {
                let r1 = ratio + 1, q = 1 - ratio, q1 = q + 1
                return [((a * r1 - 5 * a) * r1 + 8 * a) * r1 - 4 * a,
                        ((a + 2) * ratio - (a + 3)) * ratio * ratio + 1,
                        ((a + 2) * q - (a + 3)) * q * q + 1,
                        ((a * q1 - 5 * a) * q1 + 8 * a) * q1 - 4 * a]
            }
            let sc = min(scale, 1)
            let iStart = Int((-2 / sc).rounded(.down)) + 1
            let iEnd = 2 - iStart
            var c = (iStart..<iEnd).map { i -> Double in
                let x = abs(sc * (Double(i) - ratio))
                if x <= 1 { return (a + 2) * x * x * x - (a + 3) * x * x + 1 }
                if x < 2 { return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a }
                return 0
            }
            let sum = c.reduce(0, +)
            if sum != 0 { c = c.map { $0 / sum } }
            return c
        default:
            throw KilnError(.invalidArgument, "Resize: unknown mode '\(s.mode)'")
        }
    }

    /// The taps of every output index along an axis of `input` elements resized to `output` with `scale`.
    static func resizeTaps(input: Int, output: Int, scale: Double, roi: (Double, Double), _ s: ResizeSettings) throws -> [Taps] {
        let inW = Double(input), outF = scale * inW
        var taps = [Taps]()
        taps.reserveCapacity(output)
        for y in 0..<output {
            let yd = Double(y)
            var x: Double
            var extrapolated = false
            switch s.transform {
            case "half_pixel": x = (yd + 0.5) / scale - 0.5
            case "pytorch_half_pixel": x = outF == 1 ? -0.5 : (yd + 0.5) / scale - 0.5
            case "align_corners": x = outF == 1 ? 0 : yd * (inW - 1) / (outF - 1)
            case "asymmetric": x = yd / scale
            case "half_pixel_symmetric":
                let adjustment = Double(output) / outF
                let offset = inW / 2 * (1 - adjustment)
                x = offset + (yd + 0.5) / scale - 0.5
            case "tf_crop_and_resize":
                x = outF == 1 ? (roi.1 - roi.0) * (inW - 1) / 2 : yd * (roi.1 - roi.0) * (inW - 1) / (outF - 1)
                x += roi.0 * (inW - 1)
                extrapolated = x < 0 || x > inW - 1
            default:
                throw KilnError(.invalidArgument, "Resize: unknown coordinate_transformation_mode '\(s.transform)'")
            }
            if !x.isFinite { x = 0 }
            // Far outside the axis every tap clamps to an edge; bounding x keeps the index arithmetic in range.
            x = min(max(x, -0x1p40), 0x1p40)
            let x0 = x.rounded(.down)
            let frac = x - x0
            let c = try coefficients(frac == 0 ? 1 : frac, scale: scale, s)
            let n = c.count
            let start: Int
            if n % 2 == 0 {
                start = Int(x0) + (frac == 0 ? -(n / 2) : -(n / 2) + 1)
            } else {
                start = Int(x0) - (n - 1) / 2 + (frac <= 0.5 ? 0 : 1)
            }
            var weights = c
            if s.excludeOutside {
                for i in 0..<n where start + i < 0 || start + i >= input { weights[i] = 0 }
                let sum = weights.reduce(0, +)
                if sum != 0 { weights = weights.map { $0 / sum } }
            }
            let indices = (0..<n).map { min(max(start + $0, 0), input - 1) }
            taps.append(Taps(indices: indices, weights: weights, extrapolated: extrapolated))
        }
        return taps
    }

    static func resize(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let r = x.rank
        guard x.dtype.isFloatingPoint || x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
        let settings = ResizeSettings(
            mode: try ctx.string("mode", "nearest"),
            transform: try ctx.string("coordinate_transformation_mode", "half_pixel"),
            nearestMode: try ctx.string("nearest_mode", "round_prefer_floor"),
            cubicA: Double(try ctx.float("cubic_coeff_a", -0.75)),
            excludeOutside: try ctx.int("exclude_outside", 0) != 0,
            antialias: try ctx.int("antialias", 0) != 0)
        let extrapolation = Double(try ctx.float("extrapolation_value", 0))
        let policy = try ctx.string("keep_aspect_ratio_policy", "stretch")
        let axes = try (ctx.ints("axes") ?? Array(0..<r)).map { try ctx.axis($0, rank: r) }
        guard Set(axes).count == axes.count else { throw ctx.fail("axes \(axes) repeat an axis") }
        var scales = [Double](repeating: 1, count: r)
        var outShape = x.shape
        if let sizes = try present(ctx, 3)?.asInts() {
            guard sizes.count == axes.count else { throw ctx.fail("sizes must have \(axes.count) entries") }
            try ctx.checkRange(sizes, "sizes", 0...maxTensorElements)
            for (i, a) in axes.enumerated() {
                scales[a] = Double(sizes[i]) / Double(x.shape[a])
                outShape[a] = sizes[i]
            }
            if policy != "stretch" {
                let chosen = axes.map { scales[$0] }
                guard let s = policy == "not_larger" ? chosen.min() : policy == "not_smaller" ? chosen.max() : nil else {
                    throw ctx.fail("unknown keep_aspect_ratio_policy '\(policy)'")
                }
                for a in axes {
                    scales[a] = s
                    outShape[a] = saturatingInt(s * Double(x.shape[a]) + 0.5)
                }
            }
        } else if let given = try present(ctx, 2)?.asDoubles() {
            guard given.count == axes.count else { throw ctx.fail("scales must have \(axes.count) entries") }
            for (i, a) in axes.enumerated() {
                guard given[i] > 0, given[i].isFinite else { throw ctx.fail("scales must be positive and finite") }
                scales[a] = given[i]
                outShape[a] = saturatingInt((given[i] * Double(x.shape[a])).rounded(.down))
            }
        } else {
            throw ctx.fail("one of scales and sizes is required")
        }
        try ctx.checkedCount(outShape)
        for a in axes where x.shape[a] == 0 && outShape[a] > 0 {
            throw ctx.fail("cannot resize axis \(a) of size 0 to \(outShape[a])")
        }
        for a in axes where !(scales[a] > 0 && scales[a].isFinite) && outShape[a] > 0 {
            throw ctx.fail("the scale of axis \(a) must be positive and finite")
        }
        var roi = [(Double, Double)](repeating: (0, 1), count: r)
        if let roiValues = try present(ctx, 1)?.asDoubles(), settings.transform == "tf_crop_and_resize" {
            guard roiValues.count == 2 * axes.count else { throw ctx.fail("roi must have \(2 * axes.count) entries") }
            for (i, a) in axes.enumerated() { roi[a] = (roiValues[i], roiValues[axes.count + i]) }
        }
        var values = x.asDoubles()
        var shape = x.shape
        for a in axes {
            let unchanged = abs(scales[a] - 1) < 1e-9 && outShape[a] == shape[a] && roi[a] == (0, 1)
            if unchanged { continue }
            var next = shape
            next[a] = outShape[a]
            try ctx.checkedCount(next, "an intermediate result")
            let taps = try resizeTaps(input: shape[a], output: outShape[a], scale: scales[a], roi: roi[a], settings)
            values = applyAlongAxis(values, shape: shape, axis: a, taps: taps, extrapolation: extrapolation)
            shape[a] = outShape[a]
        }
        return result(x.dtype, outShape, values)
    }

    /// Resamples `values` (of `shape`) along `axis` with one `Taps` per output index.
    static func applyAlongAxis(_ values: [Double], shape: [Int], axis: Int, taps: [Taps], extrapolation: Double) -> [Double] {
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        let n = shape[axis], m = taps.count
        var out = [Double](repeating: 0, count: outer * m * inner)
        if inner == 0 || outer == 0 { return out }
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for o in 0..<outer {
                    for (y, t) in taps.enumerated() {
                        let d = dst.baseAddress! + (o * m + y) * inner
                        if t.extrapolated {
                            d.update(repeating: extrapolation, count: inner)
                            continue
                        }
                        for (index, weight) in zip(t.indices, t.weights) where weight != 0 {
                            let s = src.baseAddress! + (o * n + index) * inner
                            for i in 0..<inner { d[i] += weight * s[i] }
                        }
                    }
                }
            }
        }
        return out
    }

    // MARK: GridSample

    /// Reflects `x` into [`lo`, `hi`] by mirroring at the bounds as often as needed.
    static func reflect(_ x: Double, _ lo: Double, _ hi: Double) -> Double {
        let range = hi - lo
        if range <= 0 { return lo }
        if x < lo {
            let d = lo - x
            let k = (d / range).rounded(.towardZero)
            let rest = d - k * range
            return k.truncatingRemainder(dividingBy: 2) == 0 ? lo + rest : hi - rest
        }
        if x > hi {
            let d = x - hi
            let k = (d / range).rounded(.towardZero)
            let rest = d - k * range
            return k.truncatingRemainder(dividingBy: 2) == 0 ? hi - rest : lo + rest
        }
        return x
    }

    /// Keys cubic convolution weights (a = -0.75) for the four neighbours around fractional offset `t`.
    static func cubicWeights(_ t: Double) -> [Double] {
        let a = -0.75
        let x = abs(t)
        return [((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a,
                ((a + 2) * x - (a + 3)) * x * x + 1,
                ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1,
                ((a * (2 - x) - 5 * a) * (2 - x) + 8 * a) * (2 - x) - 4 * a]
    }

    static func gridSample(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), grid = try ctx.tensor(1)
        let mode = try ctx.string("mode", "linear")
        let padding = try ctx.string("padding_mode", "zeros")
        let alignCorners = try ctx.int("align_corners", 0) != 0
        guard x.rank >= 3 else { throw ctx.fail("X must have rank at least 3") }
        let r = x.rank - 2
        guard grid.rank == x.rank, grid.shape[0] == x.shape[0], grid.shape[x.rank - 1] == r else {
            throw ctx.fail("grid \(grid.shape) does not fit X \(x.shape)")
        }
        guard ["nearest", "linear", "cubic", "bilinear", "bicubic"].contains(mode) else { throw ctx.fail("unknown mode '\(mode)'") }
        guard ["zeros", "border", "reflection"].contains(padding) else { throw ctx.fail("unknown padding_mode '\(padding)'") }
        let n = x.shape[0], c = x.shape[1]
        let dims = Array(x.shape[2...])
        let outSpatial = Array(grid.shape[1..<(grid.rank - 1)])
        let points = outSpatial.reduce(1, *)
        let planeSize = dims.reduce(1, *)
        guard planeSize > 0 || n * c * points == 0 else { throw ctx.fail("cannot sample X \(x.shape), which has an empty spatial dim") }
        let dimStrides = strides(of: dims)
        let xv = x.asDoubles()
        let gv = grid.asDoubles()
        let gridIsFloat32 = grid.dtype == .float32
        var out = [Double](repeating: 0, count: n * c * points)
        let lows = dims.map { _ in alignCorners ? 0.0 : -0.5 }
        let highs = dims.map { alignCorners ? Double($0 - 1) : Double($0) - 0.5 }

        /// The input index read for integer position `i` along dim `j`, or nil when it reads zero padding.
        func pixel(_ i: Int, _ j: Int) -> Int? {
            let d = dims[j]
            switch padding {
            case "zeros": return i >= 0 && i < d ? i : nil
            case "border": return min(max(i, 0), d - 1)
            default:
                let v = Int(reflect(Double(i), lows[j], highs[j]).rounded(.towardZero))
                return min(max(v, 0), d - 1)
            }
        }

        for b in 0..<n {
            for p in 0..<points {
                // Grid coordinates are (x, y[, z]): the innermost spatial dim comes first.
                var taps: [(offset: Int, weight: Double)] = [(0, 1)]
                var dead = false
                for j in 0..<r {
                    let g = gv[(b * points + p) * r + (r - 1 - j)]
                    let size = dims[j]
                    var coord: Double
                    if gridIsFloat32 {
                        let gf = Float(g)
                        coord = Double(alignCorners ? (gf + 1) / 2 * Float(size - 1) : ((gf + 1) * Float(size) - 1) / 2)
                    } else {
                        coord = alignCorners ? (g + 1) / 2 * Double(size - 1) : ((g + 1) * Double(size) - 1) / 2
                    }
                    if mode == "nearest" { coord = coord.rounded(.toNearestOrEven) }
                    if coord < lows[j] || coord > highs[j] {
                        if padding == "border" {
                            coord = min(max(coord, 0), Double(size - 1))
                        } else if padding == "reflection" {
                            coord = reflect(coord, lows[j], highs[j])
                        }
                    }
                    var axisTaps: [(Int, Double)] = []
                    if !coord.isFinite { coord = -2 }
                    coord = min(max(coord, -Double(size) - 4), 2 * Double(size) + 4)
                    switch mode {
                    case "nearest":
                        if let i = pixel(Int(coord.rounded(.towardZero)), j) { axisTaps.append((i, 1)) }
                    case "linear", "bilinear":
                        let f = coord.rounded(.down), t = coord - f
                        if let i = pixel(Int(f), j) { axisTaps.append((i, 1 - t)) }
                        if let i = pixel(Int(f) + 1, j) { axisTaps.append((i, t)) }
                    default:
                        let f = coord.rounded(.down)
                        let w = cubicWeights(coord - f)
                        for k in 0..<4 {
                            if let i = pixel(Int(f) - 1 + k, j) { axisTaps.append((i, w[k])) }
                        }
                    }
                    if axisTaps.isEmpty {
                        dead = true
                        break
                    }
                    var next: [(offset: Int, weight: Double)] = []
                    for t in taps {
                        for (i, w) in axisTaps { next.append((t.offset + i * dimStrides[j], t.weight * w)) }
                    }
                    taps = next
                }
                if dead { continue }
                for ch in 0..<c {
                    let plane = (b * c + ch) * planeSize
                    var sum = 0.0
                    for t in taps { sum += t.weight * xv[plane + t.offset] }
                    out[(b * c + ch) * points + p] = sum
                }
            }
        }
        return result(x.dtype, [n, c] + outSpatial, out)
    }

    // MARK: AffineGrid

    static func affineGrid(_ ctx: KernelContext) throws -> Tensor {
        let theta = try ctx.tensor(0), size = try ctx.integers(try ctx.tensor(1), "size")
        let alignCorners = try ctx.int("align_corners", 0) != 0
        guard size.count == 4 || size.count == 5 else { throw ctx.fail("size must have 4 or 5 entries") }
        let r = size.count - 2
        let n = size[0]
        guard theta.shape == [n, r, r + 1] else { throw ctx.fail("theta \(theta.shape) must be \([n, r, r + 1])") }
        let spatial = Array(size[2...])
        try ctx.checkedCount([n] + spatial + [r])
        /// Normalized coordinate of index `i` along a dim of `s` elements.
        func base(_ i: Int, _ s: Int) -> Double {
            if alignCorners { return s == 1 ? -1 : -1 + 2 * Double(i) / Double(s - 1) }
            return -1 + (2 * Double(i) + 1) / Double(s)
        }
        let points = spatial.reduce(1, *)
        let t = theta.asDoubles()
        var out = [Double](repeating: 0, count: n * points * r)
        var idx = [Int](repeating: 0, count: r)
        for p in 0..<points {
            var rem = p
            for j in stride(from: r - 1, through: 0, by: -1) {
                idx[j] = rem % spatial[j]
                rem /= spatial[j]
            }
            // Homogeneous coordinate (x, y[, z], 1): x runs along the last spatial dim.
            var h = [Double](repeating: 1, count: r + 1)
            for j in 0..<r { h[j] = base(idx[r - 1 - j], spatial[r - 1 - j]) }
            for b in 0..<n {
                for row in 0..<r {
                    var s = 0.0
                    for k in 0...r { s += t[(b * r + row) * (r + 1) + k] * h[k] }
                    out[(b * points + p) * r + row] = s
                }
            }
        }
        return Tensor(dtype: theta.dtype, shape: [n] + spatial + [r], doubles: out)
    }

    // MARK: RoiAlign

    static func roiAlign(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), rois = try ctx.tensor(1), batch = try ctx.tensor(2).asInts()
        guard x.rank == 4 else { throw ctx.fail("X must have rank 4") }
        guard rois.rank == 2, rois.shape[1] == 4, rois.shape[0] == batch.count else {
            throw ctx.fail("rois \(rois.shape) and batch_indices must describe the same boxes")
        }
        let halfPixel = try ctx.string("coordinate_transformation_mode", "half_pixel") == "half_pixel"
        let isMax = try ctx.string("mode", "avg") == "max"
        let oh = try ctx.int("output_height", 1), ow = try ctx.int("output_width", 1)
        let samplingRatio = try ctx.int("sampling_ratio", 0)
        let scale = Double(try ctx.float("spatial_scale", 1))
        guard oh >= 0, ow >= 0, samplingRatio >= 0 else {
            throw ctx.fail("output_height, output_width and sampling_ratio must be non-negative")
        }
        let c = x.shape[1], h = x.shape[2], w = x.shape[3]
        guard try ctx.checkedCount([batch.count, c, oh, ow]) == 0 || (h > 0 && w > 0) else {
            throw ctx.fail("cannot pool regions of X \(x.shape), which has an empty spatial dim")
        }
        let xv = x.asDoubles(), rv = rois.asDoubles()
        let count = batch.count
        var out = [Double](repeating: 0, count: count * c * oh * ow)
        let shift = halfPixel ? 0.5 : 0
        for roi in 0..<count {
            let b = batch[roi]
            guard b >= 0, b < x.shape[0] else { throw ctx.fail("batch index \(b) is out of range") }
            let x1 = rv[roi * 4] * scale - shift, y1 = rv[roi * 4 + 1] * scale - shift
            let x2 = rv[roi * 4 + 2] * scale - shift, y2 = rv[roi * 4 + 3] * scale - shift
            var rw = x2 - x1, rh = y2 - y1
            if !halfPixel {
                rw = max(rw, 1)
                rh = max(rh, 1)
            }
            let binH = rh / Double(oh), binW = rw / Double(ow)
            let gridH = samplingRatio > 0 ? samplingRatio : max(0, saturatingInt((rh / Double(oh)).rounded(.up)))
            let gridW = samplingRatio > 0 ? samplingRatio : max(0, saturatingInt((rw / Double(ow)).rounded(.up)))
            try ctx.checkedCount([oh, ow, gridH, gridW, 4], "the sampling grid")
            let samples = max(gridH * gridW, 1)
            // Bilinear taps of every sample point of every bin: 4 (offset, weight) pairs each.
            var taps = [(Int, Double)]()
            taps.reserveCapacity(oh * ow * gridH * gridW * 4)
            for ph in 0..<oh {
                for pw in 0..<ow {
                    for iy in 0..<gridH {
                        let yy = y1 + Double(ph) * binH + (Double(iy) + 0.5) * binH / Double(gridH)
                        for ix in 0..<gridW {
                            let xx = x1 + Double(pw) * binW + (Double(ix) + 0.5) * binW / Double(gridW)
                            if !(yy >= -1 && yy <= Double(h) && xx >= -1 && xx <= Double(w)) {  // NaN included
                                taps += [(0, 0), (0, 0), (0, 0), (0, 0)]
                                continue
                            }
                            var yv = max(yy, 0), xvv = max(xx, 0)
                            var yl = Int(yv), xl = Int(xvv), yhi: Int, xhi: Int
                            if yl >= h - 1 { yl = h - 1; yhi = h - 1; yv = Double(yl) } else { yhi = yl + 1 }
                            if xl >= w - 1 { xl = w - 1; xhi = w - 1; xvv = Double(xl) } else { xhi = xl + 1 }
                            let ly = yv - Double(yl), lx = xvv - Double(xl), hy = 1 - ly, hx = 1 - lx
                            taps += [(yl * w + xl, hy * hx), (yl * w + xhi, hy * lx), (yhi * w + xl, ly * hx), (yhi * w + xhi, ly * lx)]
                        }
                    }
                }
            }
            let per = gridH * gridW * 4
            for ch in 0..<c {
                let plane = (b * c + ch) * h * w
                for bin in 0..<(oh * ow) {
                    var acc = 0.0
                    var first = true
                    for s in 0..<(gridH * gridW) {
                        let base = bin * per + s * 4
                        if isMax {
                            var v = -Double.infinity
                            for k in 0..<4 { v = max(v, taps[base + k].1 * xv[plane + taps[base + k].0]) }
                            acc = first ? v : max(acc, v)
                            first = false
                        } else {
                            for k in 0..<4 { acc += taps[base + k].1 * xv[plane + taps[base + k].0] }
                        }
                    }
                    out[(roi * c + ch) * oh * ow + bin] = isMax ? acc : acc / Double(samples)
                }
            }
        }
        return Tensor(dtype: x.dtype, shape: [count, c, oh, ow], doubles: out)
    }

    // MARK: NonMaxSuppression

    static func nonMaxSuppression(_ ctx: KernelContext) throws -> Tensor {
        let boxes = try ctx.tensor(0), scores = try ctx.tensor(1)
        guard boxes.rank == 3, boxes.shape[2] == 4, scores.rank == 3, scores.shape[0] == boxes.shape[0],
              scores.shape[2] == boxes.shape[1] else {
            throw ctx.fail("boxes \(boxes.shape) and scores \(scores.shape) do not match")
        }
        let maxPerClass = max(try present(ctx, 2)?.asInts().first ?? 0, 0)
        let iouThreshold = try present(ctx, 3)?.asDoubles().first ?? 0
        let scoreThreshold = try present(ctx, 4)?.asDoubles().first
        let centerBox = try ctx.int("center_point_box", 0) != 0
        let batches = boxes.shape[0], count = boxes.shape[1], classes = scores.shape[1]
        let bv = boxes.asDoubles(), sv = scores.asDoubles()
        /// The (xmin, ymin, xmax, ymax) corners of box `i` of batch `b`.
        func corners(_ b: Int, _ i: Int) -> (Double, Double, Double, Double) {
            let o = (b * count + i) * 4
            if centerBox {
                let (cx, cy, bw, bh) = (bv[o], bv[o + 1], bv[o + 2], bv[o + 3])
                return (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
            }
            let (ya, xa, yb, xb) = (bv[o], bv[o + 1], bv[o + 2], bv[o + 3])
            return (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
        }
        /// Whether two boxes overlap by more than the IoU threshold.
        func suppresses(_ a: (Double, Double, Double, Double), _ b: (Double, Double, Double, Double)) -> Bool {
            let ix = min(a.2, b.2) - max(a.0, b.0), iy = min(a.3, b.3) - max(a.1, b.1)
            if ix <= 0 || iy <= 0 { return false }
            let inter = ix * iy
            let areaA = (a.2 - a.0) * (a.3 - a.1), areaB = (b.2 - b.0) * (b.3 - b.1)
            let union = areaA + areaB - inter
            if areaA <= 0 || areaB <= 0 || union <= 0 { return false }
            return inter / union > iouThreshold
        }
        var selected = [Int64]()
        for b in 0..<batches {
            let boxCorners = (0..<count).map { corners(b, $0) }
            for cl in 0..<classes {
                let base = (b * classes + cl) * count
                var candidates = (0..<count).filter { i in scoreThreshold.map { sv[base + i] > $0 } ?? true }
                candidates.sort { sv[base + $0] > sv[base + $1] || sv[base + $0] == sv[base + $1] && $0 < $1 }
                var kept = [Int]()
                for i in candidates {
                    if kept.count >= maxPerClass { break }
                    if kept.contains(where: { suppresses(boxCorners[i], boxCorners[$0]) }) { continue }
                    kept.append(i)
                    selected += [Int64(b), Int64(cl), Int64(i)]
                }
            }
        }
        return Tensor(shape: [selected.count / 3, 3], selected)
    }
}

// MARK: - ImageDecoder

extension ImageOps {
    /// Registers ImageDecoder (BMP, PNG, PNM, uncompressed TIFF and baseline JPEG).
    static func registerDecoder(into table: inout KernelTable) {
        table.add("ImageDecoder") { ctx in [.tensor(try imageDecoder(ctx))] }
    }

    /// A decoded image: `height × width` pixels of `channels` (1 or 3) bytes each, row-major.
    struct Image {
        var width: Int
        var height: Int
        var channels: Int
        var pixels: [UInt8]
    }

    /// An error for a malformed or unsupported encoded image.
    static func imageError(_ message: String) -> KilnError {
        KilnError(.invalidArgument, "ImageDecoder: \(message)")
    }

    static func imageDecoder(_ ctx: KernelContext) throws -> Tensor {
        let encoded = try ctx.tensor(0)
        guard encoded.dtype == .uint8 else { throw ctx.fail("encoded_stream must be uint8") }
        let bytes = encoded.elements(as: UInt8.self)
        let format = try ctx.string("pixel_format", "RGB")
        let image: Image
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            image = try decodePNG(bytes)
        } else if bytes.starts(with: [0x42, 0x4D]) {
            image = try decodeBMP(bytes)
        } else if bytes.count > 2, bytes[0] == 0x50, (0x31...0x36).contains(bytes[1]) {
            image = try decodePNM(bytes)
        } else if bytes.starts(with: [0x49, 0x49, 0x2A, 0x00]) || bytes.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) {
            image = try decodeTIFF(bytes)
        } else if bytes.starts(with: [0xFF, 0xD8]) {
            image = try decodeJPEG(bytes)
        } else {
            throw ctx.unsupported("this image format (only BMP, PNG, PNM, uncompressed TIFF and baseline JPEG)")
        }
        let count = image.width * image.height
        switch format {
        case "RGB", "BGR":
            var out = [UInt8](repeating: 0, count: count * 3)
            for p in 0..<count {
                for k in 0..<3 {
                    let v = image.channels == 1 ? image.pixels[p] : image.pixels[p * 3 + k]
                    out[p * 3 + (format == "RGB" ? k : 2 - k)] = v
                }
            }
            return Tensor(shape: [image.height, image.width, 3], out)
        case "Grayscale":
            if image.channels == 1 { return Tensor(shape: [image.height, image.width, 1], image.pixels) }
            var out = [UInt8](repeating: 0, count: count)
            for p in 0..<count {
                // ITU-R 601-2 luma in 16-bit fixed point, rounded.
                let r = UInt32(image.pixels[p * 3]), g = UInt32(image.pixels[p * 3 + 1]), b = UInt32(image.pixels[p * 3 + 2])
                out[p] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
            }
            return Tensor(shape: [image.height, image.width, 1], out)
        default:
            throw ctx.fail("unknown pixel_format '\(format)'")
        }
    }

    /// Reads a little-endian (or big-endian) unsigned integer of `size` bytes at `offset`.
    static func readUInt(_ b: [UInt8], _ offset: Int, _ size: Int, bigEndian: Bool = false) throws -> Int {
        guard offset >= 0, offset + size <= b.count else { throw imageError("truncated data") }
        var v = 0
        for i in 0..<size { v |= Int(b[offset + (bigEndian ? size - 1 - i : i)]) << (8 * i) }
        return v
    }

    // MARK: BMP

    static func decodeBMP(_ b: [UInt8]) throws -> Image {
        let dataOffset = try readUInt(b, 10, 4)
        let headerSize = try readUInt(b, 14, 4)
        guard headerSize >= 40 else { throw imageError("unsupported BMP header") }
        let width = try readUInt(b, 18, 4)
        var height = Int(Int32(truncatingIfNeeded: try readUInt(b, 22, 4)))
        let bpp = try readUInt(b, 28, 2)
        let compression = try readUInt(b, 30, 4)
        guard compression == 0 || compression == 3 && bpp == 32 else { throw imageError("compressed BMP is not supported") }
        let topDown = height < 0
        height = abs(height)
        var palette = [[UInt8]]()
        if bpp <= 8 {
            let colors = try readUInt(b, 46, 4)
            let n = colors == 0 ? 1 << bpp : colors
            for i in 0..<n {
                let o = 14 + headerSize + 4 * i
                guard o + 3 <= b.count else { throw imageError("truncated palette") }
                palette.append([b[o + 2], b[o + 1], b[o]])
            }
        }
        guard [1, 4, 8, 24, 32].contains(bpp) else { throw imageError("\(bpp)-bit BMP is not supported") }
        let rowSize = (width * bpp + 31) / 32 * 4
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            let row = dataOffset + (topDown ? y : height - 1 - y) * rowSize
            guard row + rowSize <= b.count else { throw imageError("truncated pixel data") }
            for x in 0..<width {
                let o = (y * width + x) * 3
                if bpp >= 24 {
                    let p = row + x * bpp / 8
                    pixels[o] = b[p + 2]
                    pixels[o + 1] = b[p + 1]
                    pixels[o + 2] = b[p]
                } else {
                    let bit = x * bpp
                    let index = Int(b[row + bit / 8] >> UInt8(8 - bpp - bit % 8)) & ((1 << bpp) - 1)
                    guard index < palette.count else { throw imageError("palette index out of range") }
                    pixels[o] = palette[index][0]
                    pixels[o + 1] = palette[index][1]
                    pixels[o + 2] = palette[index][2]
                }
            }
        }
        return Image(width: width, height: height, channels: 3, pixels: pixels)
    }

    // MARK: PNM

    static func decodePNM(_ b: [UInt8]) throws -> Image {
        let kind = b[1] - 0x30
        var pos = 2
        /// The next whitespace-separated decimal number of the header (comments skipped).
        func number() throws -> Int {
            while pos < b.count {
                if b[pos] == 0x23 { while pos < b.count && b[pos] != 0x0A { pos += 1 } }
                else if b[pos] == 0x20 || (0x09...0x0D).contains(b[pos]) { pos += 1 }
                else { break }
            }
            var v = 0, digits = 0
            while pos < b.count, (0x30...0x39).contains(b[pos]) {
                v = v * 10 + Int(b[pos] - 0x30)
                pos += 1
                digits += 1
            }
            guard digits > 0 else { throw imageError("bad PNM header") }
            return v
        }
        let width = try number(), height = try number()
        let maxValue = kind == 1 || kind == 4 ? 1 : try number()
        let channels = kind == 3 || kind == 6 ? 3 : 1
        let count = width * height * channels
        var samples = [Int](repeating: 0, count: count)
        if kind <= 3 {
            for i in 0..<count { samples[i] = try number() }
        } else {
            pos += 1
            if kind == 4 {
                let rowBytes = (width + 7) / 8
                for y in 0..<height {
                    for x in 0..<width {
                        let o = pos + y * rowBytes + x / 8
                        guard o < b.count else { throw imageError("truncated PNM data") }
                        samples[y * width + x] = Int(b[o] >> UInt8(7 - x % 8)) & 1
                    }
                }
            } else {
                let wide = maxValue > 255
                guard pos + count * (wide ? 2 : 1) <= b.count else { throw imageError("truncated PNM data") }
                for i in 0..<count {
                    samples[i] = wide ? Int(b[pos + 2 * i]) << 8 | Int(b[pos + 2 * i + 1]) : Int(b[pos + i])
                }
            }
        }
        let bilevel = kind == 1 || kind == 4
        let pixels = samples.map { s -> UInt8 in
            if bilevel { return s == 0 ? 255 : 0 }
            return maxValue == 255 ? UInt8(clamping: s) : UInt8(clamping: (s * 255 + maxValue / 2) / max(maxValue, 1))
        }
        return Image(width: width, height: height, channels: channels, pixels: pixels)
    }

    // MARK: TIFF

    static func decodeTIFF(_ b: [UInt8]) throws -> Image {
        let big = b[0] == 0x4D
        let ifd = try readUInt(b, 4, 4, bigEndian: big)
        let entries = try readUInt(b, ifd, 2, bigEndian: big)
        var tags = [Int: [Int]]()
        for i in 0..<entries {
            let e = ifd + 2 + 12 * i
            let tag = try readUInt(b, e, 2, bigEndian: big), type = try readUInt(b, e + 2, 2, bigEndian: big)
            let count = try readUInt(b, e + 4, 4, bigEndian: big)
            let size = type == 3 ? 2 : type == 4 ? 4 : 1
            let base = count * size <= 4 ? e + 8 : try readUInt(b, e + 8, 4, bigEndian: big)
            var values = [Int]()
            for k in 0..<min(count, 1 << 20) { values.append(try readUInt(b, base + k * size, size, bigEndian: big)) }
            tags[tag] = values
        }
        guard let width = tags[256]?.first, let height = tags[257]?.first, let offsets = tags[273] else {
            throw imageError("TIFF lacks size or strips")
        }
        guard (tags[259]?.first ?? 1) == 1 else { throw imageError("compressed TIFF is not supported") }
        guard (tags[284]?.first ?? 1) == 1 else { throw imageError("planar TIFF is not supported") }
        let spp = tags[277]?.first ?? 1
        guard (tags[258] ?? [8]).allSatisfy({ $0 == 8 }) else { throw imageError("only 8-bit TIFF samples are supported") }
        let photometric = tags[262]?.first ?? 1
        let counts = tags[279] ?? []
        var data = [UInt8]()
        for (i, o) in offsets.enumerated() {
            let n = i < counts.count ? counts[i] : width * height * spp - data.count
            guard o + n <= b.count else { throw imageError("truncated TIFF strip") }
            data += b[o..<(o + n)]
        }
        guard data.count >= width * height * spp else { throw imageError("truncated TIFF data") }
        let channels = spp >= 3 ? 3 : 1
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        for p in 0..<(width * height) {
            for k in 0..<channels {
                var v = data[p * spp + k]
                if channels == 1 && photometric == 0 { v = 255 - v }
                pixels[p * channels + k] = v
            }
        }
        return Image(width: width, height: height, channels: channels, pixels: pixels)
    }

    // MARK: PNG and inflate

    /// A bit reader over a deflate stream (least significant bit first).
    struct BitReader {
        let bytes: [UInt8]
        var pos: Int
        var bit = 0

        /// The next `n` bits as an integer.
        mutating func bits(_ n: Int) throws -> Int {
            var v = 0
            for i in 0..<n {
                guard pos < bytes.count else { throw ImageOps.imageError("truncated compressed data") }
                v |= Int((bytes[pos] >> UInt8(bit)) & 1) << i
                bit += 1
                if bit == 8 { bit = 0; pos += 1 }
            }
            return v
        }
    }

    /// A canonical Huffman code: symbol counts per length and symbols in code order.
    struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols = [Int]()

        init(lengths: [Int]) {
            for l in lengths { counts[l] += 1 }
            counts[0] = 0
            var offsets = [Int](repeating: 0, count: 16)
            for l in 1..<16 { offsets[l] = offsets[l - 1] + counts[l - 1] }
            symbols = [Int](repeating: 0, count: lengths.count)
            for (s, l) in lengths.enumerated() where l != 0 {
                symbols[offsets[l]] = s
                offsets[l] += 1
            }
        }

        /// Decodes one symbol.
        func decode(_ r: inout BitReader) throws -> Int {
            var code = 0, first = 0, index = 0
            for l in 1..<16 {
                code |= try r.bits(1)
                let count = counts[l]
                if code - count < first { return symbols[index + (code - first)] }
                index += count
                first += count
                first <<= 1
                code <<= 1
            }
            throw ImageOps.imageError("bad Huffman code")
        }
    }

    /// Decompresses a zlib stream (RFC 1950/1951).
    static func inflate(_ data: [UInt8]) throws -> [UInt8] {
        guard data.count >= 2, data[0] & 0x0F == 8 else { throw imageError("not a zlib stream") }
        var r = BitReader(bytes: data, pos: 2)
        var out = [UInt8]()
        let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
        let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
        let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                        4097, 6145, 8193, 12289, 16385, 24577]
        let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
        var last = 0
        repeat {
            last = try r.bits(1)
            let type = try r.bits(2)
            if type == 0 {
                if r.bit != 0 { r.bit = 0; r.pos += 1 }
                let len = try readUInt(data, r.pos, 2)
                r.pos += 4
                guard r.pos + len <= data.count else { throw imageError("truncated stored block") }
                out += data[r.pos..<(r.pos + len)]
                r.pos += len
                continue
            }
            let lit: Huffman, dist: Huffman
            if type == 1 {
                lit = Huffman(lengths: (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 })
                dist = Huffman(lengths: Array(repeating: 5, count: 30))
            } else if type == 2 {
                let hlit = try r.bits(5) + 257, hdist = try r.bits(5) + 1, hclen = try r.bits(4) + 4
                let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
                var codeLengths = [Int](repeating: 0, count: 19)
                for i in 0..<hclen { codeLengths[order[i]] = try r.bits(3) }
                let lengthCode = Huffman(lengths: codeLengths)
                var lengths = [Int]()
                while lengths.count < hlit + hdist {
                    let sym = try lengthCode.decode(&r)
                    switch sym {
                    case 0..<16: lengths.append(sym)
                    case 16:
                        guard let prev = lengths.last else { throw imageError("bad code lengths") }
                        lengths += Array(repeating: prev, count: 3 + (try r.bits(2)))
                    case 17: lengths += Array(repeating: 0, count: 3 + (try r.bits(3)))
                    default: lengths += Array(repeating: 0, count: 11 + (try r.bits(7)))
                    }
                }
                lit = Huffman(lengths: Array(lengths[0..<hlit]))
                dist = Huffman(lengths: Array(lengths[hlit..<(hlit + hdist)]))
            } else {
                throw imageError("bad deflate block type")
            }
            while true {
                let sym = try lit.decode(&r)
                if sym < 256 {
                    out.append(UInt8(sym))
                } else if sym == 256 {
                    break
                } else {
                    let li = sym - 257
                    guard li < lengthBase.count else { throw imageError("bad length code") }
                    let length = lengthBase[li] + (try r.bits(lengthExtra[li]))
                    let di = try dist.decode(&r)
                    guard di < distBase.count else { throw imageError("bad distance code") }
                    let distance = distBase[di] + (try r.bits(distExtra[di]))
                    guard distance <= out.count else { throw imageError("distance too far back") }
                    let start = out.count - distance
                    for k in 0..<length { out.append(out[start + k]) }
                }
            }
        } while last == 0
        return out
    }

    static func decodePNG(_ b: [UInt8]) throws -> Image {
        var pos = 8
        var width = 0, height = 0, depth = 0, colorType = 0, interlace = 0
        var palette = [UInt8]()
        var idat = [UInt8]()
        while pos + 8 <= b.count {
            let length = try readUInt(b, pos, 4, bigEndian: true)
            let type = String(decoding: b[(pos + 4)..<(pos + 8)], as: UTF8.self)
            let body = pos + 8
            guard body + length <= b.count else { throw imageError("truncated PNG chunk") }
            switch type {
            case "IHDR":
                width = try readUInt(b, body, 4, bigEndian: true)
                height = try readUInt(b, body + 4, 4, bigEndian: true)
                depth = Int(b[body + 8])
                colorType = Int(b[body + 9])
                interlace = Int(b[body + 12])
            case "PLTE": palette = Array(b[body..<(body + length)])
            case "IDAT": idat += b[body..<(body + length)]
            default: break
            }
            pos = body + length + 4
            if type == "IEND" { break }
        }
        guard interlace == 0 else { throw imageError("interlaced PNG is not supported") }
        let samplesPerPixel: Int
        switch colorType {
        case 0, 3: samplesPerPixel = 1
        case 2: samplesPerPixel = 3
        case 4: samplesPerPixel = 2
        case 6: samplesPerPixel = 4
        default: throw imageError("bad PNG color type \(colorType)")
        }
        guard [1, 2, 4, 8, 16].contains(depth) else { throw imageError("bad PNG bit depth \(depth)") }
        let raw = try inflate(idat)
        let bitsPerPixel = samplesPerPixel * depth
        let stride = (width * bitsPerPixel + 7) / 8
        let bpp = max(1, bitsPerPixel / 8)
        guard raw.count >= height * (stride + 1) else { throw imageError("truncated PNG data") }
        var data = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            for x in 0..<stride {
                let v = raw[y * (stride + 1) + 1 + x]
                let a = x >= bpp ? Int(data[y * stride + x - bpp]) : 0
                let up = y > 0 ? Int(data[(y - 1) * stride + x]) : 0
                let c = x >= bpp && y > 0 ? Int(data[(y - 1) * stride + x - bpp]) : 0
                let predicted: Int
                switch filter {
                case 0: predicted = 0
                case 1: predicted = a
                case 2: predicted = up
                case 3: predicted = (a + up) / 2
                case 4:
                    let p = a + up - c
                    let pa = abs(p - a), pb = abs(p - up), pc = abs(p - c)
                    predicted = pa <= pb && pa <= pc ? a : pb <= pc ? up : c
                default: throw imageError("bad PNG filter \(filter)")
                }
                data[y * stride + x] = v &+ UInt8(truncatingIfNeeded: predicted)
            }
        }
        /// Sample `s` of pixel `x` in row `y`, scaled to 8 bits (palette indices unscaled).
        func sample(_ y: Int, _ x: Int, _ s: Int) -> Int {
            let row = y * stride
            if depth == 8 { return Int(data[row + x * samplesPerPixel + s]) }
            if depth == 16 { return Int(data[row + (x * samplesPerPixel + s) * 2]) }
            let bit = (x * samplesPerPixel + s) * depth
            let v = Int(data[row + bit / 8] >> UInt8(8 - depth - bit % 8)) & ((1 << depth) - 1)
            return colorType == 3 ? v : v * 255 / ((1 << depth) - 1)
        }
        let channels = colorType == 0 || colorType == 4 ? 1 : 3
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        for y in 0..<height {
            for x in 0..<width {
                let o = (y * width + x) * channels
                if colorType == 3 {
                    let i = sample(y, x, 0)
                    guard 3 * i + 2 < palette.count else { throw imageError("palette index out of range") }
                    for k in 0..<3 { pixels[o + k] = palette[3 * i + k] }
                } else {
                    for k in 0..<channels { pixels[o + k] = UInt8(sample(y, x, k)) }
                }
            }
        }
        return Image(width: width, height: height, channels: channels, pixels: pixels)
    }
}

// MARK: - Baseline JPEG

extension ImageOps {
    /// Natural (row-major) position of the k-th coefficient in zig-zag order.
    static let zigzag: [Int] = [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ]

    /// A JPEG Huffman table in canonical form.
    struct JPEGHuffman {
        var minCode = [Int](repeating: 0, count: 17)
        var maxCode = [Int](repeating: -1, count: 17)
        var firstIndex = [Int](repeating: 0, count: 17)
        var symbols = [Int]()

        init(counts: [Int], symbols: [Int]) {
            self.symbols = symbols
            var code = 0, index = 0
            for l in 1...16 {
                firstIndex[l] = index
                minCode[l] = code
                code += counts[l - 1]
                index += counts[l - 1]
                maxCode[l] = counts[l - 1] > 0 ? code - 1 : -1
                code <<= 1
            }
        }
    }

    /// Reads the entropy-coded bits of a JPEG scan (most significant bit first, 0xFF00 unstuffed).
    struct JPEGBits {
        let bytes: [UInt8]
        var pos: Int
        var buffer = 0
        var count = 0

        /// The next bit; zeros once a marker is reached.
        mutating func bit() -> Int {
            if count == 0 {
                var byte = 0
                if pos < bytes.count {
                    if bytes[pos] == 0xFF {
                        let next = pos + 1 < bytes.count ? bytes[pos + 1] : 0xD9
                        if next == 0 {
                            byte = 0xFF
                            pos += 2
                        }
                        // Any other marker: feed zeros and stay put.
                    } else {
                        byte = Int(bytes[pos])
                        pos += 1
                    }
                }
                buffer = byte
                count = 8
            }
            count -= 1
            return (buffer >> count) & 1
        }

        /// The next `n` bits as an unsigned integer.
        mutating func bits(_ n: Int) -> Int {
            var v = 0
            for _ in 0..<n { v = v << 1 | bit() }
            return v
        }

        /// Decodes one Huffman symbol.
        mutating func decode(_ h: JPEGHuffman) throws -> Int {
            var code = 0
            for l in 1...16 {
                code = code << 1 | bit()
                if h.maxCode[l] >= 0 && code <= h.maxCode[l] && code >= h.minCode[l] {
                    return h.symbols[h.firstIndex[l] + code - h.minCode[l]]
                }
            }
            throw ImageOps.imageError("bad JPEG Huffman code")
        }

        /// Skips to the byte after the next restart marker.
        mutating func restart() {
            count = 0
            while pos + 1 < bytes.count && !(bytes[pos] == 0xFF && (0xD0...0xD7).contains(bytes[pos + 1])) { pos += 1 }
            pos += 2
        }
    }

    /// A colour component of a JPEG frame.
    struct JPEGComponent {
        var id: Int
        var h: Int
        var v: Int
        var quant: Int
        var dcTable = 0
        var acTable = 0
        var prediction = 0
        /// Samples of the whole MCU-aligned plane.
        var plane: [UInt8] = []
        var planeWidth = 0
    }

    /// The islow integer inverse DCT of libjpeg: dequantized coefficients (natural order) to 8×8 samples.
    static func inverseDCT(_ c: [Int], into out: inout [UInt8], at offset: Int, stride: Int) {
        let constBits = 13, pass1 = 2
        func descale(_ x: Int, _ n: Int) -> Int { (x + (1 << (n - 1))) >> n }
        func limit(_ x: Int) -> UInt8 {
            let m = x & 1023
            if m < 128 { return UInt8(m + 128) }
            if m < 512 { return 255 }
            if m < 896 { return 0 }
            return UInt8(m - 896)
        }
        /// One 1-D 8-point pass; returns the 8 outputs before the final descale.
        func pass(_ i0: Int, _ i1: Int, _ i2: Int, _ i3: Int, _ i4: Int, _ i5: Int, _ i6: Int, _ i7: Int) -> [Int] {
            var z2 = i2, z3 = i6
            var z1 = (z2 + z3) * 4433
            let t2e = z1 + z3 * -15137
            let t3e = z1 + z2 * 6270
            z2 = i0
            z3 = i4
            let t0e = (z2 + z3) << constBits, t1e = (z2 - z3) << constBits
            let t10 = t0e + t3e, t13 = t0e - t3e, t11 = t1e + t2e, t12 = t1e - t2e
            var t0 = i7, t1 = i5, t2 = i3, t3 = i1
            z1 = t0 + t3
            z2 = t1 + t2
            z3 = t0 + t2
            var z4 = t1 + t3
            let z5 = (z3 + z4) * 9633
            t0 *= 2446
            t1 *= 16819
            t2 *= 25172
            t3 *= 12299
            z1 *= -7373
            z2 *= -20995
            z3 *= -16069
            z4 *= -3196
            z3 += z5
            z4 += z5
            t0 += z1 + z3
            t1 += z2 + z4
            t2 += z2 + z3
            t3 += z1 + z4
            return [t10 + t3, t11 + t2, t12 + t1, t13 + t0, t13 - t0, t12 - t1, t11 - t2, t10 - t3]
        }
        var ws = [Int](repeating: 0, count: 64)
        for col in 0..<8 {
            let r = pass(c[col], c[8 + col], c[16 + col], c[24 + col], c[32 + col], c[40 + col], c[48 + col], c[56 + col])
            for row in 0..<8 { ws[row * 8 + col] = descale(r[row], constBits - pass1) }
        }
        for row in 0..<8 {
            let w = row * 8
            let r = pass(ws[w], ws[w + 1], ws[w + 2], ws[w + 3], ws[w + 4], ws[w + 5], ws[w + 6], ws[w + 7])
            for col in 0..<8 { out[offset + row * stride + col] = limit(descale(r[col], constBits + pass1 + 3)) }
        }
    }

    /// Upsamples a component plane (`w × h` valid samples) by (`fh`, `fv`) to `outW × outH` as libjpeg's
    /// fancy upsampling does (triangle filter for 2×1 and 2×2, replication otherwise).
    static func upsample(_ p: [UInt8], stride: Int, w: Int, h: Int, fh: Int, fv: Int, outW: Int, outH: Int) -> [Int] {
        var out = [Int](repeating: 0, count: outW * outH)
        func at(_ y: Int, _ x: Int) -> Int { Int(p[min(max(y, 0), h - 1) * stride + min(max(x, 0), w - 1)]) }
        if fh == 1 && fv == 1 {
            for y in 0..<outH { for x in 0..<outW { out[y * outW + x] = at(y, x) } }
        } else if fh == 2 && (fv == 1 || fv == 2) && w >= 2 {
            for oy in 0..<outH {
                let y = oy / fv
                // Column sums for 2×2: 3 × the nearer row + the further row.
                func colsum(_ x: Int) -> Int {
                    let other = oy % 2 == 0 ? y - 1 : y + 1
                    return at(y, x) * 3 + at(other, x)
                }
                for x in 0..<w {
                    let even: Int, odd: Int
                    if fv == 2 {
                        let this = colsum(x)
                        even = x == 0 ? (this * 4 + 8) >> 4 : (this * 3 + colsum(x - 1) + 8) >> 4
                        odd = x == w - 1 ? (this * 4 + 7) >> 4 : (this * 3 + colsum(x + 1) + 7) >> 4
                    } else {
                        let v = at(y, x)
                        even = x == 0 ? v : (v * 3 + at(y, x - 1) + 1) >> 2
                        odd = x == w - 1 ? v : (v * 3 + at(y, x + 1) + 2) >> 2
                    }
                    if 2 * x < outW { out[oy * outW + 2 * x] = even }
                    if 2 * x + 1 < outW { out[oy * outW + 2 * x + 1] = odd }
                }
            }
        } else {
            for y in 0..<outH { for x in 0..<outW { out[y * outW + x] = at(y / fv, x / fh) } }
        }
        return out
    }

    static func decodeJPEG(_ b: [UInt8]) throws -> Image {
        var quant = [[Int]](repeating: [Int](repeating: 1, count: 64), count: 4)
        var dcTables = [JPEGHuffman?](repeating: nil, count: 4), acTables = [JPEGHuffman?](repeating: nil, count: 4)
        var components = [JPEGComponent]()
        var width = 0, height = 0, restartInterval = 0
        var pos = 2
        var adobeTransform = -1
        var scanned = false
        while pos + 4 <= b.count {
            guard b[pos] == 0xFF else { pos += 1; continue }
            let marker = b[pos + 1]
            if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0xFF { pos += marker == 0xFF ? 1 : 2; continue }
            if marker == 0xD9 { break }
            let length = try readUInt(b, pos + 2, 2, bigEndian: true)
            let body = pos + 4, end = pos + 2 + length
            guard end <= b.count, length >= 2 else { throw imageError("truncated JPEG segment") }
            switch marker {
            case 0xDB:
                var p = body
                while p < end {
                    let precision = Int(b[p] >> 4), id = Int(b[p] & 15)
                    guard id < 4 else { throw imageError("bad quantization table id") }
                    p += 1
                    for k in 0..<64 {
                        quant[id][zigzag[k]] = precision == 0 ? Int(b[p + k]) : try readUInt(b, p + 2 * k, 2, bigEndian: true)
                    }
                    p += precision == 0 ? 64 : 128
                }
            case 0xC4:
                var p = body
                while p < end {
                    let cls = Int(b[p] >> 4), id = Int(b[p] & 15)
                    guard id < 4, p + 17 <= end else { throw imageError("bad Huffman table") }
                    let counts = (0..<16).map { Int(b[p + 1 + $0]) }
                    let total = counts.reduce(0, +)
                    guard p + 17 + total <= end else { throw imageError("truncated Huffman table") }
                    let symbols = (0..<total).map { Int(b[p + 17 + $0]) }
                    let table = JPEGHuffman(counts: counts, symbols: symbols)
                    if cls == 0 { dcTables[id] = table } else { acTables[id] = table }
                    p += 17 + total
                }
            case 0xC0, 0xC1:
                guard b[body] == 8 else { throw imageError("only 8-bit JPEG is supported") }
                height = try readUInt(b, body + 1, 2, bigEndian: true)
                width = try readUInt(b, body + 3, 2, bigEndian: true)
                let n = Int(b[body + 5])
                for i in 0..<n {
                    let o = body + 6 + 3 * i
                    guard o + 3 <= end else { throw imageError("truncated frame header") }
                    components.append(JPEGComponent(id: Int(b[o]), h: Int(b[o + 1] >> 4), v: Int(b[o + 1] & 15), quant: Int(b[o + 2] & 3)))
                }
            case 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF:
                throw imageError("progressive, lossless and arithmetic-coded JPEG are not supported")
            case 0xDD:
                restartInterval = try readUInt(b, body, 2, bigEndian: true)
            case 0xEE:
                if length >= 12 { adobeTransform = Int(b[body + 11]) }
            case 0xDA:
                guard !scanned else { throw imageError("multi-scan JPEG is not supported") }
                guard !components.isEmpty, width > 0, height > 0 else { throw imageError("scan before frame header") }
                let n = Int(b[body])
                guard n == components.count else { throw imageError("non-interleaved JPEG scans are not supported") }
                for i in 0..<n {
                    let id = Int(b[body + 1 + 2 * i]), tables = b[body + 2 + 2 * i]
                    guard let c = components.firstIndex(where: { $0.id == id }) else { throw imageError("scan names an unknown component") }
                    components[c].dcTable = Int(tables >> 4) & 3
                    components[c].acTable = Int(tables & 15) & 3
                }
                pos = end
                try decodeScan(b, &pos, &components, width: width, height: height, quant: quant,
                               dc: dcTables, ac: acTables, restartInterval: restartInterval)
                scanned = true
                continue
            default:
                break
            }
            pos = end
        }
        guard scanned else { throw imageError("JPEG has no image data") }
        let hmax = components.map(\.h).max()!, vmax = components.map(\.v).max()!
        let planes = components.map { c -> [Int] in
            let w = (width * c.h + hmax - 1) / hmax, h = (height * c.v + vmax - 1) / vmax
            return upsample(c.plane, stride: c.planeWidth, w: w, h: h, fh: hmax / c.h, fv: vmax / c.v, outW: width, outH: height)
        }
        let count = width * height
        if components.count == 1 {
            return Image(width: width, height: height, channels: 1, pixels: planes[0].map { UInt8(clamping: $0) })
        }
        guard components.count == 3 else { throw imageError("\(components.count)-component JPEG is not supported") }
        var pixels = [UInt8](repeating: 0, count: count * 3)
        let convert = adobeTransform != 0
        for p in 0..<count {
            let y = planes[0][p], cb = planes[1][p] - 128, cr = planes[2][p] - 128
            if convert {
                // libjpeg's fixed-point YCbCr → RGB (16 fractional bits).
                let half = 1 << 15
                pixels[p * 3] = UInt8(clamping: y + ((91881 * cr + half) >> 16))
                pixels[p * 3 + 1] = UInt8(clamping: y + ((-22554 * cb + half - 46802 * cr) >> 16))
                pixels[p * 3 + 2] = UInt8(clamping: y + ((116130 * cb + half) >> 16))
            } else {
                pixels[p * 3] = UInt8(clamping: planes[0][p])
                pixels[p * 3 + 1] = UInt8(clamping: planes[1][p])
                pixels[p * 3 + 2] = UInt8(clamping: planes[2][p])
            }
        }
        return Image(width: width, height: height, channels: 3, pixels: pixels)
    }

    /// Decodes the interleaved baseline scan starting at `pos` into each component's plane.
    static func decodeScan(_ b: [UInt8], _ pos: inout Int, _ components: inout [JPEGComponent], width: Int, height: Int,
                           quant: [[Int]], dc: [JPEGHuffman?], ac: [JPEGHuffman?], restartInterval: Int) throws {
        let hmax = components.map(\.h).max()!, vmax = components.map(\.v).max()!
        let single = components.count == 1
        let mcusX = single ? (width + 7) / 8 : (width + 8 * hmax - 1) / (8 * hmax)
        let mcusY = single ? (height + 7) / 8 : (height + 8 * vmax - 1) / (8 * vmax)
        for i in components.indices {
            let c = components[i]
            let bw = single ? mcusX : mcusX * c.h, bh = single ? mcusY : mcusY * c.v
            components[i].planeWidth = bw * 8
            components[i].plane = [UInt8](repeating: 0, count: bw * 8 * bh * 8)
            components[i].prediction = 0
        }
        var bits = JPEGBits(bytes: b, pos: pos)
        var coefficients = [Int](repeating: 0, count: 64)
        var mcu = 0
        for my in 0..<mcusY {
            for mx in 0..<mcusX {
                if restartInterval > 0 && mcu > 0 && mcu % restartInterval == 0 {
                    bits.restart()
                    for i in components.indices { components[i].prediction = 0 }
                }
                mcu += 1
                for i in components.indices {
                    let c = components[i]
                    guard let dcTable = dc[c.dcTable], let acTable = ac[c.acTable] else { throw imageError("missing Huffman table") }
                    let blocksV = single ? 1 : c.v, blocksH = single ? 1 : c.h
                    for v in 0..<blocksV {
                        for h in 0..<blocksH {
                            for k in 0..<64 { coefficients[k] = 0 }
                            let s = try bits.decode(dcTable)
                            var diff = 0
                            if s > 0 {
                                diff = bits.bits(s)
                                if diff < 1 << (s - 1) { diff -= (1 << s) - 1 }
                            }
                            components[i].prediction += diff
                            let q = quant[c.quant]
                            coefficients[0] = components[i].prediction * q[0]
                            var k = 1
                            while k < 64 {
                                let rs = try bits.decode(acTable)
                                let run = rs >> 4, size = rs & 15
                                if size == 0 {
                                    if run == 15 { k += 16; continue }
                                    break
                                }
                                k += run
                                guard k < 64 else { throw imageError("bad AC run") }
                                var value = bits.bits(size)
                                if value < 1 << (size - 1) { value -= (1 << size) - 1 }
                                coefficients[zigzag[k]] = value * q[zigzag[k]]
                                k += 1
                            }
                            let by = single ? my : my * c.v + v, bx = single ? mx : mx * c.h + h
                            inverseDCT(coefficients, into: &components[i].plane, at: by * 8 * c.planeWidth + bx * 8, stride: c.planeWidth)
                        }
                    }
                }
            }
        }
        pos = bits.pos
    }
}
