import KilnIR
import Testing

/// The textual IR printer.
@Suite struct PrinterTests {
    /// A graph with attributes, an omitted input and output, an op of a custom domain, an initializer and an If
    /// with two branches.
    static func sample() -> Graph {
        let thenBranch = Graph(name: "then_body", outputs: [Value(name: "t", type: .tensor(TensorType(.float32, fixed: [2])))],
                               nodes: [Node(op: OpID("", "Identity"), inputs: ["y"], outputs: ["t"])])
        let elseBranch = Graph(name: "else_body", outputs: [Value(name: "e")],
                               nodes: [Node(op: OpID("", "Neg"), inputs: ["y"], outputs: ["e"])])
        return Graph(
            name: "main",
            inputs: [Value(name: "x", type: .tensor(TensorType(.float32, [.symbol("batch"), .fixed(3)]))),
                     Value(name: "c", type: .tensor(TensorType(.bool, fixed: [])))],
            outputs: [Value(name: "out", type: .tensor(TensorType(.float32, fixed: [2])))],
            initializers: ["w": Tensor(shape: [3], [Float](arrayLiteral: 1, 2, 3))],
            nodes: [
                Node(name: "conv 1", op: OpID("", "Conv"), inputs: ["x", "w", ""], outputs: ["y"],
                     attributes: ["strides": .ints([1, 1]), "pads": .ints([0, 0, 1, 1]), "auto_pad": .string("NOTSET"),
                                  "alpha": .float(0.5)]),
                Node(op: OpID("com.example", "Encode"), inputs: ["y"], outputs: ["", "weird name"]),
                Node(name: "if", op: OpID("", "If"), inputs: ["c"], outputs: ["out"],
                     attributes: ["then_branch": .graph(thenBranch), "else_branch": .graph(elseBranch)]),
            ]
        )
    }

    @Test func printsGraph() {
        let expected = """
            graph main {
              input %x: f32[batch,3]
              input %c: bool[]
              init %w: f32[3]
              %y = Conv(%x, %w, _) {alpha=0.5, auto_pad="NOTSET", pads=[0, 0, 1, 1], strides=[1, 1]}  # conv 1
              _, %"weird name" = com.example.Encode(%y)
              %out = If(%c) {}  # if
                else_branch: graph else_body {
                  %e = Neg(%y)
                  output %e
                }
                then_branch: graph then_body {
                  %t = Identity(%y)
                  output %t: f32[2]
                }
              output %out: f32[2]
            }

            """
        #expect(Self.sample().printed() == expected)
    }

    @Test func printingIsDeterministic() {
        // Dictionaries iterate in a different order in every process; sorting makes the text stable.
        let g = Self.sample()
        var shuffled = g
        shuffled.nodes[0].attributes = Dictionary(uniqueKeysWithValues: g.nodes[0].attributes.shuffled().map { ($0.key, $0.value) })
        #expect(g.printed() == shuffled.printed())
    }

    @Test func printsModelHeader() {
        let model = Model(graph: Graph(name: "g"), opsets: ["ai.onnx.ml": 3, "": 17], producer: "pytorch 2.3",
                          sourceIRVersion: 8, metadata: ["b": "2", "a": "x\"y"])
        let lines = model.printed().split(separator: "\n").map(String.init)
        #expect(lines[0] == "model producer=\"pytorch 2.3\" ir_version=8")
        #expect(lines[1] == "opsets ai.onnx=17, ai.onnx.ml=3")
        #expect(lines[2] == "metadata \"a\"=\"x\\\"y\"")
        #expect(lines[3] == "metadata \"b\"=\"2\"")
        #expect(lines[4] == "graph g {")
    }

    @Test func printsAttributeKinds() {
        #expect(Printer.text(.floats([1, 0.25])) == "[1.0, 0.25]")
        #expect(Printer.text(.strings(["a", "b\n"])) == "[\"a\", \"b\\n\"]")
        #expect(Printer.text(.tensor(Tensor(int64s: [4, 5]))) == "tensor<i64[2]>{4, 5}")
        #expect(Printer.text(.tensor(Tensor(shape: [9], [Float](repeating: 0, count: 9)))) == "tensor<f32[9]>")
        #expect(Printer.text(.type(.sequence(.tensor(TensorType(.int32, nil))))) == "seq<i32[*]>")
        #expect(Printer.text(.float(.nan)) == "nan")
    }
}

/// The IR verifier.
@Suite struct VerifierTests {
    /// Verifies `graph` and returns the error message, or nil when it is valid.
    func problems(_ graph: Graph) -> String? {
        do {
            try Verifier.verify(graph)
            return nil
        } catch let error as KilnError {
            #expect(error.code == .invalidModel)
            return error.message
        } catch {
            return "unexpected error \(error)"
        }
    }

    let f32 = ValueType.tensor(TensorType(.float32, fixed: [2]))

    @Test func acceptsValidGraphs() throws {
        try Verifier.verify(PrinterTests.sample())
        let g = Graph(inputs: [Value(name: "x", type: f32), Value(name: "w", type: f32)], outputs: [Value(name: "x")],
                      initializers: ["w": Tensor(shape: [2], [Float](arrayLiteral: 1, 2)), "k": Tensor(int64s: [1])])
        try g.verify()
    }

    @Test func rejectsUseBeforeProduction() throws {
        let g = Graph(inputs: [Value(name: "x", type: f32)], outputs: [Value(name: "z")],
                      nodes: [Node(op: OpID("", "Relu"), inputs: ["y"], outputs: ["z"]),
                              Node(op: OpID("", "Relu"), inputs: ["x"], outputs: ["y"])])
        let message = try #require(problems(g))
        #expect(message.contains("reads 'y' before it is produced (by node #1)"), "\(message)")
        #expect(!message.contains("cycle"))
    }

    @Test func rejectsUndefinedValues() throws {
        let g = Graph(outputs: [Value(name: "z")], nodes: [Node(name: "n", op: OpID("", "Relu"), inputs: ["nowhere"], outputs: ["z"])])
        let message = try #require(problems(g))
        #expect(message.contains("node #0 'n' (Relu) reads 'nowhere', which is not produced"), "\(message)")
    }

    @Test func rejectsSecondDefinitions() throws {
        let g = Graph(inputs: [Value(name: "x", type: f32)], outputs: [Value(name: "x")],
                      nodes: [Node(op: OpID("", "Relu"), inputs: ["x"], outputs: ["y"]),
                              Node(op: OpID("", "Relu"), inputs: ["x"], outputs: ["y"]),
                              Node(op: OpID("", "Relu"), inputs: ["y"], outputs: ["x"])])
        let message = try #require(problems(g))
        #expect(message.contains("redefines 'y'"), "\(message)")
        #expect(message.contains("redefines 'x'"), "\(message)")
        #expect(message.contains("2 problems"), "\(message)")
    }

    @Test func rejectsInitializerShadowingANodeOutput() throws {
        let g = Graph(outputs: [Value(name: "w")], initializers: ["w": Tensor(int64s: [1])],
                      nodes: [Node(op: OpID("", "Constant"), inputs: [], outputs: ["w"])])
        #expect(try #require(problems(g)).contains("redefines 'w'"))
    }

    @Test func rejectsNodesWithTheWrongNumberOfInputsOrOutputs() throws {
        let x = Value(name: "x", type: f32), y = Value(name: "y", type: f32)
        func graph(_ node: Node) -> Graph { Graph(name: "g", inputs: [x], outputs: [x], nodes: [node]) }
        #expect(problems(graph(Node(op: OpID("", "MatMul"), inputs: ["x"], outputs: ["y"])))?
            .contains("has 1 input; MatMul needs at least 2") == true)
        #expect(problems(graph(Node(op: OpID("", "Relu"), inputs: ["x", "x"], outputs: ["y"])))?
            .contains("has 2 inputs; Relu takes at most 1") == true)
        #expect(problems(graph(Node(op: OpID("", "Shape"), inputs: ["x"], outputs: [])))?
            .contains("has 0 outputs; Shape needs at least 1") == true)
        #expect(problems(graph(Node(op: OpID("", "Gemm"), inputs: ["x", ""], outputs: ["y"])))?
            .contains("leaves its required input #1 absent") == true)
        // Every entry of a variadic input list names a value (a Concat of "" reached kiln.cpu's lowering
        // with no operands: fuzz round 6, Fuzz/regressions/cabi/cabi-variadic-input-absent.onnx).
        #expect(problems(graph(Node(op: OpID("", "Concat"), inputs: [""], outputs: ["y"], attributes: ["axis": .int(0)])))?
            .contains("leaves its required input #0 absent") == true)
        #expect(problems(graph(Node(op: OpID("", "Sum"), inputs: ["x", "", "x"], outputs: ["y"])))?
            .contains("leaves its required input #1 absent") == true)
        // A variadic output may be left unnamed (a Split result nobody reads).
        #expect(problems(Graph(name: "g", inputs: [x], outputs: [y], nodes: [Node(op: OpID("", "Split"), inputs: ["x"], outputs: ["y", ""],
                                                                             attributes: ["num_outputs": .int(2)])])) == nil)
        // Optional inputs may be absent or left off; variadic ops take any number; unknown ops are not checked.
        #expect(problems(Graph(name: "g", inputs: [x], outputs: [y], nodes: [Node(op: OpID("", "Clip"), inputs: ["x", "", ""], outputs: ["y"])])) == nil)
        #expect(problems(Graph(name: "g", inputs: [x], outputs: [y], nodes: [Node(op: OpID("", "Sum"), inputs: ["x", "x", "x", "x"], outputs: ["y"])])) == nil)
        #expect(problems(graph(Node(op: OpID("com.example", "Anything"), inputs: [], outputs: [])))  == nil)
    }

    @Test func rejectsUnproducedOutputs() throws {
        let g = Graph(inputs: [Value(name: "x", type: f32)], outputs: [Value(name: "x"), Value(name: "ghost")])
        #expect(try #require(problems(g)).contains("output 'ghost' is not produced"))
    }

    @Test func reportsCycles() throws {
        let g = Graph(outputs: [Value(name: "b")],
                      nodes: [Node(op: OpID("", "Relu"), inputs: ["b"], outputs: ["a"]),
                              Node(op: OpID("", "Relu"), inputs: ["a"], outputs: ["b"])])
        let message = try #require(problems(g))
        #expect(message.contains("the nodes form a cycle: #0 → #1 → #0") || message.contains("the nodes form a cycle: #1 → #0 → #1"),
                "\(message)")
    }

    @Test func subgraphsSeeOuterValuesProducedBeforeTheirNode() throws {
        let body = Graph(name: "body", outputs: [Value(name: "r")],
                         nodes: [Node(op: OpID("", "Add"), inputs: ["a", "x"], outputs: ["r"])])
        let good = Graph(inputs: [Value(name: "x", type: f32), Value(name: "c")], outputs: [Value(name: "o")],
                         nodes: [Node(op: OpID("", "Relu"), inputs: ["x"], outputs: ["a"]),
                                 Node(op: OpID("", "If"), inputs: ["c"], outputs: ["o"],
                                      attributes: ["then_branch": .graph(body), "else_branch": .graph(body)])])
        try Verifier.verify(good)

        // The same body, but `a` is produced after the If.
        var late = good
        late.nodes.swapAt(0, 1)
        late.outputs = [Value(name: "o")]
        let message = try #require(problems(late))
        #expect(message.contains("then_branch: node #0 (Add) reads 'a', which is not produced"), "\(message)")
    }

    @Test func subgraphsMayNotRedefineOuterValues() throws {
        let body = Graph(name: "body", inputs: [Value(name: "x")], outputs: [Value(name: "x")])
        let g = Graph(inputs: [Value(name: "x", type: f32)], outputs: [Value(name: "o")],
                      nodes: [Node(op: OpID("", "Loop"), inputs: ["", ""], outputs: ["o"], attributes: ["body": .graph(body)])])
        #expect(try #require(problems(g)).contains("redefines 'x', a value of an enclosing graph"))
    }

    @Test func subgraphOutputsMayBeOuterValues() throws {
        let body = Graph(name: "body", outputs: [Value(name: "x")])
        let g = Graph(inputs: [Value(name: "x", type: f32), Value(name: "c")], outputs: [Value(name: "o")],
                      nodes: [Node(op: OpID("", "If"), inputs: ["c"], outputs: ["o"],
                                   attributes: ["then_branch": .graph(body), "else_branch": .graph(body)])])
        try Verifier.verify(g)
    }
}
