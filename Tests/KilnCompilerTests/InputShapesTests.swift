import Kiln
import Testing

/// `Compiler.Options.inputShapes` (`kiln compile --input-shape`): symbolic dims fixed at compile time, the
/// same symbols elsewhere following, shape arithmetic folded, and the artifact taking only that shape.
struct InputShapesTests {
    /// z = (x + y) · reshape(x, Shape(y)): x and y of dims [n, 3], z of [n, 3].
    static func model() -> Model {
        func value(_ name: String) -> Value { Value(name: name, type: .tensor(TensorType(.float32, [.symbol("n"), .fixed(3)]))) }
        return Model(graph: Graph(
            inputs: [value("x"), value("y")], outputs: [value("z")],
            nodes: [Node(name: "add", op: OpID("", "Add"), inputs: ["x", "y"], outputs: ["s"]),
                    Node(name: "shape", op: OpID("", "Shape"), inputs: ["y"], outputs: ["dims"]),
                    Node(name: "reshape", op: OpID("", "Reshape"), inputs: ["x", "dims"], outputs: ["r"]),
                    Node(name: "mul", op: OpID("", "Mul"), inputs: ["s", "r"], outputs: ["z"])]))
    }

    @Test func aSymbolFixedOnOneInputFixesItEverywhereAndShapeArithmeticFolds() throws {
        var options = Compiler.Options()
        options.inputShapes = ["x": [2, 3]]
        let output = try Kiln.compiler(options: options).compile(model: Self.model())
        // Shape(y) is a constant once y is [2, 3] ('n' follows from x): it folds away.
        #expect(output.summary.nodesAfter == 3, "\(output.summary.nodesAfter) nodes")
        let dynamic = try Kiln.compiler().compile(model: Self.model())
        #expect(dynamic.summary.nodesAfter == 4)

        let session = try Kiln.load(artifactBytes: output.bytes)
        let x = Tensor(shape: [2, 3], [Float](arrayLiteral: 1, 2, 3, 4, 5, 6)), y = Tensor(shape: [2, 3], [Float](repeating: 1, count: 6))
        let z = try #require(session.run(["x": .tensor(x), "y": .tensor(y)])["z"]?.tensor)
        #expect(z.elements(as: Float.self) == [2, 6, 12, 20, 30, 42])
        // The artifact takes that shape only.
        let three = Tensor(shape: [3, 3], [Float](repeating: 1, count: 9))
        let error = #expect(throws: KilnError.self) { _ = try session.run(["x": .tensor(three), "y": .tensor(three)]) }
        #expect(error?.message.contains("x") == true, "\(error?.message ?? "")")
    }

    @Test(arguments: [
        (["w": [2, 3]], "no input of that name (inputs: x, y)"),
        (["x": [2]], "1 dims given, the model's input has 2 (n, 3)"),
        (["x": [2, 4]], "dim 1 is 3 in the model, not 4"),
        (["x": [2, 3], "y": [5, 3]], "dim 0 ('n') is given 5, but 'x' gives 'n' 2"),
        (["x": [-1, 3]], "size -1 is negative"),
    ])
    func mistakesAreTypedErrorsNamingTheInputAndDim(shapes: [String: [Int]], words: String) {
        var options = Compiler.Options()
        options.inputShapes = shapes
        let error = #expect(throws: KilnError.self) { _ = try Kiln.compiler(options: options).compile(model: Self.model()) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains(words) == true, "\(error?.message ?? "")")
    }

    @Test func theFlagSyntaxParses() throws {
        let parsed = try InputShapes.parse("images=1,3,224,224")
        #expect(parsed.name == "images" && parsed.dims == [1, 3, 224, 224])
        let spaced = try InputShapes.parse("a=b=2, 3")
        #expect(spaced.name == "a=b" && spaced.dims == [2, 3])
        #expect(try InputShapes.parse("scalar=").dims == [])
        #expect(throws: KilnError.self) { _ = try InputShapes.parse("images") }
        #expect(throws: KilnError.self) { _ = try InputShapes.parse("images=1,x") }
    }
}
