import KilnIR

/// Plans one node of an op implemented in plain Swift: its input ids (-1 for omitted) and output ids.
typealias NodePlanner = @Sendable (PlanBuilder, Node, [Int], [Int]) throws -> Void

/// An operation of one node planned by a `NodePlanner` (Slice, Pad, Reduce…, see `SwiftOps`).
final class NodeOperation: Operation {
    let kind: String
    let label: String
    let node: Node
    let inputs: [Int]
    let outputs: [Int]
    let planner: NodePlanner

    init(node: Node, inputs: [Int], outputs: [Int], planner: @escaping NodePlanner) {
        kind = node.op.name
        label = node.displayName
        self.node = node
        self.inputs = inputs
        self.outputs = outputs
        self.planner = planner
    }

    func plan(_ b: PlanBuilder) throws { try planner(b, node, inputs, outputs) }
}

/// Copies `src` (shape `inShape`, elements of `width` bytes) into `dst` (shape `outShape`): output
/// coordinate i along axis a reads input coordinate `maps[a][i]`, or `fill` where that is -1. Slice, Pad,
/// Tile, Expand, Split and nearest Resize are all this.
func remap(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, inShape: [Int], outShape: [Int], maps: [[Int]],
           width: Int, fill: [UInt8]) {
    let rank = outShape.count
    let total = outShape.reduce(1, *)
    if total == 0 { return }
    if rank == 0 {
        dst.copyMemory(from: src, byteCount: width)
        return
    }
    let inStrides = contiguousStrides(inShape)
    let last = maps[rank - 1], n = outShape[rank - 1]
    let contiguous = !last.isEmpty && last[0] >= 0 && last.enumerated().allSatisfy { $0.element == last[0] + $0.offset }
    let lastStride = inStrides[rank - 1]
    let rowBytes = n * width
    var index = [Int](repeating: 0, count: rank - 1)
    let rows = total / n
    func fillElements(_ p: UnsafeMutableRawPointer, _ count: Int) {
        fill.withUnsafeBytes { f in for i in 0..<count { (p + i * width).copyMemory(from: f.baseAddress!, byteCount: width) } }
    }
    for row in 0..<rows {
        var base = 0
        var valid = true
        for a in 0..<(rank - 1) {
            let m = maps[a][index[a]]
            if m < 0 { valid = false; break }
            base += m * inStrides[a]
        }
        let out = dst + row * rowBytes
        if !valid {
            fillElements(out, n)
        } else if contiguous {
            out.copyMemory(from: src + (base + last[0] * lastStride) * width, byteCount: rowBytes)
        } else {
            switch width {
            case 4:
                for i in 0..<n {
                    let m = last[i]
                    if m < 0 { fillElements(out + i * 4, 1) } else {
                        out.storeBytes(of: src.load(fromByteOffset: (base + m * lastStride) * 4, as: UInt32.self), toByteOffset: i * 4, as: UInt32.self)
                    }
                }
            case 8:
                for i in 0..<n {
                    let m = last[i]
                    if m < 0 { fillElements(out + i * 8, 1) } else {
                        out.storeBytes(of: src.load(fromByteOffset: (base + m * lastStride) * 8, as: UInt64.self), toByteOffset: i * 8, as: UInt64.self)
                    }
                }
            default:
                for i in 0..<n {
                    let m = last[i]
                    if m < 0 { fillElements(out + i * width, 1) } else {
                        (out + i * width).copyMemory(from: src + (base + m * lastStride) * width, byteCount: width)
                    }
                }
            }
        }
        var axis = rank - 2
        while axis >= 0 {
            index[axis] += 1
            if index[axis] < outShape[axis] { break }
            index[axis] = 0
            axis -= 1
        }
    }
}

/// The ops of kiln.cpu written as `NodePlanner`s: indexing, shapes and data movement.
enum SwiftOps {
    /// The element width of `dtype`, or an unsupported error.
    static func width(_ b: PlanBuilder, _ dtype: DType) throws -> Int {
        guard let w = dtype.byteWidth, dtype != .string else { throw b.unsupported("element type \(dtype)") }
        return w
    }

    /// Defines `output` as `x` remapped by `maps` (see `remap`).
    static func planRemap(_ b: PlanBuilder, x: Int, output: Int, outShape: [Int], maps: [[Int]], fill: [UInt8]? = nil) throws {
        let xs = try b.shape(x), dtype = try b.dtype(x), w = try width(b, dtype)
        let fillBytes = fill ?? [UInt8](repeating: 0, count: w)
        if xs == outShape, maps.enumerated().allSatisfy({ a, m in m.elementsEqual(0..<xs[a]) }) {
            try b.defineView(output, of: x, shape: outShape)
            return
        }
        try b.compute([(output, outShape, dtype)], from: [x]) { ins, outs in
            remap(ins[0], outs[0], inShape: xs, outShape: outShape, maps: maps, width: w, fill: fillBytes)
        }
    }

    // MARK: Slice, Split, Pad, Expand, Tile

    static func slice(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 3 else { throw b.invalid("Slice needs data, starts and ends inputs, got \(ins.count)") }
        let xs = try b.shape(ins[0])
        let starts = try b.requireKnownInts(ins[1]), ends = try b.requireKnownInts(ins[2])
        let axes = ins.count > 3 && ins[3] >= 0 ? try b.requireKnownInts(ins[3]) : Array(0..<starts.count)
        let steps = ins.count > 4 && ins[4] >= 0 ? try b.requireKnownInts(ins[4]) : [Int](repeating: 1, count: starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw b.invalid("starts, ends, axes and steps differ in length")
        }
        var maps = try b.identityMaps(xs)
        var outShape = xs
        var seen = Set<Int>()
        for k in 0..<axes.count {
            guard let a = normalizedAxis(axes[k], rank: xs.count), xs.count > 0, seen.insert(a).inserted else {
                throw b.invalid("axis \(axes[k]) is out of range or repeated for \(xs)")
            }
            let d = xs[a], step = steps[k]
            guard step != 0 else { throw b.invalid("a step of 0") }
            var s = starts[k], e = ends[k]
            if s < 0 { s += d }
            if e < 0 { e += d }
            if step > 0 {
                s = min(max(s, 0), d)
                e = min(max(e, 0), d)
            } else {
                s = min(max(s, 0), d - 1)
                e = min(max(e, -1), d - 1)
            }
            // Ceiling divisions written so that a step near ±2^63 (from a constant input) cannot overflow.
            let magnitude = step == .min ? Int.max : abs(step), span = step > 0 ? e - s : s - e
            let count = span > 0 ? (span - 1) / magnitude + 1 : 0
            outShape[a] = count
            maps[a] = try b.indexTable(count) { s + $0 * step }
        }
        try planRemap(b, x: ins[0], output: outs[0], outShape: outShape, maps: maps)
    }

    static func split(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0])
        guard let a = normalizedAxis(try node.int("axis", 0), rank: xs.count), !xs.isEmpty else { throw b.invalid("axis out of range") }
        let d = xs[a], n = outs.count
        var sizes: [Int]
        if ins.count > 1, ins[1] >= 0 {
            sizes = try b.requireKnownInts(ins[1])
        } else if let given = try node.ints("split") {
            sizes = given
        } else {
            let chunk = (d + n - 1) / max(n, 1)
            sizes = (0..<n).map { max(0, min(chunk, d - $0 * chunk)) }
        }
        guard sizes.count == n, sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == d else {
            throw b.invalid("split sizes \(sizes) do not fit axis of \(d) into \(n) outputs")
        }
        var start = 0
        for (k, out) in outs.enumerated() {
            var shape = xs
            shape[a] = sizes[k]
            var maps = try b.identityMaps(xs)
            let first = start
            maps[a] = try b.indexTable(sizes[k]) { first + $0 }
            start += sizes[k]
            if out >= 0 { try planRemap(b, x: ins[0], output: out, outShape: shape, maps: maps) }
        }
    }

    /// The bytes of a scalar `value` in element type `dtype`.
    static func bytes(of value: Tensor?, as dtype: DType) -> [UInt8] {
        let w = dtype.byteWidth ?? 1
        guard let value, value.count >= 1 else { return [UInt8](repeating: 0, count: w) }
        let t = dtype == .float32 ? Tensor(dtype: dtype, shape: [], doubles: [value.asDoubles()[0]])
                                  : Tensor(dtype: dtype, shape: [], int64s: [value.asInt64s()[0]])
        return Array(t.rawBytes!)
    }

    static func pad(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0]), dtype = try b.dtype(ins[0]), r = xs.count
        let pads = try b.requireKnownInts(ins[1])
        let value = ins.count > 2 && ins[2] >= 0 ? try b.requireKnown(ins[2]) : nil
        let axes = ins.count > 3 && ins[3] >= 0 ? try b.requireKnownInts(ins[3]).map { a -> Int in
            guard let n = normalizedAxis(a, rank: r) else { return -1 }
            return n
        } : Array(0..<r)
        guard pads.count == 2 * axes.count, axes.allSatisfy({ $0 >= 0 }) else { throw b.invalid("pads \(pads) do not fit axes \(axes) of \(xs)") }
        let mode = try node.string("mode", "constant")
        var before = [Int](repeating: 0, count: r), after = before
        for (k, a) in axes.enumerated() {
            before[a] = pads[k]
            after[a] = pads[k + axes.count]
        }
        var outShape = xs, maps: [[Int]] = []
        for a in 0..<r {
            let d = xs[a]
            outShape[a] = d + before[a] + after[a]
            guard outShape[a] >= 0 else { throw b.invalid("pads \(pads) crop more than \(xs)") }
            if d == 0 && outShape[a] > 0 && mode != "constant" { throw b.invalid("\(mode) padding of an empty axis") }
            maps.append(try b.indexTable(outShape[a]) { o in
                let c = o - before[a]
                if c >= 0 && c < d { return c }
                switch mode {
                case "edge": return min(max(c, 0), d - 1)
                case "wrap": return ((c % d) + d) % d
                case "reflect":
                    if d == 1 { return 0 }
                    let period = 2 * (d - 1)
                    let m = ((c % period) + period) % period
                    return m >= d ? period - m : m
                default: return -1
                }
            })
        }
        guard ["constant", "edge", "wrap", "reflect"].contains(mode) else { throw b.unsupported("Pad mode '\(mode)'") }
        try planRemap(b, x: ins[0], output: outs[0], outShape: outShape, maps: maps, fill: bytes(of: value, as: dtype))
    }

    static func expand(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0])
        let target = try b.requireKnownInts(ins[1])
        guard let out = Broadcasting.shape(xs, target) else { throw b.invalid("\(xs) does not expand to \(target)") }
        let padded = [Int](repeating: 1, count: out.count - xs.count) + xs
        let maps = try out.enumerated().map { a, d in try b.indexTable(d) { padded[a] == 1 ? 0 : $0 } }
        try planExpanded(b, x: ins[0], padded: padded, output: outs[0], outShape: out, maps: maps)
    }

    static func tile(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let xs = try b.shape(ins[0])
        let repeats = try b.requireKnownInts(ins[1])
        guard repeats.count == xs.count, repeats.allSatisfy({ $0 >= 0 }) else { throw b.invalid("repeats \(repeats) do not fit \(xs)") }
        let out = try zip(xs, repeats).map { try b.checkedBytes([$0, $1], width: 1, name: b.name(outs[0])) }
        let maps = try out.enumerated().map { a, d in try b.indexTable(d) { $0 % max(xs[a], 1) } }
        try planExpanded(b, x: ins[0], padded: xs, output: outs[0], outShape: out, maps: maps)
    }

    /// `remap` of `x` seen with shape `padded` (its shape with leading 1s).
    static func planExpanded(_ b: PlanBuilder, x: Int, padded: [Int], output: Int, outShape: [Int], maps: [[Int]]) throws {
        let dtype = try b.dtype(x), w = try width(b, dtype)
        if padded == outShape {
            try b.defineView(output, of: x, shape: outShape)
            return
        }
        try b.compute([(output, outShape, dtype)], from: [x]) { ins, outs in
            remap(ins[0], outs[0], inShape: padded, outShape: outShape, maps: maps, width: w, fill: [])
        }
    }

    // MARK: values from shapes

    static func constantOfShape(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let shape = try b.requireKnownInts(ins[0])
        guard shape.allSatisfy({ $0 >= 0 }) else { throw b.invalid("negative dims \(shape)") }
        let value: Tensor
        if case .tensor(let t)? = node.attributes["value"] { value = t } else { value = Tensor(scalar: Float(0)) }
        let dtype = value.dtype, w = try width(b, dtype)
        guard value.count == 1 else { throw b.invalid("value must hold one element") }
        let element = Array(value.rawBytes!)
        try b.compute([(outs[0], shape, dtype)], from: []) { _, o in
            let n = shape.reduce(1, *)
            element.withUnsafeBytes { e in for i in 0..<n { (o[0] + i * w).copyMemory(from: e.baseAddress!, byteCount: w) } }
        }
    }

    static func range(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let dtype = try b.dtype(ins[0])
        let s = try b.requireKnown(ins[0]), l = try b.requireKnown(ins[1]), d = try b.requireKnown(ins[2])
        guard s.count == 1, l.count == 1, d.count == 1 else { throw b.invalid("start, limit and delta must be scalars") }
        guard l.dtype == dtype, d.dtype == dtype else { throw b.invalid("start, limit and delta must have one type, not \(dtype), \(l.dtype), \(d.dtype)") }
        let count: Int
        if dtype == .float32 {
            let (start, limit, delta) = (s.elements(as: Float.self)[0], l.elements(as: Float.self)[0], d.elements(as: Float.self)[0])
            guard delta != 0, delta.isFinite, start.isFinite, limit.isFinite else { throw b.invalid("start \(start), limit \(limit), delta \(delta)") }
            let steps = (Double(limit - start) / Double(delta)).rounded(.up)
            // Bounded before the conversion: a count past any buffer is refused by the size check below.
            count = steps.isFinite ? Int(min(max(steps, 0), Double(1 << 40))) : 1 << 40
            _ = try b.checkedBytes([count], width: 4, name: b.name(outs[0]))
            try b.compute([(outs[0], [count], dtype)], from: []) { _, o in
                for i in 0..<count { o[0].storeBytes(of: start + Float(i) * delta, toByteOffset: i * 4, as: Float.self) }
            }
        } else {
            let (start, limit, delta) = (s.asInt64s()[0], l.asInt64s()[0], d.asInt64s()[0])
            guard delta != 0 else { throw b.invalid("delta 0") }
            let (span, overflow) = limit.subtractingReportingOverflow(start)
            guard !overflow, !(delta == -1 && span == .min) else { throw b.invalid("limit \(limit) - start \(start) overflows") }
            count = max(Int(span / delta) + (span % delta != 0 && (span > 0) == (delta > 0) ? 1 : 0), 0)
            _ = try b.checkedBytes([count], width: dtype.byteWidth ?? 8, name: b.name(outs[0]))
            try b.compute([(outs[0], [count], dtype)], from: []) { _, o in
                for i in 0..<count { Element.store(int: start + Int64(i) * delta, o[0], dtype, i) }
            }
        }
    }

    static func size(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        b.defineKnown(outs[0], Tensor(scalar: Int64(try b.shape(ins[0]).reduce(1, *))))
    }

    /// NonZero: its output's shape is the count of non-zero elements, so its input must be known while
    /// planning (the executable runs what comes before first; see `PlanNeedsValue`).
    static func nonZero(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        let x = try b.requireKnown(ins[0])
        let xs = x.shape, values = x.asDoubles()
        let strides = contiguousStrides(xs)
        let hits = values.indices.filter { values[$0] != 0 }
        var result = [Int64](repeating: 0, count: xs.count * hits.count)
        for (j, flat) in hits.enumerated() {
            for a in 0..<xs.count { result[a * hits.count + j] = Int64((flat / strides[a]) % max(xs[a], 1)) }
        }
        b.defineKnown(outs[0], Tensor(shape: [xs.count, hits.count], result))
    }
}
