// LSTM, GRU and RNN on kiln.cpu: the recurrent kernels against scalar Swift loops, and whole nodes with random
// shapes and attributes against kiln.reference.
import CKilnKernels
import Foundation
import Kiln
import KilnCPU
import KilnReference
import Testing
import KilnTestSupport

/// One step of a cell in Double, written from the ONNX operator definitions: gate pre-activations `gx`
/// (input part with biases) and `gh` (recurrent part) per batch row; updates h and c.
private func referenceCell(_ p: kiln_cell_params, rows: Int, gx: [Float], gh: [Float], peephole: [Float]?, rbh: [Float]?,
                           h: inout [Float], c: inout [Float]) {
    let hidden = p.hidden
    func act(_ a: kiln_activation, _ alpha: Float, _ beta: Float, _ v: Double) -> Double {
        Double(referenceActivation(a, alpha, beta, Float(v)))
    }
    func clip(_ v: Double) -> Double { p.clip > 0 ? min(max(v, -Double(p.clip)), Double(p.clip)) : v }
    let gates = p.kind == KILN_CELL_LSTM ? 4 : p.kind == KILN_CELL_GRU ? 3 : 1
    for r in 0..<rows {
        let x = gx[(r * gates * hidden)...].map(Double.init), g = gh[(r * gates * hidden)...].map(Double.init)
        for j in 0..<hidden {
            let hOld = Double(h[r * hidden + j])
            let f = { (v: Double) in act(p.f, p.f_alpha, p.f_beta, clip(v)) }
            let gAct = { (v: Double) in act(p.g, p.g_alpha, p.g_beta, clip(v)) }
            switch p.kind {
            case KILN_CELL_LSTM:
                let cOld = Double(c[r * hidden + j])
                let pe = { (k: Int) in Double(peephole?[k * hidden + j] ?? 0) }
                let i = f(x[j] + g[j] + pe(0) * cOld)
                let fg = p.input_forget != 0 ? 1 - i : f(x[2 * hidden + j] + g[2 * hidden + j] + pe(2) * cOld)
                let cNew = fg * cOld + i * gAct(x[3 * hidden + j] + g[3 * hidden + j])
                let o = f(x[hidden + j] + g[hidden + j] + pe(1) * cNew)
                c[r * hidden + j] = Float(cNew)
                h[r * hidden + j] = Float(o * act(p.h, p.h_alpha, p.h_beta, cNew))
            case KILN_CELL_GRU:
                let z = f(x[j] + g[j])
                let candidate: Double
                if p.linear_before_reset != 0 {
                    let rg = f(x[hidden + j] + g[hidden + j])
                    candidate = gAct(x[2 * hidden + j] + rg * (g[2 * hidden + j] + Double(rbh?[j] ?? 0)))
                } else {
                    candidate = gAct(x[2 * hidden + j] + g[2 * hidden + j])
                }
                h[r * hidden + j] = Float((1 - z) * candidate + z * hOld)
            default:
                h[r * hidden + j] = Float(f(x[j] + g[j]))
            }
        }
    }
}

@Suite(.serialized) struct RecurrentKernelTests {
    @Test("kiln_rnn_matmul: few-row products on packed B, column ranges, every kernel family")
    func rnnMatmul() {
        forEachKernelFamily { isa in
            var r = SplitMix64(seed: 501)
            for _ in 0..<40 {
                let m = r.int(1...7), n = r.int(1...90), k = r.int(1...70)
                let lda = k + r.int(0...3), ldc = n + r.int(0...5)
                let a = r.floats(m * lda), b = r.floats(k * n)
                var packed = [Float](repeating: 0, count: kiln_sgemm_pack_b_size(k, n))
                kiln_sgemm_pack_b(0, k, n, b, n, &packed)
                let n0 = r.int(0...(n - 1)), n1 = r.int((n0 + 1)...(n + 3))
                var c = [Float](repeating: -7, count: m * ldc)
                kiln_rnn_matmul(m, n, k, a, lda, packed, &c, ldc, n0, n1)
                var want = [Float](repeating: -7, count: m * ldc)
                for i in 0..<m {
                    for j in n0..<min(n1, n) {
                        var s = 0.0
                        for p in 0..<k { s += Double(a[i * lda + p]) * Double(b[p * n + j]) }
                        want[i * ldc + j] = Float(s)
                    }
                }
                #expect(maxAbsDifference(c, want) <= 1e-5 * Float(k), "\(isa) m=\(m) n=\(n) k=\(k) cols \(n0)..<\(n1)")
            }
        }
    }

    @Test("kiln_rnn_cell and kiln_gru_reset_gate: one step of LSTM, GRU and RNN against scalar loops")
    func rnnCell() {
        let acts: [(kiln_activation, Float, Float)] = [
            (KILN_ACT_SIGMOID, 0, 0), (KILN_ACT_TANH, 0, 0), (KILN_ACT_RELU, 0, 0), (KILN_ACT_HARDSIGMOID, 0.3, 0.4),
            (KILN_ACT_LEAKY_RELU, 0.05, 0),
        ]
        forEachKernelFamily { isa in
            var r = SplitMix64(seed: 502)
            for caseIndex in 0..<60 {
                let kind = [KILN_CELL_LSTM, KILN_CELL_GRU, KILN_CELL_RNN][caseIndex % 3]
                let gates = kind == KILN_CELL_LSTM ? 4 : kind == KILN_CELL_GRU ? 3 : 1
                let hidden = [1, 5, 16, 33, 64, 70, 131][r.int(0...6)], rows = r.int(1...3)
                let f = caseIndex % 2 == 0 ? acts[0] : acts[r.int(0...4)]
                let g = caseIndex % 2 == 0 ? acts[1] : acts[r.int(0...4)]
                let hAct = caseIndex % 2 == 0 ? acts[1] : acts[r.int(0...4)]
                let p = kiln_cell_params(kind: kind, hidden: hidden, f: f.0, g: g.0, h: hAct.0, f_alpha: f.1, f_beta: f.2,
                                         g_alpha: g.1, g_beta: g.2, h_alpha: hAct.1, h_beta: hAct.2,
                                         clip: r.int(0...1) == 1 ? 0.7 : 0, input_forget: Int32(r.int(0...1)),
                                         linear_before_reset: Int32(r.int(0...1)))
                let gx = r.floats(rows * gates * hidden, -2, 2)
                var gh = r.floats(rows * gates * hidden, -2, 2)
                let peephole = r.int(0...1) == 1 ? r.floats(3 * hidden) : nil
                let rbh = r.floats(hidden)
                let h0 = r.floats(rows * hidden), c0 = r.floats(rows * hidden)
                var h = h0, c = c0
                var y = [Float](repeating: 0, count: rows * hidden)
                // GRU without linear_before_reset: the h-gate part of gh is (r ⊙ h)·Rhᵀ; here it stands in as data,
                // and the reset gate's r ⊙ h is checked on its own.
                if kind == KILN_CELL_GRU && p.linear_before_reset == 0 {
                    var rh = [Float](repeating: 0, count: rows * hidden)
                    withUnsafePointer(to: p) { pp in
                        kiln_gru_reset_gate(pp, rows, 0, hidden, gx, gates * hidden, gh, gates * hidden, h, hidden, &rh, hidden)
                    }
                    var want = rh
                    for row in 0..<rows {
                        for j in 0..<hidden {
                            let pre = Double(gx[row * 3 * hidden + hidden + j] + gh[row * 3 * hidden + hidden + j])
                            let clipped = p.clip > 0 ? min(max(pre, -Double(p.clip)), Double(p.clip)) : pre
                            want[row * hidden + j] = referenceActivation(f.0, f.1, f.2, Float(clipped)) * h[row * hidden + j]
                        }
                    }
                    #expect(maxAbsDifference(rh, want) <= 1e-5, "\(isa) GRU reset gate hidden=\(hidden)")
                    gh = gh.map { $0 * 0.5 }
                }
                peephole.withOptionalPointer { pe in
                    withUnsafePointer(to: p) { pp in
                        kiln_rnn_cell(pp, rows, 0, hidden, gx, gates * hidden, gh, gates * hidden, pe, rbh, &h, hidden, &c, hidden,
                                      &y, hidden)
                    }
                }
                var wantH = h0, wantC = c0
                referenceCell(p, rows: rows, gx: gx, gh: gh, peephole: peephole, rbh: rbh, h: &wantH, c: &wantC)
                let context = "\(isa) kind=\(kind.rawValue) hidden=\(hidden) rows=\(rows) f=\(f.0.rawValue) g=\(g.0.rawValue)"
                #expect(maxAbsDifference(h, wantH) <= 2e-5, "\(context): h")
                #expect(y == h, "\(context): y")
                if kind == KILN_CELL_LSTM { #expect(maxAbsDifference(c, wantC) <= 2e-5, "\(context): c") }
            }
        }
    }
}

extension Optional where Wrapped == [Float] {
    /// Calls `body` with a pointer to the array's floats, or nil.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        if let self { return try self.withUnsafeBufferPointer { try body($0.baseAddress) } }
        return try body(nil)
    }
}

@Suite("kiln.cpu LSTM, GRU and RNN against kiln.reference")
struct RecurrentTests {
    /// The node's configuration for one random case.
    struct Case: CustomStringConvertible {
        var op = "LSTM"
        var direction = "forward"
        var layout = 0
        var seq = 3, batch = 2, inputSize = 4, hidden = 5
        var bias = true, lens = false, initialH = false, initialC = false, peephole = false
        /// sequence_lens values (random in 0...seq when nil and `lens` is set).
        var fixedLens: [Int32]? = nil
        var linearBeforeReset = 0, inputForget = 0
        var clip: Float? = nil
        var activations: [String]? = nil
        var alphas: [Float]? = nil, betas: [Float]? = nil
        var constantWeights = true
        /// Which of Y, Y_h, Y_c the node produces.
        var wanted = [true, true, true]
        var threads = 1

        var directions: Int { direction == "bidirectional" ? 2 : 1 }
        var gates: Int { op == "LSTM" ? 4 : op == "GRU" ? 3 : 1 }
        var description: String {
            "\(op) \(direction) layout=\(layout) seq=\(seq) batch=\(batch) in=\(inputSize) hidden=\(hidden) bias=\(bias) seq_lens=\(lens) "
                + "lens=\(fixedLens.map { "\($0)" } ?? "random") h0=\(initialH) c0=\(initialC) P=\(peephole) lbr=\(linearBeforeReset) if=\(inputForget) clip=\(clip.map { "\($0)" } ?? "-") "
                + "acts=\(activations ?? []) constW=\(constantWeights) wanted=\(wanted) threads=\(threads)"
        }
    }

    /// Builds the one-node model of `c` and its random inputs, runs it on both backends and compares.
    static func check(_ c: Case, _ r: inout SplitMix64, tolerance: Double = 1e-5) throws {
        var g = TestGraph()
        var feeds: [String: Tensor] = [:]
        let d = c.directions, gh = c.gates * c.hidden
        let xShape = c.layout == 0 ? [c.seq, c.batch, c.inputSize] : [c.batch, c.seq, c.inputSize]
        let x = g.input("x", xShape)
        feeds[x] = r.tensor(xShape)
        let scale = 1 / Float(max(c.hidden, c.inputSize)).squareRoot()
        let wT = r.tensor([d, gh, c.inputSize], -scale, scale), rT = r.tensor([d, gh, c.hidden], -scale, scale)
        var inputs: [String]
        if c.constantWeights {
            inputs = [x, g.constant(wT, "W"), g.constant(rT, "R")]
        } else {
            let w = g.input("w", [d, gh, c.inputSize]), rr = g.input("r", [d, gh, c.hidden])
            feeds[w] = wT
            feeds[rr] = rT
            inputs = [x, w, rr]
        }
        inputs.append(c.bias ? g.constant(r.tensor([d, 2 * gh], -0.5, 0.5), "B") : "")
        if c.lens {
            let name = g.input("lens", [.fixed(c.batch)], .int32)
            feeds[name] = Tensor(shape: [c.batch], c.fixedLens ?? (0..<c.batch).map { _ in Int32(r.int(0...c.seq)) })
            inputs.append(name)
        } else {
            inputs.append("")
        }
        let stateShape = c.layout == 0 ? [d, c.batch, c.hidden] : [c.batch, d, c.hidden]
        if c.initialH {
            let name = g.input("h0", stateShape)
            feeds[name] = r.tensor(stateShape)
            inputs.append(name)
        } else {
            inputs.append("")
        }
        if c.op == "LSTM" {
            if c.initialC {
                let name = g.input("c0", stateShape)
                feeds[name] = r.tensor(stateShape)
                inputs.append(name)
            } else {
                inputs.append("")
            }
            inputs.append(c.peephole ? g.constant(r.tensor([d, 3 * c.hidden], -0.5, 0.5), "P") : "")
        }
        while inputs.last == "" { inputs.removeLast() }
        var attrs: [String: Attribute] = ["hidden_size": .int(c.hidden), "direction": .string(c.direction), "layout": .int(c.layout)]
        if let clip = c.clip { attrs["clip"] = .float(clip) }
        if c.op == "GRU" { attrs["linear_before_reset"] = .int(c.linearBeforeReset) }
        if c.op == "LSTM", c.inputForget != 0 { attrs["input_forget"] = .int(1) }
        if let a = c.activations { attrs["activations"] = .strings(a) }
        if let a = c.alphas { attrs["activation_alpha"] = .floats(a) }
        if let b = c.betas { attrs["activation_beta"] = .floats(b) }
        let outputCount = c.op == "LSTM" ? 3 : 2
        var outs = (0..<outputCount).map { c.wanted[$0] ? "out\($0)" : "" }
        while outs.last == "" { outs.removeLast() }
        g.graph.nodes.append(Node(name: "cell", op: OpID("", c.op), inputs: inputs, outputs: outs, attributes: attrs))
        g.graph.outputs = outs.filter { !$0.isEmpty }.map { Value(name: $0) }
        let got = try expectMatchesReference(g.model, inputs: feeds, threads: c.threads, tolerance: tolerance, "\(c)")
        // Y, Y_h, Y_c shapes as ONNX defines them.
        let yShape = c.layout == 0 ? [c.seq, d, c.batch, c.hidden] : [c.batch, c.seq, d, c.hidden]
        let shapes = zip(outs, [yShape, stateShape, stateShape]).filter { !$0.0.isEmpty }.map(\.1)
        #expect(got.map(\.shape) == shapes, "\(c): output shapes")
    }

    @Test("Random LSTM, GRU and RNN nodes: directions, layouts, lengths, states, peepholes, clip, activations")
    func randomCases() throws {
        var r = SplitMix64(seed: 601)
        let activationChoices = ["Sigmoid", "Tanh", "Relu", "HardSigmoid", "LeakyRelu"]
        for caseIndex in 0..<72 {
            var c = Case()
            c.op = ["LSTM", "GRU", "RNN"][caseIndex % 3]
            c.direction = ["forward", "reverse", "bidirectional"][(caseIndex / 3) % 3]
            c.layout = (caseIndex / 9) % 2
            c.seq = r.int(1...7)
            c.batch = r.pick([1, 1, 2, 3, 5])
            c.inputSize = r.int(1...11)
            c.hidden = r.pick([1, 3, 5, 7, 13, 17, 20, 33, 70])
            c.bias = r.int(0...3) != 0
            c.lens = r.bool()
            c.initialH = r.bool()
            c.initialC = r.bool()
            c.peephole = r.bool()
            c.linearBeforeReset = r.int(0...1)
            c.inputForget = r.int(0...4) == 0 ? 1 : 0
            c.clip = r.int(0...3) == 0 ? r.float(0.3, 2) : nil
            c.constantWeights = r.int(0...3) != 0
            c.threads = r.pick([1, 2])
            if caseIndex % 4 == 3 {
                let per = c.op == "LSTM" ? 3 : c.op == "GRU" ? 2 : 1
                c.activations = (0..<(per * c.directions)).map { _ in r.pick(activationChoices) }
                c.alphas = (0..<3).map { _ in r.float(0.05, 0.4) }
                c.betas = (0..<3).map { _ in r.float(0.3, 0.6) }
            }
            let outputs = c.op == "LSTM" ? 3 : 2
            repeat {
                c.wanted = (0..<3).map { $0 < outputs && r.int(0...3) != 0 }
            } while !c.wanted.contains(true)
            try Self.check(c, &r)
        }
    }

    @Test("Larger cells: hidden sizes across chunk and panel boundaries, batch 4 and 6, long sequences")
    func largerCases() throws {
        var r = SplitMix64(seed: 602)
        for (i, op) in ["LSTM", "GRU", "RNN", "LSTM", "GRU"].enumerated() {
            var c = Case()
            c.op = op
            c.direction = i % 2 == 0 ? "bidirectional" : "forward"
            c.layout = i % 2
            c.seq = 20
            c.batch = [1, 4, 6, 2, 5][i]
            c.inputSize = 37
            c.hidden = [129, 65, 100, 47, 80][i]
            c.lens = i >= 3
            c.initialH = true
            c.initialC = true
            c.peephole = true
            c.linearBeforeReset = i == 1 ? 1 : 0
            c.threads = 2
            try Self.check(c, &r)
        }
    }

    @Test("Steps split across two threads by hidden units (one direction, large cells)")
    func splitSteps() throws {
        var r = SplitMix64(seed: 606)
        let cases: [(op: String, direction: String, hidden: Int, batch: Int, lens: Bool, lbr: Int)] = [
            ("LSTM", "forward", 129, 2, false, 0), ("GRU", "reverse", 150, 3, true, 0), ("GRU", "forward", 150, 2, false, 1),
            ("RNN", "reverse", 260, 2, true, 0), ("LSTM", "reverse", 130, 3, true, 0),
        ]
        for (i, k) in cases.enumerated() {
            var c = Case()
            c.op = k.op
            c.direction = k.direction
            c.layout = i % 2
            c.seq = 5
            c.batch = k.batch
            c.inputSize = 6
            c.hidden = k.hidden
            c.lens = k.lens
            c.initialH = true
            c.initialC = true
            c.peephole = true
            c.linearBeforeReset = k.lbr
            c.threads = 2
            try Self.check(c, &r)
        }
    }

    @Test("Every sequence empty, and a batch of zero-length and full-length entries")
    func sequenceLengthEdges() throws {
        var r = SplitMix64(seed: 603)
        for op in ["LSTM", "GRU", "RNN"] {
            for direction in ["forward", "reverse", "bidirectional"] {
                var c = Case()
                c.op = op
                c.direction = direction
                c.seq = 4
                c.batch = 3
                c.lens = true
                c.initialH = true
                c.initialC = true
                for lens: [Int32] in [[0, 0, 0], [0, 4, 2], [4, 0, 4], [1, 1, 1]] {
                    c.fixedLens = lens
                    try Self.check(c, &r)
                }
            }
        }
    }

    @Test("An activation kiln.cpu has no kernel for is refused per node, and the partitioner runs it on kiln.reference")
    func unsupportedActivation() throws {
        var g = TestGraph()
        let x = g.input("x", [3, 1, 4])
        var r = SplitMix64(seed: 604)
        let w = g.constant(r.tensor([1, 8, 4]), "W"), rr = g.constant(r.tensor([1, 8, 8]), "R")
        g.graph.nodes.append(Node(name: "softsign_rnn", op: OpID("", "RNN"), inputs: [x, w, rr], outputs: ["y"],
                                  attributes: ["hidden_size": .int(8), "activations": .strings(["Softsign"])]))
        let relu = g.node("Relu", ["y"])
        g.output(relu)
        let rejections = CPUBackend().rejections(in: g.graph)
        #expect(rejections.count == 1)
        #expect(rejections.first?.node == 0)
        #expect(rejections.first?.reason.contains("Softsign") == true)
        #expect(rejections.first?.reason.contains("softsign_rnn") == true)
        #expect(throws: KilnError.self) { try Session(model: g.model, backend: CPUBackend()) }
        // Mixed: the RNN on kiln.reference, the Relu on kiln.cpu; results match kiln.reference alone.
        let partitioner = Partitioner(selected: [try CPUBackend(threads: 1)], fallbacks: [ReferenceBackend()],
                                      options: PartitionOptions(fallback: .allow))
        let mixed = try Session(model: g.model, partitioner: partitioner)
        let reference = try Session(model: g.model, backend: ReferenceBackend())
        let feeds = ["x": RuntimeValue.tensor(r.tensor([3, 1, 4]))]
        let (got, want) = (try mixed.runOrdered(feeds)[0].tensor!, try reference.runOrdered(feeds)[0].tensor!)
        #expect(difference(got, want).error <= 1e-6)
    }

    @Test("The supported non-default activations with explicit alpha/beta lists")
    func explicitActivations() throws {
        var r = SplitMix64(seed: 605)
        var c = Case()
        c.op = "LSTM"
        c.direction = "bidirectional"
        c.activations = ["HardSigmoid", "LeakyRelu", "Tanh", "Sigmoid", "Relu", "HardSigmoid"]
        c.alphas = [0.3, 0.05, 0.15]
        c.betas = [0.45, 0.55]
        c.seq = 6
        c.hidden = 9
        c.peephole = true
        c.initialH = true
        try Self.check(c, &r)
        c.op = "GRU"
        c.activations = ["LeakyRelu", "Relu", "HardSigmoid", "Tanh"]
        c.linearBeforeReset = 1
        try Self.check(c, &r)
    }
}
