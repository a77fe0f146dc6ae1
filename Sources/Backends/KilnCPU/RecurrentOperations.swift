import CKilnKernels
import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// ONNX LSTM, GRU and RNN (forward, reverse, bidirectional; layouts 0 and 1; sequence_lens, initial states,
/// peepholes, clip, input_forget, linear_before_reset). The input projection X·Wᵀ (+ biases) of every time
/// step is one matrix product with W packed once; each step then computes H·Rᵀ (R packed) and one fused
/// kernel call (`kiln_rnn_cell`) applies the activations and updates the state. With two directions and
/// more than one thread, the directions run concurrently; one large direction splits every step's hidden
/// units across the threads. `com.microsoft.DynamicQuantizeLSTM` runs here too, as an LSTM whose products are
/// integer GEMMs (`QuantizedLSTMWeights`).
final class RecurrentOperation: Operation {
    /// `LSTM`, `GRU` or `RNN`.
    let kind: String
    /// The node's name.
    let label: String
    /// Which cell the node computes.
    let cell: RecurrentCell
    /// X, W, R, B, sequence_lens, initial_h, initial_c, P (-1 when omitted).
    let inputs: [Int]
    /// Y, Y_h, Y_c (-1 when not wanted).
    let outputs: [Int]
    /// 1, or 2 for `bidirectional`.
    let directions: Int
    /// `direction` is "reverse" (a single reversed direction).
    let reverseOnly: Bool
    /// The `hidden_size` attribute, when given.
    let hiddenSize: Int?
    /// 0: X is [seq, batch, input]; 1 (batchwise): [batch, seq, input], and Y, Y_h, Y_c batch-first too.
    let layout: Int
    /// The cell description of each direction (activations may differ between directions).
    let params: [kiln_cell_params]
    /// W of every direction packed as one [input × directions·gates·hidden] matrix, when W is constant.
    let packedW: FloatBuffer?
    /// R of each direction packed as [hidden × gates·hidden], back to back, when R is constant.
    let packedR: FloatBuffer?
    /// DynamicQuantizeLSTM's int8 weights (W and R are then [dirs, k, 4·hidden]), or nil for float weights.
    let quantized: QuantizedLSTMWeights?

    /// The ONNX activation names kiln.cpu's cells can apply (matched case-insensitively), for messages.
    static let supportedActivations = "Sigmoid, Tanh, Relu, HardSigmoid, LeakyRelu"

    /// The kernel activations (code, alpha, beta) of `node`'s `activations` attribute, every direction's in
    /// order; alpha/beta are consumed in order by the functions that take them, as ONNX Runtime does.
    /// An activation kiln.cpu has no kernel for is an `.unsupported` error naming the node and the activation.
    static func activations(of node: Node, cell: RecurrentCell, directions: Int) throws -> [(kiln_activation, Float, Float)] {
        let perDirection = cell.defaultActivations.count
        var names = (0..<directions).flatMap { _ in cell.defaultActivations }
        if case .strings(let given)? = node.attributes["activations"] { names = given }
        guard names.count == perDirection * directions else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (\(node.op.name)): expected \(perDirection * directions) activations, got \(names.count)")
        }
        var alphas: [Float] = [], betas: [Float] = []
        if case .floats(let v)? = node.attributes["activation_alpha"] { alphas = v }
        if case .floats(let v)? = node.attributes["activation_beta"] { betas = v }
        func take(_ list: inout [Float], _ defaultValue: Float) -> Float { list.isEmpty ? defaultValue : list.removeFirst() }
        return try names.map { name in
            switch name.lowercased() {
            case "sigmoid": return (KILN_ACT_SIGMOID, 0, 0)
            case "tanh": return (KILN_ACT_TANH, 0, 0)
            case "relu": return (KILN_ACT_RELU, 0, 0)
            case "hardsigmoid":
                let a = take(&alphas, 0.2), b = take(&betas, 0.5)
                return (KILN_ACT_HARDSIGMOID, a, b)
            case "leakyrelu": return (KILN_ACT_LEAKY_RELU, take(&alphas, 0.01), 0)
            default:
                throw KilnError(.unsupported, "node '\(node.displayName)' (\(node.op.name)): activation '\(name)' has no kiln.cpu kernel (supported: \(supportedActivations))")
            }
        }
    }

    /// Why kiln.cpu cannot run recurrent node `node`, or nil (checked before lowering).
    static func rejection(_ node: Node) -> String? {
        guard let cell = node.op == QuantizedLSTMWeights.op ? .lstm : RecurrentCell(opName: node.op.name) else {
            return "\(node.op.name) is not a recurrent cell"
        }
        let direction = (try? node.string("direction", "forward")) ?? "forward"
        do {
            _ = try activations(of: node, cell: cell, directions: direction == "bidirectional" ? 2 : 1)
        } catch let error as KilnError where error.code == .unsupported {
            return error.message
        } catch {
            return nil // malformed attributes are reported when lowering
        }
        return nil
    }

    /// The operation for `node` (an LSTM, GRU or RNN node); `constants` holds the constant inputs by position.
    init(node: Node, inputs: [Int], outputs: [Int], constants: [Tensor?]) throws {
        kind = node.op.name
        label = node.displayName
        let isQuantized = node.op == QuantizedLSTMWeights.op
        guard let cell = isQuantized ? .lstm : RecurrentCell(opName: node.op.name) else {
            throw KilnError(.internal, "kiln.cpu: node '\(node.displayName)' (\(node.op.name)) is not a recurrent cell")
        }
        self.cell = cell
        self.inputs = (0..<8).map { $0 < inputs.count ? inputs[$0] : -1 }
        self.outputs = (0..<3).map { $0 < outputs.count ? outputs[$0] : -1 }
        let direction = try node.string("direction", "forward")
        guard ["forward", "reverse", "bidirectional"].contains(direction) else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (\(kind)): unknown direction '\(direction)'")
        }
        directions = direction == "bidirectional" ? 2 : 1
        reverseOnly = direction == "reverse"
        hiddenSize = node.attributes["hidden_size"] == nil ? nil : try node.int("hidden_size", 0)
        layout = try node.int("layout", 0)
        guard layout == 0 || layout == 1 else { throw KilnError(.invalidModel, "node '\(node.displayName)' (\(kind)): layout must be 0 or 1") }
        let clip: Float = node.attributes["clip"] == nil ? 0 : try node.float("clip", 0)
        guard node.attributes["clip"] == nil || clip > 0 else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (\(kind)): clip must be positive, is \(clip)")
        }
        let inputForget: Int32 = try node.int("input_forget", 0) != 0 ? 1 : 0
        let linearBeforeReset: Int32 = try node.int("linear_before_reset", 0) != 0 ? 1 : 0
        let acts = try Self.activations(of: node, cell: cell, directions: directions)
        let per = cell.defaultActivations.count
        let cellCode = cell.code
        params = (0..<directions).map { d in
            let f = acts[d * per], g = per > 1 ? acts[d * per + 1] : f, h = per > 2 ? acts[d * per + 2] : f
            return kiln_cell_params(kind: cellCode, hidden: 0, f: f.0, g: g.0, h: h.0, f_alpha: f.1, f_beta: f.2,
                                    g_alpha: g.1, g_beta: g.2, h_alpha: h.1, h_beta: h.2, clip: clip,
                                    input_forget: inputForget, linear_before_reset: linearBeforeReset)
        }
        // Constant weights are packed once.
        let w = constants.count > 1 ? constants[1] : nil, r = constants.count > 2 ? constants[2] : nil
        if let w, w.dtype == .float32, w.rank == 3, w.shape[0] == directions {
            let (k, n) = (w.shape[2], w.shape[0] * w.shape[1])
            let buffer = FloatBuffer(count: kiln_sgemm_pack_b_size(k, n))
            w.withFloats { kiln_sgemm_pack_b(1, k, n, $0, k, buffer.pointer) }
            packedW = k > 0 && n > 0 ? buffer : nil
        } else {
            packedW = nil
        }
        if let r, r.dtype == .float32, r.rank == 3, r.shape[0] == directions, r.shape[1] > 0, r.shape[2] > 0 {
            let (k, n) = (r.shape[2], r.shape[1])
            let size = kiln_sgemm_pack_b_size(k, n)
            let dirs = directions
            let buffer = FloatBuffer(count: size * dirs)
            r.withFloats { values in
                for d in 0..<dirs { kiln_sgemm_pack_b(1, k, n, values + d * n * k, k, buffer.pointer + d * size) }
            }
            packedR = buffer
        } else {
            packedR = nil
        }
        quantized = isQuantized ? try QuantizedLSTMWeights(node: node, constants: constants, directions: directions) : nil
    }

    /// Checks the shapes, defines Y, Y_h and Y_c, and adds the one step that runs the whole sequence.
    func plan(_ b: PlanBuilder) throws {
        let (x, w, r, bias, lensID, initialH, initialC, peephole) =
            (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], inputs[6], cell == .lstm ? inputs[7] : -1)
        for v in [x, bias, initialH, initialC, peephole] + (quantized == nil ? [w, r] : []) where v >= 0 { try b.requireFloat(v) }
        let xs = try b.shape(x), ws = try b.shape(w), rs = try b.shape(r)
        guard xs.count == 3, ws.count == 3, rs.count == 3 else { throw b.invalid("X, W and R must have rank 3, got \(xs), \(ws), \(rs)") }
        let seq = layout == 0 ? xs[0] : xs[1], batch = layout == 0 ? xs[1] : xs[0], inputSize = xs[2]
        let hidden = hiddenSize ?? (quantized == nil ? rs[2] : rs[1])
        let dirs = directions, gh = try ElementCount.product(cell.gates, hidden, what: "\(cell) gates × hidden_size", code: .invalidModel)
        // DynamicQuantizeLSTM's W and R are the LSTM's transposed.
        let (wantW, wantR) = quantized == nil ? ([dirs, gh, inputSize], [dirs, gh, hidden]) : ([dirs, inputSize, gh], [dirs, hidden, gh])
        guard ws == wantW, rs == wantR else {
            throw b.invalid("W \(ws) or R \(rs) do not match X \(xs), hidden_size \(hidden) and \(dirs) direction(s)")
        }
        if bias >= 0, try b.shape(bias).reduce(1, *) != dirs * 2 * gh { throw b.invalid("B must have \(dirs * 2 * gh) elements") }
        let stateShape = layout == 0 ? [dirs, batch, hidden] : [batch, dirs, hidden]
        for v in [initialH, initialC] where v >= 0 {
            guard try b.shape(v) == stateShape else { throw b.invalid("initial state '\(b.name(v))' must have shape \(stateShape)") }
        }
        if peephole >= 0, try b.shape(peephole).reduce(1, *) != dirs * 3 * hidden { throw b.invalid("P must have \(dirs * 3 * hidden) elements") }
        var lensType = DType.int32
        if lensID >= 0 {
            lensType = try b.dtype(lensID)
            guard lensType == .int32 || lensType == .int64 else { throw b.unsupported("sequence_lens is \(lensType); int32 or int64 expected") }
            guard try b.shape(lensID).reduce(1, *) == batch else { throw b.invalid("sequence_lens must have \(batch) elements") }
        }
        let (yID, yhID, ycID) = (outputs[0], outputs[1], cell == .lstm ? outputs[2] : -1)
        try b.define(yID, shape: layout == 0 ? [seq, dirs, batch, hidden] : [batch, seq, dirs, hidden])
        try b.define(yhID, shape: stateShape)
        try b.define(ycID, shape: stateShape)
        if batch == 0 || hidden == 0 { return }

        let n = dirs * gh
        let gxScratch = try b.scratch(bytes: max(seq * batch * n, 1) * 4)
        // h, c (LSTM), and a second h for steps split across threads.
        let stateScratch = try b.scratch(bytes: dirs * batch * hidden * 4 * (cell == .lstm ? 3 : 2))
        let ghScratch = try b.scratch(bytes: dirs * batch * gh * 4)
        let rhScratch = cell == .gru ? try b.scratch(bytes: dirs * batch * hidden * 4) : -1
        let biasScratch = try b.scratch(bytes: (n + dirs * hidden) * 4)
        let packRSize = kiln_sgemm_pack_b_size(hidden, gh)
        let wScratch = packedW == nil && quantized == nil ? try b.scratch(bytes: kiln_sgemm_pack_b_size(inputSize, n) * 4) : -1
        let rScratch = packedR == nil && quantized == nil ? try b.scratch(bytes: packRSize * dirs * 4) : -1
        // DynamicQuantizeLSTM: X quantized and its int32 products (one direction at a time); each direction's
        // quantized hidden state and int32 recurrent products.
        let qxScratch = quantized == nil ? -1 : try b.scratch(bytes: max(seq * batch * inputSize, 1))
        let qAccScratch = quantized == nil ? -1 : try b.scratch(bytes: max(seq * batch * gh, 1) * 4)
        let qhScratch = quantized == nil ? -1 : try b.scratch(bytes: dirs * batch * hidden)
        let qStepScratch = quantized == nil ? -1 : try b.scratch(bytes: dirs * batch * gh * 4)

        // Units of the input projection (seq·batch rows × n columns).
        let threads = b.threads
        let rows = seq * batch
        var projection: [(rows: Range<Int>, cols: Range<Int>)] = []
        if threads == 1 || rows * n < 32_768 {
            projection = [(0..<rows, 0..<n)]
        } else if rows < 4 * threads {
            projection = splitRange(n, parts: threads, granule: Int(KILN_SGEMM_NR)).map { (0..<rows, $0) }
        } else {
            projection = splitRange(rows, parts: threads, granule: Int(KILN_SGEMM_MR)).map { ($0, 0..<n) }
        }
        let geometry = RecurrentGeometry(seq: seq, batch: batch, inputSize: inputSize, hidden: hidden, directions: dirs,
                                         gates: cell.gates, layout: layout, reverseOnly: reverseOnly, packRSize: packRSize)
        let (params, packedW, packedR, cell, quantized) = (self.params, self.packedW, self.packedR, self.cell, self.quantized)
        // The quantized input projection per direction: rows, or columns (whole KILN_QGEMM_NR panels), split across threads.
        let qProjection: [(rows: Range<Int>, cols: Range<Int>)] = threads == 1 || rows * gh < 32_768 ? [(0..<rows, 0..<gh)]
            : rows >= 4 * threads ? splitRange(rows, parts: threads, granule: Int(KILN_QGEMM_MR)).map { ($0, 0..<gh) }
            : splitRange(gh, parts: threads, granule: Int(KILN_QGEMM_NR)).map { (0..<rows, $0) }
        let linearBeforeReset = params[0].linear_before_reset != 0
        let parallelDirections = dirs == 2 && threads > 1
        // One direction of a large enough cell splits every step's hidden units across the threads.
        let hiddenParts = !parallelDirections && quantized == nil && threads > 1 && batch * gh * hidden >= 131_072
            ? splitRange(hidden, parts: threads, granule: Int(KILN_SGEMM_NR)) : [0..<hidden]

        b.step { frame in
            let xp = frame.f(x)
            // Packed float weights (packed now when they are not constants); DynamicQuantizeLSTM's are packed already.
            var wPacked: UnsafePointer<Float>?, rPacked: UnsafePointer<Float>?
            if let packedW {
                wPacked = UnsafePointer(packedW.pointer)
            } else if wScratch >= 0 {
                let p = frame.scratch(wScratch).assumingMemoryBound(to: Float.self)
                if inputSize > 0 { kiln_sgemm_pack_b(1, inputSize, n, frame.f(w), inputSize, p) }
                wPacked = UnsafePointer(p)
            }
            if let packedR {
                rPacked = UnsafePointer(packedR.pointer)
            } else if rScratch >= 0 {
                let p = frame.scratch(rScratch).assumingMemoryBound(to: Float.self)
                let rp = frame.f(r)
                for d in 0..<dirs { kiln_sgemm_pack_b(1, hidden, gh, rp + d * gh * hidden, hidden, p + d * packRSize) }
                rPacked = UnsafePointer(p)
            }
            // Biases: Wb + Rb for every gate, except the recurrent bias of a GRU's h-gate under
            // linear_before_reset, which the cell adds inside the reset product (rbh).
            let biasAll = frame.scratch(biasScratch).assumingMemoryBound(to: Float.self)
            let rbh = biasAll + n
            if let bp = frame.optionalF(bias) {
                for d in 0..<dirs {
                    let wb = bp + d * 2 * gh, rb = wb + gh
                    for col in 0..<gh {
                        let inside = cell == .gru && linearBeforeReset && col >= 2 * hidden
                        biasAll[d * gh + col] = wb[col] + (inside ? 0 : rb[col])
                    }
                    if cell == .gru { for j in 0..<hidden { rbh[d * hidden + j] = rb[2 * hidden + j] } }
                }
            } else {
                biasAll.update(repeating: 0, count: n + dirs * hidden)
            }
            // The input projection of every time step and direction at once.
            let gx = frame.scratch(gxScratch).assumingMemoryBound(to: Float.self)
            if inputSize == 0 {
                for row in 0..<rows { (gx + row * n).update(from: biasAll, count: n) }
            } else if let quantized {
                // X of every step quantized on its whole range, one integer product per direction, scaled.
                let qx = frame.scratch(qxScratch).assumingMemoryBound(to: UInt8.self)
                let acc = frame.scratch(qAccScratch).assumingMemoryBound(to: Int32.self)
                let (scale, zero) = QuantizedLSTMWeights.quantize(xp, count: rows * inputSize, into: qx)
                for d in 0..<dirs {
                    let weights = quantized.w[d]
                    frame.pool.parallelFor(qProjection.count) { u in
                        let unit = qProjection[u]
                        QuantizedLSTMWeights.product(qx, rows: rows, k: inputSize, aZero: zero, weights, n: gh, into: acc,
                                                     unit.rows.lowerBound, unit.rows.upperBound, unit.cols.lowerBound, unit.cols.upperBound)
                    }
                    weights.scales.withUnsafeBufferPointer { scales in
                        let bias = biasAll + d * gh
                        for row in 0..<rows {
                            let out = gx + row * n + d * gh, sums = acc + row * gh
                            for j in 0..<gh { out[j] = Float(sums[j]) * (scale * scales[j]) + bias[j] }
                        }
                    }
                }
            } else if let wPacked {
                frame.pool.parallelFor(projection.count) { u in
                    let unit = projection[u]
                    var e = makeEpilogue(bias: UnsafePointer(biasAll), residual: nil, ldr: 0, activation: .none)
                    kiln_sgemm_packed(unit.rows.count, n, inputSize, xp + unit.rows.lowerBound * inputSize, inputSize, wPacked,
                                      gx + unit.rows.lowerBound * n, n, unit.cols.lowerBound, unit.cols.upperBound, &e)
                }
            }
            // Sequence lengths, clamped to [0, seq].
            var lens = [Int](repeating: seq, count: batch)
            if lensID >= 0 {
                let raw = frame.raw(lensID)
                for i in 0..<batch {
                    let v = lensType == .int64 ? Int(raw.load(fromByteOffset: i * 8, as: Int64.self))
                        : Int(raw.load(fromByteOffset: i * 4, as: Int32.self))
                    lens[i] = min(max(v, 0), seq)
                }
            }
            // Initial states, in direction-major [dirs][batch][hidden] order.
            let state = frame.scratch(stateScratch).assumingMemoryBound(to: Float.self)
            let cState = state + dirs * batch * hidden
            geometry.loadState(state, from: frame.optionalF(initialH))
            if cell == .lstm { geometry.loadState(cState, from: frame.optionalF(initialC)) }
            let y = frame.optionalF(yID)
            if let y, lens.contains(where: { $0 < seq }) { y.update(repeating: 0, count: seq * dirs * batch * hidden) }
            let ghp = frame.scratch(ghScratch).assumingMemoryBound(to: Float.self)
            let rhp = rhScratch >= 0 ? frame.scratch(rhScratch).assumingMemoryBound(to: Float.self) : nil
            let peep = frame.optionalF(peephole)
            let recurrent: RecurrentProduct
            if let quantized {
                recurrent = .quantized(quantized, qh: frame.scratch(qhScratch).assumingMemoryBound(to: UInt8.self),
                                       acc: frame.scratch(qStepScratch).assumingMemoryBound(to: Int32.self))
            } else {
                recurrent = .float(rPacked!)
            }
            let buffers = RecurrentBuffers(gx: gx, state: state, cState: cState, hAlternate: cState + (cell == .lstm ? dirs * batch * hidden : 0),
                                           gh: ghp, rh: rhp, recurrent: recurrent,
                                           rbh: rbh, peephole: peep.map { UnsafePointer($0) }, y: y)
            if parallelDirections {
                frame.pool.parallelFor(dirs) { d in geometry.run(direction: d, params: params[d], lens: lens, buffers, pool: nil, parts: [0..<hidden]) }
            } else {
                for d in 0..<dirs { geometry.run(direction: d, params: params[d], lens: lens, buffers, pool: frame.pool, parts: hiddenParts) }
            }
            if let yh = frame.optionalF(yhID) { geometry.storeState(state, to: yh) }
            if let yc = frame.optionalF(ycID) { geometry.storeState(cState, to: yc) }
        }
    }
}

/// The memory a recurrent step reads and writes (all inside the plan's arena or its constants).
private struct RecurrentBuffers {
    /// Input projections: row (time, batch entry) of `directions·gates·hidden` floats.
    let gx: UnsafeMutablePointer<Float>
    /// Hidden state [dirs][batch][hidden], and the LSTM cell state after it.
    let state: UnsafeMutablePointer<Float>
    let cState: UnsafeMutablePointer<Float>
    /// The next hidden state [dirs][batch][hidden] while a step is split across threads.
    let hAlternate: UnsafeMutablePointer<Float>
    /// Recurrent products [dirs][batch][gates·hidden].
    let gh: UnsafeMutablePointer<Float>
    /// GRU r ⊙ h [dirs][batch][hidden].
    let rh: UnsafeMutablePointer<Float>?
    /// How each step multiplies the hidden state by R.
    let recurrent: RecurrentProduct
    /// Rbh per direction (GRU with linear_before_reset).
    let rbh: UnsafeMutablePointer<Float>
    /// LSTM peepholes [dirs][3·hidden].
    let peephole: UnsafePointer<Float>?
    /// Y, when wanted.
    let y: UnsafeMutablePointer<Float>?
}

/// How a step multiplies the hidden state by R: float R of each direction packed for `kiln_rnn_matmul`, or
/// DynamicQuantizeLSTM's int8 R with each direction's scratch (quantized h [dirs][batch][hidden], int32 sums
/// [dirs][batch][gates·hidden]).
private enum RecurrentProduct {
    case float(UnsafePointer<Float>)
    case quantized(QuantizedLSTMWeights, qh: UnsafeMutablePointer<UInt8>, acc: UnsafeMutablePointer<Int32>)
}

/// Sizes and index arithmetic of one recurrent node, and the per-direction time loop.
private struct RecurrentGeometry {
    let seq: Int, batch: Int, inputSize: Int, hidden: Int, directions: Int, gates: Int, layout: Int
    let reverseOnly: Bool
    /// Floats of one direction's packed R.
    let packRSize: Int

    /// Copies an ONNX state tensor (layout order) into direction-major scratch, or zeroes it.
    func loadState(_ dst: UnsafeMutablePointer<Float>, from src: UnsafeMutablePointer<Float>?) {
        let count = directions * batch * hidden
        guard let src else { dst.update(repeating: 0, count: count); return }
        if layout == 0 { dst.update(from: src, count: count); return }
        for d in 0..<directions {
            for b in 0..<batch { (dst + (d * batch + b) * hidden).update(from: src + (b * directions + d) * hidden, count: hidden) }
        }
    }

    /// Copies direction-major scratch state into an ONNX state output (layout order).
    func storeState(_ src: UnsafeMutablePointer<Float>, to dst: UnsafeMutablePointer<Float>) {
        let count = directions * batch * hidden
        if layout == 0 { dst.update(from: src, count: count); return }
        for d in 0..<directions {
            for b in 0..<batch { (dst + (b * directions + d) * hidden).update(from: src + (d * batch + b) * hidden, count: hidden) }
        }
    }

    /// Row of the input projection for time `t`, batch entry `b`.
    @inline(__always) func xRow(_ t: Int, _ b: Int) -> Int { layout == 0 ? t * batch + b : b * seq + t }

    /// Offset of Y[t, d, b, :] (layout 0) or Y[b, t, d, :] (layout 1).
    @inline(__always) func yOffset(_ t: Int, _ d: Int, _ b: Int) -> Int {
        layout == 0 ? ((t * directions + d) * batch + b) * hidden : ((b * seq + t) * directions + d) * hidden
    }

    /// Runs every time step of direction `d`. With more than one range in `parts` (hidden units), each step's
    /// product and cell update are split across `pool`: every thread reads the whole previous h and writes its
    /// units of the next one into a second buffer, so the halves never race.
    func run(direction d: Int, params: kiln_cell_params, lens: [Int], _ m: RecurrentBuffers, pool: ThreadPool?,
             parts: [Range<Int>]) {
        var p = params
        p.hidden = hidden
        let gh = gates * hidden, n = directions * gh
        let reverse = reverseOnly || d == 1
        let home = m.state + d * batch * hidden
        let c = m.cState + d * batch * hidden
        let g = m.gh + d * batch * gh
        let rh = m.rh.map { $0 + d * batch * hidden }
        let rbh = UnsafePointer(m.rbh + d * hidden)
        let peephole = m.peephole.map { $0 + d * 3 * hidden }
        let gx = m.gx + d * gh
        let ldgx = layout == 0 ? n : seq * n
        let ldy = layout == 0 ? hidden : seq * directions * hidden
        let uniform = lens.allSatisfy { $0 == lens[0] }
        let steps = lens.max() ?? 0
        let gruReset = p.kind == KILN_CELL_GRU && p.linear_before_reset == 0
        let split = parts.count > 1 && pool != nil

        /// columns of gates `gateRange` for hidden units `j` of g = a · Rᵀ (every batch entry).
        func product(_ a: UnsafePointer<Float>, gates gateRange: Range<Int>, _ j: Range<Int>) {
            let r: UnsafePointer<Float>
            switch m.recurrent {
            case .float(let packed):
                r = packed + d * packRSize
            case .quantized(let weights, let qh, let acc):
                // Every gate of every hidden unit at once (a quantized LSTM's steps are never split).
                weights.recurrent(direction: d, h: a, batch: batch, hidden: hidden, qh: qh + d * batch * hidden,
                                  acc: acc + d * batch * gh, g: g)
                return
            }
            if j == 0..<hidden {
                kiln_rnn_matmul(batch, gh, hidden, a, hidden, r, g, gh, gateRange.lowerBound * hidden, gateRange.upperBound * hidden)
            } else {
                for q in gateRange {
                    kiln_rnn_matmul(batch, gh, hidden, a, hidden, r, g, gh, q * hidden + j.lowerBound, q * hidden + j.upperBound)
                }
            }
        }
        /// The batch entries that step `s` updates, each with its time index, as (first entry, count, time) runs.
        func forEachRun(_ s: Int, _ body: (Int, Int, Int) -> Void) {
            if uniform {
                body(0, batch, reverse ? lens[0] - 1 - s : s)
            } else {
                for b in 0..<batch where lens[b] > s { body(b, 1, reverse ? lens[b] - 1 - s : s) }
            }
        }
        var current = home, next = m.hAlternate + d * batch * hidden
        for s in 0..<steps {
            let source = current, target = split ? next : current
            /// The product (and a GRU's reset gate) of hidden units `j`.
            func first(_ j: Range<Int>) {
                product(source, gates: 0..<(gruReset ? 2 : gates), j)
                if gruReset, let rh {
                    forEachRun(s) { b0, count, t in
                        kiln_gru_reset_gate(&p, count, j.lowerBound, j.upperBound, gx + xRow(t, b0) * n, ldgx, g + b0 * gh, gh,
                                            source + b0 * hidden, hidden, rh + b0 * hidden, hidden)
                    }
                }
            }
            /// The GRU h-gate product, then the cell update of hidden units `j` into `target`.
            func second(_ j: Range<Int>) {
                if gruReset, let rh { product(rh, gates: 2..<3, j) }
                if split {
                    for b in 0..<batch { (target + b * hidden + j.lowerBound).update(from: source + b * hidden + j.lowerBound, count: j.count) }
                }
                forEachRun(s) { b0, count, t in
                    kiln_rnn_cell(&p, count, j.lowerBound, j.upperBound, gx + xRow(t, b0) * n, ldgx, g + b0 * gh, gh, peephole, rbh,
                                  target + b0 * hidden, hidden, c + b0 * hidden, hidden, m.y.map { $0 + yOffset(t, d, b0) }, ldy)
                }
            }
            if split, let pool {
                if gruReset {
                    pool.parallelFor(parts.count) { first(parts[$0]) }
                    pool.parallelFor(parts.count) { second(parts[$0]) }
                } else {
                    pool.parallelFor(parts.count) { u in
                        first(parts[u])
                        second(parts[u])
                    }
                }
                swap(&current, &next)
            } else {
                first(0..<hidden)
                second(0..<hidden)
            }
        }
        if current != home { home.update(from: current, count: batch * hidden) }
    }
}

extension RecurrentCell {
    /// The C kernels' name for the cell.
    var code: kiln_cell_kind {
        switch self {
        case .rnn: KILN_CELL_RNN
        case .gru: KILN_CELL_GRU
        case .lstm: KILN_CELL_LSTM
        }
    }
}
