import CKilnKernels
import KilnIR

/// kiln.cpu's tree-ensemble predictor (`kiln.TreeEnsemble`).
///
/// Built once per node when the program is lowered. Three walks, the first that can take the forest:
///
/// - The lockstep walk (`kiln_forest_*`, CKilnKernels trees.c): every split a `<`, `<=`, `>` or `>=` with
///   NaN missing or read as 0 (XGBoost, LightGBM's missing_type NaN/None, ONNX-ML). Each split folds into one
///   unsigned comparison of order-preserving integer keys, children side by side; eight rows walk one tree
///   (or, for a batch of at most `smallBatch` rows, one row walks eight trees) with their cursors in
///   registers. Rows are turned into keys once per block. The C side picks two refinements when it builds the
///   forest: blocks of a forest of small trees (at most 64 leaves, one value each) are walked by leaf masks
///   on AVX-512 CPUs (16 rows tested against every split at once), and one row goes through a forest of
///   mostly unbalanced trees chained (eight lanes, each going on to its next tree at once).
/// - The work-list walk (`kiln_trees_*`): the other comparison forests (LightGBM's missing_type Zero): 16-byte
///   split records, a list of independent walks, each dropped at its own leaf.
/// - The Swift walk: forests with `==`, `!=` or category sets: every tree's nodes in one array of 16-byte
///   records (a leaf is its own child), rows walked a block (64 rows) at a time, tree by tree.
///
/// The C walks take blocks of up to 256 rows tree by tree (a tree stays in L1 while the block walks it), the
/// blocks on the thread pool; a small batch runs on the calling thread. The Swift walk splits a small batch's
/// trees among threads instead and adds the partial sums.
final class CompiledForest: @unchecked Sendable {
    /// One node: `word` = feature (bits 0–23) | mode (24–26) | missing-takes-true (27) | missing kind (28–29);
    /// a leaf is its own child (`yes` = `no` = itself); its weights are in `leafFirst`/`leafCount`/`leafValue`.
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
    /// Per record: a leaf's first weight and weight count (0 for splits), and its one weight when `singleTarget`.
    let leafFirst: [Int32]
    let leafCount: [Int32]
    let leafValue: [Float]
    /// The longest root-to-leaf path of each tree, in splits.
    let depths: [Int]
    /// The shortest root-to-leaf path of each tree: from there on, a block's walk stops once all its rows are at leaves.
    let shallowest: [Int]
    /// Whether every split is the common kind: `<` or `<=` with NaN as missing (the fast path).
    let simple: Bool
    /// For `simple` forests: whether every split is `<=` (LightGBM, ONNX-ML) rather than `<` (XGBoost).
    let lessOrEqual: Bool
    /// Whether every leaf has one weight for target 0 (single-output models, the fast path).
    let singleTarget: Bool
    /// Rows per parallel chunk.
    static let blockRows = 64

    /// The C walk's layout (`kiln_trees_*` in CKilnKernels), built when every split is `<`, `<=`, `>` or `>=`
    /// (any missing-value rule): splits only, in the same depth-first order, children as split indices or
    /// ~leaf; `>`/`>=` become `<=`/`<` with the children (and the missing branch) swapped. Nil otherwise.
    let cNodes: UnsafeMutableBufferPointer<kiln_tree_node>?
    /// Each tree's root in `cNodes` (a split index, or ~leaf for a tree that is one leaf).
    let cRoots: [Int32]
    /// Per leaf number (depth-first order): its record in `records` (for `leafFirst`/`leafCount`/`leafValue`).
    let cLeafRecord: [Int32]
    /// Per leaf number: its one weight when `singleTarget`.
    let cLeafValue: [Float]
    /// The `KILN_TREES_RULE_*` that holds for every split in `cNodes` (the C walk specializes on it).
    let cRule: Int32
    /// At most this many rows are walked tree-interleaved on the calling thread (no block setup, no pool).
    static let smallBatch = 4
    /// The lockstep layout of `cNodes` (`kiln_forest_build`), or nil when some split does not fold into it.
    let lockstep: OpaquePointer?

    static let leafMode: UInt32 = 0

    init(node: Node) throws {
        let spec = try TreeEnsemble.Spec(node: node)
        self.spec = spec
        guard spec.maxFeature < 1 << 24 else { throw KilnError(.unsupported, "kiln.cpu: TreeEnsemble reads feature \(spec.maxFeature); at most 2^24 features are supported") }
        // Depth-first renumbering, true child first.
        var order: [Int32] = []
        var newIndex = [Int32](repeating: -1, count: spec.modes.count)
        var newRoots: [Int32] = []
        var depths: [Int] = [], shallowest: [Int] = []
        for root in spec.roots {
            var stack = [(Int(root), 0)]
            var treeOrder: [Int32] = []
            var local: [Int: Int32] = [:]
            var depth = 0, shallow = Int.max
            while let (v, d) = stack.popLast() {
                if local[v] != nil { continue }
                local[v] = Int32(order.count + treeOrder.count)
                treeOrder.append(Int32(v))
                depth = max(depth, d)
                if spec.modes[v] == .leaf { shallow = min(shallow, d) }
                if spec.modes[v] != .leaf {
                    stack.append((Int(spec.falseNext[v]), d + 1))
                    stack.append((Int(spec.trueNext[v]), d + 1))
                }
            }
            newRoots.append(local[Int(root)]!)
            depths.append(depth)
            shallowest.append(min(shallow, depth))
            let base = order.count
            order.append(contentsOf: treeOrder)
            for (k, v) in treeOrder.enumerated() { newIndex[Int(v)] = Int32(base + k) }
        }
        let count = order.count
        records = .allocate(capacity: max(count, 1))
        var simple = true, singleTarget = spec.targets == 1
        var sawLT = false, sawLE = false
        var leafFirst = [Int32](repeating: 0, count: count), leafCount = [Int32](repeating: 0, count: count)
        var leafValue = [Float](repeating: 0, count: count)
        for (k, old) in order.enumerated() {
            let v = Int(old)
            let mode = spec.modes[v]
            var word = UInt32(mode.rawValue) << 24 | (spec.missingTrue[v] ? 1 << 27 : 0) | UInt32(spec.missing[v].rawValue) << 28
            if mode == .leaf {
                // A leaf points at itself, so a walk of a tree's full depth may pass it and stay.
                leafFirst[k] = spec.trueNext[v]
                leafCount[k] = spec.falseNext[v]
                if spec.falseNext[v] != 1 || spec.leafTargets[Int(spec.trueNext[v])] != 0 { singleTarget = false } else {
                    leafValue[k] = spec.leafWeights[Int(spec.trueNext[v])]
                }
                records[k] = Record(word: word, threshold: 0, yes: Int32(k), no: Int32(k))
            } else {
                word |= UInt32(spec.features[v])
                if (mode != .lessThan && mode != .lessOrEqual) || spec.missing[v] != .nan { simple = false }
                if mode == .lessThan { sawLT = true } else { sawLE = true }
                records[k] = Record(word: word, threshold: spec.thresholds[v],
                                    yes: newIndex[Int(spec.trueNext[v])], no: newIndex[Int(spec.falseNext[v])])
            }
        }
        if sawLT && sawLE { simple = false }
        // A node reachable from two trees got the index of its last copy; re-point each copy's children at its own tree.
        if count != Set(order).count || count != spec.modes.count {
            throw KilnError(.unsupported, "kiln.cpu: TreeEnsemble with nodes shared between trees or unreachable nodes is not supported")
        }
        roots = newRoots
        leafTargets = spec.leafTargets
        leafWeights = spec.leafWeights
        self.leafFirst = leafFirst
        self.leafCount = leafCount
        self.leafValue = leafValue
        self.depths = depths
        self.shallowest = shallowest
        self.simple = simple
        self.lessOrEqual = sawLE
        self.singleTarget = singleTarget

        // The C walk's layout.
        var cOK = true
        var splitNumber = [Int32](repeating: -1, count: count), leafNumber = [Int32](repeating: -1, count: count)
        var splits = 0, leaves = 0
        for k in 0..<count {
            let v = Int(order[k])
            switch spec.modes[v] {
            case .leaf: leafNumber[k] = Int32(leaves); leaves += 1
            case .lessThan, .lessOrEqual, .greaterThan, .greaterOrEqual: splitNumber[k] = Int32(splits); splits += 1
            default: cOK = false
            }
        }
        if cOK && splits < Int(Int32.max) / 4 {
            func ref(_ k: Int32) -> Int32 { splitNumber[Int(k)] >= 0 ? splitNumber[Int(k)] : ~leafNumber[Int(k)] }
            let nodes = UnsafeMutableBufferPointer<kiln_tree_node>.allocate(capacity: max(splits, 1))
            var leafRecord = [Int32](repeating: 0, count: leaves), leafValueByNumber = [Float](repeating: 0, count: leaves)
            for k in 0..<count {
                let v = Int(order[k])
                let mode = spec.modes[v]
                if mode == .leaf {
                    leafRecord[Int(leafNumber[k])] = Int32(k)
                    leafValueByNumber[Int(leafNumber[k])] = leafValue[k]
                    continue
                }
                // x > t is !(x <= t) and x >= t is !(x < t) for every value that is not missing (a NaN that is
                // not missing compares as 0), so those become the other comparison with the branches swapped.
                let swapped = mode == .greaterThan || mode == .greaterOrEqual
                let le = mode == .lessOrEqual || mode == .greaterThan
                var yes = ref(records[k].yes), no = ref(records[k].no)
                var missingYes = spec.missingTrue[v]
                if swapped { swap(&yes, &no); missingYes.toggle() }
                let word = UInt32(spec.features[v]) | (le ? KILN_TREE_LE : 0) | (missingYes ? KILN_TREE_MISSING_YES : 0)
                    | UInt32(spec.missing[v].rawValue) << KILN_TREE_MISSING_SHIFT
                nodes[Int(splitNumber[k])] = kiln_tree_node(word: word, threshold: spec.thresholds[v], yes: yes, no: no)
            }
            // The narrowest rule that holds for every split.
            var allLT = true, allLE = true, allNaN = true, allAsZero = true
            for i in 0..<splits {
                let w = nodes[i].word
                if w & KILN_TREE_LE != 0 { allLT = false } else { allLE = false }
                let kind = Int32((w >> KILN_TREE_MISSING_SHIFT) & 3)
                if kind != KILN_TREE_MISSING_NAN { allNaN = false }
                if kind != KILN_TREE_MISSING_NAN_AS_ZERO { allAsZero = false }
            }
            cRule = allLT && allNaN ? KILN_TREES_RULE_LT_NAN : allLE && allNaN ? KILN_TREES_RULE_LE_NAN
                : allLE && allAsZero ? KILN_TREES_RULE_LE_NAN_AS_ZERO : KILN_TREES_RULE_GENERAL
            cNodes = nodes
            cRoots = newRoots.map { ref($0) }
            cLeafRecord = leafRecord
            cLeafValue = leafValueByNumber
            let roots = cRoots
            lockstep = leafValueByNumber.withUnsafeBufferPointer { values in
                kiln_forest_build(nodes.baseAddress!, splits, roots, roots.count, singleTarget ? values.baseAddress : nil, leaves)
            }
        } else {
            lockstep = nil
            cNodes = nil
            cRule = KILN_TREES_RULE_GENERAL
            cRoots = []
            cLeafRecord = []
            cLeafValue = []
        }
    }

    deinit {
        records.deallocate()
        cNodes?.deallocate()
        kiln_forest_free(lockstep)
    }

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

    /// One step of a simple forest's walk: record `c`'s child for `row` (NaN takes the missing branch).
    @inline(__always)
    static func step<R: SplitRule>(_ rule: R.Type, _ nodes: UnsafePointer<Record>, _ c: Int32, _ row: UnsafePointer<Float>) -> Int32 {
        let r = nodes[Int(c)]
        let v = row[Int(r.word & 0xFF_FFFF)]
        // Arithmetic, not branches: which way a row goes is data, and mispredicted branches cost more than the walk.
        let pass: UInt32 = R.passes(v, r.threshold) ? 1 : 0
        let missing: UInt32 = v.isNaN ? 1 : 0
        let take = (pass | (missing & (r.word >> 27))) & 1
        return r.no ^ ((r.yes ^ r.no) & (0 &- Int32(bitPattern: take)))
    }

    /// Adds the leaf values of trees `trees` for rows `rows` of `x` (row stride `stride`) into `sums`
    /// (row-major, `targets` per row, indexed from the block's first row).
    func accumulate(x: UnsafePointer<Float>, stride: Int, rows: Range<Int>, trees: Range<Int>, sums: UnsafeMutablePointer<Double>) {
        if simple {
            if lessOrEqual { walkSimple(LessOrEqualRule.self, x: x, stride: stride, rows: rows, trees: trees, sums: sums) } else {
                walkSimple(LessThanRule.self, x: x, stride: stride, rows: rows, trees: trees, sums: sums)
            }
            return
        }
        let targets = spec.targets
        let nodes = UnsafePointer(records.baseAddress!)
        for t in trees {
            for row in rows {
                let base = x + row * stride
                var c = Int(roots[t])
                while (nodes[c].word >> 24) & 7 != 0 {
                    let r = nodes[c]
                    c = Int(takesTrue(r, base[Int(r.word & 0xFF_FFFF)]) ? r.yes : r.no)
                }
                addLeaf(c, sums + (row - rows.lowerBound) * targets)
            }
        }
    }

    @inline(__always)
    func addLeaf(_ c: Int, _ out: UnsafeMutablePointer<Double>) {
        if singleTarget {
            out[0] += Double(leafValue[c])
        } else {
            let first = Int(leafFirst[c])
            for k in first..<(first + Int(leafCount[c])) { out[Int(leafTargets[k])] += Double(leafWeights[k]) }
        }
    }

    /// The fast walk: 8 rows at once, each tree walked to its full depth with no test for leaves (a leaf is its
    /// own child), the 8 walks interleaved so their memory loads overlap.
    @inline(__always)
    func walkSimple<R: SplitRule>(_ rule: R.Type, x: UnsafePointer<Float>, stride: Int, rows: Range<Int>, trees: Range<Int>,
                                  sums: UnsafeMutablePointer<Double>) {
        let targets = spec.targets
        let nodes = UnsafePointer(records.baseAddress!)
        let roots = self.roots, depths = self.depths, shallowest = self.shallowest
        // Trees outside, rows inside: one tree's records stay in L1 while every row of the block walks it.
        for t in trees {
            let root = roots[t], depth = depths[t], shallow = shallowest[t]
            var lane = rows.lowerBound
            while lane + 8 <= rows.upperBound {
                let r0 = x + lane * stride, r1 = r0 + stride, r2 = r1 + stride, r3 = r2 + stride
                let r4 = r3 + stride, r5 = r4 + stride, r6 = r5 + stride, r7 = r6 + stride
                var c0 = root, c1 = root, c2 = root, c3 = root, c4 = root, c5 = root, c6 = root, c7 = root
                for level in 0..<depth {
                    // Past the shallowest leaf, stop as soon as all 8 rows are at leaves (unbalanced trees).
                    if level >= shallow, nodes[Int(c0)].yes == c0, nodes[Int(c1)].yes == c1, nodes[Int(c2)].yes == c2,
                       nodes[Int(c3)].yes == c3, nodes[Int(c4)].yes == c4, nodes[Int(c5)].yes == c5,
                       nodes[Int(c6)].yes == c6, nodes[Int(c7)].yes == c7 {
                        break
                    }
                    c0 = Self.step(R.self, nodes, c0, r0)
                    c1 = Self.step(R.self, nodes, c1, r1)
                    c2 = Self.step(R.self, nodes, c2, r2)
                    c3 = Self.step(R.self, nodes, c3, r3)
                    c4 = Self.step(R.self, nodes, c4, r4)
                    c5 = Self.step(R.self, nodes, c5, r5)
                    c6 = Self.step(R.self, nodes, c6, r6)
                    c7 = Self.step(R.self, nodes, c7, r7)
                }
                let out = sums + (lane - rows.lowerBound) * targets
                addLeaf(Int(c0), out)
                addLeaf(Int(c1), out + targets)
                addLeaf(Int(c2), out + 2 * targets)
                addLeaf(Int(c3), out + 3 * targets)
                addLeaf(Int(c4), out + 4 * targets)
                addLeaf(Int(c5), out + 5 * targets)
                addLeaf(Int(c6), out + 6 * targets)
                addLeaf(Int(c7), out + 7 * targets)
                lane += 8
            }
            while lane < rows.upperBound {
                let row = x + lane * stride
                var c = root
                for _ in 0..<depth { c = Self.step(R.self, nodes, c, row) }
                addLeaf(Int(c), sums + (lane - rows.lowerBound) * targets)
                lane += 1
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

    /// Adds the contributions of `trees` trees' leaves (`leaves[i]` = ~leaf number, as the C walk writes them)
    /// to one row's `out` (`targets` sums), in tree order.
    @inline(__always)
    func addLeaves(_ leaves: UnsafePointer<Int32>, _ trees: Int, _ out: UnsafeMutablePointer<Double>) {
        if singleTarget {
            var s = out[0]
            for i in 0..<trees { s += Double(cLeafValue[Int(~leaves[i])]) }
            out[0] = s
        } else {
            for i in 0..<trees { addLeaf(Int(cLeafRecord[Int(~leaves[i])]), out) }
        }
    }

    /// The lockstep walk over rows `rows` of `x` and every tree, sums into `sums` (indexed from the first row).
    func accumulateLockstep(_ forest: OpaquePointer, x: UnsafePointer<Float>, stride: Int, rows: Range<Int>,
                            sums: UnsafeMutablePointer<Double>) {
        let targets = spec.targets, n = rows.count, width = 2 * kiln_forest_features(forest), trees = cRoots.count
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: n * width) { keys in
            let k = keys.baseAddress!
            kiln_forest_expand(forest, x + rows.lowerBound * stride, stride, n, k)
            if singleTarget {
                if n <= Self.smallBatch {
                    for r in 0..<n { kiln_forest_sum_row(forest, k + r * width, sums + r) }
                } else {
                    kiln_forest_sum_rows(forest, k, n, sums)
                }
                return
            }
            if n <= Self.smallBatch {
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: trees) { leaves in
                    for r in 0..<n {
                        kiln_forest_leaves_row(forest, k + r * width, leaves.baseAddress!)
                        for t in 0..<trees { addLeaf(Int(cLeafRecord[Int(leaves[t])]), sums + r * targets) }
                    }
                }
                return
            }
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: n) { leaves in
                for t in 0..<trees {
                    kiln_forest_leaves_rows(forest, t, k, n, leaves.baseAddress!)
                    for r in 0..<n { addLeaf(Int(cLeafRecord[Int(leaves[r])]), sums + r * targets) }
                }
            }
        }
    }

    /// The C walk over rows `rows` of `x` and trees `trees`, sums into `sums` (indexed from the first row).
    func accumulateC(_ nodes: UnsafePointer<kiln_tree_node>, x: UnsafePointer<Float>, stride: Int, rows: Range<Int>,
                     trees: Range<Int>, sums: UnsafeMutablePointer<Double>) {
        let targets = spec.targets, n = rows.count
        let first = x + rows.lowerBound * stride
        cRoots.withUnsafeBufferPointer { roots in
            if n <= Self.smallBatch {
                // Few rows: each row walks all its trees at once (their walks are independent, so they overlap).
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: max(trees.count, 1)) { leaves in
                    for r in 0..<n {
                        kiln_trees_walk_row(nodes, roots.baseAddress! + trees.lowerBound, trees.count, first + r * stride,
                                            leaves.baseAddress!, cRule)
                        addLeaves(leaves.baseAddress!, trees.count, sums + r * targets)
                    }
                }
                return
            }
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: n) { leaves in
                let l = leaves.baseAddress!
                if singleTarget && targets == 1 {
                    cLeafValue.withUnsafeBufferPointer { values in
                        kiln_trees_sum_rows(nodes, roots.baseAddress! + trees.lowerBound, trees.count, values.baseAddress!,
                                            first, stride, n, l, sums, cRule)
                    }
                    return
                }
                for t in trees {
                    kiln_trees_walk_rows(nodes, roots[t], first, stride, n, l, cRule)
                    for r in 0..<n { addLeaf(Int(cLeafRecord[Int(~l[r])]), sums + r * targets) }
                }
            }
        }
    }

    /// Base values, division and post-transform for a single-output, untransformed model: one pass, no row buffer.
    func finishPlain(sums: UnsafeMutablePointer<Double>, rows: Int, y: UnsafeMutablePointer<Float>) {
        let divisor = Double(spec.divisor), base = Double(spec.baseValues[0])
        for r in 0..<rows { y[r] = Float(sums[r] / divisor + base) }
    }

    /// Predicts `rows` rows with the C walk.
    func predictC(_ nodes: UnsafePointer<kiln_tree_node>, x: UnsafePointer<Float>, rows: Int, features: Int,
                  y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let targets = spec.targets, columns = spec.outputColumns
        let plain = targets == 1 && spec.postTransform == .none
        func run(_ lo: Int, _ hi: Int) {
            withUnsafeTemporaryAllocation(of: Double.self, capacity: (hi - lo) * targets) { sums in
                sums.initialize(repeating: 0)
                if let forest = lockstep {
                    accumulateLockstep(forest, x: x, stride: features, rows: lo..<hi, sums: sums.baseAddress!)
                } else {
                    accumulateC(nodes, x: x, stride: features, rows: lo..<hi, trees: 0..<cRoots.count, sums: sums.baseAddress!)
                }
                if plain {
                    finishPlain(sums: sums.baseAddress!, rows: hi - lo, y: y + lo)
                } else {
                    finish(sums: sums.baseAddress!, rows: hi - lo, y: y + lo * columns)
                }
            }
        }
        // A small batch runs on the calling thread: waking the pool costs more than its walk.
        if rows <= Self.smallBatch || pool.threadCount == 1 && rows <= Self.blockRows {
            run(0, rows)
            return
        }
        // Blocks of up to 256 rows (a longer work list overlaps more loads: 256 walked ~10% faster than 128 and ~25%
        // faster than 64 on the XGBoost benchmark model), at least two per thread when they fit.
        // A wide forest's keys take 8 bytes per feature per row: its blocks are shorter, to keep them in L2.
        let widest = lockstep.map { max(8, 32768 / max(kiln_forest_features($0), 1)) } ?? 256
        let block = max(8, min(256, widest, (rows + 2 * pool.threadCount - 1) / (2 * pool.threadCount)))
        let blocks = (rows + block - 1) / block
        pool.parallelFor(blocks) { b in run(b * block, min(rows, b * block + block)) }
    }

    /// Predicts `rows` rows of `x` (`features` per row) into `y`, on `pool`.
    func predict(x: UnsafePointer<Float>, rows: Int, features: Int, y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        if let nodes = cNodes, kiln_trees_enabled() != 0 {
            predictC(UnsafePointer(nodes.baseAddress!), x: x, rows: rows, features: features, y: y, pool: pool)
            return
        }
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

/// The comparison of a forest whose splits are all of one kind, resolved at compile time in the fast walk.
protocol SplitRule {
    /// Whether `x` takes the true branch of a split at `t`.
    static func passes(_ x: Float, _ t: Float) -> Bool
}

/// XGBoost's `x < t`.
enum LessThanRule: SplitRule {
    @inline(__always) static func passes(_ x: Float, _ t: Float) -> Bool { x < t }
}

/// LightGBM's and ONNX-ML BRANCH_LEQ's `x <= t`.
enum LessOrEqualRule: SplitRule {
    @inline(__always) static func passes(_ x: Float, _ t: Float) -> Bool { x <= t }
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
