import KilnIR

/// Kiln's tree-ensemble op (`kiln.TreeEnsemble`): each row walks each tree from its root to a leaf, the
/// leaves' weights are summed per target in double precision, then divided, offset by the base values and
/// post-transformed. Written for obviousness; kiln.cpu has the fast one.
enum TreeOps {
    /// Adds this family's kernels to `table`.
    static func register(into table: inout KernelTable) {
        table.add(TreeEnsemble.op.name, domain: TreeEnsemble.op.domain) { ctx in [.tensor(try treeEnsemble(ctx))] }
    }

    /// Whether a row whose feature value is `x` takes node `i`'s true branch.
    static func takesTrue(_ spec: TreeEnsemble.Spec, _ i: Int, _ x: Float) -> Bool {
        var v = x
        switch spec.missing[i] {
        case .nan:
            if v.isNaN { return spec.missingTrue[i] }
        case .nanOrZero:
            if v.isNaN || (v >= -TreeEnsemble.zeroThreshold && v <= TreeEnsemble.zeroThreshold) { return spec.missingTrue[i] }
        case .nanAsZero:
            if v.isNaN { v = 0 }
        }
        let t = spec.thresholds[i]
        switch spec.modes[i] {
        case .leaf: return false
        case .lessThan: return v < t
        case .lessOrEqual: return v <= t
        case .greaterThan: return v > t
        case .greaterOrEqual: return v >= t
        case .equal: return v == t
        case .notEqual: return v != t
        case .member: return spec.isMember(v, set: Int(t))
        }
    }

    static func treeEnsemble(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.dtype == .float32 else { throw ctx.unsupported("element type \(x.dtype); X must be float32") }
        guard x.rank == 2 else { throw ctx.fail("X must be [rows, features], not \(x.shape)") }
        let spec = try TreeEnsemble.Spec(node: ctx.node)
        let rows = x.shape[0], features = x.shape[1]
        guard spec.maxFeature < features else {
            throw ctx.fail("the trees read feature \(spec.maxFeature) but X has \(features) features")
        }
        let data = x.asDoubles().map { Float($0) }
        let columns = spec.outputColumns
        _ = try ctx.checkedCount([rows, columns], "the scores")
        var out = [Double]()
        out.reserveCapacity(rows * columns)
        for r in 0..<rows {
            var sums = [Double](repeating: 0, count: spec.targets)
            for root in spec.roots {
                var node = Int(root)
                while spec.modes[node] != .leaf {
                    let v = data[r * features + Int(spec.features[node])]
                    node = Int(takesTrue(spec, node, v) ? spec.trueNext[node] : spec.falseNext[node])
                }
                let first = Int(spec.trueNext[node]), count = Int(spec.falseNext[node])
                for k in first..<(first + count) { sums[Int(spec.leafTargets[k])] += Double(spec.leafWeights[k]) }
            }
            for t in 0..<spec.targets { sums[t] = sums[t] / Double(spec.divisor) + Double(spec.baseValues[t]) }
            spec.finish(&sums)
            out.append(contentsOf: sums.prefix(columns))
        }
        return Tensor(dtype: .float32, shape: [rows, columns], doubles: out)
    }
}
