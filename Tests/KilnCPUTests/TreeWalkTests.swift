// kiln.cpu's tree-ensemble walks (CKilnKernels trees.c and the Swift walk) against kiln.reference, on random
// forests that use every comparison, missing-value rule and leaf shape the C layout takes, at batch sizes that
// reach each path (one row walking all trees, blocks of rows, several blocks on threads).
import CKilnKernels
import Kiln
import KilnCPU
import KilnReference
import KilnTestSupport
import Testing

@Suite(.serialized) struct TreeWalkTests {
    /// The kinds of forest the tests build: each reaches one specialization of the C walk (or none).
    enum Kind: String, CaseIterable {
        /// `<`, NaN missing (XGBoost): KILN_TREES_RULE_LT_NAN.
        case lessThanNaN
        /// `<=`, NaN missing: KILN_TREES_RULE_LE_NAN.
        case lessOrEqualNaN
        /// `<=`, NaN as 0 (LightGBM missing_type=None): KILN_TREES_RULE_LE_NAN_AS_ZERO.
        case lessOrEqualAsZero
        /// `<`, `<=`, `>`, `>=` with every missing kind: KILN_TREES_RULE_GENERAL.
        case mixed
        /// Mixed, and some splits `==` or category sets: kiln.cpu's Swift walk only.
        case withMembership
    }

    /// Thresholds and feature values from one small set, so that equal comparisons happen; plus NaN, ±0 and
    /// values LightGBM counts as zero.
    static let values: [Float] = [-2, -1, -0.5, 0, 0.5, 1, 2, 3]
    static let specials: [Float] = [.nan, 0, -0.0, 1e-36, -1e-36]
    static let features = 5

    /// A random forest of `trees` trees of depth at most 7 (unbalanced: a node stops early at random).
    static func forest(_ kind: Kind, targets: Int, trees: Int, multiWeightLeaves: Bool, _ r: inout SplitMix64) -> TreeEnsemble.Spec {
        var spec = TreeEnsemble.Spec(targets: targets)
        spec.baseValues = (0..<targets).map { _ in r.pick(values) }
        func node(_ depth: Int, _ tree: Int) -> Int {
            if depth >= 7 || (depth > 0 && r.below(4) == 0) {
                if multiWeightLeaves && r.bool() {
                    return spec.addLeaf((0..<targets).map { (target: $0, value: r.float()) })
                }
                return spec.addLeaf([(target: targets == 1 ? 0 : tree % targets, value: r.float())])
            }
            let mode: TreeEnsemble.Mode, missing: TreeEnsemble.Missing
            switch kind {
            case .lessThanNaN: mode = .lessThan; missing = .nan
            case .lessOrEqualNaN: mode = .lessOrEqual; missing = .nan
            case .lessOrEqualAsZero: mode = .lessOrEqual; missing = .nanAsZero
            case .mixed:
                mode = r.pick([.lessThan, .lessOrEqual, .greaterThan, .greaterOrEqual])
                missing = r.pick([.nan, .nanOrZero, .nanAsZero])
            case .withMembership:
                mode = r.pick([.lessThan, .lessOrEqual, .greaterThan, .greaterOrEqual, .equal, .notEqual, .member])
                missing = r.pick([.nan, .nanOrZero, .nanAsZero])
            }
            let threshold = mode == .member ? Float(spec.addCategorySet([0, 2, 3])) : r.pick(values)
            let split = spec.addSplit(mode: mode, feature: r.below(features), threshold: threshold, missingTrue: r.bool(), missing: missing)
            let yes = node(depth + 1, tree), no = node(depth + 1, tree)
            spec.setChildren(split, true: yes, false: no)
            return split
        }
        for t in 0..<trees {
            // Some trees are a single leaf.
            spec.roots.append(Int32(r.below(10) == 0 ? spec.addLeaf([(target: t % targets, value: r.float())]) : node(0, t)))
        }
        return spec
    }

    static func model(_ spec: TreeEnsemble.Spec) -> Model {
        let node = Node(name: "trees", op: TreeEnsemble.op, inputs: ["x"], outputs: ["y"], attributes: spec.attributes)
        let graph = Graph(name: "trees", inputs: [Value(name: "x", type: .tensor(TensorType(.float32, [.symbol("N"), .fixed(features)])))],
                          outputs: [Value(name: "y")], nodes: [node])
        return Model(graph: graph, opsets: ["": 21, TreeEnsemble.op.domain: 1])
    }

    /// `rows` rows of features, a quarter of the values special.
    static func rows(_ rows: Int, _ r: inout SplitMix64) -> [Float] {
        (0..<(rows * features)).map { _ in r.below(4) == 0 ? r.pick(specials) : r.pick(values) }
    }

    /// The C walks (the lockstep walk where the forest folds into it, else the work list; the work list only),
    /// and "none" (the Swift walk).
    static let variants = ["lockstep", "worklist", "none"]

    @Test("Every walk variant gives kiln.reference's predictions, bit for bit the same as each other, one row at a time or in blocks",
          arguments: Kind.allCases)
    func variantsMatchTheReference(_ kind: Kind) throws {
        defer { _ = kiln_trees_select_variant("host") }
        var r = SplitMix64(seed: UInt64(Kind.allCases.firstIndex(of: kind)! + 1))
                for (targets, transform, multi) in [(1, TreeEnsemble.PostTransform.none, false), (3, .softmax, false), (3, .logistic, true)] {
            var spec = Self.forest(kind, targets: targets, trees: 40, multiWeightLeaves: multi, &r)
            spec.postTransform = transform
            let model = Self.model(spec)
            // 300 rows: two blocks on two threads, with tails shorter than the lockstep walk's eight rows.
            let x = Self.rows(300, &r)
            let reference = try Session(model: model, backend: ReferenceBackend())
            let want = try reference.runOrdered(["x": .tensor(Tensor(shape: [300, Self.features], x))])[0].tensor!.elements(as: Float.self)
            var results: [String: [Float]] = [:]
            for variant in Self.variants {
                #expect(kiln_trees_select_variant(variant) == 0)
                #expect(String(cString: kiln_trees_variant()) == variant)
                for threads in [1, 2] {
                    let cpu = try Session(model: model, backend: CPUBackend(threads: threads))
                    let context = "\(kind) targets \(targets) \(transform) \(variant) threads \(threads)"
                    let all = try cpu.runOrdered(["x": .tensor(Tensor(shape: [300, Self.features], x))])[0].tensor!.elements(as: Float.self)
                    #expect(all.count == want.count, "\(context)")
                    for i in 0..<min(all.count, want.count) where !(abs(all[i] - want[i]) <= 1e-5 * max(1, abs(want[i]))) {
                        Issue.record("\(context): value \(i) is \(all[i]), kiln.reference \(want[i])")
                        break
                    }
                    // One row at a time (the tree-interleaved walk) and 3 rows: the same bits as the block walk.
                    let columns = all.count / 300
                    for (lo, n) in [(0, 1), (17, 1), (299, 1), (40, 3), (100, 9)] {
                        let part = try cpu.runOrdered(["x": .tensor(Tensor(shape: [n, Self.features], Array(x[(lo * Self.features)..<((lo + n) * Self.features)])))])[0]
                            .tensor!.elements(as: Float.self)
                        let block = Array(all[(lo * columns)..<((lo + n) * columns)])
                        if variant == "none" {
                            // The Swift walk splits the trees of a small batch among threads: the same within rounding.
                            #expect(zip(part, block).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }, "\(context): rows \(lo)..<\(lo + n) alone")
                        } else {
                            #expect(part == block, "\(context): rows \(lo)..<\(lo + n) alone")
                        }
                    }
                    if let previous = results[variant], variant != "none" { #expect(previous == all, "\(context): threads change the result") }
                    results[variant] = all
                }
            }
            // The C variants sum the trees in the same order: identical results.
            if let worklist = results["worklist"] {
                for (variant, result) in results where variant != "none" { #expect(result == worklist, "\(kind) targets \(targets): \(variant) differs from the work list") }
            }
        }
    }

    @Test("Unknown walk variants are refused; the host variant is one the CPU has")
    func variantSelection() {
        defer { _ = kiln_trees_select_variant("host") }
        #expect(kiln_trees_select_variant("sse9") == -1)
        #expect(kiln_trees_select_variant("host") == 0)
        #expect(String(cString: kiln_trees_variant()) == "lockstep")
        #expect(kiln_trees_enabled() == 1)
        #expect(kiln_trees_select_variant("none") == 0)
        #expect(kiln_trees_enabled() == 0)
    }
}
