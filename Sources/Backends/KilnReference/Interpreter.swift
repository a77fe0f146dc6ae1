import KilnIR

/// Values visible while a graph runs: its own, and those of the graphs enclosing it.
final class Scope {
    private var values: [String: RuntimeValue] = [:]
    private let parent: Scope?

    init(parent: Scope?) { self.parent = parent }

    subscript(name: String) -> RuntimeValue? {
        get { values[name] ?? parent?[name] }
        set { values[name] = newValue }
    }
}

/// Runs a graph node by node with the reference kernels.
struct Interpreter {
    let table: KernelTable

    /// Runs `graph` with `inputs` bound by name inside `parent` (the enclosing graph's scope, for subgraphs),
    /// and returns its outputs in order.
    func run(_ graph: Graph, inputs: [String: RuntimeValue], parent: Scope?) throws -> [RuntimeValue] {
        let scope = Scope(parent: parent)
        for (name, tensor) in graph.initializers { scope[name] = .tensor(tensor) }
        for (name, value) in inputs { scope[name] = value }
        for input in graph.inputs where scope[input.name] == nil {
            throw KilnError(.invalidArgument, "graph '\(graph.name)': input '\(input.name)' was not given")
        }
        for node in graph.nodes {
            try execute(node, in: scope)
        }
        return try graph.outputs.map { output in
            guard let v = scope[output.name] else {
                throw KilnError(.runtime, "graph '\(graph.name)': output '\(output.name)' was never computed")
            }
            return v
        }
    }

    private func execute(_ node: Node, in scope: Scope) throws {
        guard let kernel = table[node.op] else {
            throw KilnError(.unsupported, "kiln.reference has no kernel for \(node.op) (node '\(node.name)')")
        }
        let inputs: [RuntimeValue?] = try node.inputs.map { name in
            if name.isEmpty { return nil }
            guard let v = scope[name] else {
                throw KilnError(.invalidModel, "\(node.op) node '\(node.name)' reads '\(name)', which nothing produced")
            }
            return v
        }
        let context = KernelContext(node: node, inputs: inputs) { subgraph, values in
            guard values.count == subgraph.inputs.count else {
                throw KilnError(.invalidModel, "\(node.op) node '\(node.name)': subgraph '\(subgraph.name)' takes \(subgraph.inputs.count) inputs, given \(values.count)")
            }
            var bound: [String: RuntimeValue] = [:]
            for (input, value) in zip(subgraph.inputs, values) { bound[input.name] = value }
            return try run(subgraph, inputs: bound, parent: scope)
        }
        let outputs: [RuntimeValue?]
        do {
            outputs = try kernel(context)
        } catch let error as KilnError {
            throw error
        } catch {
            throw KilnError(.runtime, "\(node.op) node '\(node.name)': \(error)")
        }
        for (index, name) in node.outputs.enumerated() where !name.isEmpty {
            guard index < outputs.count, let value = outputs[index] else {
                throw KilnError(.internal, "\(node.op) node '\(node.name)' did not produce output \(index) ('\(name)')")
            }
            scope[name] = value
        }
    }
}
