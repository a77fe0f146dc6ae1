import KilnIR

/// Where every node of a graph went and why: the answer to "what runs where", kept in every artifact
/// and available from every session, so that no node ever falls back silently.
public struct PartitionReport: Sendable, Hashable {
    /// One node's assignment.
    public struct Entry: Sendable, Hashable {
        /// Index of the node in the graph's top-level nodes.
        public var node: Int
        /// The node's name (may be empty).
        public var name: String
        /// The node's op (`Conv`, `com.microsoft.Gelu`).
        public var op: String
        /// The backend that runs it.
        public var backend: String
        /// Why (`claimed by acme.npu`, `rejected by acme.npu: float64 not supported; fallback kiln.cpu`).
        public var reason: String

        /// An entry for node `node`.
        public init(node: Int, name: String = "", op: String = "", backend: String, reason: String) {
            self.node = node
            self.name = name
            self.op = op
            self.backend = backend
            self.reason = reason
        }
    }

    /// One entry per node, in node order.
    public var entries: [Entry]
    /// Warnings the partitioner raised (fallbacks under `FallbackPolicy.warn`).
    public var warnings: [String]

    /// A report of `entries` with `warnings`.
    public init(entries: [Entry] = [], warnings: [String] = []) {
        self.entries = entries
        self.warnings = warnings
    }

    /// A report that puts every node of `graph` on `backend` for `reason`.
    public init(graph: Graph, backend: String, reason: String) {
        entries = graph.nodes.enumerated().map { index, node in
            Entry(node: index, name: node.name, op: node.op.description, backend: backend, reason: reason)
        }
        warnings = []
    }

    /// How many nodes each backend runs, in order of each backend's first node.
    public var nodesPerBackend: [(backend: String, nodes: Int)] {
        var order: [String] = []
        var counts: [String: Int] = [:]
        for entry in entries {
            if counts[entry.backend] == nil { order.append(entry.backend) }
            counts[entry.backend, default: 0] += 1
        }
        return order.map { ($0, counts[$0]!) }
    }
}
