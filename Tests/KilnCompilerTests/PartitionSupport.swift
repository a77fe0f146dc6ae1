import Foundation
import Kiln
import KilnReference
import Testing

/// A vendor-like backend for partitioning tests: it claims only `ops`, rejects float64 nodes, compiles a
/// payload naming itself and the node count, and runs what it loads through kiln.reference, so results
/// can be checked against a single-backend run.
struct ClaimingBackend: Backend {
    let info: BackendInfo
    let ops: Set<String>

    init(_ name: String, claims ops: Set<String>, version: String = "1.0.0") {
        info = BackendInfo(name: name, vendor: "tests", version: version)
        self.ops = ops
    }

    var compat: String { "\(info.name)/1" }

    func rejections(in graph: Graph) -> [Rejection] {
        graph.nodes.enumerated().compactMap { index, node in
            guard ops.contains(node.op.name) else { return Rejection(node: index, reason: "\(node.op.name) is not supported") }
            let float64 = node.inputs.contains { graph.type(of: $0)?.tensorType?.dtype == .float64 }
            return float64 ? Rejection(node: index, reason: "float64 not supported") : nil
        }
    }

    func prepare(_ graph: Graph) throws -> any Executable {
        if let first = rejections(in: graph).first { throw KilnError(.unsupported, "\(info.name): node \(first.node): \(first.reason)") }
        return try ReferenceBackend().prepare(graph)
    }

    func compile(_ graph: Graph, options: CompileOptions) throws -> Payload {
        if let first = rejections(in: graph).first { throw KilnError(.unsupported, "\(info.name): node \(first.node): \(first.reason)") }
        return Payload(bytes: Array("\(info.name):\(graph.nodes.count)".utf8), compat: compat)
    }

    func check(compat: String) -> String? { compat == self.compat ? nil : "\(info.name) reads '\(self.compat)' only" }

    func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        guard payload == Array("\(info.name):\(graph.nodes.count)".utf8) else {
            throw KilnError(.invalidArtifact, "\(info.name): the payload does not match the graph of \(graph.nodes.count) nodes")
        }
        return try prepare(graph)
    }
}

/// A registry of kiln.reference (and kiln.cpu with `cpu`, before it, as the host's backend) and `extra`.
func registry(_ extra: any Backend..., cpu: Bool = false) -> BackendRegistry {
    let registry = BackendRegistry()
    if cpu { try! registry.register(CPUBackend.descriptor) }
    try! registry.register(ReferenceBackend.descriptor)
    for backend in extra { registry.register(backend) }
    return registry
}

/// Which nodes each partition holds, by node name.
func groups(_ plan: PartitionPlan, _ graph: Graph) -> [[String]] {
    plan.partitions.map { $0.nodes.map { graph.nodes[$0].name } }
}

/// Records an issue for every partition of `plan` that is not convex in `graph` (a path leaves it and
/// comes back) and for every problem `PartitionPlan.problems` finds (order, inputs, outputs, coverage).
func expectSound(_ plan: PartitionPlan, _ graph: Graph, sourceLocation: SourceLocation = #_sourceLocation) {
    let problems = PartitionPlan.problems(in: graph, partitions: plan.partitions.map { ($0.backend.info.name, $0.nodes, $0.inputs, $0.outputs) })
    #expect(problems.isEmpty || (plan.partitions.count == 1 && plan.partitions[0].nodes.count == graph.nodes.count),
            "\(problems)", sourceLocation: sourceLocation)
    // reach[a] = nodes reachable from node a.
    var producer: [String: Int] = [:]
    for (i, node) in graph.nodes.enumerated() { for o in node.outputs { producer[o] = i } }
    let count = graph.nodes.count
    var reach = [Set<Int>](repeating: [], count: count)
    for i in (0..<count).reversed() {
        for (j, node) in graph.nodes.enumerated() where j > i && node.valuesRead.contains(where: { producer[$0] == i }) {
            reach[i].insert(j)
            reach[i].formUnion(reach[j])
        }
    }
    for (p, partition) in plan.partitions.enumerated() {
        let members = Set(partition.nodes)
        for a in members {
            for w in reach[a] where !members.contains(w) && !reach[w].isDisjoint(with: members) {
                Issue.record("partition \(p) is not convex: a path leaves it at node \(w) and comes back", sourceLocation: sourceLocation)
            }
        }
    }
}
