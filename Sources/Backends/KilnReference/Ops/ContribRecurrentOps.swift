import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// ONNX Runtime's dynamically quantized LSTM (`com.microsoft.DynamicQuantizeLSTM`), which
/// `onnxruntime.quantization.quantize_dynamic` writes for every LSTM.
///
/// Inputs: X `[seq, batch, input]` (float), W `[dirs, input, 4·hidden]` and R `[dirs, hidden, 4·hidden]`
/// (int8 or uint8: the ONNX LSTM's weights transposed), B, sequence_lens, initial_h, initial_c, P as in LSTM,
/// then W_scale, W_zero_point, R_scale, R_zero_point (one per direction, or one per column of W/R).
///
/// Each product with a weight matrix is an integer GEMM, as ONNX Runtime computes it: the float operand
/// (all of X for a direction at once; the hidden state of every batch row at each step) is quantized to
/// uint8 with its own range (that of DynamicQuantizeLinear: the range widened to include 0,
/// `scale = (max − min) / 255`, the zero point rounded half to even), multiplied exactly in integers with
/// the weights less their zero point, and scaled by `a_scale · w_scale` in float32. The gates then follow
/// the ONNX LSTM (order i, o, f, c; peepholes, clip, input_forget, activations), in `Double`.
///
/// With a batch of more than one row, this is ONNX Runtime's single-threaded schedule: with several threads ORT
/// quantizes each thread's share of the rows on its own range, so its own answer then depends on its thread count.
///
/// Refused (`.unsupported`, so the node cannot run rather than run differently from ONNX Runtime):
/// sequence_lens shorter than the sequence, and per-column zero points that differ within a direction
/// (ONNX Runtime uses only the first one).
enum ContribRecurrentOps {
    static func register(into table: inout KernelTable) {
        table.add("DynamicQuantizeLSTM", domain: ContribQuantizationOps.domain) { ctx in try dynamicQuantizeLSTM(ctx) }
    }

    /// A weight matrix of one direction: `rows` × `columns` integers less their zero point, and the float32
    /// scale of each column.
    struct QuantizedWeights {
        let rows: Int, columns: Int
        let values: [Int32]
        let scales: [Float]
    }

    /// The weights of direction `d` of `q` (`[dirs, rows, columns]`) with `scale` and `zeroPoint` (per
    /// direction or per column).
    static func weights(_ ctx: KernelContext, _ q: Tensor, _ scale: Tensor, _ zeroPoint: Tensor?, direction d: Int, dirs: Int, _ what: String) throws -> QuantizedWeights {
        guard q.dtype == .int8 || q.dtype == .uint8 else { throw ctx.unsupported("\(what) of element type \(q.dtype)") }
        let rows = q.shape[1], columns = q.shape[2]
        let perColumn = scale.count == dirs * columns && columns != 1
        guard scale.count == dirs || perColumn else {
            throw ctx.fail("\(what)'s scale has \(scale.count) values; expected \(dirs) or \(dirs * columns)")
        }
        guard zeroPoint.map({ $0.count == scale.count }) ?? true else { throw ctx.fail("\(what)'s zero point does not match its scale") }
        let scales = scale.asDoubles().map { Float($0) }
        let zeroPoints = zeroPoint?.asDoubles() ?? [Double](repeating: 0, count: scale.count)
        let width = perColumn ? columns : 1
        let zero = zeroPoints[d * width]
        guard zeroPoints[(d * width)..<((d + 1) * width)].allSatisfy({ $0 == zero }) else {
            throw ctx.unsupported("\(what) with different zero points within a direction")
        }
        // Only this direction's bytes, read as integers (no whole-tensor conversion per direction and run).
        guard let raw = q.rawBytes else { throw ctx.fail("\(what) has no numeric data") }
        let base = d * rows * columns, z = Int32(zero), signed = q.dtype == .int8
        let values = (0..<(rows * columns)).map { i -> Int32 in
            let byte = raw[base + i]
            return (signed ? Int32(Int8(bitPattern: byte)) : Int32(byte)) - z
        }
        let columnScales = perColumn ? Array(scales[(d * columns)..<((d + 1) * columns)]) : [Float](repeating: scales[d], count: columns)
        return QuantizedWeights(rows: rows, columns: columns, values: values, scales: columnScales)
    }

    /// `a` (`m` rows of `w.rows` floats) times `w`, through uint8 dynamic quantization of `a` as a whole.
    static func product(_ a: [Float], rows m: Int, _ w: QuantizedWeights) -> [Float] {
        var lo: Float = 0, hi: Float = 0
        for v in a { lo = min(lo, v); hi = max(hi, v) }
        let scale: Float = hi == lo ? 1 : (hi - lo) / 255
        let zero = Int32((max(0, min(255, 0 - lo / scale))).rounded(.toNearestOrEven))
        let qa = a.map { v -> Int32 in Int32(max(0, min(255, (v / scale).rounded(.toNearestOrEven) + Float(zero)))) - zero }
        let multipliers = w.scales.map { scale * $0 }
        var out = [Float](repeating: 0, count: m * w.columns)
        var sums = [Int64](repeating: 0, count: w.columns)
        for r in 0..<m {
            for j in 0..<w.columns { sums[j] = 0 }
            for k in 0..<w.rows {
                let x = Int64(qa[r * w.rows + k])
                if x == 0 { continue }
                let row = k * w.columns
                for j in 0..<w.columns { sums[j] += x * Int64(w.values[row + j]) }
            }
            for j in 0..<w.columns { out[r * w.columns + j] = Float(sums[j]) * multipliers[j] }
        }
        return out
    }

    static func dynamicQuantizeLSTM(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let xT = try ctx.tensor(0), wT = try ctx.tensor(1), rT = try ctx.tensor(2)
        guard xT.rank == 3, wT.rank == 3, rT.rank == 3 else { throw ctx.fail("X, W and R must have rank 3") }
        guard try ctx.int("layout", 0) == 0 else { throw ctx.unsupported("layout 1") }
        let direction = try ctx.string("direction", "forward")
        guard ["forward", "reverse", "bidirectional"].contains(direction) else { throw ctx.fail("unknown direction '\(direction)'") }
        let dirs = direction == "bidirectional" ? 2 : 1
        let seq = xT.shape[0], batch = xT.shape[1], inputSize = xT.shape[2]
        let hidden = try ctx.int("hidden_size") ?? rT.shape[1]
        let gh = 4 * hidden
        guard wT.shape == [dirs, inputSize, gh], rT.shape == [dirs, hidden, gh] else {
            throw ctx.fail("W \(wT.shape) or R \(rT.shape) do not match X \(xT.shape), hidden_size \(hidden) and \(dirs) direction(s)")
        }
        try ctx.checkedCount([seq, dirs, batch, hidden], "Y")
        let bias = try ctx.optionalTensor(3)?.asDoubles() ?? [Double](repeating: 0, count: dirs * 2 * gh)
        guard bias.count == dirs * 2 * gh else { throw ctx.fail("B has the wrong size") }
        if let lens = try ctx.optionalTensor(4)?.asInts() {
            guard lens.count == batch else { throw ctx.fail("sequence_lens must have \(batch) entries") }
            guard lens.allSatisfy({ $0 == seq }) else { throw ctx.unsupported("sequence_lens shorter than the sequence") }
        }
        let state = dirs * batch * hidden
        let initialH = try ctx.optionalTensor(5)?.asDoubles() ?? [Double](repeating: 0, count: state)
        let initialC = try ctx.optionalTensor(6)?.asDoubles() ?? [Double](repeating: 0, count: state)
        let peepholes = try ctx.optionalTensor(7)?.asDoubles() ?? [Double](repeating: 0, count: dirs * 3 * hidden)
        guard initialH.count == state, initialC.count == state, peepholes.count == dirs * 3 * hidden else {
            throw ctx.fail("initial_h, initial_c or P has the wrong size")
        }
        let wScale = try ctx.tensor(8), wZero = try ctx.optionalTensor(9)
        let rScale = try ctx.tensor(10), rZero = try ctx.optionalTensor(11)
        let clip = try ctx.float("clip").map(Double.init)
        let inputForget = try ctx.int("input_forget", 0) != 0
        var alphas = try ctx.floats("activation_alpha") ?? []
        var betas = try ctx.floats("activation_beta") ?? []
        let names = try ctx.strings("activations") ?? (0..<dirs).flatMap { _ in ["Sigmoid", "Tanh", "Tanh"] }
        guard names.count == 3 * dirs else { throw ctx.fail("expected \(3 * dirs) activations") }
        let activations = try names.map { try RecurrentOps.Activation($0, alphas: &alphas, betas: &betas) }
        func clipped(_ v: Double) -> Double { clip.map { min(max(v, -$0), $0) } ?? v }

        let x = xT.asDoubles().map { Float($0) }
        var y = [Double](repeating: 0, count: seq * dirs * batch * hidden)
        var yH = [Double](repeating: 0, count: state), yC = yH
        for d in 0..<dirs {
            let reverse = direction == "reverse" || d == 1
            let f = activations[3 * d].apply, g = activations[3 * d + 1].apply, h3 = activations[3 * d + 2].apply
            let w = try weights(ctx, wT, wScale, wZero, direction: d, dirs: dirs, "W")
            let r = try weights(ctx, rT, rScale, rZero, direction: d, dirs: dirs, "R")
            // X's range is the whole sequence's: one product for every step at once.
            let gx = product(x, rows: seq * batch, w)
            var h = Array(initialH[(d * batch * hidden)..<((d + 1) * batch * hidden)])
            var c = Array(initialC[(d * batch * hidden)..<((d + 1) * batch * hidden)])
            let p = d * 3 * hidden, wb = d * 2 * gh, rb = wb + gh
            for step in 0..<seq {
                let t = reverse ? seq - 1 - step : step
                // The hidden state's range is all batch rows' at this step.
                let gr = product(h.map { Float($0) }, rows: batch, r)
                for b in 0..<batch {
                    let gates = (t * batch + b) * gh, rg = b * gh, s = b * hidden
                    for j in 0..<hidden {
                        func pre(_ k: Int) -> Double {
                            Double(gx[gates + k * hidden + j]) + Double(gr[rg + k * hidden + j]) + bias[wb + k * hidden + j] + bias[rb + k * hidden + j]
                        }
                        let cPrev = c[s + j]
                        let i = f(clipped(pre(0) + peepholes[p + j] * cPrev))
                        var fg = f(clipped(pre(2) + peepholes[p + 2 * hidden + j] * cPrev))
                        if inputForget { fg = 1 - i }
                        let cNew = fg * cPrev + i * g(clipped(pre(3)))
                        let o = f(clipped(pre(1) + peepholes[p + hidden + j] * cNew))
                        c[s + j] = cNew
                        h[s + j] = o * h3(cNew)
                        y[((t * dirs + d) * batch + b) * hidden + j] = h[s + j]
                    }
                }
            }
            for k in 0..<(batch * hidden) {
                yH[d * batch * hidden + k] = h[k]
                yC[d * batch * hidden + k] = c[k]
            }
        }
        let dtype = xT.dtype
        return [
            ctx.wants(0) ? .tensor(Tensor(dtype: dtype, shape: [seq, dirs, batch, hidden], doubles: y)) : nil,
            ctx.wants(1) ? .tensor(Tensor(dtype: dtype, shape: [dirs, batch, hidden], doubles: yH)) : nil,
            ctx.wants(2) ? .tensor(Tensor(dtype: dtype, shape: [dirs, batch, hidden], doubles: yC)) : nil,
        ]
    }
}
