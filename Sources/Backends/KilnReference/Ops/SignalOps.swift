import KilnIR

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Signal processing ops (DFT, STFT, the window functions, MelWeightMatrix) and the random-number ops
/// (RandomUniform, RandomNormal, their *Like forms, Bernoulli, Multinomial).
///
/// Random ops with a `seed` attribute are deterministic: the seed drives a SplitMix64 generator, so the same
/// seed always gives the same values. They do not reproduce NumPy's generator, so tests that compare
/// against NumPy's draws cannot match.
enum SignalOps {
    /// Adds this family's kernels to `table`.
    static func register(into table: inout KernelTable) {
        table.add("DFT") { ctx in [.tensor(try dft(ctx))] }
        table.add("STFT") { ctx in [.tensor(try stft(ctx))] }
        table.add("HannWindow") { ctx in
            [.tensor(try window(ctx) { n, size in
                let s = sin(Double.pi * n / size)
                return s * s
            })]
        }
        table.add("HammingWindow") { ctx in
            [.tensor(try window(ctx) { n, size in
                let alpha = 25.0 / 46.0
                return alpha - (1 - alpha) * cos(2 * Double.pi * n / size)
            })]
        }
        table.add("BlackmanWindow") { ctx in
            [.tensor(try window(ctx) { n, size in
                0.42 - 0.5 * cos(2 * Double.pi * n / size) + 0.08 * cos(4 * Double.pi * n / size)
            })]
        }
        table.add("MelWeightMatrix") { ctx in [.tensor(try melWeightMatrix(ctx))] }
        table.add("RandomUniform") { ctx in [.tensor(try randomUniform(ctx, shape: try shapeAttribute(ctx), like: nil))] }
        table.add("RandomNormal") { ctx in [.tensor(try randomNormal(ctx, shape: try shapeAttribute(ctx), like: nil))] }
        table.add("RandomUniformLike") { ctx in
            let x = try ctx.tensor(0)
            return [.tensor(try randomUniform(ctx, shape: x.shape, like: x.dtype))]
        }
        table.add("RandomNormalLike") { ctx in
            let x = try ctx.tensor(0)
            return [.tensor(try randomNormal(ctx, shape: x.shape, like: x.dtype))]
        }
        table.add("Bernoulli") { ctx in [.tensor(try bernoulli(ctx))] }
        table.add("Multinomial") { ctx in [.tensor(try multinomial(ctx))] }
    }

    // MARK: DFT

    /// A scalar integer input, or nil when omitted.
    static func scalarInt(_ ctx: KernelContext, _ index: Int) throws -> Int? {
        guard let t = try ctx.optionalTensor(index) else { return nil }
        guard t.count == 1 else { throw ctx.fail("input \(index) must be a scalar") }
        return t.dtype.isFloatingPoint ? saturatingInt(t.asDoubles()[0]) : t.asInts()[0]
    }

    /// One-dimensional DFTs of `x` (shape `[..., n, ..., c]` with `c` 1 for real or 2 for complex input) along
    /// `axis`, all in `Double`; returns the interleaved complex result with `length` entries along `axis`
    /// (the input zero-padded or truncated to `length`), keeping only the first `keep` frequencies.
    /// With `inverse`, computes the inverse transform scaled by 1/length. With `singlePrecision` (complex float32
    /// input) the transform runs in `Float` by `MixedRadixFFT` when the length allows, as NumPy's float32 FFT does.
    static func transform(_ x: [Double], shape: [Int], axis: Int, length: Int, keep: Int,
                          inverse: Bool, singlePrecision: Bool = false) -> (values: [Double], shape: [Int]) {
        let channels = shape.last!
        let outer = shape[..<axis].reduce(1, *)
        let n = shape[axis]
        let inner = shape[(axis + 1)..<(shape.count - 1)].reduce(1, *)
        // Single precision: a mixed-radix FFT in Float when the length factors into 2, 3, 4 and 5.
        let fft = singlePrecision ? MixedRadixFFT(length: length) : nil
        // Twiddle factors e^{∓2πi m / length}.
        let sign: Double = inverse ? 1 : -1
        var cosTable = [Double](repeating: 0, count: length), sinTable = [Double](repeating: 0, count: length)
        for m in 0..<length {
            let angle = 2 * Double.pi * Double(m) / Double(length)
            cosTable[m] = cos(angle)
            sinTable[m] = sign * sin(angle)
        }
        let scale = inverse ? 1 / Double(length) : 1
        let used = min(n, length)
        var outShape = shape
        outShape[axis] = keep
        outShape[outShape.count - 1] = 2
        var out = [Double](repeating: 0, count: outer * keep * inner * 2)
        var re = [Double](repeating: 0, count: used), im = [Double](repeating: 0, count: used)
        for o in 0..<outer {
            for i in 0..<inner {
                for j in 0..<used {
                    let at = ((o * n + j) * inner + i) * channels
                    re[j] = x[at]
                    im[j] = channels == 2 ? x[at + 1] : 0
                }
                if let fft {
                    var fr = [Float](repeating: 0, count: length), fi = [Float](repeating: 0, count: length)
                    for j in 0..<used { fr[j] = Float(re[j]); fi[j] = Float(im[j]) }
                    fft.run(&fr, &fi, inverse: inverse)
                    for k in 0..<keep {
                        let at = ((o * keep + k) * inner + i) * 2
                        out[at] = Double(fr[k])
                        out[at + 1] = Double(fi[k])
                    }
                    continue
                }
                for k in 0..<keep {
                    var sr = 0.0, si = 0.0
                    var m = 0
                    for j in 0..<used {
                        let c = cosTable[m], s = sinTable[m]
                        sr += re[j] * c - im[j] * s
                        si += re[j] * s + im[j] * c
                        m += k
                        if m >= length { m %= length }
                    }
                    let at = ((o * keep + k) * inner + i) * 2
                    out[at] = sr * scale
                    out[at + 1] = si * scale
                }
            }
        }
        return (out, outShape)
    }

    /// DFT (opset 20): `dft_length` and `axis` as inputs (an `axis` attribute, from older opsets, is honoured
    /// when the input is absent), `inverse` and `onesided`. An inverse one-sided DFT takes half a Hermitian
    /// spectrum and returns a real signal.
    static func dft(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        let rank = x.rank
        guard rank >= 2, let channels = x.shape.last, channels == 1 || channels == 2 else {
            throw ctx.fail("input must have rank >= 2 and a last dimension of 1 or 2, got \(x.shape)")
        }
        let rawAxis = try scalarInt(ctx, 2) ?? (try ctx.int("axis")) ?? -2
        let axis = rawAxis < 0 ? rawAxis + rank : rawAxis
        guard axis >= 0, axis < rank - 1 else { throw ctx.fail("axis \(rawAxis) is out of range for rank \(rank)") }
        let inverse = try ctx.int("inverse", 0) != 0
        let onesided = try ctx.int("onesided", 0) != 0
        let n = x.shape[axis]
        let length = try scalarInt(ctx, 1) ?? (inverse && onesided ? 2 * (n - 1) : n)
        guard length > 0 else { throw ctx.fail("dft_length must be positive, got \(length)") }
        var fullShape = x.shape
        fullShape[axis] = length
        fullShape[rank - 1] = 2
        try ctx.checkedCount(fullShape, "the spectrum")
        let data = x.asDoubles()
        if inverse && onesided {
            // Rebuild the full Hermitian spectrum, then keep the real part of the inverse transform.
            var full = x.shape
            full[axis] = length
            full[rank - 1] = 2
            let outer = x.shape[..<axis].reduce(1, *)
            let inner = x.shape[(axis + 1)..<(rank - 1)].reduce(1, *)
            let half = length / 2
            var spectrum = [Double](repeating: 0, count: full.reduce(1, *))
            for o in 0..<outer {
                for i in 0..<inner {
                    func value(_ k: Int) -> (Double, Double) {
                        guard k < n else { return (0, 0) }
                        let at = ((o * n + k) * inner + i) * channels
                        return (data[at], channels == 2 ? data[at + 1] : 0)
                    }
                    for k in 0..<length {
                        var (re, im) = k <= half ? value(k) : value(length - k)
                        if k > half { im = -im }
                        if k == 0 || (length % 2 == 0 && k == half) { im = 0 }
                        let at = ((o * length + k) * inner + i) * 2
                        spectrum[at] = re
                        spectrum[at + 1] = im
                    }
                }
            }
            let (values, shape) = transform(spectrum, shape: full, axis: axis, length: length, keep: length, inverse: true)
            var realShape = shape
            realShape[rank - 1] = 1
            let real = stride(from: 0, to: values.count, by: 2).map { values[$0] }
            return Tensor(dtype: x.dtype, shape: realShape, doubles: real)
        }
        let keep = onesided ? length / 2 + 1 : length
        let (values, shape) = transform(data, shape: x.shape, axis: axis, length: length, keep: keep, inverse: inverse,
                                        singlePrecision: x.dtype == .float32 && channels == 2)
        return Tensor(dtype: x.dtype, shape: shape, doubles: values)
    }

    /// A complex FFT in single precision by mixed-radix Cooley–Tukey passes (radix 4, 2, 3, 5, in the order
    /// and data layout of PocketFFT, so float32 results round the way NumPy's do). Only lengths that factor
    /// into those radices are supported.
    struct MixedRadixFFT {
        let length: Int
        /// The radix of each pass, in order.
        let factors: [Int]
        /// Per pass, its twiddle factors (cos, sin of 2πk/length), `(radix - 1) × (ido - 1)` of them.
        let twiddles: [[(re: Float, im: Float)]]

        /// A plan for `length`, or nil when it has a prime factor above 5.
        init?(length: Int) {
            guard length >= 1 else { return nil }
            var factors: [Int] = []
            var rest = length
            while rest % 4 == 0 { factors.append(4); rest /= 4 }
            if rest % 2 == 0 {
                rest /= 2
                factors.append(2)
                factors.swapAt(0, factors.count - 1)
            }
            for p in [3, 5] { while rest % p == 0 { factors.append(p); rest /= p } }
            guard rest == 1 else { return nil }
            self.length = length
            self.factors = factors
            var twiddles: [[(re: Float, im: Float)]] = []
            var l1 = 1
            for ip in factors {
                let ido = length / (l1 * ip)
                var tw = [(re: Float, im: Float)](repeating: (0, 0), count: (ip - 1) * max(ido - 1, 0))
                for j in 1..<ip {
                    for i in 1..<max(ido, 1) {
                        let angle = 2 * Double.pi * Double((j * l1 * i) % length) / Double(length)
                        tw[(j - 1) * (ido - 1) + i - 1] = (Float(cos(angle)), Float(sin(angle)))
                    }
                }
                twiddles.append(tw)
                l1 *= ip
            }
            self.twiddles = twiddles
        }

        /// Transforms `re` + i·`im` in place: forward (e^{-2πi…}) or inverse (e^{+2πi…}, scaled by 1/length).
        func run(_ re: inout [Float], _ im: inout [Float], inverse: Bool) {
            var ar = re, ai = im
            var br = [Float](repeating: 0, count: length), bi = br
            var l1 = 1
            for (k, ip) in factors.enumerated() {
                let ido = length / (l1 * ip)
                pass(ip, ido: ido, l1: l1, ar, ai, &br, &bi, twiddles[k], forward: !inverse)
                swap(&ar, &br)
                swap(&ai, &bi)
                l1 *= ip
            }
            if inverse {
                let scale = Float(1 / Double(length))
                for i in 0..<length { ar[i] *= scale; ai[i] *= scale }
            }
            re = ar
            im = ai
        }

        /// One radix-`ip` pass from `(cr, ci)` into `(hr, hi)`.
        func pass(_ ip: Int, ido: Int, l1: Int, _ cr: [Float], _ ci: [Float], _ hr: inout [Float], _ hi: inout [Float],
                  _ wa: [(re: Float, im: Float)], forward: Bool) {
            let sign: Float = forward ? -1 : 1
            // Element (a, b, c) of the input is at a + ido·(b + ip·c); of the output at a + ido·(b + l1·c).
            func cc(_ a: Int, _ b: Int, _ c: Int) -> (Float, Float) {
                let at = a + ido * (b + ip * c)
                return (cr[at], ci[at])
            }
            func store(_ a: Int, _ b: Int, _ c: Int, _ v: (Float, Float)) {
                let at = a + ido * (b + l1 * c)
                hr[at] = v.0
                hi[at] = v.1
            }
            // Stores v times twiddle x at position i (conjugated for the forward transform).
            func storeRotated(_ a: Int, _ b: Int, _ c: Int, _ v: (Float, Float), _ x: Int) {
                if a == 0 { store(a, b, c, v); return }
                let w = wa[a - 1 + x * (ido - 1)]
                if forward {
                    store(a, b, c, (v.0 * w.re + v.1 * w.im, v.1 * w.re - v.0 * w.im))
                } else {
                    store(a, b, c, (v.0 * w.re - v.1 * w.im, v.0 * w.im + v.1 * w.re))
                }
            }
            func add(_ x: (Float, Float), _ y: (Float, Float)) -> (Float, Float) { (x.0 + y.0, x.1 + y.1) }
            func sub(_ x: (Float, Float), _ y: (Float, Float)) -> (Float, Float) { (x.0 - y.0, x.1 - y.1) }
            for k in 0..<l1 {
                for i in 0..<ido {
                    switch ip {
                    case 2:
                        let a = cc(i, 0, k), b = cc(i, 1, k)
                        store(i, k, 0, add(a, b))
                        storeRotated(i, k, 1, sub(a, b), 0)
                    case 3:
                        let tw1r: Float = -0.5, tw1i = sign * Float(0.8660254037844386467637231707529362)
                        let t0 = cc(i, 0, k)
                        let t1 = add(cc(i, 1, k), cc(i, 2, k)), t2 = sub(cc(i, 1, k), cc(i, 2, k))
                        store(i, k, 0, add(t0, t1))
                        let ca = (t0.0 + t1.0 * tw1r, t0.1 + t1.1 * tw1r)
                        let cb = (-(t2.1 * tw1i), t2.0 * tw1i)
                        storeRotated(i, k, 1, add(ca, cb), 0)
                        storeRotated(i, k, 2, sub(ca, cb), 1)
                    case 4:
                        let c0 = cc(i, 0, k), c1 = cc(i, 1, k), c2 = cc(i, 2, k), c3 = cc(i, 3, k)
                        let t2 = add(c0, c2), t1 = sub(c0, c2)
                        let t3 = add(c1, c3)
                        var t4 = sub(c1, c3)
                        t4 = forward ? (t4.1, -t4.0) : (-t4.1, t4.0)
                        store(i, k, 0, add(t2, t3))
                        storeRotated(i, k, 1, add(t1, t4), 0)
                        storeRotated(i, k, 2, sub(t2, t3), 1)
                        storeRotated(i, k, 3, sub(t1, t4), 2)
                    default:  // 5
                        let tw1r = Float(0.3090169943749474241022934171828191)
                        let tw1i = sign * Float(0.9510565162951535721164393333793821)
                        let tw2r = Float(-0.8090169943749474241022934171828191)
                        let tw2i = sign * Float(0.5877852522924731291687059546390728)
                        let t0 = cc(i, 0, k)
                        let t1 = add(cc(i, 1, k), cc(i, 4, k)), t4 = sub(cc(i, 1, k), cc(i, 4, k))
                        let t2 = add(cc(i, 2, k), cc(i, 3, k)), t3 = sub(cc(i, 2, k), cc(i, 3, k))
                        store(i, k, 0, (t0.0 + t1.0 + t2.0, t0.1 + t1.1 + t2.1))
                        // Outputs u1 and u2 = ip - u1 from the pair (twar, twbr, twai, twbi).
                        func step(_ u1: Int, _ u2: Int, _ twar: Float, _ twbr: Float, _ twai: Float, _ twbi: Float) {
                            let ca = (t0.0 + twar * t1.0 + twbr * t2.0, t0.1 + twar * t1.1 + twbr * t2.1)
                            let cb = (-(twai * t4.1 + twbi * t3.1), twai * t4.0 + twbi * t3.0)
                            storeRotated(i, k, u1, add(ca, cb), u1 - 1)
                            storeRotated(i, k, u2, sub(ca, cb), u2 - 1)
                        }
                        step(1, 4, tw1r, tw2r, tw1i, tw2i)
                        step(2, 3, tw2r, tw1r, tw2i, -tw1i)
                    }
                }
            }
        }
    }

    /// STFT: frames of `frame_length` samples every `frame_step`, multiplied by `window` (if given), each
    /// transformed by a DFT of the frame length; `onesided` (default 1) keeps the first half of the spectrum.
    /// Output shape `[batch, frames, bins, 2]`.
    static func stft(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        guard x.rank == 3, x.shape[2] == 1 || x.shape[2] == 2 else {
            throw ctx.fail("signal must have shape [batch, length, 1 or 2], got \(x.shape)")
        }
        guard let step = try scalarInt(ctx, 1), step > 0 else { throw ctx.fail("frame_step must be a positive scalar") }
        let windowTensor = try ctx.optionalTensor(2)
        let signalLength = x.shape[1], channels = x.shape[2], batch = x.shape[0]
        let frameLength = try scalarInt(ctx, 3) ?? windowTensor?.count ?? signalLength
        guard frameLength > 0, frameLength <= signalLength else {
            throw ctx.fail("frame_length \(frameLength) does not fit a signal of length \(signalLength)")
        }
        let window = windowTensor?.asDoubles() ?? Array(repeating: 1, count: frameLength)
        guard window.count == frameLength else {
            throw ctx.fail("window has \(window.count) samples for frame_length \(frameLength)")
        }
        let onesided = try ctx.int("onesided", 1) != 0
        let frames = 1 + (signalLength - frameLength) / step
        try ctx.checkedCount([batch, frames, frameLength, channels], "the frames")
        let data = x.asDoubles()
        // Gather the windowed frames as [batch, frames, frameLength, channels].
        var framed = [Double](repeating: 0, count: batch * frames * frameLength * channels)
        for b in 0..<batch {
            for f in 0..<frames {
                for j in 0..<frameLength {
                    for c in 0..<channels {
                        let src = (b * signalLength + f * step + j) * channels + c
                        framed[((b * frames + f) * frameLength + j) * channels + c] = data[src] * window[j]
                    }
                }
            }
        }
        let keep = onesided ? frameLength / 2 + 1 : frameLength
        let (values, shape) = transform(framed, shape: [batch, frames, frameLength, channels], axis: 2,
                                        length: frameLength, keep: keep, inverse: false)
        return Tensor(dtype: x.dtype, shape: shape, doubles: values)
    }

    // MARK: Windows and mel weights

    /// The output type attribute `output_datatype` (default float32).
    static func outputType(_ ctx: KernelContext) throws -> DType {
        let code = try ctx.int("output_datatype", 1)
        guard let t = DType(onnxCode: code), t.isFloatingPoint || t.isInteger else {
            throw ctx.fail("unsupported output_datatype \(code)")
        }
        return t
    }

    /// A window of `size` (input 0) samples with `value(n, N)` where N is the size (periodic, the default)
    /// or the size minus one (symmetric).
    static func window(_ ctx: KernelContext, _ value: (Double, Double) -> Double) throws -> Tensor {
        guard let size = try scalarInt(ctx, 0), size >= 0 else { throw ctx.fail("size must be a non-negative scalar") }
        let periodic = try ctx.int("periodic", 1) != 0
        try ctx.checkedCount([size])
        let denominator = Double(periodic ? size : size - 1)
        let values = (0..<size).map { value(Double($0), denominator) }
        return Tensor(dtype: try outputType(ctx), shape: [size], doubles: values)
    }

    /// A scalar input as a Double.
    static func scalarDouble(_ ctx: KernelContext, _ index: Int) throws -> Double {
        let t = try ctx.tensor(index)
        guard t.count == 1 else { throw ctx.fail("input \(index) must be a scalar") }
        return t.asDoubles()[0]
    }

    /// MelWeightMatrix: `[dft_length / 2 + 1, num_mel_bins]` triangular filters evenly spaced on the mel scale
    /// between the lower and upper edge frequencies.
    static func melWeightMatrix(_ ctx: KernelContext) throws -> Tensor {
        guard let melBins = try scalarInt(ctx, 0), let dftLength = try scalarInt(ctx, 1),
              let sampleRate = try scalarInt(ctx, 2), melBins > 0, dftLength > 0, sampleRate > 0 else {
            throw ctx.fail("num_mel_bins, dft_length and sample_rate must be positive scalars")
        }
        let lower = try scalarDouble(ctx, 3), upper = try scalarDouble(ctx, 4)
        let spectrogramBins = dftLength / 2 + 1
        try ctx.checkedCount([spectrogramBins, melBins + 2])
        func toMel(_ hz: Double) -> Double { 2595 * log10(1 + hz / 700) }
        let lowMel = toMel(lower), highMel = toMel(upper)
        let step = (highMel - lowMel) / Double(melBins + 2)
        let edges: [Int] = (0..<(melBins + 2)).map { i in
            let hz = 700 * (pow(10, (Double(i) * step + lowMel) / 2595) - 1)
            // Edges outside the spectrogram fail in `set` below; clamping keeps their arithmetic in range.
            return min(max(saturatingInt((Double(dftLength + 1) * hz / Double(sampleRate)).rounded(.down)), -1), spectrogramBins + 1)
        }
        var out = [Double](repeating: 0, count: spectrogramBins * melBins)
        func set(_ row: Int, _ column: Int, _ v: Double) throws {
            guard row >= 0, row < spectrogramBins else { throw ctx.fail("mel filter edge \(row) is out of range") }
            out[row * melBins + column] = v
        }
        for i in 0..<melBins {
            let left = edges[i], center = edges[i + 1], right = edges[i + 2]
            if center == left {
                try set(center, i, 1)
            } else {
                for j in left...max(left, center) { try set(j, i, Double(j - left) / Double(center - left)) }
            }
            if right > center {
                for j in center..<right { try set(j, i, Double(right - j) / Double(right - center)) }
            }
        }
        return Tensor(dtype: try outputType(ctx), shape: [spectrogramBins, melBins], doubles: out)
    }

    // MARK: Random numbers

    /// A generator seeded from the `seed` attribute, or from the system's entropy when there is none.
    static func generator(_ ctx: KernelContext) throws -> SplitMix64 {
        if let seed = try ctx.float("seed"), !seed.isNaN {
            return SplitMix64(seed: UInt64(truncatingIfNeeded: saturatingInt(Double(seed))) ^ 0x5EED)
        }
        var system = SystemRandomNumberGenerator()
        return SplitMix64(seed: system.next())
    }

    /// The required `shape` attribute of RandomUniform / RandomNormal.
    static func shapeAttribute(_ ctx: KernelContext) throws -> [Int] {
        guard let shape = try ctx.ints("shape"), shape.allSatisfy({ $0 >= 0 }) else {
            throw ctx.fail("attribute 'shape' is required and must be non-negative")
        }
        return shape
    }

    /// The `dtype` attribute, or `like` (the input's type for the *Like ops), or float32.
    static func randomType(_ ctx: KernelContext, like: DType?) throws -> DType {
        let t: DType
        if let code = try ctx.int("dtype") {
            guard let d = DType(onnxCode: code) else { throw ctx.fail("unknown dtype \(code)") }
            t = d
        } else {
            t = like ?? .float32
        }
        guard t.isFloatingPoint else { throw ctx.unsupported("random values of type \(t)") }
        return t
    }

    /// RandomUniform(Like): uniform values in [low, high).
    static func randomUniform(_ ctx: KernelContext, shape: [Int], like: DType?) throws -> Tensor {
        let dtype = try randomType(ctx, like: like)
        let low = Double(try ctx.float("low", 0)), high = Double(try ctx.float("high", 1))
        var rng = try generator(ctx)
        let count = try ctx.checkedCount(shape)
        let values = (0..<count).map { _ in low + (high - low) * rng.unit() }
        return Tensor(dtype: dtype, shape: shape, doubles: values)
    }

    /// RandomNormal(Like): normal values with `mean` and standard deviation `scale` (Box–Muller).
    static func randomNormal(_ ctx: KernelContext, shape: [Int], like: DType?) throws -> Tensor {
        let dtype = try randomType(ctx, like: like)
        let mean = Double(try ctx.float("mean", 0)), scale = Double(try ctx.float("scale", 1))
        var rng = try generator(ctx)
        let count = try ctx.checkedCount(shape)
        var values = [Double](repeating: 0, count: count)
        var i = 0
        while i < count {
            let u1 = 1 - rng.unit(), u2 = rng.unit()  // u1 in (0, 1]
            let r = (-2 * log(u1)).squareRoot()
            values[i] = mean + scale * r * cos(2 * Double.pi * u2)
            if i + 1 < count { values[i + 1] = mean + scale * r * sin(2 * Double.pi * u2) }
            i += 2
        }
        return Tensor(dtype: dtype, shape: shape, doubles: values)
    }

    /// Bernoulli: 1 with probability `p` (input 0) per element, else 0, in `dtype` (default the input's type).
    static func bernoulli(_ ctx: KernelContext) throws -> Tensor {
        let p = try ctx.tensor(0)
        guard p.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(p.dtype)") }
        var dtype = p.dtype
        if let code = try ctx.int("dtype") {
            guard let d = DType(onnxCode: code), d.isFloatingPoint || d.isInteger || d == .bool else {
                throw ctx.fail("unsupported dtype \(code)")
            }
            dtype = d
        }
        var rng = try generator(ctx)
        let values = p.asDoubles().map { rng.unit() < $0 ? 1.0 : 0.0 }
        return Tensor(dtype: dtype, shape: p.shape, doubles: values)
    }

    /// Multinomial: `sample_size` class indices per batch row, drawn from the row's unnormalized log
    /// probabilities (input 0, shape `[batch, classes]`); output `[batch, sample_size]` of int32 or int64.
    static func multinomial(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        guard x.rank == 2 else { throw ctx.fail("input must have shape [batch, classes], got \(x.shape)") }
        let samples = try ctx.int("sample_size", 1)
        guard samples >= 0 else { throw ctx.fail("sample_size must be non-negative") }
        guard let dtype = DType(onnxCode: try ctx.int("dtype", 6)), dtype == .int32 || dtype == .int64 else {
            throw ctx.fail("dtype must be int32 or int64")
        }
        let batch = x.shape[0], classes = x.shape[1]
        try ctx.checkedCount([batch, samples])
        let logits = x.asDoubles()
        var rng = try generator(ctx)
        var out = [Int64](repeating: 0, count: batch * samples)
        for b in 0..<batch {
            let row = logits[(b * classes)..<((b + 1) * classes)]
            let top = row.max() ?? 0
            var cumulative = [Double]()
            var total = 0.0
            for v in row {
                total += exp(v - top)
                cumulative.append(total)
            }
            for s in 0..<samples {
                let u = rng.unit() * total
                var k = 0
                while k < classes - 1 && cumulative[k] <= u { k += 1 }
                out[b * samples + s] = Int64(k)
            }
        }
        return Tensor(dtype: dtype, shape: [batch, samples], int64s: out)
    }
}
