import KilnIR

/// GatherElements, GatherND, ScatterElements, ScatterND, Trilu, DepthToSpace, SpaceToDepth and
/// InstanceNormalization, as `NodePlanner`s.
extension SwiftOps {
    /// Index `i` of an int32/int64 index tensor, made non-negative against `d`; throws when out of range.
    @inline(__always)
    static func index(_ p: UnsafeRawPointer, _ t: DType, _ i: Int, _ d: Int, _ op: String) throws -> Int {
        var j = Int(Element.int(p, t, i))
        if j < 0 { j += d }
        guard j >= 0, j < d else { throw KilnError(.runtime, "\(op): index \(j) is out of range for a dim of \(d)") }
        return j
    }

    static func gatherElements(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let ds = try b.shape(ins[0]), dtype = try b.dtype(ins[0]), ishape = try b.shape(ins[1]), itype = try b.dtype(ins[1])
        guard let a = normalizedAxis(try node.int("axis", 0), rank: ds.count), ds.count == ishape.count, !ds.isEmpty else {
            throw b.invalid("axis or ranks do not fit \(ds), \(ishape)")
        }
        let w = try width(b, dtype)
        let dStrides = contiguousStrides(ds)
        let count = ishape.reduce(1, *), name = node.displayName
        try b.compute([(outs[0], ishape, dtype)], from: [ins[0], ins[1]]) { p, o in
            var index = [Int](repeating: 0, count: ishape.count)
            for i in 0..<count {
                var src = 0
                for k in 0..<ishape.count {
                    src += (k == a ? try SwiftOps.index(p[1], itype, i, ds[a], name) : index[k]) * dStrides[k]
                }
                (o[0] + i * w).copyMemory(from: p[0] + src * w, byteCount: w)
                var k = ishape.count - 1
                while k >= 0 {
                    index[k] += 1
                    if index[k] < ishape[k] { break }
                    index[k] = 0
                    k -= 1
                }
            }
        }
    }

    static func scatterElements(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let ds = try b.shape(ins[0]), dtype = try b.dtype(ins[0]), ishape = try b.shape(ins[1]), itype = try b.dtype(ins[1])
        guard let a = normalizedAxis(try node.int("axis", 0), rank: ds.count), ds.count == ishape.count, !ds.isEmpty,
              try b.shape(ins[2]) == ishape else { throw b.invalid("shapes do not fit") }
        let reduction = try node.string("reduction", "none")
        let w = try width(b, dtype)
        let dStrides = contiguousStrides(ds)
        let count = ishape.reduce(1, *), total = ds.reduce(1, *), name = node.displayName
        try b.compute([(outs[0], ds, dtype)], from: [ins[0], ins[1], ins[2]]) { p, o in
            o[0].copyMemory(from: p[0], byteCount: total * w)
            var index = [Int](repeating: 0, count: ishape.count)
            for i in 0..<count {
                var dst = 0
                for k in 0..<ishape.count {
                    dst += (k == a ? try SwiftOps.index(p[1], itype, i, ds[a], name) : index[k]) * dStrides[k]
                }
                try SwiftOps.combine(o[0], dst, p[2], i, dtype, w, reduction)
                var k = ishape.count - 1
                while k >= 0 {
                    index[k] += 1
                    if index[k] < ishape[k] { break }
                    index[k] = 0
                    k -= 1
                }
            }
        }
    }

    /// Writes update element `u` of `updates` into element `d` of `out` with `reduction`.
    @inline(__always)
    static func combine(_ out: UnsafeMutableRawPointer, _ d: Int, _ updates: UnsafeRawPointer, _ u: Int, _ dtype: DType, _ w: Int,
                        _ reduction: String) throws {
        if reduction == "none" {
            (out + d * w).copyMemory(from: updates + u * w, byteCount: w)
            return
        }
        if dtype == .float32 {
            let x = Element.float(UnsafeRawPointer(out), dtype, d), y = Element.float(updates, dtype, u)
            let r: Float
            switch reduction {
            case "add": r = x + y
            case "mul": r = x * y
            case "max": r = max(x, y)
            case "min": r = min(x, y)
            default: throw KilnError(.unsupported, "reduction '\(reduction)'")
            }
            Element.store(float: r, out, dtype, d)
        } else {
            let x = Element.int(UnsafeRawPointer(out), dtype, d), y = Element.int(updates, dtype, u)
            let r: Int64
            switch reduction {
            case "add": r = x &+ y
            case "mul": r = x &* y
            case "max": r = max(x, y)
            case "min": r = min(x, y)
            default: throw KilnError(.unsupported, "reduction '\(reduction)'")
            }
            Element.store(int: r, out, dtype, d)
        }
    }

    static func scatterND(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let ds = try b.shape(ins[0]), dtype = try b.dtype(ins[0]), ishape = try b.shape(ins[1]), itype = try b.dtype(ins[1])
        guard let q = ishape.last, q <= ds.count, !ishape.isEmpty else { throw b.invalid("indices \(ishape) do not fit \(ds)") }
        let reduction = try node.string("reduction", "none")
        let w = try width(b, dtype)
        let slice = ds[q...].reduce(1, *), tuples = ishape.dropLast().reduce(1, *)
        let dStrides = contiguousStrides(ds), total = ds.reduce(1, *), name = node.displayName
        guard try b.shape(ins[2]).reduce(1, *) == tuples * slice else { throw b.invalid("updates do not fit") }
        try b.compute([(outs[0], ds, dtype)], from: [ins[0], ins[1], ins[2]]) { p, o in
            o[0].copyMemory(from: p[0], byteCount: total * w)
            for t in 0..<tuples {
                var base = 0
                for k in 0..<q { base += try SwiftOps.index(p[1], itype, t * q + k, ds[k], name) * dStrides[k] }
                for e in 0..<slice { try SwiftOps.combine(o[0], base + e, p[2], t * slice + e, dtype, w, reduction) }
            }
        }
    }

    static func gatherND(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let ds = try b.shape(ins[0]), dtype = try b.dtype(ins[0]), ishape = try b.shape(ins[1]), itype = try b.dtype(ins[1])
        let batch = try node.int("batch_dims", 0)
        guard let q = ishape.last, !ishape.isEmpty, batch >= 0, batch + q <= ds.count, batch < ishape.count,
              Array(ds[..<batch]) == Array(ishape[..<batch]) else { throw b.invalid("indices \(ishape) do not fit \(ds)") }
        let w = try width(b, dtype)
        let outShape = Array(ishape.dropLast()) + Array(ds[(batch + q)...])
        let slice = ds[(batch + q)...].reduce(1, *)
        let batches = ds[..<batch].reduce(1, *), perBatch = ishape[batch..<(ishape.count - 1)].reduce(1, *)
        let batchSize = ds[batch...].reduce(1, *)
        let dStrides = contiguousStrides(ds), name = node.displayName
        try b.compute([(outs[0], outShape, dtype)], from: [ins[0], ins[1]]) { p, o in
            for bi in 0..<batches {
                for t in 0..<perBatch {
                    let tuple = bi * perBatch + t
                    var base = bi * batchSize
                    for k in 0..<q { base += try SwiftOps.index(p[1], itype, tuple * q + k, ds[batch + k], name) * dStrides[batch + k] }
                    (o[0] + tuple * slice * w).copyMemory(from: p[0] + base * w, byteCount: slice * w)
                }
            }
        }
    }

    static func trilu(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0]), dtype = try b.dtype(ins[0])
        guard xs.count >= 2 else { throw b.invalid("Trilu needs rank ≥ 2") }
        let k = ins.count > 1 && ins[1] >= 0 ? try b.requireKnownInts(ins[1]).first ?? 0 : 0
        let upper = try node.int("upper", 1) != 0
        let w = try width(b, dtype)
        let (rows, cols) = (xs[xs.count - 2], xs[xs.count - 1]), mats = xs.dropLast(2).reduce(1, *)
        try b.compute([(outs[0], xs, dtype)], from: [ins[0]]) { p, o in
            for m in 0..<mats {
                for i in 0..<rows {
                    for j in 0..<cols {
                        let e = (m * rows + i) * cols + j
                        let keep = upper ? j - i >= k : j - i <= k
                        if keep { (o[0] + e * w).copyMemory(from: p[0] + e * w, byteCount: w) } else {
                            (o[0] + e * w).initializeMemory(as: UInt8.self, repeating: 0, count: w)
                        }
                    }
                }
            }
        }
    }

    /// DepthToSpace (DCR or CRD) and SpaceToDepth: a reshape, a transpose and a reshape.
    static func depthSpace(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0]), dtype = try b.dtype(ins[0]), w = try width(b, dtype)
        let s = try node.int("blocksize", 0)
        guard xs.count == 4, s > 0 else { throw b.invalid("needs a 4-D input and a positive blocksize") }
        let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3])
        // Products of the blocksize (an attribute) and dims, overflow-checked (checkedBytes throws past 8 GiB).
        let what = b.name(outs[0])
        let area = try b.checkedBytes([s, s], width: 1, name: what)
        let viewShape: [Int], perm: [Int], outShape: [Int]
        if node.op.name == "DepthToSpace" {
            guard c % area == 0 else { throw b.invalid("channels \(c) not divisible by blocksize² \(area)") }
            outShape = [n, c / area, try b.checkedBytes([h, s], width: 1, name: what), try b.checkedBytes([wd, s], width: 1, name: what)]
            if try node.string("mode", "DCR") == "CRD" {
                viewShape = [n, c / (s * s), s, s, h, wd]
                perm = [0, 1, 4, 2, 5, 3]
            } else {
                viewShape = [n, s, s, c / (s * s), h, wd]
                perm = [0, 3, 4, 1, 5, 2]
            }
        } else {
            guard h % s == 0, wd % s == 0 else { throw b.invalid("spatial dims not divisible by blocksize") }
            outShape = [n, try b.checkedBytes([c, area], width: 1, name: what), h / s, wd / s]
            viewShape = [n, c, h / s, s, wd / s, s]
            perm = [0, 3, 5, 1, 2, 4]
        }
        try b.compute([(outs[0], outShape, dtype)], from: [ins[0]]) { p, o in
            permute(p[0], o[0], shape: viewShape, perm: perm, width: w)
        }
    }

    static func instanceNormalization(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0])
        for v in ins { try b.requireFloat(v) }
        guard xs.count >= 2 else { throw b.invalid("needs rank ≥ 2") }
        let eps = Double(try node.float("epsilon", 1e-5))
        let (n, c) = (xs[0], xs[1]), size = xs[2...].reduce(1, *)
        guard try b.shape(ins[1]).reduce(1, *) == c, try b.shape(ins[2]).reduce(1, *) == c else { throw b.invalid("scale/bias must have C elements") }
        try b.compute([(outs[0], xs, .float32)], from: ins) { p, o in
            let x = p[0].assumingMemoryBound(to: Float.self), scale = p[1].assumingMemoryBound(to: Float.self)
            let bias = p[2].assumingMemoryBound(to: Float.self), y = o[0].assumingMemoryBound(to: Float.self)
            for i in 0..<(n * c) {
                let base = i * size
                var mean = 0.0
                for j in 0..<size { mean += Double(x[base + j]) }
                mean /= Double(max(size, 1))
                var variance = 0.0
                for j in 0..<size { let d = Double(x[base + j]) - mean; variance += d * d }
                variance /= Double(max(size, 1))
                let k = Float(1 / (variance + eps).squareRoot()) * scale[i % c], m = Float(mean), bb = bias[i % c]
                for j in 0..<size { y[base + j] = (x[base + j] - m) * k + bb }
            }
        }
    }
}

extension SwiftOps {
    /// Dropout at inference: the input itself, and a mask of ones when asked for.
    static func dropout(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0])
        try b.defineView(outs[0], of: ins[0], shape: xs)
        if outs.count > 1, outs[1] >= 0 {
            try b.compute([(outs[1], xs, .bool)], from: []) { _, o in
                o[0].initializeMemory(as: UInt8.self, repeating: 1, count: xs.reduce(1, *))
            }
        }
    }

    /// The operand subscripts and output subscript of an Einsum equation without ellipses, or nil.
    static func einsumTerms(_ equation: String, operands: Int) -> (inputs: [[Character]], output: [Character])? {
        let text = equation.filter { $0 != " " }
        if text.contains(".") { return nil }
        var sides = [text]
        if let arrow = text.firstRange(of: "->") { sides = [String(text[..<arrow.lowerBound]), String(text[arrow.upperBound...])] }
        guard !sides.last!.contains("-"), !sides.last!.contains(">") else { return nil }
        let inputs = sides[0].split(separator: ",", omittingEmptySubsequences: false).map { Array($0) }
        guard inputs.count == operands, inputs.allSatisfy({ $0.allSatisfy(\.isLetter) }) else { return nil }
        if sides.count == 2 {
            let out = Array(sides[1])
            guard out.allSatisfy(\.isLetter), Set(out).count == out.count else { return nil }
            return (inputs, out)
        }
        var counts: [Character: Int] = [:]
        for c in inputs.joined() { counts[c, default: 0] += 1 }
        return (inputs, counts.filter { $0.value == 1 }.keys.sorted())
    }

    /// Einsum over float32 without ellipses: a sum over every combination of the letters (clear, not fast).
    static func einsum(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        // float32 or float64 operands, all of one type (the sums run in Double either way).
        let dtype = try ins.first.map { try b.dtype($0) } ?? .float32
        for v in ins {
            let t = try b.dtype(v)
            guard t == dtype, t == .float32 || t == .float64 else { throw b.unsupported("Einsum over \(t) (float32 or float64, one type)") }
        }
        let wide = dtype == .float64
        let shapes = try ins.map { try b.shape($0) }
        guard let (terms, output) = einsumTerms(try node.string("equation", ""), operands: ins.count) else {
            throw b.unsupported("Einsum equation '\((try? node.string("equation", "")) ?? "")' (ellipses are not supported)")
        }
        var size: [Character: Int] = [:]
        for (t, s) in zip(terms, shapes) {
            guard t.count == s.count else { throw b.invalid("subscripts \(String(t)) do not fit \(s)") }
            for (c, d) in zip(t, s) {
                if let e = size[c], e != d { throw b.invalid("letter \(c) is \(e) and \(d)") }
                size[c] = d
            }
        }
        guard output.allSatisfy({ size[$0] != nil }) else { throw b.invalid("output letters not in the inputs") }
        let summed = size.keys.filter { !output.contains($0) }.sorted()
        let letters = output + summed
        let dims = letters.map { size[$0]! }
        let outShape = output.map { size[$0]! }
        let outCount = outShape.reduce(1, *), sumCount = summed.map { size[$0]! }.reduce(1, *)
        // Each operand's stride per letter.
        let strides: [[Int]] = zip(terms, shapes).map { t, s in
            let st = contiguousStrides(s)
            return letters.map { c in t.indices.filter { t[$0] == c }.reduce(0) { $0 + st[$1] } }
        }
        let m = ins.count
        try b.compute([(outs[0], outShape, dtype)], from: ins) { p, o in
            /// Element `i` of operand `k`, in Double.
            @inline(__always) func element(_ k: Int, _ i: Int) -> Double {
                wide ? p[k].load(fromByteOffset: i &* 8, as: Double.self) : Double(p[k].load(fromByteOffset: i &* 4, as: Float.self))
            }
            var index = [Int](repeating: 0, count: letters.count)
            for out in 0..<outCount {
                var acc = 0.0
                for _ in 0..<sumCount {
                    var prod = 1.0
                    for k in 0..<m {
                        var off = 0
                        for (l, i) in index.enumerated() { off += i * strides[k][l] }
                        prod *= element(k, off)
                    }
                    acc += prod
                    var l = letters.count - 1
                    while l >= output.count {
                        index[l] += 1
                        if index[l] < dims[l] { break }
                        index[l] = 0
                        l -= 1
                    }
                }
                if wide { o[0].storeBytes(of: acc, toByteOffset: out &* 8, as: Double.self) } else {
                    o[0].storeBytes(of: Float(acc), toByteOffset: out &* 4, as: Float.self)
                }
                var l = output.count - 1
                while l >= 0 {
                    index[l] += 1
                    if index[l] < dims[l] { break }
                    index[l] = 0
                    l -= 1
                }
            }
        }
    }
}

extension SwiftOps {
    /// LpNormalization (p = 1 or 2) along an axis, float32.
    static func lpNormalization(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        try b.requireFloat(ins[0])
        let xs = try b.shape(ins[0])
        guard let a = normalizedAxis(try node.int("axis", -1), rank: xs.count), !xs.isEmpty else { throw b.invalid("axis out of range") }
        let p = try node.int("p", 2)
        guard p == 1 || p == 2 else { throw b.unsupported("p = \(p) (1 and 2 are supported)") }
        let outer = xs[..<a].reduce(1, *), d = xs[a], inner = xs[(a + 1)...].reduce(1, *)
        try b.compute([(outs[0], xs, .float32)], from: [ins[0]]) { ptr, o in
            let x = ptr[0].assumingMemoryBound(to: Float.self), y = o[0].assumingMemoryBound(to: Float.self)
            for q in 0..<outer {
                for i in 0..<inner {
                    var norm = 0.0
                    for k in 0..<d {
                        let v = Double(x[(q * d + k) * inner + i])
                        norm += p == 1 ? abs(v) : v * v
                    }
                    if p == 2 { norm = norm.squareRoot() }
                    // An all-zero slice stays zero (as the ONNX reference does), rather than 0/0.
                    for k in 0..<d { y[(q * d + k) * inner + i] = norm == 0 ? 0 : Float(Double(x[(q * d + k) * inner + i]) / norm) }
                }
            }
        }
    }

    /// OneHot: `values[1]` where an index (made non-negative against depth) matches, `values[0]` elsewhere.
    static func oneHot(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let ishape = try b.shape(ins[0]), itype = try b.dtype(ins[0])
        let depthTensor = try b.requireKnown(ins[1])
        guard depthTensor.count == 1 else { throw b.invalid("depth must hold one value") }
        let depth = Int(depthTensor.asDoubles()[0].rounded(.towardZero))
        let vshape = try b.shape(ins[2]), vtype = try b.dtype(ins[2]), w = try width(b, vtype)
        guard vshape.reduce(1, *) == 2, depth >= 0 else { throw b.invalid("values must hold two elements and depth be non-negative") }
        let rank = ishape.count + 1
        guard let a = normalizedAxis(try node.int("axis", -1), rank: rank) else { throw b.invalid("axis out of range") }
        var outShape = ishape
        outShape.insert(depth, at: a)
        let outer = ishape[..<a].reduce(1, *), inner = ishape[a...].reduce(1, *)
        try b.compute([(outs[0], outShape, vtype)], from: [ins[0], ins[2]]) { p, o in
            for q in 0..<outer {
                for i in 0..<inner {
                    var idx = Int(Element.int(p[0], itype, q * inner + i))
                    if idx < 0 { idx += depth }
                    for k in 0..<depth {
                        let at = (q * depth + k) * inner + i
                        (o[0] + at * w).copyMemory(from: p[1] + (k == idx ? w : 0), byteCount: w)
                    }
                }
            }
        }
    }

    /// EyeLike: ones on the diagonal shifted by `k`, of the input's 2-D shape, in `dtype` (or the input's type).
    static func eyeLike(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0])
        var dtype = try b.dtype(ins[0])
        if let code = try node.ints("dtype")?.first {
            guard let t = DType(onnxCode: code) else { throw b.invalid("unknown dtype \(code)") }
            dtype = t
        }
        guard xs.count == 2, Support.elementTypes.contains(dtype) else { throw b.unsupported("EyeLike of \(xs) in \(dtype)") }
        let k = try node.int("k", 0)
        try b.compute([(outs[0], xs, dtype)], from: []) { _, o in
            for i in 0..<xs[0] { for j in 0..<xs[1] { Element.store(int: j - i == k ? 1 : 0, o[0], dtype, i * xs[1] + j) } }
        }
    }

    /// Compress: the slices along `axis` (of the flattened input without one) where the condition holds.
    static func compress(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        var xs = try b.shape(ins[0])
        let condition = try b.requireKnown(ins[1]).asInt64s()
        var axis = 0
        if let given = try node.ints("axis")?.first {
            guard let a = normalizedAxis(given, rank: xs.count), !xs.isEmpty else { throw b.invalid("axis out of range") }
            axis = a
        } else {
            xs = [xs.reduce(1, *)]
        }
        guard condition.count <= xs[axis] else { throw b.invalid("condition is longer than the axis") }
        let picked = condition.indices.filter { condition[$0] != 0 }
        var outShape = xs
        outShape[axis] = picked.count
        var maps = try b.identityMaps(xs)
        maps[axis] = try b.indexTable(picked.count) { picked[$0] }
        let dtype = try b.dtype(ins[0]), w = try width(b, dtype)
        try b.compute([(outs[0], outShape, dtype)], from: [ins[0]]) { p, o in
            remap(p[0], o[0], inShape: xs, outShape: outShape, maps: maps, width: w, fill: [])
        }
    }
}
