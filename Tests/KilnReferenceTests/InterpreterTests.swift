import Kiln
import Testing
@testable import KilnReference

/// The interpreter's own behaviour: broadcasting, scoping, and errors that name the node.
@Suite struct InterpreterTests {
    func run(_ graph: Graph, _ inputs: [String: RuntimeValue]) throws -> [String: RuntimeValue] {
        try Session(model: Model(graph: graph), backend: ReferenceBackend()).run(inputs)
    }

    func floats(_ shape: [Int], _ values: [Float]) -> RuntimeValue { .tensor(Tensor(shape: shape, values)) }

    @Test func broadcastSourceIndicesFollowNumPy() {
        #expect(Broadcast.shape([[2, 1, 3], [4, 1]]) == [2, 4, 3])
        #expect(Broadcast.shape([[2, 3], [4]]) == nil)
        #expect(Broadcast.sourceIndices(from: [3], to: [2, 3]) == [0, 1, 2, 0, 1, 2])
        #expect(Broadcast.sourceIndices(from: [2, 1], to: [2, 3]) == [0, 0, 0, 1, 1, 1])
        #expect(Broadcast.sourceIndices(from: [], to: [2]) == [0, 0])
    }

    @Test func runsAChainWithBroadcasting() throws {
        let graph = Graph(
            inputs: [Value(name: "x", type: .tensor(TensorType(.float32, fixed: [2, 3])))],
            outputs: [Value(name: "y")],
            initializers: ["b": Tensor(shape: [3], [Float](arrayLiteral: 1, -10, 100))],
            nodes: [
                Node(name: "add", op: OpID("", "Add"), inputs: ["x", "b"], outputs: ["t"]),
                Node(name: "relu", op: OpID("", "Relu"), inputs: ["t"], outputs: ["y"]),
            ])
        let out = try run(graph, ["x": floats([2, 3], [1, 2, 3, 4, 5, 6])])
        #expect(out["y"]?.tensor?.elements(as: Float.self) == [2, 0, 103, 5, 0, 106])
    }

    @Test func subgraphsReadOuterValuesByName() throws {
        let branch = { (op: String) in
            Graph(name: op, outputs: [Value(name: "r_\(op)")],
                  nodes: [Node(op: OpID("", op), inputs: ["x", "x"], outputs: ["r_\(op)"])])
        }
        let graph = Graph(
            inputs: [Value(name: "c", type: .tensor(TensorType(.bool, fixed: []))),
                     Value(name: "x", type: .tensor(TensorType(.float32, fixed: [2])))],
            outputs: [Value(name: "y")],
            nodes: [Node(name: "if", op: OpID("", "If"), inputs: ["c"], outputs: ["y"],
                         attributes: ["then_branch": .graph(branch("Add")), "else_branch": .graph(branch("Mul"))])])
        let x = floats([2], [3, 4])
        #expect(try run(graph, ["c": .tensor(Tensor(scalar: true)), "x": x])["y"]?.tensor?.elements(as: Float.self) == [6, 8])
        #expect(try run(graph, ["c": .tensor(Tensor(scalar: false)), "x": x])["y"]?.tensor?.elements(as: Float.self) == [9, 16])
    }

    @Test func incompatibleShapesAreAnErrorNamingTheNode() throws {
        let graph = Graph(
            inputs: [Value(name: "a"), Value(name: "b")], outputs: [Value(name: "y")],
            nodes: [Node(name: "the_add", op: OpID("", "Add"), inputs: ["a", "b"], outputs: ["y"])])
        let error = #expect(throws: KilnError.self) {
            try run(graph, ["a": floats([2, 3], Array(repeating: 0, count: 6)), "b": floats([4], [0, 0, 0, 0])])
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("the_add") == true)
        #expect(error?.message.contains("do not broadcast") == true)
    }

    @Test func outOfRangeIndicesAreErrorsNotCrashes() throws {
        let graph = Graph(
            inputs: [Value(name: "data"), Value(name: "i")], outputs: [Value(name: "y")],
            nodes: [Node(name: "g", op: OpID("", "Gather"), inputs: ["data", "i"], outputs: ["y"])])
        #expect(throws: KilnError.self) {
            try run(graph, ["data": floats([3], [1, 2, 3]), "i": .tensor(Tensor(int64s: [5]))])
        }
    }

    @Test func unknownOpsAreListedBeforeAnythingRuns() throws {
        let graph = Graph(
            inputs: [Value(name: "x")], outputs: [Value(name: "z")],
            nodes: [Node(name: "n1", op: OpID("acme", "Frobnicate"), inputs: ["x"], outputs: ["y"]),
                    Node(name: "n2", op: OpID("", "NoSuchOp"), inputs: ["y"], outputs: ["z"])])
        let error = #expect(throws: KilnError.self) { try Session(model: Model(graph: graph, opsets: ["": 21, "acme": 1]), backend: ReferenceBackend()) }
        #expect(error?.code == .unsupported)
        #expect(error?.message.contains("(acme, Frobnicate, 1) at nodes: n1") == true)
        #expect(error?.message.contains("(ai.onnx, NoSuchOp, 21) at nodes: n2") == true)
    }

    @Test func everyKernelIsRegisteredOnceAndLookupWorks() {
        #expect(ReferenceBackend.supports(OpID("", "Conv")))
        #expect(ReferenceBackend.supports(OpID("ai.onnx", "Conv")))
        #expect(ReferenceBackend.supports(OpID("ai.onnx.ml", "LabelEncoder")))
        #expect(!ReferenceBackend.supports(OpID("", "NoSuchOp")))
        #expect(ReferenceBackend.supportedOps.count > 170)
    }
}
