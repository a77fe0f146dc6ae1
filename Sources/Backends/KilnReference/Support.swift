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

extension KernelContext {
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
        return s
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
