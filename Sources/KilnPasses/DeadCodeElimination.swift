import KilnIR

/// Removes nodes none of whose outputs is read (by a later node, a subgraph, or a graph output) and
/// initializers nobody reads, in the graph and in every subgraph. Graph inputs and outputs are kept.
/// ONNX ops have no side effects, so an unread random op is dropped too.
public struct DeadCodeElimination: Pass {
    /// `dce`.
    public let name = "dce"

    /// The pass.
    public init() {}

    /// Removes dead nodes and initializers; true if anything was removed.
    public func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
        Self.eliminate(&graph)
    }

    /// Dead-code elimination of `graph` and its subgraphs.
    static func eliminate(_ graph: inout Graph) -> Bool {
        var changed = false
        var live = Set(graph.outputs.map(\.name))
        var keep = [Bool](repeating: false, count: graph.nodes.count)
        for i in graph.nodes.indices.reversed() {
            guard graph.nodes[i].outputs.contains(where: { !$0.isEmpty && live.contains($0) }) else { continue }
            keep[i] = true
            // Clean the subgraphs first, so that they keep alive only what they still read.
            if graph.nodes[i].updateSubgraphs({ eliminate(&$0) }) { changed = true }
            live.formUnion(graph.nodes[i].inputs.filter { !$0.isEmpty })
            for sub in graph.nodes[i].subgraphs { live.formUnion(sub.referencedNames) }
        }
        if keep.contains(false) {
            changed = true
            let removedOutputs = graph.nodes.indices.filter { !keep[$0] }.flatMap { graph.nodes[$0].outputs }
            graph.nodes = graph.nodes.indices.filter { keep[$0] }.map { graph.nodes[$0] }
            for name in removedOutputs { graph.valueTypes[name] = nil }
        }
        let inputNames = Set(graph.inputs.map(\.name))
        for name in Array(graph.initializers.keys) where !live.contains(name) && !inputNames.contains(name) {
            graph.initializers[name] = nil
            changed = true
        }
        return changed
    }
}
