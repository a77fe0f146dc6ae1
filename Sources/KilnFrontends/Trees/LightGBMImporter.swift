import KilnIR

/// Imports a LightGBM model saved with `save_model` (the text format: a header of `key=value` lines,
/// then `Tree=k` blocks) into one `kiln.TreeEnsemble` node.
///
/// LightGBM compares `x <= threshold` in double precision; a float32 feature passes exactly when it is
/// at most the largest float32 not above the threshold, which is the threshold the node keeps. Each split's
/// `decision_type` gives its missing-value rule (None: NaN counts as 0; Zero: NaN and ±0 take the default
/// branch; NaN: NaN takes it) and default direction; categorical splits keep their bitsets (members go
/// left, NaN and negative values right). `average_output` (random forest mode) divides by the number of
/// iterations. Linear trees are refused with an `.unsupported` error.
public struct LightGBMImporter {
    /// An importer.
    public init() {}

    /// Imports the model text in `bytes`; `source` names it in errors.
    public func importModel(bytes: UnsafeRawBufferPointer, source: String) throws -> Model {
        func fail(_ m: String) -> KilnError { KilnError(.invalidModel, "\(source): \(m)") }
        let text = String(decoding: bytes, as: UTF8.self)
        var header: [Substring: Substring] = [:]
        var flags: Set<Substring> = []
        var trees: [[Substring: Substring]] = []
        var current: [Substring: Substring]? = nil
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            var line = line
            if line.last == "\r" { line.removeLast() }
            if line == "end of trees" { break }
            if line.hasPrefix("Tree=") {
                if let c = current { trees.append(c) }
                current = [:]
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                if current == nil { flags.insert(line) }
                continue
            }
            let key = line[..<eq], value = line[line.index(after: eq)...]
            if current != nil { current![key] = value } else { header[key] = value }
        }
        if let c = current { trees.append(c) }
        guard header["version"] != nil || flags.contains("tree") else { throw fail("not a LightGBM text model (no 'tree' header)") }
        guard let perIteration = header["num_tree_per_iteration"].flatMap({ Int($0) }), perIteration >= 1, perIteration <= 1 << 16 else {
            throw fail("num_tree_per_iteration is missing or out of range")
        }
        guard let maxFeature = header["max_feature_idx"].flatMap({ Int($0) }), maxFeature >= -1, maxFeature < 1 << 24 else {
            throw fail("max_feature_idx is missing or out of range")
        }
        let features = maxFeature + 1
        let objective = String(header["objective"] ?? "regression")
        let words = objective.split(separator: " ")
        var spec = TreeEnsemble.Spec(targets: perIteration)
        func parameter(_ name: String) -> Double? {
            for w in words.dropFirst() where w.hasPrefix(name + ":") { return Double(w.dropFirst(name.count + 1)) }
            return nil
        }
        switch words.first.map(String.init) ?? "regression" {
        case "regression", "regression_l2", "regression_l1", "l1", "l2", "mse", "mae", "huber", "fair", "quantile", "mape",
             "lambdarank", "rank_xendcg", "custom", "none":
            if words.contains("sqrt") { throw KilnError(.unsupported, "\(source): the 'sqrt' regression transform is not supported") }
            spec.postTransform = .none
        case "binary", "multiclassova", "cross_entropy", "xentropy":
            spec.postTransform = .logistic
            spec.sigmoidScale = Float(parameter("sigmoid") ?? 1)
        case "multiclass", "softmax":
            spec.postTransform = .softmax
        case "poisson", "gamma", "tweedie":
            spec.postTransform = .exp
        case let o:
            throw KilnError(.unsupported, "\(source): LightGBM objective '\(o)' is not supported")
        }
        guard !trees.isEmpty else { throw fail("the model has no trees") }
        guard trees.count % perIteration == 0 else { throw fail("\(trees.count) trees is not a multiple of num_tree_per_iteration (\(perIteration))") }
        if flags.contains("average_output") { spec.divisor = trees.count / perIteration }
        for (t, tree) in trees.enumerated() {
            try addTree(tree, index: t, target: t % perIteration, features: features, into: &spec, fail: fail)
        }
        return TreeModels.model(spec, features: features, producer: "lightgbm", objective: objective)
    }

    /// The largest float32 not above `d` (x <= d ⟺ x <= it, for every float32 x).
    static func floatAtMost(_ d: Double) -> Float {
        var f = Float(d)
        if Double(f) > d { f = f.nextDown }
        return f
    }

    func addTree(_ tree: [Substring: Substring], index t: Int, target: Int, features: Int,
                 into spec: inout TreeEnsemble.Spec, fail: (String) -> KilnError) throws {
        func numbers(_ key: Substring) throws -> [Double] {
            guard let v = tree[key] else { throw fail("tree \(t) has no \(key)") }
            var out: [Double] = []
            for w in v.split(separator: " ") {
                guard let d = Double(w) else { throw fail("tree \(t): \(key) has '\(w)', not a number") }
                out.append(d)
            }
            return out
        }
        if let linear = tree["is_linear"], linear != "0" {
            throw KilnError(.unsupported, "tree \(t): linear trees (linear_tree=true) are not supported")
        }
        guard let leaves = tree["num_leaves"].flatMap({ Int($0) }), leaves >= 1, leaves < 1 << 24 else { throw fail("tree \(t): num_leaves is missing or out of range") }
        let leafValue = try numbers("leaf_value")
        guard leafValue.count == leaves else { throw fail("tree \(t): leaf_value has \(leafValue.count) values for \(leaves) leaves") }
        let first = spec.modes.count
        if leaves == 1 {
            spec.roots.append(Int32(spec.addLeaf([(target: target, value: Float(leafValue[0]))])))
            return
        }
        let splits = leaves - 1
        let feature = try numbers("split_feature"), threshold = try numbers("threshold"), decision = try numbers("decision_type")
        let left = try numbers("left_child"), right = try numbers("right_child")
        guard feature.count == splits, threshold.count == splits, decision.count == splits, left.count == splits, right.count == splits else {
            throw fail("tree \(t): split arrays do not have num_leaves - 1 = \(splits) entries")
        }
        let catBoundaries = tree["cat_boundaries"] != nil ? try numbers("cat_boundaries") : []
        let catThreshold = tree["cat_threshold"] != nil ? try numbers("cat_threshold") : []
        // Splits are nodes first..<first+splits, leaves follow; a child c < 0 is leaf ~c.
        func child(_ c: Double) throws -> Int {
            let c = Int(c)
            if c >= 0 {
                guard c < splits else { throw fail("tree \(t): child \(c) is out of range") }
                return first + c
            }
            guard ~c < leaves else { throw fail("tree \(t): leaf \(~c) is out of range") }
            return first + splits + ~c
        }
        for i in 0..<splits {
            let f = Int(feature[i])
            guard f >= 0, f < features else { throw fail("tree \(t): split \(i) reads feature \(f); the model has \(features)") }
            let d = Int(decision[i])
            let categorical = d & 1 != 0, defaultLeft = d & 2 != 0
            let node: Int
            if categorical {
                let k = Int(threshold[i])
                guard k >= 0, k + 1 < catBoundaries.count else { throw fail("tree \(t): split \(i) has category set \(k), out of range") }
                let lo = Int(catBoundaries[k]), hi = Int(catBoundaries[k + 1])
                guard lo >= 0, lo <= hi, hi <= catThreshold.count else { throw fail("tree \(t): cat_boundaries are out of range") }
                let bits = try catThreshold[lo..<hi].map { w -> UInt32 in
                    guard w >= 0, w <= Double(UInt32.max) else { throw fail("tree \(t): cat_threshold has \(w), not a 32-bit word") }
                    return UInt32(w)
                }
                let set = spec.addCategoryBitset(bits)
                node = spec.addSplit(mode: .member, feature: f, threshold: Float(set), missingTrue: false, missing: .nan)
            } else {
                let missing: TreeEnsemble.Missing
                switch (d >> 2) & 3 {
                case 0: missing = .nanAsZero
                case 1: missing = .nanOrZero
                case 2: missing = .nan
                default: throw fail("tree \(t): split \(i) has unknown missing type in decision_type \(d)")
                }
                node = spec.addSplit(mode: .lessOrEqual, feature: f, threshold: Self.floatAtMost(threshold[i]),
                                     missingTrue: defaultLeft, missing: missing)
            }
            spec.setChildren(node, true: try child(left[i]), false: try child(right[i]))
        }
        for l in 0..<leaves { _ = spec.addLeaf([(target: target, value: Float(leafValue[l]))]) }
        spec.roots.append(Int32(first))
    }
}
