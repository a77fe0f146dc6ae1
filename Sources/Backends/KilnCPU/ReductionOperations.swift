import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reductions, arg-reductions, cumulative sums and top-k, as `NodePlanner`s.
extension SwiftOps {
    /// The axes a Reduce* node reduces over `rank` dims (sorted, unique), or nil for "none" (noop).
    static func reduceAxes(_ b: PlanBuilder, _ node: Node, _ ins: [Int], rank: Int) throws -> [Int]? {
        var axes: [Int]
        if ins.count > 1, ins[1] >= 0 {
            axes = try b.requireKnownInts(ins[1])
        } else {
            axes = try node.ints("axes") ?? []
        }
        if axes.isEmpty {
            if try node.int("noop_with_empty_axes", 0) != 0 { return nil }
            return Array(0..<rank)
        }
        let normalized = try axes.map { a -> Int in
            guard let n = normalizedAxis(a, rank: rank), rank > 0 else { throw b.invalid("axis \(a) is out of range for rank \(rank)") }
            return n
        }
        return Array(Set(normalized)).sorted()
    }

    /// ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceLogSum,
    /// ReduceLogSumExp and ReduceSumSquare over float32 or float64 (accumulated in Double).
    static func reduce(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let x = ins[0], xs = try b.shape(x), dtype = try b.dtype(x)
        guard dtype == .float32 || dtype == .float64 else { throw b.unsupported("\(node.op.name) of \(dtype)") }
        let wide = dtype == .float64
        let keep = try node.int("keepdims", 1) != 0
        guard let axes = try reduceAxes(b, node, ins, rank: xs.count) else {
            try b.defineView(outs[0], of: x, shape: xs)
            return
        }
        let reduced = Set(axes)
        var outShape: [Int] = []
        for (a, d) in xs.enumerated() {
            if reduced.contains(a) { if keep { outShape.append(1) } } else { outShape.append(d) }
        }
        // Each input dim's stride in the output (0 for reduced dims).
        let keptShape = xs.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        let keptStrides = contiguousStrides(keptShape)
        let outStrides = xs.indices.map { reduced.contains($0) ? 0 : keptStrides[$0] }
        let count = xs.reduce(1, *), outCount = outShape.reduce(1, *)
        let n = Double(axes.reduce(1) { $0 * xs[$1] })
        let op = node.op.name
        try b.compute([(outs[0], outShape, dtype)], from: [x]) { ins, o in
            let source = ins[0]
            /// Element `i` of the input, in Double.
            @inline(__always) func src(_ i: Int) -> Double {
                wide ? source.load(fromByteOffset: i &* 8, as: Double.self) : Double(source.load(fromByteOffset: i &* 4, as: Float.self))
            }
            var acc = [Double](repeating: 0, count: outCount)
            var peak = [Double](repeating: -.infinity, count: outCount)
            let initial: Double
            switch op {
            case "ReduceMax": initial = -.infinity
            case "ReduceMin": initial = .infinity
            case "ReduceProd": initial = 1
            default: initial = 0
            }
            for i in 0..<outCount { acc[i] = initial }
            /// Visits every input element with its output index.
            func visit(_ body: (Int, Double) -> Void) {
                let rank = xs.count
                if rank == 0 {
                    if count > 0 { body(0, src(0)) }
                    return
                }
                var index = [Int](repeating: 0, count: rank)
                var out = 0
                for i in 0..<count {
                    body(out, src(i))
                    var a = rank - 1
                    while a >= 0 {
                        index[a] += 1
                        out += outStrides[a]
                        if index[a] < xs[a] { break }
                        out -= outStrides[a] * index[a]
                        index[a] = 0
                        a -= 1
                    }
                }
            }
            switch op {
            case "ReduceSum", "ReduceMean": visit { acc[$0] += $1 }
            case "ReduceMax": visit { acc[$0] = $1.isNaN || acc[$0].isNaN ? .nan : max(acc[$0], $1) }
            case "ReduceMin": visit { acc[$0] = $1.isNaN || acc[$0].isNaN ? .nan : min(acc[$0], $1) }
            case "ReduceProd": visit { acc[$0] *= $1 }
            case "ReduceL1", "ReduceLogSum": visit { acc[$0] += op == "ReduceL1" ? abs($1) : $1 }
            case "ReduceL2", "ReduceSumSquare": visit { acc[$0] += $1 * $1 }
            case "ReduceLogSumExp":
                visit { peak[$0] = max(peak[$0], $1) }
                visit { acc[$0] += peak[$0].isFinite ? exp($1 - peak[$0]) : ($1 == peak[$0] ? 1 : 0) }
            default: break
            }
            for i in 0..<outCount {
                var v = acc[i]
                switch op {
                case "ReduceMean": v /= n
                case "ReduceL2": v = v.squareRoot()
                case "ReduceLogSum": v = log(v)
                case "ReduceLogSumExp": v = peak[i].isFinite ? log(v) + peak[i] : (v > 0 ? peak[i] : log(v))
                default: break
                }
                if wide { o[0].storeBytes(of: v, toByteOffset: i &* 8, as: Double.self) } else {
                    o[0].storeBytes(of: Float(v), toByteOffset: i &* 4, as: Float.self)
                }
            }
        }
    }

    /// ArgMax and ArgMin over float32, int32 or int64: int64 indices.
    static func argReduce(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let x = ins[0], xs = try b.shape(x), dtype = try b.dtype(x)
        guard let a = normalizedAxis(try node.int("axis", 0), rank: xs.count), !xs.isEmpty else { throw b.invalid("axis out of range") }
        let keep = try node.int("keepdims", 1) != 0, last = try node.int("select_last_index", 0) != 0
        let isMax = node.op.name == "ArgMax"
        var outShape = xs
        if keep { outShape[a] = 1 } else { outShape.remove(at: a) }
        let outer = xs[..<a].reduce(1, *), d = xs[a], inner = xs[(a + 1)...].reduce(1, *)
        guard d > 0 else { throw b.invalid("\(node.op.name) over an empty axis") }
        try b.compute([(outs[0], outShape, .int64)], from: [x]) { ins, o in
            let dst = o[0].assumingMemoryBound(to: Int64.self)
            for p in 0..<outer {
                for q in 0..<inner {
                    var best = 0
                    var bestValue = Element.double(ins[0], dtype, p * d * inner + q)
                    for k in 1..<d {
                        let v = Element.double(ins[0], dtype, (p * d + k) * inner + q)
                        let better = isMax ? (last ? v >= bestValue : v > bestValue) : (last ? v <= bestValue : v < bestValue)
                        if better { best = k; bestValue = v }
                    }
                    dst[p * inner + q] = Int64(best)
                }
            }
        }
    }

    /// CumSum (and CumProd) over float32, int32 or int64, with `exclusive` and `reverse`.
    static func cumSum(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let product = node.op.name == "CumProd"
        let x = ins[0], xs = try b.shape(x), dtype = try b.dtype(x)
        let axisValue = try b.requireKnownInts(ins[1])
        guard axisValue.count == 1, let a = normalizedAxis(axisValue[0], rank: xs.count), !xs.isEmpty else { throw b.invalid("axis out of range") }
        let exclusive = try node.int("exclusive", 0) != 0, reverse = try node.int("reverse", 0) != 0
        let outer = xs[..<a].reduce(1, *), d = xs[a], inner = xs[(a + 1)...].reduce(1, *)
        try b.compute([(outs[0], xs, dtype)], from: [x]) { ins, o in
            for p in 0..<outer {
                for q in 0..<inner {
                    var fsum: Double = product ? 1 : 0
                    var isum: Int64 = product ? 1 : 0
                    for step in 0..<d {
                        let k = reverse ? d - 1 - step : step
                        let i = (p * d + k) * inner + q
                        if dtype == .float32 {
                            let v = Element.double(ins[0], dtype, i)
                            if exclusive { Element.store(float: Float(fsum), o[0], dtype, i) }
                            fsum = product ? fsum * v : fsum + v
                            if !exclusive { Element.store(float: Float(fsum), o[0], dtype, i) }
                        } else if dtype == .float64 {
                            let v = ins[0].load(fromByteOffset: i &* 8, as: Double.self)
                            if exclusive { o[0].storeBytes(of: fsum, toByteOffset: i &* 8, as: Double.self) }
                            fsum = product ? fsum * v : fsum + v
                            if !exclusive { o[0].storeBytes(of: fsum, toByteOffset: i &* 8, as: Double.self) }
                        } else {
                            let v = Element.int(ins[0], dtype, i)
                            if exclusive { Element.store(int: isum, o[0], dtype, i) }
                            isum = product ? isum &* v : isum &+ v
                            if !exclusive { Element.store(int: isum, o[0], dtype, i) }
                        }
                    }
                }
            }
        }
    }

    /// TopK: the k largest (or smallest) along an axis, sorted, ties by lower index; int64 indices.
    static func topK(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let x = ins[0], xs = try b.shape(x), dtype = try b.dtype(x)
        let kv = try b.requireKnownInts(ins[1])
        guard kv.count == 1, let a = normalizedAxis(try node.int("axis", -1), rank: xs.count), !xs.isEmpty else { throw b.invalid("bad k or axis") }
        let k = kv[0], largest = try node.int("largest", 1) != 0
        let outer = xs[..<a].reduce(1, *), d = xs[a], inner = xs[(a + 1)...].reduce(1, *)
        guard k >= 0, k <= d else { throw b.invalid("k = \(k) for an axis of \(d)") }
        var outShape = xs
        outShape[a] = k
        let w = try width(b, dtype)
        try b.compute([(outs[0], outShape, dtype), (outs.count > 1 ? outs[1] : -1, outShape, .int64)], from: [x]) { ins, o in
            var order = [Int](repeating: 0, count: d)
            var values = [Double](repeating: 0, count: d)
            for p in 0..<outer {
                for q in 0..<inner {
                    for j in 0..<d {
                        order[j] = j
                        values[j] = Element.double(ins[0], dtype, (p * d + j) * inner + q)
                    }
                    order.sort { i, j in
                        let (u, v) = (values[i], values[j])
                        if u == v || (u.isNaN && v.isNaN) { return i < j }
                        if u.isNaN { return largest }
                        if v.isNaN { return !largest }
                        return largest ? u > v : u < v
                    }
                    for j in 0..<k {
                        let src = (p * d + order[j]) * inner + q, dst = (p * k + j) * inner + q
                        (o[0] + dst * w).copyMemory(from: ins[0] + src * w, byteCount: w)
                        o[1].storeBytes(of: Int64(order[j]), toByteOffset: dst * 8, as: Int64.self)
                    }
                }
            }
        }
    }
}
