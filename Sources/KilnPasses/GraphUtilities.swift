import KilnIR

/// Ops whose results are random: never folded nor merged.
let randomOps: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                              "Multinomial", "Bernoulli"]

extension Node {
    /// Whether this is a default-domain op named `name`.
    func isOp(_ name: String) -> Bool { op.domain.isEmpty && op.name == name }

    /// Whether this node owns a subgraph.
    var hasSubgraphs: Bool {
        attributes.values.contains { attribute in
            switch attribute {
            case .graph, .graphs: true
            default: false
            }
        }
    }

    /// An int attribute, or `defaultValue`.
    func int(_ name: String, _ defaultValue: Int) -> Int {
        if case .int(let v)? = attributes[name] { return v }
        return defaultValue
    }

    /// A float attribute, or `defaultValue`.
    func float(_ name: String, _ defaultValue: Float) -> Float {
        if case .float(let v)? = attributes[name] { return v }
        return defaultValue
    }

    /// An ints attribute, or nil.
    func ints(_ name: String) -> [Int]? {
        if case .ints(let v)? = attributes[name] { return v }
        return nil
    }

    /// Applies `body` to every subgraph of this node; true if any call returned true.
    mutating func updateSubgraphs(_ body: (inout Graph) throws -> Bool) rethrows -> Bool {
        guard hasSubgraphs else { return false }
        var changed = false
        for key in attributes.keys.sorted() {
            switch attributes[key]! {
            case .graph(var g):
                if try body(&g) { changed = true }
                attributes[key] = .graph(g)
            case .graphs(var gs):
                for i in gs.indices where try body(&gs[i]) { changed = true }
                attributes[key] = .graphs(gs)
            default: break
            }
        }
        return changed
    }
}

extension Graph {
    /// Every name a subgraph refers to (node inputs and graph outputs, recursively): a superset of the
    /// outer values it reads, since names are unique across nested graphs.
    var referencedNames: Set<String> {
        var names = Set(outputs.map(\.name))
        for node in nodes {
            names.formUnion(node.inputs.filter { !$0.isEmpty })
            for sub in node.subgraphs { names.formUnion(sub.referencedNames) }
        }
        return names
    }

    /// How many times each value is read here: by node inputs, by subgraphs (once per subgraph
    /// that names it) and by the graph outputs.
    var readCounts: [String: Int] {
        var counts: [String: Int] = [:]
        for output in outputs { counts[output.name, default: 0] += 1 }
        for node in nodes {
            for input in node.inputs where !input.isEmpty { counts[input, default: 0] += 1 }
            for sub in node.subgraphs { for name in sub.referencedNames { counts[name, default: 0] += 1 } }
        }
        return counts
    }

    /// The initializers that are true constants: those not listed as (overridable) inputs.
    var constantInitializers: [String: Tensor] {
        let inputNames = Set(inputs.map(\.name))
        return initializers.filter { !inputNames.contains($0.key) }
    }

    /// Every name defined or used in this graph and its subgraphs.
    var allNames: Set<String> {
        var names = Set(inputs.map(\.name)).union(initializers.keys).union(outputs.map(\.name))
        for node in nodes {
            names.formUnion(node.inputs)
            names.formUnion(node.outputs)
            for sub in node.subgraphs { names.formUnion(sub.allNames) }
        }
        names.remove("")
        return names
    }

    /// Replaces every read of a value named in `map` by its image: node inputs here and in subgraphs,
    /// subgraph outputs, and this graph's outputs when `includingOutputs`.
    mutating func renameUses(_ map: [String: String], includingOutputs: Bool) {
        guard !map.isEmpty else { return }
        for i in nodes.indices {
            if nodes[i].inputs.contains(where: { map[$0] != nil }) {
                nodes[i].inputs = nodes[i].inputs.map { map[$0] ?? $0 }
            }
            _ = nodes[i].updateSubgraphs { sub in
                sub.renameUses(map, includingOutputs: true)
                return true
            }
        }
        if includingOutputs {
            for i in outputs.indices { if let to = map[outputs[i].name] { outputs[i].name = to } }
        }
    }

    /// The type of a value, as far as this graph knows it.
    func tensorType(of name: String) -> TensorType? { type(of: name)?.tensorType }
}

/// Makes names that are not yet used in a graph.
struct NameMaker {
    var used: Set<String>

    /// `base`, or `base_1`, `base_2`, … whichever is free; the result is marked used.
    mutating func make(_ base: String) -> String {
        var name = base
        var i = 1
        while used.contains(name) {
            name = "\(base)_\(i)"
            i += 1
        }
        used.insert(name)
        return name
    }
}
