import KilnIR

/// RMSNormalization, Hardmax, Clip with run-time or integer bounds, CastLike and CumProd, as `NodePlanner`s.
extension SwiftOps {
    /// RMSNormalization over float32: `x / sqrt(mean(x²) + epsilon) · scale` over the dims from `axis` on.
    static func rmsNormalization(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        for v in ins where v >= 0 { try b.requireFloat(v) }
        let xs = try b.shape(ins[0]), ss = try b.shape(ins[1])
        guard let axis = normalizedAxis(try node.int("axis", -1), rank: xs.count), !xs.isEmpty else { throw b.invalid("axis out of range") }
        guard let joint = Broadcasting.shape(xs, ss), joint == xs else { throw b.invalid("scale \(ss) does not broadcast to \(xs)") }
        let eps = Double(try node.float("epsilon", 1e-5))
        let rows = xs[..<axis].reduce(1, *), cols = xs[axis...].reduce(1, *)
        let padded = [Int](repeating: 1, count: xs.count - ss.count) + ss
        let maps = xs.enumerated().map { a, d in padded[a] == 1 ? [Int](repeating: 0, count: d) : Array(0..<d) }
        let count = xs.reduce(1, *)
        try b.compute([(outs[0], xs, .float32)], from: [ins[0], ins[1]]) { p, o in
            var scale = [Float](repeating: 0, count: count)
            scale.withUnsafeMutableBytes { remap(p[1], $0.baseAddress!, inShape: padded, outShape: xs, maps: maps, width: 4, fill: []) }
            let x = p[0].assumingMemoryBound(to: Float.self), y = o[0].assumingMemoryBound(to: Float.self)
            for r in 0..<rows {
                let base = r * cols
                var sq = 0.0
                for j in 0..<cols { sq += Double(x[base + j]) * Double(x[base + j]) }
                let inv = 1 / (sq / Double(max(cols, 1)) + eps).squareRoot()
                for j in 0..<cols { y[base + j] = Float(Double(x[base + j]) * inv) * scale[base + j] }
            }
        }
    }

    /// Hardmax: 1 at the first maximum along `axis`, 0 elsewhere (float32).
    static func hardmax(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        try b.requireFloat(ins[0])
        let xs = try b.shape(ins[0])
        guard let a = normalizedAxis(try node.int("axis", -1), rank: xs.count), !xs.isEmpty else { throw b.invalid("axis out of range") }
        let outer = xs[..<a].reduce(1, *), d = xs[a], inner = xs[(a + 1)...].reduce(1, *)
        try b.compute([(outs[0], xs, .float32)], from: [ins[0]]) { p, o in
            let x = p[0].assumingMemoryBound(to: Float.self), y = o[0].assumingMemoryBound(to: Float.self)
            y.initialize(repeating: 0, count: outer * d * inner)
            guard d > 0 else { return }
            for q in 0..<outer {
                for i in 0..<inner {
                    var best = 0
                    for k in 1..<d where x[(q * d + k) * inner + i] > x[(q * d + best) * inner + i] { best = k }
                    y[(q * d + best) * inner + i] = 1
                }
            }
        }
    }

    /// Clip whose bounds are not constant scalars or whose type is an integer: min/max known while planning
    /// (graph inputs and computed values are, once a stage has them; see `CPUExecutable.Stage`).
    static func clip(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0]), dtype = try b.dtype(ins[0])
        let lo = ins.count > 1 && ins[1] >= 0 ? try b.requireKnown(ins[1]) : nil
        let hi = ins.count > 2 && ins[2] >= 0 ? try b.requireKnown(ins[2]) : nil
        guard (lo?.count ?? 1) == 1, (hi?.count ?? 1) == 1 else { throw b.invalid("min and max must be scalars") }
        let count = xs.reduce(1, *)
        if dtype == .float32 {
            let l = lo.map { Float($0.asDoubles()[0]) } ?? -.infinity, h = hi.map { Float($0.asDoubles()[0]) } ?? .infinity
            try b.compute([(outs[0], xs, dtype)], from: [ins[0]]) { p, o in
                let x = p[0].assumingMemoryBound(to: Float.self), y = o[0].assumingMemoryBound(to: Float.self)
                for i in 0..<count { y[i] = x[i].isNaN ? x[i] : Swift.min(Swift.max(x[i], l), h) }
            }
        } else {
            let l = lo?.asInt64s()[0] ?? .min, h = hi?.asInt64s()[0] ?? .max
            try b.compute([(outs[0], xs, dtype)], from: [ins[0]]) { p, o in
                for i in 0..<count { Element.store(int: Swift.min(Swift.max(Element.int(p[0], dtype, i), l), h), o[0], dtype, i) }
            }
        }
    }

    /// CastLike: Cast to the element type of input 1.
    static func castLike(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0]), from = try b.dtype(ins[0]), to = try b.dtype(ins[1])
        guard CastOperation.types.contains(from), CastOperation.types.contains(to) else { throw b.unsupported("CastLike from \(from) to \(to)") }
        if from == to {
            try b.defineView(outs[0], of: ins[0], shape: xs)
            return
        }
        let count = xs.reduce(1, *)
        try b.compute([(outs[0], xs, to)], from: [ins[0]]) { p, o in
            for i in 0..<count {
                if from == .float32 || to == .float32 {
                    let v = Element.double(p[0], from, i)
                    if to == .float32 { o[0].storeBytes(of: Float(v), toByteOffset: i * 4, as: Float.self) } else {
                        Element.store(float: Float(v), o[0], to, i)
                    }
                } else {
                    Element.store(int: Element.int(p[0], from, i), o[0], to, i)
                }
            }
        }
    }
}
