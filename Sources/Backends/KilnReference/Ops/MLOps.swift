import KilnIR

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ops of the `ai.onnx.ml` domain (classical machine learning): LabelEncoder, TreeEnsemble (and the older
/// TreeEnsembleRegressor / TreeEnsembleClassifier), ArrayFeatureExtractor, Binarizer, Scaler, Normalizer,
/// Imputer, LinearRegressor and LinearClassifier.
enum MLOps {
    /// The ONNX domain of these ops.
    static let domain = "ai.onnx.ml"

    /// Adds this family's kernels to `table`.
    static func register(into table: inout KernelTable) {
        table.add("LabelEncoder", domain: domain) { ctx in [.tensor(try labelEncoder(ctx))] }
        table.add("ArrayFeatureExtractor", domain: domain) { ctx in [.tensor(try arrayFeatureExtractor(ctx))] }
        table.add("Binarizer", domain: domain) { ctx in
            let x = try ctx.tensor(0)
            guard x.dtype.isFloatingPoint || x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
            let threshold = Double(try ctx.float("threshold", 0))
            return [.tensor(Real.unary(x) { $0 > threshold ? 1 : 0 })]
        }
        table.add("TreeEnsemble", domain: domain) { ctx in [.tensor(try treeEnsemble(ctx))] }
        table.add("TreeEnsembleRegressor", domain: domain) { ctx in [.tensor(try treeEnsembleRegressor(ctx))] }
        table.add("TreeEnsembleClassifier", domain: domain) { ctx in try treeEnsembleClassifier(ctx) }
        table.add("Scaler", domain: domain) { ctx in [.tensor(try scaler(ctx))] }
        table.add("Normalizer", domain: domain) { ctx in [.tensor(try normalizer(ctx))] }
        table.add("Imputer", domain: domain) { ctx in [.tensor(try imputer(ctx))] }
        table.add("LinearRegressor", domain: domain) { ctx in [.tensor(try linearRegressor(ctx))] }
        table.add("LinearClassifier", domain: domain) { ctx in try linearClassifier(ctx) }
    }

    // MARK: LabelEncoder

    /// A lookup key: strings by value, integers exactly, floats by bit pattern (all NaNs alike, -0 as +0).
    enum Key: Hashable {
        case string(String)
        case integer(Int64)
        case real(UInt64)

        /// The key of a floating-point value.
        static func of(_ v: Double) -> Key {
            if v.isNaN { return .real(Double.nan.bitPattern) }
            return .real((v == 0 ? 0.0 : v).bitPattern)
        }
    }

    /// The elements of `t` as lookup keys.
    static func keys(of t: Tensor) -> [Key] {
        if t.dtype == .string { return t.strings.map { .string($0) } }
        if t.dtype.isFloatingPoint { return t.asDoubles().map { Key.of($0) } }
        return t.asInt64s().map { .integer($0) }
    }

    /// LabelEncoder: maps each element of X through the keys → values table, or to the default.
    static func labelEncoder(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let keyList: [Key]
        if let k = try ctx.strings("keys_strings") {
            keyList = k.map { .string($0) }
        } else if let k = try ctx.ints("keys_int64s") {
            keyList = k.map { .integer(Int64($0)) }
        } else if let k = try ctx.floats("keys_floats") {
            keyList = k.map { Key.of(Double($0)) }
        } else if let k = try ctx.tensorAttribute("keys_tensor") {
            guard k.dtype.hasRealValue || k.dtype == .string else { throw ctx.unsupported("keys_tensor of element type \(k.dtype)") }
            keyList = keys(of: k)
        } else {
            throw ctx.fail("no keys attribute")
        }
        // Values and the default, as a tensor of the output type.
        let values: Tensor, fallback: Tensor
        if let v = try ctx.strings("values_strings") {
            values = Tensor(shape: [v.count], strings: v)
            fallback = Tensor(shape: [1], strings: [try ctx.string("default_string", "_Unused")])
        } else if let v = try ctx.ints("values_int64s") {
            values = Tensor(int64s: v)
            fallback = Tensor(shape: [1], [Int64(try ctx.int("default_int64", -1))])
        } else if let v = try ctx.floats("values_floats") {
            values = Tensor(shape: [v.count], v)
            fallback = Tensor(shape: [1], [try ctx.float("default_float", -0.0)])
        } else if let v = try ctx.tensorAttribute("values_tensor") {
            guard v.dtype.hasRealValue || v.dtype == .string else { throw ctx.unsupported("values_tensor of element type \(v.dtype)") }
            values = v.reshaped([v.count])
            if let d = try ctx.tensorAttribute("default_tensor") {
                guard d.dtype == v.dtype, d.count >= 1 else { throw ctx.fail("default_tensor must match values_tensor") }
                fallback = d.reshaped([d.count])
            } else if v.dtype == .string {
                fallback = Tensor(shape: [1], strings: ["_Unused"])
            } else if v.dtype.isFloatingPoint {
                fallback = Tensor(dtype: v.dtype, shape: [1], doubles: [-0.0])
            } else {
                fallback = Tensor(dtype: v.dtype, shape: [1], int64s: [-1])
            }
        } else {
            throw ctx.fail("no values attribute")
        }
        guard keyList.count == values.count else {
            throw ctx.fail("\(keyList.count) keys but \(values.count) values")
        }
        var table: [Key: Int] = [:]
        for (i, k) in keyList.enumerated() where table[k] == nil { table[k] = i }
        // Index into values, or values.count for the default.
        let picks = keys(of: x).map { table[$0] ?? values.count }
        if values.dtype == .string {
            let v = values.strings + [fallback.strings[0]]
            return Tensor(shape: x.shape, strings: picks.map { v[$0] })
        }
        if values.dtype.isFloatingPoint {
            let v = values.asDoubles() + [fallback.asDoubles()[0]]
            return Tensor(dtype: values.dtype, shape: x.shape, doubles: picks.map { v[$0] })
        }
        let v = values.asInt64s() + [fallback.asInt64s()[0]]
        return Tensor(dtype: values.dtype, shape: x.shape, int64s: picks.map { v[$0] })
    }

    // MARK: ArrayFeatureExtractor

    /// Elements of `t` at flat positions `picks`, as a tensor of `shape` (any element type).
    static func gather(_ t: Tensor, _ picks: [Int], shape: [Int]) -> Tensor {
        if t.dtype == .string {
            let s = t.strings
            return Tensor(shape: shape, strings: picks.map { s[$0] })
        }
        let width = t.dtype.byteWidth!
        let source = t.rawBytes!
        let storage = TensorStorage(byteCount: picks.count * width) { dst in
            for (i, p) in picks.enumerated() {
                for b in 0..<width { dst[i * width + b] = source[p * width + b] }
            }
        }
        return Tensor(dtype: t.dtype, shape: shape, storage: storage)
    }

    /// ArrayFeatureExtractor: selects entries of the last axis of X by the indices in Y
    /// (a 1-D X gives a one-row matrix).
    static func arrayFeatureExtractor(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let indices = try ctx.tensor(1).asInts()
        let last = x.shape.last ?? 1
        for i in indices where i < 0 || i >= last {
            throw ctx.fail("index \(i) is out of range for a last axis of size \(last)")
        }
        let rows = x.count / max(last, 1)
        var picks: [Int] = []
        picks.reserveCapacity(rows * indices.count)
        for r in 0..<rows { for i in indices { picks.append(r * last + i) } }
        let shape = x.rank <= 1 ? [1, indices.count] : Array(x.shape.dropLast()) + [indices.count]
        return gather(x, picks, shape: shape)
    }

    // MARK: Trees

    /// Comparison modes of a tree node.
    enum Mode: Int {
        case leq = 0, lt, gte, gt, eq, neq, member, leaf
    }

    /// A forest in flat arrays: node `i` tests feature `feature[i]` against `split[i]` (or the set `members[i]`)
    /// and continues at `trueNext[i]` / `falseNext[i]`, which index either a node or (when the matching
    /// `...IsLeaf` flag is set) a leaf. Leaf `j` adds `leafWeight[j]` to target `leafTarget[j]`;
    /// old-style ensembles may attach several (target, weight) pairs to one leaf.
    struct Forest {
        var mode: [Mode] = []
        var feature: [Int] = []
        var split: [Double] = []
        var members: [[Double]] = []
        var missingTracksTrue: [Bool] = []
        var trueNext: [Int] = [], trueIsLeaf: [Bool] = []
        var falseNext: [Int] = [], falseIsLeaf: [Bool] = []
        /// Per leaf, its (target, weight) contributions.
        var leaves: [[(target: Int, weight: Double)]] = []
        /// Per tree, its root (a node, or a leaf when `rootIsLeaf`).
        var roots: [Int] = [], rootIsLeaf: [Bool] = []

        /// The leaf that `row` (one sample's features) reaches in tree `tree`.
        func leaf(tree: Int, row: ArraySlice<Double>) -> Int {
            var node = roots[tree]
            if rootIsLeaf[tree] { return node }
            let base = row.startIndex
            var steps = 0
            while true {
                let x = row[base + feature[node]]
                let s = split[node]
                var goTrue: Bool
                switch mode[node] {
                case .leq: goTrue = x <= s
                case .lt: goTrue = x < s
                case .gte: goTrue = x >= s
                case .gt: goTrue = x > s
                case .eq: goTrue = x == s
                case .neq: goTrue = x != s
                case .member: goTrue = members[node].contains(x)
                case .leaf: return node
                }
                if x.isNaN && missingTracksTrue[node] { goTrue = true }
                if goTrue {
                    if trueIsLeaf[node] { return trueNext[node] }
                    node = trueNext[node]
                } else {
                    if falseIsLeaf[node] { return falseNext[node] }
                    node = falseNext[node]
                }
                steps += 1
                if steps > mode.count { return -1 }  // a cycle: malformed tree
            }
        }
    }

    /// How the leaf values reached in all trees combine per target.
    enum Aggregate { case sum, average, min, max }

    /// Evaluates `forest` over the rows of `x` (shape [N, F], or [F] as one row), returning N × targets scores
    /// (before base values and post transform). Targets no leaf reached stay 0 for min and max.
    static func evaluate(_ ctx: KernelContext, _ forest: Forest, _ x: Tensor, targets: Int,
                         aggregate: Aggregate) throws -> (rows: Int, scores: [Double]) {
        let features = x.rank == 0 ? 1 : x.shape.last!
        let rows = x.rank <= 1 ? 1 : x.count / max(features, 1)
        guard targets >= 0 else { throw ctx.fail("the number of targets must be non-negative, is \(targets)") }
        try ctx.checkedCount([rows, targets], "the scores")
        for f in forest.feature where f < 0 || f >= features {
            throw ctx.fail("feature index \(f) is out of range for \(features) features")
        }
        let data = x.asDoubles()
        var scores = [Double](repeating: 0, count: rows * targets)
        var seen = [Bool](repeating: false, count: targets)
        for r in 0..<rows {
            let row = data[(r * features)..<((r + 1) * features)]
            for t in 0..<targets { seen[t] = false }
            for tree in 0..<forest.roots.count {
                let leaf = forest.leaf(tree: tree, row: row)
                guard leaf >= 0, leaf < forest.leaves.count else { throw ctx.fail("tree \(tree) is malformed") }
                for (target, weight) in forest.leaves[leaf] {
                    guard target >= 0, target < targets else { throw ctx.fail("target id \(target) is out of range") }
                    let k = r * targets + target
                    switch aggregate {
                    case .sum, .average: scores[k] += weight
                    case .min: scores[k] = seen[target] ? Swift.min(scores[k], weight) : weight
                    case .max: scores[k] = seen[target] ? Swift.max(scores[k], weight) : weight
                    }
                    seen[target] = true
                }
            }
            if aggregate == .average && !forest.roots.isEmpty {
                for t in 0..<targets { scores[r * targets + t] /= Double(forest.roots.count) }
            }
        }
        return (rows, scores)
    }

    /// Applies a post transform (`NONE`, `SOFTMAX`, `LOGISTIC`, `SOFTMAX_ZERO`, `PROBIT`) to each row of `scores`.
    static func postTransform(_ ctx: KernelContext, _ name: String, _ scores: inout [Double], columns: Int) throws {
        guard columns > 0 else { return }
        let rows = scores.count / columns
        switch name {
        case "NONE": return
        case "LOGISTIC":
            for i in 0..<scores.count { scores[i] = logistic(scores[i]) }
        case "PROBIT":
            for i in 0..<scores.count { scores[i] = 2.0.squareRoot() * inverseErf(scores[i] * 2 - 1) }
        case "SOFTMAX":
            for r in 0..<rows {
                let range = (r * columns)..<((r + 1) * columns)
                let top = scores[range].max()!
                var sum = 0.0
                for i in range { scores[i] = exp(scores[i] - top); sum += scores[i] }
                for i in range { scores[i] /= sum }
            }
        case "SOFTMAX_ZERO":
            // Softmax in which exact zeros stay (almost) zero.
            for r in 0..<rows {
                let range = (r * columns)..<((r + 1) * columns)
                let top = scores[range].max()!
                var sum = 0.0
                for i in range {
                    scores[i] = abs(scores[i]) > 1e-7 ? exp(scores[i] - top) : scores[i] * exp(-top)
                    sum += scores[i]
                }
                for i in range { scores[i] = sum == 0 ? 0.5 : scores[i] / sum }
            }
        default: throw ctx.fail("unknown post_transform '\(name)'")
        }
    }

    /// The logistic function, computed without overflow.
    static func logistic(_ v: Double) -> Double {
        let e = 1 / (1 + exp(-abs(v)))
        return v < 0 ? 1 - e : e
    }

    /// An approximation of the inverse error function (Winitzki's, as ONNX Runtime uses for PROBIT).
    static func inverseErf(_ x: Double) -> Double {
        let sign: Double = x < 0 ? -1 : 1
        let y = (1 - x) * (1 + x)
        if y == 0 { return 0 }
        let l = log(y)
        let a = 0.147
        let v = 2 / (Double.pi * a) + 0.5 * l
        return sign * (-v + (v * v - l / a).squareRoot()).squareRoot()
    }

    /// A float-list attribute given either as `name` (floats) or `name_as_tensor` (a tensor), as doubles.
    static func doubles(_ ctx: KernelContext, _ name: String) throws -> [Double]? {
        if let t = try ctx.tensorAttribute(name + "_as_tensor") { return try ctx.numbers(t, "attribute '\(name)_as_tensor'") }
        if let f = try ctx.floats(name) { return f.map(Double.init) }
        return nil
    }

    /// A required tensor attribute's values as doubles (or a float list under the same name).
    static func requiredDoubles(_ ctx: KernelContext, _ name: String) throws -> [Double] {
        if let t = try ctx.tensorAttribute(name) { return try ctx.numbers(t, "attribute '\(name)'") }
        if let f = try ctx.floats(name) { return f.map(Double.init) }
        throw ctx.fail("attribute '\(name)' is required")
    }

    /// A required int-list attribute.
    static func requiredInts(_ ctx: KernelContext, _ name: String) throws -> [Int] {
        guard let v = try ctx.ints(name) else { throw ctx.fail("attribute '\(name)' is required") }
        return v
    }

    /// TreeEnsemble (ai.onnx.ml opset 5): nodes and leaves in flat arrays, integer modes, set membership.
    static func treeEnsemble(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        let splits = try requiredDoubles(ctx, "nodes_splits")
        let modesTensor = try ctx.tensorAttribute("nodes_modes")
        let modeCodes: [Int]
        if let modesTensor { modeCodes = try ctx.integers(modesTensor, "attribute 'nodes_modes'") } else { modeCodes = try requiredInts(ctx, "nodes_modes") }
        let featureIDs = try requiredInts(ctx, "nodes_featureids")
        let trueIDs = try requiredInts(ctx, "nodes_truenodeids"), falseIDs = try requiredInts(ctx, "nodes_falsenodeids")
        let trueLeafs = try requiredInts(ctx, "nodes_trueleafs"), falseLeafs = try requiredInts(ctx, "nodes_falseleafs")
        let leafTargets = try requiredInts(ctx, "leaf_targetids")
        let leafWeights = try requiredDoubles(ctx, "leaf_weights")
        let roots = try requiredInts(ctx, "tree_roots")
        let targets = try ctx.int("n_targets") ?? ((leafTargets.max() ?? -1) + 1)
        let missing = try ctx.ints("nodes_missing_value_tracks_true") ?? []
        let n = splits.count
        guard modeCodes.count == n, featureIDs.count == n, trueIDs.count == n, falseIDs.count == n,
              trueLeafs.count == n, falseLeafs.count == n, missing.isEmpty || missing.count == n,
              leafTargets.count == leafWeights.count else {
            throw ctx.fail("node or leaf attributes have inconsistent lengths")
        }
        var forest = Forest()
        forest.split = splits
        forest.feature = featureIDs
        forest.trueNext = trueIDs
        forest.falseNext = falseIDs
        forest.trueIsLeaf = trueLeafs.map { $0 != 0 }
        forest.falseIsLeaf = falseLeafs.map { $0 != 0 }
        forest.missingTracksTrue = missing.isEmpty ? Array(repeating: false, count: n) : missing.map { $0 != 0 }
        forest.leaves = zip(leafTargets, leafWeights).map { [(target: $0, weight: $1)] }
        // Set-membership nodes take their members, in node order, from NaN-delimited runs of membership_values.
        let memberValues = try ctx.tensorAttribute("membership_values").map { try ctx.numbers($0, "attribute 'membership_values'") } ?? []
        var cursor = 0
        for code in modeCodes {
            guard let mode = Mode(rawValue: code), mode != .leaf else { throw ctx.fail("unknown node mode \(code)") }
            forest.mode.append(mode)
            var set: [Double] = []
            if mode == .member {
                while cursor < memberValues.count && !memberValues[cursor].isNaN {
                    set.append(memberValues[cursor])
                    cursor += 1
                }
                cursor += 1
            }
            forest.members.append(set)
        }
        for i in 0..<n {
            for (next, isLeaf) in [(trueIDs[i], forest.trueIsLeaf[i]), (falseIDs[i], forest.falseIsLeaf[i])] {
                let limit = isLeaf ? leafWeights.count : n
                if next < 0 || next >= limit { throw ctx.fail("node \(i) branches to \(next), out of range") }
            }
        }
        for r in roots where r < 0 || r >= n { throw ctx.fail("tree root \(r) is out of range") }
        forest.roots = roots
        forest.rootIsLeaf = Array(repeating: false, count: roots.count)
        let aggregate: Aggregate
        switch try ctx.int("aggregate_function", 1) {
        case 0: aggregate = .average
        case 1: aggregate = .sum
        case 2: aggregate = .min
        case 3: aggregate = .max
        case let a: throw ctx.fail("unknown aggregate_function \(a)")
        }
        var (rows, scores) = try evaluate(ctx, forest, x, targets: targets, aggregate: aggregate)
        let transforms = ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"]
        let post = try ctx.int("post_transform", 0)
        guard post >= 0, post < transforms.count else { throw ctx.fail("unknown post_transform \(post)") }
        try postTransform(ctx, transforms[post], &scores, columns: targets)
        return Tensor(dtype: x.dtype, shape: [rows, targets], doubles: scores)
    }

    /// Builds a forest from the older node-list form (`nodes_treeids`/`nodes_nodeids`, string modes) with
    /// per-leaf contributions from `prefix_treeids`, `prefix_nodeids`, `prefix_ids`, `prefix_weights`.
    static func legacyForest(_ ctx: KernelContext, prefix: String) throws -> Forest {
        let treeIDs = try requiredInts(ctx, "nodes_treeids"), nodeIDs = try requiredInts(ctx, "nodes_nodeids")
        let featureIDs = try requiredInts(ctx, "nodes_featureids")
        guard let modeNames = try ctx.strings("nodes_modes") else { throw ctx.fail("attribute 'nodes_modes' is required") }
        let values = try doubles(ctx, "nodes_values") ?? Array(repeating: 0, count: treeIDs.count)
        let trueIDs = try requiredInts(ctx, "nodes_truenodeids"), falseIDs = try requiredInts(ctx, "nodes_falsenodeids")
        let missing = try ctx.ints("nodes_missing_value_tracks_true") ?? []
        let n = treeIDs.count
        guard nodeIDs.count == n, featureIDs.count == n, modeNames.count == n, values.count == n,
              trueIDs.count == n, falseIDs.count == n, missing.isEmpty || missing.count == n else {
            throw ctx.fail("node attributes have inconsistent lengths")
        }
        struct NodeKey: Hashable { let tree: Int, node: Int }
        var index: [NodeKey: Int] = [:]
        for i in 0..<n { index[NodeKey(tree: treeIDs[i], node: nodeIDs[i])] = i }
        var forest = Forest()
        let modeTable: [String: Mode] = ["BRANCH_LEQ": .leq, "BRANCH_LT": .lt, "BRANCH_GTE": .gte, "BRANCH_GT": .gt,
                                         "BRANCH_EQ": .eq, "BRANCH_NEQ": .neq, "LEAF": .leaf]
        for i in 0..<n {
            guard let mode = modeTable[modeNames[i]] else { throw ctx.fail("unknown node mode '\(modeNames[i])'") }
            forest.mode.append(mode)
            forest.feature.append(mode == .leaf ? 0 : featureIDs[i])
            forest.split.append(values[i])
            forest.members.append([])
            forest.missingTracksTrue.append(missing.isEmpty ? false : missing[i] != 0)
            // Branches point at nodes (a leaf is a node whose mode is LEAF).
            for (next, isTrue) in [(trueIDs[i], true), (falseIDs[i], false)] {
                let target = mode == .leaf ? i : index[NodeKey(tree: treeIDs[i], node: next)]
                guard let target else { throw ctx.fail("node \(nodeIDs[i]) of tree \(treeIDs[i]) branches to missing node \(next)") }
                if isTrue { forest.trueNext.append(target); forest.trueIsLeaf.append(false) }
                else { forest.falseNext.append(target); forest.falseIsLeaf.append(false) }
            }
        }
        // Leaves are the nodes themselves; contributions attach by (tree, node).
        forest.leaves = Array(repeating: [], count: n)
        let cTrees = try requiredInts(ctx, prefix + "_treeids"), cNodes = try requiredInts(ctx, prefix + "_nodeids")
        let cIDs = try requiredInts(ctx, prefix + "_ids")
        guard let cWeights = try doubles(ctx, prefix + "_weights"),
              cTrees.count == cNodes.count, cIDs.count == cNodes.count, cWeights.count == cNodes.count else {
            throw ctx.fail("\(prefix)_* attributes are missing or have inconsistent lengths")
        }
        for k in 0..<cTrees.count {
            guard let i = index[NodeKey(tree: cTrees[k], node: cNodes[k])] else {
                throw ctx.fail("\(prefix) weight for missing node \(cNodes[k]) of tree \(cTrees[k])")
            }
            forest.leaves[i].append((target: cIDs[k], weight: cWeights[k]))
        }
        // Each tree's root is its first listed node.
        var seenTrees = Set<Int>()
        for i in 0..<n where !seenTrees.contains(treeIDs[i]) {
            seenTrees.insert(treeIDs[i])
            forest.roots.append(i)
            forest.rootIsLeaf.append(false)
        }
        return forest
    }

    /// TreeEnsembleRegressor (ai.onnx.ml opset 3).
    static func treeEnsembleRegressor(_ ctx: KernelContext) throws -> Tensor {
        var x = try ctx.tensor(0)
        if !x.dtype.isFloatingPoint { x = Tensor(dtype: .float32, shape: x.shape, doubles: x.asDoubles()) }
        let forest = try legacyForest(ctx, prefix: "target")
        let targets = try ctx.int("n_targets", 1)
        let aggregate: Aggregate
        switch try ctx.string("aggregate_function", "SUM") {
        case "SUM": aggregate = .sum
        case "AVERAGE": aggregate = .average
        case "MIN": aggregate = .min
        case "MAX": aggregate = .max
        case let a: throw ctx.fail("unknown aggregate_function '\(a)'")
        }
        var (rows, scores) = try evaluate(ctx, forest, x, targets: targets, aggregate: aggregate)
        if let base = try doubles(ctx, "base_values"), !base.isEmpty {
            guard base.count == targets else { throw ctx.fail("base_values has \(base.count) values for \(targets) targets") }
            for i in 0..<scores.count { scores[i] += base[i % targets] }
        }
        try postTransform(ctx, try ctx.string("post_transform", "NONE"), &scores, columns: targets)
        return Tensor(dtype: .float32, shape: [rows, targets], doubles: scores)
    }

    /// TreeEnsembleClassifier (ai.onnx.ml opset 3): per-class scores and the label of the best one.
    static func treeEnsembleClassifier(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        var x = try ctx.tensor(0)
        if !x.dtype.isFloatingPoint { x = Tensor(dtype: .float32, shape: x.shape, doubles: x.asDoubles()) }
        let forest = try legacyForest(ctx, prefix: "class")
        let intLabels = try ctx.ints("classlabels_int64s")
        let stringLabels = try ctx.strings("classlabels_strings")
        let classCount = max(intLabels?.count ?? 0, stringLabels?.count ?? 0)
        guard classCount > 0 else { throw ctx.fail("classlabels_int64s or classlabels_strings is required") }
        let classIDs = try requiredInts(ctx, "class_ids")
        guard classIDs.allSatisfy({ $0 >= 0 && $0 < maxTensorElements }) else { throw ctx.fail("class_ids must be non-negative class numbers") }
        var (rows, scores) = try evaluate(ctx, forest, x, targets: max(classCount, (classIDs.max() ?? 0) + 1),
                                          aggregate: .sum)
        var columns = max(classCount, (classIDs.max() ?? 0) + 1)
        if let base = try doubles(ctx, "base_values"), !base.isEmpty {
            for i in 0..<scores.count where i % columns < base.count { scores[i] += base[i % columns] }
        }
        let post = try ctx.string("post_transform", "NONE")
        // Binary classification with scores for one class only: the other class's score is derived.
        if Set(classIDs).count == 1 {
            var widened = [Double](repeating: 0, count: rows * 2)
            for r in 0..<rows {
                let s = scores[r * columns]
                widened[r * 2 + 1] = s
                widened[r * 2] = (post == "NONE" || post == "PROBIT") ? 1 - s : -s
            }
            scores = widened
            columns = 2
        }
        try postTransform(ctx, post, &scores, columns: columns)
        var best: [Int] = []
        for r in 0..<rows {
            var b = 0
            for c in 1..<columns where scores[r * columns + c] > scores[r * columns + b] { b = c }
            best.append(b)
        }
        let labels: Tensor
        if let intLabels {
            labels = Tensor(shape: [rows], best.map { Int64(intLabels.count == 1 ? (intLabels[0] == 1 && $0 == 1 ? 1 : 0) : intLabels[Swift.min($0, intLabels.count - 1)]) })
        } else {
            let s = stringLabels!
            labels = Tensor(shape: [rows], strings: best.map { s[Swift.min($0, s.count - 1)] })
        }
        return [.tensor(labels), .tensor(Tensor(dtype: .float32, shape: [rows, columns], doubles: scores))]
    }

    // MARK: Simple transforms

    /// The rows of a 1-D or 2-D input as doubles, with the feature count.
    static func matrix(_ ctx: KernelContext, _ x: Tensor) throws -> (rows: Int, features: Int, data: [Double]) {
        guard x.dtype.isFloatingPoint || x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
        let features = x.rank == 0 ? 1 : x.shape.last!
        let rows = x.rank <= 1 ? 1 : x.count / max(features, 1)
        return (rows, features, x.asDoubles())
    }

    /// Scaler: `(x - offset) * scale`, with per-feature or single offset and scale; float output.
    static func scaler(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let (_, features, data) = try matrix(ctx, x)
        let offset = (try ctx.floats("offset") ?? [0]).map(Double.init)
        let scale = (try ctx.floats("scale") ?? [1]).map(Double.init)
        for (name, values) in [("offset", offset), ("scale", scale)] where values.count != 1 && values.count != features {
            throw ctx.fail("'\(name)' has \(values.count) values; expected 1 or one per feature (\(features))")
        }
        let out = data.indices.map { i -> Double in
            let f = i % max(features, 1)
            return (data[i] - offset[offset.count == 1 ? 0 : f]) * scale[scale.count == 1 ? 0 : f]
        }
        return Tensor(dtype: .float32, shape: x.shape, doubles: out)
    }

    /// Normalizer: each row divided by its MAX (largest magnitude), L1 or L2 norm; float output.
    static func normalizer(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let (rows, features, data) = try matrix(ctx, x)
        let norm = try ctx.string("norm", "MAX")
        var out = data
        for r in 0..<rows {
            let range = (r * features)..<((r + 1) * features)
            let d: Double
            switch norm {
            case "MAX": d = data[range].reduce(0) { Swift.max($0, abs($1)) }
            case "L1": d = data[range].reduce(0) { $0 + abs($1) }
            case "L2": d = data[range].reduce(0) { $0 + $1 * $1 }.squareRoot()
            default: throw ctx.fail("unknown norm '\(norm)'")
            }
            for i in range { out[i] = d == 0 ? data[i] : data[i] / d }
        }
        return Tensor(dtype: .float32, shape: x.shape, doubles: out)
    }

    /// Imputer: replaces `replaced_value_*` (NaN by default) with per-feature or single imputed values.
    static func imputer(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let (_, features, data) = try matrix(ctx, x)
        let isFloat = x.dtype.isFloatingPoint
        let imputed: [Double] = isFloat ? (try ctx.floats("imputed_value_floats") ?? []).map(Double.init)
                                        : (try ctx.ints("imputed_value_int64s") ?? []).map(Double.init)
        guard imputed.count == 1 || (imputed.count == features && features > 0) else {
            throw ctx.fail("\(imputed.count) imputed values; expected 1 or one per feature (\(features))")
        }
        let replaced: Double = isFloat ? Double(try ctx.float("replaced_value_float", .nan))
                                       : Double(try ctx.int("replaced_value_int64", 0))
        let out = data.indices.map { i -> Double in
            let v = data[i]
            let hit = replaced.isNaN ? v.isNaN : v == replaced
            return hit ? imputed[imputed.count == 1 ? 0 : i % max(features, 1)] : v
        }
        return Tensor(dtype: x.dtype, shape: x.shape, doubles: out)
    }

    /// Rows of X times the transposed coefficient matrix plus intercepts: N × targets scores.
    static func linear(_ ctx: KernelContext, targets: Int) throws -> (rows: Int, scores: [Double]) {
        let x = try ctx.tensor(0)
        let (rows, features, data) = try matrix(ctx, x)
        let coefficients = (try ctx.floats("coefficients") ?? []).map(Double.init)
        guard targets > 0, targets <= coefficients.count || features == 0 else {
            throw ctx.fail("targets must be positive and at most the number of coefficients, got \(targets)")
        }
        try ctx.checkedCount([rows, targets], "the scores")
        guard coefficients.count == targets * features else {
            throw ctx.fail("\(coefficients.count) coefficients for \(targets) targets × \(features) features")
        }
        let intercepts = (try ctx.floats("intercepts") ?? []).map(Double.init)
        guard intercepts.count <= 1 || intercepts.count == targets else {
            throw ctx.fail("\(intercepts.count) intercepts for \(targets) targets")
        }
        var scores = [Double](repeating: 0, count: rows * targets)
        for r in 0..<rows {
            for t in 0..<targets {
                var s = intercepts.isEmpty ? 0 : intercepts[intercepts.count == 1 ? 0 : t]
                for f in 0..<features { s += data[r * features + f] * coefficients[t * features + f] }
                scores[r * targets + t] = s
            }
        }
        return (rows, scores)
    }

    /// LinearRegressor: `X · coefficientsᵀ + intercepts`, then the post transform.
    static func linearRegressor(_ ctx: KernelContext) throws -> Tensor {
        let targets = try ctx.int("targets", 1)
        var (rows, scores) = try linear(ctx, targets: targets)
        try postTransform(ctx, try ctx.string("post_transform", "NONE"), &scores, columns: targets)
        return Tensor(dtype: .float32, shape: [rows, targets], doubles: scores)
    }

    /// LinearClassifier: linear scores per class, the post transform, and the best class's label.
    static func linearClassifier(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let intLabels = try ctx.ints("classlabels_ints")
        let stringLabels = try ctx.strings("classlabels_strings")
        let labelCount = max(intLabels?.count ?? 0, stringLabels?.count ?? 0)
        let coefficientCount = try ctx.floats("coefficients")?.count ?? 0
        let x = try ctx.tensor(0)
        let features = x.rank == 0 ? 1 : x.shape.last!
        let classes = max(coefficientCount / max(features, 1), 1)
        var (rows, scores) = try linear(ctx, targets: classes)
        let post = try ctx.string("post_transform", "NONE")
        var columns = classes
        // One score column for two labels: binary classification on the sign of the score.
        let binary = classes == 1 && labelCount == 2
        if binary {
            var widened = [Double](repeating: 0, count: rows * 2)
            for r in 0..<rows {
                widened[r * 2 + 1] = scores[r]
                widened[r * 2] = -scores[r]
            }
            scores = widened
            columns = 2
        }
        try postTransform(ctx, post, &scores, columns: columns)
        var best: [Int] = []
        for r in 0..<rows {
            var b = 0
            for c in 1..<max(columns, 1) where scores[r * columns + c] > scores[r * columns + b] { b = c }
            best.append(b)
        }
        let labels: Tensor
        if let intLabels, !intLabels.isEmpty {
            labels = Tensor(shape: [rows], best.map { Int64(intLabels[Swift.min($0, intLabels.count - 1)]) })
        } else if let stringLabels, !stringLabels.isEmpty {
            labels = Tensor(shape: [rows], strings: best.map { stringLabels[Swift.min($0, stringLabels.count - 1)] })
        } else {
            labels = Tensor(shape: [rows], best.map { Int64($0) })
        }
        return [.tensor(labels), .tensor(Tensor(dtype: .float32, shape: [rows, columns], doubles: scores))]
    }
}
