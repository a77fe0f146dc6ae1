// kiln.gpu's elementwise ops with and without attributes, Clip with constant bounds, the two-input binary ops,
// BatchNormalization and LayerNormalization, each against kiln.reference on seeded inputs.
import Kiln
import KilnGPU
import KilnReference
import KilnTestSupport
import Testing

@Suite("kiln.gpu more ops") struct GPUMoreOpsTests {
    /// One node over inputs x0, x1, … of `shapes` (and constant inputs `constants` after them).
    func model(_ op: String, _ shapes: [[Int]], constants: [Tensor?] = [], _ attributes: [String: Attribute] = [:]) throws -> Model {
        var b = GraphBuilder()
        var names = shapes.enumerated().map { b.input("x\($0.offset)", $0.element) }
        names += constants.map { $0.map { b.constant($0) } ?? "" }
        b.output(b.node(op, names, attributes))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        return model
    }

    static let domains: [String: (Float, Float)] = [
        "Sqrt": (0.1, 3), "Log": (0.1, 3), "Reciprocal": (0.5, 3), "Acosh": (1.1, 3), "Asin": (-0.9, 0.9), "Acos": (-0.9, 0.9),
        "Atanh": (-0.9, 0.9), "Tan": (-1.2, 1.2),
    ]

    @Test(arguments: ["Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Log", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan",
                      "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Sign", "Softsign", "Softplus", "Mish"])
    func unaryOp(_ op: String) throws {
        let (lo, hi) = Self.domains[op] ?? (-3, 3)
        var x = seeded(61, [3, 5, 7], lo, hi)
        if op == "Round" || op == "Sign" {  // halves and zeros, where rounding and sign rules show
            var values = x.elements(as: Float.self)
            values[0] = 0.5; values[1] = 1.5; values[2] = -2.5; values[3] = 0; values[4] = -0.5
            x = Tensor(shape: [3, 5, 7], values)
        }
        try expectGPUMatchesReference(try model(op, [[3, 5, 7]]), ["x0": x], op)
    }

    @Test func unaryOpsWithAttributes() throws {
        let cases: [(String, [String: Attribute])] = [
            ("Elu", ["alpha": .float(0.7)]), ("Elu", [:]), ("Selu", [:]), ("Selu", ["alpha": .float(2), "gamma": .float(3)]),
            ("HardSigmoid", ["alpha": .float(0.3), "beta": .float(0.4)]), ("HardSwish", [:]), ("ThresholdedRelu", ["alpha": .float(0.5)]),
            ("Celu", ["alpha": .float(1.5)]), ("Gelu", [:]), ("Gelu", ["approximate": .string("tanh")]),
            ("Shrink", ["lambd": .float(0.7), "bias": .float(0.2)]), ("Shrink", [:]),
        ]
        for (op, attributes) in cases {
            try expectGPUMatchesReference(try model(op, [[4, 9]], attributes), ["x0": seeded(62, [4, 9], -3, 3)], "\(op) \(attributes)")
        }
    }

    @Test func clipWithConstantBounds() throws {
        let x = seeded(63, [6, 7], -2, 2)
        try expectGPUMatchesReference(try model("Clip", [[6, 7]], constants: [Tensor(shape: [], [Float(-0.5)]), Tensor(shape: [], [Float(0.8)])]), ["x0": x], "Clip both")
        try expectGPUMatchesReference(try model("Clip", [[6, 7]], constants: [Tensor(shape: [], [Float(0)])]), ["x0": x], "Clip min")
        try expectGPUMatchesReference(try model("Clip", [[6, 7]], constants: [nil, Tensor(shape: [], [Float(6)])]), ["x0": x], "Clip max")
        // A bound that is a graph input is read from its device buffer; one that is not a scalar is refused.
        let variable = try model("Clip", [[6, 7], []])
        try expectGPUMatchesReference(variable, ["x0": x, "x1": Tensor(shape: [], [Float(0.3)])], "Clip with a run-time min")
        let rejected = GPUBackend().rejections(in: try model("Clip", [[6, 7], [3]]).graph)
        #expect(rejected.count == 1 && rejected[0].reason.contains("scalar"), "\(rejected)")
    }

    @Test(arguments: ["Pow", "Max", "Min", "PRelu", "Sum", "Mean"])
    func binaryOp(_ op: String) throws {
        let shapes: [[Int]] = [[2, 5, 3], [5, 1]]  // the second broadcast along the first and last dims (PRelu's slope per channel)
        var inputs = ["x0": seeded(64, shapes[0], -2, 2), "x1": seeded(65, shapes[1], -2, 2)]
        if op == "Pow" { inputs["x0"] = seeded(66, shapes[0], 0.2, 2) }
        try expectGPUMatchesReference(try model(op, shapes), inputs, op)
    }

    @Test(arguments: ["Max", "Min", "Sum", "Mean"])
    func variadicOpsOfThreeOrMoreInputs(_ op: String) throws {
        let shapes: [[Int]] = [[2, 3, 4], [4], [3, 1], [1, 1, 4]]
        var inputs: [String: Tensor] = [:]
        for (i, shape) in shapes.enumerated() { inputs["x\(i)"] = seeded(UInt64(140 + i), shape) }
        try expectGPUMatchesReference(try model(op, shapes), inputs, "\(op) of four")
        try expectGPUMatchesReference(try model(op, Array(shapes.prefix(3))), inputs.filter { $0.key != "x3" }, "\(op) of three")
        // More than 16 inputs is refused (a generated kernel's parameter list stays small).
        #expect(GPUBackend().rejections(in: try model(op, [[Int]](repeating: [2], count: 17)).graph).count == 1)
    }

    @Test func batchNormalization() throws {
        let c = 4
        let m = try model("BatchNormalization", [[2, c, 3, 5]],
                          constants: [seeded(67, [c], 0.5, 2), seeded(68, [c]), seeded(69, [c]), seeded(70, [c], 0.2, 2)],
                          ["epsilon": .float(1e-3)])
        try expectGPUMatchesReference(m, ["x0": seeded(71, [2, c, 3, 5], -3, 3)], "BatchNormalization 4-D")
        let flat = try model("BatchNormalization", [[3, c]], constants: [seeded(72, [c]), seeded(73, [c]), seeded(74, [c]), seeded(75, [c], 0.5, 1)])
        try expectGPUMatchesReference(flat, ["x0": seeded(76, [3, c], -3, 3)], "BatchNormalization 2-D")
    }

    @Test func layerNormalization() throws {
        let last = try model("LayerNormalization", [[2, 3, 8]], constants: [seeded(77, [8]), seeded(78, [8])], ["epsilon": .float(1e-4)])
        try expectGPUMatchesReference(last, ["x0": seeded(79, [2, 3, 8], -3, 3)], "LayerNormalization axis -1")
        let noBias = try model("LayerNormalization", [[2, 3, 8]], constants: [seeded(80, [3, 8])], ["axis": .int(1)])
        try expectGPUMatchesReference(noBias, ["x0": seeded(81, [2, 3, 8], -3, 3)], "LayerNormalization axis 1, no bias")
        // With its Mean and InvStdDev outputs (and a Relu that fuses into Y only).
        var b = GraphBuilder()
        let x = b.input("x0", [4, 6])
        let scale = b.constant(seeded(82, [6])), bias = b.constant(seeded(83, [6]))
        b.graph.nodes.append(Node(name: "ln", op: OpID("", "LayerNormalization"), inputs: [x, scale, bias], outputs: ["y", "mean", "inv"],
                                  attributes: ["axis": .int(1)]))
        b.output(b.node("Relu", ["y"]), "mean", "inv")
        var full = b.model
        _ = try GraphInference.infer(&full.graph)
        #expect(GPUBackend().rejections(in: full.graph).isEmpty)
        try expectGPUMatchesReference(full, ["x0": seeded(84, [4, 6], -3, 3)], "LayerNormalization with Mean and InvStdDev")
    }
}

@Suite("kiln.gpu inputs with initializers") struct GPUInitializerInputTests {
    /// y = x · W where W is both a graph input and an initializer (as older exporters write weights).
    @Test func anInputThatIsAlsoAnInitializerDefaultsToItAndCanBeOverridden() throws {
        var b = GraphBuilder()
        let x = b.input("x", [2, 3])
        let w = b.constant(seeded(91, [3, 4]))
        b.graph.inputs.append(Value(name: w, type: .tensor(TensorType(.float32, fixed: [3, 4]))))
        b.output(b.node("MatMul", [x, w]))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        let executable = try #require(try GPUBackend().prepare(model.graph) as? GPUExecutable)
        #expect(executable.counters.bytesToDevicePerRun == 2 * 3 * 4)
        let input = seeded(92, [2, 3]), other = seeded(93, [3, 4])
        func product(_ a: Tensor, _ b: Tensor) -> [Float] {
            let p = a.elements(as: Float.self), q = b.elements(as: Float.self)
            return (0..<2).flatMap { i in (0..<4).map { j in (0..<3).reduce(Float(0)) { $0 + p[i * 3 + $1] * q[$1 * 4 + j] } } }
        }
        func close(_ a: [Float], _ b: [Float]) -> Bool { a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 } }
        let weights = try #require(model.graph.initializers[w])
        let byDefault = try executable.run(["x": .tensor(input)])[0].tensor!.elements(as: Float.self)
        #expect(close(byDefault, product(input, weights)))
        let fed = try executable.run(["x": .tensor(input), w: .tensor(other)])[0].tensor!.elements(as: Float.self)
        #expect(close(fed, product(input, other)))
        let again = try executable.run(["x": .tensor(input)])[0].tensor!.elements(as: Float.self)
        #expect(close(again, product(input, weights)), "the default comes back after an override")
    }
}

@Suite("kiln.gpu concat and reductions") struct GPUConcatReduceTests {
    @Test func concatAlongEachAxis() throws {
        for (axis, shapes) in [(1, [[2, 3, 4], [2, 1, 4], [2, 5, 4]]), (-1, [[3, 2], [3, 7]]), (0, [[1, 6], [4, 6], [2, 6]])] {
            var b = GraphBuilder()
            let names = shapes.enumerated().map { b.input("x\($0.offset)", $0.element) }
            b.output(b.node("Concat", names, ["axis": .int(axis)]))
            var model = b.model
            _ = try GraphInference.infer(&model.graph)
            var inputs: [String: Tensor] = [:]
            for (i, shape) in shapes.enumerated() { inputs["x\(i)"] = seeded(UInt64(100 + i), shape) }
            try expectGPUMatchesReference(model, inputs, "Concat axis \(axis) \(shapes)")
        }
    }

    func reduction(_ op: String, axes: [Int64]?, keepdims: Int, noop: Int = 0) throws -> Model {
        var b = GraphBuilder()
        let x = b.input("x0", [3, 4, 5])
        var inputs = [x]
        if let axes { inputs.append(b.constant(Tensor(shape: [axes.count], axes))) }
        b.output(b.node(op, inputs, ["keepdims": .int(keepdims), "noop_with_empty_axes": .int(noop)]))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        return model
    }

    @Test(arguments: ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2",
                      "ReduceLogSum", "ReduceLogSumExp"])
    func reduce(_ op: String) throws {
        let (lo, hi): (Float, Float) = op == "ReduceLogSum" ? (0.1, 2) : op == "ReduceProd" ? (0.5, 1.5) : (-2, 2)
        let x = ["x0": seeded(110, [3, 4, 5], lo, hi)]
        for (axes, keepdims) in [([Int64(1)], 1), ([0, 2], 0), ([-1], 0), ([2, 0, 1], 1)] as [([Int64], Int)] {
            try expectGPUMatchesReference(try reduction(op, axes: axes, keepdims: keepdims), x, "\(op) axes \(axes) keepdims \(keepdims)")
        }
        try expectGPUMatchesReference(try reduction(op, axes: nil, keepdims: 0), x, "\(op) over every axis")
        try expectGPUMatchesReference(try reduction(op, axes: nil, keepdims: 1, noop: 1), x, "\(op) noop_with_empty_axes")
    }

    @Test func axesThatAreNotConstantAreRefused() throws {
        var b = GraphBuilder()
        let x = b.input("x0", [3, 4])
        b.graph.inputs.append(Value(name: "axes", type: .tensor(TensorType(.int64, fixed: [1]))))
        b.output(b.node("ReduceSum", [x, "axes"], ["keepdims": .int(1)]))
        let rejected = GPUBackend().rejections(in: b.model.graph)
        // Its output shape depends on the run-time axes, so it is refused (no static shape) before the axes are read.
        #expect(rejected.count == 1 && rejected[0].node == 0, "\(rejected)")
    }
}

@Suite("kiln.gpu slice and expand") struct GPUSliceExpandTests {
    @Test func sliceWithConstantBounds() throws {
        let cases: [(starts: [Int64], ends: [Int64], axes: [Int64]?, steps: [Int64]?)] = [
            ([1, 0], [3, 5], nil, nil), ([0], [-1], [2], nil), ([4], [Int64.min], [1], [-2]), ([-3, 1], [Int64.max, 6], [0, 2], [1, 2]),
            ([5], [-6], [-1], [-1]), ([1], [2], [0], [3]),
        ]
        for c in cases {
            var b = GraphBuilder()
            let x = b.input("x0", [4, 5, 6])
            var inputs = [x, b.constant(Tensor(shape: [c.starts.count], c.starts)), b.constant(Tensor(shape: [c.ends.count], c.ends))]
            if let axes = c.axes { inputs.append(b.constant(Tensor(shape: [axes.count], axes))) }
            if let steps = c.steps { inputs.append(b.constant(Tensor(shape: [steps.count], steps))) }
            b.output(b.node("Slice", inputs))
            var model = b.model
            _ = try GraphInference.infer(&model.graph)
            #expect(GPUBackend().rejections(in: model.graph).isEmpty, "\(c)")
            try expectGPUMatchesReference(model, ["x0": seeded(120, [4, 5, 6])], "Slice \(c)")
        }
    }

    @Test func expandBroadcasts() throws {
        for (from, to) in [([3, 1], [2, 3, 4]), ([1], [5]), ([2, 1, 3], [2, 4, 3])] as [([Int], [Int64])] {
            var b = GraphBuilder()
            let x = b.input("x0", from)
            b.output(b.node("Expand", [x, b.constant(Tensor(shape: [to.count], to))]))
            var model = b.model
            _ = try GraphInference.infer(&model.graph)
            try expectGPUMatchesReference(model, ["x0": seeded(121, from)], "Expand \(from) → \(to)")
        }
    }
}

@Suite("kiln.gpu log-softmax and views") struct GPULogSoftmaxViewTests {
    @Test func logSoftmaxOnEveryAxis() throws {
        for axis in -3..<3 {
            var b = GraphBuilder()
            let x = b.input("x0", [2, 3, 5])
            b.output(b.node("LogSoftmax", [x], ["axis": .int(axis)]))
            var model = b.model
            _ = try GraphInference.infer(&model.graph)
            try expectGPUMatchesReference(model, ["x0": seeded(130, [2, 3, 5], -4, 4)], "LogSoftmax axis \(axis)")
        }
    }

    @Test func oneInputVariadicOpsAndDropoutAreViews() throws {
        for op in ["Max", "Min", "Sum", "Mean", "Dropout"] {
            var b = GraphBuilder()
            let x = b.input("x0", [3, 4])
            b.output(b.node("Exp", [b.node(op, [b.node("Relu", [x])])]))
            var model = b.model
            _ = try GraphInference.infer(&model.graph)
            try expectGPUMatchesReference(model, ["x0": seeded(131, [3, 4])], op)
            let executable = try #require(try GPUBackend().prepare(model.graph) as? GPUExecutable)
            #expect(executable.counters.launchesPerRun == 2, "\(op): the view costs no launch")
        }
        // Dropout with a training_mode input is random: refused.
        var b = GraphBuilder()
        let x = b.input("x0", [3, 4])
        b.graph.inputs.append(Value(name: "training", type: .tensor(TensorType(.bool, fixed: []))))
        b.output(b.node("Dropout", [x, "", "training"]))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        #expect(GPUBackend().rejections(in: model.graph).count == 1)
    }
}
