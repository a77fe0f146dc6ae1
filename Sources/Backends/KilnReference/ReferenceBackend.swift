import KilnBackend
import KilnIR

/// `kiln.reference`: a plain interpreter of every supported op. It is the correctness oracle —
/// clear rather than fast — and is always present.
public struct ReferenceBackend: Backend {
    /// `kiln.reference`.
    public var info: BackendInfo { Self.descriptor.info }

    /// The compatibility string of every payload this backend writes: the interpreter stores nothing
    /// and runs the artifact's graph, so any version that interprets format-1 graphs can load it.
    public static let compat = "kiln.reference/1"

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

    /// An empty payload with compatibility `kiln.reference/1`; fails with `.unsupported` when a node has no kernel.
    public func compile(_ graph: Graph, options: CompileOptions) throws -> Payload {
        if let first = rejections(in: graph).first {
            throw KilnError(.unsupported, "kiln.reference cannot compile node #\(first.node) ('\(graph.nodes[first.node].name)'): \(first.reason)")
        }
        return Payload(bytes: [], compat: Self.compat)
    }

    /// nil for `kiln.reference/1`, else why this version cannot load the payload.
    public func check(compat: String) -> String? {
        if compat == Self.compat { return nil }
        return "kiln.reference \(info.version) loads payloads of compatibility '\(Self.compat)', not '\(compat)'"
    }

    /// Runs `graph`; the payload must be empty (this backend never writes one).
    public func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        guard payload.isEmpty else {
            throw KilnError(.invalidArtifact, "kiln.reference payloads are empty, but this one has \(payload.count) bytes")
        }
        return ReferenceExecutable(graph: graph)
    }
}

struct ReferenceExecutable: Executable {
    let graph: Graph

    func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue] {
        try Interpreter(table: .reference).run(graph, inputs: inputs, parent: nil)
    }
}
