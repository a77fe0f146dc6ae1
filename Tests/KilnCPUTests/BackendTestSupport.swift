// Shared helpers of the kiln.cpu backend tests: a small graph builder and a comparison of kiln.cpu against
// kiln.reference through Session (seeded random data: SplitMix64 of KilnTestSupport).
import Foundation
import Kiln
import KilnTooling
import KilnCPU
import KilnReference
import Testing

/// Builds test graphs node by node.
struct TestGraph {
    var graph = Graph(name: "test")
    private var counter = 0

    /// Adds a graph input.
    mutating func input(_ name: String, _ shape: [Dim], _ dtype: DType = .float32) -> String {
        graph.inputs.append(Value(name: name, type: .tensor(TensorType(dtype, shape))))
        return name
    }

    /// Adds a float32 graph input of a fixed shape.
    mutating func input(_ name: String, _ shape: [Int]) -> String { input(name, shape.map { .fixed($0) }) }

    /// Adds a constant (initializer).
    mutating func constant(_ tensor: Tensor, _ base: String = "c") -> String {
        counter += 1
        let name = "\(base)\(counter)"
        graph.initializers[name] = tensor
        return name
    }

    /// Adds a node with one output (or `outputs` outputs) and returns the first output's name.
    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:], outputs: Int = 1) -> String {
        counter += 1
        let outs = (0..<outputs).map { "\(op.lowercased())\(counter)_\($0)" }
        graph.nodes.append(Node(name: "\(op)_\(counter)", op: OpID("", op), inputs: inputs, outputs: outs, attributes: attributes))
        return outs[0]
    }

    /// Marks `names` as the graph's outputs.
    mutating func output(_ names: String...) {
        graph.outputs = names.map { Value(name: $0) }
    }

    var model: Model { Model(graph: graph, opsets: ["": 21]) }
}

/// Largest |a - b| over two tensors' elements, and the largest |b|.
func difference(_ a: Tensor, _ b: Tensor) -> (error: Double, scale: Double) {
    let x = a.asDoubles(), y = b.asDoubles()
    var error = 0.0, scale = 0.0
    for i in 0..<min(x.count, y.count) {
        error = max(error, abs(x[i] - y[i]))
        scale = max(scale, abs(y[i]))
    }
    return (error, scale)
}

/// Runs `model` on kiln.cpu (with `threads`) and kiln.reference on the same inputs and expects the outputs
/// to agree within `tolerance` relative to the largest reference magnitude (at least 1). Returns the outputs.
@discardableResult
func expectMatchesReference(_ model: Model, inputs: [String: Tensor], threads: Int = 2, tolerance: Double = 1e-4,
                            _ context: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [Tensor] {
    let reference = try Session(model: model, backend: ReferenceBackend())
    let cpu = try Session(model: model, backend: CPUBackend(threads: threads))
    let feeds = inputs.mapValues { RuntimeValue.tensor($0) }
    let want = try reference.runOrdered(feeds).map { $0.tensor! }
    let got = try cpu.runOrdered(feeds).map { $0.tensor! }
    #expect(got.count == want.count, "\(context): output count", sourceLocation: sourceLocation)
    for (i, (g, w)) in zip(got, want).enumerated() {
        #expect(g.shape == w.shape, "\(context): output \(i) shape \(g.shape) vs reference \(w.shape)", sourceLocation: sourceLocation)
        #expect(g.dtype == w.dtype, "\(context): output \(i) type", sourceLocation: sourceLocation)
        let (error, scale) = difference(g, w)
        #expect(error <= tolerance * max(1, scale), "\(context): output \(i) max error \(error) (scale \(scale))",
                sourceLocation: sourceLocation)
    }
    return got
}
