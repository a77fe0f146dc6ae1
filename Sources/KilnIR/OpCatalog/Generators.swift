/// Ops that generate values from attributes or shapes alone: EyeLike, Random*, Multinomial, Range, window functions.
extension OpCatalog {
    static func registerGenerators(into catalog: inout OpCatalog) {
        catalog.define(["EyeLike"]) { $0.set(0, $0.dtypeAttribute("dtype", $0.dtype(0)), $0.shape(0)) }
        catalog.define(["RandomNormal", "RandomUniform"]) { inference in
            inference.set(0, inference.dtypeAttribute("dtype", .float32), inference.ints("shape")?.map { .fixed($0) })
        }
        catalog.define(["RandomNormalLike", "RandomUniformLike", "Bernoulli"]) { inference in
            inference.set(0, inference.dtypeAttribute("dtype", inference.dtype(0)), inference.shape(0))
        }
        catalog.define(["Multinomial"]) { inference in
            let batch = inference.shape(0).flatMap { $0.count == 2 ? $0[0] : nil } ?? .unknown
            inference.set(0, inference.dtypeAttribute("dtype", .int32), [batch, .fixed(inference.int("sample_size", 1))])
        }
        catalog.define(["Range"]) { $0.range() }
        catalog.define(["HannWindow", "HammingWindow", "BlackmanWindow"]) { inference in
            let size = inference.known(0)?.elements.first ?? .unknown
            inference.set(0, inference.dtypeAttribute("output_datatype", .float32), [size])
        }
        // AffineGrid: [N, spatial..., r] from the known size [N, C, spatial...] (r = 2 or 3 spatial dims).
        catalog.define(["AffineGrid"]) { inference in
            var shape: [Dim]? = nil
            if let size = inference.known(1)?.elements, size.count == 4 || size.count == 5 {
                shape = [size[0]] + size[2...] + [.fixed(size.count - 2)]
            }
            inference.set(0, inference.dtype(0), shape)
        }
    }
}

extension NodeInference {
    /// Range from known (or constant) start, limit and delta.
    mutating func range() {
        let dtype = dtype(0)
        func scalar(_ i: Int) -> Double? {
            if let c = constant(i), c.count == 1, c.dtype.isFloatingPoint || c.dtype.isInteger { return c.asDoubles()[0] }
            if let k = knownInts(i), k.count == 1 { return Double(k[0]) }
            return nil
        }
        guard let start = scalar(0), let limit = scalar(1), let delta = scalar(2), delta != 0 else {
            return set(0, dtype, [.unknown])
        }
        guard case .fixed(let count) = Self.exactDim(((limit - start) / delta).rounded(.up)) else {
            return set(0, dtype, [.unknown])
        }
        let n = max(count, 0)
        set(0, dtype, [.fixed(n)])
        if dtype?.isInteger == true, n <= KnownValue.maxCount, abs(start) < 1e15, abs(delta) < 1e12 {
            setKnown(0, KnownValue(shape: [n], elements: (0..<n).map { .fixed(Int(start) + $0 * Int(delta)) }))
        }
    }
}
