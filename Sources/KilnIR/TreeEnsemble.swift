#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Kiln's one op for tree ensembles (`kiln.TreeEnsemble`): what XGBoost, LightGBM and ONNX-ML tree models
/// import into, with each framework's comparison, missing-value rule and post-transform spelled out as
/// attributes, so a backend evaluates one form.
///
/// ## The node
/// Input 0: `X`, float32 `[N, F]`. Output 0: float32 `[N, C]`: one column per target (`n_targets`), or one
/// column (the class index) when `post_transform` is `ARGMAX`.
///
/// ## Attributes (all node arrays have one entry per node; nodes of all trees share one numbering)
/// - `n_targets` (int): score columns.
/// - `tree_roots` (ints): each tree's root node.
/// - `nodes_modes` (ints): `TreeEnsemble.Mode` raw values; 0 is a leaf.
/// - `nodes_features` (ints): the feature a split reads (ignored for leaves).
/// - `nodes_thresholds` (floats): a numeric split's float32 threshold; for `MEMBER` the category set's index.
/// - `nodes_true`, `nodes_false` (ints): a split's children when the comparison holds / does not.
///   For a leaf: the first entry of its weights in `leaf_targets`/`leaf_weights`, and how many.
/// - `nodes_missing_true` (ints, optional, default 0): a missing value takes the true branch.
/// - `nodes_missing_kinds` (ints, optional, default 0): `TreeEnsemble.Missing` raw values.
/// - `leaf_targets` (ints), `leaf_weights` (floats): leaf contributions (target column, value).
/// - `category_offsets` (ints, sets + 1), `category_words` (ints, 32-bit words): category sets as bitsets;
///   set `s` is words `category_offsets[s]..<category_offsets[s + 1]`; category `c` is bit `c % 32` of word `c / 32`.
/// - `base_values` (floats, optional): added to each target after aggregation (a margin, not a probability).
/// - `aggregate_divisor` (int, default 1): the sum over trees is divided by it (averaging forests).
/// - `post_transform` (string, default `NONE`): `NONE`, `LOGISTIC` (1/(1+e^(-k·s)), k = `sigmoid_scale`),
///   `SOFTMAX`, `EXP`, `ARGMAX` (index of the largest score, as float).
/// - `sigmoid_scale` (float, default 1).
public enum TreeEnsemble {
    /// The op: domain `kiln`, name `TreeEnsemble`.
    public static let op = OpID("kiln", "TreeEnsemble")
    /// Largest |x| LightGBM counts as zero for `Missing.nanOrZero` (its `kZeroThreshold`, 1e-35f).
    public static let zeroThreshold: Float = 1e-35

    /// How a split compares feature value `x` with its threshold `t`; the true branch is taken when it holds.
    public enum Mode: Int, Sendable {
        /// A leaf.
        case leaf = 0
        /// `x < t` (XGBoost).
        case lessThan = 1
        /// `x <= t` (LightGBM, ONNX-ML BRANCH_LEQ).
        case lessOrEqual = 2
        /// `x > t`.
        case greaterThan = 3
        /// `x >= t`.
        case greaterOrEqual = 4
        /// `x == t`.
        case equal = 5
        /// `x != t`.
        case notEqual = 6
        /// `trunc(x)` is a member of category set `t` (negative or beyond the set: not a member).
        case member = 7
    }

    /// Which values are missing at a split (a missing value takes `nodes_missing_true`'s branch).
    public enum Missing: Int, Sendable {
        /// NaN is missing (XGBoost, ONNX-ML, LightGBM `missing_type=NaN`).
        case nan = 0
        /// NaN and values with |x| ≤ 1e-35 are missing (LightGBM `missing_type=Zero`, `zero_as_missing`).
        case nanOrZero = 1
        /// Nothing is missing: NaN is compared as 0 (LightGBM `missing_type=None`).
        case nanAsZero = 2
    }

    /// What is applied to the aggregated scores of a row.
    public enum PostTransform: String, Sendable {
        case none = "NONE"
        case logistic = "LOGISTIC"
        case softmax = "SOFTMAX"
        case exp = "EXP"
        case argmax = "ARGMAX"
    }

    /// A tree ensemble decoded from a node's attributes and checked: every index in range, every array
    /// the right length, every tree acyclic. Backends build their layouts from it.
    public struct Spec: Sendable {
        public var targets: Int
        public var roots: [Int32]
        public var modes: [Mode]
        public var features: [Int32]
        public var thresholds: [Float]
        public var trueNext: [Int32]
        public var falseNext: [Int32]
        public var missingTrue: [Bool]
        public var missing: [Missing]
        public var leafTargets: [Int32]
        public var leafWeights: [Float]
        public var categoryOffsets: [Int32]
        public var categoryWords: [UInt32]
        public var baseValues: [Float]
        public var divisor: Int
        public var postTransform: PostTransform
        public var sigmoidScale: Float

        /// Score columns the node writes.
        public var outputColumns: Int { postTransform == .argmax ? 1 : targets }
        /// The largest feature index a split reads (-1 when there is none).
        public var maxFeature: Int {
            var m = -1
            for i in modes.indices where modes[i] != .leaf { m = max(m, Int(features[i])) }
            return m
        }

        /// An empty ensemble for `targets` columns; frontends fill it and call `attributes`.
        public init(targets: Int) {
            self.targets = targets
            roots = []; modes = []; features = []; thresholds = []; trueNext = []; falseNext = []
            missingTrue = []; missing = []; leafTargets = []; leafWeights = []
            categoryOffsets = [0]; categoryWords = []
            baseValues = Array(repeating: 0, count: targets)
            divisor = 1
            postTransform = .none
            sigmoidScale = 1
        }

        /// Appends a split node and returns its index (children are set later with `setChildren`).
        public mutating func addSplit(mode: Mode, feature: Int, threshold: Float, missingTrue: Bool, missing: Missing) -> Int {
            modes.append(mode); features.append(Int32(truncatingIfNeeded: feature)); thresholds.append(threshold)
            trueNext.append(-1); falseNext.append(-1)
            self.missingTrue.append(missingTrue); self.missing.append(missing)
            return modes.count - 1
        }

        /// Appends a leaf contributing `weights` (target, value) and returns its index.
        public mutating func addLeaf(_ weights: [(target: Int, value: Float)]) -> Int {
            modes.append(.leaf); features.append(0); thresholds.append(0)
            trueNext.append(Int32(leafTargets.count)); falseNext.append(Int32(weights.count))
            missingTrue.append(false); missing.append(.nan)
            for w in weights {
                leafTargets.append(Int32(truncatingIfNeeded: w.target)); leafWeights.append(w.value)
            }
            return modes.count - 1
        }

        /// Appends a category set (members are non-negative category numbers) and returns its index.
        public mutating func addCategorySet(_ members: [Int]) -> Int {
            let words = (members.max() ?? -1) / 32 + 1
            var bits = [UInt32](repeating: 0, count: max(words, 0))
            for m in members where m >= 0 { bits[m / 32] |= 1 << UInt32(m % 32) }
            return addCategoryBitset(bits)
        }

        /// Appends a category set given as 32-bit words and returns its index.
        public mutating func addCategoryBitset(_ words: [UInt32]) -> Int {
            categoryWords.append(contentsOf: words)
            categoryOffsets.append(Int32(categoryWords.count))
            return categoryOffsets.count - 2
        }

        /// Sets split `node`'s children.
        public mutating func setChildren(_ node: Int, true yes: Int, false no: Int) {
            trueNext[node] = Int32(yes); falseNext[node] = Int32(no)
        }

        /// The node's attributes.
        public var attributes: [String: Attribute] {
            var a: [String: Attribute] = [
                "n_targets": .int(targets),
                "tree_roots": .ints(roots.map(Int.init)),
                "nodes_modes": .ints(modes.map(\.rawValue)),
                "nodes_features": .ints(features.map(Int.init)),
                "nodes_thresholds": .floats(thresholds),
                "nodes_true": .ints(trueNext.map(Int.init)),
                "nodes_false": .ints(falseNext.map(Int.init)),
                "nodes_missing_true": .ints(missingTrue.map { $0 ? 1 : 0 }),
                "nodes_missing_kinds": .ints(missing.map(\.rawValue)),
                "leaf_targets": .ints(leafTargets.map(Int.init)),
                "leaf_weights": .floats(leafWeights),
                "base_values": .floats(baseValues),
                "aggregate_divisor": .int(divisor),
                "post_transform": .string(postTransform.rawValue),
                "sigmoid_scale": .float(sigmoidScale),
            ]
            if categoryOffsets.count > 1 {
                a["category_offsets"] = .ints(categoryOffsets.map(Int.init))
                a["category_words"] = .ints(categoryWords.map(Int.init))
            }
            return a
        }

        /// Decodes and checks `node`'s attributes; a `.invalidModel` error names the first problem.
        public init(node: Node) throws {
            let label = node.name.isEmpty ? "kiln.TreeEnsemble" : "kiln.TreeEnsemble '\(node.name)'"
            func fail(_ m: String) -> KilnError { KilnError(.invalidModel, "\(label): \(m)") }
            func ints(_ name: String, required: Bool = true) throws -> [Int]? {
                switch node.attributes[name] {
                case .ints(let v)?: return v
                case .int(let v)?: return [v]
                case nil: if required { throw fail("attribute '\(name)' is required") } else { return nil }
                default: throw fail("attribute '\(name)' must be ints")
                }
            }
            func floats(_ name: String, required: Bool = true) throws -> [Float]? {
                switch node.attributes[name] {
                case .floats(let v)?: return v
                case .float(let v)?: return [v]
                case nil: if required { throw fail("attribute '\(name)' is required") } else { return nil }
                default: throw fail("attribute '\(name)' must be floats")
                }
            }
            guard case .int(let targets)? = node.attributes["n_targets"], targets >= 1, targets <= 1 << 20 else {
                throw fail("attribute 'n_targets' must be an int between 1 and 2^20")
            }
            self.init(targets: targets)
            let modeCodes = try ints("nodes_modes")!
            let n = modeCodes.count
            guard n < Int(Int32.max) else { throw fail("too many nodes") }
            modes = try modeCodes.map { guard let m = Mode(rawValue: $0) else { throw fail("unknown node mode \($0)") }; return m }
            let feats = try ints("nodes_features")!, ths = try floats("nodes_thresholds")!
            let yes = try ints("nodes_true")!, no = try ints("nodes_false")!
            let mt = try ints("nodes_missing_true", required: false) ?? Array(repeating: 0, count: n)
            let mk = try ints("nodes_missing_kinds", required: false) ?? Array(repeating: 0, count: n)
            guard feats.count == n, ths.count == n, yes.count == n, no.count == n, mt.count == n, mk.count == n else {
                throw fail("node attributes have different lengths (nodes_modes has \(n))")
            }
            let lt = try ints("leaf_targets")!, lw = try floats("leaf_weights")!
            guard lt.count == lw.count else { throw fail("leaf_targets and leaf_weights have different lengths") }
            guard lt.allSatisfy({ $0 >= 0 && $0 < targets }) else { throw fail("a leaf target is out of range for \(targets) targets") }
            leafTargets = lt.map { Int32($0) }
            leafWeights = lw
            let offsets = try ints("category_offsets", required: false) ?? [0]
            let words = try ints("category_words", required: false) ?? []
            guard offsets.first == 0, offsets.last == words.count, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                throw fail("category_offsets must rise from 0 to the number of category_words")
            }
            guard words.allSatisfy({ $0 >= 0 && $0 <= Int(UInt32.max) }) else { throw fail("category_words must be 32-bit words") }
            categoryOffsets = offsets.map { Int32($0) }
            categoryWords = words.map { UInt32($0) }
            let sets = offsets.count - 1
            features = []; thresholds = ths; trueNext = []; falseNext = []; missingTrue = []; missing = []
            for i in 0..<n {
                missingTrue.append(mt[i] != 0)
                guard let kind = Missing(rawValue: mk[i]) else { throw fail("node \(i): unknown missing kind \(mk[i])") }
                missing.append(kind)
                if modes[i] == .leaf {
                    guard yes[i] >= 0, no[i] >= 0, yes[i] <= lt.count, no[i] <= lt.count - yes[i] else { throw fail("leaf \(i): weights out of range") }
                    features.append(0)
                } else {
                    guard feats[i] >= 0, feats[i] < Int(Int32.max) else { throw fail("node \(i): feature \(feats[i]) is out of range") }
                    guard yes[i] >= 0, yes[i] < n, no[i] >= 0, no[i] < n else { throw fail("node \(i): a child is out of range") }
                    if modes[i] == .member {
                        let s = ths[i]
                        guard s >= 0, s < Float(sets), s == s.rounded() else { throw fail("node \(i): category set \(s) is out of range") }
                    } else if ths[i].isNaN {
                        throw fail("node \(i): threshold is NaN")
                    }
                    features.append(Int32(feats[i]))
                }
                trueNext.append(Int32(yes[i])); falseNext.append(Int32(no[i]))
            }
            let r = try ints("tree_roots")!
            guard r.allSatisfy({ $0 >= 0 && $0 < n }) else { throw fail("a tree root is out of range") }
            roots = r.map { Int32($0) }
            // Every tree must be acyclic: children come from a walk that visits each node once per tree.
            var depthOK = [UInt8](repeating: 0, count: n) // 0 unseen, 1 on path, 2 done
            for root in r {
                var stack: [(Int, Bool)] = [(root, false)]
                while let (v, exiting) = stack.popLast() {
                    if exiting { depthOK[v] = 2; continue }
                    if depthOK[v] == 2 { continue }
                    if depthOK[v] == 1 { throw fail("the trees have a cycle through node \(v)") }
                    depthOK[v] = 1
                    stack.append((v, true))
                    if modes[v] != .leaf {
                        for c in [Int(trueNext[v]), Int(falseNext[v])] {
                            if depthOK[c] == 1 { throw fail("the trees have a cycle through node \(c)") }
                            if depthOK[c] == 0 { stack.append((c, false)) }
                        }
                    }
                }
            }
            if let base = try floats("base_values", required: false), !base.isEmpty {
                guard base.count == targets else { throw fail("base_values has \(base.count) values for \(targets) targets") }
                baseValues = base
            }
            if case .int(let d)? = node.attributes["aggregate_divisor"] {
                guard d >= 1 else { throw fail("aggregate_divisor must be at least 1") }
                divisor = d
            }
            if case .string(let p)? = node.attributes["post_transform"] {
                guard let t = PostTransform(rawValue: p) else { throw fail("unknown post_transform '\(p)'") }
                postTransform = t
            }
            if case .float(let k)? = node.attributes["sigmoid_scale"] { sigmoidScale = k }
        }

        /// Whether `x` is a member of category set `set` (truncated toward zero; negative, NaN and
        /// values past the set are not).
        @inline(__always)
        public func isMember(_ x: Float, set: Int) -> Bool {
            guard x > -1, x < 2_147_483_648 else { return false }
            let c = Int(x)
            let lo = Int(categoryOffsets[set]), hi = Int(categoryOffsets[set + 1])
            guard c / 32 < hi - lo else { return false }
            return categoryWords[lo + c / 32] & (1 << UInt32(c % 32)) != 0
        }

        /// Applies the post-transform to one row of aggregated scores (base values already added), in place;
        /// for `ARGMAX` the result is in `row[0]`.
        public func finish(_ row: inout [Double]) {
            switch postTransform {
            case .none: break
            case .logistic:
                let k = Double(sigmoidScale)
                for j in row.indices { row[j] = 1 / (1 + treeExp(-k * row[j])) }
            case .exp:
                for j in row.indices { row[j] = treeExp(row[j]) }
            case .softmax:
                let m = row.max() ?? 0
                var total = 0.0
                for j in row.indices { row[j] = treeExp(row[j] - m); total += row[j] }
                for j in row.indices { row[j] /= total }
            case .argmax:
                var best = 0
                for j in row.indices where row[j] > row[best] { best = j }
                row[0] = Double(best)
            }
        }

    }
}

/// e^x, libm's.
@inline(__always) func treeExp(_ x: Double) -> Double { exp(x) }
