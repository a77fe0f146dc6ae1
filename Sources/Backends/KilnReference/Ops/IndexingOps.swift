import KilnIR

/// Ops that read or write tensors at computed positions: Gather(Elements/ND), Scatter(Elements/ND),
/// TensorScatter, OneHot, Compress, NonZero, Unique, TopK, ArgMax/ArgMin and CumSum/CumProd.
///
/// Indices out of range are reported with `ctx.fail`, never trapped.
enum IndexingOps {
    /// Adds this family's kernels to `table`.
    static func register(into table: inout KernelTable) {
        table.add("Gather") { ctx in [.tensor(try gather(ctx))] }
        table.add("GatherElements") { ctx in [.tensor(try gatherElements(ctx))] }
        table.add("GatherND") { ctx in [.tensor(try gatherND(ctx))] }
        table.add("Scatter") { ctx in [.tensor(try scatterElements(ctx))] }
        table.add("ScatterElements") { ctx in [.tensor(try scatterElements(ctx))] }
        table.add("ScatterND") { ctx in [.tensor(try scatterND(ctx))] }
        table.add("TensorScatter") { ctx in [.tensor(try tensorScatter(ctx))] }
        table.add("OneHot") { ctx in [.tensor(try oneHot(ctx))] }
        table.add("Compress") { ctx in [.tensor(try compress(ctx))] }
        table.add("NonZero") { ctx in [.tensor(try nonZero(ctx))] }
        table.add("Unique") { ctx in try unique(ctx).map { .tensor($0) } }
        table.add("TopK") { ctx in try topK(ctx).map { .tensor($0) } }
        table.add("ArgMax") { ctx in [.tensor(try argExtreme(ctx, largest: true))] }
        table.add("ArgMin") { ctx in [.tensor(try argExtreme(ctx, largest: false))] }
        table.add("CumSum") { ctx in [.tensor(try cumulative(ctx, product: false))] }
        table.add("CumProd") { ctx in [.tensor(try cumulative(ctx, product: true))] }
    }

    // MARK: helpers

    /// The values of an index tensor, each made non-negative for an axis of size `dim`; an error when out of range.
    static func indexValues(_ ctx: KernelContext, _ t: Tensor, dim: Int) throws -> [Int] {
        guard t.dtype.isInteger else { throw ctx.fail("indices must be integers, are \(t.dtype)") }
        return try t.asInts().map { i in
            let n = i < 0 ? i + dim : i
            guard n >= 0, n < dim else { throw ctx.fail("index \(i) is out of range for a dim of size \(dim)") }
            return n
        }
    }

    /// A `Double` ordered totally: NaN above every number (as NumPy sorts), so sorting never misbehaves.
    struct OrderedDouble: Comparable, Hashable {
        /// The number.
        let value: Double
        static func < (a: OrderedDouble, b: OrderedDouble) -> Bool {
            if a.value.isNaN { return false }
            if b.value.isNaN { return true }
            return a.value < b.value
        }
        static func == (a: OrderedDouble, b: OrderedDouble) -> Bool {
            a.value == b.value || (a.value.isNaN && b.value.isNaN)
        }
        func hash(into hasher: inout Hasher) {
            hasher.combine(value.isNaN ? Double.nan.bitPattern : (value == 0 ? 0 : value.bitPattern))
        }
    }

    /// The elements of a tensor in a form that orders and compares them exactly for its element type.
    enum Keys {
        case real([OrderedDouble])
        case signed([Int64])
        case unsigned([UInt64])
        case text([String])

        /// Keys of `t`'s elements; an error for complex numbers, which have no order.
        init(_ ctx: KernelContext, _ t: Tensor) throws {
            switch t.dtype {
            case .complex64, .complex128: throw ctx.unsupported("element type \(t.dtype)")
            case .string: self = .text(t.strings)
            case .uint64: self = .unsigned(t.elements(as: UInt64.self))
            case _ where t.dtype.isInteger || t.dtype == .bool: self = .signed(t.asInt64s())
            default: self = .real(t.asDoubles().map { OrderedDouble(value: $0) })
            }
        }
    }

    // MARK: Gather

    /// Gather: slices of the data along `axis` picked by the indices (negative ones count from the end).
    static func gather(_ ctx: KernelContext) throws -> Tensor {
        let data = try ctx.tensor(0), indicesTensor = try ctx.tensor(1)
        guard data.rank > 0 else { throw ctx.fail("data must have rank >= 1") }
        let axis = try ShapeOps.checkedAxis(ctx, try ctx.int("axis", 0), rank: data.rank)
        let dim = data.shape[axis]
        let indices = try indexValues(ctx, indicesTensor, dim: dim)
        let outer = data.shape[..<axis].reduce(1, *)
        let inner = data.shape[(axis + 1)...].reduce(1, *)
        var sources = [Int]()
        sources.reserveCapacity(outer * indices.count * inner)
        for o in 0..<outer {
            for i in indices {
                let base = (o * dim + i) * inner
                for k in 0..<inner { sources.append(base + k) }
            }
        }
        let shape = Array(data.shape[..<axis]) + indicesTensor.shape + Array(data.shape[(axis + 1)...])
        return ShapeOps.take(data, sources, shape: shape)
    }

    /// For each element of an index tensor of `indexShape` whose values `indices` address `axis` of a tensor
    /// of `dataShape`, the flat position in that tensor.
    static func elementPositions(_ ctx: KernelContext, indices: [Int], indexShape: [Int], dataShape: [Int], axis: Int) throws -> [Int] {
        guard indexShape.count == dataShape.count else {
            throw ctx.fail("indices of shape \(indexShape) do not match data of shape \(dataShape)")
        }
        let dataStrides = strides(of: dataShape)
        let indexStrides = strides(of: indexShape)
        var positions = [Int](repeating: 0, count: indices.count)
        for flat in 0..<indices.count {
            var position = 0
            for a in 0..<indexShape.count {
                let coordinate = a == axis ? indices[flat] : (flat / indexStrides[a]) % indexShape[a]
                if a != axis && coordinate >= dataShape[a] {
                    throw ctx.fail("indices of shape \(indexShape) exceed data of shape \(dataShape)")
                }
                position += coordinate * dataStrides[a]
            }
            positions[flat] = position
        }
        return positions
    }

    /// GatherElements: each output element is the data element whose `axis` coordinate is the index.
    static func gatherElements(_ ctx: KernelContext) throws -> Tensor {
        let data = try ctx.tensor(0), indicesTensor = try ctx.tensor(1)
        let axis = try ShapeOps.checkedAxis(ctx, try ctx.int("axis", 0), rank: data.rank)
        let indices = try indexValues(ctx, indicesTensor, dim: data.shape[axis])
        let positions = try elementPositions(ctx, indices: indices, indexShape: indicesTensor.shape,
                                             dataShape: data.shape, axis: axis)
        return ShapeOps.take(data, positions, shape: indicesTensor.shape)
    }

    /// For GatherND/ScatterND: the flat start position in `dataShape` of the slice each index tuple of
    /// `indicesTensor` (last dim = tuple length) addresses, the batch dims counted first.
    static func tuplePositions(_ ctx: KernelContext, _ indicesTensor: Tensor, dataShape: [Int], batchDims: Int) throws -> (starts: [Int], sliceSize: Int) {
        guard indicesTensor.dtype.isInteger, indicesTensor.rank >= 1 else { throw ctx.fail("indices must be an integer tensor of rank >= 1") }
        let q = indicesTensor.rank, m = indicesTensor.shape[q - 1]
        guard batchDims >= 0, batchDims < q, batchDims < dataShape.count, batchDims + m <= dataShape.count else {
            throw ctx.fail("index tuples of length \(m) do not fit data of shape \(dataShape) with batch_dims \(batchDims)")
        }
        for a in 0..<batchDims where indicesTensor.shape[a] != dataShape[a] {
            throw ctx.fail("batch dims of indices \(indicesTensor.shape) and data \(dataShape) differ")
        }
        let values = indicesTensor.asInts()
        let dataStrides = strides(of: dataShape)
        let sliceSize = dataShape[(batchDims + m)...].reduce(1, *)
        let tuples = indicesTensor.shape[..<(q - 1)].reduce(1, *)
        let tuplesPerBatch = indicesTensor.shape[batchDims..<(q - 1)].reduce(1, *)
        var starts = [Int](repeating: 0, count: tuples)
        for t in 0..<tuples {
            let batch = tuplesPerBatch == 0 ? 0 : t / tuplesPerBatch
            // The batch's offset in data: batch coordinates share the data's leading dims.
            var position = 0
            var rest = batch
            for a in stride(from: batchDims - 1, through: 0, by: -1) {
                position += (rest % dataShape[a]) * dataStrides[a]
                rest /= dataShape[a]
            }
            for j in 0..<m {
                let dim = dataShape[batchDims + j]
                var i = values[t * m + j]
                if i < 0 { i += dim }
                guard i >= 0, i < dim else { throw ctx.fail("index \(values[t * m + j]) is out of range for a dim of size \(dim)") }
                position += i * dataStrides[batchDims + j]
            }
            starts[t] = position
        }
        return (starts, sliceSize)
    }

    /// GatherND: slices addressed by index tuples in the last dim of the indices, after `batch_dims` shared dims.
    static func gatherND(_ ctx: KernelContext) throws -> Tensor {
        let data = try ctx.tensor(0), indicesTensor = try ctx.tensor(1)
        let batchDims = try ctx.int("batch_dims", 0)
        let (starts, sliceSize) = try tuplePositions(ctx, indicesTensor, dataShape: data.shape, batchDims: batchDims)
        var sources = [Int]()
        sources.reserveCapacity(starts.count * sliceSize)
        for s in starts { for k in 0..<sliceSize { sources.append(s + k) } }
        let m = indicesTensor.shape.last!
        let shape = Array(indicesTensor.shape.dropLast()) + Array(data.shape[(batchDims + m)...])
        return ShapeOps.take(data, sources, shape: shape)
    }

    // MARK: Scatter

    /// `data` with `updates` element `k` written (or combined by `reduction`) at flat position `positions[k]`.
    static func scatter(_ ctx: KernelContext, data: Tensor, updates: Tensor, positions: [Int], reduction: String) throws -> Tensor {
        guard updates.dtype == data.dtype else { throw ctx.fail("updates type \(updates.dtype) differs from data type \(data.dtype)") }
        if reduction == "none" {
            return ShapeOps.overwrite(data, at: positions, from: updates, Array(0..<positions.count))
        }
        guard ["add", "mul", "max", "min"].contains(reduction) else { throw ctx.fail("unknown reduction '\(reduction)'") }
        if data.dtype.isFloatingPoint {
            var out = data.asDoubles()
            let u = updates.asDoubles()
            for (k, p) in positions.enumerated() {
                switch reduction {
                case "add": out[p] += u[k]
                case "mul": out[p] *= u[k]
                case "max": out[p] = out[p].isNaN || u[k].isNaN ? .nan : max(out[p], u[k])
                default: out[p] = out[p].isNaN || u[k].isNaN ? .nan : min(out[p], u[k])
                }
            }
            return Tensor(dtype: data.dtype, shape: data.shape, doubles: out)
        }
        guard data.dtype.isInteger || data.dtype == .bool else { throw ctx.unsupported("reduction on \(data.dtype)") }
        var out = data.asInt64s()
        let u = updates.asInt64s()
        let unsigned = data.dtype == .uint64
        for (k, p) in positions.enumerated() {
            switch reduction {
            case "add": out[p] = out[p] &+ u[k]
            case "mul": out[p] = out[p] &* u[k]
            case "max":
                if unsigned { out[p] = Int64(bitPattern: max(UInt64(bitPattern: out[p]), UInt64(bitPattern: u[k]))) }
                else { out[p] = max(out[p], u[k]) }
            default:
                if unsigned { out[p] = Int64(bitPattern: min(UInt64(bitPattern: out[p]), UInt64(bitPattern: u[k]))) }
                else { out[p] = min(out[p], u[k]) }
            }
        }
        return Tensor(dtype: data.dtype, shape: data.shape, int64s: out)
    }

    /// ScatterElements (and the deprecated Scatter): the data with updates written at index positions along `axis`.
    static func scatterElements(_ ctx: KernelContext) throws -> Tensor {
        let data = try ctx.tensor(0), indicesTensor = try ctx.tensor(1), updates = try ctx.tensor(2)
        guard updates.shape == indicesTensor.shape else {
            throw ctx.fail("updates shape \(updates.shape) differs from indices shape \(indicesTensor.shape)")
        }
        let axis = try ShapeOps.checkedAxis(ctx, try ctx.int("axis", 0), rank: data.rank)
        let indices = try indexValues(ctx, indicesTensor, dim: data.shape[axis])
        let positions = try elementPositions(ctx, indices: indices, indexShape: indicesTensor.shape,
                                             dataShape: data.shape, axis: axis)
        return try scatter(ctx, data: data, updates: updates, positions: positions, reduction: try ctx.string("reduction", "none"))
    }

    /// ScatterND: the data with update slices written (or reduced) at index tuples.
    static func scatterND(_ ctx: KernelContext) throws -> Tensor {
        let data = try ctx.tensor(0), indicesTensor = try ctx.tensor(1), updates = try ctx.tensor(2)
        let (starts, sliceSize) = try tuplePositions(ctx, indicesTensor, dataShape: data.shape, batchDims: 0)
        let m = indicesTensor.shape.last!
        let expected = Array(indicesTensor.shape.dropLast()) + Array(data.shape[m...])
        guard updates.shape == expected else { throw ctx.fail("updates shape \(updates.shape) should be \(expected)") }
        var positions = [Int]()
        positions.reserveCapacity(starts.count * sliceSize)
        for s in starts { for k in 0..<sliceSize { positions.append(s + k) } }
        return try scatter(ctx, data: data, updates: updates, positions: positions, reduction: try ctx.string("reduction", "none"))
    }

    /// TensorScatter: writes `update` into a KV cache along `axis` at each batch entry's write index, linearly or circularly.
    static func tensorScatter(_ ctx: KernelContext) throws -> Tensor {
        let cache = try ctx.tensor(0), update = try ctx.tensor(1)
        guard cache.rank >= 2, cache.rank == update.rank, cache.dtype == update.dtype else {
            throw ctx.fail("past_cache \(cache.dtype)\(cache.shape) and update \(update.dtype)\(update.shape) do not match")
        }
        let axis = try ShapeOps.checkedAxis(ctx, try ctx.int("axis", -2), rank: cache.rank)
        guard axis > 0 else { throw ctx.fail("axis must not be the batch axis") }
        let mode = try ctx.string("mode", "linear")
        guard mode == "linear" || mode == "circular" else { throw ctx.fail("unknown mode '\(mode)'") }
        for a in 0..<cache.rank where a != axis && cache.shape[a] != update.shape[a] {
            throw ctx.fail("past_cache \(cache.shape) and update \(update.shape) differ in dim \(a)")
        }
        let maxLength = cache.shape[axis], length = update.shape[axis]
        guard length <= maxLength else { throw ctx.fail("update is longer than the cache along axis \(axis)") }
        let batch = cache.shape[0]
        let writeIndices = try ctx.optionalTensor(2).map { try ShapeOps.intList(ctx, $0, "write_indices") }
            ?? [Int](repeating: 0, count: batch)
        guard writeIndices.count == batch else { throw ctx.fail("write_indices has \(writeIndices.count) values for batch \(batch)") }
        let outer = cache.shape[..<axis].reduce(1, *)
        let inner = cache.shape[(axis + 1)...].reduce(1, *)
        let perBatch = outer / max(batch, 1)
        var destinations = [Int](), sources = [Int]()
        for o in 0..<outer {
            let b = perBatch == 0 ? 0 : o / perBatch
            for s in 0..<length {
                let w = writeIndices[b]
                guard w >= -maxLength, w <= maxLength || mode == "circular" else {
                    throw ctx.fail("write index \(w) is out of range for a cache of length \(maxLength)")
                }
                var p = mode == "circular" && maxLength > 0 ? ((w % maxLength) + maxLength) % maxLength + s : w + s
                if mode == "circular" && maxLength > 0 { p %= maxLength }
                guard p >= 0, p < maxLength else {
                    throw ctx.fail("write index \(writeIndices[b]) + \(s) is out of range for a cache of length \(maxLength)")
                }
                for k in 0..<inner {
                    destinations.append((o * maxLength + p) * inner + k)
                    sources.append((o * length + s) * inner + k)
                }
            }
        }
        return ShapeOps.overwrite(cache, at: destinations, from: update, sources)
    }

    // MARK: OneHot, Compress, NonZero

    /// OneHot: `values[1]` at each index along the new `axis`, `values[0]` elsewhere; out-of-range indices give all off.
    static func oneHot(_ ctx: KernelContext) throws -> Tensor {
        let indicesTensor = try ctx.tensor(0), depthTensor = try ctx.tensor(1), values = try ctx.tensor(2)
        guard depthTensor.count == 1, values.count == 2 else { throw ctx.fail("depth must be a scalar and values a pair") }
        let depthValue = try ShapeOps.numbers(ctx, depthTensor, "depth")[0].rounded(.towardZero)
        guard depthValue >= 0, depthValue < Double(Int32.max) else { throw ctx.fail("depth \(depthValue) is out of range") }
        let depth = Int(depthValue)
        let rank = indicesTensor.rank + 1
        var axis = try ctx.int("axis", -1)
        if axis < 0 { axis += rank }
        guard axis >= 0, axis < rank else { throw ctx.fail("axis is out of range for rank \(rank)") }
        let indices: [Int]
        if indicesTensor.dtype.isFloatingPoint {
            // Non-finite and huge values are simply out of range.
            indices = indicesTensor.asDoubles().map { v in abs(v) < 1e15 ? Int(v.rounded(.towardZero)) : Int.max }
        } else if indicesTensor.dtype.isInteger {
            indices = indicesTensor.asInts()
        } else {
            throw ctx.fail("indices must be numeric, are \(indicesTensor.dtype)")
        }
        let outer = indicesTensor.shape[..<axis].reduce(1, *)
        let inner = indicesTensor.shape[axis...].reduce(1, *)
        var sources = [Int](repeating: 0, count: outer * depth * inner)
        for o in 0..<outer {
            for k in 0..<inner {
                var i = indices[o * inner + k]
                if i < 0 { i += depth }
                if i >= 0 && i < depth { sources[(o * depth + i) * inner + k] = 1 }
            }
        }
        var shape = indicesTensor.shape
        shape.insert(depth, at: axis)
        return ShapeOps.take(values.reshaped([2]), sources, shape: shape)
    }

    /// Compress: the slices along `axis` (or elements of the flattened input) where the condition is true.
    static func compress(_ ctx: KernelContext) throws -> Tensor {
        var data = try ctx.tensor(0)
        let condition = try ctx.tensor(1)
        guard condition.rank == 1 else { throw ctx.fail("condition must be 1-D") }
        let flags = try ShapeOps.numbers(ctx, condition, "condition").map { $0 != 0 }
        var axis = 0
        if let a = try ctx.int("axis") { axis = try ShapeOps.checkedAxis(ctx, a, rank: data.rank) } else { data = data.reshaped([data.count]) }
        let dim = data.shape[axis]
        guard flags.count <= dim else { throw ctx.fail("condition has \(flags.count) values for a dim of size \(dim)") }
        let selected = flags.enumerated().filter(\.element).map(\.offset)
        let outer = data.shape[..<axis].reduce(1, *)
        let inner = data.shape[(axis + 1)...].reduce(1, *)
        var sources = [Int]()
        for o in 0..<outer { for i in selected { for k in 0..<inner { sources.append((o * dim + i) * inner + k) } } }
        var shape = data.shape
        shape[axis] = selected.count
        return ShapeOps.take(data, sources, shape: shape)
    }

    /// NonZero: the coordinates of the non-zero elements, one row per dim, in row-major order.
    static func nonZero(_ ctx: KernelContext) throws -> Tensor {
        let x = try ctx.tensor(0)
        let flags: [Bool]
        switch x.dtype {
        case .string: flags = x.strings.map { !$0.isEmpty }
        case .complex64, .complex128: throw ctx.unsupported("element type \(x.dtype)")
        default: flags = x.dtype.isFloatingPoint ? x.asDoubles().map { $0 != 0 } : x.asInt64s().map { $0 != 0 }
        }
        let positions = flags.enumerated().filter(\.element).map(\.offset)
        let st = strides(of: x.shape)
        var out = [Int64](repeating: 0, count: x.rank * positions.count)
        for a in 0..<x.rank {
            for (j, p) in positions.enumerated() { out[a * positions.count + j] = Int64((p / st[a]) % x.shape[a]) }
        }
        return Tensor(shape: [x.rank, positions.count], out)
    }

    // MARK: Unique

    /// Unique: distinct elements (or slices along `axis`), their first indices, the inverse map and counts.
    static func unique(_ ctx: KernelContext) throws -> [Tensor] {
        var x = try ctx.tensor(0)
        let sorted = try ctx.int("sorted", 1) != 0
        var axis = 0
        if let a = try ctx.int("axis") { axis = try ShapeOps.checkedAxis(ctx, a, rank: x.rank) } else { x = x.reshaped([x.count]) }
        let order: (first: [Int], inverse: [Int], counts: [Int])
        switch try Keys(ctx, x) {
        case .real(let k): order = uniqueSlices(k, shape: x.shape, axis: axis, sorted: sorted)
        case .signed(let k): order = uniqueSlices(k, shape: x.shape, axis: axis, sorted: sorted)
        case .unsigned(let k): order = uniqueSlices(k, shape: x.shape, axis: axis, sorted: sorted)
        case .text(let k): order = uniqueSlices(k, shape: x.shape, axis: axis, sorted: sorted)
        }
        let dim = x.shape[axis]
        let outer = x.shape[..<axis].reduce(1, *)
        let inner = x.shape[(axis + 1)...].reduce(1, *)
        var sources = [Int]()
        for o in 0..<outer { for i in order.first { for k in 0..<inner { sources.append((o * dim + i) * inner + k) } } }
        var shape = x.shape
        shape[axis] = order.first.count
        return [ShapeOps.take(x, sources, shape: shape), Tensor(int64s: order.first),
                Tensor(int64s: order.inverse), Tensor(int64s: order.counts)]
    }

    /// The distinct slices along `axis` of a tensor of `shape` with element keys `keys`: the first occurrence of
    /// each (in sorted or first-seen order), each slice's position among them, and how often each occurs.
    static func uniqueSlices<K: Comparable>(_ keys: [K], shape: [Int], axis: Int, sorted: Bool) -> (first: [Int], inverse: [Int], counts: [Int]) {
        let dim = shape[axis]
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        let slices: [[K]] = (0..<dim).map { j in
            var s = [K]()
            s.reserveCapacity(outer * inner)
            for o in 0..<outer { for k in 0..<inner { s.append(keys[(o * dim + j) * inner + k]) } }
            return s
        }
        // Slices in order, equal ones adjacent, ties by position.
        let byValue = (0..<dim).sorted { a, b in
            if slices[a].lexicographicallyPrecedes(slices[b]) { return true }
            if slices[b].lexicographicallyPrecedes(slices[a]) { return false }
            return a < b
        }
        var groupOf = [Int](repeating: 0, count: dim)
        var firsts = [Int](), counts = [Int]()
        for (n, j) in byValue.enumerated() {
            if n > 0 && slices[byValue[n - 1]] == slices[j] {
                counts[counts.count - 1] += 1
            } else {
                firsts.append(j)
                counts.append(1)
            }
            groupOf[j] = firsts.count - 1
        }
        var rank = Array(0..<firsts.count)
        if !sorted {
            // Renumber the groups in order of first occurrence.
            let byFirst = (0..<firsts.count).sorted { firsts[$0] < firsts[$1] }
            for (r, g) in byFirst.enumerated() { rank[g] = r }
            firsts = byFirst.map { firsts[$0] }
            counts = byFirst.map { counts[$0] }
        }
        return (firsts, groupOf.map { rank[$0] }, counts)
    }

    // MARK: TopK, ArgMax, ArgMin

    /// TopK: the `k` largest (or smallest) elements along `axis` and their indices, ties to the lower index.
    static func topK(_ ctx: KernelContext) throws -> [Tensor] {
        let x = try ctx.tensor(0)
        let k = try ShapeOps.scalarInt(ctx, try ctx.tensor(1), "k")
        let axis = try ShapeOps.checkedAxis(ctx, try ctx.int("axis", -1), rank: x.rank)
        let largest = try ctx.int("largest", 1) != 0
        let dim = x.shape[axis]
        guard k >= 0, k <= dim else { throw ctx.fail("k = \(k) is outside 0...\(dim)") }
        let chosen: [Int]
        switch try Keys(ctx, x) {
        case .real(let keys): chosen = topIndices(keys, shape: x.shape, axis: axis, k: k, largest: largest)
        case .signed(let keys): chosen = topIndices(keys, shape: x.shape, axis: axis, k: k, largest: largest)
        case .unsigned(let keys): chosen = topIndices(keys, shape: x.shape, axis: axis, k: k, largest: largest)
        case .text(let keys): chosen = topIndices(keys, shape: x.shape, axis: axis, k: k, largest: largest)
        }
        let inner = x.shape[(axis + 1)...].reduce(1, *)
        var sources = [Int](repeating: 0, count: chosen.count)
        for (flat, i) in chosen.enumerated() {
            let o = flat / (k * inner), r = flat % inner
            sources[flat] = (o * dim + i) * inner + r
        }
        var shape = x.shape
        shape[axis] = k
        return [ShapeOps.take(x, sources, shape: shape), Tensor(shape: shape, chosen.map { Int64($0) })]
    }

    /// For each position of the output of TopK (row-major), the index along `axis` of the chosen element;
    /// ties go to the lower index.
    static func topIndices<K: Comparable>(_ keys: [K], shape: [Int], axis: Int, k: Int, largest: Bool) -> [Int] {
        let dim = shape[axis]
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        var out = [Int](repeating: 0, count: outer * k * inner)
        for o in 0..<outer {
            for r in 0..<inner {
                let base = o * dim * inner + r
                let order = (0..<dim).sorted { a, b in
                    let x = keys[base + a * inner], y = keys[base + b * inner]
                    if x == y || (!(x < y) && !(y < x)) { return a < b }
                    return largest ? y < x : x < y
                }
                for j in 0..<k { out[(o * k + j) * inner + r] = order[j] }
            }
        }
        return out
    }

    /// ArgMax and ArgMin: the index of the extreme element along `axis`, first or last among equals.
    static func argExtreme(_ ctx: KernelContext, largest: Bool) throws -> Tensor {
        let x = try ctx.tensor(0)
        let axis = try ShapeOps.checkedAxis(ctx, try ctx.int("axis", 0), rank: x.rank)
        let keepDims = try ctx.int("keepdims", 1) != 0
        let last = try ctx.int("select_last_index", 0) != 0
        let dim = x.shape[axis]
        guard dim > 0 else { throw ctx.fail("cannot reduce an empty axis") }
        let result: [Int]
        switch try Keys(ctx, x) {
        case .real(let keys): result = extremeIndices(keys, shape: x.shape, axis: axis, largest: largest, last: last)
        case .signed(let keys): result = extremeIndices(keys, shape: x.shape, axis: axis, largest: largest, last: last)
        case .unsigned(let keys): result = extremeIndices(keys, shape: x.shape, axis: axis, largest: largest, last: last)
        case .text(let keys): result = extremeIndices(keys, shape: x.shape, axis: axis, largest: largest, last: last)
        }
        var shape = x.shape
        if keepDims { shape[axis] = 1 } else { shape.remove(at: axis) }
        return Tensor(shape: shape, result.map { Int64($0) })
    }

    /// The index along `axis` of the largest (or smallest) element of each line, first or last among equals.
    static func extremeIndices<K: Comparable>(_ keys: [K], shape: [Int], axis: Int, largest: Bool, last: Bool) -> [Int] {
        let dim = shape[axis]
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        var out = [Int](repeating: 0, count: outer * inner)
        for o in 0..<outer {
            for r in 0..<inner {
                let base = o * dim * inner + r
                var best = 0
                for i in 1..<dim {
                    let v = keys[base + i * inner], b = keys[base + best * inner]
                    let better = largest ? b < v : v < b
                    let equal = !(v < b) && !(b < v)
                    if better || (last && equal) { best = i }
                }
                out[o * inner + r] = best
            }
        }
        return out
    }

    // MARK: CumSum, CumProd

    /// CumSum and CumProd along `axis`, optionally exclusive and/or reversed.
    static func cumulative(_ ctx: KernelContext, product: Bool) throws -> Tensor {
        let x = try ctx.tensor(0)
        let requestedAxis = try ShapeOps.scalarInt(ctx, try ctx.tensor(1), "axis")
        let axis = x.rank == 0 ? 0 : try ShapeOps.checkedAxis(ctx, requestedAxis, rank: x.rank)
        let exclusive = try ctx.int("exclusive", 0) != 0
        let reverse = try ctx.int("reverse", 0) != 0
        let dim = x.rank == 0 ? 1 : x.shape[axis]
        let outer = x.rank == 0 ? 1 : x.shape[..<axis].reduce(1, *)
        let inner = x.rank == 0 ? 1 : x.shape[(axis + 1)...].reduce(1, *)
        // Visit every line along `axis` in the requested direction.
        func scan<T>(_ values: [T], identity: T, _ combine: (T, T) -> T) -> [T] {
            var out = values
            for o in 0..<outer {
                for r in 0..<inner {
                    var running = identity
                    for step in 0..<dim {
                        let i = reverse ? dim - 1 - step : step
                        let p = (o * dim + i) * inner + r
                        if exclusive {
                            out[p] = running
                            running = combine(running, values[p])
                        } else {
                            running = combine(running, values[p])
                            out[p] = running
                        }
                    }
                }
            }
            return out
        }
        if x.dtype.isFloatingPoint {
            let out = product ? scan(x.asDoubles(), identity: 1.0, *) : scan(x.asDoubles(), identity: 0.0, +)
            return Tensor(dtype: x.dtype, shape: x.shape, doubles: out)
        }
        guard x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
        let values = x.asInt64s()
        let out = product ? scan(values, identity: Int64(1), { $0 &* $1 }) : scan(values, identity: Int64(0), { $0 &+ $1 })
        return Tensor(dtype: x.dtype, shape: x.shape, int64s: out)
    }
}
