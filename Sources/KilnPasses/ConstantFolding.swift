import KilnIR

/// Replaces a node whose inputs are all constants (initializers that are not graph inputs, here or in
/// an enclosing graph) by initializers holding its outputs, computed by `PassContext.evaluator`; and a
/// Shape or Size of a value whose shape is static by its constant result.
///
/// Left alone: random ops, ops with subgraphs, Dropout, DequantizeLinear (a quantized weight and its
/// scale are what int8 backends run: folding them into float constants would turn every int8 layer of a
/// QDQ model back into a float one), nodes producing a graph output, nodes the evaluator declines or fails
/// on, and nodes whose outputs would exceed `PassContext.maxFoldedBytes`.
/// Subgraphs are folded too (folded values become initializers of the subgraph).
public struct ConstantFolding: Pass {
    /// `constant-folding`.
    public let name = "constant-folding"

    /// The pass.
    public init() {}

    /// Folds constant nodes; true if any was folded. Does nothing without an evaluator.
    public func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
        guard let evaluator = context.evaluator else { return false }
        return Self.fold(&graph, outerConstants: [:], evaluator: evaluator, maxBytes: context.maxFoldedBytes)
    }

    /// Folds `graph`, whose enclosing graphs have the constants `outerConstants`, and its subgraphs.
    static func fold(_ graph: inout Graph, outerConstants: [String: Tensor], evaluator: NodeEvaluator,
                     maxBytes: Int) -> Bool {
        var changed = false
        var constants = outerConstants.merging(graph.constantInitializers) { a, _ in a }
        let graphOutputs = Set(graph.outputs.map(\.name))
        var kept: [Node] = []
        for var node in graph.nodes {
            if node.updateSubgraphs({ fold(&$0, outerConstants: constants, evaluator: evaluator, maxBytes: maxBytes) }) {
                changed = true
            }
            if let results = staticShape(node, graph: graph, graphOutputs: graphOutputs)
                ?? evaluate(node, graph: graph, constants: constants, graphOutputs: graphOutputs, evaluator: evaluator, maxBytes: maxBytes) {
                for (name, tensor) in zip(node.outputs.filter { !$0.isEmpty }, results) {
                    graph.initializers[name] = tensor
                    graph.valueTypes[name] = nil
                    constants[name] = tensor
                }
                changed = true
                continue
            }
            kept.append(node)
        }
        graph.nodes = kept
        return changed
    }

    /// Shape and Size of a value whose shape is static (every dim known, as after `--input-shape`): their
    /// output is a constant even though the value is not, and folding it lets the shape arithmetic after
    /// them (Gather, Concat, Range, Reshape targets) fold too. Nil for any other node.
    static func staticShape(_ node: Node, graph: Graph, graphOutputs: Set<String>) -> [Tensor]? {
        guard node.op.domain.isEmpty, node.op.name == "Shape" || node.op.name == "Size", node.inputs.count == 1,
              node.outputs.count == 1, !graphOutputs.contains(node.outputs[0]) else { return nil }
        let name = node.inputs[0]
        guard let type = graph.valueTypes[name]?.tensorType ?? graph.inputs.first(where: { $0.name == name })?.type?.tensorType,
              let dims = type.fixedShape else { return nil }
        if node.op.name == "Size" {
            guard let count = try? ElementCount.of(dims, what: name) else { return nil }
            return [Tensor(dtype: .int64, shape: [], int64s: [Int64(count)])]
        }
        let rank = dims.count
        func clamped(_ v: Int) -> Int { min(max(v < 0 ? v + rank : v, 0), rank) }
        guard let start = try? node.int("start", 0), let end = try? node.int("end", rank) else { return nil }
        let (lo, hi) = (clamped(start), clamped(end))
        let kept = lo < hi ? dims[lo..<hi].map { Int64($0) } : []
        return [Tensor(dtype: .int64, shape: [kept.count], int64s: kept)]
    }

    /// The folded outputs of `node`, or nil if it is not to be folded.
    static func evaluate(_ node: Node, graph: Graph, constants: [String: Tensor], graphOutputs: Set<String>,
                         evaluator: NodeEvaluator, maxBytes: Int) -> [Tensor]? {
        if node.op.domain.isEmpty && (randomOps.contains(node.op.name) || node.op.name == "Dropout") { return nil }
        if node.op.name == "DequantizeLinear" && (node.op.domain.isEmpty || node.op.domain == "com.microsoft") { return nil }
        let outputs = node.outputs.filter { !$0.isEmpty }
        guard !node.hasSubgraphs, !outputs.isEmpty, !outputs.contains(where: graphOutputs.contains) else { return nil }
        var inputs: [Tensor] = []
        for name in node.inputs where !name.isEmpty {
            guard let t = constants[name] else { return nil }
            inputs.append(t)
        }
        // Skip early when the known output types are already too large.
        var known = 0
        for name in outputs {
            if let t = graph.valueTypes[name]?.tensorType, let shape = t.fixedShape, let width = t.dtype.byteWidth {
                // Checked: inferred shapes may hold dims whose product overflows.
                guard let count = try? ElementCount.of(shape, what: name) else { return nil }
                known = (try? ElementCount.sum(known, count * width, what: name)) ?? Int.max
            }
        }
        guard known <= maxBytes else { return nil }
        guard let results = try? evaluator(node, inputs), results.count == outputs.count else { return nil }
        var bytes = 0
        for t in results {
            guard let width = t.dtype.byteWidth else { return nil }  // strings are not folded
            bytes += t.count * width
        }
        return bytes <= maxBytes ? results : nil
    }
}
