import KilnBackend
import KilnIR

/// `kiln.reference`: a plain interpreter of every supported op. It is the correctness oracle —
/// clear rather than fast — and is always present.
public struct ReferenceBackend: Backend {
    /// `kiln.reference`.
    public let info = BackendInfo(name: "kiln.reference", vendor: "kiln", version: "0.1.0")

    /// The reference backend.
    public init() {}

    /// Whether the reference backend has a kernel for `op`.
    public static func supports(_ op: OpID) -> Bool { KernelTable.reference[op] != nil }

    /// Every op the reference backend has a kernel for.
    public static var supportedOps: [OpID] { Array(KernelTable.reference.kernels.keys) }

    /// The nodes whose op (or an op inside their subgraphs) has no kernel.
    public func rejections(in graph: Graph) -> [Rejection] {
        graph.nodes.enumerated().compactMap { index, node in
            let missing = ([node] + node.subgraphs.flatMap(\.allNodes)).map(\.op).filter { !Self.supports($0) }
            guard let first = missing.first else { return nil }
            return Rejection(node: index, reason: first == node.op ? "no kernel for \(first)" : "subgraph uses \(first), which has no kernel")
        }
    }

    /// Nothing to compile: the interpreter runs the graph as it is.
    public func prepare(_ graph: Graph) throws -> any Executable {
        ReferenceExecutable(graph: graph)
    }
}

struct ReferenceExecutable: Executable {
    let graph: Graph

    func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue] {
        try Interpreter(table: .reference).run(graph, inputs: inputs, parent: nil)
    }
}
