/// Infers the element type and shape of every value of a graph from the op catalog's shape rules and
/// records them in `Graph.valueTypes` (and on graph outputs whose type is unknown or only partly known).
/// `ShapeInference` (KilnPasses) runs it as a pass; its documentation says what is inferred.
public enum GraphInference {
    /// Infers types in `graph` and its subgraphs; true if any recorded type changed. Throws
    /// `KilnError(.invalidModel)` naming the node when shapes are provably inconsistent.
    public static func infer(_ graph: inout Graph) throws -> Bool {
        var environment = InferenceEnvironment()
        return try infer(&graph, environment: &environment)
    }

    /// Infers `graph` (a main graph or a subgraph) in `environment`, which holds what the enclosing
    /// graphs know; the graph's own inputs, constants and values are added to it.
    static func infer(_ graph: inout Graph, environment: inout InferenceEnvironment) throws -> Bool {
        var changed = false
        let inputNames = Set(graph.inputs.map(\.name))
        for (name, tensor) in graph.initializers {
            environment.facts[name] = TypeFact(tensor.dtype, tensor.shape.map { .fixed($0) })
            if !inputNames.contains(name) {
                environment.constants[name] = tensor
                if let known = KnownValue(tensor) { environment.known[name] = known }
            }
        }
        for input in graph.inputs {
            if let t = input.type {
                environment.facts[input.name] = TypeFact(t)
            } else if environment.facts[input.name] == nil {
                environment.facts[input.name] = .unknown
            }
        }
        var declaredOutputs: [String: ValueType] = [:]
        for output in graph.outputs { if let t = output.type { declaredOutputs[output.name] = t } }

        for index in graph.nodes.indices {
            var node = graph.nodes[index]
            // The rule holds the environment; it ends before the environment is written, so that the
            // writes below do not copy the environment's tables.
            let results: [TypeFact], knownResults: [KnownValue?], constantResults: [Tensor?]
            do {
                var rule = NodeInference(node: node, environment: environment)
                if hasSubgraphs(node) {
                    if try inferSubgraphs(of: &node, rule: &rule, environment: environment) { changed = true }
                    graph.nodes[index] = node
                }
                try rule.infer()
                (results, knownResults, constantResults) = (rule.results, rule.knownResults, rule.constantResults)
            }
            for (i, name) in node.outputs.enumerated() where !name.isEmpty {
                let declared = graph.valueTypes[name] ?? declaredOutputs[name]
                var fact = results[i]
                if let declared { fact = fact.refined(by: TypeFact(declared)) }
                environment.facts[name] = fact
                if let known = knownResults[i], fact.other == nil, known.count <= KnownValue.maxCount {
                    environment.known[name] = known
                }
                if let constant = constantResults[i] { environment.constants[name] = constant }
                if let type = fact.valueType, graph.valueTypes[name] != type {
                    graph.valueTypes[name] = type
                    changed = true
                }
            }
        }
        // Types of values no node here produces any more (removed by other passes) are dropped.
        let produced = Set(graph.nodes.flatMap(\.outputs))
        for name in graph.valueTypes.keys where !produced.contains(name) {
            graph.valueTypes[name] = nil
            changed = true
        }

        for i in graph.outputs.indices {
            guard let fact = environment.facts[graph.outputs[i].name], let inferred = fact.valueType else { continue }
            let current = graph.outputs[i].type
            // Declared dims win: inference only fills what the declaration leaves unknown.
            let refined = current.map { TypeFact($0).filling(from: fact).valueType ?? $0 } ?? inferred
            if current != refined {
                graph.outputs[i].type = refined
                changed = true
            }
        }
        return changed
    }

    /// Infers the subgraphs of `node` and gives `rule` what they imply for the node's outputs
    /// (If, Loop and Scan); true if any recorded type in them changed.
    static func inferSubgraphs(of node: inout Node, rule: inout NodeInference,
                               environment: InferenceEnvironment) throws -> Bool {
        var changed = false
        let schema = OpCatalog.standard[node.op]
        for key in node.attributes.keys.sorted() {
            switch node.attributes[key]! {
            case .graph(var sub):
                var inner = environment
                schema?.subgraphRule?(rule, key, sub, &inner)
                do {
                    if try infer(&sub, environment: &inner) { changed = true }
                    rule.subgraphOutputs[key] = sub.outputs.map { inner.facts[$0.name] ?? .unknown }
                    node.attributes[key] = .graph(sub)
                } catch let error as KilnError where error.code == .invalidModel && node.op == OpID("", "If") {
                    // A branch of an If may be impossible at the shapes the graph has (a model with its input
                    // shapes fixed for one sample rate holds the other rate's branch too): which branch runs is
                    // decided at run time, so this one's outputs are left unknown rather than failing the
                    // model; running it would fail there, with the same message.
                    rule.subgraphOutputs[key] = sub.outputs.map { _ in .unknown }
                }
            case .graphs(var subs):
                for j in subs.indices {
                    var inner = environment
                    if try infer(&subs[j], environment: &inner) { changed = true }
                }
                node.attributes[key] = .graphs(subs)
            default:
                break
            }
        }
        return changed
    }

    /// Whether `node` owns a subgraph attribute.
    private static func hasSubgraphs(_ node: Node) -> Bool {
        node.attributes.values.contains { attribute in
            switch attribute {
            case .graph, .graphs: true
            default: false
            }
        }
    }
}
