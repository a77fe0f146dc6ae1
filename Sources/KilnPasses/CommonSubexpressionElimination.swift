import KilnIR

/// Merges nodes that compute the same thing: same op, same inputs (after earlier merges) and equal
/// attributes. Random ops, ops with subgraphs and nodes with large tensor attributes are left alone;
/// a node whose output is a graph output is kept (its name must stay). Each subgraph is processed
/// on its own.
public struct CommonSubexpressionElimination: Pass {
    /// `cse`.
    public let name = "cse"

    /// Tensor attributes larger than this many bytes are not compared (the node is not merged).
    static let maxAttributeBytes = 1 << 14

    /// The pass.
    public init() {}

    /// Merges duplicate nodes; true if any was removed.
    public func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
        Self.eliminate(&graph)
    }

    /// CSE of `graph`, then of its subgraphs.
    static func eliminate(_ graph: inout Graph) -> Bool {
        var changed = false
        var seen: [String: Int] = [:]  // key → index in `kept`
        var kept: [Node] = []
        var renames: [String: String] = [:]
        let graphOutputs = Set(graph.outputs.map(\.name))
        for var node in graph.nodes {
            if !renames.isEmpty {
                node.inputs = node.inputs.map { renames[$0] ?? $0 }
                if node.hasSubgraphs {
                    _ = node.updateSubgraphs { $0.renameUses(renames, includingOutputs: true); return true }
                }
            }
            if node.updateSubgraphs({ eliminate(&$0) }) { changed = true }
            guard let key = key(of: node) else {
                kept.append(node)
                continue
            }
            if let index = seen[key] {
                let original = kept[index]
                let compatible = original.outputs.count == node.outputs.count
                    && zip(original.outputs, node.outputs).allSatisfy { $1.isEmpty || !$0.isEmpty }
                    && !node.outputs.contains(where: graphOutputs.contains)
                if compatible {
                    for (from, to) in zip(node.outputs, original.outputs) where !from.isEmpty {
                        renames[from] = to
                        graph.valueTypes[from] = nil
                    }
                    changed = true
                    continue
                }
            } else {
                seen[key] = kept.count
            }
            kept.append(node)
        }
        graph.nodes = kept
        graph.renameUses(renames, includingOutputs: false)
        return changed
    }

    /// A string that is equal for two nodes exactly when they compute the same values, or nil when the
    /// node must not be merged.
    static func key(of node: Node) -> String? {
        if node.op.domain.isEmpty && randomOps.contains(node.op.name) { return nil }
        if node.hasSubgraphs || node.outputs.allSatisfy(\.isEmpty) { return nil }
        var parts = ["\(node.op.domain)|\(node.op.name)", node.inputs.joined(separator: ",")]
        for (name, attribute) in node.attributes.sorted(by: { $0.key < $1.key }) {
            guard let text = describe(attribute) else { return nil }
            parts.append("\(name)=\(text)")
        }
        return parts.joined(separator: ";")
    }

    /// An exact textual form of an attribute (floats by bit pattern), or nil if it is not comparable.
    static func describe(_ attribute: Attribute) -> String? {
        switch attribute {
        case .float(let f): return "f\(f.bitPattern)"
        case .int(let i): return "i\(i)"
        case .string(let s): return "s\(s.utf8.count):\(s)"
        case .floats(let fs): return "F" + fs.map { String($0.bitPattern) }.joined(separator: ",")
        case .ints(let xs): return "I" + xs.map(String.init).joined(separator: ",")
        case .strings(let ss): return "S" + ss.map { "\($0.utf8.count):\($0)" }.joined()
        case .type(let t): return "t\(t)"
        case .types(let ts): return "T" + ts.map(\.description).joined(separator: ",")
        case .tensor(let t): return describe(t)
        case .tensors(let ts):
            var out = "X"
            for t in ts {
                guard let d = describe(t) else { return nil }
                out += d + "/"
            }
            return out
        case .graph, .graphs: return nil
        }
    }

    /// An exact textual form of a small tensor, or nil if it is too large.
    static func describe(_ tensor: Tensor) -> String? {
        let head = "\(tensor.dtype)\(tensor.shape)"
        if tensor.dtype == .string {
            return head + tensor.strings.map { "\($0.utf8.count):\($0)" }.joined()
        }
        guard let bytes = tensor.rawBytes, bytes.count <= maxAttributeBytes else { return nil }
        return head + ":" + bytes.map { String($0, radix: 16) }.joined(separator: ".")
    }
}
