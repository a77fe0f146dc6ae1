import KilnIR

/// Local rewrites that remove work without changing results:
///
/// - `Identity(x)` → `x`;
/// - `Dropout(x)` in inference mode (no `training_mode` input, or a constant false one) → `x`,
///   when its mask output is not read;
/// - `Reshape(Reshape(x, s1), s2)` → `Reshape(x, s2)` when `s2` is a constant without zeros (or
///   `allowzero=1`);
/// - `Transpose(Transpose(x, p1), p2)` → `x` when the permutations compose to the identity, else one
///   `Transpose` with the composed permutation;
/// - `Cast(x)` to the type `x` already has → `x`;
/// - `Pad(x, pads)` with constant all-zero pads → `x`;
/// - `Slice(x, …)` over the full range of every sliced axis with step 1 → `x`.
///
/// When a removed node produced a graph output, the value it forwarded is renamed to the output's
/// name instead, so graph output names never change (if that is impossible the node stays).
/// Subgraphs are simplified too.
public struct AlgebraicSimplification: Pass {
    /// `simplify`.
    public let name = "simplify"

    /// The pass.
    public init() {}

    /// Applies the rewrites until none applies; true if anything changed.
    public func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
        Self.simplify(&graph, outerConstants: [:])
    }

    /// Simplifies `graph` (whose enclosing graphs have the constants `outerConstants`) and its subgraphs.
    static func simplify(_ graph: inout Graph, outerConstants: [String: Tensor]) -> Bool {
        var changed = false
        let constants = outerConstants.merging(graph.constantInitializers) { a, _ in a }
        let referenced = Set(graph.readCounts.keys)
        var producers: [String: Int] = [:]
        var i = 0
        while i < graph.nodes.count {
            if graph.nodes[i].updateSubgraphs({ simplify(&$0, outerConstants: constants) }) { changed = true }
            let node = graph.nodes[i]
            // A rewrite that reads through producer p is taken only when p's own input comes from an earlier
            // node (or from outside): always so in a verified graph, and what keeps the rewrites from cycling
            // forever on one that defines a value twice (an `onnx` fuzz finding: a Transpose composed with
            // itself until the timeout).
            func feedsForward(_ p: Int) -> Bool {
                guard let first = graph.nodes[p].inputs.first else { return false }
                return (producers[first] ?? -1) < p
            }
            var forwardTo: String? = nil
            if node.op.domain.isEmpty, node.outputs.count >= 1, !node.outputs[0].isEmpty,
               let input = node.inputs.first, !input.isEmpty {
                switch node.op.name {
                case "Identity":
                    forwardTo = input
                case "Dropout":
                    let mode = node.inputs.count > 2 ? node.inputs[2] : ""
                    let inference = mode.isEmpty || (constants[mode].map { $0.count == 1 && $0.asDoubles()[0] == 0 } ?? false)
                    let maskUnused = node.outputs.count < 2 || node.outputs[1].isEmpty || !referenced.contains(node.outputs[1])
                    if inference && maskUnused { forwardTo = input }
                case "Cast":
                    if case .int(let code)? = node.attributes["to"], let to = DType(onnxCode: code),
                       let from = graph.tensorType(of: input)?.dtype ?? constants[input]?.dtype, from == to {
                        forwardTo = input
                    }
                case "Pad":
                    if node.inputs.count > 1, let pads = constants[node.inputs[1]], pads.asInts().allSatisfy({ $0 == 0 }) {
                        forwardTo = input
                    }
                case "Slice":
                    if isFullSlice(node, in: graph, constants: constants) { forwardTo = input }
                case "Reshape":
                    if let p = producers[input], graph.nodes[p].isOp("Reshape"), node.inputs.count > 1, feedsForward(p),
                       let shape = constants[node.inputs[1]],
                       node.int("allowzero", 0) == 1 || !shape.asInts().contains(0) {
                        graph.nodes[i].inputs[0] = graph.nodes[p].inputs[0]
                        changed = true
                        continue  // look at the rewritten node again
                    }
                case "Transpose":
                    if let p = producers[input], graph.nodes[p].isOp("Transpose"), feedsForward(p),
                       let p2 = node.ints("perm"), let p1 = graph.nodes[p].ints("perm"), p1.count == p2.count,
                       p2.allSatisfy({ $0 >= 0 && $0 < p1.count }) {
                        let composed = p2.map { p1[$0] }
                        if composed == Array(composed.indices) {
                            forwardTo = graph.nodes[p].inputs[0]
                        } else {
                            graph.nodes[i].inputs[0] = graph.nodes[p].inputs[0]
                            graph.nodes[i].attributes["perm"] = .ints(composed)
                            changed = true
                            continue
                        }
                    }
                default: break
                }
            }
            if let source = forwardTo, forward(node.outputs[0], to: source, removing: i, in: &graph, producers: &producers) {
                changed = true
                continue  // node i was removed; the next node is now at i
            }
            for output in graph.nodes[i].outputs where !output.isEmpty { producers[output] = i }
            i += 1
        }
        return changed
    }

    /// Removes node `index`, whose output `output` equals the value `source`. Readers of `output` read
    /// `source` instead; if `output` is a graph output, `source` is renamed `output` instead (when it
    /// is produced by an earlier node of this graph and is not itself a graph output). Returns false,
    /// changing nothing, when neither is possible.
    static func forward(_ output: String, to source: String, removing index: Int, in graph: inout Graph,
                        producers: inout [String: Int]) -> Bool {
        let node = graph.nodes[index]
        // Other outputs (Dropout's unread mask) must not be read either.
        let others = node.outputs.dropFirst().filter { !$0.isEmpty }
        if !others.isEmpty {
            let counts = graph.readCounts
            if others.contains(where: { counts[$0] != nil }) { return false }
        }
        let graphOutputs = Set(graph.outputs.map(\.name))
        if !graphOutputs.contains(output) {
            graph.nodes.remove(at: index)
            graph.valueTypes[output] = nil
            graph.renameUses([output: source], includingOutputs: false)
            return true
        }
        guard let p = producers[source], p < index, !graphOutputs.contains(source) else { return false }
        graph.nodes.remove(at: index)
        if let k = graph.nodes[p].outputs.firstIndex(of: source) { graph.nodes[p].outputs[k] = output }
        if let t = graph.valueTypes[source], graph.valueTypes[output] == nil { graph.valueTypes[output] = t }
        graph.valueTypes[source] = nil
        graph.renameUses([source: output], includingOutputs: false)
        producers[source] = nil
        producers[output] = p
        return true
    }

    /// Whether a Slice node keeps every element: constant starts, ends (and axes, steps), every step 1,
    /// every start 0 and every end at least the axis length (or huge when the length is unknown).
    static func isFullSlice(_ node: Node, in graph: Graph, constants: [String: Tensor]) -> Bool {
        guard node.inputs.count >= 3, let starts = constants[node.inputs[1]]?.asInt64s(),
              let ends = constants[node.inputs[2]]?.asInt64s(), starts.count == ends.count else { return false }
        let shape = graph.tensorType(of: node.inputs[0])?.shape
        var axes = (0..<starts.count).map(Int64.init)
        if node.inputs.count > 3, !node.inputs[3].isEmpty {
            guard let a = constants[node.inputs[3]]?.asInt64s(), a.count == starts.count else { return false }
            axes = a
        }
        if node.inputs.count > 4, !node.inputs[4].isEmpty {
            guard let steps = constants[node.inputs[4]]?.asInt64s(), steps.allSatisfy({ $0 == 1 }) else { return false }
        }
        for (k, axis) in axes.enumerated() {
            guard starts[k] == 0 else { return false }
            var length: Int64? = nil
            if let shape {
                let a = axis < 0 ? Int(axis) + shape.count : Int(axis)
                guard a >= 0 && a < shape.count else { return false }
                length = shape[a].value.map(Int64.init)
            }
            if let length {
                guard ends[k] >= length else { return false }
            } else {
                guard ends[k] >= Int64(1) << 62 else { return false }
            }
        }
        return true
    }
}
