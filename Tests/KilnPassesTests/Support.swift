import Kiln
import KilnReference
import Testing
import KilnTestSupport
@testable import KilnPasses

/// Evaluates one node on kiln.reference, for constant folding.
let referenceEvaluator: NodeEvaluator = { node, tensors in
    var graph = Graph(name: "fold")
    var index = 0
    for name in node.inputs where !name.isEmpty {
        graph.initializers[name] = tensors[index]
        index += 1
    }
    graph.nodes = [node]
    graph.outputs = node.outputs.filter { !$0.isEmpty }.map { Value(name: $0) }
    let results = try ReferenceBackend().prepare(graph).run([:])
    let tensors = results.compactMap(\.tensor)
    return tensors.count == results.count ? tensors : nil
}

/// A context with the reference evaluator.
let referenceContext = PassContext(evaluator: referenceEvaluator)

/// How many nodes of `op` the graph (with subgraphs) has.
func count(_ op: String, in graph: Graph) -> Int { graph.allNodes.filter { $0.op.name == op }.count }

/// Runs `graph` on kiln.reference through a Session.
func run(_ graph: Graph, _ inputs: [String: Tensor]) throws -> [String: Tensor] {
    let session = try Session(model: Model(graph: graph), backend: ReferenceBackend())
    let outputs = try session.run(inputs.mapValues { .tensor($0) })
    return outputs.compactMapValues(\.tensor)
}

/// Random float32 inputs for every input of `graph` without a default.
func randomInputs(for graph: Graph, seed: UInt64) -> [String: Tensor] {
    var random = TestRandom(state: seed)
    var inputs: [String: Tensor] = [:]
    for input in graph.inputs where graph.initializers[input.name] == nil {
        // Symbolic and unknown dims are bound to 2.
        let shape = input.type?.tensorType?.shape?.map { $0.value ?? 2 } ?? [1]
        switch input.type?.tensorType?.dtype ?? .float32 {
        case .float32: inputs[input.name] = random.tensor(shape)
        case let dtype where dtype.isInteger || dtype == .bool:  // ids and masks: 0 or 1
            inputs[input.name] = Tensor(dtype: dtype, shape: shape, doubles: (0..<shape.reduce(1, *)).map { _ in random.next() < 0 ? 0 : 1 })
        case let dtype:
            inputs[input.name] = Tensor(dtype: dtype, shape: shape, doubles: random.tensor(shape).asDoubles())
        }
    }
    return inputs
}

/// Checks that `rewritten` verifies, keeps the output names of `original`, and computes the same outputs
/// on random inputs (within `tolerance`, relative to the magnitude).
func expectSameOutputs(_ original: Graph, _ rewritten: Graph, seed: UInt64 = 7, tolerance: Double = 1e-4,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
    try Verifier.verify(rewritten)
    #expect(original.outputs.map(\.name) == rewritten.outputs.map(\.name), sourceLocation: sourceLocation)
    let inputs = randomInputs(for: original, seed: seed)
    let expected = try run(original, inputs)
    let actual = try run(rewritten, inputs)
    for output in original.outputs {
        guard let e = expected[output.name], let a = actual[output.name] else {
            Issue.record("output \(output.name) missing", sourceLocation: sourceLocation)
            continue
        }
        #expect(e.shape == a.shape, "\(output.name) shape", sourceLocation: sourceLocation)
        #expect(e.dtype == a.dtype, "\(output.name) dtype", sourceLocation: sourceLocation)
        guard e.shape == a.shape, e.dtype.isFloatingPoint || e.dtype.isInteger else { continue }
        let worst = zip(e.asDoubles(), a.asDoubles()).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? 0
        #expect(worst <= tolerance, "\(output.name) differs by \(worst)", sourceLocation: sourceLocation)
    }
}

/// Runs one pass over a copy of `graph` and returns the result and whether it changed.
func apply(_ pass: any Pass, to graph: Graph, context: PassContext = referenceContext) throws -> (Graph, Bool) {
    var copy = graph
    let changed = try pass.run(&copy, context: context)
    return (copy, changed)
}
