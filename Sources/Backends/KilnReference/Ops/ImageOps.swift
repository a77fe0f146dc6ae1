import KilnIR
#if canImport(Glibc)
import Glibc
#endif

/// Image ops: Resize, GridSample, AffineGrid, RoiAlign, NonMaxSuppression and ImageDecoder (whose formats
/// are decoded in `Codecs/`).
enum ImageOps {
    static func register(into table: inout KernelTable) {
        table.add("Resize") { ctx in [.tensor(try resize(ctx))] }
        table.add("GridSample") { ctx in [.tensor(try gridSample(ctx))] }
        table.add("AffineGrid") { ctx in [.tensor(try affineGrid(ctx))] }
        table.add("RoiAlign") { ctx in [.tensor(try roiAlign(ctx))] }
        table.add("NonMaxSuppression") { ctx in [.tensor(try nonMaxSuppression(ctx))] }
        table.add("ImageDecoder") { ctx in [.tensor(try imageDecoder(ctx))] }
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

    // MARK: ImageDecoder

    /// ImageDecoder: decodes the encoded stream (BMP, PNG, PNM, uncompressed TIFF or baseline JPEG) and
    /// converts it to `pixel_format`.
    static func imageDecoder(_ ctx: KernelContext) throws -> Tensor {
        let encoded = try ctx.tensor(0)
        guard encoded.dtype == .uint8 else { throw ctx.fail("encoded_stream must be uint8") }
        let bytes = encoded.elements(as: UInt8.self)
        let format = try ctx.string("pixel_format", "RGB")
        guard let image = try ImageCodec.decode(bytes) else {
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
}
