import KilnIR

/// Sequence and optional ops: SequenceEmpty/Construct/Insert/Erase/At/Length, SplitToSequence,
/// ConcatFromSequence, SequenceMap, Optional, OptionalHasElement, OptionalGetElement.
///
/// Also holds the type-agnostic tensor helpers (`concat`, `split`, `stack`, `unstack`) that the
/// control-flow kernels share.
enum SequenceOps {
    static func register(into table: inout KernelTable) {
        table.add("SequenceEmpty") { ctx in
            let code = try ctx.int("dtype", DType.float32.onnxCode)
            guard let dtype = DType(onnxCode: code) else { throw ctx.fail("unknown dtype \(code)") }
            return [.sequence([], elementType: .tensor(TensorType(dtype, nil)))]
        }
        table.add("SequenceConstruct") { ctx in
            let items = try (0..<ctx.inputCount).map { try ctx.value($0) }
            return [.sequence(items, elementType: items.first.flatMap(elementType(of:)))]
        }
        table.add("SequenceInsert") { ctx in
            let (items, type) = try sequence(ctx, 0)
            let value = try ctx.value(1)
            var position = items.count
            if let p = try ctx.optionalTensor(2) { position = try index(ctx, p, count: items.count, allowEnd: true) }
            var out = items
            out.insert(value, at: position)
            return [.sequence(out, elementType: type ?? elementType(of: value))]
        }
        table.add("SequenceErase") { ctx in
            let (items, type) = try sequence(ctx, 0)
            var position = items.count - 1
            if let p = try ctx.optionalTensor(1) { position = try index(ctx, p, count: items.count, allowEnd: false) }
            guard position >= 0 else { throw ctx.fail("cannot erase from an empty sequence") }
            var out = items
            out.remove(at: position)
            return [.sequence(out, elementType: type)]
        }
        table.add("SequenceAt") { ctx in
            let (items, _) = try sequence(ctx, 0)
            return [items[try index(ctx, try ctx.tensor(1), count: items.count, allowEnd: false)]]
        }
        table.add("SequenceLength") { ctx in
            let (items, _) = try sequence(ctx, 0)
            return [.tensor(Tensor(scalar: Int64(items.count)))]
        }
        table.add("SplitToSequence") { ctx in [try splitToSequence(ctx)] }
        table.add("ConcatFromSequence") { ctx in [try concatFromSequence(ctx)] }
        table.add("SequenceMap") { ctx in try sequenceMap(ctx) }
        table.add("Optional") { ctx in
            let type = try ctx.type("type")
            if ctx.inputCount > 0, let v = ctx.inputs[0] {
                return [.optional(v, type: type ?? elementType(of: v))]
            }
            return [.optional(nil, type: type)]
        }
        table.add("OptionalHasElement") { ctx in
            var has = false
            if ctx.inputCount > 0, let v = ctx.inputs[0] {
                if case .optional(let inner, _) = v { has = inner != nil } else { has = true }
            }
            return [.tensor(Tensor(scalar: has))]
        }
        table.add("OptionalGetElement") { ctx in
            let v = try ctx.value(0)
            if case .optional(let inner, _) = v {
                guard let inner else { throw ctx.fail("the optional input is empty") }
                return [inner]
            }
            return [v]
        }
    }

    // MARK: kernels

    /// SplitToSequence: equal chunks (scalar `split`), given sizes (1-D `split`) or single slices.
    static func splitToSequence(_ ctx: KernelContext) throws -> RuntimeValue {
        let input = try ctx.tensor(0)
        let axis = try ctx.axis(try ctx.int("axis", 0), rank: input.rank)
        guard input.rank > 0 else { throw ctx.fail("input must have rank >= 1") }
        let length = input.shape[axis]
        let type = ValueType.tensor(TensorType(input.dtype, nil))
        guard let splitInput = try ctx.optionalTensor(1) else {
            let keepdims = try ctx.int("keepdims", 1) != 0
            let parts = split(input, axis: axis, sizes: Array(repeating: 1, count: length))
            let items = parts.map { part -> RuntimeValue in
                if keepdims { return .tensor(part) }
                var shape = part.shape
                shape.remove(at: axis)
                return .tensor(part.reshaped(shape))
            }
            return .sequence(items, elementType: type)
        }
        var sizes: [Int]
        if splitInput.rank == 0 {
            let chunk = splitInput.asInts()[0]
            guard chunk > 0 else { throw ctx.fail("split must be positive") }
            sizes = Array(repeating: chunk, count: length / chunk)
            if length % chunk != 0 { sizes.append(length % chunk) }
        } else {
            sizes = splitInput.asInts()
            guard sizes.allSatisfy({ $0 >= 0 && $0 <= length }), sizes.reduce(0, +) == length else {
                throw ctx.fail("split sizes \(sizes) do not add up to \(length)")
            }
        }
        return .sequence(split(input, axis: axis, sizes: sizes).map { .tensor($0) }, elementType: type)
    }

    /// ConcatFromSequence: concatenation along `axis`, or stacking along a new axis when `new_axis` is 1.
    static func concatFromSequence(_ ctx: KernelContext) throws -> RuntimeValue {
        let (items, _) = try sequence(ctx, 0)
        let tensors = try items.map { item -> Tensor in
            guard let t = item.tensor else { throw ctx.fail("sequence elements must be tensors") }
            return t
        }
        guard let first = tensors.first else { throw ctx.fail("the sequence is empty") }
        let newAxis = try ctx.int("new_axis", 0) != 0
        let rawAxis = try ctx.int("axis")
        guard let rawAxis else { throw ctx.fail("attribute 'axis' is required") }
        if newAxis {
            let axis = try ctx.axis(rawAxis, rank: first.rank + 1)
            return .tensor(try stack(ctx, tensors, axis: axis))
        }
        let axis = try ctx.axis(rawAxis, rank: first.rank)
        return .tensor(try concat(ctx, tensors, axis: axis))
    }

    /// SequenceMap: runs the body once per element of the first input, slicing every sequence input.
    static func sequenceMap(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let body = try ctx.graph("body")
        let (first, _) = try sequence(ctx, 0)
        let inputs = try (0..<ctx.inputCount).map { try ctx.value($0) }
        for input in inputs {
            if case .sequence(let items, _) = input, items.count != first.count {
                throw ctx.fail("sequence inputs have different lengths")
            }
        }
        var outputs = [[RuntimeValue]](repeating: [], count: body.outputs.count)
        for i in 0..<first.count {
            let args = inputs.map { input -> RuntimeValue in
                if case .sequence(let items, _) = input { return items[i] }
                return input
            }
            let results = try ctx.runSubgraph(body, args)
            for (k, r) in results.enumerated() { outputs[k].append(r) }
        }
        return outputs.enumerated().map { k, items -> RuntimeValue? in
            var type: ValueType? = items.first.flatMap(elementType(of:))
            if type == nil, case .sequence(let e)? = body.outputs[k].type { type = e }
            if type == nil { type = body.outputs[k].type }
            return .sequence(items, elementType: type)
        }
    }

    // MARK: helpers

    /// The items and element type of sequence input `index`.
    static func sequence(_ ctx: KernelContext, _ index: Int) throws -> ([RuntimeValue], ValueType?) {
        guard case .sequence(let items, let type) = try ctx.value(index) else {
            throw ctx.fail("input \(index) must be a sequence")
        }
        return (items, type)
    }

    /// A position tensor made non-negative: in `[-count, count)`, or `[-count, count]` when `allowEnd`.
    static func index(_ ctx: KernelContext, _ position: Tensor, count: Int, allowEnd: Bool) throws -> Int {
        guard position.count == 1 else { throw ctx.fail("position must be a scalar") }
        let p = position.asInts()[0]
        let i = p < 0 ? p + count : p
        guard i >= 0, allowEnd ? i <= count : i < count else {
            throw ctx.fail("position \(p) is out of range for a sequence of \(count)")
        }
        return i
    }

    /// The type of a run-time value, with unknown tensor dims (used as a sequence's element type).
    static func elementType(of value: RuntimeValue) -> ValueType? {
        switch value {
        case .tensor(let t): return .tensor(TensorType(t.dtype, nil))
        case .sequence(let items, let e): return .sequence(e ?? items.first.flatMap(elementType(of:)) ?? .tensor(TensorType(.float32, nil)))
        case .optional(let v, let type): return type.map { .optional($0) } ?? v.flatMap(elementType(of:)).map { .optional($0) }
        case .map: return nil
        }
    }

    // MARK: type-agnostic tensor helpers

    /// `shape` viewed as (outer, size of `axis`, inner).
    static func split3(_ shape: [Int], axis: Int) -> (outer: Int, length: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    /// `t` cut along `axis` into consecutive pieces of the given sizes (which must add up to the axis length).
    static func split(_ t: Tensor, axis: Int, sizes: [Int]) -> [Tensor] {
        let (outer, length, inner) = split3(t.shape, axis: axis)
        var starts: [Int] = []
        var running = 0
        for s in sizes { starts.append(running); running += s }
        precondition(running == length, "split sizes do not cover the axis")
        func shape(_ size: Int) -> [Int] { var s = t.shape; s[axis] = size; return s }
        if t.dtype == .string {
            let all = t.strings
            return zip(starts, sizes).map { start, size in
                var out: [String] = []
                out.reserveCapacity(outer * size * inner)
                for o in 0..<outer {
                    let base = (o * length + start) * inner
                    out.append(contentsOf: all[base..<(base + size * inner)])
                }
                return Tensor(shape: shape(size), strings: out)
            }
        }
        let width = t.dtype.byteWidth!
        let src = t.rawBytes!
        return zip(starts, sizes).map { start, size in
            let block = size * inner * width
            let storage = TensorStorage(byteCount: outer * block) { dst in
                guard block > 0 else { return }
                for o in 0..<outer {
                    let from = (o * length + start) * inner * width
                    dst.baseAddress!.advanced(by: o * block).copyMemory(from: src.baseAddress!.advanced(by: from), byteCount: block)
                }
            }
            return Tensor(dtype: t.dtype, shape: shape(size), storage: storage)
        }
    }

    /// `tensors` joined along `axis`; they must agree in element type and in every other dim.
    static func concat(_ ctx: KernelContext, _ tensors: [Tensor], axis: Int) throws -> Tensor {
        guard let first = tensors.first else { throw ctx.fail("nothing to concatenate") }
        for t in tensors {
            guard t.dtype == first.dtype, t.rank == first.rank,
                  (0..<t.rank).allSatisfy({ $0 == axis || t.shape[$0] == first.shape[$0] }) else {
                throw ctx.fail("cannot concatenate \(t.dtype)\(t.shape) with \(first.dtype)\(first.shape) along axis \(axis)")
            }
        }
        var shape = first.shape
        shape[axis] = tensors.reduce(0) { $0 + $1.shape[axis] }
        try ctx.checkedCount(shape)
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        if first.dtype == .string {
            var out: [String] = []
            out.reserveCapacity(shape.reduce(1, *))
            let all = tensors.map(\.strings)
            for o in 0..<outer {
                for (t, s) in zip(tensors, all) {
                    let block = t.shape[axis] * inner
                    out.append(contentsOf: s[(o * block)..<((o + 1) * block)])
                }
            }
            return Tensor(shape: shape, strings: out)
        }
        let width = first.dtype.byteWidth!
        let total = shape.reduce(1, *) * width
        let storage = TensorStorage(byteCount: total) { dst in
            var offset = 0
            for o in 0..<outer {
                for t in tensors {
                    let block = t.shape[axis] * inner * width
                    guard block > 0 else { continue }
                    dst.baseAddress!.advanced(by: offset).copyMemory(from: t.rawBytes!.baseAddress!.advanced(by: o * block), byteCount: block)
                    offset += block
                }
            }
        }
        return Tensor(dtype: first.dtype, shape: shape, storage: storage)
    }

    /// `tensors` (of one shape) stacked along a new axis `axis` (in `0...rank`).
    static func stack(_ ctx: KernelContext, _ tensors: [Tensor], axis: Int) throws -> Tensor {
        guard let first = tensors.first else { throw ctx.fail("nothing to stack") }
        for t in tensors where t.shape != first.shape {
            throw ctx.fail("cannot stack shapes \(t.shape) and \(first.shape)")
        }
        let expanded = tensors.map { t -> Tensor in
            var s = t.shape
            s.insert(1, at: axis)
            return t.reshaped(s)
        }
        return try concat(ctx, expanded, axis: axis)
    }

    /// `t` sliced along `axis` into its `t.shape[axis]` sub-tensors, each without that axis.
    static func unstack(_ t: Tensor, axis: Int) -> [Tensor] {
        var shape = t.shape
        shape.remove(at: axis)
        return split(t, axis: axis, sizes: Array(repeating: 1, count: t.shape[axis])).map { $0.reshaped(shape) }
    }
}
