import KilnBackend
import KilnIR

extension ReferenceBackend {
    /// How the registry knows `kiln.reference`: the oracle, and the last fallback of every target.
    public static let descriptor = BackendDescriptor(
        info: BackendInfo(name: "kiln.reference", vendor: "kiln", version: "0.1.0"),
        kind: .reference,
        summary: "plain interpreter of every supported op: the correctness oracle and the last fallback"
    ) { _ in ReferenceBackend() }

    /// Evaluates `node` on `inputs` (the tensors of its non-empty inputs, in order) with the interpreter:
    /// the constant-folding evaluator the Kiln facade gives the compiler. nil when an output is not a tensor.
    public static func evaluate(_ node: Node, _ inputs: [Tensor]) throws -> [Tensor]? {
        var graph = Graph(name: "fold")
        var index = 0
        for name in node.inputs where !name.isEmpty {
            guard index < inputs.count else { return nil }
            graph.initializers[name] = inputs[index]
            index += 1
        }
        graph.nodes = [node]
        graph.outputs = node.outputs.filter { !$0.isEmpty }.map { Value(name: $0) }
        let results = try ReferenceBackend().prepare(graph).run([:])
        let values = results.compactMap(\.tensor)
        return values.count == results.count ? values : nil
    }
}
