import KilnIR

/// One group of a graph's top-level nodes that one backend runs: the nodes (ascending indices into
/// `Graph.nodes`), the values that flow in (graph inputs or outputs of earlier partitions) and the values
/// that flow out (read by later partitions or returned by the graph).
///
/// Initializers the nodes read are not inputs: they travel with the partition's subgraph
/// (`subgraph(of:)`). A graph input with a default initializer is an input *and* keeps its default.
public struct Partition: Sendable {
    /// The backend that runs the partition.
    public var backend: any Backend
    /// Indices of the graph's top-level nodes in the partition, ascending.
    public var nodes: [Int]
    /// Names of the values the partition reads from outside itself, in order of first use.
    public var inputs: [String]
    /// Names of the values it produces for later partitions or the graph's outputs, in production order.
    public var outputs: [String]

    /// A partition of `nodes` on `backend` with `inputs` and `outputs`.
    public init(backend: any Backend, nodes: [Int], inputs: [String], outputs: [String]) {
        self.backend = backend
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
    }

    /// The graph this partition's backend compiles and runs: the partition's nodes, its inputs and
    /// outputs (typed as far as `graph` knows), and the initializers its nodes read. A partition of every
    /// node of `graph` is `graph` itself, so a single-partition plan compiles exactly the imported graph.
    public func subgraph(of graph: Graph) -> Graph {
        Self.subgraph(of: graph, nodes: nodes, inputs: inputs, outputs: outputs)
    }

    /// The subgraph of `graph` made of `nodes` (ascending indices) reading `inputs` and returning `outputs`;
    /// see `subgraph(of:)`. The runtime rebuilds an artifact's partitions with it, so it is deterministic.
    public static func subgraph(of graph: Graph, nodes: [Int], inputs: [String], outputs: [String]) -> Graph {
        if nodes.count == graph.nodes.count, nodes.elementsEqual(graph.nodes.indices) { return graph }
        let members = nodes.filter { $0 >= 0 && $0 < graph.nodes.count }.map { graph.nodes[$0] }
        var initializers: [String: Tensor] = [:]
        var typeNames = Set(inputs).union(outputs)
        for node in members {
            for name in node.valuesRead {
                if let tensor = graph.initializers[name] { initializers[name] = tensor }
            }
            typeNames.formUnion(node.outputs.filter { !$0.isEmpty })
        }
        var valueTypes: [String: ValueType] = [:]
        for name in typeNames { if let type = graph.valueTypes[name] { valueTypes[name] = type } }
        let first = nodes.first.map(String.init) ?? "empty"
        return Graph(name: "\(graph.name).partition\(first)",
                     inputs: inputs.map { Value(name: $0, type: graph.type(of: $0)) },
                     outputs: outputs.map { Value(name: $0, type: graph.type(of: $0)) },
                     initializers: initializers, nodes: members, valueTypes: valueTypes)
    }
}

extension Node {
    /// Every value this node reads: its non-empty inputs, then the values of enclosing graphs that its
    /// subgraphs read (If branches and Loop bodies may name outer values directly), each once.
    public var valuesRead: [String] {
        var seen = Set<String>()
        var result: [String] = []
        for name in inputs + subgraphs.flatMap(\.freeValues) where !name.isEmpty && seen.insert(name).inserted {
            result.append(name)
        }
        return result
    }
}

extension Graph {
    /// The values this graph (used as a subgraph) reads from the graphs that enclose it, in order of first use.
    public var freeValues: [String] {
        var defined = Set(inputs.map(\.name)).union(initializers.keys)
        var seen = Set<String>()
        var result: [String] = []
        func use(_ name: String) {
            if !name.isEmpty, !defined.contains(name), seen.insert(name).inserted { result.append(name) }
        }
        for node in nodes {
            for name in node.inputs { use(name) }
            for name in node.subgraphs.flatMap(\.freeValues) { use(name) }
            defined.formUnion(node.outputs)
        }
        for output in outputs { use(output.name) }
        return result
    }
}

/// The partitions of a graph in an order that runs: each partition's inputs are graph inputs,
/// initializers or outputs of earlier partitions; plus the report saying where every node went and why.
public struct PartitionPlan: Sendable {
    /// The partitions, in execution order.
    public var partitions: [Partition]
    /// Node → backend and reason, for every top-level node.
    public var report: PartitionReport

    /// A plan of `partitions` (in execution order) with `report`.
    public init(partitions: [Partition], report: PartitionReport) {
        self.partitions = partitions
        self.report = report
    }

    /// Every problem that keeps `partitions` from running `graph`, as messages (empty when it is sound):
    /// node indices out of range, unsorted, repeated, in two partitions or in none; an input that is not a
    /// graph input, an initializer or an output of an earlier partition; a value read by a partition's
    /// node that the partition neither produces nor receives; an output the partition does not produce;
    /// a graph output nothing produces. Loaders of untrusted artifacts call it before anything else.
    public static func problems(in graph: Graph, partitions: [(backend: String, nodes: [Int], inputs: [String], outputs: [String])]) -> [String] {
        var problems: [String] = []
        let count = graph.nodes.count
        var owner = [Int](repeating: -1, count: count)
        var available = Set(graph.inputs.map(\.name)).union(graph.initializers.keys)
        for (p, partition) in partitions.enumerated() {
            let what = "partition \(p) (\(partition.backend))"
            var previous = -1
            var valid: [Int] = []
            for index in partition.nodes {
                guard index >= 0, index < count else {
                    problems.append("\(what) lists node \(index), but the graph has \(count) nodes")
                    continue
                }
                if index <= previous { problems.append("\(what) lists its nodes out of ascending order (\(index) after \(previous))") }
                previous = max(previous, index)
                if owner[index] >= 0 {
                    problems.append("\(what) lists node \(index), which partition \(owner[index]) also lists")
                    continue
                }
                owner[index] = p
                valid.append(index)
            }
            let received = Set(partition.inputs)
            for input in partition.inputs where !available.contains(input) {
                problems.append("\(what) input '\(input)' is not a graph input, an initializer or an output of an earlier partition")
            }
            var produced = Set<String>()
            for index in valid.sorted() {
                let node = graph.nodes[index]
                for name in node.valuesRead where !produced.contains(name) && !received.contains(name) && graph.initializers[name] == nil {
                    problems.append("\(what) node \(index)\(node.name.isEmpty ? "" : " '\(node.name)'") reads '\(name)', which the partition neither produces nor lists as an input")
                }
                produced.formUnion(node.outputs.filter { !$0.isEmpty })
            }
            for output in partition.outputs where !produced.contains(output) {
                problems.append("\(what) output '\(output)' is not produced by its nodes")
            }
            available.formUnion(partition.outputs)
        }
        let missing = owner.indices.filter { owner[$0] < 0 }
        if !missing.isEmpty {
            problems.append("no partition lists node\(missing.count == 1 ? "" : "s") \(missing.prefix(10).map(String.init).joined(separator: ", "))\(missing.count > 10 ? ", …" : "")")
        }
        for output in graph.outputs where !available.contains(output.name) {
            problems.append("graph output '\(output.name)' is produced by no partition")
        }
        return problems
    }
}
