import CKilnKernels
import KilnIR

/// MatMul and Gemm (batched, with NumPy batch broadcasting), with constant right-hand sides packed
/// ahead of time, and scale, bias, residual Add and activation fused into the kernel's epilogue:
/// `output = act(alpha · op(A) · op(B) + bias + addend)`.
final class MatMulOperation: Operation {
    let kind: String
    let label: String
    let a: Int
    let b: Int
    let output: Int
    let transA: Bool
    let transB: Bool
    /// Scale of the product (already applied inside `packedB`).
    let alpha: Float
    /// B packed by kiln_sgemm_pack_b (alpha applied) when B is a constant matrix.
    let packedB: FloatBuffer?
    /// Per-column bias (length N), when constant.
    let bias: FloatBuffer?
    /// A value added to the product with broadcasting (residual, attention mask, Gemm's C); -1 for none.
    let addend: Int
    let activation: Activation
    /// Gemm rather than MatMul: both operands are matrices.
    let isGemm: Bool

    var inputs: [Int] { [a, b, addend] }
    var outputs: [Int] { [output] }

    init(kind: String, label: String, a: Int, b: Int, constantB: Tensor?, output: Int, transA: Bool, transB: Bool,
         alpha: Float, bias: [Float]?, addend: Int, activation: Activation, isGemm: Bool) {
        self.kind = kind
        self.label = label
        self.a = a
        self.b = b
        self.output = output
        self.transA = transA
        self.transB = transB
        self.alpha = alpha
        self.bias = bias.map(FloatBuffer.init)
        self.addend = addend
        self.activation = activation
        self.isGemm = isGemm
        if let constantB, constantB.rank == 2, constantB.dtype == .float32, !transA {
            let k = transB ? constantB.shape[1] : constantB.shape[0]
            let n = transB ? constantB.shape[0] : constantB.shape[1]
            let buffer = FloatBuffer(count: kiln_sgemm_pack_b_size(k, n))
            func pack(_ values: UnsafePointer<Float>) { kiln_sgemm_pack_b(transB ? 1 : 0, k, n, values, transB ? k : n, buffer.pointer) }
            if alpha == 1 {
                constantB.withFloats(pack)
            } else {
                Tensor(shape: constantB.shape, constantB.elements(as: Float.self).map { $0 * alpha }).withFloats(pack)
            }
            packedB = buffer
        } else {
            packedB = nil
        }
    }

    func plan(_ builder: PlanBuilder) throws {
        try builder.requireFloat(a)
        try builder.requireFloat(b)
        var aShape = try builder.shape(a), bShape = try builder.shape(b)
        if isGemm {
            guard aShape.count == 2, bShape.count == 2 else { throw builder.invalid("Gemm needs matrices, got \(aShape) and \(bShape)") }
        }
        guard !aShape.isEmpty, !bShape.isEmpty else { throw builder.invalid("MatMul operands must have rank ≥ 1") }
        // Logical (untransposed) shapes; 1-D operands are promoted as NumPy does.
        let aVector = aShape.count == 1, bVector = bShape.count == 1
        if aVector { aShape = [1, aShape[0]] }
        if bVector { bShape = [bShape[0], 1] }
        if transA { aShape.swapAt(aShape.count - 1, aShape.count - 2) }
        if transB { bShape.swapAt(bShape.count - 1, bShape.count - 2) }
        let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1]
        let n = bShape[bShape.count - 1]
        guard bShape[bShape.count - 2] == k else {
            throw builder.invalid("inner dims differ: \(try builder.shape(a)) × \(try builder.shape(b))")
        }
        let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
        guard let outBatch = Broadcasting.shape(aBatch, bBatch) else {
            throw builder.invalid("batch dims \(aBatch) and \(bBatch) do not broadcast")
        }
        var outShape = outBatch + [m, n]
        let fullOut = outShape
        if aVector { outShape.remove(at: outShape.count - 2) }
        if bVector { outShape.removeLast() }
        try builder.define(output, shape: outShape)
        if fullOut.reduce(1, *) == 0 { return }
        if k == 0 { throw builder.unsupported("empty inner dimension") }
        if let bias, bias.count != n { throw builder.invalid("bias has \(bias.count) elements for \(n) columns") }

        // The addend is fused when it broadcasts as a matrix of rows of N (ldr = N) or one row (ldr = 0).
        var fusedAddend = -1
        var ldr = 0
        var addendBatchStrides = [Int](repeating: 0, count: outBatch.count)
        if addend >= 0 {
            try builder.requireFloat(addend)
            let r = try builder.shape(addend)
            guard let joint = Broadcasting.shape(r, outShape), joint == outShape else {
                throw builder.invalid("cannot add a \(r) tensor to the \(outShape) product")
            }
            var padded = [Int](repeating: 1, count: max(0, fullOut.count - r.count)) + r
            if padded.count > fullOut.count { padded = Array(padded.suffix(fullOut.count)) }
            if (aVector || bVector) && r != outShape {
                padded = []
            }
            if padded.count == fullOut.count, padded.last == n, padded[padded.count - 2] == m || padded[padded.count - 2] == 1 {
                fusedAddend = addend
                ldr = padded[padded.count - 2] == m && m > 1 ? n : 0
                var running = padded[padded.count - 2] * n
                for i in stride(from: outBatch.count - 1, through: 0, by: -1) {
                    addendBatchStrides[i] = padded[i] == 1 ? 0 : running
                    running *= padded[i]
                }
            }
        }
        let postAdd = addend >= 0 && fusedAddend < 0
        let activation = postAdd ? Activation.none : self.activation

        // Batch offsets (in elements) of A, B, the addend and the output for every output batch index.
        func offsets(_ batch: [Int], matrix: Int) -> [Int] {
            let padded = [Int](repeating: 1, count: outBatch.count - batch.count) + batch
            var strides = [Int](repeating: 0, count: padded.count)
            var running = matrix
            for i in stride(from: padded.count - 1, through: 0, by: -1) {
                strides[i] = padded[i] == 1 ? 0 : running
                running *= padded[i]
            }
            return batchIndices(outBatch).map { idx in zip(idx, strides).reduce(0) { $0 + $1.0 * $1.1 } }
        }
        let batchCount = outBatch.reduce(1, *)
        let aOffsets = offsets(aBatch, matrix: m * k)
        let rOffsets = batchIndices(outBatch).map { idx in zip(idx, addendBatchStrides).reduce(0) { $0 + $1.0 * $1.1 } }
        let threads = builder.threads
        let (a, b, output) = (self.a, self.b, self.output)
        let biasBuffer = bias
        let residualID = fusedAddend

        if let packed = packedB, bBatch.isEmpty {
            // Constant B: when A's batches are contiguous rows and the addend follows them, run as one matrix.
            let flat = rOffsets.enumerated().allSatisfy { i, off in ldr == 0 ? off == 0 : off == i * m * n }
            let groups: [(rowsStart: Int, rows: Int, rOffset: Int)] = flat
                ? [(0, batchCount * m, 0)]
                : (0..<batchCount).map { ($0 * m, m, rOffsets[$0]) }
            var units: [(group: Int, rows: Range<Int>, cols: Range<Int>)] = []
            for (gi, g) in groups.enumerated() {
                let byColumns = g.rows * k < k * n || g.rows < 4 * threads
                if threads == 1 {
                    units.append((gi, 0..<g.rows, 0..<n))
                } else if byColumns {
                    for c in splitRange(n, parts: threads, granule: Int(KILN_SGEMM_NR)) { units.append((gi, 0..<g.rows, c)) }
                } else {
                    for r in splitRange(g.rows, parts: threads, granule: Int(KILN_SGEMM_MR)) { units.append((gi, r, 0..<n)) }
                }
            }
            builder.step { frame in
                let ap = frame.f(a), cp = frame.f(output)
                let rp: UnsafePointer<Float>? = residualID >= 0 ? UnsafePointer(frame.f(residualID)) : nil
                let bp: UnsafePointer<Float>? = biasBuffer.map { UnsafePointer($0.pointer) }
                frame.pool.parallelFor(units.count) { u in
                    let unit = units[u]
                    let g = groups[unit.group]
                    let r0 = g.rowsStart + unit.rows.lowerBound
                    var e = makeEpilogue(bias: bp, residual: rp.map { $0 + g.rOffset + unit.rows.lowerBound * ldr }, ldr: ldr,
                                         activation: activation)
                    kiln_sgemm_packed(unit.rows.count, n, k, ap + r0 * k, k, packed.pointer, cp + r0 * n, n,
                                      unit.cols.lowerBound, unit.cols.upperBound, &e)
                }
            }
        } else {
            let bOffsets = offsets(bBatch, matrix: k * n)
            let lda = transA ? m : k, ldb = transB ? k : n
            let rowParts = batchCount >= threads ? 1 : max(1, (threads * 2 + batchCount - 1) / batchCount)
            var units: [(batch: Int, rows: Range<Int>)] = []
            for i in 0..<batchCount {
                for r in splitRange(m, parts: rowParts, granule: Int(KILN_SGEMM_MR)) { units.append((i, r)) }
            }
            let alpha = self.alpha
            let transA = self.transA, transB = self.transB
            builder.step { frame in
                let ap = frame.f(a), bp = frame.f(b), cp = frame.f(output)
                let rp: UnsafePointer<Float>? = residualID >= 0 ? UnsafePointer(frame.f(residualID)) : nil
                let biasp: UnsafePointer<Float>? = biasBuffer.map { UnsafePointer($0.pointer) }
                frame.pool.parallelFor(units.count) { u in
                    let (i, rows) = units[u]
                    let r0 = rows.lowerBound
                    var e = makeEpilogue(bias: biasp, residual: rp.map { $0 + rOffsets[i] + r0 * ldr }, ldr: ldr, activation: activation)
                    let aStart = ap + aOffsets[i] + (transA ? r0 : r0 * lda)
                    kiln_sgemm(transA ? 1 : 0, transB ? 1 : 0, rows.count, n, k, alpha, aStart, lda, bp + bOffsets[i], ldb, 0,
                               cp + i * m * n + r0 * n, n, &e)
                }
            }
        }
        if postAdd {
            try Broadcasting.planBinary(builder, op: KILN_BINARY_ADD, a: output, b: addend, output: output, kind: "\(kind)/add")
            let act = self.activation
            if act.kind != .none {
                let count = outShape.reduce(1, *)
                builder.step("\(kind)/activation") { frame in act.apply(frame.f(output), frame.f(output), count: count) }
            }
        }
    }
}

/// Every index of a tensor of shape `dims`, in row-major order (one empty index for a scalar).
func batchIndices(_ dims: [Int]) -> [[Int]] {
    let total = dims.reduce(1, *)
    var result: [[Int]] = []
    result.reserveCapacity(total)
    var index = [Int](repeating: 0, count: dims.count)
    for _ in 0..<total {
        result.append(index)
        var axis = dims.count - 1
        while axis >= 0 {
            index[axis] += 1
            if index[axis] < dims[axis] { break }
            index[axis] = 0
            axis -= 1
        }
    }
    return result
}
