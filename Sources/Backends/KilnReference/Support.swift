import KilnIR

/// Row-major strides of `shape`, in elements.
func strides(of shape: [Int]) -> [Int] {
    var result = [Int](repeating: 1, count: shape.count)
    var running = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        result[i] = running
        running *= shape[i]
    }
    return result
}

/// Multidirectional (NumPy) broadcasting, as ONNX defines it.
enum Broadcast {
    /// The broadcast shape of `shapes`, or nil when they are incompatible.
    static func shape(_ shapes: [[Int]]) -> [Int]? {
        let rank = shapes.map(\.count).max() ?? 0
        var out = [Int](repeating: 1, count: rank)
        for s in shapes {
            let offset = rank - s.count
            for (i, d) in s.enumerated() {
                let j = i + offset
                if out[j] == d || d == 1 { continue }
                if out[j] == 1 { out[j] = d } else { return nil }
            }
        }
        return out
    }

    /// For each element of a tensor of shape `out` (row-major), the index of the element of a tensor of
    /// shape `source` that broadcasts onto it.
    static func sourceIndices(from source: [Int], to out: [Int]) -> [Int] {
        let count = out.reduce(1, *)
        if source == out { return Array(0..<count) }
        let offset = out.count - source.count
        let sourceStrides = strides(of: source)
        // Stride of each output axis in the source; 0 where the source broadcasts.
        var axisStride = [Int](repeating: 0, count: out.count)
        for i in 0..<source.count where source[i] != 1 { axisStride[i + offset] = sourceStrides[i] }
        var result = [Int](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: out.count)
        var sourceIndex = 0
        for flat in 0..<count {
            result[flat] = sourceIndex
            // Advance the multi-index like an odometer.
            var axis = out.count - 1
            while axis >= 0 {
                index[axis] += 1
                sourceIndex += axisStride[axis]
                if index[axis] < out[axis] { break }
                sourceIndex -= axisStride[axis] * index[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        return result
    }
}

/// The most bytes one tensor that a kernel creates may take, counted with the kernels' working copies
/// (`[Double]` values, `[Int]` indices): 4 GiB. Larger outputs — usually the sign of a malformed model asking
/// for an absurd shape — are refused before anything is allocated.
let maxTensorBytes = 1 << 32

/// What one element costs a kernel at most: an 8-byte `Double` (or `Int` index) working copy plus an
/// 8-byte result element.
let workingBytesPerElement = 16

/// The most elements a tensor that a kernel creates may have: `maxTensorBytes / workingBytesPerElement`
/// (2^28), so the cap counts bytes, working copies included.
let maxTensorElements = maxTensorBytes / workingBytesPerElement

/// The largest magnitude a window attribute (kernel size, stride, dilation, pad, output padding) may have:
/// 2^30, so that sums and products of two of them cannot overflow `Int`.
let windowLimit = 1 << 30

extension KernelContext {
    /// The element count of a tensor of shape `shape` that the kernel is about to create; an error naming
    /// `what` when a dim is negative or the count exceeds `maxTensorElements` (overflow included).
    @discardableResult
    func checkedCount(_ shape: [Int], _ what: String = "the output") throws -> Int {
        for d in shape where d < 0 { throw fail("\(what) would have a negative dim (shape \(shape))") }
        // The dims other than zeros must multiply without overflow too: `Tensor.count` multiplies them in order,
        // and a kernel may loop over any one dim.
        var n = 1
        for d in shape where d != 0 {
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow, p <= maxTensorElements else {
                throw fail("\(what) would have shape \(shape): more than kiln.reference's cap of \(maxTensorBytes >> 30) GiB per tensor, working copies included (\(maxTensorElements) elements)")
            }
            n = p
        }
        return shape.contains(0) ? 0 : n
    }

    /// `Broadcast.sourceIndices(from: source, to: out)` after checking that a tensor of shape `source` broadcasts
    /// onto `out` one way (as a LayerNormalization scale or a Gemm bias must); an error naming `what` otherwise.
    func sourceIndices(from source: [Int], to out: [Int], _ what: String) throws -> [Int] {
        guard Self.broadcasts(source, onto: out) else {
            throw fail("\(what) of shape \(source) does not broadcast to shape \(out)")
        }
        return Broadcast.sourceIndices(from: source, to: out)
    }

    /// Whether `source` broadcasts onto `out` one way: no more dims, each 1 or equal to its counterpart.
    static func broadcasts(_ source: [Int], onto out: [Int]) -> Bool {
        guard source.count <= out.count else { return false }
        let offset = out.count - source.count
        return source.indices.allSatisfy { source[$0] == 1 || source[$0] == out[$0 + offset] }
    }

    /// Checks that every value of `values` (an attribute such as strides or pads) lies in `range`; an error naming
    /// `what` otherwise. Window geometry bounded by `windowLimit` cannot overflow in the arithmetic that follows.
    func checkRange(_ values: [Int], _ what: String, _ range: ClosedRange<Int>) throws {
        for v in values where !range.contains(v) {
            throw fail("\(what) \(values) must lie in \(range.lowerBound)...\(range.upperBound)")
        }
    }

    /// `shape` itself, after `checkedCount` has accepted it.
    func checkedShape(_ shape: [Int], _ what: String = "the output") throws -> [Int] {
        try checkedCount(shape, what)
        return shape
    }

    /// The elements of `t` as `Double`; an error naming `what` when `t` holds strings or complex numbers.
    func numbers(_ t: Tensor, _ what: String) throws -> [Double] {
        guard t.dtype.hasRealValue else { throw unsupported("\(what) of element type \(t.dtype)") }
        return t.asDoubles()
    }

    /// The elements of `t` as `Int` (floats truncated, see `Tensor.asInt64s`); an error naming `what` when
    /// `t` holds strings or complex numbers.
    func integers(_ t: Tensor, _ what: String) throws -> [Int] {
        guard t.dtype.hasRealValue else { throw fail("\(what) must hold integers, not \(t.dtype)") }
        return t.asInts()
    }

    /// `axis` made non-negative for a tensor of rank `rank`; an error when out of range.
    func axis(_ axis: Int, rank: Int) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0, a < max(rank, 1) else { throw fail("axis \(axis) is out of range for rank \(rank)") }
        return a
    }

    /// The broadcast shape of `tensors`; an error naming the shapes when they do not broadcast.
    func broadcastShape(_ tensors: [Tensor]) throws -> [Int] {
        guard let s = Broadcast.shape(tensors.map(\.shape)) else {
            throw fail("shapes \(tensors.map(\.shape).map { "\($0)" }.joined(separator: ", ")) do not broadcast")
        }
        return try checkedShape(s, "the broadcast result")
    }
}

/// Elementwise maps in a tensor's own Swift type, for kernels that must respect integer widths,
/// unsigned arithmetic or exact 64-bit values.
enum Typed {
    /// `op` over `a` and `b` broadcast together, computed in `T`; the result has element type `R`.
    static func binary<T: TensorElement, R: TensorElement>(_ a: Tensor, _ b: Tensor, _: T.Type, shape: [Int],
                                                          _ op: (T, T) throws -> R) rethrows -> Tensor {
        let x = a.elements(as: T.self), y = b.elements(as: T.self)
        let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
        let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
        var out = [R]()
        out.reserveCapacity(xi.count)
        for k in 0..<xi.count { out.append(try op(x[xi[k]], y[yi[k]])) }
        return Tensor(shape: shape, out)
    }

    /// `op` over every element of `a`, computed in `T`; the result has element type `R`.
    static func unary<T: TensorElement, R: TensorElement>(_ a: Tensor, _: T.Type, _ op: (T) throws -> R) rethrows -> Tensor {
        Tensor(shape: a.shape, try a.elements(as: T.self).map(op))
    }
}

/// Elementwise maps through `Double`, for floating-point kernels where float64 intermediate precision is
/// harmless; results are rounded back to the input's type (float16, bfloat16 and 8-bit formats included).
enum Real {
    /// `op` over `a` and `b` broadcast together; the result has `a`'s element type unless `resultType` is given.
    static func binary(_ a: Tensor, _ b: Tensor, shape: [Int], resultType: DType? = nil, _ op: (Double, Double) -> Double) -> Tensor {
        let x = a.asDoubles(), y = b.asDoubles()
        let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
        let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
        var out = [Double](repeating: 0, count: xi.count)
        for k in 0..<xi.count { out[k] = op(x[xi[k]], y[yi[k]]) }
        return Tensor(dtype: resultType ?? a.dtype, shape: shape, doubles: out)
    }

    /// `op` over every element of `a`; the result has `a`'s element type unless `resultType` is given.
    static func unary(_ a: Tensor, resultType: DType? = nil, _ op: (Double) -> Double) -> Tensor {
        Tensor(dtype: resultType ?? a.dtype, shape: a.shape, doubles: a.asDoubles().map(op))
    }
}

extension DType {
    /// Whether elements of this type have one real value each (not strings, not complex numbers), so that
    /// `Tensor.asDoubles` and `Tensor.asInt64s` can read them.
    var hasRealValue: Bool { self != .string && self != .complex64 && self != .complex128 }
}

/// `v` rounded toward zero as an `Int`, saturating at `Int`'s bounds; NaN gives 0. For turning model-supplied
/// floating-point values (seeds, sizes, scales) into integers without trapping.
func saturatingInt(_ v: Double) -> Int {
    guard !v.isNaN else { return 0 }
    if v >= 0x1p63 { return .max }
    if v <= -0x1p63 { return .min }
    return Int(v.rounded(.towardZero))
}

/// The product of `dims`, or nil when it overflows `Int` (for shapes computed from a model's data).
func checkedProduct(_ dims: [Int]) -> Int? {
    var n = 1
    for d in dims {
        let (p, overflow) = n.multipliedReportingOverflow(by: d)
        if overflow { return nil }
        n = p
    }
    return n
}

/// `a[i] * b[i]` for each `i` (arrays of one length), or nil when a product overflows.
func checkedProducts(_ a: [Int], _ b: [Int]) -> [Int]? {
    var out: [Int] = []
    for (x, y) in zip(a, b) {
        let (p, overflow) = x.multipliedReportingOverflow(by: y)
        if overflow { return nil }
        out.append(p)
    }
    return out
}
