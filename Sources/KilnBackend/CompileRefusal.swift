import KilnIR

/// A backend's refusal, at compile or prepare time, of nodes it claimed: the typed way for `compile` and
/// `prepare` to say *which* nodes they cannot take after all, so that the host can repartition with those
/// nodes rejected instead of failing (see `Partitioner.plan(_:building:)`).
///
/// `rejections` index the nodes of the graph the backend was given (a partition's subgraph); the host
/// maps them back to the nodes of the whole graph. A backend that throws a `KilnError` of code
/// `.unsupported` from `compile` or `prepare` refuses every node it was given.
public struct CompileRefusal: Error, Sendable, CustomStringConvertible {
    /// The backend that refuses.
    public var backend: String
    /// The refused nodes (indices into the graph the backend was given) and why.
    public var rejections: [Rejection]
    /// The same refusal as a `KilnError` (`.unsupported`, naming the first node), for callers that cannot
    /// repartition.
    public var error: KilnError

    /// `backend` refuses `rejections` of `graph`.
    public init(backend: String, rejections: [Rejection], in graph: Graph) {
        self.backend = backend
        self.rejections = rejections
        let first = rejections.first
        let node = first.flatMap { $0.node >= 0 && $0.node < graph.nodes.count ? graph.nodes[$0.node] : nil }
        let name = node.map { $0.name.isEmpty ? "#\(first!.node)" : $0.name } ?? "#\(first?.node ?? -1)"
        error = KilnError(.unsupported, "\(backend) cannot compile node '\(name)' (\(node.map { "\($0.op)" } ?? "?")): \(first?.reason ?? "refused")"
                          + (rejections.count > 1 ? " (and \(rejections.count - 1) more)" : ""))
    }

    /// The error's message.
    public var description: String { error.message }
}

extension Partitioner {
    /// How many times `plan(_:building:)` repartitions at most before giving up.
    public static let maxRepartitions = 64

    /// Partitions `model` and builds every partition with `build` (compile or prepare), holding each backend
    /// to its claim: when `build` throws a `CompileRefusal` (or a `KilnError` of code `.unsupported`, which
    /// refuses the whole partition), the refused nodes are added to the backend's rejections
    /// (`PartitionOptions.extraRejections`) and the graph is partitioned again, until every partition builds.
    /// The report says which nodes a backend claimed and then refused. Under `FallbackPolicy.deny` a refused
    /// node that no selected backend takes is an error naming it, as any other fallback is. Partitions that
    /// did not change are not built again.
    public func plan<T>(_ model: Model, building build: (Int, Partition, Graph) throws -> T) throws -> (plan: PartitionPlan, built: [T]) {
        var partitioner = self
        var built: [String: T] = [:]
        for _ in 0...Self.maxRepartitions {
            let plan = try partitioner.partition(model)
            var results: [T] = []
            var refused: (backend: String, nodes: [Int: String])?
            for (i, partition) in plan.partitions.enumerated() {
                let key = "\(partition.backend.info.name)|\(partition.nodes)|\(partition.inputs)|\(partition.outputs)"
                if let done = built[key] { results.append(done); continue }
                let subgraph = partition.subgraph(of: model.graph)
                do {
                    let result = try build(i, partition, subgraph)
                    built[key] = result
                    results.append(result)
                } catch let refusal as CompileRefusal {
                    var nodes: [Int: String] = [:]
                    for r in refusal.rejections where r.node >= 0 && r.node < partition.nodes.count {
                        nodes[partition.nodes[r.node]] = nodes[partition.nodes[r.node]] ?? r.reason
                    }
                    if nodes.isEmpty { throw refusal.error }
                    refused = (partition.backend.info.name, nodes)
                } catch let error as KilnError where error.code == .unsupported {
                    refused = (partition.backend.info.name, Dictionary(uniqueKeysWithValues: partition.nodes.map { ($0, error.message) }))
                    if partition.nodes.isEmpty { throw error }
                }
                if refused != nil { break }
            }
            guard let refused else { return (plan, results) }
            var extra = partitioner.options.extraRejections[refused.backend] ?? [:]
            let before = extra.count
            for (node, reason) in refused.nodes where extra[node] == nil { extra[node] = reason }
            guard extra.count > before else {
                // The backend refused nodes it was already told to reject: repartitioning cannot help.
                let (node, reason) = refused.nodes.min { $0.key < $1.key }!
                throw KilnError(.unsupported, "\(refused.backend) refused node \(node) of a partition built without its rejected nodes: \(reason)")
            }
            partitioner.options.extraRejections[refused.backend] = extra
        }
        throw KilnError(.unsupported, "backends kept refusing nodes they claimed after \(Self.maxRepartitions) repartitions")
    }
}
