import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        let maps = try xs.enumerated().map { a, d in try b.indexTable(d) { padded[a] == 1 ? 0 : $0 } }
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
        if from == to {
            try b.defineView(outs[0], of: ins[0], shape: xs)
            return
        }
        guard CastOperation.types.contains(from), CastOperation.types.contains(to) else {
            try CastOperation.planConversion(b, x: ins[0], output: outs[0], to: to, saturate: try node.int("saturate", 1) != 0)
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

extension SwiftOps {
    /// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (log-softmax over axis 1 first, its result the
    /// optional second output) over float32, with int32/int64 targets, class weights, ignore_index and the
    /// none/sum/mean reductions.
    static func loss(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let softmax = node.op.name == "SoftmaxCrossEntropyLoss"
        try b.requireFloat(ins[0])
        if ins.count > 2, ins[2] >= 0 { try b.requireFloat(ins[2]) }
        let xs = try b.shape(ins[0]), ts = try b.shape(ins[1]), ttype = try b.dtype(ins[1])
        guard xs.count >= 2, ts == [xs[0]] + Array(xs[2...]) else { throw b.invalid("target \(ts) does not fit input \(xs)") }
        guard ttype == .int64 || ttype == .int32 else { throw b.unsupported("targets of type \(ttype)") }
        let hasWeight = ins.count > 2 && ins[2] >= 0
        if hasWeight, try b.shape(ins[2]).reduce(1, *) != xs[1] { throw b.invalid("weight must have \(xs[1]) values") }
        let ignore = try node.ints("ignore_index")?.first
        let reduction = try node.string("reduction", "mean")
        guard ["none", "sum", "mean"].contains(reduction) else { throw b.unsupported("reduction '\(reduction)'") }
        let n = xs[0], c = xs[1], inner = xs[2...].reduce(1, *)
        let outShape = reduction == "none" ? ts : []
        let logOut = softmax && outs.count > 1 ? outs[1] : -1
        let name = node.displayName
        try b.compute([(outs[0], outShape, .float32), (logOut, softmax ? xs : [0], .float32)], from: Array(ins.prefix(3))) { p, o in
            let x = p[0].assumingMemoryBound(to: Float.self)
            var logProb = x
            if softmax {
                let lp = o[1].assumingMemoryBound(to: Float.self)
                for bi in 0..<n {
                    for i in 0..<inner {
                        let base = bi * c * inner + i
                        var peak = -Double.infinity
                        for k in 0..<c { peak = max(peak, Double(x[base + k * inner])) }
                        var total = 0.0
                        for k in 0..<c { total += exp(Double(x[base + k * inner]) - peak) }
                        let shift = peak + log(total)
                        for k in 0..<c { lp[base + k * inner] = Float(Double(x[base + k * inner]) - shift) }
                    }
                }
                logProb = UnsafePointer(lp)
            }
            let weight = hasWeight ? p[2].assumingMemoryBound(to: Float.self) : nil
            let y = o[0].assumingMemoryBound(to: Float.self)
            var sum = 0.0, weights = 0.0
            for bi in 0..<n {
                for d in 0..<inner {
                    let k = bi * inner + d
                    let cls = Int(Element.int(p[1], ttype, k))
                    var loss = 0.0
                    if ignore == nil || cls != ignore! {
                        guard cls >= 0, cls < c else { throw KilnError(.runtime, "\(name): target \(cls) is out of range for \(c) classes") }
                        let w = weight.map { Double($0[cls]) } ?? 1
                        weights += w
                        loss = -Double(logProb[(bi * c + cls) * inner + d]) * w
                    }
                    sum += loss
                    if reduction == "none" { y[k] = Float(loss) }
                }
            }
            if reduction == "sum" { y[0] = Float(sum) } else if reduction == "mean" { y[0] = Float(sum / weights) }
        }
    }
}
