/// Ops that select, scatter or scan elements: Gather*, Scatter*, OneHot, NonZero, Compress, Unique, CumSum, ….
extension OpCatalog {
    static func registerIndexing(into catalog: inout OpCatalog) {
        catalog.define(["ScatterElements", "ScatterND", "TensorScatter", "CumSum", "CumProd", "Trilu", "ReverseSequence"],
                       rule: NodeInference.likeFirstInput)
        catalog.define(["Scatter"], canonical: CanonicalForm(replacement: OpID("", "ScatterElements")),
                       rule: NodeInference.likeFirstInput)
        catalog.define(["Gather"]) { try $0.gather() }
        catalog.define(["GatherElements"]) { $0.set(0, $0.dtype(0), $0.shape(1)) }
        catalog.define(["GatherND"]) { $0.gatherND() }
        catalog.define(["OneHot"]) { try $0.oneHot() }
        catalog.define(["NonZero"]) { inference in
            inference.set(0, .int64, [inference.shape(0).map { .fixed($0.count) } ?? .unknown, .unknown])
        }
        catalog.define(["Compress"]) { try $0.compress() }
        catalog.define(["Unique"]) { try $0.unique() }
    }
}

extension NodeInference {
    /// Gather along `axis`: data dims around the indices' shape.
    mutating func gather() throws {
        guard let data = shape(0), let indices = shape(1) else { return set(0, dtype(0), nil) }
        let a = try axis(int("axis", 0), rank: data.count)
        set(0, dtype(0), Array(data[..<a]) + indices + Array(data[(a + 1)...]))
        if a == 0, let k = known(0), k.shape.count == 1, let picks = knownInts(1) {
            var elements: [Dim] = []
            for p in picks {
                let q = p < 0 ? p + k.count : p
                guard q >= 0, q < k.count else { throw failure("index \(p) is out of range for \(k.count) elements") }
                elements.append(k.elements[q])
            }
            setKnown(0, KnownValue(shape: known(1)!.shape, elements: elements))
        }
    }

    /// GatherND with `batch_dims`.
    mutating func gatherND() {
        let b = int("batch_dims", 0)
        guard let data = shape(0), let indices = shape(1), let last = indices.last?.value, b >= 0, last >= 0,
              b <= data.count, last <= data.count - b else { return set(0, dtype(0), nil) }
        set(0, dtype(0), Array(indices.dropLast()) + Array(data[(b + last)...]))
    }

    /// OneHot: the indices' shape with `depth` inserted at `axis`.
    mutating func oneHot() throws {
        guard let s = shape(0) else { return set(0, dtype(2), nil) }
        let a = try axis(int("axis", -1), rank: s.count + 1)
        var out = s
        let depth = constant(1).flatMap { $0.dtype.isFloatingPoint || $0.dtype.isInteger ? $0.asDoubles().first : nil }
            .map { Self.exactDim($0) } ?? .unknown
        out.insert(depth, at: a)
        set(0, dtype(2), out)
    }

    /// Compress: rank 1 without `axis`, else the axis dim becomes unknown.
    mutating func compress() throws {
        guard node.attributes["axis"] != nil else { return set(0, dtype(0), [.unknown]) }
        guard var s = shape(0) else { return set(0, dtype(0), nil) }
        s[try axis(int("axis", 0), rank: s.count)] = .unknown
        set(0, dtype(0), s)
    }

    /// Unique: Y (flattened, or with an unknown axis dim) and int64 vectors.
    mutating func unique() throws {
        if node.attributes["axis"] != nil, var s = shape(0) {
            let a = try axis(int("axis", 0), rank: s.count)
            let n = s[a]
            s[a] = .unknown
            set(0, dtype(0), s)
            set(2, .int64, [n])
        } else {
            set(0, dtype(0), node.attributes["axis"] == nil ? [.unknown] : nil)
            set(2, .int64, shape(0).map { [DimMath.product($0)] } ?? [.unknown])
        }
        set(1, .int64, [.unknown])
        set(3, .int64, [.unknown])
    }
}
