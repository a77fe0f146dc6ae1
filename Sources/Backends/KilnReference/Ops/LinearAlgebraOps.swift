import KilnIR

/// Matrix products and friends: MatMul, Gemm, Einsum, Det, MatMulInteger.
enum LinearAlgebraOps {
    static func register(into table: inout KernelTable) {
        table.add("MatMul") { ctx in [.tensor(try matMul(ctx, try ctx.tensor(0), try ctx.tensor(1)))] }
        table.add("Gemm") { ctx in [.tensor(try gemm(ctx))] }
        table.add("Einsum") { ctx in [.tensor(try einsum(ctx))] }
        table.add("Det") { ctx in [.tensor(try det(ctx))] }
        table.add("MatMulInteger") { ctx in [.tensor(try matMulInteger(ctx))] }
    }

    // MARK: MatMul

    /// The geometry of a batched, broadcast matrix product (NumPy `matmul` rules).
    struct Geometry {
        /// Rows of the left operand, shared dim, columns of the right operand.
        var m: Int, k: Int, n: Int
        /// For each output batch, the element offset of its left and right matrices.
        var aOffsets: [Int], bOffsets: [Int]
        /// The output shape (with the dims of 1-D operands removed).
        var outShape: [Int]
    }

    /// The geometry of `a × b` for shapes `a` and `b`; an error when they do not multiply.
    static func geometry(_ ctx: KernelContext, _ a: [Int], _ b: [Int]) throws -> Geometry {
        guard !a.isEmpty, !b.isEmpty else { throw ctx.fail("MatMul operands must have rank ≥ 1") }
        let a2 = a.count == 1 ? [1, a[0]] : a
        let b2 = b.count == 1 ? [b[0], 1] : b
        let m = a2[a2.count - 2], k = a2[a2.count - 1]
        let kb = b2[b2.count - 2], n = b2[b2.count - 1]
        guard k == kb else { throw ctx.fail("cannot multiply shapes \(a) and \(b)") }
        let aBatch = Array(a2.dropLast(2)), bBatch = Array(b2.dropLast(2))
        guard let batch = Broadcast.shape([aBatch, bBatch]) else {
            throw ctx.fail("batch dims of \(a) and \(b) do not broadcast")
        }
        let aOffsets = Broadcast.sourceIndices(from: aBatch, to: batch).map { $0 * m * k }
        let bOffsets = Broadcast.sourceIndices(from: bBatch, to: batch).map { $0 * k * n }
        var outShape = batch
        if a.count > 1 { outShape.append(m) }
        if b.count > 1 { outShape.append(n) }
        try ctx.checkedCount(batch + [m, n], "the product")
        return Geometry(m: m, k: k, n: n, aOffsets: aOffsets, bOffsets: bOffsets, outShape: outShape)
    }

    /// Row-major `a × b` for every batch of `g`, in `Float` (float32 inputs).
    static func productFloat(_ x: [Float], _ y: [Float], _ g: Geometry) -> [Float] {
        let (m, k, n) = (g.m, g.k, g.n)
        var out = [Float](repeating: 0, count: g.aOffsets.count * m * n)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                out.withUnsafeMutableBufferPointer { op in
                    for batch in 0..<g.aOffsets.count {
                        let ao = g.aOffsets[batch], bo = g.bOffsets[batch], oo = batch * m * n
                        for i in 0..<m {
                            let row = op.baseAddress! + oo + i * n
                            let arow = xp.baseAddress! + ao + i * k
                            // Four rows of B per pass, in plain while loops over raw pointers:
                            // fast even in unoptimized builds.
                            var p = 0
                            while p + 4 <= k {
                                let (a0, a1, a2, a3) = (arow[p], arow[p + 1], arow[p + 2], arow[p + 3])
                                let b0 = yp.baseAddress! + bo + p * n
                                let (b1, b2, b3) = (b0 + n, b0 + 2 * n, b0 + 3 * n)
                                var j = 0
                                while j < n {
                                    row[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j]
                                    j += 1
                                }
                                p += 4
                            }
                            while p < k {
                                let av = arow[p]
                                let brow = yp.baseAddress! + bo + p * n
                                var j = 0
                                while j < n {
                                    row[j] += av * brow[j]
                                    j += 1
                                }
                                p += 1
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Row-major `a × b` for every batch of `g`, in `Double`.
    static func productDouble(_ x: [Double], _ y: [Double], _ g: Geometry) -> [Double] {
        let (m, k, n) = (g.m, g.k, g.n)
        var out = [Double](repeating: 0, count: g.aOffsets.count * m * n)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                out.withUnsafeMutableBufferPointer { op in
                    for batch in 0..<g.aOffsets.count {
                        let ao = g.aOffsets[batch], bo = g.bOffsets[batch], oo = batch * m * n
                        for i in 0..<m {
                            let row = op.baseAddress! + oo + i * n
                            for p in 0..<k {
                                let av = xp[ao + i * k + p]
                                let brow = yp.baseAddress! + bo + p * n
                                var j = 0
                                while j < n {
                                    row[j] += av * brow[j]
                                    j += 1
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Row-major `a × b` for every batch of `g`, in wrapping `Int64` arithmetic.
    static func productInt(_ x: [Int64], _ y: [Int64], _ g: Geometry) -> [Int64] {
        let (m, k, n) = (g.m, g.k, g.n)
        var out = [Int64](repeating: 0, count: g.aOffsets.count * m * n)
        for batch in 0..<g.aOffsets.count {
            let ao = g.aOffsets[batch], bo = g.bOffsets[batch], oo = batch * m * n
            for i in 0..<m {
                for p in 0..<k {
                    let av = x[ao + i * k + p]
                    for j in 0..<n { out[oo + i * n + j] = out[oo + i * n + j] &+ av &* y[bo + p * n + j] }
                }
            }
        }
        return out
    }

    /// MatMul of two tensors of one numeric type.
    static func matMul(_ ctx: KernelContext, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        guard a.dtype == b.dtype else { throw ctx.fail("input types \(a.dtype) and \(b.dtype) differ") }
        let g = try geometry(ctx, a.shape, b.shape)
        switch a.dtype {
        case .float32:
            return Tensor(shape: g.outShape, productFloat(a.elements(as: Float.self), b.elements(as: Float.self), g))
        case let t where t.isFloatingPoint:
            return Tensor(dtype: t, shape: g.outShape, doubles: productDouble(a.asDoubles(), b.asDoubles(), g))
        case let t where t.isInteger:
            return Tensor(dtype: t, shape: g.outShape, int64s: productInt(a.asInt64s(), b.asInt64s(), g))
        default:
            throw ctx.unsupported("element type \(a.dtype)")
        }
    }

    // MARK: Gemm

    /// A row-major copy of the `rows × cols` matrix `x` transposed.
    static func transposed<T>(_ x: [T], rows: Int, cols: Int) -> [T] {
        guard let first = x.first else { return x }
        var out = [T](repeating: first, count: x.count)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let s = src.baseAddress!, d = dst.baseAddress!
                var r = 0
                while r < rows {
                    var c = 0
                    while c < cols {
                        d[c * rows + r] = s[r * cols + c]
                        c += 1
                    }
                    r += 1
                }
            }
        }
        return out
    }

    /// Gemm: `alpha · A' · B' + beta · C`, with optional transposes and a broadcast, optional C.
    static func gemm(_ ctx: KernelContext) throws -> Tensor {
        let a = try ctx.tensor(0), b = try ctx.tensor(1)
        let c = try ctx.optionalTensor(2)
        let alpha = Double(try ctx.float("alpha", 1)), beta = Double(try ctx.float("beta", 1))
        let transA = try ctx.int("transA", 0) != 0, transB = try ctx.int("transB", 0) != 0
        guard a.rank == 2, b.rank == 2 else { throw ctx.fail("Gemm operands must be matrices, got \(a.shape) and \(b.shape)") }
        guard a.dtype == b.dtype else { throw ctx.fail("input types \(a.dtype) and \(b.dtype) differ") }
        let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
        let kb = transB ? b.shape[1] : b.shape[0], n = transB ? b.shape[0] : b.shape[1]
        guard k == kb else { throw ctx.fail("cannot multiply \(a.shape) and \(b.shape) (transA=\(transA), transB=\(transB))") }
        try ctx.checkedCount([m, n], "the product")
        var cIndex: [Int]? = nil
        if let c {
            guard Broadcast.shape([c.shape, [m, n]]) == [m, n] else {
                throw ctx.fail("C of shape \(c.shape) does not broadcast to [\(m), \(n)]")
            }
            cIndex = Broadcast.sourceIndices(from: c.shape, to: [m, n])
        }
        let g = Geometry(m: m, k: k, n: n, aOffsets: [0], bOffsets: [0], outShape: [m, n])
        if a.dtype == .float32 {
            var x = a.elements(as: Float.self), y = b.elements(as: Float.self)
            if transA { x = transposed(x, rows: k, cols: m) }
            if transB { y = transposed(y, rows: n, cols: k) }
            var out = productFloat(x, y, g)
            let fa = Float(alpha), fb = Float(beta)
            if fa != 1 { for i in 0..<out.count { out[i] *= fa } }
            if let c, let cIndex {
                let cv = c.dtype == .float32 ? c.elements(as: Float.self) : c.asDoubles().map { Float($0) }
                for i in 0..<out.count { out[i] += fb * cv[cIndex[i]] }
            }
            return Tensor(shape: [m, n], out)
        }
        guard a.dtype.isFloatingPoint || a.dtype.isInteger else { throw ctx.unsupported("element type \(a.dtype)") }
        var x = a.asDoubles(), y = b.asDoubles()
        if transA { x = transposed(x, rows: k, cols: m) }
        if transB { y = transposed(y, rows: n, cols: k) }
        var out = productDouble(x, y, g)
        for i in 0..<out.count { out[i] *= alpha }
        if let c, let cIndex {
            let cv = c.asDoubles()
            for i in 0..<out.count { out[i] += beta * cv[cIndex[i]] }
        }
        return Tensor(dtype: a.dtype, shape: [m, n], doubles: out)
    }

    // MARK: MatMulInteger

    /// `tensor − zeroPoint` as Int64, where the zero point is a scalar, broadcasts, or (for the left
    /// operand, `perRow`) is a vector with one entry per row.
    static func centered(_ ctx: KernelContext, _ x: Tensor, _ zeroPoint: Tensor?, perRow: Bool) throws -> [Int64] {
        let values = x.asInt64s()
        guard let zeroPoint else { return values }
        let z = zeroPoint.asInt64s()
        if z.count == 1 { return values.map { $0 - z[0] } }
        var zShape = zeroPoint.shape
        if perRow, zShape.count == 1, x.rank >= 2 { zShape = [zShape[0], 1] }
        guard Broadcast.shape([zShape, x.shape]) == x.shape else {
            throw ctx.fail("zero point of shape \(zeroPoint.shape) does not fit input \(x.shape)")
        }
        let index = Broadcast.sourceIndices(from: zShape, to: x.shape)
        return (0..<values.count).map { values[$0] - z[index[$0]] }
    }

    /// MatMulInteger: integer product of (A − a_zero_point) and (B − b_zero_point), as int32.
    static func matMulInteger(_ ctx: KernelContext) throws -> Tensor {
        let a = try ctx.tensor(0), b = try ctx.tensor(1)
        let x = try centered(ctx, a, try ctx.optionalTensor(2), perRow: true)
        let y = try centered(ctx, b, try ctx.optionalTensor(3), perRow: false)
        let g = try geometry(ctx, a.shape, b.shape)
        return Tensor(dtype: .int32, shape: g.outShape, int64s: productInt(x, y, g))
    }

    // MARK: Det

    /// Determinant of each square matrix in the last two dims (LU with partial pivoting, in Double).
    static func det(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.rank >= 2, x.shape[x.rank - 1] == x.shape[x.rank - 2] else { throw ctx.fail("Det needs square matrices, got \(x.shape)") }
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        let n = x.shape[x.rank - 1]
        let values = x.asDoubles()
        let batchShape = Array(x.shape.dropLast(2))
        let batches = batchShape.reduce(1, *)
        var out = [Double](repeating: 0, count: batches)
        for batch in 0..<batches {
            var lu = Array(values[(batch * n * n)..<((batch + 1) * n * n)])
            var result = 1.0
            for col in 0..<n {
                var pivot = col
                for r in (col + 1)..<max(n, col + 1) where abs(lu[r * n + col]) > abs(lu[pivot * n + col]) { pivot = r }
                if lu[pivot * n + col] == 0 { result = 0; break }
                if pivot != col {
                    for c in 0..<n { lu.swapAt(pivot * n + c, col * n + c) }
                    result = -result
                }
                let d = lu[col * n + col]
                result *= d
                for r in (col + 1)..<max(n, col + 1) {
                    let f = lu[r * n + col] / d
                    if f == 0 { continue }
                    for c in col..<n { lu[r * n + c] -= f * lu[col * n + c] }
                }
            }
            out[batch] = result
        }
        return Tensor(dtype: x.dtype, shape: batchShape, doubles: out)
    }

    // MARK: Einsum

    /// Einsum in full generality: explicit or implicit output, repeated labels (diagonals), ellipsis
    /// broadcasting, and summation over every label absent from the output.
    static func einsum(_ ctx: KernelContext) throws -> Tensor {
        let operands = try (0..<ctx.inputCount).map { try ctx.tensor($0) }
        guard let first = operands.first else { throw ctx.fail("Einsum needs at least one input") }
        let equation = (try ctx.string("equation", "")).filter { !$0.isWhitespace }
        var sides = [equation]
        if let arrow = equation.firstRange(of: "->") {
            sides = [String(equation[..<arrow.lowerBound]), String(equation[arrow.upperBound...])]
        }
        guard sides.count <= 2 else { throw ctx.fail("bad equation '\(equation)'") }
        let termTexts = sides[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard termTexts.count == operands.count else {
            throw ctx.fail("equation '\(equation)' names \(termTexts.count) operands, given \(operands.count)")
        }
        // Labels are ints: letters by their ASCII code, ellipsis dims as -1 - (position within the ellipsis).
        func parse(_ text: String) throws -> (labels: [Int], ellipsisAt: Int?) {
            var labels: [Int] = [], ellipsisAt: Int? = nil
            var chars = Array(text)[...]
            while let c = chars.first {
                if c == "." {
                    guard chars.starts(with: ["." , ".", "."]), ellipsisAt == nil else { throw ctx.fail("bad ellipsis in '\(equation)'") }
                    ellipsisAt = labels.count
                    chars = chars.dropFirst(3)
                } else {
                    guard c.isLetter, let ascii = c.asciiValue else { throw ctx.fail("bad label '\(c)' in '\(equation)'") }
                    labels.append(Int(ascii))
                    chars = chars.dropFirst()
                }
            }
            return (labels, ellipsisAt)
        }
        let terms = try termTexts.map(parse)
        var ellipsisRank = 0
        for (t, x) in zip(terms, operands) where t.ellipsisAt != nil {
            ellipsisRank = max(ellipsisRank, x.rank - t.labels.count)
        }
        // Per operand: the label of each dim.
        var dimLabels: [[Int]] = []
        for (t, x) in zip(terms, operands) {
            var labels = t.labels
            if let at = t.ellipsisAt {
                let own = x.rank - t.labels.count
                guard own >= 0 else { throw ctx.fail("operand \(x.shape) too small for '\(equation)'") }
                let ell = (0..<own).map { -1 - (ellipsisRank - own + $0) }
                labels.insert(contentsOf: ell, at: at)
            }
            guard labels.count == x.rank else { throw ctx.fail("operand of shape \(x.shape) does not match its term in '\(equation)'") }
            dimLabels.append(labels)
        }
        // Sizes of each label (ellipsis dims broadcast: a size of 1 yields to any other size).
        var size: [Int: Int] = [:]
        for (labels, x) in zip(dimLabels, operands) {
            for (d, label) in labels.enumerated() {
                let s = x.shape[d]
                if let known = size[label], known != s {
                    if known == 1 { size[label] = s } else if s != 1 || label >= 0 {
                        throw ctx.fail("label sizes disagree (\(known) vs \(s)) in '\(equation)'")
                    }
                } else if size[label] == nil { size[label] = s }
            }
        }
        let ellipsisLabels = (0..<ellipsisRank).map { -1 - $0 }
        var outLabels: [Int]
        if sides.count == 2 {
            let out = try parse(sides[1])
            outLabels = out.labels
            if let at = out.ellipsisAt { outLabels.insert(contentsOf: ellipsisLabels, at: at) }
            for label in outLabels where size[label] == nil { throw ctx.fail("output label not among the inputs in '\(equation)'") }
        } else {
            var counts: [Int: Int] = [:]
            for t in terms { for l in t.labels { counts[l, default: 0] += 1 } }
            outLabels = ellipsisLabels + counts.filter { $0.value == 1 }.keys.sorted()
        }
        let summed = size.keys.filter { !outLabels.contains($0) }.sorted()
        let loopLabels = outLabels + summed
        let loopSizes = loopLabels.map { size[$0]! }
        // Per operand, its stride along each loop label (summed for repeated labels; 0 where absent or broadcast).
        var loopStrides: [[Int]] = []
        for (labels, x) in zip(dimLabels, operands) {
            let st = strides(of: x.shape)
            var s = [Int](repeating: 0, count: loopLabels.count)
            for (d, label) in labels.enumerated() where x.shape[d] != 1 || size[label] == 1 {
                s[loopLabels.firstIndex(of: label)!] += st[d]
            }
            loopStrides.append(s)
        }
        let outShape = outLabels.map { size[$0]! }
        let outCount = outShape.reduce(1, *)
        let innerCount = summed.map { size[$0]! }.reduce(1, *)
        let integer = first.dtype.isInteger
        guard first.dtype.isFloatingPoint || integer else { throw ctx.unsupported("element type \(first.dtype)") }
        let doubles = integer ? [] : operands.map { $0.asDoubles() }
        let ints = integer ? operands.map { $0.asInt64s() } : []
        var outDoubles = [Double](repeating: 0, count: integer ? 0 : outCount)
        var outInts = [Int64](repeating: 0, count: integer ? outCount : 0)
        let total = outCount * innerCount
        var index = [Int](repeating: 0, count: loopLabels.count)
        var offsets = [Int](repeating: 0, count: operands.count)
        var flat = 0
        while flat < total {
            let target = flat / max(innerCount, 1)
            if integer {
                var product: Int64 = 1
                for o in 0..<operands.count { product = product &* ints[o][offsets[o]] }
                outInts[target] = outInts[target] &+ product
            } else {
                var product = 1.0
                for o in 0..<operands.count { product *= doubles[o][offsets[o]] }
                outDoubles[target] += product
            }
            flat += 1
            var axis = loopLabels.count - 1
            while axis >= 0 {
                index[axis] += 1
                for o in 0..<operands.count { offsets[o] += loopStrides[o][axis] }
                if index[axis] < loopSizes[axis] { break }
                for o in 0..<operands.count { offsets[o] -= loopStrides[o][axis] * index[axis] }
                index[axis] = 0
                axis -= 1
            }
        }
        if integer { return Tensor(dtype: first.dtype, shape: outShape, int64s: outInts) }
        return Tensor(dtype: first.dtype, shape: outShape, doubles: outDoubles)
    }
}
