import KilnIR

/// Folds an inference-mode `BatchNormalization` into the `Conv`, `Gemm` or 2-D `MatMul` (which becomes
/// a `Gemm`) that produces its input,
/// when that producer's output has no other reader and its weights (and bias) are constants:
///
///     s  = scale / sqrt(var + epsilon)         (per output channel)
///     W' = W · s                               (Conv: along dim 0; Gemm: along the output dim of B)
///     b' = (b − mean) · s + bias               (Gemm: b = beta · C, and beta becomes 1)
///
/// The producer then writes the BatchNormalization's output directly. The old weights are left for
/// dead-code elimination (other nodes may share them). Subgraphs are folded too.
public struct BatchNormFolding: Pass {
    /// `bn-folding`.
    public let name = "bn-folding"

    /// The pass.
    public init() {}

    /// Folds every foldable BatchNormalization; true if any was folded.
    public func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
        var names = NameMaker(used: graph.allNames)
        return Self.fold(&graph, outerConstants: [:], names: &names)
    }

    /// Folds in `graph` (enclosing graphs have `outerConstants`) and its subgraphs.
    static func fold(_ graph: inout Graph, outerConstants: [String: Tensor], names: inout NameMaker) -> Bool {
        var changed = false
        let constants = outerConstants.merging(graph.constantInitializers) { a, _ in a }
        for i in graph.nodes.indices {
            if graph.nodes[i].updateSubgraphs({ fold(&$0, outerConstants: constants, names: &names) }) { changed = true }
        }
        let counts = graph.readCounts
        var producers: [String: Int] = [:]
        var removed = Set<Int>()
        for (i, node) in graph.nodes.enumerated() {
            defer {
                // A folded BatchNormalization's output is now written by its producer.
                if !removed.contains(i) { for o in graph.nodes[i].outputs where !o.isEmpty { producers[o] = i } }
            }
            guard node.isOp("BatchNormalization"), node.int("training_mode", 0) == 0, node.inputs.count == 5,
                  !node.outputs[0].isEmpty,
                  node.outputs.dropFirst().allSatisfy({ $0.isEmpty || counts[$0] == nil }),
                  let p = producers[node.inputs[0]], counts[node.inputs[0]] == 1,
                  let scale = constants[node.inputs[1]], let bias = constants[node.inputs[2]],
                  let mean = constants[node.inputs[3]], let variance = constants[node.inputs[4]]
            else { continue }
            let params = [scale, bias, mean, variance]
            guard params.allSatisfy({ $0.dtype.isFloatingPoint && $0.rank == 1 }) else { continue }
            let channels = scale.count
            guard params.allSatisfy({ $0.count == channels }) else { continue }
            let epsilon = Double(node.float("epsilon", 1e-5))
            let v = variance.asDoubles(), m = mean.asDoubles(), g = scale.asDoubles(), b = bias.asDoubles()
            let s = (0..<channels).map { g[$0] / (v[$0] + epsilon).squareRoot() }
            let shift = (0..<channels).map { b[$0] - m[$0] * s[$0] }  // b' = b_old·s + shift

            var producer = graph.nodes[p]
            guard producer.op.domain.isEmpty, producer.outputs.first == node.inputs[0] else { continue }
            let folded: (weights: Tensor, bias: Tensor)?
            switch producer.op.name {
            case "Conv":
                folded = foldConv(producer, constants: constants, s: s, shift: shift)
            case "Gemm":
                folded = foldGemm(producer, constants: constants, s: s, shift: shift)
            case "MatMul":
                // Only a 2-D MatMul is a Gemm without bias: it becomes one, with the folded bias.
                guard graph.tensorType(of: producer.inputs[0])?.shape?.count == 2 else { continue }
                folded = foldGemm(producer, constants: constants, s: s, shift: shift)
                producer.op = OpID("", "Gemm")
                producer.attributes = [:]
            default:
                folded = nil
            }
            guard let folded else { continue }
            let wName = names.make(producer.inputs[1] + ".bn_folded")
            let bName = names.make((producer.name.isEmpty ? node.outputs[0] : producer.name) + ".bn_bias")
            graph.initializers[wName] = folded.weights
            graph.initializers[bName] = folded.bias
            producer.inputs = [producer.inputs[0], wName, bName]
            if producer.isOp("Gemm") { producer.attributes["beta"] = .float(1) }
            graph.valueTypes[producer.outputs[0]] = nil
            producer.outputs[0] = node.outputs[0]
            graph.nodes[p] = producer
            removed.insert(i)
            producers[node.outputs[0]] = p
            changed = true
        }
        if !removed.isEmpty {
            graph.nodes = graph.nodes.indices.filter { !removed.contains($0) }.map { graph.nodes[$0] }
        }
        return changed
    }

    /// New weights and bias for a Conv with constant weights `[M, C/group, …]` and optional constant bias.
    static func foldConv(_ conv: Node, constants: [String: Tensor], s: [Double], shift: [Double]) -> (weights: Tensor, bias: Tensor)? {
        guard conv.inputs.count >= 2, let w = constants[conv.inputs[1]], w.dtype.isFloatingPoint, w.rank >= 3,
              w.shape[0] == s.count else { return nil }
        var oldBias = [Double](repeating: 0, count: s.count)
        if conv.inputs.count > 2, !conv.inputs[2].isEmpty {
            guard let b = constants[conv.inputs[2]], b.count == s.count else { return nil }
            oldBias = b.asDoubles()
        }
        let perChannel = w.count / s.count
        var weights = w.asDoubles()
        for c in 0..<s.count {
            for k in 0..<perChannel { weights[c * perChannel + k] *= s[c] }
        }
        let bias = (0..<s.count).map { oldBias[$0] * s[$0] + shift[$0] }
        return (Tensor(dtype: w.dtype, shape: w.shape, doubles: weights), Tensor(dtype: w.dtype, shape: [s.count], doubles: bias))
    }

    /// New B and C for a Gemm with constant 2-D B and an optional constant C that is per output column
    /// (a scalar, `[M]` or `[1, M]`).
    static func foldGemm(_ gemm: Node, constants: [String: Tensor], s: [Double], shift: [Double]) -> (weights: Tensor, bias: Tensor)? {
        guard gemm.inputs.count >= 2, let w = constants[gemm.inputs[1]], w.dtype.isFloatingPoint, w.rank == 2 else { return nil }
        let transB = gemm.int("transB", 0) == 1
        let m = transB ? w.shape[0] : w.shape[1]
        guard m == s.count else { return nil }
        let beta = Double(gemm.float("beta", 1))
        var oldBias = [Double](repeating: 0, count: m)
        if gemm.inputs.count > 2, !gemm.inputs[2].isEmpty {
            guard let c = constants[gemm.inputs[2]] else { return nil }
            let values = c.asDoubles()
            if c.count == 1 {
                oldBias = [Double](repeating: values[0] * beta, count: m)
            } else if c.count == m && (c.rank == 1 || (c.rank == 2 && c.shape[0] == 1)) {
                oldBias = values.map { $0 * beta }
            } else {
                return nil
            }
        }
        var weights = w.asDoubles()
        let rows = w.shape[0], cols = w.shape[1]
        for r in 0..<rows {
            for c in 0..<cols { weights[r * cols + c] *= s[transB ? r : c] }
        }
        let bias = (0..<m).map { oldBias[$0] * s[$0] + shift[$0] }
        return (Tensor(dtype: w.dtype, shape: w.shape, doubles: weights), Tensor(dtype: w.dtype, shape: [m], doubles: bias))
    }
}
