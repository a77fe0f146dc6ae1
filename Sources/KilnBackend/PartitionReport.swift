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

        /// Whether the node runs on a fallback backend (no selected backend took it, its op was denied, or its
        /// group was too small): the partitioner's reasons for those end in `fallback NAME`.
        public var isFallback: Bool { reason.contains("fallback ") }

        /// Why the node fell back, without the `; fallback NAME` the reason ends with.
        var fallbackCause: String {
            guard let range = reason.ranges(of: "; fallback ").last else { return reason }
            return String(reason[..<range.lowerBound])
        }
    }

    /// One entry per node, in node order.
    public var entries: [Entry]
    /// Warnings the partitioner raised (fallbacks under `FallbackPolicy.warn`).
    public var warnings: [String]
    /// The backend of each partition, in execution order (empty when unknown).
    public var partitions: [String]

    /// A report of `entries` with `warnings`, for partitions on `partitions` (backend names in execution order).
    public init(entries: [Entry] = [], warnings: [String] = [], partitions: [String] = []) {
        self.entries = entries
        self.warnings = warnings
        self.partitions = partitions
    }

    /// How many times the backend changes from one partition to the next, in execution order: each is a
    /// hand-over of values between backends.
    public var transitions: Int {
        zip(partitions, partitions.dropFirst()).count(where: { $0.0 != $0.1 })
    }

    /// `partitions: 3 (2 backend transitions)`.
    public var partitionSummary: String {
        "partitions: \(partitions.count) (\(transitions) backend transition\(transitions == 1 ? "" : "s"))"
    }

    /// A report that puts every node of `graph` on `backend` for `reason`.
    public init(graph: Graph, backend: String, reason: String) {
        entries = graph.nodes.enumerated().map { index, node in
            Entry(node: index, name: node.name, op: node.op.description, backend: backend, reason: reason)
        }
        warnings = []
        partitions = [backend]
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

    /// One line saying how many nodes went to a fallback backend, and why:
    /// `fallback: none (all 53 nodes on kiln.cpu)` or
    /// `fallback: 2 of 53 nodes on kiln.reference: Resize ×2 (rejected by kiln.cpu: no kernel for Resize)`.
    public var fallbackSummary: String {
        let fallen = entries.filter(\.isFallback)
        guard !fallen.isEmpty else {
            let backends = nodesPerBackend.map { "\($0.nodes) on \($0.backend)" }
            let all = backends.count == 1 ? "all \(entries.count) node\(entries.count == 1 ? "" : "s") on \(nodesPerBackend[0].backend)" : backends.joined(separator: ", ")
            return "fallback: none (\(entries.isEmpty ? "no nodes" : all))"
        }
        var order: [String] = []
        var groups: [String: (op: String, count: Int, cause: String)] = [:]
        for entry in fallen {
            let key = "\(entry.op) \(entry.backend)"
            if groups[key] == nil { order.append(key); groups[key] = (entry.op, 0, entry.fallbackCause) }
            groups[key]!.count += 1
        }
        let targets = Set(fallen.map(\.backend)).sorted().joined(separator: ", ")
        let causes = order.prefix(8).map { key in
            let g = groups[key]!
            return "\(g.op)\(g.count > 1 ? " ×\(g.count)" : "") (\(g.cause))"
        }
        return "fallback: \(fallen.count) of \(entries.count) nodes on \(targets): " + causes.joined(separator: "; ")
            + (order.count > 8 ? "; … \(order.count - 8) more op kinds" : "")
    }
}
