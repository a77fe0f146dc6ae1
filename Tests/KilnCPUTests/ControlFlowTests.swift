// If, Loop and Scan on kiln.cpu: bodies compiled by kiln.cpu, outer values captured, run-time shapes,
// the run deadline, and claims (a body kiln.cpu cannot run makes the whole node fall back).
import Foundation
import Kiln
@testable import KilnCPU
import KilnReference
import Testing
import KilnTestSupport

enum ControlFlowModels {
    static let boolScalar = ValueType.tensor(TensorType(.bool, fixed: []))
    static let int64Scalar = ValueType.tensor(TensorType(.int64, fixed: []))

    static func value(_ name: String, _ type: ValueType? = nil) -> Value { Value(name: name, type: type) }

    /// `y = If(c) then Relu(x) (shape [n]) else Concat(x, Neg(x)) (shape [2n])`, then `z = y * 3`:
    /// the branches' outputs differ in shape, and a plan follows the If.
    static func ifWithDifferentShapes() -> Model {
        let then = Graph(name: "then", outputs: [value("t_out")], nodes: [node("Relu", ["x"], ["t_out"])])
        let otherwise = Graph(name: "else", outputs: [value("e_out")],
                              nodes: [node("Neg", ["x"], ["e_neg"]), node("Concat", ["x", "e_neg"], ["e_out"], ["axis": .int(0)])])
        let graph = Graph(name: "if_shapes", inputs: [value("c", boolScalar), f32("x", [4])], outputs: [value("z")],
                          initializers: ["three": Tensor(scalar: Float(3))],
                          nodes: [node("If", ["c"], ["y"], ["then_branch": .graph(then), "else_branch": .graph(otherwise)], name: "if"),
                                  node("Mul", ["y", "three"], ["z"], name: "mul")])
        return Model(graph: graph, opsets: ["": 21])
    }

    /// A Loop of `M` trips carrying `acc` (starting at `x`), each adding `x · (i + 1)`; its scan output
    /// stacks each iteration's `acc`. The body reads `x` from the enclosing graph.
    static func loopBody() -> Graph {
        Graph(name: "loop_body", inputs: [value("i", int64Scalar), value("cond_in", boolScalar), value("acc_in")],
              outputs: [value("cond_out"), value("acc_out"), value("scan_out", .tensor(TensorType(.float32, fixed: [3])))],
              initializers: ["one": Tensor(scalar: Float(1))],
              nodes: [node("Identity", ["cond_in"], ["cond_out"]),
                      node("Cast", ["i"], ["i_f"], ["to": .int(1)]),
                      node("Add", ["i_f", "one"], ["k"]),
                      node("Mul", ["x", "k"], ["xk"]),
                      node("Add", ["acc_in", "xk"], ["acc_out"]),
                      node("Identity", ["acc_out"], ["scan_out"])])
    }

    /// `(acc, stacked) = Loop(m, "", x)` over `loopBody`.
    static func loopWithScanOutputs() -> Model {
        let graph = Graph(name: "loop_scan", inputs: [value("m", int64Scalar), f32("x", [3])], outputs: [value("acc"), value("stacked")],
                          nodes: [node("Loop", ["m", "", "x"], ["acc", "stacked"], ["body": .graph(loopBody())], name: "loop")])
        return Model(graph: graph, opsets: ["": 21])
    }

    /// `y = If(c) then Loop(3, "", x) over loopBody (its carried value) else Neg(x)`: a Loop nested in an If
    /// branch, whose body reads `x` two graphs out.
    static func loopInsideIf() -> Model {
        let then = Graph(name: "then", outputs: [value("t_acc")], initializers: ["three": Tensor(scalar: Int64(3))],
                         nodes: [node("Loop", ["three", "", "x"], ["t_acc", "t_stacked"], ["body": .graph(loopBody())], name: "inner_loop")])
        let otherwise = Graph(name: "else", outputs: [value("e_out")], nodes: [node("Neg", ["x"], ["e_out"])])
        let graph = Graph(name: "nested", inputs: [value("c", boolScalar), f32("x", [3])], outputs: [value("y")],
                          nodes: [node("If", ["c"], ["y"], ["then_branch": .graph(then), "else_branch": .graph(otherwise)], name: "if")])
        return Model(graph: graph, opsets: ["": 21])
    }

    /// A Scan computing running sums of `xs` [T, 2] (state `s` [2]) in direction `direction`, with its scan
    /// output stacked in `outputDirection` along axis 0.
    static func scanRunningSum(direction: Int, outputDirection: Int) -> Model {
        let body = Graph(name: "scan_body", inputs: [value("s_in"), value("x_t")], outputs: [value("s_out"), value("y_t")],
                         nodes: [node("Add", ["s_in", "x_t"], ["s_out"]), node("Identity", ["s_out"], ["y_t"])])
        let graph = Graph(name: "scan", inputs: [f32("s0", [2]), f32("xs", [5, 2])], outputs: [value("s"), value("ys")],
                          nodes: [node("Scan", ["s0", "xs"], ["s", "ys"],
                                       ["body": .graph(body), "num_scan_inputs": .int(1),
                                        "scan_input_directions": .ints([direction]), "scan_output_directions": .ints([outputDirection])],
                                       name: "scan")])
        return Model(graph: graph, opsets: ["": 21])
    }

    /// A Loop with trip count 2^62 and a condition that stays true: it ends only at the run's deadline.
    static func endlessLoop() -> Model {
        let body = Graph(name: "endless", inputs: [value("i", int64Scalar), value("cond_in", boolScalar), value("v_in")],
                         outputs: [value("cond_out"), value("v_out")],
                         nodes: [node("Identity", ["cond_in"], ["cond_out"]), node("Identity", ["v_in"], ["v_out"])])
        let graph = Graph(name: "endless_loop", inputs: [f32("x", [2])], outputs: [value("y")],
                          initializers: ["m": Tensor(scalar: Int64(1) << 62), "t": Tensor(scalar: true)],
                          nodes: [node("Loop", ["m", "t", "x"], ["y"], ["body": .graph(body)], name: "endless")])
        return Model(graph: graph, opsets: ["": 21])
    }

    /// Silero-VAD's pattern: an If on `sr == 16000` whose branches run the network (MatMul, Relu, Sigmoid)
    /// on weights of the enclosing graph; the branches' outputs differ in width.
    static func sileroLike() -> (Model, [String: Tensor]) {
        var random = TestRandom(state: 11)
        let then = Graph(name: "sr16k", outputs: [value("t_out")],
                         nodes: [node("MatMul", ["x", "w16"], ["t_mm"]), node("Add", ["t_mm", "b16"], ["t_b"]), node("Relu", ["t_b"], ["t_out"])])
        let otherwise = Graph(name: "sr8k", outputs: [value("e_out")],
                              nodes: [node("MatMul", ["x", "w8"], ["e_mm"]), node("Relu", ["e_mm"], ["e_out"])])
        let graph = Graph(name: "silero_like", inputs: [f32("x", [1, 16]), value("sr", int64Scalar)], outputs: [value("prob")],
                          initializers: ["w16": random.tensor([16, 8]), "b16": random.tensor([8]), "w8": random.tensor([16, 4]),
                                         "rate": Tensor(scalar: Int64(16000))],
                          nodes: [node("Equal", ["sr", "rate"], ["is16k"], name: "equal"),
                                  node("If", ["is16k"], ["h"], ["then_branch": .graph(then), "else_branch": .graph(otherwise)], name: "if"),
                                  node("ReduceMean", ["h"], ["m"], ["axes": .ints([1]), "keepdims": .int(0)], name: "mean"),
                                  node("Sigmoid", ["m"], ["prob"], name: "sigmoid")])
        return (Model(graph: graph, opsets: ["": 17]), ["x": random.tensor([1, 16])])
    }
}

@Suite struct ControlFlowTests {
    static func error(_ body: () throws -> Void) -> KilnError? {
        do { try body() } catch let e as KilnError { return e } catch let r as CompileRefusal { return r.error } catch {
            return KilnError(.internal, "\(error)")
        }
        return nil
    }

    /// The whole graph runs on kiln.cpu (no node rejected, the If lowered to a control-flow operation).
    static func expectClaimed(_ model: Model, sourceLocation: SourceLocation = #_sourceLocation) {
        let rejected = CPUBackend().rejections(in: model.graph)
        #expect(rejected.isEmpty, "\(rejected.map(\.reason))", sourceLocation: sourceLocation)
    }

    @Test func ifBranchesWithDifferentShapes() throws {
        let model = ControlFlowModels.ifWithDifferentShapes()
        Self.expectClaimed(model)
        let x = Tensor(shape: [4], [Float](arrayLiteral: -1, 2, -3, 4))
        let session = try Session(model: model, backend: CPUBackend(threads: 1))
        // Both branches, twice each: the plans after the If are cached per output shape.
        for _ in 0..<2 {
            let yes = try session.run(["c": .tensor(Tensor(scalar: true)), "x": .tensor(x)])["z"]?.tensor
            #expect(yes?.shape == [4] && yes?.elements(as: Float.self) == [0, 6, 0, 12])
            let no = try session.run(["c": .tensor(Tensor(scalar: false)), "x": .tensor(x)])["z"]?.tensor
            #expect(no?.shape == [8] && no?.elements(as: Float.self) == [-3, 6, -9, 12, 3, -6, 9, -12])
        }
        for c in [true, false] {
            try expectMatchesReference(model, inputs: ["c": Tensor(scalar: c), "x": x], "If(\(c))")
        }
    }

    @Test func loopWithScanOutputs() throws {
        let model = ControlFlowModels.loopWithScanOutputs()
        Self.expectClaimed(model)
        let x = Tensor(shape: [3], [Float](arrayLiteral: 1, -2, 0.5))
        let out = try Session(model: model, backend: CPUBackend(threads: 1))
            .run(["m": .tensor(Tensor(scalar: Int64(3))), "x": .tensor(x)])
        // acc = x + x·1 + x·2 + x·3 = 7x; the scan output stacks 2x, 4x, 7x.
        #expect(out["acc"]?.tensor?.elements(as: Float.self) == [7, -14, 3.5])
        #expect(out["stacked"]?.tensor?.shape == [3, 3])
        #expect(out["stacked"]?.tensor?.elements(as: Float.self) == [2, -4, 1, 4, -8, 2, 7, -14, 3.5])
        for m in [1, 5] {
            try expectMatchesReference(model, inputs: ["m": Tensor(scalar: Int64(m)), "x": x], "Loop M=\(m)")
        }
    }

    @Test func loopWithZeroIterations() throws {
        let model = ControlFlowModels.loopWithScanOutputs()
        let x = Tensor(shape: [3], [Float](arrayLiteral: 1, -2, 0.5))
        let out = try Session(model: model, backend: CPUBackend(threads: 1))
            .run(["m": .tensor(Tensor(scalar: Int64(0))), "x": .tensor(x)])
        // No trip: the carried value is its initial value, the scan output an empty stack of [3] slices.
        #expect(out["acc"]?.tensor?.elements(as: Float.self) == [1, -2, 0.5])
        #expect(out["stacked"]?.tensor?.shape == [0, 3])
        #expect(out["stacked"]?.tensor?.dtype == .float32)
        try expectMatchesReference(model, inputs: ["m": Tensor(scalar: Int64(0)), "x": x], "Loop M=0")
    }

    @Test func loopNestedInIf() throws {
        let model = ControlFlowModels.loopInsideIf()
        Self.expectClaimed(model)
        let x = Tensor(shape: [3], [Float](arrayLiteral: 1, -2, 0.5))
        let session = try Session(model: model, backend: CPUBackend(threads: 1))
        let then = try session.run(["c": .tensor(Tensor(scalar: true)), "x": .tensor(x)])["y"]?.tensor
        #expect(then?.elements(as: Float.self) == [7, -14, 3.5])
        let otherwise = try session.run(["c": .tensor(Tensor(scalar: false)), "x": .tensor(x)])["y"]?.tensor
        #expect(otherwise?.elements(as: Float.self) == [-1, 2, -0.5])
        for c in [true, false] {
            try expectMatchesReference(model, inputs: ["c": Tensor(scalar: c), "x": x], "Loop in If(\(c))")
        }
    }

    @Test func scanInReverse() throws {
        let xs = Tensor(shape: [5, 2], (0..<10).map { Float($0) })
        let s0 = Tensor(shape: [2], [Float](arrayLiteral: 100, 200))
        let reversed = ControlFlowModels.scanRunningSum(direction: 1, outputDirection: 0)
        Self.expectClaimed(reversed)
        let out = try Session(model: reversed, backend: CPUBackend(threads: 1)).run(["s0": .tensor(s0), "xs": .tensor(xs)])
        // Reversed: rows 4, 3, 2, 1, 0 are added in that order.
        #expect(out["s"]?.tensor?.elements(as: Float.self) == [120, 225])
        #expect(out["ys"]?.tensor?.elements(as: Float.self) == [108, 209, 114, 216, 118, 221, 120, 224, 120, 225])
        for (d, o) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            try expectMatchesReference(ControlFlowModels.scanRunningSum(direction: d, outputDirection: o),
                                       inputs: ["s0": s0, "xs": xs], "Scan directions \(d)/\(o)")
        }
    }

    @Test func anEndlessLoopEndsAtTheDeadline() throws {
        let model = ControlFlowModels.endlessLoop()
        Self.expectClaimed(model)
        let session = try Session(model: model, backend: CPUBackend(threads: 1))
        let started = ContinuousClock.now
        let error = Self.error {
            _ = try session.run(["x": .tensor(Tensor(shape: [2], [Float](arrayLiteral: 1, 2)))], options: RunOptions(timeout: .milliseconds(200)))
        }
        #expect(error?.code == .runtime && error?.message.contains("run exceeded its deadline of 0.2 s") == true, "\(String(describing: error))")
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func aBodyKilnCPUCannotRunMakesTheNodeFallBack() throws {
        // LRN has no kiln.cpu kernel: an If whose branch holds one is rejected as a whole, naming it.
        let then = Graph(name: "then", outputs: [ControlFlowModels.value("t_out")],
                         nodes: [node("LRN", ["x"], ["t_out"], ["size": .int(3)], name: "lrn")])
        let otherwise = Graph(name: "else", outputs: [ControlFlowModels.value("e_out")], nodes: [node("Neg", ["x"], ["e_out"])])
        let graph = Graph(name: "if_lrn", inputs: [ControlFlowModels.value("c", ControlFlowModels.boolScalar), f32("x", [1, 4, 2, 2])],
                          outputs: [ControlFlowModels.value("y")],
                          nodes: [node("If", ["c"], ["y"], ["then_branch": .graph(then), "else_branch": .graph(otherwise)], name: "if")])
        let rejected = CPUBackend().rejections(in: graph)
        #expect(rejected.count == 1 && rejected.first?.reason.contains("'lrn' (LRN)") == true, "\(rejected.map(\.reason))")
        // Split by the host target, the If falls back to kiln.reference whole, and runs.
        let summary = try Kiln.compiler().compile(model: Model(graph: graph, opsets: ["": 21])).summary
        #expect(summary.report.fallbackSummary.hasPrefix("fallback: 1 of 1 nodes on kiln.reference: If"), "\(summary.report.fallbackSummary)")
    }

    @Test func malformedControlFlowIsATypedErrorNotACrash() throws {
        // A condition of two elements (past Session's input checks, straight to the executable): a typed error.
        let executable = try CPUBackend(threads: 1).prepare(ControlFlowModels.ifWithDifferentShapes().graph)
        let error = Self.error {
            _ = try executable.run(["c": .tensor(Tensor(shape: [2], [true, false])), "x": .tensor(Tensor(shape: [4], [Float](repeating: 1, count: 4)))])
        }
        #expect(error?.code == .invalidModel && error?.message.contains("cond must hold one element") == true, "\(String(describing: error))")

        // A Loop body with too few outputs, and a branch output with an empty name: rejected by name, not run.
        var loop = ControlFlowModels.loopWithScanOutputs().graph
        if case .graph(var body)? = loop.nodes[0].attributes["body"] {
            body.outputs.removeLast(2)
            loop.nodes[0].attributes["body"] = .graph(body)
        }
        let loopRejections = CPUBackend().rejections(in: loop)
        #expect(loopRejections.first?.reason.contains("Loop body's inputs/outputs") == true, "\(loopRejections.map(\.reason))")
        var branch = ControlFlowModels.ifWithDifferentShapes().graph
        if case .graph(var then)? = branch.nodes[0].attributes["then_branch"] {
            then.outputs[0].name = ""
            branch.nodes[0].attributes["then_branch"] = .graph(then)
        }
        let ifRejections = CPUBackend().rejections(in: branch)
        #expect(ifRejections.first?.reason.contains("empty name") == true, "\(ifRejections.map(\.reason))")
        let prepareError = Self.error { _ = try CPUBackend().prepare(branch) }
        #expect(prepareError?.code == .unsupported, "\(String(describing: prepareError))")
    }

    @Test func deeplyNestedIfsAreJudgedOnceEach() throws {
        // 40 Ifs, each in the then-branch of the one before: the claim judges every body once (not once per
        // round per level, which would never finish), and the innermost branch reads the outermost input.
        let depth = 40
        var branch = Graph(name: "leaf", outputs: [ControlFlowModels.value("leaf_out")], nodes: [node("Neg", ["x"], ["leaf_out"])])
        for level in 0..<depth {
            let otherwise = Graph(name: "else\(level)", outputs: [ControlFlowModels.value("e\(level)")], nodes: [node("Relu", ["x"], ["e\(level)"])])
            let ifNode = node("If", ["c"], ["y\(level)"], ["then_branch": .graph(branch), "else_branch": .graph(otherwise)], name: "if\(level)")
            branch = Graph(name: "then\(level)", outputs: [ControlFlowModels.value("y\(level)")], nodes: [ifNode])
        }
        let graph = Graph(name: "nested_ifs", inputs: [ControlFlowModels.value("c", ControlFlowModels.boolScalar), f32("x", [3])],
                          outputs: [ControlFlowModels.value("y\(depth - 1)")], nodes: branch.nodes)
        let started = ContinuousClock.now
        #expect(CPUBackend().rejections(in: graph).isEmpty)
        #expect(ContinuousClock.now - started < .seconds(20))
        let x = Tensor(shape: [3], [Float](arrayLiteral: 1, -2, 3))
        let out = try Session(model: Model(graph: graph, opsets: ["": 21]), backend: CPUBackend(threads: 1))
            .run(["c": .tensor(Tensor(scalar: true)), "x": .tensor(x)])
        #expect(out["y\(depth - 1)"]?.tensor?.elements(as: Float.self) == [-1, 2, -3])
    }

    @Test func aSileroLikeIfCompilesWithNoFallback() throws {
        let (model, inputs) = ControlFlowModels.sileroLike()
        let summary = try Kiln.compiler().compile(model: model).summary
        #expect(summary.report.fallbackSummary.hasPrefix("fallback: none"), "\(summary.report.fallbackSummary)")
        #expect(summary.partitions.count == 1 && summary.partitions[0].backend == CPUBackend.descriptor.info.name)
        for rate in [16000, 8000] {
            var feeds = inputs
            feeds["sr"] = Tensor(scalar: Int64(rate))
            try expectMatchesReference(model, inputs: feeds, "Silero-like If at \(rate) Hz")
        }
    }
}
