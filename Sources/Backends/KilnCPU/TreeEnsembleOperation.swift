import KilnIR

/// kiln.cpu's tree-ensemble predictor (`kiln.TreeEnsemble`).
///
/// Built once per node when the program is lowered: every tree's nodes are copied into one array of
/// 16-byte records in depth-first order (a split's true child right after it, so the likelier next record
/// is usually on the same cache line), each record holding the feature index and flags packed in one
/// word, the float32 threshold, and both children. Rows are walked a block at a time: for each tree, the
/// rows of a block (`lanes` at once) advance one level per pass, so the loads of different rows overlap
/// instead of waiting on each other. Blocks of rows run on the thread pool; a small batch splits the
/// trees among threads instead and adds the partial sums.
final class CompiledForest: @unchecked Sendable {
    /// One node: `word` = feature (bits 0–23) | mode (24–26) | missing-takes-true (27) | missing kind (28–29);
    /// for a leaf, `yes`/`no` are its first weight and its weight count.
    struct Record {
        var word: UInt32
        var threshold: Float
        var yes: Int32
        var no: Int32
    }

    let spec: TreeEnsemble.Spec
    let records: UnsafeMutableBufferPointer<Record>
    let roots: [Int32]
    let leafTargets: [Int32]
    let leafWeights: [Float]
    /// Whether every split is the common kind: `<` or `<=` with NaN as missing (the fast path).
    let simple: Bool
    /// Whether every leaf has one weight for target 0 (single-output models, the fast path).
    let singleTarget: Bool
    /// Rows walked together.
    static let lanes = 8
    /// Rows per parallel chunk.
    static let blockRows = 64

    static let leafMode: UInt32 = 0

    init(node: Node) throws {
        let spec = try TreeEnsemble.Spec(node: node)
        self.spec = spec
        guard spec.maxFeature < 1 << 24 else { throw KilnError(.unsupported, "kiln.cpu: TreeEnsemble reads feature \(spec.maxFeature); at most 2^24 features are supported") }
        // Depth-first renumbering, true child first.
        var order: [Int32] = []
        var newIndex = [Int32](repeating: -1, count: spec.modes.count)
        var newRoots: [Int32] = []
        for root in spec.roots {
            var stack = [Int(root)]
            var treeOrder: [Int32] = []
            var local: [Int: Int32] = [:]   // nodes shared between trees are duplicated per tree
            while let v = stack.popLast() {
                if local[v] != nil { continue }
                local[v] = Int32(order.count + treeOrder.count)
                treeOrder.append(Int32(v))
                if spec.modes[v] != .leaf {
                    stack.append(Int(spec.falseNext[v]))
                    stack.append(Int(spec.trueNext[v]))
                }
            }
            newRoots.append(local[Int(root)]!)
            // Children's new indices within this tree's copy.
            let base = order.count
            order.append(contentsOf: treeOrder)
            for (k, v) in treeOrder.enumerated() { newIndex[Int(v)] = Int32(base + k) }
            _ = local
        }
        let count = order.count
        records = .allocate(capacity: max(count, 1))
        var simple = true, singleTarget = spec.targets == 1
        for (k, old) in order.enumerated() {
            let v = Int(old)
            let mode = spec.modes[v]
            var word = UInt32(mode.rawValue) << 24 | (spec.missingTrue[v] ? 1 << 27 : 0) | UInt32(spec.missing[v].rawValue) << 28
            if mode == .leaf {
                if spec.falseNext[v] != 1 || spec.leafTargets[Int(spec.trueNext[v])] != 0 { singleTarget = false }
                records[k] = Record(word: word, threshold: 0, yes: spec.trueNext[v], no: spec.falseNext[v])
            } else {
                word |= UInt32(spec.features[v])
                if (mode != .lessThan && mode != .lessOrEqual) || spec.missing[v] != .nan { simple = false }
                records[k] = Record(word: word, threshold: spec.thresholds[v],
                                    yes: newIndex[Int(spec.trueNext[v])], no: newIndex[Int(spec.falseNext[v])])
            }
        }
        // A node reachable from two trees got the index of its last copy; re-point each copy's children at its own tree.
        if count != Set(order).count || count != spec.modes.count {
            throw KilnError(.unsupported, "kiln.cpu: TreeEnsemble with nodes shared between trees or unreachable nodes is not supported")
        }
        roots = newRoots
        leafTargets = spec.leafTargets
        leafWeights = spec.leafWeights
        self.simple = simple
        self.singleTarget = singleTarget
    }

    deinit { records.deallocate() }

    /// Whether record `r` sends value `x` to its true child (the general rule).
    @inline(__always)
    func takesTrue(_ r: Record, _ x: Float) -> Bool {
        var v = x
        let kind = (r.word >> 28) & 3
        if v.isNaN {
            if kind == 2 { v = 0 } else { return r.word & (1 << 27) != 0 }
        } else if kind == 1, v >= -TreeEnsemble.zeroThreshold, v <= TreeEnsemble.zeroThreshold {
            return r.word & (1 << 27) != 0
        }
        let t = r.threshold
        switch (r.word >> 24) & 7 {
        case 1: return v < t
        case 2: return v <= t
        case 3: return v > t
        case 4: return v >= t
        case 5: return v == t
        case 6: return v != t
        default: return spec.isMember(v, set: Int(t))
        }
    }

    /// Adds the leaf values of trees `trees` for rows `rows` of `x` (row stride `stride`) into `sums`
    /// (row-major, `targets` per row, indexed from the block's first row).
    func accumulate(x: UnsafePointer<Float>, stride: Int, rows: Range<Int>, trees: Range<Int>, sums: UnsafeMutablePointer<Double>) {
        let targets = spec.targets
        let nodes = UnsafePointer(records.baseAddress!)
        var lane = rows.lowerBound
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: Self.lanes) { cursor in
            while lane < rows.upperBound {
                let width = min(Self.lanes, rows.upperBound - lane)
                for t in trees {
                    let root = roots[t]
                    for j in 0..<width { cursor[j] = root }
                    var active = true
                    if simple {
                        while active {
                            active = false
                            for j in 0..<width {
                                let r = nodes[Int(cursor[j])]
                                let mode = (r.word >> 24) & 7
                                if mode == 0 { continue }
                                active = true
                                let v = x[(lane + j) * stride + Int(r.word & 0xFF_FFFF)]
                                let yes = v.isNaN ? r.word & (1 << 27) != 0 : (mode == 1 ? v < r.threshold : v <= r.threshold)
                                cursor[j] = yes ? r.yes : r.no
                            }
                        }
                    } else {
                        while active {
                            active = false
                            for j in 0..<width {
                                let r = nodes[Int(cursor[j])]
                                if (r.word >> 24) & 7 == 0 { continue }
                                active = true
                                let v = x[(lane + j) * stride + Int(r.word & 0xFF_FFFF)]
                                cursor[j] = takesTrue(r, v) ? r.yes : r.no
                            }
                        }
                    }
                    for j in 0..<width {
                        let leaf = nodes[Int(cursor[j])]
                        let row = sums + (lane + j - rows.lowerBound) * targets
                        if singleTarget {
                            row[0] += Double(leafWeights[Int(leaf.yes)])
                        } else {
                            for k in Int(leaf.yes)..<Int(leaf.yes + leaf.no) { row[Int(leafTargets[k])] += Double(leafWeights[k]) }
                        }
                    }
                }
                lane += width
            }
        }
    }

    /// Base values, division and post-transform of `rows` rows of `sums`, written to `y`.
    func finish(sums: UnsafeMutablePointer<Double>, rows: Int, y: UnsafeMutablePointer<Float>) {
        let targets = spec.targets, columns = spec.outputColumns
        var row = [Double](repeating: 0, count: targets)
        let divisor = Double(spec.divisor)
        for r in 0..<rows {
            for t in 0..<targets { row[t] = sums[r * targets + t] / divisor + Double(spec.baseValues[t]) }
            spec.finish(&row)
            for c in 0..<columns { y[r * columns + c] = Float(row[c]) }
        }
    }

    /// Predicts `rows` rows of `x` (`features` per row) into `y`, on `pool`.
    func predict(x: UnsafePointer<Float>, rows: Int, features: Int, y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let targets = spec.targets, columns = spec.outputColumns
        let blocks = (rows + Self.blockRows - 1) / Self.blockRows
        let threads = pool.threadCount
        if blocks >= threads || roots.count < 2 * threads {
            pool.parallelFor(blocks) { b in
                let lo = b * Self.blockRows, hi = min(rows, lo + Self.blockRows)
                withUnsafeTemporaryAllocation(of: Double.self, capacity: (hi - lo) * targets) { sums in
                    sums.initialize(repeating: 0)
                    accumulate(x: x, stride: features, rows: lo..<hi, trees: 0..<roots.count, sums: sums.baseAddress!)
                    finish(sums: sums.baseAddress!, rows: hi - lo, y: y + lo * columns)
                }
            }
            return
        }
        // A small batch: each thread takes a share of the trees for every row; the partial sums are added.
        let parts = threads
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: parts * rows * targets)
        defer { partial.deallocate() }
        partial.initialize(repeating: 0, count: parts * rows * targets)
        let trees = roots.count
        pool.parallelFor(parts) { p in
            let lo = trees * p / parts, hi = trees * (p + 1) / parts
            accumulate(x: x, stride: features, rows: 0..<rows, trees: lo..<hi, sums: partial + p * rows * targets)
        }
        for p in 1..<parts {
            for i in 0..<(rows * targets) { partial[i] += partial[p * rows * targets + i] }
        }
        finish(sums: partial, rows: rows, y: y)
    }
}

extension SwiftOps {
    /// The planner of a `kiln.TreeEnsemble` node over `forest` (compiled once when the program is lowered).
    static func treeEnsemble(_ forest: CompiledForest) -> NodePlanner {
        return { b, node, ins, outs in
            try b.requireFloat(ins[0])
            let xs = try b.shape(ins[0])
            guard xs.count == 2 else { throw b.invalid("X must be [rows, features], not \(xs)") }
            guard forest.spec.maxFeature < xs[1] else {
                throw b.invalid("the trees read feature \(forest.spec.maxFeature) but X has \(xs[1]) features")
            }
            let rows = xs[0], features = xs[1]
            let pool = b.pool
            try b.compute([(outs[0], [rows, forest.spec.outputColumns], .float32)], from: [ins[0]], fold: false) { p, o in
                forest.predict(x: p[0].assumingMemoryBound(to: Float.self), rows: rows, features: features,
                               y: o[0].assumingMemoryBound(to: Float.self), pool: pool)
            }
        }
    }
}
