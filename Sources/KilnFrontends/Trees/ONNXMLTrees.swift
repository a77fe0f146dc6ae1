import KilnIR

/// Rewrites ONNX-ML `TreeEnsembleRegressor` and `TreeEnsembleClassifier` nodes (ai.onnx.ml opsets 1–3, as
/// skl2onnx and onnxmltools write them) into `kiln.TreeEnsemble`, so every tree model runs on one op.
///
/// The classifier's label output becomes `ArgMax` over the scores and a `Gather` from the class labels.
/// Nodes this mapping does not express exactly stay as they are (kiln.reference runs them): thresholds or
/// weights given as double tensors, MIN/MAX aggregation, SOFTMAX_ZERO and PROBIT transforms, a binary
/// classifier that scores one class only (ONNX Runtime derives the other), an input that is not float32.
enum ONNXMLTrees {
    static let domain = "ai.onnx.ml"

    /// Rewrites the main graph's tree nodes in place; returns whether any was rewritten.
    static func rewrite(_ graph: inout Graph) -> Bool {
        guard graph.nodes.contains(where: { $0.op.domain == domain && $0.op.name.hasPrefix("TreeEnsemble") }) else { return false }
        var nodes: [Node] = []
        var changed = false
        for node in graph.nodes {
            if node.op.domain == domain, let replacement = convert(node, in: &graph) {
                nodes.append(contentsOf: replacement)
                changed = true
            } else {
                nodes.append(node)
            }
        }
        graph.nodes = nodes
        return changed
    }

    static func ints(_ node: Node, _ name: String) -> [Int]? {
        if case .ints(let v)? = node.attributes[name] { return v }
        return nil
    }
    static func floats(_ node: Node, _ name: String) -> [Float]? {
        if case .floats(let v)? = node.attributes[name] { return v }
        return nil
    }
    static func string(_ node: Node, _ name: String, _ fallback: String) -> String {
        if case .string(let v)? = node.attributes[name] { return v }
        return fallback
    }

    /// The replacement of `node`, or nil to keep it.
    static func convert(_ node: Node, in graph: inout Graph) -> [Node]? {
        let classifier: Bool
        switch node.op.name {
        case "TreeEnsembleRegressor": classifier = false
        case "TreeEnsembleClassifier": classifier = true
        default: return nil
        }
        guard let x = node.inputs.first, graph.type(of: x)?.tensorType?.dtype == .float32 else { return nil }
        let prefix = classifier ? "class" : "target"
        guard let treeIDs = ints(node, "nodes_treeids"), let nodeIDs = ints(node, "nodes_nodeids"),
              let featureIDs = ints(node, "nodes_featureids"), let values = floats(node, "nodes_values"),
              case .strings(let modes)? = node.attributes["nodes_modes"],
              let trueIDs = ints(node, "nodes_truenodeids"), let falseIDs = ints(node, "nodes_falsenodeids"),
              let wTrees = ints(node, prefix + "_treeids"), let wNodes = ints(node, prefix + "_nodeids"),
              let wIDs = ints(node, prefix + "_ids"), let weights = floats(node, prefix + "_weights") else { return nil }
        let n = treeIDs.count
        let missing = ints(node, "nodes_missing_value_tracks_true") ?? Array(repeating: 0, count: n)
        guard nodeIDs.count == n, featureIDs.count == n, values.count == n, modes.count == n, trueIDs.count == n,
              falseIDs.count == n, missing.count == n, wNodes.count == wTrees.count, wIDs.count == wTrees.count,
              weights.count == wTrees.count, n > 0 else { return nil }
        // Score columns.
        var labels: Tensor? = nil
        let targets: Int
        if classifier {
            if let l = ints(node, "classlabels_int64s"), !l.isEmpty {
                labels = Tensor(shape: [l.count], l.map { Int64($0) })
            } else if case .strings(let l)? = node.attributes["classlabels_strings"], !l.isEmpty {
                labels = Tensor(shape: [l.count], strings: l)
            } else { return nil }
            targets = labels!.count
            // Every class must have its own scores (not ONNX Runtime's derived second class).
            guard Set(wIDs) == Set(0..<targets) else { return nil }
        } else {
            guard case .int(let t)? = node.attributes["n_targets"], t >= 1, t <= 1 << 20 else { return nil }
            targets = t
        }
        guard wIDs.allSatisfy({ $0 >= 0 && $0 < targets }) else { return nil }
        var spec = TreeEnsemble.Spec(targets: targets)
        switch string(node, "post_transform", "NONE") {
        case "NONE": spec.postTransform = .none
        case "LOGISTIC": spec.postTransform = .logistic
        case "SOFTMAX": spec.postTransform = .softmax
        default: return nil
        }
        if let base = floats(node, "base_values"), !base.isEmpty {
            guard base.count == targets else { return nil }
            spec.baseValues = base
        }
        struct Key: Hashable { let tree: Int, node: Int }
        var leafWeights: [Key: [(target: Int, value: Float)]] = [:]
        for k in wTrees.indices { leafWeights[Key(tree: wTrees[k], node: wNodes[k]), default: []].append((wIDs[k], weights[k])) }
        var index: [Key: Int] = [:]
        for i in 0..<n {
            let key = Key(tree: treeIDs[i], node: nodeIDs[i])
            guard index[key] == nil else { return nil }
            index[key] = i
        }
        let table: [String: TreeEnsemble.Mode] = ["BRANCH_LEQ": .lessOrEqual, "BRANCH_LT": .lessThan, "BRANCH_GTE": .greaterOrEqual,
                                                  "BRANCH_GT": .greaterThan, "BRANCH_EQ": .equal, "BRANCH_NEQ": .notEqual]
        var seenTrees = Set<Int>()
        for i in 0..<n {
            if seenTrees.insert(treeIDs[i]).inserted { spec.roots.append(Int32(i)) }
            if modes[i] == "LEAF" {
                _ = spec.addLeaf(leafWeights[Key(tree: treeIDs[i], node: nodeIDs[i])] ?? [])
                continue
            }
            // NaN fails every comparison except !=; missing_value_tracks_true sends it to the true branch instead.
            guard let mode = table[modes[i]], mode != .notEqual, featureIDs[i] >= 0, !values[i].isNaN else { return nil }
            _ = spec.addSplit(mode: mode, feature: featureIDs[i], threshold: values[i], missingTrue: missing[i] != 0, missing: .nan)
        }
        for i in 0..<n where modes[i] != "LEAF" {
            guard let yes = index[Key(tree: treeIDs[i], node: trueIDs[i])], let no = index[Key(tree: treeIDs[i], node: falseIDs[i])] else { return nil }
            spec.setChildren(i, true: yes, false: no)
        }
        switch string(node, "aggregate_function", "SUM") {
        case "SUM": break
        case "AVERAGE": spec.divisor = max(1, spec.roots.count)
        default: return nil
        }
        // The result must be a valid op (acyclic trees, every index in range).
        let base = node.name.isEmpty ? (node.outputs.first ?? "trees") : node.name
        let candidate = Node(name: base, op: TreeEnsemble.op, inputs: [x], outputs: [], attributes: spec.attributes)
        guard (try? TreeEnsemble.Spec(node: candidate)) != nil else { return nil }
        if !classifier {
            guard let y = node.outputs.first, !y.isEmpty else { return nil }
            var out = candidate
            out.outputs = [y]
            return [out]
        }
        let labelName = node.outputs.count > 0 ? node.outputs[0] : ""
        var scoreName = node.outputs.count > 1 ? node.outputs[1] : ""
        if scoreName.isEmpty { scoreName = uniqueName(base + "_scores", in: graph) }
        var out = candidate
        out.outputs = [scoreName]
        var result = [out]
        if !labelName.isEmpty {
            let best = uniqueName(base + "_best", in: graph), labelTable = uniqueName(base + "_classlabels", in: graph)
            graph.initializers[labelTable] = labels!
            result.append(Node(name: best, op: OpID("", "ArgMax"), inputs: [scoreName], outputs: [best],
                               attributes: ["axis": .int(1), "keepdims": .int(0)]))
            result.append(Node(name: base + "_label", op: OpID("", "Gather"), inputs: [labelTable, best], outputs: [labelName],
                               attributes: ["axis": .int(0)]))
        }
        return result
    }

    /// `name`, or `name_2`, `name_3`… when the graph already uses it.
    static func uniqueName(_ name: String, in graph: Graph) -> String {
        var used = Set(graph.initializers.keys)
        for v in graph.inputs + graph.outputs { used.insert(v.name) }
        for node in graph.nodes { used.formUnion(node.inputs); used.formUnion(node.outputs) }
        if !used.contains(name) { return name }
        var k = 2
        while used.contains("\(name)_\(k)") { k += 1 }
        return "\(name)_\(k)"
    }
}
