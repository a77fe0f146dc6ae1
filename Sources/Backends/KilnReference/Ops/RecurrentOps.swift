import KilnIR
#if canImport(Glibc)
import Glibc
#endif

/// Recurrent layers: LSTM, GRU and RNN (forward, reverse and bidirectional; both layouts).
/// Computed in `Double`, results rounded to the input's element type.
enum RecurrentOps {
    static func register(into table: inout KernelTable) {
        table.add("RNN") { ctx in try run(ctx, kind: .rnn) }
        table.add("GRU") { ctx in try run(ctx, kind: .gru) }
        table.add("LSTM") { ctx in try run(ctx, kind: .lstm) }
    }

    /// A scalar activation function of the recurrent ops (`activations` attribute).
    struct Activation {
        let apply: (Double) -> Double

        /// The activation called `name` with parameters taken from `alphas`/`betas` (consumed in order by the
        /// functions that have parameters; ONNX's defaults otherwise).
        init(_ name: String, alphas: inout [Float], betas: inout [Float]) throws {
            func take(_ list: inout [Float], _ defaultValue: Double) -> Double {
                list.isEmpty ? defaultValue : Double(list.removeFirst())
            }
            switch name.lowercased() {
            case "sigmoid": apply = { 1 / (1 + exp(-$0)) }
            case "tanh": apply = { tanh($0) }
            case "relu": apply = { max($0, 0) }
            case "softsign": apply = { $0 / (1 + abs($0)) }
            case "softplus": apply = { log1p(exp($0)) }
            case "affine":
                let a = take(&alphas, 1), b = take(&betas, 0)
                apply = { a * $0 + b }
            case "leakyrelu":
                let a = take(&alphas, 0.01)
                apply = { $0 >= 0 ? $0 : a * $0 }
            case "thresholdedrelu":
                let a = take(&alphas, 1)
                apply = { $0 > a ? $0 : 0 }
            case "scaledtanh":
                let a = take(&alphas, 1), b = take(&betas, 1)
                apply = { a * tanh(b * $0) }
            case "hardsigmoid":
                let a = take(&alphas, 0.2), b = take(&betas, 0.5)
                apply = { max(0, min(1, a * $0 + b)) }
            case "elu":
                let a = take(&alphas, 1)
                apply = { $0 >= 0 ? $0 : a * (exp($0) - 1) }
            default:
                throw KilnError(.unsupported, "recurrent activation '\(name)' is not supported by kiln.reference")
            }
        }
    }

    /// `rows` × `cols` matrix block starting at row `row0` of row-major `m` (offset `base`), times `v`, plus `into`.
    @inline(__always)
    static func matvec(_ m: [Double], base: Int, row0: Int, rows: Int, cols: Int, _ v: [Double], into out: inout [Double], outOffset: Int) {
        for r in 0..<rows {
            var s = 0.0
            let start = base + (row0 + r) * cols
            for c in 0..<cols { s += m[start + c] * v[c] }
            out[outOffset + r] += s
        }
    }

    /// Runs an RNN, GRU or LSTM node.
    static func run(_ ctx: KernelContext, kind: RecurrentCell) throws -> [RuntimeValue?] {
        let xT = try ctx.tensor(0), wT = try ctx.tensor(1), rT = try ctx.tensor(2)
        guard xT.rank == 3, wT.rank == 3, rT.rank == 3 else { throw ctx.fail("X, W and R must have rank 3") }
        let layout = try ctx.int("layout", 0)
        let direction = try ctx.string("direction", "forward")
        let numDirections = direction == "bidirectional" ? 2 : 1
        guard ["forward", "reverse", "bidirectional"].contains(direction) else { throw ctx.fail("unknown direction '\(direction)'") }
        let gates = kind.gates
        let hidden = try ctx.int("hidden_size") ?? wT.shape[1] / gates
        guard hidden >= 0, hidden <= wT.shape[1] else { throw ctx.fail("hidden_size \(hidden) does not match W \(wT.shape)") }
        guard layout == 0 || layout == 1 else { throw ctx.fail("layout must be 0 or 1, is \(layout)") }
        let seq = layout == 0 ? xT.shape[0] : xT.shape[1]
        let batch = layout == 0 ? xT.shape[1] : xT.shape[0]
        let inputSize = xT.shape[2]
        guard wT.shape == [numDirections, gates * hidden, inputSize], rT.shape == [numDirections, gates * hidden, hidden] else {
            throw ctx.fail("W \(wT.shape) or R \(rT.shape) do not match X \(xT.shape), hidden_size \(hidden) and \(numDirections) direction(s)")
        }
        try ctx.checkedCount([seq, numDirections, batch, hidden], "Y")
        let x = xT.asDoubles(), w = wT.asDoubles(), r = rT.asDoubles()
        let bias = try ctx.optionalTensor(3)?.asDoubles() ?? [Double](repeating: 0, count: numDirections * 2 * gates * hidden)
        guard bias.count == numDirections * 2 * gates * hidden else { throw ctx.fail("B has the wrong size") }
        let lens = try ctx.optionalTensor(4)?.asInts() ?? [Int](repeating: seq, count: batch)
        guard lens.count == batch else { throw ctx.fail("sequence_lens must have \(batch) entries") }
        let state = numDirections * batch * hidden
        let initialH = try ctx.optionalTensor(5)?.asDoubles() ?? [Double](repeating: 0, count: state)
        let initialC = kind == .lstm ? (try ctx.optionalTensor(6)?.asDoubles() ?? [Double](repeating: 0, count: state)) : []
        let peepholes = kind == .lstm ? (try ctx.optionalTensor(7)?.asDoubles() ?? [Double](repeating: 0, count: numDirections * 3 * hidden)) : []
        guard initialH.count == state, kind != .lstm || (initialC.count == state && peepholes.count == numDirections * 3 * hidden) else {
            throw ctx.fail("initial_h, initial_c or P has the wrong size")
        }
        let clip = try ctx.float("clip").map(Double.init)
        let inputForget = try ctx.int("input_forget", 0) != 0
        let linearBeforeReset = try ctx.int("linear_before_reset", 0) != 0

        var alphas = try ctx.floats("activation_alpha") ?? []
        var betas = try ctx.floats("activation_beta") ?? []
        let perDirection = kind.defaultActivations.count
        let names = try ctx.strings("activations") ?? (0..<numDirections).flatMap { _ in kind.defaultActivations }
        guard names.count == perDirection * numDirections else { throw ctx.fail("expected \(perDirection * numDirections) activations") }
        var activations: [Activation] = []
        for name in names { activations.append(try Activation(name, alphas: &alphas, betas: &betas)) }

        // Index helpers for the two layouts.
        func stateIndex(_ d: Int, _ b: Int) -> Int { layout == 0 ? (d * batch + b) * hidden : (b * numDirections + d) * hidden }
        func xIndex(_ t: Int, _ b: Int) -> Int { layout == 0 ? (t * batch + b) * inputSize : (b * seq + t) * inputSize }
        func yIndex(_ t: Int, _ d: Int, _ b: Int) -> Int {
            layout == 0 ? ((t * numDirections + d) * batch + b) * hidden : ((b * seq + t) * numDirections + d) * hidden
        }

        var y = [Double](repeating: 0, count: seq * numDirections * batch * hidden)
        var yH = [Double](repeating: 0, count: state)
        var yC = [Double](repeating: 0, count: state)
        let gh = gates * hidden
        for d in 0..<numDirections {
            let reverse = direction == "reverse" || d == 1
            let act = Array(activations[(d * perDirection)..<((d + 1) * perDirection)])
            let f = act[0].apply
            let g = perDirection > 1 ? act[1].apply : f
            let h3 = perDirection > 2 ? act[2].apply : f
            func clipped(_ v: Double) -> Double { clip.map { min(max(v, -$0), $0) } ?? v }
            let wBase = d * gh * inputSize, rBase = d * gh * hidden
            let wb = d * 2 * gh, rb = wb + gh
            for b in 0..<batch {
                let s = stateIndex(d, b)
                var h = Array(initialH[s..<(s + hidden)])
                var c = kind == .lstm ? Array(initialC[s..<(s + hidden)]) : []
                let length = min(max(lens[b], 0), seq)
                for step in 0..<length {
                    let t = reverse ? length - 1 - step : step
                    let xi = xIndex(t, b)
                    let xv = Array(x[xi..<(xi + inputSize)])
                    // Input contribution plus input bias, per gate.
                    var gx = Array(bias[wb..<(wb + gh)])
                    matvec(w, base: wBase, row0: 0, rows: gh, cols: inputSize, xv, into: &gx, outOffset: 0)
                    var hNew = [Double](repeating: 0, count: hidden)
                    switch kind {
                    case .rnn:
                        var gr = Array(bias[rb..<(rb + gh)])
                        matvec(r, base: rBase, row0: 0, rows: gh, cols: hidden, h, into: &gr, outOffset: 0)
                        for j in 0..<hidden { hNew[j] = f(clipped(gx[j] + gr[j])) }
                    case .gru:
                        // Gate order z, r, h.
                        var gr = Array(bias[rb..<(rb + gh)])
                        matvec(r, base: rBase, row0: 0, rows: 2 * hidden, cols: hidden, h, into: &gr, outOffset: 0)
                        var z = [Double](repeating: 0, count: hidden), rg = z
                        for j in 0..<hidden {
                            z[j] = f(clipped(gx[j] + gr[j]))
                            rg[j] = f(clipped(gx[hidden + j] + gr[hidden + j]))
                        }
                        var candidate = [Double](repeating: 0, count: hidden)
                        if linearBeforeReset {
                            matvec(r, base: rBase, row0: 2 * hidden, rows: hidden, cols: hidden, h, into: &gr, outOffset: 2 * hidden)
                            for j in 0..<hidden { candidate[j] = gx[2 * hidden + j] + rg[j] * gr[2 * hidden + j] }
                        } else {
                            let reset = (0..<hidden).map { rg[$0] * h[$0] }
                            matvec(r, base: rBase, row0: 2 * hidden, rows: hidden, cols: hidden, reset, into: &gr, outOffset: 2 * hidden)
                            for j in 0..<hidden { candidate[j] = gx[2 * hidden + j] + gr[2 * hidden + j] }
                        }
                        for j in 0..<hidden {
                            let hc = g(clipped(candidate[j]))
                            hNew[j] = (1 - z[j]) * hc + z[j] * h[j]
                        }
                    case .lstm:
                        // Gate order i, o, f, c; peepholes i, o, f.
                        var gr = Array(bias[rb..<(rb + gh)])
                        matvec(r, base: rBase, row0: 0, rows: gh, cols: hidden, h, into: &gr, outOffset: 0)
                        let p = d * 3 * hidden
                        var cNew = [Double](repeating: 0, count: hidden)
                        for j in 0..<hidden {
                            let i = f(clipped(gx[j] + gr[j] + peepholes[p + j] * c[j]))
                            var fg = f(clipped(gx[2 * hidden + j] + gr[2 * hidden + j] + peepholes[p + 2 * hidden + j] * c[j]))
                            if inputForget { fg = 1 - i }
                            let cc = g(clipped(gx[3 * hidden + j] + gr[3 * hidden + j]))
                            cNew[j] = fg * c[j] + i * cc
                            let o = f(clipped(gx[hidden + j] + gr[hidden + j] + peepholes[p + hidden + j] * cNew[j]))
                            hNew[j] = o * h3(cNew[j])
                        }
                        c = cNew
                    }
                    h = hNew
                    let yi = yIndex(t, d, b)
                    for j in 0..<hidden { y[yi + j] = h[j] }
                }
                for j in 0..<hidden {
                    yH[s + j] = h[j]
                    if kind == .lstm { yC[s + j] = c[j] }
                }
            }
        }
        let dtype = xT.dtype
        let yShape = layout == 0 ? [seq, numDirections, batch, hidden] : [batch, seq, numDirections, hidden]
        let stateShape = layout == 0 ? [numDirections, batch, hidden] : [batch, numDirections, hidden]
        var outputs: [RuntimeValue?] = [
            ctx.wants(0) ? .tensor(Tensor(dtype: dtype, shape: yShape, doubles: y)) : nil,
            ctx.wants(1) ? .tensor(Tensor(dtype: dtype, shape: stateShape, doubles: yH)) : nil,
        ]
        if kind == .lstm { outputs.append(ctx.wants(2) ? .tensor(Tensor(dtype: dtype, shape: stateShape, doubles: yC)) : nil) }
        return outputs
    }
}
