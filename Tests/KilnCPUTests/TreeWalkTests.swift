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

    /// A random forest of `trees` trees of depth at most `maxDepth` (unbalanced: a node stops early at random).
    static func forest(_ kind: Kind, targets: Int, trees: Int, multiWeightLeaves: Bool, maxDepth: Int = 7,
                       _ r: inout SplitMix64) -> TreeEnsemble.Spec {
        var spec = TreeEnsemble.Spec(targets: targets)
        spec.baseValues = (0..<targets).map { _ in r.pick(values) }
        func node(_ depth: Int, _ tree: Int) -> Int {
            if depth >= maxDepth || (depth > 0 && r.below(4) == 0) {
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

    /// The C walks (the leaf-mask walk where the forest and the CPU take it, else lockstep; the lockstep walk where
    /// the forest folds into it, else the work list; the work list only), and "none" (the Swift walk).
    static let variants = ["leafmask", "lockstep", "worklist", "none"]

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

    @Test("Forests of small trees through a Session: the leaf-mask walk gives kiln.reference's predictions and the work list's bits",
          arguments: [Kind.lessThanNaN, .lessOrEqualNaN, .lessOrEqualAsZero])
    func leafMasksMatchTheReference(_ kind: Kind) throws {
        defer { _ = kiln_trees_select_variant("host") }
        var r = SplitMix64(seed: UInt64(Kind.allCases.firstIndex(of: kind)! + 101))
        // Depth 5: at most 32 leaves (one mask word); depth 6: at most 64 (two).
        for maxDepth in [5, 6] {
            let model = Self.model(Self.forest(kind, targets: 1, trees: 50, multiWeightLeaves: false, maxDepth: maxDepth, &r))
            let x = Self.rows(300, &r)
            let input = Tensor(shape: [300, Self.features], x)
            let want = try Session(model: model, backend: ReferenceBackend()).runOrdered(["x": .tensor(input)])[0].tensor!.elements(as: Float.self)
            var results: [String: [Float]] = [:]
            for variant in ["leafmask", "worklist"] {
                #expect(kiln_trees_select_variant(variant) == 0)
                for threads in [1, 2] {
                    let cpu = try Session(model: model, backend: CPUBackend(threads: threads))
                    let all = try cpu.runOrdered(["x": .tensor(input)])[0].tensor!.elements(as: Float.self)
                    let context = "\(kind) depth \(maxDepth) \(variant) threads \(threads)"
                    #expect(all.count == want.count, "\(context)")
                    for i in 0..<min(all.count, want.count) where !(abs(all[i] - want[i]) <= 1e-5 * max(1, abs(want[i]))) {
                        Issue.record("\(context): value \(i) is \(all[i]), kiln.reference \(want[i])")
                        break
                    }
                    // Batches that end in partial sets of 16 rows and partial passes of 64.
                    for (lo, n) in [(3, 5), (20, 17), (50, 64), (100, 93)] {
                        let part = try cpu.runOrdered(["x": .tensor(Tensor(shape: [n, Self.features], Array(x[(lo * Self.features)..<((lo + n) * Self.features)])))])[0]
                            .tensor!.elements(as: Float.self)
                        #expect(part == Array(all[lo..<(lo + n)]), "\(context): rows \(lo)..<\(lo + n) alone")
                    }
                    results[variant] = all
                }
            }
            #expect(results["leafmask"] == results["worklist"], "\(kind) depth \(maxDepth): the leaf-mask walk differs from the work list")
        }
    }

    /// A random forest in the C layout: `trees` trees grown leaf-wise to at most `leaves` leaves each, the first to
    /// exactly `leaves` (a random leaf
    /// splits; half the time the last split's child, so some paths are long), splits `<` or `<=` on `features`
    /// features with NaN missing (either way) or read as 0. Returns the splits, the roots and one value per leaf.
    static func cForest(trees: Int, leaves: Int, features: Int, _ r: inout SplitMix64) -> ([kiln_tree_node], [Int32], [Float]) {
        var nodes: [kiln_tree_node] = [], roots: [Int32] = [], values: [Float] = []
        enum Slot { case root, yes(Int), no(Int) }
        for t in 0..<trees {
            var open: [Slot] = [.root]
            var root: Int32 = 0
            let count = t == 0 ? leaves : r.below(8) == 0 ? 1 : r.int(2...leaves)
            var last = 0
            func set(_ slot: Slot, _ ref: Int32) {
                switch slot {
                case .root: root = ref
                case .yes(let n): nodes[n].yes = ref
                case .no(let n): nodes[n].no = ref
                }
            }
            while open.count < count {
                let pick = r.bool() ? last : r.below(open.count)
                let n = nodes.count
                let missing = r.bool() ? KILN_TREE_MISSING_NAN : KILN_TREE_MISSING_NAN_AS_ZERO
                let word = UInt32(r.below(features)) | (r.bool() ? KILN_TREE_LE : 0) | (r.bool() ? KILN_TREE_MISSING_YES : 0)
                    | UInt32(missing) << KILN_TREE_MISSING_SHIFT
                nodes.append(kiln_tree_node(word: word, threshold: r.pick(Self.values), yes: 0, no: 0))
                set(open[pick], Int32(n))
                open[pick] = .yes(n)
                open.append(.no(n))
                last = r.bool() ? pick : open.count - 1
            }
            for slot in open {
                set(slot, ~Int32(values.count))
                values.append(r.float(-4, 4))
            }
            roots.append(root)
        }
        return (nodes, roots, values)
    }

    @Test("The leaf-mask walk (16 rows a vector on AVX-512, 8 on AVX2) sums what the lockstep walk sums, bit for bit, for every batch length; bigger trees are left to lockstep",
          arguments: ["avx512", "avx2", "generic"])
    func leafMasksMatchLockstep(_ family: String) {
        defer { _ = kiln_trees_select_variant("host"); _ = kiln_kernels_select_isa("host") }
        guard kiln_kernels_select_isa(family) == 0 else { return }  // a family this CPU lacks
        var r = SplitMix64(seed: 7)
        let features = 6
        // (most leaves per tree, mask words the walk should use)
        for (leaves, words) in [(32, 1), (33, 2), (64, 2), (65, 0)] {
            let (nodes, roots, values) = Self.cForest(trees: 37, leaves: leaves, features: features, &r)
            #expect(kiln_trees_select_variant("lockstep") == 0)
            let lockstep = kiln_forest_build(nodes, nodes.count, roots, roots.count, values, values.count)
            #expect(kiln_trees_select_variant("leafmask") == 0)
            // The family is process-wide (other suites may switch it): read what this build saw.
            let isa = String(cString: kiln_kernels_isa())
            let masked = kiln_forest_build(nodes, nodes.count, roots, roots.count, values, values.count)
            defer { kiln_forest_free(lockstep); kiln_forest_free(masked) }
            guard let lockstep, let masked else { Issue.record("kiln_forest_build declined a forest of \(leaves) leaves"); continue }
            #expect(kiln_forest_mask_words(lockstep) == 0)
            let got = kiln_forest_mask_words(masked)
            #expect(got == (isa == "generic" ? 0 : Int32(words)), "\(isa): forest of \(leaves) leaves: mask words \(got)")
            // Rows with NaN, ±0 and thresholds' own values.
            let rows = 300
            let x = (0..<(rows * features)).map { _ in r.below(4) == 0 ? r.pick(Self.specials) : r.pick(Self.values + [r.float(-3, 3)]) }
            let width = 2 * kiln_forest_features(masked)
            var keys = [UInt32](repeating: 0, count: rows * width)
            kiln_forest_expand(masked, x, features, rows, &keys)
            for n in [5, 15, 16, 17, 33, 48, 63, 64, 65, 130, 300] {
                let start = (0..<n).map { Double($0) * 0.25 }
                var a = start, b = start
                keys.withUnsafeBufferPointer { k in
                    kiln_forest_sum_rows(lockstep, k.baseAddress!, n, &a)
                    kiln_forest_sum_rows(masked, k.baseAddress!, n, &b)
                }
                #expect(a == b, "forest of \(leaves) leaves, \(n) rows")
            }
        }
    }

    @Test("The chained one-row walk gives the lockstep walk's sums and leaves, bit for bit, across chunks of trees")
    func chainedRowMatchesLockstep() {
        defer { _ = kiln_trees_select_variant("host") }
        var r = SplitMix64(seed: 11)
        let features = 6
        // Fewer trees than lanes, a few, and more than one chunk (1,024 trees).
        for trees in [3, 8, 37, 1100] {
            let (nodes, roots, values) = Self.cForest(trees: trees, leaves: 40, features: features, &r)
            let rows = 40
            let x = (0..<(rows * features)).map { _ in r.below(4) == 0 ? r.pick(Self.specials) : r.pick(Self.values + [r.float(-3, 3)]) }
            // With one value per leaf (kiln_forest_sum_row) and without (kiln_forest_leaves_row).
            for withValues in [true, false] {
                func build(_ variant: String) -> OpaquePointer? {
                    #expect(kiln_trees_select_variant(variant) == 0)
                    return withValues ? kiln_forest_build(nodes, nodes.count, roots, roots.count, values, values.count)
                        : kiln_forest_build(nodes, nodes.count, roots, roots.count, nil, values.count)
                }
                let lockstep = build("lockstep"), chained = build("leafmask")
                defer { kiln_forest_free(lockstep); kiln_forest_free(chained) }
                guard let lockstep, let chained else { Issue.record("kiln_forest_build declined \(trees) trees"); continue }
                #expect(kiln_forest_chained(lockstep) == 0)
                #expect(kiln_forest_chained(chained) == 1, "\(trees) leaf-wise trees are walked chained")
                let width = 2 * kiln_forest_features(chained)
                var keys = [UInt32](repeating: 0, count: rows * width)
                kiln_forest_expand(chained, x, features, rows, &keys)
                keys.withUnsafeBufferPointer { k in
                    for row in 0..<rows {
                        let key = k.baseAddress! + row * width
                        if withValues {
                            var a = 0.5, b = 0.5
                            kiln_forest_sum_row(lockstep, key, &a)
                            kiln_forest_sum_row(chained, key, &b)
                            #expect(a.bitPattern == b.bitPattern, "\(trees) trees, row \(row): \(b), lockstep \(a)")
                        } else {
                            var a = [Int32](repeating: -1, count: trees), b = [Int32](repeating: -2, count: trees)
                            kiln_forest_leaves_row(lockstep, key, &a)
                            kiln_forest_leaves_row(chained, key, &b)
                            #expect(a == b, "\(trees) trees, row \(row): leaves differ")
                        }
                    }
                }
            }
        }
    }

    @Test("Unknown walk variants are refused; the host variant is one the CPU has")
    func variantSelection() {
        defer { _ = kiln_trees_select_variant("host") }
        #expect(kiln_trees_select_variant("sse9") == -1)
        #expect(kiln_trees_select_variant("host") == 0)
        #expect(String(cString: kiln_trees_variant()) == "leafmask")
        #expect(kiln_trees_select_variant("lockstep") == 0)
        #expect(String(cString: kiln_trees_variant()) == "lockstep")
        #expect(kiln_trees_enabled() == 1)
        #expect(kiln_trees_select_variant("none") == 0)
        #expect(kiln_trees_enabled() == 0)
    }
}
