import Kiln
import KilnReference
import Testing
import KilnTestSupport
@testable import KilnPasses

@Suite struct DeadCodeEliminationTests {
    @Test func removesUnreadNodesAndInitializers() throws {
        var random = TestRandom(state: 1)
        let graph = Graph(
            inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3])],
            initializers: ["unused": random.tensor([3]), "w": random.tensor([3])],
            nodes: [
                node("Neg", ["x"], ["dead1"]),
                node("Exp", ["dead1"], ["dead2"]),
                node("RandomUniformLike", ["x"], ["noise"]),
                node("Add", ["x", "w"], ["a"]),
                node("Relu", ["a"], ["y"]),
            ])
        let (result, changed) = try apply(DeadCodeElimination(), to: graph)
        #expect(changed)
        #expect(result.nodes.map(\.op.name) == ["Add", "Relu"])
        #expect(result.initializers.keys.sorted() == ["w"])
        try expectSameOutputs(graph, result)
        let (again, changedAgain) = try apply(DeadCodeElimination(), to: result)
        #expect(!changedAgain)
        #expect(again.nodes.count == 2)
    }

    @Test func keepsValuesReadBySubgraphs() throws {
        let thenBranch = Graph(name: "then", outputs: [f32("t", [2])], nodes: [node("Neg", ["outer"], ["t"]),
                                                                                node("Exp", ["outer"], ["dead_inner"])])
        let elseBranch = Graph(name: "else", outputs: [f32("outer", [2])])
        let graph = Graph(
            inputs: [Value(name: "c", type: .tensor(TensorType(.bool, fixed: []))), f32("x", [2])],
            outputs: [f32("y", [2])],
            nodes: [
                node("Relu", ["x"], ["outer"]),
                node("Sigmoid", ["x"], ["unused"]),
                node("If", ["c"], ["y"], ["then_branch": .graph(thenBranch), "else_branch": .graph(elseBranch)]),
            ])
        let (result, changed) = try apply(DeadCodeElimination(), to: graph)
        #expect(changed)
        try Verifier.verify(result)
        #expect(result.nodes.map(\.op.name) == ["Relu", "If"])
        #expect(count("Exp", in: result) == 0)
        #expect(count("Neg", in: result) == 1)
        for flag in [true, false] {
            let inputs = ["c": Tensor(scalar: flag), "x": Tensor(shape: [2], [Float(-1), 2])]
            let expected = try run(graph, inputs)["y"]!.asDoubles()
            let actual = try run(result, inputs)["y"]!.asDoubles()
            #expect(expected == actual)
        }
    }
}

@Suite struct CommonSubexpressionEliminationTests {
    @Test func mergesDuplicates() throws {
        let graph = Graph(
            inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3]), f32("z", [3, 2])],
            nodes: [
                node("Relu", ["x"], ["r1"]),
                node("Relu", ["x"], ["r2"]),
                node("Add", ["r1", "r2"], ["s"]),
                node("Neg", ["s"], ["n1"]),
                node("Neg", ["s"], ["n2"]),
                node("Mul", ["n1", "n2"], ["y"]),
                node("Transpose", ["x"], ["t1"], ["perm": .ints([1, 0])]),
                node("LeakyRelu", ["x"], ["l1"], ["alpha": .float(0.1)]),
                node("LeakyRelu", ["x"], ["l2"], ["alpha": .float(0.2)]),
                node("Sub", ["l1", "l2"], ["d"]),
                node("Transpose", ["d"], ["z"], ["perm": .ints([1, 0])]),
            ])
        let (result, changed) = try apply(CommonSubexpressionElimination(), to: graph)
        #expect(changed)
        #expect(count("Relu", in: result) == 1)
        #expect(count("Neg", in: result) == 1)
        #expect(count("LeakyRelu", in: result) == 2)  // different attributes
        #expect(count("Transpose", in: result) == 2)  // different inputs
        try expectSameOutputs(graph, result)
    }

    @Test func leavesRandomOpsAndGraphOutputs() throws {
        let graph = Graph(
            inputs: [f32("x", [4])], outputs: [f32("a", [4]), f32("b", [4]), f32("c", [4])],
            nodes: [
                node("RandomUniformLike", ["x"], ["u1"]),
                node("RandomUniformLike", ["x"], ["u2"]),
                node("Add", ["u1", "u2"], ["c"]),
                node("Relu", ["x"], ["a"]),
                node("Relu", ["x"], ["b"]),
            ])
        let (result, changed) = try apply(CommonSubexpressionElimination(), to: graph)
        #expect(!changed)
        #expect(result.nodes.count == 5)
    }
}

@Suite struct AlgebraicSimplificationTests {
    @Test func removesNoOps() throws {
        let graph = Graph(
            inputs: [f32("x", [2, 3, 4])], outputs: [f32("y", [2, 3, 4])],
            initializers: [
                "pads": Tensor(int64s: [0, 0, 0, 0, 0, 0]),
                "starts": Tensor(int64s: [0, 0]), "ends": Tensor(int64s: [3, Int.max]), "axes": Tensor(int64s: [1, 2]),
            ],
            nodes: [
                node("Identity", ["x"], ["i1"]),
                node("Dropout", ["i1"], ["d"]),
                node("Cast", ["d"], ["c"], ["to": .int(DType.float32.onnxCode)]),
                node("Pad", ["c", "pads"], ["p"]),
                node("Slice", ["p", "starts", "ends", "axes"], ["s"]),
                node("Relu", ["s"], ["r"]),
                node("Identity", ["r"], ["y"]),
            ],
            valueTypes: ["i1": .tensor(TensorType(.float32, fixed: [2, 3, 4])),
                         "d": .tensor(TensorType(.float32, fixed: [2, 3, 4])),
                         "p": .tensor(TensorType(.float32, fixed: [2, 3, 4]))])
        let (result, changed) = try apply(AlgebraicSimplification(), to: graph)
        #expect(changed)
        #expect(result.nodes.map(\.op.name) == ["Relu"])
        #expect(result.nodes[0].inputs == ["x"])
        #expect(result.nodes[0].outputs == ["y"])  // the graph output keeps its name
        try expectSameOutputs(graph, result)
    }

    @Test func keepsRealWork() throws {
        let graph = Graph(
            inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3]), f32("m", [2, 3]), f32("z", [2, 3])],
            initializers: ["pads": Tensor(int64s: [0, 1, 0, 0]), "starts": Tensor(int64s: [0]), "ends": Tensor(int64s: [2]),
                           "axes": Tensor(int64s: [1]), "train": Tensor(scalar: true)],
            nodes: [
                node("Cast", ["x"], ["c"], ["to": .int(DType.float64.onnxCode)]),
                node("Cast", ["c"], ["c32"], ["to": .int(DType.float32.onnxCode)]),
                node("Pad", ["c32", "pads"], ["p"]),
                node("Slice", ["p", "starts", "ends", "axes"], ["s"]),  // drops the padding column
                node("Relu", ["s"], ["y"]),
                node("Dropout", ["x"], ["m"]),  // a graph output: kept as the source is a graph input
                node("Identity", ["x"], ["z"]),
            ])
        let (result, _) = try apply(AlgebraicSimplification(), to: graph)
        #expect(count("Cast", in: result) == 2)
        #expect(count("Pad", in: result) == 1)
        #expect(count("Slice", in: result) == 1)
        #expect(count("Identity", in: result) == 1)
        try expectSameOutputs(graph, result)
    }

    @Test func collapsesReshapeAndTransposeChains() throws {
        let graph = Graph(
            inputs: [f32("x", [2, 3, 4])], outputs: [f32("y", [2, 3, 4]), f32("z", [4, 2, 3]), f32("w", [4, 6])],
            initializers: ["s1": Tensor(int64s: [6, 4]), "s2": Tensor(int64s: [4, -1])],
            nodes: [
                node("Transpose", ["x"], ["t1"], ["perm": .ints([2, 0, 1])]),
                node("Transpose", ["t1"], ["t2"], ["perm": .ints([1, 2, 0])]),  // back to x
                node("Relu", ["t2"], ["y"]),
                node("Transpose", ["x"], ["u1"], ["perm": .ints([1, 0, 2])]),
                node("Transpose", ["u1"], ["z"], ["perm": .ints([2, 1, 0])]),  // composes to [2, 0, 1]
                node("Reshape", ["x", "s1"], ["r1"]),
                node("Reshape", ["r1", "s2"], ["w"]),
            ])
        var (result, changed) = try apply(AlgebraicSimplification(), to: graph)
        #expect(changed)
        _ = try DeadCodeElimination().run(&result, context: referenceContext)
        #expect(count("Transpose", in: result) == 1)
        #expect(count("Reshape", in: result) == 1)
        #expect(result.nodes.first { $0.op.name == "Transpose" }?.inputs == ["x"])
        #expect(result.nodes.first { $0.op.name == "Reshape" }?.inputs == ["x", "s2"])
        try expectSameOutputs(graph, result)
    }

    @Test func simplifiesSubgraphs() throws {
        let body = Graph(name: "then", outputs: [f32("t", [2])], nodes: [node("Identity", ["x"], ["i"]), node("Neg", ["i"], ["t"])])
        let other = Graph(name: "else", outputs: [f32("e", [2])], nodes: [node("Identity", ["x"], ["e"])])
        let graph = Graph(
            inputs: [Value(name: "c", type: .tensor(TensorType(.bool, fixed: []))), f32("x", [2])], outputs: [f32("y", [2])],
            nodes: [node("If", ["c"], ["y"], ["then_branch": .graph(body), "else_branch": .graph(other)])])
        let (result, changed) = try apply(AlgebraicSimplification(), to: graph)
        #expect(changed)
        #expect(count("Identity", in: result) == 1)  // the else branch returns an outer value through it
        try Verifier.verify(result)
        for flag in [true, false] {
            let inputs = ["c": Tensor(scalar: flag), "x": Tensor(shape: [2], [Float(-1), 2])]
            #expect(try run(graph, inputs)["y"]!.asDoubles() == run(result, inputs)["y"]!.asDoubles())
        }
    }
}

@Suite struct ConstantFoldingTests {
    static func graph() -> Graph {
        var random = TestRandom(state: 3)
        return Graph(
            inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3])],
            initializers: ["a": random.tensor([2, 3]), "b": random.tensor([3]), "shape": Tensor(int64s: [3, 2])],
            nodes: [
                node("Add", ["a", "b"], ["ab"]),
                node("Exp", ["ab"], ["e"]),
                node("Reshape", ["e", "shape"], ["r"]),
                node("Transpose", ["r"], ["rt"], ["perm": .ints([1, 0])]),
                node("Mul", ["x", "rt"], ["y"]),
            ])
    }

    @Test func foldsConstantChains() throws {
        let graph = Self.graph()
        var (result, changed) = try apply(ConstantFolding(), to: graph)
        #expect(changed)
        #expect(result.nodes.map(\.op.name) == ["Mul"])
        #expect(result.initializers["rt"]?.shape == [2, 3])
        _ = try DeadCodeElimination().run(&result, context: referenceContext)
        #expect(result.initializers.keys.sorted() == ["rt"])
        try expectSameOutputs(graph, result)
    }

    @Test func respectsSizeCapAndMissingEvaluator() throws {
        let graph = Self.graph()
        let (capped, cappedChanged) = try apply(ConstantFolding(), to: graph,
                                                context: PassContext(evaluator: referenceEvaluator, maxFoldedBytes: 8))
        #expect(!cappedChanged)
        #expect(capped.nodes.count == 5)
        let (none, noneChanged) = try apply(ConstantFolding(), to: graph, context: PassContext())
        #expect(!noneChanged)
        #expect(none.nodes.count == 5)
    }

    @Test func leavesOverridableInitializersAndRandomOps() throws {
        var random = TestRandom(state: 4)
        let graph = Graph(
            inputs: [f32("x", [3]), f32("k", [3])], outputs: [f32("y", [3])],
            initializers: ["k": random.tensor([3])],
            nodes: [
                node("Neg", ["k"], ["nk"]),  // k is an input with a default: not constant
                node("RandomUniform", [], ["u"], ["shape": .ints([3])]),
                node("Mul", ["u", "nk"], ["un"]),
                node("Add", ["x", "un"], ["y"]),
            ])
        let (result, changed) = try apply(ConstantFolding(), to: graph)
        #expect(!changed)
        #expect(result.nodes.count == 4)
    }
}

@Suite struct BatchNormFoldingTests {
    static func bnParams(_ prefix: String, _ channels: Int, _ random: inout TestRandom) -> [String: Tensor] {
        ["\(prefix).scale": random.tensor([channels]), "\(prefix).bias": random.tensor([channels]),
         "\(prefix).mean": random.tensor([channels]), "\(prefix).var": random.tensor([channels], positive: true)]
    }

    static func bn(_ prefix: String, _ input: String, _ output: String) -> Node {
        node("BatchNormalization", [input, "\(prefix).scale", "\(prefix).bias", "\(prefix).mean", "\(prefix).var"], [output],
             ["epsilon": .float(1e-3)])
    }

    @Test func foldsIntoConv() throws {
        var random = TestRandom(state: 5)
        var initializers = Self.bnParams("bn", 4, &random)
        initializers["w"] = random.tensor([4, 2, 3, 3])
        initializers["b"] = random.tensor([4])
        let graph = Graph(
            inputs: [f32("x", [1, 4, 5, 5])], outputs: [f32("y", [1, 4, 5, 5])], initializers: initializers,
            nodes: [node("Conv", ["x", "w", "b"], ["c"], ["pads": .ints([1, 1, 1, 1]), "group": .int(2)], name: "conv"),
                    Self.bn("bn", "c", "y")])
        var (result, changed) = try apply(BatchNormFolding(), to: graph)
        #expect(changed)
        #expect(result.nodes.map(\.op.name) == ["Conv"])
        #expect(result.nodes[0].outputs == ["y"])
        _ = try DeadCodeElimination().run(&result, context: referenceContext)
        #expect(result.initializers.count == 2)
        try expectSameOutputs(graph, result)
    }

    @Test func foldsIntoGemm() throws {
        for transB in [0, 1] {
            var random = TestRandom(state: 6)
            var initializers = Self.bnParams("bn", 5, &random)
            initializers["w"] = random.tensor(transB == 1 ? [5, 3] : [3, 5])
            initializers["c"] = random.tensor([1, 5])
            let graph = Graph(
                inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 5])], initializers: initializers,
                nodes: [node("Gemm", ["x", "w", "c"], ["g"], ["transB": .int(transB), "alpha": .float(0.5), "beta": .float(2)]),
                        Self.bn("bn", "g", "y")])
            let (result, changed) = try apply(BatchNormFolding(), to: graph)
            #expect(changed)
            #expect(result.nodes.map(\.op.name) == ["Gemm"])
            try expectSameOutputs(graph, result)
        }
    }

    @Test func foldsIntoTwoDimensionalMatMul() throws {
        var random = TestRandom(state: 8)
        var initializers = Self.bnParams("bn", 4, &random)
        initializers["w"] = random.tensor([3, 4])
        let graph = Graph(
            inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 4])], initializers: initializers,
            nodes: [node("MatMul", ["x", "w"], ["m"]), Self.bn("bn", "m", "y")])
        let (result, changed) = try apply(BatchNormFolding(), to: graph)
        #expect(changed)
        #expect(result.nodes.map(\.op.name) == ["Gemm"])
        try expectSameOutputs(graph, result)
    }

    @Test func leavesSharedOrNonConstantProducers() throws {
        var random = TestRandom(state: 7)
        var initializers = Self.bnParams("bn", 2, &random)
        initializers["w"] = random.tensor([2, 2, 1, 1])
        let graph = Graph(
            inputs: [f32("x", [1, 2, 3, 3]), f32("w2", [2, 2, 1, 1])],
            outputs: [f32("y", [1, 2, 3, 3]), f32("c", [1, 2, 3, 3]), f32("z", [1, 2, 3, 3])], initializers: initializers,
            nodes: [node("Conv", ["x", "w"], ["c"]), Self.bn("bn", "c", "y"),  // c is also a graph output
                    node("Conv", ["x", "w2"], ["d"]), Self.bn("bn", "d", "z")])  // weights are an input
        let (result, changed) = try apply(BatchNormFolding(), to: graph)
        #expect(!changed)
        #expect(count("BatchNormalization", in: result) == 2)
    }
}
