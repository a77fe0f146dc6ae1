import Foundation
import Kiln
import KilnReference
import Testing

/// A small deterministic generator of floats in [-1, 1).
struct TestRandom {
    var state: UInt64

    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24) * 2 - 1
    }

    mutating func tensor(_ shape: [Int], positive: Bool = false) -> Tensor {
        Tensor(shape: shape, (0..<shape.reduce(1, *)).map { _ in positive ? abs(next()) + 0.5 : next() })
    }
}

/// A float32 value of a fixed shape.
func f32(_ name: String, _ shape: [Int]) -> Value { Value(name: name, type: .tensor(TensorType(.float32, fixed: shape))) }

/// A default-domain node.
func node(_ op: String, _ inputs: [String], _ outputs: [String], _ attributes: [String: Attribute] = [:], name: String = "") -> Node {
    Node(name: name, op: OpID("", op), inputs: inputs, outputs: outputs, attributes: attributes)
}

/// Small models built in Swift, each with inputs to run it on.
enum TestModels {
    /// `sum = x + y`, `relu = Relu(sum)`, x and y f32[2,3].
    static func addRelu() -> (Model, [String: Tensor]) {
        let graph = Graph(name: "add_relu", inputs: [f32("x", [2, 3]), f32("y", [2, 3])],
                          outputs: [f32("sum", [2, 3]), f32("relu", [2, 3])],
                          nodes: [node("Add", ["x", "y"], ["sum"], name: "add"), node("Relu", ["sum"], ["relu"], name: "relu")])
        return (Model(graph: graph), ["x": Tensor(shape: [2, 3], [Float](arrayLiteral: 1, -2, 3, -4, 5, -6)),
                                      "y": Tensor(shape: [2, 3], [Float](arrayLiteral: 0.5, 0.5, 0.5, 0.5, 0.5, 0.5))])
    }

    /// `y = If(c) then Relu(x) * 2 else Neg(x)`, with x f32[4] read by both branches from the enclosing graph.
    static func ifSubgraph(condition: Bool = true) -> (Model, [String: Tensor]) {
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
    static func largeWeight() -> (Model, [String: Tensor]) {
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
    static func convBatchNorm() -> (Model, [String: Tensor]) {
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
    static var all: [(name: String, make: () -> (Model, [String: Tensor]))] { [
        ("add_relu", { addRelu() }), ("if_subgraph", { ifSubgraph() }),
        ("large_weight", { largeWeight() }), ("conv_bn", { convBatchNorm() }),
    ] }
}

/// Runs `session` on `inputs` and returns the tensor outputs by name.
func run(_ session: Session, _ inputs: [String: Tensor]) throws -> [String: Tensor] {
    try session.run(inputs.mapValues { .tensor($0) }).compactMapValues(\.tensor)
}

/// Records an issue unless `actual` and `expected` hold the same tensors within `tolerance` (relative).
func expectClose(_ actual: [String: Tensor], _ expected: [String: Tensor], tolerance: Double = 1e-5,
                 _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(Set(actual.keys) == Set(expected.keys), "\(what): outputs \(actual.keys.sorted()) vs \(expected.keys.sorted())", sourceLocation: sourceLocation)
    for (name, e) in expected {
        guard let a = actual[name] else { continue }
        #expect(a.dtype == e.dtype && a.shape == e.shape, "\(what): \(name) is \(a.dtype)\(a.shape), expected \(e.dtype)\(e.shape)", sourceLocation: sourceLocation)
        guard a.shape == e.shape else { continue }
        let worst = zip(a.asDoubles(), e.asDoubles()).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst <= tolerance, "\(what): \(name) differs by \(worst)", sourceLocation: sourceLocation)
    }
}

/// A new, empty temporary folder.
func temporaryDirectory() throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-compiler-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

/// A backend with another name that runs graphs like kiln.reference, for compatibility tests.
struct RenamedBackend: Backend {
    let info: BackendInfo
    let compat: String
    let reference = ReferenceBackend()

    init(name: String, version: String, compat: String) {
        info = BackendInfo(name: name, vendor: "tests", version: version)
        self.compat = compat
    }

    func rejections(in graph: Graph) -> [Rejection] { reference.rejections(in: graph) }
    func prepare(_ graph: Graph) throws -> any Executable { try reference.prepare(graph) }
    func compile(_ graph: Graph, options: CompileOptions) throws -> Payload { Payload(bytes: Array("compiled".utf8), compat: compat) }
    func check(compat: String) -> String? { compat == self.compat ? nil : "\(info.name) \(info.version) reads '\(self.compat)' only" }
    func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        guard payload == Array("compiled".utf8) else { throw KilnError(.invalidArtifact, "bad payload") }
        return try reference.prepare(graph)
    }
}
