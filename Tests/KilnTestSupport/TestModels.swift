import Kiln
import KilnTooling

/// Small models built in Swift, each with inputs to run it on. The golden artifact fixtures under
/// Tests/Fixtures/artifacts were compiled from these (scripts/make-fixtures): changing a model or its
/// random data changes what a new fixture folder would hold, never the committed ones.
public enum TestModels {
    /// `sum = x + y`, `relu = Relu(sum)`, x and y f32[2,3].
    public static func addRelu() -> (Model, [String: Tensor]) {
        let graph = Graph(name: "add_relu", inputs: [f32("x", [2, 3]), f32("y", [2, 3])],
                          outputs: [f32("sum", [2, 3]), f32("relu", [2, 3])],
                          nodes: [node("Add", ["x", "y"], ["sum"], name: "add"), node("Relu", ["sum"], ["relu"], name: "relu")])
        return (Model(graph: graph), ["x": Tensor(shape: [2, 3], [Float](arrayLiteral: 1, -2, 3, -4, 5, -6)),
                                      "y": Tensor(shape: [2, 3], [Float](arrayLiteral: 0.5, 0.5, 0.5, 0.5, 0.5, 0.5))])
    }

    /// Writes the inputs of `addRelu` (which `ONNXBuilder.addRelu` also takes) as `folder`/x.npy and
    /// `folder`/y.npy, and returns their `kiln run` arguments (`--input x=… --input y=…`).
    public static func writeAddReluInputs(in folder: String) throws -> [String] {
        let inputs = addRelu().1
        var arguments: [String] = []
        for name in ["x", "y"] {
            try NPY.write(inputs[name]!, to: "\(folder)/\(name).npy")
            arguments += ["--input", "\(name)=\(folder)/\(name).npy"]
        }
        return arguments
    }

    /// `y = If(c) then Relu(x) * 2 else Neg(x)`, with x f32[4] read by both branches from the enclosing graph.
    public static func ifSubgraph(condition: Bool = true) -> (Model, [String: Tensor]) {
        let thenBranch = Graph(name: "then", outputs: [f32("then_out", [4])],
                               initializers: ["two": Tensor(scalar: Float(2))],
                               nodes: [node("Relu", ["x"], ["then_relu"]), node("Mul", ["then_relu", "two"], ["then_out"])])
        let elseBranch = Graph(name: "else", outputs: [f32("else_out", [4])], nodes: [node("Neg", ["x"], ["else_out"])])
        let graph = Graph(name: "if_subgraph",
                          inputs: [Value(name: "c", type: .tensor(TensorType(.bool, fixed: []))), f32("x", [4])],
                          outputs: [f32("y", [4])],
                          nodes: [node("If", ["c"], ["y"], ["then_branch": .graph(thenBranch), "else_branch": .graph(elseBranch)], name: "if")])
        return (Model(graph: graph), ["c": Tensor(scalar: condition), "x": Tensor(shape: [4], [Float](arrayLiteral: -1.5, 2, -3, 4))])
    }

    /// `y = Relu(x · Transpose(Wt) + b)`: a 64×64 weight (16 KiB, so it lives in the weights section) whose
    /// Transpose constant folding computes at compile time.
    public static func largeWeight() -> (Model, [String: Tensor]) {
        var random = TestRandom(state: 42)
        let graph = Graph(name: "large_weight", inputs: [f32("x", [2, 64])], outputs: [f32("y", [2, 64])],
                          initializers: ["Wt": random.tensor([64, 64]), "b": random.tensor([64])],
                          nodes: [node("Transpose", ["Wt"], ["W"], ["perm": .ints([1, 0])], name: "transpose"),
                                  node("MatMul", ["x", "W"], ["xw"], name: "matmul"),
                                  node("Add", ["xw", "b"], ["xwb"], name: "bias"),
                                  node("Relu", ["xwb"], ["y"], name: "relu")])
        return (Model(graph: graph), ["x": random.tensor([2, 64])])
    }

    /// Conv → BatchNormalization → Relu (BN folding removes the BatchNormalization at opt level 2),
    /// plus an Identity and a common subexpression for the simplifier and CSE.
    public static func convBatchNorm() -> (Model, [String: Tensor]) {
        var random = TestRandom(state: 7)
        let graph = Graph(name: "conv_bn", inputs: [f32("x", [1, 3, 8, 8])], outputs: [f32("y", [1, 4, 6, 6])],
                          initializers: ["W": random.tensor([4, 3, 3, 3]), "B": random.tensor([4]),
                                         "scale": random.tensor([4], positive: true), "bias": random.tensor([4]),
                                         "mean": random.tensor([4]), "var": random.tensor([4], positive: true)],
                          nodes: [node("Identity", ["x"], ["xi"], name: "identity"),
                                  node("Conv", ["xi", "W", "B"], ["c"], name: "conv"),
                                  node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"], name: "bn"),
                                  node("Relu", ["bn"], ["r1"], name: "relu1"),
                                  node("Relu", ["bn"], ["r2"], name: "relu2"),
                                  node("Add", ["r1", "r2"], ["y"], name: "add")])
        return (Model(graph: graph), ["x": random.tensor([1, 3, 8, 8])])
    }

    /// Every model above, by name.
    public static var all: [(name: String, make: () -> (Model, [String: Tensor]))] { [
        ("add_relu", { addRelu() }), ("if_subgraph", { ifSubgraph() }),
        ("large_weight", { largeWeight() }), ("conv_bn", { convBatchNorm() }),
    ] }
}
