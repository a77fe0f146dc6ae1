// Each kiln.cpu operation and fused pattern on randomized shapes against kiln.reference.
import Kiln
import KilnCPU
import Testing
import KilnTestSupport

@Suite("kiln.cpu operations against kiln.reference")
struct CPUBackendOpTests {
    static let activations: [(String, [String: Attribute])] = [
        ("Relu", [:]), ("Sigmoid", [:]), ("Tanh", [:]), ("HardSwish", [:]), ("HardSigmoid", ["alpha": .float(0.25), "beta": .float(0.4)]),
        ("LeakyRelu", ["alpha": .float(0.1)]), ("Clip", [:]),
    ]

    /// Adds `activation` after `x` (Clip as ReLU6 with constant bounds).
    static func activate(_ g: inout TestGraph, _ x: String, _ activation: (String, [String: Attribute])) -> String {
        if activation.0 == "Clip" {
            let lo = g.constant(Tensor(scalar: Float(0))), hi = g.constant(Tensor(scalar: Float(6)))
            return g.node("Clip", [x, lo, hi])
        }
        return g.node(activation.0, [x], activation.1)
    }

    @Test("Conv: random shapes, strides, pads, dilations, groups, BN folding, residual, activations")
    func convolutions() throws {
        var r = SplitMix64(seed: 11)
        for caseIndex in 0..<36 {
            var g = TestGraph()
            let depthwise = caseIndex % 4 == 1
            let groups = depthwise ? r.int(2...6) : (caseIndex % 4 == 2 ? r.pick([2, 3]) : 1)
            let cin = depthwise ? groups : groups * r.int(1...5)
            let cout = depthwise ? groups : groups * r.int(1...7)
            let k = r.pick([1, 3, 3, 5, 2]), kw = r.bool() ? k : r.pick([1, 3])
            let stride = r.pick([1, 1, 2, 3]), dilation = r.pick([1, 1, 2])
            let h = r.int(max(k, 3)...13) + (dilation - 1) * k, w = r.int(max(kw, 3)...12) + (dilation - 1) * kw
            let n = r.int(1...2)
            let x = g.input("x", [n, cin, h, w])
            let weight = g.constant(r.tensor([cout, cin / groups, k, kw], -0.5, 0.5))
            var inputs = [x, weight]
            if r.bool() { inputs.append(g.constant(r.tensor([cout]))) }
            var attrs: [String: Attribute] = ["group": .int(groups), "strides": .ints([stride, stride]),
                                              "dilations": .ints([dilation, dilation])]
            if r.bool() {
                attrs["pads"] = .ints([r.int(0...2), r.int(0...2), r.int(0...2), r.int(0...2)])
            } else {
                attrs["auto_pad"] = .string(r.pick(["SAME_UPPER", "SAME_LOWER", "VALID"]))
            }
            var y = g.node("Conv", inputs, attrs)
            var kind = "conv g\(groups) \(cin)->\(cout) k\(k)x\(kw) s\(stride) d\(dilation) \(attrs["pads"].map { "\($0)" } ?? "auto")"
            if r.bool() {
                let bn = [r.tensor([cout], 0.5, 1.5), r.tensor([cout]), r.tensor([cout]), r.tensor([cout], 0.5, 1.5)].map { g.constant($0) }
                y = g.node("BatchNormalization", [y] + bn, ["epsilon": .float(1e-5)])
                kind += " +BN"
            }
            if r.bool() {
                // A residual of the output's shape: a second convolution of x with the same geometry.
                let w2 = g.constant(r.tensor([cout, cin / groups, k, kw], -0.5, 0.5))
                let other = g.node("Conv", [x, w2], attrs)
                y = r.bool() ? g.node("Add", [y, other]) : g.node("Add", [other, y])
                kind += " +residual"
            }
            if r.bool() {
                let act = r.pick(Self.activations)
                y = Self.activate(&g, y, act)
                kind += " +\(act.0)"
            }
            g.output(y)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([n, cin, h, w])], threads: r.pick([1, 2]), kind)
        }
    }

    @Test("Conv: 1-D, runtime weight and bias, unfolded BatchNormalization, per-channel constant Add")
    func convolutionVariants() throws {
        var r = SplitMix64(seed: 12)
        do {
            var g = TestGraph()
            let x = g.input("x", [2, 3, 17])
            let y = g.node("Conv", [x, g.constant(r.tensor([4, 3, 3])), g.constant(r.tensor([4]))], ["pads": .ints([1, 2]), "strides": .ints([2])])
            g.output(g.node("Relu", [y]))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 3, 17])], "conv1d")
        }
        do {
            var g = TestGraph()
            let x = g.input("x", [1, 4, 9, 9]), w = g.input("w", [6, 2, 3, 3]), b = g.input("b", [6])
            let y = g.node("Conv", [x, w, b], ["group": .int(2), "pads": .ints([1, 1, 1, 1])])
            let bn = (0..<4).map { g.input("bn\($0)", [6]) }
            g.output(g.node("BatchNormalization", [y] + bn))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, 4, 9, 9]), "w": r.tensor([6, 2, 3, 3]), "b": r.tensor([6]),
                                                         "bn0": r.tensor([6]), "bn1": r.tensor([6]), "bn2": r.tensor([6]),
                                                         "bn3": r.tensor([6], 0.5, 2)], "conv runtime weight + runtime BN")
        }
        do {
            var g = TestGraph()
            let x = g.input("x", [1, 5, 7, 7]), w = g.input("w", [5, 1, 3, 3])
            let y = g.node("Conv", [x, w], ["group": .int(5), "pads": .ints([1, 1, 1, 1])])
            let plus = g.node("Add", [y, g.constant(r.tensor([5, 1, 1]))])
            g.output(g.node("Clip", [plus, g.constant(Tensor(scalar: Float(0))), g.constant(Tensor(scalar: Float(0.5)))]))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, 5, 7, 7]), "w": r.tensor([5, 1, 3, 3])], "depthwise runtime weight")
        }
        do {
            // Residual that broadcasts (not the output's shape) falls back to a separate Add.
            var g = TestGraph()
            let x = g.input("x", [2, 3, 6, 6]), extra = g.input("e", [1, 4, 1, 6])
            let y = g.node("Conv", [x, g.constant(r.tensor([4, 3, 1, 1]))])
            g.output(g.node("Relu", [g.node("Add", [y, extra])]))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 3, 6, 6]), "e": r.tensor([1, 4, 1, 6])], "conv broadcast residual")
        }
        do {
            // VALID with a kernel taller than the input: no output rows (both backends; found by a fuzz run,
            // where kiln.reference rounded -1/3 up to 0 and made one row).
            var g = TestGraph()
            let x = g.input("x", [1, 4, 2, 8])
            g.output(g.node("Conv", [x, g.constant(r.tensor([3, 4, 3, 5]))], ["auto_pad": .string("VALID"), "strides": .ints([3, 1])]))
            let got = try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, 4, 2, 8])], "conv VALID, kernel taller than the input")
            #expect(got.first?.shape == [1, 3, 0, 4])
        }
        do {
            // The same, read afterwards by operations that take the blocked layout (a pool, a convolution).
            var g = TestGraph()
            let x = g.input("x", [1, 16, 6, 6]), extra = g.input("e", [1, 1, 6, 6])
            let y = g.node("Conv", [x, g.constant(r.tensor([20, 16, 3, 3], -0.2, 0.2))], ["pads": .ints([1, 1, 1, 1])])
            let sum = g.node("Relu", [g.node("Add", [y, extra])])
            let pooled = g.node("MaxPool", [sum], ["kernel_shape": .ints([2, 2])])
            g.output(g.node("Conv", [pooled, g.constant(r.tensor([8, 20, 1, 1]))]), sum)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, 16, 6, 6]), "e": r.tensor([1, 1, 6, 6])],
                                       "conv broadcast residual, then blocked readers")
        }
        do {
            // Large enough to split over channels (few pixels, many channels) and over pixels.
            for (hw, c) in [(3, 64), (20, 24)] {
                var g = TestGraph()
                let x = g.input("x", [1, 16, hw, hw])
                let y = g.node("Conv", [x, g.constant(r.tensor([c, 16, 3, 3], -0.2, 0.2)), g.constant(r.tensor([c]))],
                               ["pads": .ints([1, 1, 1, 1])])
                g.output(g.node("Relu", [y]))
                try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, 16, hw, hw])], threads: 2, "conv split \(hw)x\(hw)x\(c)")
            }
        }
    }

    @Test("MatMul and Gemm: packed and batched, transposes, scale, bias, residual, activations, GELU")
    func matrixProducts() throws {
        var r = SplitMix64(seed: 21)
        for caseIndex in 0..<30 {
            var g = TestGraph()
            let m = r.int(1...40), k = r.int(1...50), n = r.int(1...70)
            let batch: [Int] = r.pick([[], [2], [2, 3]])
            var kind = "m\(m) k\(k) n\(n) batch\(batch)"
            let a = g.input("a", batch + [m, k])
            var feeds: [String: Tensor] = ["a": r.tensor(batch + [m, k])]
            var y: String
            let constantB = caseIndex % 3 != 2
            if constantB {
                let transB = r.bool()
                let bt = r.tensor(transB ? [n, k] : [k, n])
                var bName = g.constant(bt)
                if transB { bName = g.node("Transpose", [bName], ["perm": .ints([1, 0])]) }
                y = g.node("MatMul", [a, bName])
                kind += transB ? " const B^T" : " const B"
            } else {
                let bBatch: [Int] = batch.isEmpty ? [] : r.pick([batch, Array(batch.suffix(1)), []])
                let transB = r.bool()
                let bShape = bBatch + (transB ? [n, k] : [k, n])
                var bName = g.input("b", bShape)
                feeds["b"] = r.tensor(bShape)
                if transB {
                    let rank = bShape.count
                    bName = g.node("Transpose", [bName], ["perm": .ints(Array(0..<(rank - 2)) + [rank - 1, rank - 2])])
                }
                y = g.node("MatMul", [a, bName])
                kind += " runtime B\(bBatch)\(transB ? "^T" : "")"
            }
            if r.bool() {
                y = g.node(r.bool() ? "Div" : "Mul", [y, g.constant(Tensor(scalar: Float(r.pick([0.125, 2, 3]))))])
                kind += " scaled"
            }
            if r.bool() {
                y = g.node("Add", [y, g.constant(r.tensor([n]))])
                kind += " +bias"
            }
            if r.bool() {
                let shape: [Int] = r.pick([batch + [m, n], [1, n], batch.isEmpty ? [m, n] : [batch[0]] + Array(repeating: 1, count: batch.count) + [n]])
                let res = g.input("res", shape)
                feeds["res"] = r.tensor(shape)
                y = g.node("Add", [res, y])
                kind += " +residual\(shape)"
            }
            switch r.int(0...3) {
            case 0:
                let act = r.pick(Self.activations)
                y = Self.activate(&g, y, act)
                kind += " +\(act.0)"
            case 1:
                let h = y
                let erf = g.node("Erf", [g.node("Div", [h, g.constant(Tensor(scalar: Float(2).squareRoot()))])])
                let onePlus = g.node("Add", [erf, g.constant(Tensor(scalar: Float(1)))])
                y = g.node("Mul", [g.node("Mul", [h, g.constant(Tensor(scalar: Float(0.5)))]), onePlus])
                kind += " +GELU"
            default: break
            }
            g.output(y)
            try expectMatchesReference(g.model, inputs: feeds, threads: r.pick([1, 2]), kind)
        }
    }

    @Test("Gemm: transA, transB, alpha, beta, C as vector, matrix and runtime value; 1-D MatMul operands")
    func gemmVariants() throws {
        var r = SplitMix64(seed: 22)
        for caseIndex in 0..<12 {
            var g = TestGraph()
            let m = r.int(1...20), k = r.int(1...30), n = r.int(1...40)
            let transA = r.bool(), transB = r.bool()
            let a = g.input("a", transA ? [k, m] : [m, k])
            var feeds: [String: Tensor] = ["a": r.tensor(transA ? [k, m] : [m, k])]
            let b = g.constant(r.tensor(transB ? [n, k] : [k, n]))
            var inputs = [a, b]
            switch caseIndex % 4 {
            case 0: inputs.append(g.constant(r.tensor([n])))
            case 1: inputs.append(g.constant(r.tensor([m, n])))
            case 2:
                inputs.append(g.input("c", [m, 1]))
                feeds["c"] = r.tensor([m, 1])
            default: break
            }
            let y = g.node("Gemm", inputs, ["transA": .int(transA ? 1 : 0), "transB": .int(transB ? 1 : 0),
                                            "alpha": .float(r.pick([1, 0.5, 2])), "beta": .float(r.pick([1, 0.25]))])
            g.output(g.node("Relu", [y]))
            try expectMatchesReference(g.model, inputs: feeds, "gemm case \(caseIndex) m\(m) k\(k) n\(n) tA\(transA) tB\(transB)")
        }
        for (aShape, bShape) in [([7], [7, 5]), ([3, 7], [7]), ([7], [7]), ([2, 3, 7], [7])] {
            var g = TestGraph()
            let a = g.input("a", aShape), b = g.input("b", bShape)
            g.output(g.node("MatMul", [a, b]))
            try expectMatchesReference(g.model, inputs: ["a": r.tensor(aShape), "b": r.tensor(bShape)], "matmul \(aShape)x\(bShape)")
        }
    }

    @Test("Pooling: MaxPool, AveragePool (pads, strides, ceil mode, count_include_pad, dilations), global pools")
    func pooling() throws {
        var r = SplitMix64(seed: 31)
        for caseIndex in 0..<24 {
            var g = TestGraph()
            let n = r.int(1...2), c = r.int(1...5), h = r.int(4...12), w = r.int(4...12)
            let k = r.int(1...3), stride = r.int(1...3)
            let isMax = caseIndex % 2 == 0
            var attrs: [String: Attribute] = ["kernel_shape": .ints([k, r.int(1...3)]), "strides": .ints([stride, r.int(1...2)]),
                                              "ceil_mode": .int(r.int(0...1))]
            let pad = r.int(0...(k - 1))
            attrs["pads"] = .ints([pad, 0, r.int(0...(k - 1)), pad])
            if isMax, r.bool() { attrs["dilations"] = .ints([2, 1]) }
            if !isMax { attrs["count_include_pad"] = .int(r.int(0...1)) }
            let x = g.input("x", [n, c, h, w])
            g.output(g.node(isMax ? "MaxPool" : "AveragePool", [x], attrs))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([n, c, h, w])], "\(isMax ? "max" : "avg")pool \(attrs)")
        }
        for op in ["GlobalAveragePool", "GlobalMaxPool"] {
            var g = TestGraph()
            let x = g.input("x", [2, 7, 5, 3])
            g.output(g.node("Flatten", [g.node(op, [x])]))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 7, 5, 3])], op)
        }
    }

    @Test("Elementwise: broadcasting binaries, variadic Sum/Max/Min, unary chains with scalar constants")
    func elementwise() throws {
        var r = SplitMix64(seed: 41)
        let shapes: [([Int], [Int])] = [
            ([2, 3, 4], [2, 3, 4]), ([2, 3, 4], [4]), ([2, 3, 4], [3, 1]), ([3, 1], [1, 4]), ([1, 5, 6, 6], [5, 1, 1]),
            ([4], [2, 3, 4]), ([2, 1, 4], [2, 3, 1]), ([], [3, 2]), ([7, 300], [7, 1]), ([1, 1], [1]), ([64, 1000], [1000]),
        ]
        for (i, (sa, sb)) in shapes.enumerated() {
            for op in ["Add", "Sub", "Mul", "Div", "Max", "Min"] {
                var g = TestGraph()
                let a = g.input("a", sa), b = g.input("b", sb)
                g.output(g.node(op, [a, b]))
                var bt = r.tensor(sb)
                if op == "Div" { bt = Tensor(shape: sb, bt.elements(as: Float.self).map { $0 >= 0 ? $0 + 0.5 : $0 - 0.5 }) }
                try expectMatchesReference(g.model, inputs: ["a": r.tensor(sa), "b": bt], threads: i % 2 + 1, "\(op) \(sa) \(sb)")
            }
        }
        for op in ["Sum", "Max", "Min"] {
            var g = TestGraph()
            let a = g.input("a", [3, 4]), b = g.input("b", [4]), c = g.input("c", [2, 3, 4])
            g.output(g.node(op, [a, b, c]))
            try expectMatchesReference(g.model, inputs: ["a": r.tensor([3, 4]), "b": r.tensor([4]), "c": r.tensor([2, 3, 4])], "variadic \(op)")
        }
        // A chain: Sub(1, x) → Mul by constant → Abs → Sqrt → Exp → Neg → Log(…+3) → Reciprocal → Erf, with
        // a constant of higher rank that broadcasts the shape.
        var g = TestGraph()
        let x = g.input("x", [3, 50])
        var y = g.node("Sub", [g.constant(Tensor(scalar: Float(1))), x])
        y = g.node("Mul", [y, g.constant(Tensor(shape: [1, 1, 1], [Float(-3)]))])
        for op in ["Abs", "Sqrt", "Exp", "Neg"] { y = g.node(op, [y]) }
        y = g.node("Log", [g.node("Add", [y, g.constant(Tensor(scalar: Float(100)))])])
        y = g.node("Erf", [g.node("Reciprocal", [y])])
        for act in Self.activations { y = Self.activate(&g, y, act) }
        g.output(y)
        try expectMatchesReference(g.model, inputs: ["x": r.tensor([3, 50])], "unary chain")
        // Large enough to run in parallel blocks, and a graph output that is also read by another node.
        var h = TestGraph()
        let big = h.input("x", [3, 40_000])
        let relu = h.node("Relu", [big])
        h.output(relu, h.node("Mul", [relu, h.constant(Tensor(scalar: Float(2)))]))
        try expectMatchesReference(h.model, inputs: ["x": r.tensor([3, 40_000])], "large chain with shared output")
    }

    @Test("Normalizations: BatchNormalization, LayerNormalization (axes, statistics outputs), Softmax, LogSoftmax")
    func normalizations() throws {
        var r = SplitMix64(seed: 51)
        do {
            var g = TestGraph()
            let x = g.input("x", [2, 6, 5, 7])
            let params = [r.tensor([6], 0.5, 1.5), r.tensor([6]), r.tensor([6]), r.tensor([6], 0.5, 1.5)].map { g.constant($0) }
            g.output(g.node("BatchNormalization", [x] + params, ["epsilon": .float(1e-3)]))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 6, 5, 7])], "batchnorm constant")
        }
        for (shape, axis) in [([2, 5, 16], -1), ([3, 4, 6], 1), ([128, 256], -1), ([4, 7], 0)] {
            var g = TestGraph()
            let x = g.input("x", shape)
            let cols = shape[(axis < 0 ? axis + shape.count : axis)...].reduce(1, *)
            let normalized = Array(shape[(axis < 0 ? axis + shape.count : axis)...])
            let gamma = g.constant(r.tensor(normalized, 0.5, 1.5)), beta = g.constant(r.tensor(normalized))
            let y = g.node("LayerNormalization", [x, gamma, beta], ["axis": .int(axis), "epsilon": .float(1e-5)], outputs: 3)
            let base = String(y.dropLast(2))
            g.output(y, base + "_1", base + "_2")
            _ = cols
            try expectMatchesReference(g.model, inputs: ["x": r.tensor(shape, -3, 3)], "layernorm \(shape) axis \(axis)")
        }
        for (shape, axis) in [([2, 3, 17], -1), ([4, 128], 1), ([2, 5, 3], 1), ([3, 4], 0)] {
            for op in ["Softmax", "LogSoftmax"] {
                var g = TestGraph()
                let x = g.input("x", shape)
                g.output(g.node(op, [x], ["axis": .int(axis)]))
                try expectMatchesReference(g.model, inputs: ["x": r.tensor(shape, -5, 5)], "\(op) \(shape) axis \(axis)")
            }
        }
    }

    @Test("Data movement: Gather, Transpose, Reshape/Flatten/Squeeze/Unsqueeze, Concat, Cast, Shape, Constant")
    func dataMovement() throws {
        var r = SplitMix64(seed: 61)
        do {
            var g = TestGraph()
            let table = g.constant(r.tensor([10, 6]))
            let ids = g.input("ids", [.fixed(2), .fixed(3)], .int64)
            let x = g.input("x", [4, 5, 3])
            g.output(g.node("Gather", [table, ids]), g.node("Gather", [x, g.constant(Tensor(int64s: [2, -1, 0]))], ["axis": .int(1)]))
            let idTensor = Tensor(shape: [2, 3], [Int64(0), 9, 3, -2, 4, 4])
            try expectMatchesReference(g.model, inputs: ["ids": idTensor, "x": r.tensor([4, 5, 3])], "gather")
        }
        for rank in 1...5 {
            var shape = (0..<rank).map { _ in r.int(1...5) }
            shape[0] = max(shape[0], 2)
            var perm = Array(0..<rank)
            for i in stride(from: rank - 1, to: 0, by: -1) { perm.swapAt(i, r.int(0...i)) }
            var g = TestGraph()
            let x = g.input("x", shape)
            let xi = g.input("xi", shape.map { .fixed($0) }, .int64)
            g.output(g.node("Transpose", [x], ["perm": .ints(perm)]), g.node("Transpose", [xi], ["perm": .ints(perm)]))
            let ints = Tensor(shape: shape, (0..<shape.reduce(1, *)).map { Int64($0) })
            try expectMatchesReference(g.model, inputs: ["x": r.tensor(shape), "xi": ints], "transpose \(shape) \(perm)")
        }
        do {
            var g = TestGraph()
            let x = g.input("x", [2, 3, 4])
            let reshaped = g.node("Reshape", [x, g.constant(Tensor(int64s: [0, -1, 2]))])
            let unsq = g.node("Unsqueeze", [reshaped, g.constant(Tensor(int64s: [0, -1]))])
            let sq = g.node("Squeeze", [unsq, g.constant(Tensor(int64s: [0]))])
            let flat = g.node("Flatten", [sq], ["axis": .int(2)])
            let ident = g.node("Identity", [flat])
            let concat = g.node("Concat", [ident, g.node("Relu", [ident]), g.constant(r.tensor([12, 3]))], ["axis": .int(1)])
            // Shape arithmetic at plan time: [batch, 12] from Shape, Gather and Concat.
            let dims = g.node("Shape", [x])
            let batch = g.node("Gather", [dims, g.constant(Tensor(int64s: [0]))])
            let target = g.node("Concat", [batch, g.constant(Tensor(int64s: [12]))], ["axis": .int(0)])
            let byShape = g.node("Reshape", [x, target])
            let constant = g.node("Constant", [], ["value": .tensor(Tensor(shape: [12], (0..<12).map { Float($0) }))])
            let cast = g.node("Cast", [g.node("Cast", [g.node("Add", [byShape, constant]), ], ["to": .int(7)])], ["to": .int(1)])
            g.output(concat, cast, g.node("Shape", [cast]))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 3, 4], -20, 20)], "views, concat, shape arithmetic, casts")
        }
        do {
            var g = TestGraph()
            let mask = g.input("mask", [.fixed(2), .fixed(5)], .int64)
            let f = g.node("Cast", [mask], ["to": .int(1)])
            let b = g.node("Cast", [mask], ["to": .int(9)])
            g.output(f, g.node("Cast", [b], ["to": .int(6)]))
            try expectMatchesReference(g.model, inputs: ["mask": Tensor(shape: [2, 5], [Int64(1), 0, 1, 1, -3, 0, 0, 7, 1, 1])], "casts")
        }
    }
}
