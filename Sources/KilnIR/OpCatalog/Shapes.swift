/// Ops that make, read or rearrange shapes: Constant, Shape, Reshape, Transpose, Concat, Slice, Pad, ….
extension OpCatalog {
    static func registerShapes(into catalog: inout OpCatalog) {
        catalog.define(["Identity"]) { inference in
            inference.set(0, inference.fact(0))
            inference.setKnown(0, inference.known(0))
            if let c = inference.constant(0) { inference.constantResults[0] = c }
        }
        catalog.define(["Constant"]) { $0.constantNode() }
        catalog.define(["Shape"]) { $0.shapeOp() }
        catalog.define(["Size"]) { inference in
            inference.set(0, .int64, [])
            if let s = inference.shape(0) { inference.setKnown(0, KnownValue(shape: [], elements: [DimMath.product(s)])) }
        }
        catalog.define(["ConstantOfShape"]) { $0.constantOfShape() }
        catalog.define(["Reshape"], canonical: CanonicalForm(attributeInputs: [AttributeInput("shape", input: 1, since: 5)])) {
            try $0.reshape()
        }
        catalog.define(["Flatten"]) { try $0.flatten() }
        catalog.define(["Transpose"]) { try $0.transpose() }
        catalog.define(["Concat"]) { try $0.concat() }
        catalog.define(["Split"]) { try $0.split() }
        catalog.define(["Slice"], canonical: CanonicalForm(attributeInputs: [
            AttributeInput("starts", input: 1, since: 10, required: true), AttributeInput("ends", input: 2, since: 10, required: true),
            AttributeInput("axes", input: 3, since: 10),
        ])) { try $0.slice() }
        let axesInput = CanonicalForm(attributeInputs: [AttributeInput("axes", input: 1, since: 13)])
        catalog.define(["Unsqueeze"], canonical: axesInput) { try $0.unsqueeze() }
        catalog.define(["Squeeze"], canonical: axesInput) { try $0.squeeze() }
        catalog.define(["Expand"]) { try $0.expand() }
        catalog.define(["Tile"]) { $0.tile() }
        catalog.define(["Pad"]) { try $0.pad() }
        catalog.define(["DepthToSpace"]) { $0.depthSpace(toSpace: true) }
        catalog.define(["SpaceToDepth"]) { $0.depthSpace(toSpace: false) }
        catalog.define(["CenterCropPad"]) { try $0.centerCropPad() }
        catalog.define(["Col2Im"]) { $0.col2Im() }
    }
}

extension NodeInference {
    /// Constant: the tensor (or scalar/list) given by its one value attribute.
    mutating func constantNode() {
        for (key, attribute) in node.attributes {
            switch (key, attribute) {
            case ("value", .tensor(let t)), ("sparse_value", .tensor(let t)):
                set(0, t.dtype, t.shape.map { .fixed($0) })
                constantResults[0] = t
                setKnown(0, KnownValue(t))
            case ("value_float", .float(let v)):
                set(0, .float32, [])
                constantResults[0] = Tensor(scalar: v)
            case ("value_floats", .floats(let v)):
                set(0, .float32, [.fixed(v.count)])
                constantResults[0] = Tensor(shape: [v.count], v)
            case ("value_int", .int(let v)):
                set(0, .int64, [])
                setKnown(0, KnownValue(shape: [], elements: [.fixed(v)]))
                constantResults[0] = Tensor(scalar: Int64(v))
            case ("value_ints", .ints(let v)):
                set(0, .int64, [.fixed(v.count)])
                setKnown(0, KnownValue(shape: [v.count], elements: v.map { .fixed($0) }))
                constantResults[0] = Tensor(int64s: v)
            case ("value_string", .string):
                set(0, .string, [])
            case ("value_strings", .strings(let v)):
                set(0, .string, [.fixed(v.count)])
            default:
                continue
            }
        }
    }

    /// Shape: an int64 vector of (a slice of) the input's dims; its elements are known values.
    mutating func shapeOp() {
        guard let s = shape(0) else { return set(0, .int64, [.unknown]) }
        let r = s.count
        func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + r : v, 0), r) }
        let start = clamp(int("start", 0))
        let end = clamp(node.attributes["end"] == nil ? r : int("end", r))
        let dims = start < end ? Array(s[start..<end]) : []
        set(0, .int64, [.fixed(dims.count)])
        setKnown(0, KnownValue(shape: [dims.count], elements: dims))
    }

    /// ConstantOfShape: the shape comes from input 0's known value, the type from the `value` attribute.
    mutating func constantOfShape() {
        var dtype = DType.float32
        var fill: Tensor? = nil
        if case .tensor(let t)? = node.attributes["value"] {
            dtype = t.dtype
            fill = t
        }
        if let k = known(0) {
            set(0, dtype, k.elements)
            if let dims = k.ints, let fill, dtype.isInteger, fill.count == 1,
               dims.allSatisfy({ (0...KnownValue.maxCount).contains($0) }) {
                let n = dims.reduce(1, &*)
                if n <= KnownValue.maxCount {
                    setKnown(0, KnownValue(shape: dims, elements: Array(repeating: .fixed(fill.asInts()[0]), count: n)))
                }
            }
        } else if let s = shape(0), s.count == 1, let n = s[0].value, (0...Self.maxRank).contains(n) {
            set(0, dtype, Array(repeating: .unknown, count: n))
        } else {
            set(0, dtype, nil)
        }
    }

    /// Reshape: the target from input 1's known value; 0 copies the input dim (unless `allowzero`),
    /// -1 is inferred from the element count, with symbols cancelling.
    mutating func reshape() throws {
        let allowZero = int("allowzero", 0) != 0
        let input = shape(0)
        guard let target = known(1) else {
            if let s = shape(1), s.count == 1, let n = s[0].value, (0...Self.maxRank).contains(n) {
                set(0, dtype(0), Array(repeating: .unknown, count: n))
            } else {
                set(0, dtype(0), nil)
            }
            return
        }
        var out: [Dim] = []
        var missing: Int? = nil
        for (j, e) in target.elements.enumerated() {
            switch e {
            case .fixed(0) where !allowZero:
                if let input {
                    guard j < input.count else { throw failure("shape entry \(j) is 0 but the input has rank \(input.count)") }
                    out.append(input[j])
                } else {
                    out.append(.unknown)
                }
            case .fixed(-1):
                guard missing == nil else { throw failure("shape has more than one -1") }
                missing = j
                out.append(.unknown)
            case .fixed(let v) where v < -1:
                throw failure("shape entry \(v) is negative")
            default:
                out.append(e)
            }
        }
        if let input {
            if let m = missing {
                guard let d = DimMath.inferredReshapeDim(input: input, output: out, missing: m) else {
                    throw failure("cannot reshape \(describe(input)) to \(describe(out))")
                }
                out[m] = d
            } else if case .fixed(let a) = DimMath.product(input), case .fixed(let b) = DimMath.product(out),
                      input.allSatisfy({ $0.value != nil }), out.allSatisfy({ $0.value != nil }), a != b {
                throw failure("cannot reshape \(describe(input)) (\(a) elements) to \(describe(out)) (\(b) elements)")
            }
        }
        set(0, dtype(0), out)
        let dims = out.compactMap(\.value)
        if let k = known(0), dims.count == out.count, dims.allSatisfy({ (0...KnownValue.maxCount).contains($0) }),
           dims.reduce(1, &*) == k.count {
            setKnown(0, KnownValue(shape: dims, elements: k.elements))
        }
    }

    /// Flatten: a matrix of the dims before and from `axis`.
    mutating func flatten() throws {
        guard let s = shape(0) else { return set(0, dtype(0), [.unknown, .unknown]) }
        let raw = int("axis", 1)
        guard raw >= -s.count, raw <= s.count else { throw failure("axis \(raw) is out of range for rank \(s.count)") }
        let a = raw < 0 ? raw + s.count : raw
        set(0, dtype(0), [DimMath.product(Array(s[..<a])), DimMath.product(Array(s[a...]))])
    }

    /// Transpose by `perm` (default: reversed).
    mutating func transpose() throws {
        guard let s = shape(0) else {
            return set(0, dtype(0), ints("perm").map { Array(repeating: Dim.unknown, count: $0.count) })
        }
        let perm = ints("perm") ?? Array(s.indices.reversed())
        guard perm.count == s.count, Set(perm) == Set(s.indices) else {
            throw failure("perm \(perm) is not a permutation of \(s.count) axes")
        }
        set(0, dtype(0), perm.map { s[$0] })
    }

    /// Concat along `axis`: the axis dims add up, the others must agree.
    mutating func concat() throws {
        let dtype = firstDType
        let shapes = node.inputs.indices.filter { present($0) }.map { shape($0) }
        guard let rank = shapes.lazy.compactMap({ $0?.count }).first else { return set(0, dtype, nil) }
        let a = try axis(int("axis", 0), rank: rank)
        var out = Array(repeating: Dim.unknown, count: rank)
        var total: Dim = .fixed(0)
        var first = true
        for s in shapes {
            guard let s else {
                total = .unknown
                continue
            }
            guard s.count == rank else { throw failure("inputs have ranks \(rank) and \(s.count)") }
            for j in 0..<rank where j != a {
                if first {
                    out[j] = s[j]
                } else {
                    guard let u = DimMath.unify(out[j], s[j]) else {
                        throw failure("inputs disagree on dim \(j): \(out[j]) and \(s[j])")
                    }
                    out[j] = u
                }
            }
            total = DimMath.add(total, s[a])
            first = false
        }
        out[a] = total
        set(0, dtype, out)
        // Known values of rank-1 pieces concatenate.
        if rank == 1 {
            var elements: [Dim] = []
            for i in node.inputs.indices where present(i) {
                guard let k = known(i) else { return }
                elements += k.elements
            }
            setKnown(0, KnownValue(shape: [elements.count], elements: elements))
        }
    }

    /// Split: sizes from input 1, or `num_outputs` / the number of outputs.
    mutating func split() throws {
        let dtype = dtype(0)
        guard let s = shape(0) else {
            for i in 0..<outputCount { set(i, dtype, nil) }
            return
        }
        let a = try axis(int("axis", 0), rank: s.count)
        var sizes: [Dim]
        if present(1) {
            if let given = knownInts(1) {
                guard given.count == outputCount else { throw failure("split has \(given.count) sizes for \(outputCount) outputs") }
                if let d = s[a].value, given.reduce(0, &+) != d {
                    throw failure("split sizes \(given) do not add up to \(d)")
                }
                sizes = given.map { .fixed($0) }
            } else {
                sizes = Array(repeating: .unknown, count: outputCount)
            }
        } else if let d = s[a].value, outputCount > 0, Self.isSane(d) {
            let n = outputCount
            let chunk = (d + n - 1) / n
            if node.attributes["num_outputs"] != nil {
                sizes = (0..<n).map { .fixed(max(0, min(chunk, d - $0 * chunk))) }
            } else {
                guard d % n == 0 else { throw failure("dim \(d) does not split into \(n) equal parts") }
                sizes = Array(repeating: .fixed(d / n), count: n)
            }
        } else {
            sizes = Array(repeating: .unknown, count: outputCount)
        }
        for i in 0..<outputCount {
            var out = s
            out[a] = sizes[i]
            set(i, dtype, out)
        }
    }

    /// Slice with constant (or known) starts, ends, axes and steps.
    mutating func slice() throws {
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        var out = s
        let axes: [Int]
        if present(3) {
            guard let given = knownInts(3) else {
                return set(0, dtype(0), Array(repeating: .unknown, count: s.count))
            }
            axes = try given.map { try axis($0, rank: s.count) }
        } else if let n = known(1)?.count ?? shape(1)?.first?.value {
            axes = Array(0..<min(n, s.count))
        } else {
            return set(0, dtype(0), Array(repeating: .unknown, count: s.count))
        }
        let starts = knownInts(1), ends = knownInts(2)
        let steps = present(4) ? knownInts(4) : Array(repeating: 1, count: axes.count)
        for (j, a) in axes.enumerated() {
            guard let starts, let ends, let steps, j < starts.count, j < ends.count, j < steps.count else {
                out[a] = .unknown
                continue
            }
            let (start, end, step) = (starts[j], ends[j], steps[j])
            guard step != 0 else { throw failure("slice step is 0") }
            guard let d = s[a].value else {
                // Only the whole-axis slice is known for a symbolic dim.
                out[a] = start == 0 && step == 1 && end >= Int(Int32.max) ? s[a] : .unknown
                continue
            }
            out[a] = .fixed(Self.sliceCount(dim: d, start: start, end: end, step: step))
        }
        set(0, dtype(0), out)
        if let k = known(0), k.shape.count == 1, axes == [0], let starts, let ends, let steps,
           let first = starts.first, let last = ends.first, let step = steps.first, step != 0 {
            let n = Self.sliceCount(dim: k.count, start: first, end: last, step: step)
            let begin = Self.sliceStart(dim: k.count, start: first, step: step)
            let picked = (0..<n).map { k.elements[begin + $0 * step] }
            setKnown(0, KnownValue(shape: [n], elements: picked))
        }
    }

    /// The first index a slice of a dim of size `dim` reads.
    static func sliceStart(dim: Int, start: Int, step: Int) -> Int {
        var s = start < 0 ? start &+ dim : start
        s = step > 0 ? min(max(s, 0), dim) : min(max(s, -1), dim - 1)
        return s
    }

    /// The number of elements a slice of a dim of size `dim` takes.
    static func sliceCount(dim: Int, start: Int, end: Int, step: Int) -> Int {
        let s = sliceStart(dim: dim, start: start, step: step)
        var e = end < 0 ? end &+ dim : end
        e = step > 0 ? min(max(e, 0), dim) : min(max(e, -1), dim - 1)
        if step > 0 { return e > s ? (e - s - 1) / step + 1 : 0 }
        let stride = step == Int.min ? Int.max : -step
        return s > e ? (s - e - 1) / stride + 1 : 0
    }

    /// Unsqueeze with axes from input 1.
    mutating func unsqueeze() throws {
        guard let s = shape(0), let axes = knownInts(1) else {
            return set(0, dtype(0), nil)
        }
        let rank = s.count + axes.count
        let normalized = try axes.map { try axis($0, rank: rank, what: "axis") }
        guard Set(normalized).count == normalized.count else { throw failure("axes \(axes) repeat an axis") }
        var out: [Dim] = []
        var next = s.makeIterator()
        for j in 0..<rank { out.append(normalized.contains(j) ? .fixed(1) : next.next()!) }
        set(0, dtype(0), out)
        if let k = known(0) { setKnown(0, KnownValue(shape: out.map { $0.value ?? 0 }, elements: k.elements)) }
    }

    /// Squeeze with axes from input 1, or every dim of size 1.
    mutating func squeeze() throws {
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        var out: [Dim] = []
        if present(1) {
            guard let axes = knownInts(1) else { return set(0, dtype(0), nil) }
            let normalized = Set(try axes.map { try axis($0, rank: s.count) })
            for (j, d) in s.enumerated() {
                if normalized.contains(j) {
                    if let v = d.value, v != 1 { throw failure("cannot squeeze dim \(j) of size \(v)") }
                } else {
                    out.append(d)
                }
            }
        } else {
            guard s.allSatisfy({ $0.value != nil }) else { return set(0, dtype(0), nil) }
            out = s.filter { $0 != .fixed(1) }
        }
        set(0, dtype(0), out)
        if let k = known(0) { setKnown(0, KnownValue(shape: out.map { $0.value ?? 0 }, elements: k.elements)) }
    }

    /// Expand: the input broadcast against the target shape (input 1).
    mutating func expand() throws {
        let target: [Dim]
        if let k = known(1) {
            target = k.elements
        } else if let s = shape(1), s.count == 1, let n = s[0].value, (0...Self.maxRank).contains(n) {
            target = Array(repeating: .unknown, count: n)
        } else {
            return set(0, dtype(0), nil)
        }
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        guard let out = DimMath.broadcast(s, target) else {
            throw failure("shape \(describe(s)) cannot expand to \(describe(target))")
        }
        set(0, dtype(0), out)
    }

    /// Tile by `repeats` (input 1).
    mutating func tile() {
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        guard let repeats = known(1), repeats.count == s.count else {
            return set(0, dtype(0), Array(repeating: .unknown, count: s.count))
        }
        set(0, dtype(0), zip(s, repeats.elements).map { DimMath.multiply($0, $1) })
    }

    /// Pad by `pads` (input 1), optionally on `axes` (input 3).
    mutating func pad() throws {
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        var out = s
        let axes: [Int]
        if present(3) {
            guard let given = knownInts(3) else { return set(0, dtype(0), Array(repeating: .unknown, count: s.count)) }
            axes = try given.map { try axis($0, rank: s.count) }
        } else {
            axes = Array(s.indices)
        }
        guard let pads = knownInts(1) else { return set(0, dtype(0), Array(repeating: .unknown, count: s.count)) }
        guard pads.count == 2 * axes.count else { throw failure("pads has \(pads.count) entries for \(axes.count) axes") }
        for (j, a) in axes.enumerated() {
            out[a] = DimMath.add(s[a], .fixed(pads[j] &+ pads[j + axes.count]))
        }
        set(0, dtype(0), out)
    }

    /// DepthToSpace and SpaceToDepth.
    mutating func depthSpace(toSpace: Bool) {
        guard let s = shape(0), s.count == 4 else { return set(0, dtype(0), shape(0)) }
        let b = int("blocksize", 1)
        let bb = Dim.fixed(b &* b), bd = Dim.fixed(b)
        if toSpace {
            set(0, dtype(0), [s[0], DimMath.divide(s[1], bb), DimMath.multiply(s[2], bd), DimMath.multiply(s[3], bd)])
        } else {
            set(0, dtype(0), [s[0], DimMath.multiply(s[1], bb), DimMath.divide(s[2], bd), DimMath.divide(s[3], bd)])
        }
    }

    /// CenterCropPad: the dims on `axes` become the known sizes of input 1.
    mutating func centerCropPad() throws {
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        let axes = try (ints("axes") ?? Array(s.indices)).map { try axis($0, rank: s.count) }
        var out = s
        for (j, a) in axes.enumerated() { out[a] = known(1).flatMap { $0.count == axes.count ? $0.elements[j] : nil } ?? .unknown }
        set(0, dtype(0), out)
    }

    /// Col2Im: `[N, C / ∏block, image…]` from the known image and block shapes.
    mutating func col2Im() {
        guard let x = shape(0), x.count == 3, let image = known(1), let block = knownInts(2) else { return set(0, dtype(0), nil) }
        set(0, dtype(0), [x[0], DimMath.divide(x[1], .fixed(block.reduce(1, &*)))] + image.elements)
    }
}
