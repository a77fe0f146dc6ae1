#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// Imports an XGBoost model saved with `save_model` as JSON (`.json`) or UBJSON (`.ubj`) into one
/// `kiln.TreeEnsemble` node.
///
/// Splits are `x < threshold` with float32 thresholds, as XGBoost compares; NaN takes each node's
/// default direction; categorical splits send the listed categories to the right child. `base_score`
/// (stored in output space) becomes a margin by the objective's link (logit for logistic objectives except `binary:logitraw`, log for
/// Poisson, gamma, Tweedie and survival objectives), and the objective's output transform becomes the
/// op's post-transform. DART models' tree weights are folded into their leaves. Linear boosters and
/// multi-target trees are refused with an `.unsupported` error.
public struct XGBoostImporter {
    /// An importer.
    public init() {}

    /// Imports the model in `bytes` (JSON, or UBJSON when `binary`); `source` names it in errors.
    public func importModel(bytes: UnsafeRawBufferPointer, binary: Bool, source: String) throws -> Model {
        var reader = TreeJSONReader(bytes: bytes, source: source)
        let root = binary ? try reader.parseUBJSON() : try reader.parseJSON()
        return try importModel(root, source: source)
    }

    func importModel(_ root: TreeJSON, source: String) throws -> Model {
        func fail(_ m: String) -> KilnError { KilnError(.invalidModel, "\(source): \(m)") }
        guard let learner = root["learner"] else { throw fail("no 'learner' object (is it an XGBoost model saved with save_model?)") }
        guard let params = learner["learner_model_param"] else { throw fail("no learner.learner_model_param") }
        guard let objective = learner["objective"]?["name"]?.string else { throw fail("no learner.objective.name") }
        guard let features = params["num_feature"]?.double, features >= 0, features < 16_777_216 else {
            throw fail("learner_model_param.num_feature is missing or out of range")
        }
        let numClass = Int(params["num_class"]?.double ?? 0)
        let numTarget = Int(params["num_target"]?.double ?? 1)
        guard numTarget <= 1 || numClass <= 1 else { throw KilnError(.unsupported, "\(source): multi-target multi-class models are not supported") }
        let targets = max(1, numClass, numTarget)
        guard targets <= 1 << 16 else { throw fail("num_class \(numClass) is out of range") }
        // base_score: a number, or (XGBoost 3) a bracketed list, in output space.
        var base: [Double] = []
        if let text = params["base_score"]?.string {
            var inner = text.trimmingWhitespace
            if inner.first == "[" { inner.removeFirst() }
            if inner.last == "]" { inner.removeLast() }
            for part in inner.split(separator: ",") {
                guard let v = Double(String(part).trimmingWhitespace) else { throw fail("base_score '\(text)' is not a number") }
                base.append(v)
            }
        } else if let v = params["base_score"]?.double {
            base = [v]
        }
        if base.isEmpty { base = [0.5] }
        guard base.count == 1 || base.count == targets else { throw fail("base_score has \(base.count) values for \(targets) outputs") }

        // The objective's link (output → margin) and output transform.
        let link: (Double) -> Double
        let post: TreeEnsemble.PostTransform
        switch objective {
        case "reg:squarederror", "reg:linear", "reg:squaredlogerror", "reg:pseudohubererror", "reg:absoluteerror",
             "reg:quantileerror", "rank:pairwise", "rank:ndcg", "rank:map":
            link = { $0 }; post = .none
        case "reg:logistic", "binary:logistic":
            link = { -log(1 / $0 - 1) }; post = .logistic
        case "binary:logitraw":
            // Its base_score is a margin already (XGBoost applies no link to it).
            link = { $0 }; post = .none
        case "count:poisson", "reg:gamma", "reg:tweedie", "survival:cox", "survival:aft":
            link = { log($0) }; post = .exp
        case "multi:softprob":
            link = { $0 }; post = .softmax
        case "multi:softmax":
            link = { $0 }; post = .argmax
        default:
            throw KilnError(.unsupported, "\(source): XGBoost objective '\(objective)' is not supported")
        }

        // The booster: gbtree, or dart (a gbtree plus a weight per tree).
        guard var booster = learner["gradient_booster"] else { throw fail("no learner.gradient_booster") }
        var treeWeights: [Double]? = nil
        switch booster["name"]?.string {
        case "gbtree": break
        case "dart":
            treeWeights = booster["weight_drop"]?.doubles
            guard let inner = booster["gbtree"] else { throw fail("a dart booster without its gbtree") }
            booster = inner
        case let name:
            throw KilnError(.unsupported, "\(source): XGBoost booster '\(name ?? "?")' is not supported (gbtree and dart are)")
        }
        guard let model = booster["model"], let trees = model["trees"]?.array else { throw fail("no gradient_booster.model.trees") }
        // XGBoost 3 keeps the training data's category encodings (pandas/arrow categories) with the model; inputs
        // would need the same re-coding, which Kiln does not do.
        if let enc = model["cats"]?["enc"]?.array, !enc.isEmpty {
            throw KilnError(.unsupported, "\(source): the model re-codes categories from pandas/arrow encodings; train on numeric category codes instead")
        }
        let treeInfo = model["tree_info"]?.doubles ?? Array(repeating: 0, count: trees.count)
        guard treeInfo.count == trees.count else { throw fail("tree_info has \(treeInfo.count) entries for \(trees.count) trees") }
        if let w = treeWeights, w.count != trees.count { throw fail("weight_drop has \(w.count) entries for \(trees.count) trees") }

        var spec = TreeEnsemble.Spec(targets: targets)
        for (t, tree) in trees.enumerated() {
            let group = Int(treeInfo[t])
            guard group >= 0, group < targets else { throw fail("tree \(t) belongs to output \(group), out of range") }
            if let size = tree["tree_param"]?["size_leaf_vector"]?.double, size > 1 {
                throw KilnError(.unsupported, "\(source): tree \(t) has vector leaves (multi-target trees are not supported)")
            }
            try addTree(tree, index: t, group: group, weight: treeWeights?[t] ?? 1, features: Int(features), into: &spec, fail: fail)
        }
        for k in 0..<targets {
            let b = base[base.count == 1 ? 0 : k]
            let margin = link(b)
            guard margin.isFinite else { throw fail("base_score \(b) has no finite margin for objective '\(objective)'") }
            spec.baseValues[k] = Float(margin)
        }
        spec.postTransform = post
        return TreeModels.model(spec, features: Int(features), producer: "xgboost", objective: objective)
    }

    /// Adds tree `index` (output `group`, leaves scaled by `weight`) to `spec`.
    func addTree(_ tree: TreeJSON, index t: Int, group: Int, weight: Double, features: Int,
                 into spec: inout TreeEnsemble.Spec, fail: (String) -> KilnError) throws {
        guard let left = tree["left_children"]?.doubles, let right = tree["right_children"]?.doubles,
              let feature = tree["split_indices"]?.doubles, let condition = tree["split_conditions"]?.doubles else {
            throw fail("tree \(t) lacks left_children, right_children, split_indices or split_conditions")
        }
        let n = left.count
        guard n > 0, right.count == n, feature.count == n, condition.count == n else { throw fail("tree \(t): node arrays have different lengths") }
        let defaultLeft = tree["default_left"]?.doubles ?? Array(repeating: 0, count: n)
        let splitType = tree["split_type"]?.doubles ?? Array(repeating: 0, count: n)
        guard defaultLeft.count == n, splitType.count == n else { throw fail("tree \(t): default_left or split_type has the wrong length") }
        // Categorical splits: the categories of node categories_nodes[k] are
        // categories[categories_segments[k] ..< + categories_sizes[k]]; those go right.
        var categories: [Int: [Int]] = [:]
        if let nodes = tree["categories_nodes"]?.doubles, !nodes.isEmpty {
            let segments = tree["categories_segments"]?.doubles ?? [], sizes = tree["categories_sizes"]?.doubles ?? []
            let values = tree["categories"]?.doubles ?? []
            guard segments.count == nodes.count, sizes.count == nodes.count else { throw fail("tree \(t): category arrays have different lengths") }
            for k in nodes.indices {
                let lo = Int(segments[k]), count = Int(sizes[k])
                guard lo >= 0, count >= 0, lo + count <= values.count, nodes[k] >= 0, Int(nodes[k]) < n else {
                    throw fail("tree \(t): categories of node \(Int(nodes[k])) are out of range")
                }
                let members = values[lo..<(lo + count)].map { Int($0) }
                guard members.allSatisfy({ $0 >= 0 && $0 < 1 << 24 }) else { throw fail("tree \(t): a category is out of range") }
                categories[Int(nodes[k])] = members
            }
        }
        // Nodes in XGBoost's order; children's indices are offset by this tree's first node.
        let first = spec.modes.count
        for i in 0..<n {
            let l = Int(left[i]), r = Int(right[i])
            if l == -1 {
                _ = spec.addLeaf([(target: group, value: Float(Double(Float(condition[i])) * weight))])
                continue
            }
            guard l > 0, l < n, r > 0, r < n else { throw fail("tree \(t): node \(i) has a child out of range") }
            let f = Int(feature[i])
            guard f >= 0, f < features else { throw fail("tree \(t): node \(i) splits on feature \(f); the model has \(features)") }
            let node: Int
            if splitType[i] == 1 {
                guard let members = categories[i] else { throw fail("tree \(t): categorical node \(i) has no categories") }
                // Members go right: MEMBER's true branch is XGBoost's right child; missing follows default_left.
                let set = spec.addCategorySet(members)
                node = spec.addSplit(mode: .member, feature: f, threshold: Float(set), missingTrue: defaultLeft[i] == 0, missing: .nan)
                spec.setChildren(node, true: first + r, false: first + l)
            } else {
                node = spec.addSplit(mode: .lessThan, feature: f, threshold: Float(condition[i]), missingTrue: defaultLeft[i] != 0, missing: .nan)
                spec.setChildren(node, true: first + l, false: first + r)
            }
        }
        spec.roots.append(Int32(first))
    }
}

/// What the tree importers share: the graph around a `kiln.TreeEnsemble` node.
enum TreeModels {
    /// The name of a tree model's input.
    static let inputName = "x"
    /// The name of a tree model's output.
    static let outputName = "predictions"

    /// A model of one `kiln.TreeEnsemble` node over `spec`: input `x` float32 `[N, features]`, output
    /// `predictions` float32 `[N, columns]`.
    static func model(_ spec: TreeEnsemble.Spec, features: Int, producer: String, objective: String) -> Model {
        let node = Node(name: "trees", op: TreeEnsemble.op, inputs: [inputName], outputs: [outputName], attributes: spec.attributes)
        let graph = Graph(name: "trees",
                          inputs: [Value(name: inputName, type: .tensor(TensorType(.float32, [.symbol("N"), .fixed(features)])))],
                          outputs: [Value(name: outputName, type: .tensor(TensorType(.float32, [.symbol("N"), .fixed(spec.outputColumns)])))],
                          nodes: [node])
        return Model(graph: graph, opsets: ["": OpCatalog.canonicalOpset, TreeEnsemble.op.domain: 1], producer: producer,
                     metadata: ["objective": objective])
    }
}
