import Kiln
import KilnTooling
import KilnReference
import Testing
import KilnTestSupport
@testable import KilnPasses

@Suite struct ShapeInferenceTests {
    /// A tensor value with dims written as `Dim`s.
    static func tensorValue(_ name: String, _ dtype: DType, _ dims: [Dim]?) -> Value {
        Value(name: name, type: .tensor(TensorType(dtype, dims)))
    }

    /// Runs shape inference on a copy of `graph`.
    static func inferred(_ graph: Graph) throws -> Graph {
        var copy = graph
        _ = try ShapeInference().run(&copy, context: PassContext())
        return copy
    }

    /// The printed type of `name` after inference (`"-"` when unknown).
    static func typeText(_ graph: Graph, _ name: String) -> String {
        graph.type(of: name).map { "\($0)" } ?? "-"
    }

    /// A BERT-like attention block: ids [batch,128] through embeddings, Reshape [0,0,4,64], Transpose,
    /// MatMul, Softmax and back to [batch,128,256].
    static func attentionBlock() -> Graph {
        var random = TestRandom(state: 3)
        let initializers: [String: Tensor] = [
            "word": random.tensor([1000, 256]), "pos": random.tensor([128, 256]),
            "gamma": random.tensor([256]), "beta": random.tensor([256]),
            "wq": random.tensor([256, 256]), "wk": random.tensor([256, 256]), "wv": random.tensor([256, 256]),
            "bq": random.tensor([256]),
            "split": Tensor(int64s: [0, 0, 4, 64]), "merge": Tensor(int64s: [0, 0, 256]),
            "axes12": Tensor(int64s: [1, 2]), "scale": Tensor(scalar: Float(8)),
        ]
        return Graph(
            name: "attention",
            inputs: [Self.tensorValue("input_ids", .int64, [.symbol("batch"), .fixed(128)]),
                     Self.tensorValue("mask", .int64, [.symbol("batch"), .fixed(128)])],
            outputs: [Value(name: "out"), Value(name: "probs_out")],
            initializers: initializers,
            nodes: [
                node("Gather", ["word", "input_ids"], ["emb"], ["axis": .int(0)]),
                node("Add", ["emb", "pos"], ["x0"]),
                node("LayerNormalization", ["x0", "gamma", "beta"], ["x"], ["axis": .int(-1)]),
                node("MatMul", ["x", "wq"], ["q0"]), node("Add", ["q0", "bq"], ["q1"]),
                node("MatMul", ["x", "wk"], ["k0"]), node("MatMul", ["x", "wv"], ["v0"]),
                node("Reshape", ["q1", "split"], ["q2"]), node("Transpose", ["q2"], ["q"], ["perm": .ints([0, 2, 1, 3])]),
                node("Reshape", ["k0", "split"], ["k1"]), node("Transpose", ["k1"], ["k"], ["perm": .ints([0, 2, 3, 1])]),
                node("Reshape", ["v0", "split"], ["v1"]), node("Transpose", ["v1"], ["v"], ["perm": .ints([0, 2, 1, 3])]),
                node("MatMul", ["q", "k"], ["s0"]), node("Div", ["s0", "scale"], ["s1"]),
                node("Cast", ["mask"], ["maskf"], ["to": .int(1)]),
                node("Unsqueeze", ["maskf", "axes12"], ["mask4"]),
                node("Add", ["s1", "mask4"], ["s2"]),
                node("Softmax", ["s2"], ["probs"], ["axis": .int(-1)]),
                node("MatMul", ["probs", "v"], ["c0"]),
                node("Transpose", ["c0"], ["c1"], ["perm": .ints([0, 2, 1, 3])]),
                node("Reshape", ["c1", "merge"], ["out"]),
                node("Identity", ["probs"], ["probs_out"]),
            ])
    }

    @Test func bertLikeAttentionKeepsTheBatchSymbol() throws {
        let graph = try Self.inferred(Self.attentionBlock())
        let expected: [String: String] = [
            "emb": "f32[batch,128,256]", "x0": "f32[batch,128,256]", "x": "f32[batch,128,256]",
            "q2": "f32[batch,128,4,64]", "q": "f32[batch,4,128,64]", "k": "f32[batch,4,64,128]",
            "s0": "f32[batch,4,128,128]", "maskf": "f32[batch,128]", "mask4": "f32[batch,1,1,128]",
            "s2": "f32[batch,4,128,128]", "probs": "f32[batch,4,128,128]", "c0": "f32[batch,4,128,64]",
            "c1": "f32[batch,128,4,64]", "out": "f32[batch,128,256]",
        ]
        for (name, type) in expected.sorted(by: { $0.key < $1.key }) {
            #expect(Self.typeText(graph, name) == type, "\(name)")
        }
        #expect(graph.outputs.map { $0.type.map { "\($0)" } ?? "-" } == ["f32[batch,128,256]", "f32[batch,4,128,128]"])
        // Everything else is typed too.
        for node in graph.nodes { for output in node.outputs { #expect(graph.valueTypes[output] != nil, "\(output)") } }
        // And the inferred types are what the reference backend computes (batch bound to 2).
        let inputs = randomInputs(for: graph, seed: 5)
        let outputs = try run(graph, inputs)
        #expect(outputs["out"]?.shape == [2, 128, 256])
        #expect(outputs["probs_out"]?.shape == [2, 4, 128, 128])
    }

    @Test func shapeGatherConcatReshapeChainResolves() throws {
        let graph = Graph(
            inputs: [Self.tensorValue("x", .float32, [.symbol("batch"), .symbol("seq"), .fixed(256)])],
            outputs: [Value(name: "heads"), Value(name: "flat"), Value(name: "merged")],
            initializers: ["i0": Tensor(int64s: [0]), "i1": Tensor(scalar: Int64(1)), "tail": Tensor(int64s: [4, 64]),
                           "minus1": Tensor(int64s: [-1]), "d64": Tensor(int64s: [64]), "zero": Tensor(int64s: [0])],
            nodes: [
                node("Shape", ["x"], ["shape"]),
                node("Gather", ["shape", "i0"], ["b"], ["axis": .int(0)]),  // [batch] (rank 1)
                node("Gather", ["shape", "i1"], ["s"], ["axis": .int(0)]),  // seq (scalar)
                node("Unsqueeze", ["s", "zero"], ["s1"]),
                node("Concat", ["b", "s1", "tail"], ["target"], ["axis": .int(0)]),
                node("Reshape", ["x", "target"], ["heads"]),
                node("Concat", ["b", "minus1"], ["target2"], ["axis": .int(0)]),
                node("Reshape", ["x", "target2"], ["flat"]),
                node("Slice", ["shape", "zero", "minus1"], ["front"]),  // [batch, seq]
                node("Concat", ["front", "minus1", "d64"], ["target3"], ["axis": .int(0)]),
                node("Reshape", ["x", "target3"], ["merged"]),
                node("Size", ["x"], ["size"]),
            ])
        let g = try Self.inferred(graph)
        #expect(Self.typeText(g, "shape") == "i64[3]")
        #expect(Self.typeText(g, "b") == "i64[1]")
        #expect(Self.typeText(g, "s") == "i64[]")
        #expect(Self.typeText(g, "target") == "i64[4]")
        #expect(Self.typeText(g, "heads") == "f32[batch,seq,4,64]")
        #expect(Self.typeText(g, "flat") == "f32[batch,?]")  // seq × 256 is not a single symbol
        #expect(Self.typeText(g, "merged") == "f32[batch,seq,4,64]")
        #expect(Self.typeText(g, "size") == "i64[]")
    }

    @Test func reshapeMinusOneCancelsSymbols() throws {
        let graph = Graph(
            inputs: [Self.tensorValue("x", .float32, [.symbol("batch"), .fixed(128), .fixed(256)])],
            outputs: [Value(name: "y"), Value(name: "z")],
            initializers: ["t": Tensor(int64s: [0, -1, 64]), "u": Tensor(int64s: [-1, 256])],
            nodes: [node("Reshape", ["x", "t"], ["y"]), node("Reshape", ["x", "u"], ["z"])])
        let g = try Self.inferred(graph)
        #expect(Self.typeText(g, "y") == "f32[batch,512,64]")
        #expect(Self.typeText(g, "z") == "f32[?,256]")
    }

    @Test func broadcastingRulesForSymbols() throws {
        let graph = Graph(
            inputs: [Self.tensorValue("a", .float32, [.symbol("n"), .fixed(1), .symbol("m"), .symbol("k")]),
                     Self.tensorValue("b", .float32, [.fixed(1), .fixed(5), .symbol("m"), .symbol("j")]),
                     Self.tensorValue("c", .float32, [.symbol("n"), .unknown])],
            outputs: [Value(name: "sum"), Value(name: "eq"), Value(name: "w")],
            nodes: [node("Add", ["a", "b"], ["sum"]),
                    node("Equal", ["c", "a"], ["eq"]),
                    node("Where", ["eq", "a", "b"], ["w"])])
        let g = try Self.inferred(graph)
        // n vs 1 → n; 1 vs 5 → 5; m vs m → m; k vs j → unknown.
        #expect(Self.typeText(g, "sum") == "f32[n,5,m,?]")
        // c = [n, ?] right-aligned against [m, k]: n vs m → ?, ? vs k → ?.
        #expect(Self.typeText(g, "eq") == "bool[n,1,?,?]")
        #expect(Self.typeText(g, "w") == "f32[n,5,?,?]")
        let fixedVersusSymbol = Graph(
            inputs: [Self.tensorValue("a", .float32, [.symbol("n")]), Self.tensorValue("b", .float32, [.fixed(3)])],
            outputs: [Value(name: "y")], nodes: [node("Mul", ["a", "b"], ["y"])])
        #expect(Self.typeText(try Self.inferred(fixedVersusSymbol), "y") == "f32[3]")
    }

    /// Rules read and write the positions their op's schema requires; inference may run before the verifier
    /// (a user's pass pipeline, the fuzz target), so a node outside its schema's counts is skipped, not a
    /// trap (found by fuzzing: a Constant with no outputs).
    @Test func nodesOutsideTheirSchemasCountsAreLeftUnknownNotATrap() throws {
        var graph = Graph(inputs: [f32("a", [2])], outputs: [Value(name: "a")],
                          nodes: [Node(op: OpID("", "Constant"), inputs: [], outputs: [], attributes: ["value_float": .float(1)]),
                                  node("MatMul", ["a"], ["m"]), node("Relu", [], ["r"])])
        _ = try ShapeInference().run(&graph, context: PassContext())
        #expect(Self.typeText(graph, "m") == "-" && Self.typeText(graph, "r") == "-")
    }

    @Test func provablyWrongShapesThrowNamingTheNode() throws {
        let matmul = Graph(
            inputs: [f32("a", [2, 3]), f32("b", [4, 5])], outputs: [Value(name: "y")],
            nodes: [node("MatMul", ["a", "b"], ["y"], name: "bad_matmul")])
        #expect {
            _ = try Self.inferred(matmul)
        } throws: { error in
            guard let e = error as? KilnError else { return false }
            return e.code == .invalidModel && e.message.contains("bad_matmul") && e.message.contains("inner dims")
        }
        let add = Graph(
            inputs: [f32("a", [2, 3]), f32("b", [4])], outputs: [Value(name: "y")],
            nodes: [node("Add", ["a", "b"], ["y"], name: "bad_add")])
        #expect(throws: KilnError.self) { _ = try Self.inferred(add) }
        let reshape = Graph(
            inputs: [f32("a", [2, 3])], outputs: [Value(name: "y")], initializers: ["s": Tensor(int64s: [4, 2])],
            nodes: [node("Reshape", ["a", "s"], ["y"], name: "bad_reshape")])
        #expect(throws: KilnError.self) { _ = try Self.inferred(reshape) }
        let conv = Graph(
            inputs: [f32("x", [1, 3, 8, 8])], outputs: [Value(name: "y")],
            initializers: ["w": Tensor(zeros: .float32, shape: [4, 2, 3, 3])],
            nodes: [node("Conv", ["x", "w"], ["y"], name: "bad_conv")])
        #expect(throws: KilnError.self) { _ = try Self.inferred(conv) }
        // A symbol against a fixed inner dim is fine.
        let symbolic = Graph(
            inputs: [Self.tensorValue("a", .float32, [.fixed(2), .symbol("k")]), f32("b", [4, 5])],
            outputs: [Value(name: "y")], nodes: [node("MatMul", ["a", "b"], ["y"])])
        #expect(Self.typeText(try Self.inferred(symbolic), "y") == "f32[2,5]")
    }

    @Test func unknownOpsStayUnknown() throws {
        let graph = Graph(
            inputs: [f32("x", [2, 3])], outputs: [Value(name: "y"), Value(name: "z")],
            nodes: [Node(op: OpID("acme", "Mystery"), inputs: ["x"], outputs: ["m"]),
                    node("Relu", ["m"], ["y"]),
                    node("Shape", ["m"], ["z"])])
        let g = try Self.inferred(graph)
        #expect(g.valueTypes["m"] == nil)
        #expect(g.valueTypes["y"] == nil)
        #expect(g.outputs[0].type == nil)
        #expect(Self.typeText(g, "z") == "i64[?]")
    }

    @Test func passReportsChangesOnlyOnce() throws {
        var graph = Self.attentionBlock()
        #expect(try ShapeInference().run(&graph, context: PassContext()))
        #expect(try !ShapeInference().run(&graph, context: PassContext()))
        try Verifier.verify(graph)
    }

    @Test func declaredOutputDimsAreKeptAndUnknownOnesFilled() throws {
        let graph = Graph(
            inputs: [Self.tensorValue("x", .float32, [.symbol("n"), .fixed(4)])],
            outputs: [Self.tensorValue("y", .float32, [.symbol("batch"), .unknown])],
            nodes: [node("Relu", ["x"], ["y"])])
        let g = try Self.inferred(graph)
        #expect("\(g.outputs[0].type!)" == "f32[batch,4]")
    }

    /// One single-node case: inputs (name, type), constants, node, and the expected output types.
    struct Case: CustomTestStringConvertible {
        var op: String
        var inputs: [Value]
        var constants: [String: Tensor] = [:]
        var inputNames: [String]
        var attributes: [String: Attribute] = [:]
        var expected: [String]
        var testDescription: String { "\(op) → \(expected)" }
    }

    static let n = Dim.symbol("n")

    static let cases: [Case] = [
        Case(op: "Conv", inputs: [f32("x", [1, 3, 224, 224])], constants: ["w": Tensor(zeros: .float32, shape: [64, 3, 7, 7])],
             inputNames: ["x", "w"], attributes: ["strides": .ints([2, 2]), "pads": .ints([3, 3, 3, 3])],
             expected: ["f32[1,64,112,112]"]),
        Case(op: "Conv", inputs: [Self.tensorValue("x", .float32, [n, .fixed(8), .fixed(10), .fixed(9)])],
             constants: ["w": Tensor(zeros: .float32, shape: [8, 1, 3, 3])], inputNames: ["x", "w"],
             attributes: ["group": .int(8), "auto_pad": .string("SAME_UPPER"), "strides": .ints([2, 2])],
             expected: ["f32[n,8,5,5]"]),
        Case(op: "Conv", inputs: [Self.tensorValue("x", .float32, [n, .fixed(8), .symbol("h"), .symbol("w")])],
             constants: ["w": Tensor(zeros: .float32, shape: [16, 8, 1, 1])], inputNames: ["x", "w"],
             expected: ["f32[n,16,h,w]"]),
        Case(op: "ConvTranspose", inputs: [f32("x", [1, 4, 5, 5])], constants: ["w": Tensor(zeros: .float32, shape: [4, 2, 3, 3])],
             inputNames: ["x", "w"], attributes: ["strides": .ints([2, 2]), "group": .int(2), "output_padding": .ints([1, 1])],
             expected: ["f32[1,4,12,12]"]),
        Case(op: "MaxPool", inputs: [f32("x", [1, 64, 112, 112])], inputNames: ["x"],
             attributes: ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])],
             expected: ["f32[1,64,56,56]", "i64[1,64,56,56]"]),
        Case(op: "AveragePool", inputs: [f32("x", [1, 1, 31, 31])], inputNames: ["x"],
             attributes: ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2]), "ceil_mode": .int(1)],
             expected: ["f32[1,1,16,16]"]),
        Case(op: "AveragePool", inputs: [f32("x", [1, 1, 31, 31])], inputNames: ["x"],
             attributes: ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])],
             expected: ["f32[1,1,15,15]"]),
        Case(op: "GlobalAveragePool", inputs: [Self.tensorValue("x", .float32, [n, .fixed(512), .fixed(7), .fixed(7)])],
             inputNames: ["x"], expected: ["f32[n,512,1,1]"]),
        Case(op: "Flatten", inputs: [Self.tensorValue("x", .float32, [n, .fixed(512), .fixed(1), .fixed(1)])],
             inputNames: ["x"], expected: ["f32[n,512]"]),
        Case(op: "Gemm", inputs: [Self.tensorValue("a", .float32, [n, .fixed(784)])],
             constants: ["b": Tensor(zeros: .float32, shape: [512, 784]), "c": Tensor(zeros: .float32, shape: [512])],
             inputNames: ["a", "b", "c"], attributes: ["transB": .int(1)], expected: ["f32[n,512]"]),
        Case(op: "MatMul", inputs: [Self.tensorValue("a", .float32, [n, .fixed(1), .fixed(3), .fixed(4)]),
                                    f32("b", [5, 4, 6])], inputNames: ["a", "b"], expected: ["f32[n,5,3,6]"]),
        Case(op: "MatMul", inputs: [f32("a", [4]), f32("b", [2, 4, 6])], inputNames: ["a", "b"], expected: ["f32[2,6]"]),
        Case(op: "BatchNormalization", inputs: [Self.tensorValue("x", .float32, [n, .fixed(3), .fixed(4), .fixed(4)])],
             constants: ["s": Tensor(zeros: .float32, shape: [3]), "b": Tensor(zeros: .float32, shape: [3]),
                         "m": Tensor(zeros: .float32, shape: [3]), "v": Tensor(zeros: .float32, shape: [3])],
             inputNames: ["x", "s", "b", "m", "v"], expected: ["f32[n,3,4,4]"]),
        Case(op: "LayerNormalization", inputs: [Self.tensorValue("x", .float16, [n, .fixed(8), .fixed(16)])],
             constants: ["g": Tensor(zeros: .float16, shape: [16])], inputNames: ["x", "g"],
             attributes: ["axis": .int(1)], expected: ["f16[n,8,16]", "f32[n,1,1]", "f32[n,1,1]"]),
        Case(op: "Softmax", inputs: [Self.tensorValue("x", .float64, [n, .fixed(10)])], inputNames: ["x"], expected: ["f64[n,10]"]),
        Case(op: "Transpose", inputs: [Self.tensorValue("x", .float32, [n, .fixed(2), .fixed(3)])], inputNames: ["x"],
             expected: ["f32[3,2,n]"]),
        Case(op: "Concat", inputs: [Self.tensorValue("a", .float32, [n, .fixed(2)]), Self.tensorValue("b", .float32, [.unknown, .fixed(3)])],
             inputNames: ["a", "b"], attributes: ["axis": .int(1)], expected: ["f32[n,5]"]),
        Case(op: "Split", inputs: [Self.tensorValue("x", .float32, [n, .fixed(10)])], constants: ["s": Tensor(int64s: [3, 7])],
             inputNames: ["x", "s"], attributes: ["axis": .int(1)], expected: ["f32[n,3]", "f32[n,7]"]),
        Case(op: "Split", inputs: [f32("x", [7, 2])], inputNames: ["x"], attributes: ["num_outputs": .int(3)],
             expected: ["f32[3,2]", "f32[3,2]", "f32[1,2]"]),
        Case(op: "Slice", inputs: [Self.tensorValue("x", .float32, [n, .fixed(20), .fixed(10)])],
             constants: ["st": Tensor(int64s: [1, -1]), "en": Tensor(int64s: [1000, -10]), "ax": Tensor(int64s: [1, 2]),
                         "sp": Tensor(int64s: [2, -3])],
             inputNames: ["x", "st", "en", "ax", "sp"], expected: ["f32[n,10,3]"]),
        Case(op: "Gather", inputs: [f32("x", [5, 6, 7]), Self.tensorValue("i", .int64, [n, .fixed(2)])], inputNames: ["x", "i"],
             attributes: ["axis": .int(1)], expected: ["f32[5,n,2,7]"]),
        Case(op: "GatherElements", inputs: [f32("x", [5, 6]), Self.tensorValue("i", .int32, [.fixed(5), .fixed(2)])],
             inputNames: ["x", "i"], attributes: ["axis": .int(1)], expected: ["f32[5,2]"]),
        Case(op: "Unsqueeze", inputs: [Self.tensorValue("x", .float32, [n, .fixed(4)])], constants: ["a": Tensor(int64s: [-1, 0])],
             inputNames: ["x", "a"], expected: ["f32[1,n,4,1]"]),
        Case(op: "Squeeze", inputs: [Self.tensorValue("x", .float32, [n, .fixed(1), .fixed(4), .fixed(1)])],
             constants: ["a": Tensor(int64s: [1, -1])], inputNames: ["x", "a"], expected: ["f32[n,4]"]),
        Case(op: "Squeeze", inputs: [f32("x", [1, 3, 1])], inputNames: ["x"], expected: ["f32[3]"]),
        Case(op: "Expand", inputs: [Self.tensorValue("x", .float32, [n, .fixed(1)])], constants: ["s": Tensor(int64s: [2, 1, 6])],
             inputNames: ["x", "s"], expected: ["f32[2,n,6]"]),
        Case(op: "Shape", inputs: [Self.tensorValue("x", .float32, [n, .fixed(1), .fixed(4)])], inputNames: ["x"],
             attributes: ["start": .int(-2)], expected: ["i64[2]"]),
        Case(op: "ConstantOfShape", inputs: [], constants: ["s": Tensor(int64s: [2, 3])], inputNames: ["s"],
             attributes: ["value": .tensor(Tensor(shape: [1], [Int32(1)]))], expected: ["i32[2,3]"]),
        Case(op: "Tile", inputs: [Self.tensorValue("x", .float32, [n, .fixed(3)])], constants: ["r": Tensor(int64s: [1, 4])],
             inputNames: ["x", "r"], expected: ["f32[n,12]"]),
        Case(op: "Pad", inputs: [f32("x", [1, 3, 4, 4])], constants: ["p": Tensor(int64s: [0, 0, 1, 2, 0, 0, 3, 4])],
             inputNames: ["x", "p"], expected: ["f32[1,3,8,10]"]),
        Case(op: "Pad", inputs: [Self.tensorValue("x", .float32, [n, .fixed(4)])], constants: ["p": Tensor(int64s: [1, 1]),
             "v": Tensor(scalar: Float(0)), "a": Tensor(int64s: [-1])],
             inputNames: ["x", "p", "v", "a"], expected: ["f32[n,6]"]),
        Case(op: "Resize", inputs: [Self.tensorValue("x", .float32, [n, .fixed(3), .fixed(10), .fixed(10)])],
             constants: ["sc": Tensor(shape: [4], [Float(1), 1, 2.5, 0.5])], inputNames: ["x", "", "sc"],
             expected: ["f32[n,3,25,5]"]),
        Case(op: "Resize", inputs: [f32("x", [1, 3, 10, 20])], constants: ["sz": Tensor(int64s: [5, 5])],
             inputNames: ["x", "", "", "sz"],
             attributes: ["axes": .ints([2, 3]), "keep_aspect_ratio_policy": .string("not_larger")],
             expected: ["f32[1,3,3,5]"]),
        Case(op: "Range", inputs: [], constants: ["a": Tensor(scalar: Int64(2)), "b": Tensor(scalar: Int64(11)),
                                                  "c": Tensor(scalar: Int64(3))],
             inputNames: ["a", "b", "c"], expected: ["i64[3]"]),
        Case(op: "ReduceMean", inputs: [Self.tensorValue("x", .float32, [n, .fixed(3), .fixed(4)])], constants: ["a": Tensor(int64s: [-1])],
             inputNames: ["x", "a"], expected: ["f32[n,3,1]"]),
        Case(op: "ReduceSum", inputs: [Self.tensorValue("x", .float32, [n, .fixed(3), .fixed(4)])], constants: ["a": Tensor(int64s: [0, 2])],
             inputNames: ["x", "a"], attributes: ["keepdims": .int(0)], expected: ["f32[3]"]),
        Case(op: "ReduceMax", inputs: [f32("x", [2, 3])], inputNames: ["x"], expected: ["f32[1,1]"]),
        Case(op: "ArgMax", inputs: [Self.tensorValue("x", .float32, [n, .fixed(10)])], inputNames: ["x"],
             attributes: ["axis": .int(1), "keepdims": .int(0)], expected: ["i64[n]"]),
        Case(op: "TopK", inputs: [Self.tensorValue("x", .float32, [n, .fixed(10)])], constants: ["k": Tensor(int64s: [3])],
             inputNames: ["x", "k"], expected: ["f32[n,3]", "i64[n,3]"]),
        Case(op: "Cast", inputs: [Self.tensorValue("x", .float32, [n])], inputNames: ["x"], attributes: ["to": .int(7)],
             expected: ["i64[n]"]),
        Case(op: "CastLike", inputs: [Self.tensorValue("x", .float32, [n]), Self.tensorValue("y", .float16, [])],
             inputNames: ["x", "y"], expected: ["f16[n]"]),
        Case(op: "Less", inputs: [Self.tensorValue("x", .int32, [n, .fixed(1)]), Self.tensorValue("y", .int32, [.fixed(4)])],
             inputNames: ["x", "y"], expected: ["bool[n,4]"]),
        Case(op: "Sum", inputs: [Self.tensorValue("x", .float32, [n, .fixed(1)]), f32("y", [4]), f32("z", [1, 1])],
             inputNames: ["x", "y", "z"], expected: ["f32[n,4]"]),
        Case(op: "Clip", inputs: [Self.tensorValue("x", .float32, [n, .fixed(4)])], inputNames: ["x"], expected: ["f32[n,4]"]),
        Case(op: "Erf", inputs: [Self.tensorValue("x", .float32, [n, .fixed(4)])], inputNames: ["x"], expected: ["f32[n,4]"]),
        Case(op: "Dropout", inputs: [Self.tensorValue("x", .float32, [n, .fixed(4)])], inputNames: ["x"],
             expected: ["f32[n,4]", "bool[n,4]"]),
        Case(op: "Einsum", inputs: [Self.tensorValue("a", .float32, [n, .fixed(2), .fixed(3)]), f32("b", [3, 5])],
             inputNames: ["a", "b"], attributes: ["equation": .string("...ij,jk->...ik")], expected: ["f32[n,2,5]"]),
        Case(op: "Einsum", inputs: [f32("a", [4, 3]), f32("b", [3, 5])],
             inputNames: ["a", "b"], attributes: ["equation": .string("ij,jk")], expected: ["f32[4,5]"]),
        Case(op: "OneHot", inputs: [Self.tensorValue("i", .int64, [n])], constants: ["d": Tensor(scalar: Int64(10)),
             "v": Tensor(shape: [2], [Float(0), 1])], inputNames: ["i", "d", "v"], expected: ["f32[n,10]"]),
        Case(op: "DepthToSpace", inputs: [f32("x", [1, 8, 2, 3])], inputNames: ["x"], attributes: ["blocksize": .int(2)],
             expected: ["f32[1,2,4,6]"]),
        Case(op: "NonZero", inputs: [f32("x", [3, 4])], inputNames: ["x"], expected: ["i64[2,?]"]),
        Case(op: "LSTM", inputs: [f32("x", [7, 2, 5])],
             constants: ["w": Tensor(zeros: .float32, shape: [2, 12, 5]), "r": Tensor(zeros: .float32, shape: [2, 12, 3])],
             inputNames: ["x", "w", "r"], attributes: ["hidden_size": .int(3), "direction": .string("bidirectional")],
             expected: ["f32[7,2,2,3]", "f32[2,2,3]", "f32[2,2,3]"]),
        Case(op: "QuantizeLinear", inputs: [f32("x", [2, 3])], constants: ["s": Tensor(scalar: Float(1)),
             "z": Tensor(scalar: Int8(0))], inputNames: ["x", "s", "z"], expected: ["i8[2,3]"]),
    ]

    @Test(arguments: cases) func singleNodeRule(_ c: Case) throws {
        let outputs = c.expected.indices.map { "out\($0)" }
        let graph = Graph(inputs: c.inputs, outputs: outputs.map { Value(name: $0) }, initializers: c.constants,
                          nodes: [node(c.op, c.inputNames, outputs, c.attributes)])
        let g = try Self.inferred(graph)
        #expect(g.outputs.map { $0.type.map { "\($0)" } ?? "-" } == c.expected)
    }

    /// The whole-model test models (from scripts/make-models): every value gets a type whose dims are
    /// fixed or `batch`, and the inferred outputs equal the declared ones.
    @Test(.enabled(if: TestData.models != nil, TestData.modelsMissing), arguments: ["resnet18", "mobilenetv2", "bert", "mlp"])
    func testModelsInferCompletely(_ name: String) throws {
        let path = try TestData.model(name)
        let model = try Kiln.importONNX(path: path)
        var graph = model.graph
        graph.valueTypes = [:]
        for i in graph.outputs.indices { graph.outputs[i].type = nil }
        _ = try ShapeInference().run(&graph, context: PassContext())
        #expect(graph.outputs.map(\.type) == model.graph.outputs.map(\.type))
        var checked = 0
        for node in graph.nodes {
            for output in node.outputs where !output.isEmpty {
                let type = graph.valueTypes[output]?.tensorType
                let complete = type?.shape?.allSatisfy { $0.value != nil || $0 == .symbol("batch") } ?? false
                #expect(complete, "\(name): \(output) is \(type.map { "\($0)" } ?? "untyped")")
                checked += 1
            }
        }
        #expect(checked == graph.nodes.reduce(0) { $0 + $1.outputs.filter { !$0.isEmpty }.count })
        print("ShapeInferenceTests: \(name): \(checked) values typed")
    }

    /// Inference is linear in the graph size: a chain of 20,000 nodes (with shape arithmetic along
    /// the way) is inferred in well under the bound even in a debug build on a loaded machine.
    @Test func longChainsInferQuickly() throws {
        var nodes: [Node] = []
        var last = "x"
        for i in 0..<20_000 {
            let out = "v\(i)"
            switch i % 4 {
            case 0: nodes.append(node("Relu", [last], [out]))
            case 1: nodes.append(node("Shape", [last], ["s\(i)"])); nodes.append(node("Reshape", [last, "s\(i)"], [out]))
            case 2: nodes.append(node("Add", [last, "bias"], [out]))
            default: nodes.append(node("Transpose", [last], [out], ["perm": .ints([0, 1])]))
            }
            last = out
        }
        let graph = Graph(inputs: [Self.tensorValue("x", .float32, [.symbol("batch"), .fixed(64)])],
                          outputs: [Value(name: last)], initializers: ["bias": Tensor(zeros: .float32, shape: [64])],
                          nodes: nodes)
        let clock = ContinuousClock()
        let start = clock.now
        let g = try Self.inferred(graph)
        let elapsed = clock.now - start
        print("ShapeInferenceTests: \(nodes.count) nodes inferred in \(elapsed)")
        #expect(Self.typeText(g, last) == "f32[batch,64]")
        #expect(elapsed < .seconds(20))
    }

    @Test func ifBranchesJoin() throws {
        let thenBranch = Graph(name: "then", outputs: [Value(name: "t")], initializers: ["tc": Tensor(zeros: .float32, shape: [2, 3])],
                               nodes: [node("Relu", ["tc"], ["t"])])
        let elseBranch = Graph(name: "else", outputs: [Value(name: "e")], initializers: ["ec": Tensor(zeros: .float32, shape: [2, 5])],
                               nodes: [node("Neg", ["ec"], ["e"]) ])
        let graph = Graph(
            inputs: [Self.tensorValue("c", .bool, [])], outputs: [Value(name: "y")],
            nodes: [node("If", ["c"], ["y"], ["then_branch": .graph(thenBranch), "else_branch": .graph(elseBranch)])])
        let g = try Self.inferred(graph)
        #expect(Self.typeText(g, "y") == "f32[2,?]")
        guard case .graph(let inner)? = g.nodes[0].attributes["then_branch"] else { Issue.record("no branch"); return }
        #expect(Self.typeText(inner, "t") == "f32[2,3]")
    }
}
