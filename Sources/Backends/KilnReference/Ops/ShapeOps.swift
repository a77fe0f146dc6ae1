import KilnIR

/// Ops that create tensors or move elements without computing on them: Shape, Size, Reshape, Concat,
/// Transpose, (Un)Squeeze, Slice, Constant(OfShape), Expand, Flatten, Identity, Split, Tile, Pad, Range,
/// Trilu, DepthToSpace, SpaceToDepth, EyeLike, CenterCropPad, ReverseSequence and Dropout.
///
/// Most kernels work out, for every output element, the flat index of the input element it copies
/// (`-1` for "the fill value"), then copy with `take`, which works for every element type, strings included.
enum ShapeOps {
    /// Adds this family's kernels to `table`.
    static func register(into table: inout KernelTable) {
        table.add("Shape") { ctx in [.tensor(try shape(ctx))] }
        table.add("Size") { ctx in [.tensor(Tensor(scalar: Int64(try ctx.tensor(0).count)))] }
        table.add("Reshape") { ctx in [.tensor(try reshape(ctx))] }
        table.add("Concat") { ctx in [.tensor(try concat(ctx))] }
        table.add("Transpose") { ctx in [.tensor(try transpose(ctx))] }
        table.add("Unsqueeze") { ctx in [.tensor(try unsqueeze(ctx))] }
        table.add("Squeeze") { ctx in [.tensor(try squeeze(ctx))] }
        table.add("Slice") { ctx in [.tensor(try slice(ctx))] }
        table.add("ConstantOfShape") { ctx in [.tensor(try constantOfShape(ctx))] }
        table.add("Constant") { ctx in [.tensor(try constant(ctx))] }
        table.add("Expand") { ctx in [.tensor(try expand(ctx))] }
        table.add("Flatten") { ctx in [.tensor(try flatten(ctx))] }
        table.add("Identity") { ctx in [try ctx.value(0)] }
        table.add("Split") { ctx in try split(ctx).map { .tensor($0) } }
        table.add("Tile") { ctx in [.tensor(try tile(ctx))] }
        table.add("Pad") { ctx in [.tensor(try pad(ctx))] }
        table.add("Range") { ctx in [.tensor(try range(ctx))] }
        table.add("Trilu") { ctx in [.tensor(try trilu(ctx))] }
        table.add("DepthToSpace") { ctx in [.tensor(try depthToSpace(ctx))] }
        table.add("SpaceToDepth") { ctx in [.tensor(try spaceToDepth(ctx))] }
        table.add("EyeLike") { ctx in [.tensor(try eyeLike(ctx))] }
        table.add("CenterCropPad") { ctx in [.tensor(try centerCropPad(ctx))] }
        table.add("ReverseSequence") { ctx in [.tensor(try reverseSequence(ctx))] }
        table.add("Dropout") { ctx in try dropout(ctx) }
    }

    // MARK: element movement

    /// A tensor of `shape` whose element `k` is element `indices[k]` (flat, row-major) of `t`, or the
    /// single element of `fill` where `indices[k]` is negative (zero when `fill` is nil).
    /// Works for every element type; the values are copied bit for bit.
    static func take(_ t: Tensor, _ indices: [Int], shape: [Int], fill: Tensor? = nil) -> Tensor {
        precondition(indices.count == shape.reduce(1, *), "\(indices.count) indices for shape \(shape)")
        let fillValue = fill ?? Tensor(zeros: t.dtype, shape: [])
        if t.dtype == .string {
            let s = t.strings, f = fillValue.strings.first ?? ""
            return Tensor(shape: shape, strings: indices.map { $0 < 0 ? f : s[$0] })
        }
        let width = t.dtype.byteWidth!
        let source = t.rawBytes!, filler = fillValue.rawBytes!
        let storage = TensorStorage(byteCount: indices.count * width) { destination in
            guard indices.count > 0 else { return }
            switch width {
            case 1: copyElements(UInt8.self, source, filler, destination, indices)
            case 2: copyElements(UInt16.self, source, filler, destination, indices)
            case 4: copyElements(UInt32.self, source, filler, destination, indices)
            case 8: copyElements(UInt64.self, source, filler, destination, indices)
            default:
                for (k, i) in indices.enumerated() {
                    let from = i < 0 ? filler.baseAddress! : source.baseAddress! + i * width
                    (destination.baseAddress! + k * width).copyMemory(from: from, byteCount: width)
                }
            }
        }
        return Tensor(dtype: t.dtype, shape: shape, storage: storage)
    }

    /// The inner loop of `take` for elements `T` wide.
    private static func copyElements<T>(_: T.Type, _ source: UnsafeRawBufferPointer, _ filler: UnsafeRawBufferPointer,
                                        _ destination: UnsafeMutableRawBufferPointer, _ indices: [Int]) {
        let width = MemoryLayout<T>.stride
        let fillValue = filler.loadUnaligned(as: T.self)
        let out = destination.baseAddress!
        guard let src = source.baseAddress else {
            for k in 0..<indices.count { out.storeBytes(of: fillValue, toByteOffset: k * width, as: T.self) }
            return
        }
        for k in 0..<indices.count {
            let i = indices[k]
            let v = i < 0 ? fillValue : src.loadUnaligned(fromByteOffset: i * width, as: T.self)
            out.storeBytes(of: v, toByteOffset: k * width, as: T.self)
        }
    }

    /// `base` with element `destinations[k]` replaced by element `sources[k]` of `from` (same element type),
    /// in order, so later writes win. Works for every element type.
    static func overwrite(_ base: Tensor, at destinations: [Int], from: Tensor, _ sources: [Int]) -> Tensor {
        var map = Array(0..<base.count)
        // Encode "from `from`" as indices past the end of `base`.
        for k in 0..<destinations.count { map[destinations[k]] = base.count + sources[k] }
        if base.dtype == .string {
            let a = base.strings, b = from.strings
            return Tensor(shape: base.shape, strings: map.map { $0 < a.count ? a[$0] : b[$0 - a.count] })
        }
        let joined = concatenateFlat(base, from)
        return take(joined, map, shape: base.shape)
    }

    /// The elements of `a` followed by those of `b`, as a flat tensor (same element type).
    static func concatenateFlat(_ a: Tensor, _ b: Tensor) -> Tensor {
        if a.dtype == .string { return Tensor(shape: [a.count + b.count], strings: a.strings + b.strings) }
        let width = a.dtype.byteWidth!
        let x = a.rawBytes!, y = b.rawBytes!
        let storage = TensorStorage(byteCount: (a.count + b.count) * width) { out in
            if x.count > 0 { out.baseAddress!.copyMemory(from: x.baseAddress!, byteCount: x.count) }
            if y.count > 0 { (out.baseAddress! + x.count).copyMemory(from: y.baseAddress!, byteCount: y.count) }
        }
        return Tensor(dtype: a.dtype, shape: [a.count + b.count], storage: storage)
    }

    /// Flat source indices for an output whose axis `a` has `tables[a].count` positions, position `p`
    /// contributing `tables[a][p]` to the flat source index; a negative entry makes the element a fill.
    static func tableIndices(_ tables: [[Int]]) -> [Int] {
        var result = [0]
        for table in tables {
            var next = [Int]()
            next.reserveCapacity(result.count * table.count)
            for r in result {
                if r < 0 {
                    for _ in table { next.append(-1) }
                } else {
                    for t in table { next.append(t < 0 ? -1 : r + t) }
                }
            }
            result = next
        }
        return result
    }

    /// `t` viewed with `shape` (same count), axes permuted by `perm`: the output's axis `a` is the view's axis `perm[a]`.
    static func permuted(_ t: Tensor, viewShape shape: [Int], perm: [Int]) -> Tensor {
        let st = strides(of: shape)
        let tables = perm.map { p in (0..<shape[p]).map { $0 * st[p] } }
        return take(t, tableIndices(tables), shape: perm.map { shape[$0] })
    }

    /// A one-element tensor input read as an integer.
    static func scalarInt(_ ctx: KernelContext, _ t: Tensor, _ what: String) throws -> Int {
        guard t.count == 1, t.dtype.isInteger else { throw ctx.fail("\(what) must be one integer, is \(t.dtype)\(t.shape)") }
        return t.asInts()[0]
    }

    /// Integer values of a 1-D tensor input, checked to be integers.
    static func intList(_ ctx: KernelContext, _ t: Tensor, _ what: String) throws -> [Int] {
        guard t.dtype.isInteger else { throw ctx.fail("\(what) must be an integer tensor, is \(t.dtype)") }
        return t.asInts()
    }

    /// `axis` made non-negative for a tensor of rank `rank` (which must be at least 1); an error when out of range.
    static func checkedAxis(_ ctx: KernelContext, _ axis: Int, rank: Int) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0, a < rank else { throw ctx.fail("axis \(axis) is out of range for rank \(rank)") }
        return a
    }

    /// The elements of a numeric or bool tensor input as `Double`; an error for strings and complex numbers.
    static func numbers(_ ctx: KernelContext, _ t: Tensor, _ what: String) throws -> [Double] {
        guard t.dtype.isFloatingPoint || t.dtype.isInteger || t.dtype == .bool else {
            throw ctx.fail("\(what) must be numeric, is \(t.dtype)")
        }
        return t.asDoubles()
    }

    /// `axes` made non-negative for rank `rank`, checked for range and duplicates.
    static func normalizedAxes(_ ctx: KernelContext, _ axes: [Int], rank: Int) throws -> [Int] {
        var seen = Set<Int>()
        return try axes.map { a in
            let n = try checkedAxis(ctx, a, rank: rank)
            guard seen.insert(n).inserted else { throw ctx.fail("axis \(a) is repeated") }
            return n
        }
    }

    // MARK: shape queries and views

    /// Shape: the input's dims from `start` to `end` (both clamped), as int64.
    static func shape(_ ctx: KernelContext) throws -> Tensor {
        let dims = try ctx.tensor(0).shape
        let rank = dims.count
        func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + rank : v, 0), rank) }
        let start = clamp(try ctx.int("start", 0))
        let end = clamp(try ctx.int("end") ?? rank)
        return Tensor(int64s: start < end ? Array(dims[start..<end]) : [])
    }

    /// Reshape: 0 copies the input dim (unless `allowzero`), -1 is inferred.
    static func reshape(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let requested = try intList(ctx, try ctx.tensor(1), "shape")
        let allowZero = try ctx.int("allowzero", 0) != 0
        var dims = [Int]()
        var inferred: Int? = nil
        for (i, d) in requested.enumerated() {
            if d == 0 && !allowZero {
                guard i < x.rank else { throw ctx.fail("shape \(requested) copies dim \(i) of an input of rank \(x.rank)") }
                dims.append(x.shape[i])
            } else if d == -1 {
                guard inferred == nil else { throw ctx.fail("shape \(requested) has more than one -1") }
                inferred = i
                dims.append(1)
            } else {
                guard d >= 0 else { throw ctx.fail("shape \(requested) has a negative dim") }
                dims.append(d)
            }
        }
        if let i = inferred {
            guard let known = checkedProduct(dims), known > 0, x.count % known == 0 else {
                throw ctx.fail("cannot reshape \(x.shape) to \(requested)")
            }
            dims[i] = x.count / known
        }
        guard checkedProduct(dims) == x.count else { throw ctx.fail("cannot reshape \(x.shape) to \(requested)") }
        try ctx.checkedCount(dims)
        return x.reshaped(dims)
    }

    /// Flatten: a 2-D view splitting the dims before `axis` from the rest.
    static func flatten(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        var axis = try ctx.int("axis", 1)
        if axis < 0 { axis += x.rank }
        guard axis >= 0, axis <= x.rank else { throw ctx.fail("axis is out of range for rank \(x.rank)") }
        let outer = x.shape[..<axis].reduce(1, *)
        let inner = x.shape[axis...].reduce(1, *)
        return x.reshaped([outer, inner])
    }

    /// Unsqueeze: inserts dims of size 1 at `axes` (positions in the output).
    static func unsqueeze(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let rawAxes = try intList(ctx, try ctx.tensor(1), "axes")
        let rank = x.rank + rawAxes.count
        let axes = Set(try normalizedAxes(ctx, rawAxes, rank: rank))
        var dims = [Int]()
        var next = 0
        for i in 0..<rank {
            if axes.contains(i) { dims.append(1) } else { dims.append(x.shape[next]); next += 1 }
        }
        return x.reshaped(dims)
    }

    /// Squeeze: removes the size-1 dims at `axes`, or every size-1 dim.
    static func squeeze(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        if let axesTensor = try ctx.optionalTensor(1) {
            let axes = Set(try normalizedAxes(ctx, try intList(ctx, axesTensor, "axes"), rank: x.rank))
            for a in axes where x.shape[a] != 1 { throw ctx.fail("cannot squeeze axis \(a) of size \(x.shape[a])") }
            return x.reshaped(x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
        }
        return x.reshaped(x.shape.filter { $0 != 1 })
    }

    // MARK: creation

    /// ConstantOfShape: a tensor of the given shape filled with `value` (float32 zero by default).
    static func constantOfShape(_ ctx: KernelContext) throws -> Tensor {
        let dims = try intList(ctx, try ctx.tensor(0), "shape")
        guard dims.allSatisfy({ $0 >= 0 }) else { throw ctx.fail("shape \(dims) has a negative dim") }
        let value = try ctx.tensorAttribute("value") ?? Tensor(scalar: Float(0))
        guard value.count == 1 else { throw ctx.fail("value must have one element") }
        return take(value, [Int](repeating: 0, count: try ctx.checkedCount(dims)), shape: dims)
    }

    /// Constant: the tensor held in whichever `value*` attribute the node has.
    static func constant(_ ctx: KernelContext) throws -> Tensor {
        if let t = try ctx.tensorAttribute("value") { return t }
        if let t = try ctx.tensorAttribute("sparse_value") { return t }
        switch ctx.node.attributes["value_float"] {
        case .float(let v)?: return Tensor(scalar: v)
        case .int(let v)?: return Tensor(scalar: Float(v))
        default: break
        }
        if case .floats(let v)? = ctx.node.attributes["value_floats"] { return Tensor(shape: [v.count], v) }
        if case .int(let v)? = ctx.node.attributes["value_int"] { return Tensor(scalar: Int64(v)) }
        if case .ints(let v)? = ctx.node.attributes["value_ints"] { return Tensor(int64s: v) }
        if case .string(let v)? = ctx.node.attributes["value_string"] { return Tensor(shape: [], strings: [v]) }
        if case .strings(let v)? = ctx.node.attributes["value_strings"] { return Tensor(shape: [v.count], strings: v) }
        throw ctx.fail("has no value attribute")
    }

    /// Range: `start`, `start + delta`, … up to but excluding `limit`.
    static func range(_ ctx: KernelContext) throws -> Tensor {
        let start = try ctx.tensor(0), limit = try ctx.tensor(1), delta = try ctx.tensor(2)
        guard start.count == 1, limit.count == 1, delta.count == 1 else { throw ctx.fail("inputs must be scalars") }
        let dtype = start.dtype
        if dtype.isInteger {
            let s = start.asInt64s()[0], l = limit.asInt64s()[0], d = delta.asInt64s()[0]
            guard d != 0 else { throw ctx.fail("delta is zero") }
            let (span, overflow) = l.subtractingReportingOverflow(s)
            guard !overflow else { throw ctx.fail("the range is too long") }
            // ceil(span / d), for either sign of d.
            var n = span / d
            if n * d != span && (span > 0) == (d > 0) { n += 1 }
            n = max(n, 0)
            guard n <= Int64(Int32.max) else { throw ctx.fail("the range is too long") }
            let values = (0..<Int(n)).map { s + Int64($0) * d }
            return Tensor(dtype: dtype, shape: [values.count], int64s: values)
        }
        guard dtype.isFloatingPoint else { throw ctx.unsupported("element type \(dtype)") }
        let s = start.asDoubles()[0], l = try numbers(ctx, limit, "limit")[0], d = try numbers(ctx, delta, "delta")[0]
        guard d != 0 else { throw ctx.fail("delta is zero") }
        let count = ((l - s) / d).rounded(.up)
        guard !count.isNaN, count < Double(Int32.max) else { throw ctx.fail("the range has no finite length") }
        let n = count > 0 ? Int(count) : 0
        return Tensor(dtype: dtype, shape: [n], doubles: (0..<n).map { s + Double($0) * d })
    }

    /// EyeLike: ones on diagonal `k` of a 2-D tensor shaped like the input, of type `dtype`.
    static func eyeLike(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.rank == 2 else { throw ctx.fail("input must be 2-D, has shape \(x.shape)") }
        var dtype = x.dtype
        if let code = try ctx.int("dtype") {
            guard let d = DType(onnxCode: code) else { throw ctx.fail("unknown dtype \(code)") }
            dtype = d
        }
        // Diagonals beyond the matrix are all zeros; clamping keeps `i + k` in range.
        let k = min(max(try ctx.int("k", 0), -x.shape[0] - 1), x.shape[1] + 1)
        let rows = x.shape[0], cols = x.shape[1]
        var values = [Double](repeating: 0, count: rows * cols)
        for i in 0..<rows {
            let j = i + k
            if j >= 0 && j < cols { values[i * cols + j] = 1 }
        }
        guard dtype.isFloatingPoint || dtype.isInteger || dtype == .bool else { throw ctx.unsupported("element type \(dtype)") }
        return Tensor(dtype: dtype, shape: x.shape, doubles: values)
    }

    // MARK: joining and splitting

    /// Concat: the inputs joined along `axis`.
    static func concat(_ ctx: KernelContext) throws -> Tensor {
        let parts = try (0..<ctx.inputCount).map { try ctx.tensor($0) }
        guard let first = parts.first else { throw ctx.fail("needs at least one input") }
        let axis = try checkedAxis(ctx, try ctx.int("axis") ?? 0, rank: first.rank)
        guard first.rank > 0 else { throw ctx.fail("cannot concatenate scalars") }
        var outShape = first.shape
        outShape[axis] = 0
        for p in parts {
            guard p.dtype == first.dtype, p.rank == first.rank else {
                throw ctx.fail("inputs \(first.dtype)\(first.shape) and \(p.dtype)\(p.shape) do not match")
            }
            for i in 0..<p.rank where i != axis && p.shape[i] != first.shape[i] {
                throw ctx.fail("inputs of shapes \(first.shape) and \(p.shape) differ outside axis \(axis)")
            }
            outShape[axis] += p.shape[axis]
        }
        let outer = first.shape[..<axis].reduce(1, *)
        let inner = first.shape[(axis + 1)...].reduce(1, *)
        if first.dtype == .string {
            var out = [String]()
            let strings = parts.map(\.strings)
            for o in 0..<outer {
                for (p, s) in zip(parts, strings) {
                    let chunk = p.shape[axis] * inner
                    out.append(contentsOf: s[(o * chunk)..<((o + 1) * chunk)])
                }
            }
            return Tensor(shape: outShape, strings: out)
        }
        let width = first.dtype.byteWidth!
        let total = outShape.reduce(1, *)
        let storage = TensorStorage(byteCount: total * width) { out in
            var offset = 0
            for o in 0..<outer {
                for p in parts {
                    let chunk = p.shape[axis] * inner * width
                    if chunk > 0 {
                        (out.baseAddress! + offset).copyMemory(from: p.rawBytes!.baseAddress! + o * chunk, byteCount: chunk)
                    }
                    offset += chunk
                }
            }
        }
        return Tensor(dtype: first.dtype, shape: outShape, storage: storage)
    }

    /// The part of `t` at positions `start ..< start + length` of `axis`.
    static func sliceAxis(_ t: Tensor, axis: Int, start: Int, length: Int) -> Tensor {
        let st = strides(of: t.shape)
        var tables = t.shape.enumerated().map { a, d in (0..<d).map { $0 * st[a] } }
        tables[axis] = (start..<(start + length)).map { $0 * st[axis] }
        var shape = t.shape
        shape[axis] = length
        return take(t, tableIndices(tables), shape: shape)
    }

    /// Split: pieces of the sizes in the `split` input, or `num_outputs` pieces (the last possibly smaller).
    static func split(_ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.tensor(0)
        let axis = try checkedAxis(ctx, try ctx.int("axis", 0), rank: x.rank)
        let dim = x.shape[axis]
        let outputs = ctx.node.outputs.count
        var sizes: [Int]
        if let s = try ctx.optionalTensor(1) {
            sizes = try intList(ctx, s, "split")
            guard sizes.count == outputs, sizes.allSatisfy({ $0 >= 0 && $0 <= dim }), sizes.reduce(0, +) == dim else {
                throw ctx.fail("split \(sizes) does not divide dim \(dim) into \(outputs) outputs")
            }
        } else {
            // `num_outputs` allows a smaller last piece; without it the pieces must be equal.
            let numOutputs = try ctx.int("num_outputs")
            let parts = numOutputs ?? outputs
            guard parts > 0, parts == outputs else { throw ctx.fail("num_outputs does not match the \(outputs) outputs") }
            guard numOutputs != nil || dim % parts == 0 else { throw ctx.fail("dim \(dim) does not split evenly into \(parts)") }
            let chunk = (dim + parts - 1) / parts
            sizes = (0..<parts).map { i in max(0, min(chunk, dim - i * chunk)) }
        }
        var start = 0
        var result = [Tensor]()
        for size in sizes {
            result.append(sliceAxis(x, axis: axis, start: start, length: size))
            start += size
        }
        return result
    }

    // MARK: rearranging

    /// Transpose: axes permuted by `perm` (reversed by default).
    static func transpose(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let perm = try ctx.ints("perm") ?? Array((0..<x.rank).reversed())
        guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else {
            throw ctx.fail("perm \(perm) is not a permutation of the \(x.rank) axes")
        }
        return permuted(x, viewShape: x.shape, perm: perm)
    }

    /// Slice: strided ranges along `axes`, with negative steps and out-of-range bounds clamped.
    static func slice(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let starts = try intList(ctx, try ctx.tensor(1), "starts")
        let ends = try intList(ctx, try ctx.tensor(2), "ends")
        guard starts.count == ends.count else { throw ctx.fail("starts and ends differ in length") }
        guard try ctx.optionalTensor(3) != nil || starts.count <= x.rank else {
            throw ctx.fail("\(starts.count) starts for an input of rank \(x.rank)")
        }
        let axes = try ctx.optionalTensor(3).map { try normalizedAxes(ctx, try intList(ctx, $0, "axes"), rank: x.rank) }
            ?? Array(0..<starts.count)
        let steps = try ctx.optionalTensor(4).map { try intList(ctx, $0, "steps") } ?? [Int](repeating: 1, count: starts.count)
        guard axes.count == starts.count, steps.count == starts.count else {
            throw ctx.fail("starts, ends, axes and steps differ in length")
        }
        let st = strides(of: x.shape)
        var tables = x.shape.enumerated().map { a, d in (0..<d).map { $0 * st[a] } }
        for (i, axis) in axes.enumerated() {
            let dim = x.shape[axis], step = steps[i]
            guard step != 0 else { throw ctx.fail("step is zero") }
            var start = starts[i] < 0 ? starts[i] + dim : starts[i]
            var end = ends[i] < 0 ? ends[i] + dim : ends[i]
            var positions = [Int]()
            if step > 0 {
                start = min(max(start, 0), dim)
                end = min(max(end, 0), dim)
                let n = end > start ? (end - start - 1) / step + 1 : 0
                positions = (0..<n).map { start + $0 * step }
            } else {
                start = min(max(start, 0), dim - 1)
                end = min(max(end, -1), dim - 1)
                let magnitude = step == Int.min ? Int.max : -step
                let n = start > end ? (start - end - 1) / magnitude + 1 : 0
                positions = (0..<n).map { start - $0 * magnitude }
            }
            tables[axis] = positions.map { $0 * st[axis] }
        }
        return take(x, tableIndices(tables), shape: tables.map(\.count))
    }

    /// Expand: the input broadcast with the requested shape.
    static func expand(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let target = try intList(ctx, try ctx.tensor(1), "shape")
        guard target.allSatisfy({ $0 >= 0 }), let shape = Broadcast.shape([x.shape, target]) else {
            throw ctx.fail("shape \(x.shape) cannot expand to \(target)")
        }
        try ctx.checkedCount(shape)
        return take(x, Broadcast.sourceIndices(from: x.shape, to: shape), shape: shape)
    }

    /// Tile: the input repeated `repeats[i]` times along each axis.
    static func tile(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let repeats = try intList(ctx, try ctx.tensor(1), "repeats")
        guard repeats.count == x.rank, repeats.allSatisfy({ $0 >= 0 }) else {
            throw ctx.fail("repeats \(repeats) do not fit rank \(x.rank)")
        }
        guard let outShape = checkedProducts(x.shape, repeats) else { throw ctx.fail("repeats \(repeats) are too large") }
        if try ctx.checkedCount(outShape) == 0 { return Tensor(zeros: x.dtype, shape: outShape) }
        let st = strides(of: x.shape)
        let tables = x.shape.enumerated().map { a, d in (0..<(d * repeats[a])).map { ($0 % d) * st[a] } }
        return take(x, tableIndices(tables), shape: tables.map(\.count))
    }

    /// Pad: constant, edge, reflect or wrap padding (negative pads crop), optionally on selected `axes`.
    static func pad(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let mode = try ctx.string("mode", "constant")
        let pads = try intList(ctx, try ctx.tensor(1), "pads")
        var fill: Tensor? = nil
        if let v = try ctx.optionalTensor(2), v.count > 0 {
            guard v.count == 1 else { throw ctx.fail("constant_value must have one element") }
            guard v.dtype == x.dtype else { throw ctx.fail("constant_value type \(v.dtype) differs from \(x.dtype)") }
            fill = v.reshaped([])
        }
        let axes = try ctx.optionalTensor(3).map { try normalizedAxes(ctx, try intList(ctx, $0, "axes"), rank: x.rank) }
            ?? Array(0..<x.rank)
        guard pads.count == 2 * axes.count else { throw ctx.fail("pads has \(pads.count) values for \(axes.count) axes") }
        var before = [Int](repeating: 0, count: x.rank), after = before
        for (i, a) in axes.enumerated() {
            before[a] = pads[i]
            after[a] = pads[axes.count + i]
        }
        var outShape = x.shape
        for a in 0..<x.rank {
            let (grown, o1) = x.shape[a].addingReportingOverflow(before[a])
            let (padded, o2) = grown.addingReportingOverflow(after[a])
            guard !o1, !o2 else { throw ctx.fail("pads \(pads) are too large") }
            outShape[a] = padded
        }
        for a in 0..<x.rank where outShape[a] < 0 { throw ctx.fail("pads \(pads) remove more than axis \(a) holds") }
        if try ctx.checkedCount(outShape) == 0 { return Tensor(zeros: x.dtype, shape: outShape) }
        let st = strides(of: x.shape)
        var tables = [[Int]]()
        for a in 0..<x.rank {
            let dim = x.shape[a]
            let outDim = outShape[a]
            guard outDim >= 0 else { throw ctx.fail("pads \(pads) remove more than axis \(a) holds") }
            var table = [Int]()
            table.reserveCapacity(outDim)
            for o in 0..<outDim {
                var i = o - before[a]
                if i < 0 || i >= dim {
                    switch mode {
                    case "constant": i = -1
                    case "edge", "reflect", "wrap":
                        guard dim > 0 else { throw ctx.fail("cannot \(mode)-pad empty axis \(a)") }
                        if mode == "edge" {
                            i = min(max(i, 0), dim - 1)
                        } else if mode == "wrap" {
                            i = ((i % dim) + dim) % dim
                        } else if dim == 1 {
                            i = 0
                        } else {
                            let period = 2 * (dim - 1)
                            i = ((i % period) + period) % period
                            if i >= dim { i = period - i }
                        }
                    default: throw ctx.fail("unknown mode '\(mode)'")
                    }
                }
                table.append(i < 0 ? -1 : i * st[a])
            }
            tables.append(table)
        }
        return take(x, tableIndices(tables), shape: tables.map(\.count), fill: fill)
    }

    /// Trilu: the upper (or lower) triangle of the last two dims from diagonal `k`, the rest zero.
    static func trilu(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.rank >= 2 else { throw ctx.fail("input must have rank >= 2, has shape \(x.shape)") }
        let k = try ctx.optionalTensor(1).map { try scalarInt(ctx, $0, "k") } ?? 0
        let upper = try ctx.int("upper", 1) != 0
        let rows = x.shape[x.rank - 2], cols = x.shape[x.rank - 1]
        var indices = Array(0..<x.count)
        for flat in 0..<x.count {
            let j = flat % cols, i = (flat / cols) % rows
            let keep = upper ? j - i >= k : j - i <= k
            if !keep { indices[flat] = -1 }
        }
        return take(x, indices, shape: x.shape)
    }

    /// DepthToSpace: moves channel blocks into spatial blocks, in DCR or CRD order.
    static func depthToSpace(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let b = try ctx.int("blocksize") ?? 0
        guard x.rank == 4, b > 0, b <= x.shape[1], x.shape[1] % (b * b) == 0 else {
            throw ctx.fail("cannot rearrange \(x.shape) with blocksize \(b)")
        }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let mode = try ctx.string("mode", "DCR")
        let result: Tensor
        switch mode {
        case "DCR": result = permuted(x, viewShape: [n, b, b, c / (b * b), h, w], perm: [0, 3, 4, 1, 5, 2])
        case "CRD": result = permuted(x, viewShape: [n, c / (b * b), b, b, h, w], perm: [0, 1, 4, 2, 5, 3])
        default: throw ctx.fail("unknown mode '\(mode)'")
        }
        return result.reshaped([n, c / (b * b), h * b, w * b])
    }

    /// SpaceToDepth: moves spatial blocks into channels (the inverse of DepthToSpace in DCR order).
    static func spaceToDepth(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let b = try ctx.int("blocksize") ?? 0
        guard x.rank == 4, b > 0, b <= max(x.shape[2], x.shape[3]), x.shape[2] % b == 0, x.shape[3] % b == 0 else {
            throw ctx.fail("cannot rearrange \(x.shape) with blocksize \(b)")
        }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let result = permuted(x, viewShape: [n, c, h / b, b, w / b, b], perm: [0, 3, 5, 1, 2, 4])
        return result.reshaped([n, c * b * b, h / b, w / b])
    }

    /// CenterCropPad: crops or zero-pads `axes` to `shape`, keeping the input centred.
    static func centerCropPad(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let target = try intList(ctx, try ctx.tensor(1), "shape")
        let axes = try ctx.ints("axes").map { try normalizedAxes(ctx, $0, rank: x.rank) } ?? Array(0..<x.rank)
        guard target.count == axes.count else { throw ctx.fail("shape has \(target.count) dims for \(axes.count) axes") }
        var outShape = x.shape
        for (i, a) in axes.enumerated() { outShape[a] = target[i] }
        if try ctx.checkedCount(outShape) == 0 { return Tensor(zeros: x.dtype, shape: outShape) }
        let st = strides(of: x.shape)
        var tables = x.shape.enumerated().map { a, d in (0..<d).map { $0 * st[a] } }
        for (i, a) in axes.enumerated() {
            let dim = x.shape[a], size = target[i]
            guard size >= 0 else { throw ctx.fail("shape \(target) has a negative dim") }
            if size <= dim {
                let offset = (dim - size) / 2
                tables[a] = (0..<size).map { ($0 + offset) * st[a] }
            } else {
                let offset = (size - dim) / 2
                tables[a] = (0..<size).map { o in
                    let p = o - offset
                    return p >= 0 && p < dim ? p * st[a] : -1
                }
            }
        }
        return take(x, tableIndices(tables), shape: tables.map(\.count))
    }

    /// ReverseSequence: reverses the first `sequence_lens[b]` steps along `time_axis` of each batch entry.
    static func reverseSequence(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let lengths = try intList(ctx, try ctx.tensor(1), "sequence_lens")
        let batchAxis = try checkedAxis(ctx, try ctx.int("batch_axis", 1), rank: x.rank)
        let timeAxis = try checkedAxis(ctx, try ctx.int("time_axis", 0), rank: x.rank)
        guard batchAxis != timeAxis, lengths.count == x.shape[batchAxis] else {
            throw ctx.fail("sequence_lens \(lengths) does not fit input \(x.shape)")
        }
        let time = x.shape[timeAxis]
        for l in lengths where l < 0 || l > time { throw ctx.fail("sequence length \(l) is outside 0...\(time)") }
        let st = strides(of: x.shape)
        var indices = Array(0..<x.count)
        for flat in 0..<x.count {
            let b = (flat / st[batchAxis]) % x.shape[batchAxis]
            let t = (flat / st[timeAxis]) % time
            if t < lengths[b] { indices[flat] = flat + (lengths[b] - 1 - 2 * t) * st[timeAxis] }
        }
        return take(x, indices, shape: x.shape)
    }

    // MARK: Dropout

    /// Dropout: the identity (mask all true) unless `training_mode`; then elements are zeroed with probability `ratio` and the rest scaled by 1/(1 − ratio).
    static func dropout(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let x = try ctx.tensor(0)
        let ratio = try ctx.optionalTensor(1).map { try numbers(ctx, $0, "ratio").first ?? 0.5 } ?? 0.5
        let training = try ctx.optionalTensor(2).map { try numbers(ctx, $0, "training_mode").first ?? 0 } ?? 0
        guard ratio >= 0, ratio < 1 else { throw ctx.fail("ratio \(ratio) is outside [0, 1)") }
        if training == 0 || ratio == 0 {
            let mask = Tensor(shape: x.shape, [Bool](repeating: true, count: x.count))
            return [.tensor(x), ctx.wants(1) ? .tensor(mask) : nil]
        }
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        // Keep each element with probability 1 − ratio, drawing uniform numbers from a Mersenne Twister
        // seeded with the `seed` attribute (the generator NumPy's legacy RandomState uses).
        var generator = MersenneTwister(seed: UInt32(truncatingIfNeeded: try ctx.int("seed", 0)))
        let scale = 1 / (1 - ratio)
        let values = x.asDoubles()
        var keep = [Bool](repeating: false, count: x.count)
        var out = [Double](repeating: 0, count: x.count)
        for i in 0..<x.count {
            keep[i] = generator.nextDouble() >= ratio
            guard keep[i] else { continue }
            // Scale in float32 like the reference unless the data is float64.
            out[i] = x.dtype == .float64 ? values[i] * scale : Double(Float(values[i]) * Float(scale))
        }
        return [.tensor(Tensor(dtype: x.dtype, shape: x.shape, doubles: out)),
                ctx.wants(1) ? .tensor(Tensor(shape: x.shape, keep)) : nil]
    }

    /// The MT19937 pseudo-random generator, with the 53-bit double construction of NumPy's RandomState.
    struct MersenneTwister {
        private var state = [UInt32](repeating: 0, count: 624)
        private var position = 624

        /// A generator seeded like `init_genrand(seed)`.
        init(seed: UInt32) {
            state[0] = seed
            for i in 1..<624 {
                state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
            }
        }

        /// The next 32 random bits.
        mutating func next() -> UInt32 {
            if position >= 624 {
                for i in 0..<624 {
                    let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7fff_ffff)
                    state[i] = state[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1) != 0 ? 0x9908_b0df : 0)
                }
                position = 0
            }
            var y = state[position]
            position += 1
            y ^= y >> 11
            y ^= (y << 7) & 0x9d2c_5680
            y ^= (y << 15) & 0xefc6_0000
            y ^= y >> 18
            return y
        }

        /// A uniform double in [0, 1) built from two draws.
        mutating func nextDouble() -> Double {
            let a = Double(next() >> 5), b = Double(next() >> 6)
            return (a * 67_108_864 + b) / 9_007_199_254_740_992
        }
    }
}
