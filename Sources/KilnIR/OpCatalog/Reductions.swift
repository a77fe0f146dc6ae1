/// Reductions: Reduce*, ArgMax/ArgMin, TopK.
extension OpCatalog {
    static func registerReductions(into catalog: inout OpCatalog) {
        // `axes` became an input in opset 18 (ReduceSum's in opset 13).
        catalog.define([
            "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
            "ReduceProd", "ReduceSumSquare",
        ], canonical: CanonicalForm(attributeInputs: [AttributeInput("axes", input: 1, since: 18)])) { try $0.reduce() }
        catalog.define(["ReduceSum"], canonical: CanonicalForm(attributeInputs: [AttributeInput("axes", input: 1, since: 13)])) {
            try $0.reduce()
        }
        catalog.define(["ArgMax", "ArgMin"]) { try $0.argReduce() }
        catalog.define(["TopK"], canonical: CanonicalForm(attributeInputs: [AttributeInput("k", input: 1, since: 10, required: true)])) {
            try $0.topK()
        }
    }
}

extension NodeInference {
    /// Reduce* ops: axes from input 1, `keepdims`, `noop_with_empty_axes`.
    mutating func reduce() throws {
        let keep = int("keepdims", 1) != 0
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        var axes: [Int]
        if present(1) {
            guard let given = knownInts(1) else {
                // Axes unknown: with keepdims the rank stays, else nothing is known.
                return set(0, dtype(0), keep ? Array(repeating: .unknown, count: s.count) : nil)
            }
            axes = given
        } else {
            axes = []
        }
        if axes.isEmpty {
            if int("noop_with_empty_axes", 0) != 0 { return set(0, dtype(0), s) }
            axes = Array(s.indices)
        }
        let normalized = Set(try axes.map { try axis($0, rank: s.count) })
        var out: [Dim] = []
        for (j, d) in s.enumerated() {
            if normalized.contains(j) {
                if keep { out.append(.fixed(1)) }
            } else {
                out.append(d)
            }
        }
        set(0, dtype(0), out)
    }

    /// ArgMax and ArgMin.
    mutating func argReduce() throws {
        guard let s = shape(0) else { return set(0, .int64, nil) }
        let a = try axis(int("axis", 0), rank: max(s.count, 1))
        var out = s
        if s.isEmpty { return set(0, .int64, []) }
        if int("keepdims", 1) != 0 { out[a] = .fixed(1) } else { out.remove(at: a) }
        set(0, .int64, out)
    }

    /// TopK: values and int64 indices with `k` along `axis`.
    mutating func topK() throws {
        guard var s = shape(0) else {
            set(0, dtype(0), nil)
            set(1, .int64, nil)
            return
        }
        let a = try axis(int("axis", -1), rank: s.count)
        s[a] = known(1)?.elements.count == 1 ? known(1)!.elements[0] : .unknown
        if let k = s[a].value, let d = shape(0)![a].value, k > d { throw failure("k = \(k) exceeds the axis size \(d)") }
        set(0, dtype(0), s)
        set(1, .int64, s)
    }
}
