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
    /// How many subgraphs deep this interpreter runs (0 for the top-level graph).
    var depth = 0

    /// The deepest subgraph nesting a model may use; deeper nesting is refused rather than exhausting the stack.
    static let maxDepth = 64

    /// Runs `graph` with `inputs` bound by name inside `parent` (the enclosing graph's scope, for subgraphs),
    /// and returns its outputs in order.
    func run(_ graph: Graph, inputs: [String: RuntimeValue], parent: Scope?) throws -> [RuntimeValue] {
        let scope = Scope(parent: parent)
        for (name, tensor) in graph.initializers { scope[name] = .tensor(tensor) }
        for (name, value) in inputs { scope[name] = value }
        for input in graph.inputs where scope[input.name] == nil {
            throw KilnError(.invalidArgument, "graph '\(graph.name)': input '\(input.name)' was not given")
        }
        let deadline = RunDeadline.current
        for node in graph.nodes {
            try deadline?.check()
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
        try checkInputs(of: node, inputs)
        let context = KernelContext(node: node, inputs: inputs) { subgraph, values in
            guard values.count == subgraph.inputs.count else {
                throw KilnError(.invalidModel, "\(node.op) node '\(node.name)': subgraph '\(subgraph.name)' takes \(subgraph.inputs.count) inputs, given \(values.count)")
            }
            guard depth < Self.maxDepth else {
                throw KilnError(.invalidModel, "\(node.op) node '\(node.name)': subgraphs nest more than \(Self.maxDepth) levels deep")
            }
            var bound: [String: RuntimeValue] = [:]
            for (input, value) in zip(subgraph.inputs, values) { bound[input.name] = value }
            // The results are one per declared output of `subgraph`, in order.
            return try Interpreter(table: table, depth: depth + 1).run(subgraph, inputs: bound, parent: scope)
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

    /// Checks `inputs` against what ONNX allows for `node`'s op: value kinds, element types, and inputs that
    /// must share one element type. Ops without an ONNX signature are left to their kernels.
    private func checkInputs(of node: Node, _ inputs: [RuntimeValue?]) throws {
        guard let signature = OpCatalog.standard[node.op]?.signature else { return }
        func fail(_ index: Int, _ message: String) -> KilnError {
            KilnError(.invalidArgument, "\(node.op) node '\(node.name)': input \(index) ('\(node.inputs[index])') \(message)")
        }
        for (index, value) in inputs.enumerated() {
            guard let value, let rule = signature.input(index) else { continue }
            switch value {
            case .tensor(let t):
                guard rule.tensorTypes != 0 else { throw fail(index, "is a tensor; \(node.op) takes \(Self.kinds(rule)) there") }
                guard rule.tensorTypes & (1 << UInt32(t.dtype.onnxCode)) != 0 else {
                    throw fail(index, "has element type \(t.dtype); \(node.op) takes \(OpSignature.typeNames(rule.tensorTypes)) there")
                }
                if let other = rule.sameTypeAs, other < inputs.count, let o = inputs[other]?.tensor, o.dtype != t.dtype {
                    throw fail(index, "has element type \(t.dtype), but must have input \(other)'s type \(o.dtype)")
                }
            case .sequence(let items, _):
                if rule.acceptsSequenceOfMaps && items.allSatisfy({ if case .map = $0 { true } else { false } }) { continue }
                guard rule.sequenceTypes != 0 else { throw fail(index, "is a sequence; \(node.op) takes \(Self.kinds(rule)) there") }
                for item in items {
                    guard let t = item.tensor else { throw fail(index, "is a sequence holding \(item.summary); only tensors are allowed") }
                    guard rule.sequenceTypes & (1 << UInt32(t.dtype.onnxCode)) != 0 else {
                        throw fail(index, "is a sequence of \(t.dtype) tensors; \(node.op) takes sequences of \(OpSignature.typeNames(rule.sequenceTypes)) there")
                    }
                    guard t.dtype == items[0].tensor?.dtype else { throw fail(index, "is a sequence of tensors of different element types") }
                }
            case .optional:
                guard rule.acceptsOptional else { throw fail(index, "is an optional; \(node.op) takes \(Self.kinds(rule)) there") }
            case .map:
                guard rule.acceptsMap else { throw fail(index, "is a map; \(node.op) takes \(Self.kinds(rule)) there") }
            }
        }
    }

    /// The kinds of value `rule` accepts, for messages.
    private static func kinds(_ rule: OpSignature.Input) -> String {
        var kinds: [String] = []
        if rule.tensorTypes != 0 { kinds.append("a tensor") }
        if rule.sequenceTypes != 0 || rule.acceptsSequenceOfMaps { kinds.append("a sequence") }
        if rule.acceptsOptional { kinds.append("an optional") }
        if rule.acceptsMap { kinds.append("a map") }
        return kinds.isEmpty ? "nothing" : kinds.joined(separator: " or ")
    }
}
