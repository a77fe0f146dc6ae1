import KilnIR
#if canImport(Glibc)
import Glibc
#endif

/// Pooling: AveragePool, MaxPool (with Indices), LpPool, their global forms, and MaxUnpool.
enum PoolingOps {
    static func register(into table: inout KernelTable) {
        table.add("AveragePool") { ctx in
            let countPad = try ctx.int("count_include_pad", 0) != 0
            return [.tensor(try pool(ctx, countPad ? .averageIncludingPad : .average).values)]
        }
        table.add("LpPool") { ctx in
            let p = Double(try ctx.float("p") ?? 2)
            return [.tensor(try pool(ctx, .lp(p)).values)]
        }
        table.add("MaxPool") { ctx in
            let (values, indices) = try pool(ctx, .max)
            return ctx.wants(1) ? [.tensor(values), .tensor(indices!)] : [.tensor(values)]
        }
        table.add("GlobalAveragePool") { ctx in [.tensor(try global(ctx, .average))] }
        table.add("GlobalMaxPool") { ctx in [.tensor(try global(ctx, .max))] }
        table.add("GlobalLpPool") { ctx in [.tensor(try global(ctx, .lp(Double(try ctx.float("p") ?? 2))))] }
        table.add("MaxUnpool") { ctx in [.tensor(try maxUnpool(ctx))] }
    }

    /// How a window's values combine.
    enum Mode {
        /// Mean of the taps inside the input.
        case average
        /// Sum of the taps inside the input, divided by the taps inside the padded input.
        case averageIncludingPad
        /// Largest tap inside the input (NaN ignored).
        case max
        /// `(Σ|x|^p)^(1/p)` over the taps inside the input.
        case lp(Double)
    }

    /// The window of a pooling op: `kernel_shape`, `strides`, `dilations`, `pads`, `auto_pad` and `ceil_mode`.
    static func poolWindow(_ ctx: KernelContext, input: [Int]) throws -> ConvolutionOps.Window {
        let r = input.count
        guard let kernel = try ctx.ints("kernel_shape"), kernel.count == r else {
            throw ctx.fail("kernel_shape must have \(r) entries")
        }
        let strides = try ctx.ints("strides") ?? Array(repeating: 1, count: r)
        let dilations = try ctx.ints("dilations") ?? Array(repeating: 1, count: r)
        guard strides.count == r, dilations.count == r else { throw ctx.fail("strides and dilations must have \(r) entries") }
        guard strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }), kernel.allSatisfy({ $0 > 0 }) else {
            throw ctx.fail("kernel_shape, strides and dilations must be positive")
        }
        try ctx.checkRange(kernel, "kernel_shape", 1...windowLimit)
        try ctx.checkRange(strides, "strides", 1...windowLimit)
        try ctx.checkRange(dilations, "dilations", 1...windowLimit)
        try ctx.checkRange(input, "the input's spatial dims", 0...windowLimit)
        let ceilMode = try ctx.int("ceil_mode", 0) != 0
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
            case "VALID", "NOTSET", "":
                if autoPad != "VALID", let pads = try ctx.ints("pads") {
                    guard pads.count == 2 * r else { throw ctx.fail("pads must have \(2 * r) entries") }
                    try ctx.checkRange(pads, "pads", 0...windowLimit)
                    begin[j] = pads[j]
                    end[j] = pads[j + r]
                }
                let room = input[j] + begin[j] + end[j] - span
                if room < 0 {
                    output[j] = 0
                } else if ceilMode {
                    output[j] = (room + strides[j] - 1) / strides[j] + 1
                    // The last window must start inside the input or its leading padding.
                    if (output[j] - 1) * strides[j] >= input[j] + begin[j] { output[j] -= 1 }
                } else {
                    output[j] = room / strides[j] + 1
                }
            default:
                throw ctx.fail("unknown auto_pad '\(autoPad)'")
            }
        }
        try ctx.checkedCount(kernel, "the pooling window")
        return ConvolutionOps.Window(input: input, kernel: kernel, strides: strides, dilations: dilations,
                                     padsBegin: begin, padsEnd: end, output: output)
    }

    /// Runs a pooling op over every plane of input 0; for `.max` also returns the Indices output (int64).
    static func pool(_ ctx: KernelContext, _ mode: Mode) throws -> (values: Tensor, indices: Tensor?) {
        let x = try ctx.tensor(0)
        guard x.rank >= 3 else { throw ctx.fail("input must have rank at least 3, got \(x.shape)") }
        guard x.dtype.isFloatingPoint || x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
        let window = try poolWindow(ctx, input: Array(x.shape[2...]))
        let storageOrder = try ctx.int("storage_order", 0)
        let r = window.rank
        let planes = x.shape[0] * x.shape[1]
        try ctx.checkedCount([planes] + window.output)
        let I = window.inputCount, O = window.outputCount, K = window.kernelCount
        let values = x.asDoubles()
        var out = [Double](repeating: 0, count: planes * O)
        var indices = [Int64](repeating: 0, count: mode.isMax ? planes * O : 0)
        // Kernel tap offsets per dim, and the input's row- or column-major strides for Indices.
        var taps = [Int](repeating: 0, count: K * r)
        for kflat in 0..<K {
            var rem = kflat
            for j in stride(from: r - 1, through: 0, by: -1) {
                taps[kflat * r + j] = (rem % window.kernel[j]) * window.dilations[j]
                rem /= window.kernel[j]
            }
        }
        let rowStrides = strides(of: window.input)
        var colStrides = [Int](repeating: 1, count: r)
        for j in stride(from: 1, to: r, by: 1) { colStrides[j] = colStrides[j - 1] * window.input[j - 1] }
        var start = [Int](repeating: 0, count: r)
        for o in 0..<O {
            var rem = o
            for j in stride(from: r - 1, through: 0, by: -1) {
                start[j] = (rem % window.output[j]) * window.strides[j] - window.padsBegin[j]
                rem /= window.output[j]
            }
            for plane in 0..<planes {
                let base = plane * I
                var sum = 0.0, count = 0, padCount = 0
                var best = -Double.infinity, bestIndex = -1
                for kflat in 0..<K {
                    var offset = 0, colOffset = 0, inside = true, inPadded = true
                    for j in 0..<r {
                        let p = start[j] + taps[kflat * r + j]
                        if p < 0 || p >= window.input[j] {
                            inside = false
                            if p < -window.padsBegin[j] || p >= window.input[j] + window.padsEnd[j] { inPadded = false }
                        }
                        offset += p * rowStrides[j]
                        colOffset += p * colStrides[j]
                    }
                    if inPadded { padCount += 1 }
                    guard inside else { continue }
                    let v = values[base + offset]
                    count += 1
                    switch mode {
                    case .average, .averageIncludingPad: sum += v
                    case .lp(let p): sum += p == 1 ? abs(v) : p == 2 ? v * v : pow(abs(v), p)
                    case .max:
                        if v > best || bestIndex < 0 && !v.isNaN {
                            best = v
                            bestIndex = storageOrder == 1 ? colOffset : offset
                        }
                    }
                }
                let result: Double
                switch mode {
                case .average: result = count > 0 ? sum / Double(count) : .nan
                case .averageIncludingPad: result = padCount > 0 ? sum / Double(padCount) : .nan
                case .lp(let p): result = p == 1 ? sum : p == 2 ? sum.squareRoot() : pow(sum, 1 / p)
                case .max:
                    result = bestIndex < 0 ? (count > 0 ? .nan : -.infinity) : best
                    indices[plane * O + o] = Int64(base + max(bestIndex, 0))
                }
                out[plane * O + o] = result
            }
        }
        let shape = Array(x.shape[..<2]) + window.output
        let tensor = Tensor(dtype: x.dtype, shape: shape, doubles: out)
        return (tensor, mode.isMax ? Tensor(shape: shape, indices) : nil)
    }

    /// GlobalAveragePool, GlobalMaxPool and GlobalLpPool: one window covering all spatial dims.
    static func global(_ ctx: KernelContext, _ mode: Mode) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.rank >= 2 else { throw ctx.fail("input must have rank at least 2, got \(x.shape)") }
        guard x.dtype.isFloatingPoint || x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
        let planes = x.shape[0] * x.shape[1]
        let size = x.shape[2...].reduce(1, *)
        let values = x.asDoubles()
        var out = [Double](repeating: 0, count: planes)
        for plane in 0..<planes {
            let base = plane * size
            switch mode {
            case .average, .averageIncludingPad:
                var s = 0.0
                for i in 0..<size { s += values[base + i] }
                out[plane] = s / Double(size)
            case .max:
                var best = -Double.infinity
                var sawNaN = false
                for i in 0..<size {
                    let v = values[base + i]
                    if v.isNaN { sawNaN = true } else if v > best { best = v }
                }
                out[plane] = sawNaN && best == -.infinity ? .nan : best
            case .lp(let p):
                var s = 0.0
                for i in 0..<size { s += pow(abs(values[base + i]), p) }
                out[plane] = pow(s, 1 / p)
            }
        }
        let shape = Array(x.shape[..<2]) + Array(repeating: 1, count: x.rank - 2)
        return Tensor(dtype: x.dtype, shape: shape, doubles: out)
    }

    /// MaxUnpool: scatters X's values to the flat positions in I of a zero tensor of the unpooled shape.
    static func maxUnpool(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0), indices = try ctx.tensor(1).asInts()
        guard x.rank >= 3, indices.count == x.count else { throw ctx.fail("X \(x.shape) and I must have the same shape, rank ≥ 3") }
        let r = x.rank - 2
        guard let kernel = try ctx.ints("kernel_shape"), kernel.count == r else { throw ctx.fail("kernel_shape must have \(r) entries") }
        let step = try ctx.ints("strides") ?? Array(repeating: 1, count: r)
        let pads = try ctx.ints("pads") ?? Array(repeating: 0, count: 2 * r)
        guard step.count == r, pads.count == 2 * r else { throw ctx.fail("strides and pads do not match the input rank") }
        try ctx.checkRange(kernel, "kernel_shape", 1...windowLimit)
        try ctx.checkRange(step, "strides", 1...windowLimit)
        try ctx.checkRange(pads, "pads", 0...windowLimit)
        try ctx.checkRange(Array(x.shape[2...]), "X's spatial dims", 0...windowLimit)
        // Indices address the inferred unpooled shape; an explicit output_shape holds that block at its origin.
        var inferred = Array(x.shape[..<2])
        for j in 0..<r { inferred.append((x.shape[j + 2] - 1) * step[j] + kernel[j] - pads[j] - pads[j + r]) }
        var shape = inferred
        try ctx.checkedCount(inferred, "the unpooled shape")
        if let requested = try ctx.optionalTensor(2)?.asInts() {
            guard requested.count == x.rank else { throw ctx.fail("output_shape must have \(x.rank) entries") }
            guard zip(requested, inferred).allSatisfy({ $0 >= $1 }) else {
                throw ctx.fail("output_shape \(requested) is smaller than the unpooled shape \(inferred)")
            }
            shape = try ctx.checkedShape(requested)
        }
        let inferredTotal = inferred.reduce(1, *)
        let inferredStrides = strides(of: inferred), outStrides = strides(of: shape)
        let values = x.asDoubles()
        var out = [Double](repeating: 0, count: shape.reduce(1, *))
        for (i, index) in indices.enumerated() {
            guard index >= 0, index < inferredTotal else { throw ctx.fail("index \(index) is outside the unpooled shape \(inferred)") }
            var rem = index, target = 0
            for d in 0..<inferred.count {
                target += (rem / inferredStrides[d]) * outStrides[d]
                rem %= inferredStrides[d]
            }
            out[target] = values[i]
        }
        return Tensor(dtype: x.dtype, shape: shape, doubles: out)
    }
}

extension PoolingOps.Mode {
    /// Whether this is max pooling (which also yields indices).
    var isMax: Bool {
        if case .max = self { return true }
        return false
    }
}
