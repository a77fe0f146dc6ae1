#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// The Reduce* family (axes as an optional input, keepdims, noop_with_empty_axes) and the
/// single-axis normalizers Softmax, LogSoftmax and Hardmax.
enum ReductionOps {
    static func register(into table: inout KernelTable) {
        for kind in Kind.allCases {
            table.add(kind.rawValue) { ctx in [.tensor(try reduce(ctx, kind))] }
        }
        table.add("Softmax") { ctx in [.tensor(try softmax(ctx, log: false))] }
        table.add("LogSoftmax") { ctx in [.tensor(try softmax(ctx, log: true))] }
        table.add("Hardmax") { ctx in [.tensor(try hardmax(ctx))] }
    }

    /// The reductions, named by their ONNX op.
    enum Kind: String, CaseIterable, Sendable {
        case sum = "ReduceSum", mean = "ReduceMean", max = "ReduceMax", min = "ReduceMin"
        case prod = "ReduceProd", l1 = "ReduceL1", l2 = "ReduceL2", logSum = "ReduceLogSum"
        case logSumExp = "ReduceLogSumExp", sumSquare = "ReduceSumSquare"
    }

    /// How a reduction maps input elements onto output elements.
    struct Plan {
        /// The output shape (with or without the kept unit dims, per keepdims).
        var outShape: [Int]
        /// Number of output elements.
        var outCount: Int
        /// Number of input elements folded into each output element.
        var groupSize: Int
        /// For each input element (row-major), the output element it folds into.
        var target: [Int]
    }

    /// The reduction plan for `shape` over `axes` (already non-negative; empty means all axes).
    static func plan(shape: [Int], axes: Set<Int>, keepDims: Bool) -> Plan {
        let rank = shape.count
        let reduced: (Int) -> Bool = { axes.isEmpty || axes.contains($0) }
        var keptShape: [Int] = []  // shape with reduced axes set to 1
        var outShape: [Int] = []
        for d in 0..<rank {
            if reduced(d) {
                keptShape.append(1)
                if keepDims { outShape.append(1) }
            } else {
                keptShape.append(shape[d])
                outShape.append(shape[d])
            }
        }
        let outCount = keptShape.reduce(1, *)
        let count = shape.reduce(1, *)
        let keptStrides = strides(of: keptShape)
        var axisStride = [Int](repeating: 0, count: rank)
        for d in 0..<rank where !reduced(d) { axisStride[d] = keptStrides[d] }
        var target = [Int](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: rank)
        var current = 0
        for flat in 0..<count {
            target[flat] = current
            var axis = rank - 1
            while axis >= 0 {
                index[axis] += 1
                current += axisStride[axis]
                if index[axis] < shape[axis] { break }
                current -= axisStride[axis] * index[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        var groupSize = 1
        for d in 0..<rank where reduced(d) { groupSize *= shape[d] }
        return Plan(outShape: outShape, outCount: outCount, groupSize: groupSize, target: target)
    }

    /// The smallest and largest value of an integer type, as Int64 (uint64's maximum saturates).
    static func integerRange(_ dtype: DType) -> (Int64, Int64) {
        switch dtype {
        case .int8: (Int64(Int8.min), Int64(Int8.max))
        case .int16: (Int64(Int16.min), Int64(Int16.max))
        case .int32: (Int64(Int32.min), Int64(Int32.max))
        case .uint8: (0, Int64(UInt8.max))
        case .uint16: (0, Int64(UInt16.max))
        case .uint32: (0, Int64(UInt32.max))
        case .uint64: (0, -1)  // all ones: the bit pattern of UInt64.max
        case .int4: (-8, 7)
        case .uint4: (0, 15)
        case .int2: (-2, 1)
        case .uint2: (0, 3)
        default: (Int64.min, Int64.max)
        }
    }

    /// Runs one Reduce* op.
    static func reduce(_ ctx: KernelContext, _ kind: Kind) throws -> Tensor {
        let data = try ctx.tensor(0)
        let keepDims = try ctx.int("keepdims", 1) != 0
        let noop = try ctx.int("noop_with_empty_axes", 0) != 0
        var axisList: [Int] = []
        if let axesTensor = try ctx.optionalTensor(1) {
            axisList = axesTensor.asInts()
        } else if let attr = try ctx.ints("axes") {
            axisList = attr  // tolerated for older forms that were not canonicalized
        }
        if axisList.isEmpty && noop { return data }
        var axes = Set<Int>()
        for a in axisList { axes.insert(try ctx.axis(a, rank: data.rank)) }
        let p = plan(shape: data.shape, axes: axes, keepDims: keepDims)

        if data.dtype == .bool {
            guard kind == .max || kind == .min else { throw ctx.unsupported("\(kind.rawValue) of bool") }
            let x = data.elements(as: Bool.self)
            let isMax = kind == .max
            var out = [Bool](repeating: !isMax, count: p.outCount)
            for i in 0..<x.count {
                if isMax { if x[i] { out[p.target[i]] = true } } else if !x[i] { out[p.target[i]] = false }
            }
            return Tensor(shape: p.outShape, out)
        }
        if data.dtype.isInteger, kind != .logSum, kind != .logSumExp, kind != .l2 {
            return reduceIntegers(data, kind, p)
        }
        guard data.dtype.isFloatingPoint || data.dtype.isInteger else {
            throw ctx.unsupported("element type \(data.dtype)")
        }
        let x = data.asDoubles()
        var acc: [Double]
        switch kind {
        case .sum, .mean, .l1, .l2, .sumSquare, .logSum:
            acc = [Double](repeating: 0, count: p.outCount)
            switch kind {
            case .l1: for i in 0..<x.count { acc[p.target[i]] += abs(x[i]) }
            case .l2, .sumSquare: for i in 0..<x.count { acc[p.target[i]] += x[i] * x[i] }
            default: for i in 0..<x.count { acc[p.target[i]] += x[i] }
            }
            switch kind {
            case .mean: acc = acc.map { $0 / Double(p.groupSize) }
            case .l2: acc = acc.map { $0.squareRoot() }
            case .logSum: acc = acc.map { log($0) }
            default: break
            }
        case .prod:
            acc = [Double](repeating: 1, count: p.outCount)
            for i in 0..<x.count { acc[p.target[i]] *= x[i] }
        case .max, .min:
            let isMax = kind == .max
            acc = [Double](repeating: isMax ? -.infinity : .infinity, count: p.outCount)
            for i in 0..<x.count {
                let t = p.target[i], v = x[i]
                if v.isNaN || acc[t].isNaN { acc[t] = .nan } else if isMax ? v > acc[t] : v < acc[t] { acc[t] = v }
            }
        case .logSumExp:
            var peak = [Double](repeating: -.infinity, count: p.outCount)
            for i in 0..<x.count where x[i] > peak[p.target[i]] { peak[p.target[i]] = x[i] }
            acc = [Double](repeating: 0, count: p.outCount)
            for i in 0..<x.count {
                let m = peak[p.target[i]]
                acc[p.target[i]] += m.isFinite ? exp(x[i] - m) : exp(x[i])
            }
            for j in 0..<p.outCount {
                let m = peak[j]
                acc[j] = m.isFinite ? m + log(acc[j]) : log(acc[j])
            }
        }
        return Tensor(dtype: data.dtype, shape: p.outShape, doubles: acc)
    }

    /// Integer reductions computed exactly in Int64 (wrapping like the type would), uint64 by bit pattern.
    static func reduceIntegers(_ data: Tensor, _ kind: Kind, _ p: Plan) -> Tensor {
        let x = data.asInt64s()
        let unsigned64 = data.dtype == .uint64
        var acc: [Int64]
        switch kind {
        case .prod:
            acc = [Int64](repeating: 1, count: p.outCount)
            for i in 0..<x.count { acc[p.target[i]] = acc[p.target[i]] &* x[i] }
        case .max, .min:
            let (lo, hi) = integerRange(data.dtype)
            let isMax = kind == .max
            acc = [Int64](repeating: isMax ? lo : hi, count: p.outCount)
            for i in 0..<x.count {
                let t = p.target[i]
                let greater = unsigned64 ? UInt64(bitPattern: x[i]) > UInt64(bitPattern: acc[t]) : x[i] > acc[t]
                let less = unsigned64 ? UInt64(bitPattern: x[i]) < UInt64(bitPattern: acc[t]) : x[i] < acc[t]
                if isMax ? greater : less { acc[t] = x[i] }
            }
        default:
            acc = [Int64](repeating: 0, count: p.outCount)
            for i in 0..<x.count {
                let v = x[i]
                let term: Int64 = kind == .sumSquare ? v &* v : (kind == .l1 ? (v < 0 ? 0 &- v : v) : v)
                acc[p.target[i]] = acc[p.target[i]] &+ term
            }
            if kind == .mean, p.groupSize > 0 {
                acc = acc.map { unsigned64 ? Int64(bitPattern: UInt64(bitPattern: $0) / UInt64(p.groupSize)) : $0 / Int64(p.groupSize) }
            }
        }
        return Tensor(dtype: data.dtype, shape: p.outShape, int64s: acc)
    }

    /// The (outer, axis length, inner) split of `shape` around `axis`.
    static func split(_ shape: [Int], at axis: Int) -> (outer: Int, length: Int, inner: Int) {
        guard !shape.isEmpty else { return (1, 1, 1) }
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        return (outer, shape[axis], inner)
    }

    /// Softmax or LogSoftmax along one axis (opset 13 semantics; default axis -1).
    static func softmax(_ ctx: KernelContext, log takeLog: Bool) throws -> Tensor {
        let input = try ctx.tensor(0)
        guard input.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(input.dtype)") }
        let axis = try ctx.axis(try ctx.int("axis", -1), rank: input.rank)
        let (outer, length, inner) = split(input.shape, at: axis)
        if input.dtype == .float32 {
            let x = input.elements(as: Float.self)
            var out = [Float](repeating: 0, count: x.count)
            x.withUnsafeBufferPointer { xp in
                out.withUnsafeMutableBufferPointer { op in
                    for o in 0..<outer {
                        for i in 0..<inner {
                            let base = o * length * inner + i
                            var peak = -Float.infinity
                            for k in 0..<length { peak = Swift.max(peak, xp[base + k * inner]) }
                            var total: Double = 0
                            for k in 0..<length {
                                let e = expf(xp[base + k * inner] - peak)
                                if !takeLog { op[base + k * inner] = e }
                                total += Double(e)
                            }
                            if takeLog {
                                let shift = peak + Float(log(total))
                                for k in 0..<length { op[base + k * inner] = xp[base + k * inner] - shift }
                            } else {
                                let scale = Float(1 / total)
                                for k in 0..<length { op[base + k * inner] *= scale }
                            }
                        }
                    }
                }
            }
            return Tensor(shape: input.shape, out)
        }
        let x = input.asDoubles()
        var out = [Double](repeating: 0, count: x.count)
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                var peak = -Double.infinity
                for k in 0..<length { peak = Swift.max(peak, x[base + k * inner]) }
                var total: Double = 0
                for k in 0..<length { total += exp(x[base + k * inner] - peak) }
                for k in 0..<length {
                    let v = x[base + k * inner] - peak
                    out[base + k * inner] = takeLog ? v - log(total) : exp(v) / total
                }
            }
        }
        return Tensor(dtype: input.dtype, shape: input.shape, doubles: out)
    }

    /// Hardmax: 1 at the first maximum along the axis, 0 elsewhere.
    static func hardmax(_ ctx: KernelContext) throws -> Tensor {
        let input = try ctx.tensor(0)
        guard input.dtype.isFloatingPoint || input.dtype.isInteger else { throw ctx.unsupported("element type \(input.dtype)") }
        let axis = try ctx.axis(try ctx.int("axis", -1), rank: input.rank)
        let (outer, length, inner) = split(input.shape, at: axis)
        let x = input.asDoubles()
        var out = [Double](repeating: 0, count: x.count)
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                guard length > 0 else { continue }
                var best = 0
                for k in 1..<Swift.max(length, 1) where x[base + k * inner] > x[base + best * inner] { best = k }
                out[base + best * inner] = 1
            }
        }
        return Tensor(dtype: input.dtype, shape: input.shape, doubles: out)
    }
}
