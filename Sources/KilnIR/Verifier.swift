/// Checks the structural invariants of Kiln IR (see "The IR" in the architecture brief):
///
/// - every value is produced once (SSA): graph inputs, initializers and node outputs have distinct
///   names, and a subgraph does not redefine a value of a graph that encloses it;
/// - every node input is produced before the node reads it: by an earlier node, as a graph input or
///   initializer, or (in a subgraph) by the enclosing graphs before the node that owns the subgraph;
/// - nodes are in topological order, hence the graph has no cycles;
/// - every graph output is produced;
/// - a node of a known ONNX op has as many inputs and outputs as some version of the op allows, and
///   its required inputs and outputs are present (so a backend may read a required position
///   without checking the count; it checks only the optional ones);
/// - subgraphs satisfy all of this too, with the values of the enclosing graphs in scope.
///
/// Every problem is collected; the error lists them (the first 20).
public enum Verifier {
    /// Throws `.invalidModel` listing every problem found in `graph` and its subgraphs.
    /// `outerScope` holds the names visible from enclosing graphs (empty for a main graph).
    public static func verify(_ graph: Graph, outerScope: Set<String> = []) throws {
        var problems: [String] = []
        check(graph, path: "graph \(Printer.quoted(graph.name))", outer: outerScope, problems: &problems)
        guard !problems.isEmpty else { return }
        let shown = problems.prefix(20).map { "  " + $0 }
        let more = problems.count > 20 ? ["  … and \(problems.count - 20) more"] : []
        throw KilnError(.invalidModel, "the IR is invalid (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n"
                        + (shown + more).joined(separator: "\n"))
    }

    /// Adds the problems of `graph` (named `path` in messages) to `problems`.
    static func check(_ graph: Graph, path: String, outer: Set<String>, problems: inout [String]) {
        var defined = Set<String>()
        /// Records a definition of `name`; `what` says who defines it.
        func define(_ name: String, _ what: String) {
            if name.isEmpty {
                problems.append("\(path): \(what) has an empty name")
            } else if defined.contains(name) {
                problems.append("\(path): \(what) redefines '\(name)' (values must be produced once)")
            } else if outer.contains(name) {
                problems.append("\(path): \(what) redefines '\(name)', a value of an enclosing graph")
            }
            defined.insert(name)
        }

        for input in graph.inputs { define(input.name, "input '\(input.name)'") }
        let inputNames = Set(graph.inputs.map(\.name))
        for name in graph.initializers.keys.sorted() where !inputNames.contains(name) {
            define(name, "initializer '\(name)'")
        }

        // Where each value is produced, to tell "used before produced" from "never produced".
        var producer: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() {
            for output in node.outputs where !output.isEmpty && producer[output] == nil { producer[output] = index }
        }
        var outOfOrder = false
        for (index, node) in graph.nodes.enumerated() {
            let where_ = "\(path): node #\(index)\(node.name.isEmpty ? "" : " '\(node.name)'") (\(node.op))"
            if node.op.name.isEmpty { problems.append("\(where_) has no operator name") }
            checkArity(node, where_, &problems)
            for input in node.inputs where !input.isEmpty {
                if defined.contains(input) || outer.contains(input) { continue }
                if let later = producer[input], later >= index {
                    outOfOrder = true
                    problems.append("\(where_) reads '\(input)' before it is produced (by node #\(later))")
                } else {
                    problems.append("\(where_) reads '\(input)', which is not produced anywhere in scope")
                }
            }
            // A subgraph sees everything defined so far here, plus the enclosing scope. Built only for nodes
            // that own subgraphs: building it for every node made verification quadratic in graph size.
            let ownsSubgraphs = node.attributes.values.contains { attribute in
                switch attribute {
                case .graph, .graphs: true
                default: false
                }
            }
            let visible = ownsSubgraphs ? outer.union(defined) : []
            for (name, attribute) in node.attributes.sorted(by: { $0.key < $1.key }) where ownsSubgraphs {
                let subgraphs: [(String, Graph)]
                switch attribute {
                case .graph(let g): subgraphs = [(name, g)]
                case .graphs(let gs): subgraphs = gs.enumerated().map { ("\(name)[\($0.offset)]", $0.element) }
                default: subgraphs = []
                }
                for (label, subgraph) in subgraphs {
                    check(subgraph, path: "\(where_).\(label)", outer: visible, problems: &problems)
                }
            }
            for output in node.outputs where !output.isEmpty {
                define(output, "\(where_) output")
            }
        }
        if outOfOrder, let cycle = cycle(in: graph) {
            problems.append("\(path): the nodes form a cycle: " + cycle.map { "#\($0)" }.joined(separator: " → "))
        }
        for output in graph.outputs {
            if output.name.isEmpty {
                problems.append("\(path): an output has an empty name")
            } else if !defined.contains(output.name) && !outer.contains(output.name) {
                problems.append("\(path): output '\(output.name)' is not produced")
            }
        }
    }

    /// Adds a problem when `node` has fewer or more inputs or outputs than its op's schema allows, or
    /// leaves a required one absent (an empty name). Ops the catalog has no signature for (Kiln's own
    /// ops, custom domains) are not checked here; their backends check them.
    static func checkArity(_ node: Node, _ where_: String, _ problems: inout [String]) {
        guard let signature = OpCatalog.standard[node.op]?.signature,
              let problem = arityProblem(node, signature) else { return }
        problems.append("\(where_) \(problem)")
    }

    /// What is wrong with `node`'s input and output counts under `signature`, or nil when nothing is.
    static func arityProblem(_ node: Node, _ signature: OpSignature) -> String? {
        func check(_ names: [String], _ what: String, _ count: (lowerBound: Int, upperBound: Int?), _ required: UInt64) -> String? {
            if let upper = count.upperBound, names.count > upper {
                return "has \(names.count) \(what)s; \(node.op) takes at most \(upper)"
            } else if names.count < count.lowerBound {
                return "has \(names.count) \(what)\(names.count == 1 ? "" : "s"); \(node.op) needs at least \(count.lowerBound)"
            } else if let absent = names.prefix(64).indices.first(where: { required & (1 << UInt64($0)) != 0 && names[$0].isEmpty }) {
                return "leaves its required \(what) #\(absent) absent"
            }
            return nil
        }
        return check(node.inputs, "input", signature.inputCount, signature.requiredInputs)
            ?? check(node.outputs, "output", signature.outputCount, signature.requiredOutputs)
    }

    /// A cycle among the nodes of `graph` (node indices, the first repeated at the end), or nil when
    /// the nodes can be put in topological order.
    static func cycle(in graph: Graph) -> [Int]? {
        var producer: [String: Int] = [:]
        for (index, node) in graph.nodes.enumerated() {
            for output in node.outputs where !output.isEmpty && producer[output] == nil { producer[output] = index }
        }
        let predecessors: [[Int]] = graph.nodes.map { node in node.inputs.compactMap { producer[$0] } }
        // Iterative depth-first search; state 1 = on the current path, 2 = finished.
        var state = [UInt8](repeating: 0, count: graph.nodes.count)
        for start in graph.nodes.indices where state[start] == 0 {
            var stack: [(node: Int, next: Int)] = [(start, 0)]
            state[start] = 1
            while let top = stack.last {
                let edges = predecessors[top.node]
                if top.next < edges.count {
                    stack[stack.count - 1].next += 1
                    let p = edges[top.next]
                    if state[p] == 1 {
                        let path = stack.map(\.node)
                        let loop = Array(path[path.firstIndex(of: p)!...])
                        return (loop + [p]).reversed()
                    }
                    if state[p] == 0 {
                        state[p] = 1
                        stack.append((p, 0))
                    }
                } else {
                    state[top.node] = 2
                    stack.removeLast()
                }
            }
        }
        return nil
    }
}

extension Graph {
    /// Checks this graph's invariants (see `Verifier`); throws `.invalidModel` listing the problems.
    public func verify() throws { try Verifier.verify(self) }
}
