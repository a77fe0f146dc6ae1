import KilnIR

/// The shared way Swift-only operations (indexing, shape arithmetic, reductions…) define their outputs:
/// computed while planning when every input is known and the result is small (the integer arithmetic that
/// models do on `Shape` outputs), otherwise as a step that runs on the plan's buffers.
extension PlanBuilder {
    /// Largest number of elements folded while planning.
    static let foldLimit = 1 << 16

    /// Defines `outputs` (id, shape, element type) and computes them with `body`, which receives the raw
    /// bytes of `inputs` (a dummy pointer for an omitted one, -1) and of the outputs.
    func compute(_ outputs: [(id: Int, shape: [Int], dtype: DType)], from inputs: [Int],
                 fold: Bool = true,
                 _ body: @escaping ([UnsafeRawPointer], [UnsafeMutableRawPointer]) throws -> Void) throws {
        try computeSplit(outputs, from: inputs, fold: fold) { sources, targets, _ in try body(sources, targets) }
    }

    /// `compute` for a body that divides its work: it calls `split(n, work)`, which runs `work(0)` … `work(n − 1)`
    /// on the plan's threads when the step runs (one after another when the value is folded while planning).
    func computeSplit(_ outputs: [(id: Int, shape: [Int], dtype: DType)], from inputs: [Int],
                      fold: Bool = true,
                      _ body: @escaping ([UnsafeRawPointer], [UnsafeMutableRawPointer], (Int, (Int) -> Void) -> Void) throws -> Void) throws {
        // Element counts overflow-checked first: the shapes may come from declared dims (checkedBytes throws
        // past one value's limit, which every output must fit anyway).
        var total = 0
        for o in outputs { total += try checkedBytes(o.shape, width: 1, name: name(o.id)) }
        let knowns = inputs.map { $0 < 0 ? nil : knownValue($0) }
        let dummy = UnsafeMutableRawPointer(bitPattern: 64)!
        if fold, total <= Self.foldLimit, zip(inputs, knowns).allSatisfy({ $0.0 < 0 || $0.1 != nil }) {
            var memory: [UnsafeMutableRawPointer] = []
            defer { for m in memory { m.deallocate() } }
            var bytes: [Int] = []
            for o in outputs {
                let n = try checkedBytes(o.shape, width: o.dtype.byteWidth ?? 1, name: name(o.id))
                let m = UnsafeMutableRawPointer.allocate(byteCount: max(n, 8), alignment: 64)
                m.initializeMemory(as: UInt8.self, repeating: 0, count: max(n, 8))
                memory.append(m)
                bytes.append(n)
            }
            let sources = knowns.map { $0?.rawBytes?.baseAddress ?? UnsafeRawPointer(dummy) }
            try withExtendedLifetime(knowns) { try body(sources, memory) { n, work in for u in 0..<n { work(u) } } }
            for (k, o) in outputs.enumerated() where o.id >= 0 {
                let storage = TensorStorage(byteCount: bytes[k]) { dst in
                    if bytes[k] > 0 { dst.baseAddress!.copyMemory(from: memory[k], byteCount: bytes[k]) }
                }
                defineKnown(o.id, Tensor(dtype: o.dtype, shape: o.shape, storage: storage))
            }
            return
        }
        // Outputs nobody reads still need bytes to be written to: give them scratch.
        var scratchOf: [Int: Int] = [:]
        for (k, o) in outputs.enumerated() {
            if o.id >= 0 {
                try define(o.id, shape: o.shape, dtype: o.dtype)
            } else {
                scratchOf[k] = try scratch(bytes: checkedBytes(o.shape, width: o.dtype.byteWidth ?? 1, name: "unused output"))
            }
        }
        let ids = outputs.map(\.id)
        step { frame in
            let sources = inputs.map { $0 < 0 ? UnsafeRawPointer(dummy) : UnsafeRawPointer(frame.raw($0)) }
            let targets = ids.enumerated().map { k, id in id >= 0 ? frame.raw(id) : frame.scratch(scratchOf[k]!) }
            try body(sources, targets) { n, work in frame.pool.parallelFor(n, work) }
        }
    }

    /// The value of `id` when known while planning, as integers; otherwise a `PlanNeedsValue` that makes
    /// the executable run the operations before this one and plan the rest with the value known.
    func requireKnownInts(_ id: Int) throws -> [Int] {
        guard let t = knownValue(id) else { throw PlanNeedsValue(value: id, operation: -1) }
        return t.asInts()
    }

    /// The tensor of `id` when known while planning; otherwise a `PlanNeedsValue` (see `requireKnownInts`).
    func requireKnown(_ id: Int) throws -> Tensor {
        guard let t = knownValue(id) else { throw PlanNeedsValue(value: id, operation: -1) }
        return t
    }
}

/// Thrown while planning by an operation whose output shape depends on the value of `value`, which is
/// not known yet: `CPUExecutable` runs operations `..<operation` first and plans the rest with it known.
struct PlanNeedsValue: Error {
    var value: Int
    var operation: Int
}

/// Reading and writing elements of the types kiln.cpu holds, by element type.
enum Element {
    @inline(__always)
    static func float(_ p: UnsafeRawPointer, _ t: DType, _ i: Int) -> Float {
        switch t {
        case .float32: p.load(fromByteOffset: i &* 4, as: Float.self)
        case .int64: Float(p.load(fromByteOffset: i &* 8, as: Int64.self))
        case .int32: Float(p.load(fromByteOffset: i &* 4, as: Int32.self))
        case .bool: p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
        default: Float(narrow(p, t, i))
        }
    }

    /// Element `i` of the narrow integer types (int8, int16, uint8, uint16, uint32).
    @inline(__always)
    static func narrow(_ p: UnsafeRawPointer, _ t: DType, _ i: Int) -> Int64 {
        switch t {
        case .int8: Int64(p.load(fromByteOffset: i, as: Int8.self))
        case .uint8: Int64(p.load(fromByteOffset: i, as: UInt8.self))
        case .int16: Int64(p.loadUnaligned(fromByteOffset: i &* 2, as: Int16.self))
        case .uint16: Int64(p.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self))
        case .uint32: Int64(p.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self))
        default: preconditionFailure("kiln.cpu: element type \(t) read as an integer")
        }
    }

    /// Stores `v` wrapped to a narrow integer type (int8, int16, uint8, uint16, uint32).
    @inline(__always)
    static func storeNarrow(_ v: Int64, _ p: UnsafeMutableRawPointer, _ t: DType, _ i: Int) {
        switch t {
        case .int8: p.storeBytes(of: Int8(truncatingIfNeeded: v), toByteOffset: i, as: Int8.self)
        case .uint8: p.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
        case .int16: p.storeBytes(of: Int16(truncatingIfNeeded: v), toByteOffset: i &* 2, as: Int16.self)
        case .uint16: p.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: i &* 2, as: UInt16.self)
        case .uint32: p.storeBytes(of: UInt32(truncatingIfNeeded: v), toByteOffset: i &* 4, as: UInt32.self)
        default: preconditionFailure("kiln.cpu: element type \(t) written as an integer")
        }
    }

    @inline(__always)
    static func double(_ p: UnsafeRawPointer, _ t: DType, _ i: Int) -> Double {
        switch t {
        case .float32: Double(p.load(fromByteOffset: i &* 4, as: Float.self))
        case .int64: Double(p.load(fromByteOffset: i &* 8, as: Int64.self))
        case .int32: Double(p.load(fromByteOffset: i &* 4, as: Int32.self))
        case .bool: p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
        default: Double(narrow(p, t, i))
        }
    }

    @inline(__always)
    static func int(_ p: UnsafeRawPointer, _ t: DType, _ i: Int) -> Int64 {
        switch t {
        case .int64: p.load(fromByteOffset: i &* 8, as: Int64.self)
        case .int32: Int64(p.load(fromByteOffset: i &* 4, as: Int32.self))
        case .float32: floatToInt(p.load(fromByteOffset: i &* 4, as: Float.self))
        case .bool: Int64(p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0)
        default: narrow(p, t, i)
        }
    }

    @inline(__always)
    static func floatToInt(_ v: Float) -> Int64 {
        v.isFinite ? Int64(exactly: v.rounded(.towardZero)) ?? (v < 0 ? .min : .max) : 0
    }

    @inline(__always)
    static func store(float v: Float, _ p: UnsafeMutableRawPointer, _ t: DType, _ i: Int) {
        switch t {
        case .float32: p.storeBytes(of: v, toByteOffset: i &* 4, as: Float.self)
        case .int64: p.storeBytes(of: v.isFinite ? Int64(exactly: v.rounded(.towardZero)) ?? (v < 0 ? .min : .max) : 0,
                                  toByteOffset: i &* 8, as: Int64.self)
        case .int32: p.storeBytes(of: v.isFinite ? Int32(truncatingIfNeeded: Int64(exactly: v.rounded(.towardZero)) ?? 0) : 0,
                                  toByteOffset: i &* 4, as: Int32.self)
        case .bool: p.storeBytes(of: UInt8(v != 0 ? 1 : 0), toByteOffset: i, as: UInt8.self)
        default: storeNarrow(floatToInt(v), p, t, i)
        }
    }

    @inline(__always)
    static func store(int v: Int64, _ p: UnsafeMutableRawPointer, _ t: DType, _ i: Int) {
        switch t {
        case .int64: p.storeBytes(of: v, toByteOffset: i &* 8, as: Int64.self)
        case .int32: p.storeBytes(of: Int32(truncatingIfNeeded: v), toByteOffset: i &* 4, as: Int32.self)
        case .float32: p.storeBytes(of: Float(v), toByteOffset: i &* 4, as: Float.self)
        case .bool: p.storeBytes(of: UInt8(v != 0 ? 1 : 0), toByteOffset: i, as: UInt8.self)
        default: storeNarrow(v, p, t, i)
        }
    }
}

/// Row-major strides of `shape`.
func contiguousStrides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var running = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        s[i] = running
        running *= shape[i]
    }
    return s
}

/// Normalizes axis `a` of a rank-`rank` tensor (negative counts from the end), or nil when out of range.
func normalizedAxis(_ a: Int, rank: Int) -> Int? {
    let n = a < 0 ? a + rank : a
    return n >= 0 && n < max(rank, 1) ? n : nil
}

/// Visits every row of a broadcast of `operands` (shapes) to `out`: `body` gets the output offset, each
/// operand's offset (elements) and inner stride, and the row length. Output dims that every operand walks
/// alike (contiguously, or all repeating) are merged first, so a row is as long as the broadcast allows: a
/// [1, C, H, W] + [1, C, 1, 1] sum is C rows of H·W, not C·H rows of W.
func forEachBroadcastRow(out fullOut: [Int], operands: [[Int]],
                         _ body: (_ outOffset: Int, _ offsets: UnsafeMutableBufferPointer<Int>, _ strides: UnsafeBufferPointer<Int>, _ n: Int) throws -> Void) rethrows {
    let m = operands.count
    // Each operand's strides in output dims (0 where it broadcasts).
    var fullStrides = [[Int]](repeating: [Int](repeating: 0, count: fullOut.count), count: m)
    for (k, s) in operands.enumerated() {
        var running = 1
        for i in stride(from: s.count - 1, through: 0, by: -1) {
            let j = i + fullOut.count - s.count
            fullStrides[k][j] = s[i] == 1 ? 0 : running
            running *= s[i]
        }
    }
    let total = fullOut.reduce(1, *)
    if total == 0 { return }
    // Dims of size 1 dropped; a dim merged into the one outside it when every operand's outer stride is its
    // inner stride times the inner size.
    var out: [Int] = [], strides = [[Int]](repeating: [], count: m)
    for axis in fullOut.indices where fullOut[axis] != 1 {
        if let last = out.last, (0..<m).allSatisfy({ strides[$0].last! == fullStrides[$0][axis] * fullOut[axis] }) {
            out[out.count - 1] = last * fullOut[axis]
            for k in 0..<m { strides[k][strides[k].count - 1] = fullStrides[k][axis] }
        } else {
            out.append(fullOut[axis])
            for k in 0..<m { strides[k].append(fullStrides[k][axis]) }
        }
    }
    let rank = out.count
    let n = rank == 0 ? 1 : out[rank - 1]
    let inner = (0..<m).map { rank == 0 ? 0 : strides[$0][rank - 1] }
    let rows = total / n
    var index = [Int](repeating: 0, count: max(rank - 1, 0))
    var offsets = [Int](repeating: 0, count: m)
    try inner.withUnsafeBufferPointer { innerStrides in
        try offsets.withUnsafeMutableBufferPointer { offs in
            for row in 0..<rows {
                try body(row * n, offs, innerStrides, n)
                // Advance the odometer over the outer dims.
                var axis = rank - 2
                while axis >= 0 {
                    index[axis] += 1
                    for k in 0..<m { offs[k] += strides[k][axis] }
                    if index[axis] < out[axis] { break }
                    for k in 0..<m { offs[k] -= strides[k][axis] * index[axis] }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }
}
