import CKilnKernels
import KilnIR

/// Reshape, Flatten, Squeeze, Unsqueeze, Identity: the same bytes seen with another shape (no copy).
final class ViewOperation: Operation {
    let kind: String
    let label: String
    let node: Node
    let x: Int
    /// The shape or axes input (-1 when the op has none or it is omitted).
    let shapeInput: Int
    let output: Int

    var inputs: [Int] { [x, shapeInput] }
    var outputs: [Int] { [output] }

    init(node: Node, x: Int, shapeInput: Int, output: Int) {
        kind = node.op.name
        label = node.displayName
        self.node = node
        self.x = x
        self.shapeInput = shapeInput
        self.output = output
    }

    func plan(_ b: PlanBuilder) throws {
        let xs = try b.shape(x)
        var spec: [Int]?
        if shapeInput >= 0 {
            spec = try b.requireKnownInts(shapeInput)
        }
        let shape: [Int]
        switch node.op.name {
        case "Reshape":
            guard let spec else { throw b.invalid("Reshape needs a shape input") }
            let allowZero = try node.int("allowzero", 0) != 0
            var out = spec.enumerated().map { i, d in d == 0 && !allowZero ? (i < xs.count ? xs[i] : 0) : d }
            let total = xs.reduce(1, *)
            if let infer = out.firstIndex(of: -1) {
                let rest = out.enumerated().filter { $0.offset != infer }.reduce(1) { $0 * $1.element }
                guard rest != 0, total % rest == 0 else { throw b.invalid("cannot reshape \(xs) to \(spec)") }
                out[infer] = total / rest
            }
            guard out.allSatisfy({ $0 >= 0 }), out.reduce(1, *) == total else { throw b.invalid("cannot reshape \(xs) to \(spec)") }
            shape = out
        case "Flatten":
            var axis = try node.int("axis", 1)
            if axis < 0 { axis += xs.count }
            guard axis >= 0, axis <= xs.count else { throw b.invalid("axis out of range for \(xs)") }
            shape = [xs[..<axis].reduce(1, *), xs[axis...].reduce(1, *)]
        case "Squeeze":
            if let spec {
                let axes = Set(spec.map { $0 < 0 ? $0 + xs.count : $0 })
                guard axes.allSatisfy({ $0 >= 0 && $0 < xs.count && xs[$0] == 1 }) else {
                    throw b.invalid("cannot squeeze axes \(spec) of \(xs)")
                }
                shape = xs.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
            } else {
                shape = xs.filter { $0 != 1 }
            }
        case "Unsqueeze":
            guard let spec else { throw b.invalid("Unsqueeze needs axes") }
            let rank = xs.count + spec.count
            let axes = Set(spec.map { $0 < 0 ? $0 + rank : $0 })
            guard axes.count == spec.count, axes.allSatisfy({ $0 >= 0 && $0 < rank }) else {
                throw b.invalid("bad axes \(spec) for \(xs)")
            }
            var it = xs.makeIterator()
            shape = (0..<rank).map { axes.contains($0) ? 1 : it.next()! }
        default:
            shape = xs
        }
        try b.defineView(output, of: x, shape: shape)
    }
}

/// Shape: known while planning (static shapes per plan).
final class ShapeOperation: Operation {
    let kind = "Shape"
    let label: String
    let x: Int
    let output: Int
    let start: Int
    let end: Int?

    var inputs: [Int] { [x] }
    var outputs: [Int] { [output] }

    init(node: Node, x: Int, output: Int) throws {
        label = node.displayName
        self.x = x
        self.output = output
        start = try node.int("start", 0)
        end = try node.ints("end")?.first
    }

    func plan(_ b: PlanBuilder) throws {
        let xs = try b.shape(x)
        let r = xs.count
        func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + r : v, 0), r) }
        let s = clamp(start), e = clamp(end ?? r)
        b.defineKnown(output, Tensor(int64s: s < e ? Array(xs[s..<e]) : []))
    }
}

/// Transpose of any fixed-width element type.
final class TransposeOperation: Operation {
    let kind = "Transpose"
    let label: String
    let x: Int
    let output: Int
    let perm: [Int]?

    var inputs: [Int] { [x] }
    var outputs: [Int] { [output] }

    init(node: Node, x: Int, output: Int) throws {
        label = node.displayName
        self.x = x
        self.output = output
        perm = try node.ints("perm")
    }

    func plan(_ b: PlanBuilder) throws {
        let xs = try b.shape(x)
        let dtype = try b.dtype(x)
        guard let width = dtype.byteWidth, dtype != .string else { throw b.unsupported("element type \(dtype)") }
        let perm = self.perm ?? Array((0..<xs.count).reversed())
        guard perm.count == xs.count, Set(perm) == Set(0..<xs.count) else { throw b.invalid("perm \(perm) does not fit \(xs)") }
        let outShape = perm.map { xs[$0] }
        // Drop axes of size 1, then merge input axes that stay adjacent and in order.
        let kept = (0..<xs.count).filter { xs[$0] != 1 }
        let position = Dictionary(uniqueKeysWithValues: kept.enumerated().map { ($0.element, $0.offset) })
        var groups: [[Int]] = []
        for p in perm where xs[p] != 1 {
            if let last = groups.last?.last, position[last]! + 1 == position[p]! {
                groups[groups.count - 1].append(p)
            } else {
                groups.append([p])
            }
        }
        let order = groups.map { $0[0] }.sorted()
        let mergedShape = order.map { first in groups.first { $0[0] == first }!.reduce(1) { $0 * xs[$1] } }
        let mergedPerm = groups.map { g in order.firstIndex(of: g[0])! }
        if mergedPerm == Array(0..<mergedPerm.count) {
            try b.defineView(output, of: x, shape: outShape)
            return
        }
        try b.define(output, shape: outShape, dtype: dtype)
        let (x, output) = (self.x, self.output)
        if width == 4 && mergedShape.count <= 4 {
            let pad = 4 - mergedShape.count
            let shape4 = [Int](repeating: 1, count: pad) + mergedShape
            let perm4 = Array(0..<pad) + mergedPerm.map { $0 + pad }
            b.step { frame in
                kiln_transpose_4d(shape4, perm4, frame.f(x), frame.f(output))
            }
        } else {
            b.step { frame in
                permute(frame.raw(x), frame.raw(output), shape: mergedShape, perm: mergedPerm, width: width)
            }
        }
    }
}

/// Copies a tensor of `shape` (elements of `width` bytes) into `dst` permuted by `perm` (ONNX Transpose).
func permute(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, shape: [Int], perm: [Int], width: Int) {
    let rank = shape.count
    var inStrides = [Int](repeating: 1, count: rank)
    for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * shape[i + 1] }
    let outShape = perm.map { shape[$0] }
    let strides = perm.map { inStrides[$0] }
    let total = shape.reduce(1, *)
    var index = [Int](repeating: 0, count: rank)
    var source = 0
    for o in 0..<total {
        (dst + o * width).copyMemory(from: src + source * width, byteCount: width)
        var axis = rank - 1
        while axis >= 0 {
            index[axis] += 1
            source += strides[axis]
            if index[axis] < outShape[axis] { break }
            source -= strides[axis] * index[axis]
            index[axis] = 0
            axis -= 1
        }
    }
}

/// Gather along one axis, for any fixed-width element type, with int32 or int64 indices.
final class GatherOperation: Operation {
    let kind = "Gather"
    let label: String
    let data: Int
    let indices: Int
    let output: Int
    let axis: Int

    var inputs: [Int] { [data, indices] }
    var outputs: [Int] { [output] }

    init(node: Node, data: Int, indices: Int, output: Int) throws {
        label = node.displayName
        self.data = data
        self.indices = indices
        self.output = output
        axis = try node.int("axis", 0)
    }

    func plan(_ b: PlanBuilder) throws {
        let ds = try b.shape(data), dtype = try b.dtype(data)
        let ishape = try b.shape(indices), itype = try b.dtype(indices)
        guard let width = dtype.byteWidth, dtype != .string else { throw b.unsupported("element type \(dtype)") }
        guard itype == .int64 || itype == .int32 else { throw b.unsupported("indices of type \(itype)") }
        let a = axis < 0 ? axis + ds.count : axis
        guard a >= 0, a < ds.count else { throw b.invalid("axis \(axis) is out of range for \(ds)") }
        let outShape = Array(ds[..<a]) + ishape + Array(ds[(a + 1)...])
        let outer = ds[..<a].reduce(1, *), axisLen = ds[a], inner = ds[(a + 1)...].reduce(1, *)
        let count = ishape.reduce(1, *)
        let rowBytes = inner * width
        func gather(_ src: UnsafeRawPointer, _ idx: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) throws {
            for i in 0..<count {
                var j = itype == .int64 ? Int(idx.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                                        : Int(idx.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                if j < 0 { j += axisLen }
                guard j >= 0, j < axisLen else {
                    throw KilnError(.runtime, "Gather '\(label)': index \(j) is out of range for an axis of \(axisLen)")
                }
                for o in 0..<outer {
                    (dst + (o * count + i) * rowBytes).copyMemory(from: src + (o * axisLen + j) * rowBytes, byteCount: rowBytes)
                }
            }
        }
        if let kd = b.knownValue(data), let ki = b.knownValue(indices), outShape.reduce(1, *) <= 1 << 16 {
            let storage = try TensorStorage(byteCount: outShape.reduce(1, *) * width) { dst in
                if let d = dst.baseAddress { try gather(kd.rawBytes!.baseAddress!, ki.rawBytes!.baseAddress!, d) }
            }
            b.defineKnown(output, Tensor(dtype: dtype, shape: outShape, storage: storage))
            return
        }
        try b.define(output, shape: outShape, dtype: dtype)
        if outShape.reduce(1, *) == 0 { return }
        let (data, indices, output) = (self.data, self.indices, self.output)
        b.step { frame in try gather(frame.raw(data), frame.raw(indices), frame.raw(output)) }
    }
}

/// Concat of any fixed-width element type.
final class ConcatOperation: Operation {
    let kind = "Concat"
    let label: String
    let operands: [Int]
    let output: Int
    let axis: Int

    var inputs: [Int] { operands }
    var outputs: [Int] { [output] }

    init(node: Node, operands: [Int], output: Int) throws {
        label = node.displayName
        self.operands = operands
        self.output = output
        axis = try node.int("axis", 0)
    }

    func plan(_ b: PlanBuilder) throws {
        let shapes = try operands.map { try b.shape($0) }
        let dtype = try b.dtype(operands[0])
        guard let width = dtype.byteWidth, dtype != .string else { throw b.unsupported("element type \(dtype)") }
        let rank = shapes[0].count
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0, a < rank else { throw b.invalid("axis \(axis) is out of range for rank \(rank)") }
        for (v, s) in zip(operands, shapes) {
            guard try b.dtype(v) == dtype, s.count == rank,
                  s.enumerated().allSatisfy({ $0.offset == a || $0.element == shapes[0][$0.offset] }) else {
                throw b.invalid("inputs \(shapes) do not concatenate along axis \(axis)")
            }
        }
        var outShape = shapes[0]
        outShape[a] = shapes.reduce(0) { $0 + $1[a] }
        let outer = outShape[..<a].reduce(1, *)
        let chunks = shapes.map { $0[a...].reduce(1, *) * width }
        let outChunk = outShape[a...].reduce(1, *) * width
        func concat(_ sources: [UnsafeRawPointer], _ dst: UnsafeMutableRawPointer) {
            var offset = 0
            for (src, chunk) in zip(sources, chunks) {
                for o in 0..<outer where chunk > 0 {
                    (dst + o * outChunk + offset).copyMemory(from: src + o * chunk, byteCount: chunk)
                }
                offset += chunk
            }
        }
        let knowns = operands.map { b.knownValue($0) }
        if knowns.allSatisfy({ $0 != nil }), outShape.reduce(1, *) <= 1 << 16 {
            let storage = TensorStorage(byteCount: outShape.reduce(1, *) * width) { dst in
                if let d = dst.baseAddress { concat(knowns.map { $0!.rawBytes?.baseAddress ?? UnsafeRawPointer(d) }, d) }
            }
            b.defineKnown(output, Tensor(dtype: dtype, shape: outShape, storage: storage))
            return
        }
        try b.define(output, shape: outShape, dtype: dtype)
        if outShape.reduce(1, *) == 0 { return }
        let (operands, output) = (self.operands, self.output)
        b.step { frame in concat(operands.map { UnsafeRawPointer(frame.raw($0)) }, frame.raw(output)) }
    }
}

/// Cast between float32, int64, int32 and bool.
final class CastOperation: Operation {
    let kind = "Cast"
    let label: String
    let x: Int
    let output: Int
    let to: DType
    /// Cast's `saturate` (float8 targets): out-of-range values clamp to the largest finite value.
    let saturate: Bool

    var inputs: [Int] { [x] }
    var outputs: [Int] { [output] }

    init(node: Node, x: Int, output: Int) throws {
        label = node.displayName
        self.x = x
        self.output = output
        let code = try node.int("to", 1)
        guard let to = DType(onnxCode: code) else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (Cast): unknown element type \(code)")
        }
        self.to = to
        saturate = try node.int("saturate", 1) != 0
    }

    static let types: Set<DType> = [.float32, .int64, .int32, .bool]

    func plan(_ b: PlanBuilder) throws {
        let xs = try b.shape(x), from = try b.dtype(x)
        if from == to {
            try b.defineView(output, of: x, shape: xs)
            return
        }
        guard Self.types.contains(from), Self.types.contains(to) else {
            try Self.planConversion(b, x: x, output: output, to: to, saturate: saturate)
            return
        }
        if let k = b.knownValue(x), k.count <= 1 << 16 {
            b.defineKnown(output, to == .float32 ? Tensor(dtype: to, shape: xs, doubles: k.asDoubles())
                                                 : Tensor(dtype: to, shape: xs, int64s: k.asInt64s()))
            return
        }
        try b.define(output, shape: xs, dtype: to)
        let count = xs.reduce(1, *)
        let (x, output, to) = (self.x, self.output, self.to)
        // The casts around integer arithmetic (int32 sums to float32 and back) as typed loops; the same
        // values as the general path below (int32 → float32 rounds once either way).
        if from == .int32 && to == .float32 {
            b.step { frame in
                let src = UnsafePointer(frame.raw(x).assumingMemoryBound(to: Int32.self)), dst = frame.raw(output).assumingMemoryBound(to: Float.self)
                for i in 0..<count { dst[i] = Float(src[i]) }
            }
            return
        }
        b.step { frame in
            let src = UnsafeRawPointer(frame.raw(x)), dst = frame.raw(output)
            func read(_ i: Int) -> Double {
                switch from {
                case .float32: Double(src.load(fromByteOffset: i * 4, as: Float.self))
                case .int64: Double(src.load(fromByteOffset: i * 8, as: Int64.self))
                case .int32: Double(src.load(fromByteOffset: i * 4, as: Int32.self))
                default: src.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
                }
            }
            for i in 0..<count {
                let v = read(i)
                switch to {
                case .float32: dst.storeBytes(of: Float(v), toByteOffset: i * 4, as: Float.self)
                case .int64: dst.storeBytes(of: v.isFinite ? Int64(exactly: v.rounded(.towardZero)) ?? (v < 0 ? .min : .max) : 0,
                                            toByteOffset: i * 8, as: Int64.self)
                case .int32: dst.storeBytes(of: v.isFinite ? Int32(truncatingIfNeeded: Int64(exactly: v.rounded(.towardZero)) ?? 0) : 0,
                                            toByteOffset: i * 4, as: Int32.self)
                default: dst.storeBytes(of: v != 0 ? UInt8(1) : 0, toByteOffset: i, as: UInt8.self)
                }
            }
        }
    }
}

extension CastOperation {
    /// `x` converted to `to`, for the types of `Support.castTypes`: integers wrap to the target's width
    /// (4- and 2-bit ones included), floats truncate toward zero into integers, 64-bit integers round once
    /// into float32, and every floating-point target rounds from the value in Double (float16 directly,
    /// bfloat16 and the 8- and 4-bit formats through float32). `saturate` (Cast's attribute, for the float8
    /// targets) clamps values beyond the format's range, infinities included, to its largest finite value;
    /// without it they become infinity or NaN as the format has them. float4e2m1 always saturates and
    /// has no NaN: NaN becomes its negative-zero code, as kiln.reference does.
    static func convert(_ x: Tensor, to: DType, saturate: Bool = true) -> Tensor {
        let from = x.dtype
        if from == to { return x }
        if lowPrecisionFloats.contains(to) {
            let values: [Double] = from == .uint64 ? x.elements(as: UInt64.self).map { Double($0) } : x.asDoubles()
            let codes = values.map { v -> UInt8 in
                var f = Float(v)
                if to == .float4e2m1 {
                    return f.isNaN ? 0x08 : FloatFormats.encode(f, to, saturate: true)
                }
                if saturate, f.isInfinite { f = f < 0 ? -.greatestFiniteMagnitude : .greatestFiniteMagnitude }
                return FloatFormats.encode(f, to, saturate: saturate)
            }
            return Tensor(dtype: to, shape: x.shape, bitPatterns: codes)
        }
        if to.isInteger || to == .bool {
            if from.isInteger || from == .bool { return Tensor(dtype: to, shape: x.shape, int64s: x.asInt64s()) }
            return Tensor(dtype: to, shape: x.shape, doubles: x.asDoubles())
        }
        if to == .float32 && from == .int64 { return Tensor(shape: x.shape, x.elements(as: Int64.self).map { Float($0) }) }
        if to == .float32 && from == .uint64 { return Tensor(shape: x.shape, x.elements(as: UInt64.self).map { Float($0) }) }
        let values: [Double] = from == .uint64 ? x.elements(as: UInt64.self).map { Double($0) } : x.asDoubles()
        if to == .float16 { return Tensor(dtype: .float16, shape: x.shape, bitPatterns: values.map { Float16($0).bitPattern }) }
        return Tensor(dtype: to, shape: x.shape, doubles: values)
    }

    /// The 8- and 4-bit float formats kiln.cpu converts to (float8e8m0, whose rounding mode is an attribute,
    /// only from).
    static let lowPrecisionFloats: Set<DType> = [.float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float4e2m1]

    /// Defines `output` as `x` converted to `to` by `convert` (while planning when `x` is known and small).
    static func planConversion(_ b: PlanBuilder, x: Int, output: Int, to: DType, saturate: Bool = true) throws {
        let xs = try b.shape(x), from = try b.dtype(x)
        guard Support.castTypes.contains(from), Support.castTypes.contains(to), let inWidth = from.byteWidth else {
            throw b.unsupported("Cast from \(from) to \(to)")
        }
        let count = xs.reduce(1, *)
        try b.compute([(output, xs, to)], from: [x]) { p, o in
            let storage = TensorStorage(byteCount: count * inWidth) { dst in
                if count > 0 { dst.baseAddress!.copyMemory(from: p[0], byteCount: count * inWidth) }
            }
            let converted = convert(Tensor(dtype: from, shape: xs, storage: storage), to: to, saturate: saturate)
            if let bytes = converted.rawBytes, bytes.count > 0 { o[0].copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        }
    }
}

extension SwiftOps {
    /// Why kiln.cpu cannot run a BitCast node, or nil: both types must be ones it holds, byte-wide or
    /// wider (4- and 2-bit values are held one per byte, sign-extended or not, so their bytes are not the
    /// packed bits), and of one width.
    static func bitCastRejection(_ node: Node, _ facts: SupportFacts) -> String? {
        guard let code = try? node.int("to", 0), let to = DType(onnxCode: code) else { return "BitCast needs a known 'to' type" }
        guard Support.castTypes.contains(to), to.packedBits >= 8 else { return "BitCast to \(to) is not supported" }
        if let from = facts.types[node.input(0)], from.packedBits != to.packedBits {
            return "BitCast from \(from) to \(to): the types differ in width"
        }
        return nil
    }

    /// BitCast: the bytes of the input read as another type of the same width.
    static func bitCast(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 1, ins[0] >= 0, outs.count >= 1 else { throw b.invalid("needs an input") }
        let code = try node.int("to", 0)
        guard let to = DType(onnxCode: code), Support.castTypes.contains(to), to.packedBits >= 8 else {
            throw b.unsupported("BitCast to type \(code)")
        }
        let xs = try b.shape(ins[0]), from = try b.dtype(ins[0])
        guard from.packedBits == to.packedBits, let width = to.byteWidth else {
            throw b.invalid("BitCast from \(from) to \(to): the types differ in width")
        }
        let bytes = xs.reduce(1, *) * width
        try b.compute([(outs[0], xs, to)], from: [ins[0]]) { p, o in
            if bytes > 0 { o[0].copyMemory(from: p[0], byteCount: bytes) }
        }
    }
}
