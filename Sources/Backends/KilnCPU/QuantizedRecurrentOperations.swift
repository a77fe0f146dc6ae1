import CKilnKernels
import KilnIR

/// ONNX Runtime's dynamically quantized LSTM (`com.microsoft.DynamicQuantizeLSTM`, which
/// `onnxruntime.quantization.quantize_dynamic` writes for every LSTM) on kiln.cpu: `RecurrentOperation` runs
/// it as an LSTM whose two weight products are integer GEMMs (`kiln_qgemm`, VNNI where the CPU has it).
///
/// The arithmetic is kiln.reference's (`ContribRecurrentOps`), which follows ONNX Runtime's single-threaded
/// schedule: X (every step of the sequence at once) and, at each step, the hidden state of every batch row
/// are quantized to uint8 over their own range (widened to include 0; `scale = (max − min) / 255`, 1 for an
/// empty range; the zero point rounded half to even); the product with the int8/uint8 weights less their
/// zero point is exact in int32, then scaled by `a_scale · w_scale` in float32. The gates are the LSTM's.
///
/// Inputs: X `[seq, batch, input]`, W `[dirs, input, 4·hidden]` and R `[dirs, hidden, 4·hidden]` (the
/// ONNX LSTM's weights transposed), B, sequence_lens, initial_h, initial_c, P, then W_scale, W_zero_point,
/// R_scale, R_zero_point (one per direction, or one per column).
struct QuantizedLSTMWeights: Sendable {
    /// The op this describes.
    static let op = OpID("com.microsoft", "DynamicQuantizeLSTM")

    /// One direction's weight matrix (k × n = rows × 4·hidden), packed for `kiln_qgemm`.
    struct Matrix: Sendable {
        let packed: [Int8]
        let columnSums: [Int32]
        /// The zero point, in the weight's own type.
        let zero: Int32
        /// The float32 scale of each column.
        let scales: [Float]
        let unsigned: Bool
    }

    /// W and R of each direction.
    let w: [Matrix], r: [Matrix]

    /// Why kiln.cpu cannot run DynamicQuantizeLSTM node `node`, or nil. W, R and their scales and zero
    /// points must be constants (they are packed once); zero points must be one value per direction (as
    /// ONNX Runtime uses them); sequence_lens and layout 1 are left to kiln.reference.
    static func rejection(_ node: Node, _ facts: SupportFacts) -> String? {
        func input(_ i: Int) -> String { i < node.inputs.count ? node.inputs[i] : "" }
        for i in [0, 3, 5, 6, 7, 8, 10] where !input(i).isEmpty {
            if let t = facts.types[input(i)], t != .float32 { return "DynamicQuantizeLSTM input '\(input(i))' is \(t) (float32 expected)" }
        }
        for i in [1, 2, 8, 9, 10, 11] where !input(i).isEmpty && facts.constants[input(i)] == nil {
            return "DynamicQuantizeLSTM input '\(input(i))' (weights, scales and zero points) is not a constant"
        }
        if input(8).isEmpty || input(10).isEmpty { return "DynamicQuantizeLSTM needs W_scale and R_scale" }
        for i in [1, 2, 9, 11] where !input(i).isEmpty {
            if let t = facts.constants[input(i)]?.dtype, t != .int8 && t != .uint8 {
                return "DynamicQuantizeLSTM input '\(input(i))' is \(t) (int8 or uint8 expected)"
            }
        }
        if !input(4).isEmpty { return "DynamicQuantizeLSTM with sequence_lens runs on kiln.reference" }
        if ((try? node.int("layout", 0)) ?? 0) != 0 { return "DynamicQuantizeLSTM with layout 1 runs on kiln.reference" }
        return RecurrentOperation.rejection(node)
    }

    /// The weights of `node` from its constant inputs (`constants` by position), for `directions` directions.
    /// Shapes are checked when planning; here only what packing needs.
    init(node: Node, constants: [Tensor?], directions: Int) throws {
        func constant(_ i: Int) -> Tensor? { i < constants.count ? constants[i] : nil }
        func invalid(_ why: String) -> KilnError { KilnError(.invalidModel, "node '\(node.displayName)' (DynamicQuantizeLSTM): \(why)") }
        func matrices(_ q: Tensor?, _ scale: Tensor?, _ zeroPoint: Tensor?, _ what: String) throws -> [Matrix] {
            guard let q, q.dtype == .int8 || q.dtype == .uint8, q.rank == 3, q.shape[0] == directions, let raw = q.rawBytes,
                  let scale, scale.dtype == .float32 else {
                throw KilnError(.unsupported, "node '\(node.displayName)' (DynamicQuantizeLSTM): \(what) must be a constant int8/uint8 [directions, k, n] with a float32 scale")
            }
            let (k, n) = (q.shape[1], q.shape[2])
            let perColumn = scale.count == directions * n && n != 1
            guard scale.count == directions || perColumn else { throw invalid("\(what)'s scale has \(scale.count) values; expected \(directions) or \(directions * n)") }
            let zeros = zeroPoint?.asInt64s() ?? [Int64](repeating: 0, count: scale.count)
            guard zeros.count == scale.count else { throw invalid("\(what)'s zero point does not match its scale") }
            let scales = scale.elements(as: Float.self)
            let width = perColumn ? n : 1
            return try (0..<directions).map { d in
                let zero = zeros[d * width]
                guard zeros[(d * width)..<((d + 1) * width)].allSatisfy({ $0 == zero }) else {
                    throw KilnError(.unsupported, "node '\(node.displayName)' (DynamicQuantizeLSTM): \(what) has different zero points within a direction")
                }
                let unsigned = q.dtype == .uint8
                let (packed, sums) = QuantizedLinearOperation.pack(raw.baseAddress! + d * k * n, k: k, n: n, ks: n, ns: 1, unsigned: unsigned)
                let columnScales = perColumn ? Array(scales[(d * n)..<((d + 1) * n)]) : [Float](repeating: scales[d], count: n)
                return Matrix(packed: packed, columnSums: sums, zero: Int32(zero), scales: columnScales, unsigned: unsigned)
            }
        }
        w = try matrices(constant(1), constant(8), constant(9), "W")
        r = try matrices(constant(2), constant(10), constant(11), "R")
    }

    /// The uint8 scale and zero point of `count` floats at `x`, as kiln.reference's DynamicQuantizeLSTM
    /// (and ONNX Runtime) chooses them, and the values quantized into `q`.
    static func quantize(_ x: UnsafePointer<Float>, count: Int, into q: UnsafeMutablePointer<UInt8>) -> (scale: Float, zero: Int32) {
        let (lo, hi) = floatRange(x, count)
        let scale: Float = hi == lo ? 1 : (hi - lo) / 255
        let zero = max(0, min(255, 0 - lo / scale)).rounded(.toNearestOrEven)
        // rint(x / scale) + zero, saturated, NaN to 0.
        kiln_quantize_u8(x, count, scale, Int32(zero), 0, q)
        return (scale, Int32(zero))
    }

    /// Rows [r0, r1) and columns [n0, n1) (n0 a multiple of KILN_QGEMM_NR) of `(a − aZero) · (m − zero)` into
    /// `acc` (row-major, `n` columns), for `rows` rows of `k` uint8 values at `a`.
    static func product(_ a: UnsafePointer<UInt8>, rows: Int, k: Int, aZero: Int32, _ m: Matrix, n: Int,
                        into acc: UnsafeMutablePointer<Int32>, _ r0: Int, _ r1: Int, _ n0: Int, _ n1: Int) {
        m.packed.withUnsafeBufferPointer { packed in
            m.columnSums.withUnsafeBufferPointer { sums in
                withUnsafePointer(to: m.zero) { zero in
                    var p = kiln_qgemm_params()
                    p.m = rows; p.n = n; p.k = k
                    p.a = a; p.lda = k; p.a_signed = 0; p.a_zero = aZero
                    p.packed_b = packed.baseAddress; p.col_sums = sums.baseAddress
                    p.b_unsigned = m.unsigned ? 1 : 0
                    p.b_zero = zero; p.b_zero_stride = 0
                    p.out = KILN_QOUT_INT32
                    p.c = UnsafeMutableRawPointer(acc); p.rs = n; p.cs = 1
                    p.a_segments = 0
                    kiln_qgemm(&p, r0, r1, n0, n1)
                }
            }
        }
    }

    /// One step's recurrent product of direction `d`: the hidden state `h` (`batch` rows of `hidden`) quantized
    /// into `qh`, times R, scaled into `g` (`batch` rows of 4·hidden floats), using `acc` for the int32 sums.
    func recurrent(direction d: Int, h: UnsafePointer<Float>, batch: Int, hidden: Int, qh: UnsafeMutablePointer<UInt8>,
                   acc: UnsafeMutablePointer<Int32>, g: UnsafeMutablePointer<Float>) {
        let n = 4 * hidden
        let (scale, zero) = Self.quantize(h, count: batch * hidden, into: qh)
        Self.product(UnsafePointer(qh), rows: batch, k: hidden, aZero: zero, r[d], n: n, into: acc, 0, batch, 0, n)
        r[d].scales.withUnsafeBufferPointer { scales in
            for b in 0..<batch {
                for j in 0..<n { g[b * n + j] = Float(acc[b * n + j]) * (scale * scales[j]) }
            }
        }
    }
}
