import CKilnKernels
import KilnIR

/// The QDQ form of an int8 residual sum, DequantizeLinear(a) + DequantizeLinear(b) → QuantizeLinear, as one pass
/// over the bytes: per element `(a − a_zero)·a_scale + (b − b_zero)·b_scale` in float32, then quantized as
/// QuantizeLinear quantizes (kiln_qadd, in blocks that stay in L1). The same float32 operations in the same order as the unfused
/// nodes, so the same bytes; the dequantized tensors are never written. Per-tensor scales and zero points; `a`
/// and `b` of one shape (the lowering fuses only statically equal shapes).
final class QuantizedAddOperation: Operation {
    let kind = "QDQ(Add)"
    let label: String
    /// a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point (-1 when absent).
    let a: Int, aScale: Int, aZero: Int, b: Int, bScale: Int, bZero: Int, yScale: Int, yZero: Int
    let y: Int

    var inputs: [Int] { [a, aScale, aZero, b, bScale, bZero, yScale, yZero] }
    var outputs: [Int] { [y] }

    /// An operation over the value ids given (-1 for an absent zero point).
    init(label: String, a: Int, aScale: Int, aZero: Int, b: Int, bScale: Int, bZero: Int, yScale: Int, yZero: Int, y: Int) {
        self.label = label
        (self.a, self.aScale, self.aZero, self.b, self.bScale, self.bZero) = (a, aScale, aZero, b, bScale, bZero)
        (self.yScale, self.yZero, self.y) = (yScale, yZero, y)
    }

    func plan(_ builder: PlanBuilder) throws {
        let shape = try builder.shape(a)
        guard try builder.shape(b) == shape else {
            throw builder.invalid("the two sides of the quantized Add have shapes \(shape) and \(try builder.shape(b))")
        }
        let at = try builder.dtype(a), bt = try builder.dtype(b)
        let outType = yZero >= 0 ? try builder.dtype(yZero) : DType.uint8
        for (id, t) in [(a, at), (b, bt), (y, outType)] where t != .uint8 && t != .int8 {
            throw builder.invalid("'\(builder.name(id))' is \(t); the quantized Add takes uint8 or int8")
        }
        let count = shape.reduce(1, *)
        let chunks = splitRange(count, parts: builder.threads, granule: 64)
        let (a, aScale, aZero, b, bScale, bZero, yScale, yZero, y) = (a, aScale, aZero, b, bScale, bZero, yScale, yZero, y)
        try builder.define(y, shape: shape, dtype: outType)
        builder.step { frame in
            /// A zero point (0 when absent).
            func zero(_ id: Int, _ t: DType) -> Int32 {
                id < 0 ? 0 : (t == .uint8 ? Int32(frame.raw(id).load(as: UInt8.self)) : Int32(frame.raw(id).load(as: Int8.self)))
            }
            // x − zero in integers (exact, as the float32 subtraction of the unfused DequantizeLinear is): an int8
            // byte v read as the unsigned v ^ 0x80 less 128.
            let xa: UInt8 = at == .int8 ? 0x80 : 0, xb: UInt8 = bt == .int8 ? 0x80 : 0
            let oa = zero(aZero, at) + (at == .int8 ? 128 : 0), ob = zero(bZero, bt) + (bt == .int8 ? 128 : 0)
            let sa = frame.raw(aScale).load(as: Float.self), sb = frame.raw(bScale).load(as: Float.self)
            let sy = frame.raw(yScale).load(as: Float.self), zy = zero(yZero, outType)
            let ap = UnsafePointer(frame.raw(a).assumingMemoryBound(to: UInt8.self))
            let bp = UnsafePointer(frame.raw(b).assumingMemoryBound(to: UInt8.self))
            let out = frame.raw(y).assumingMemoryBound(to: UInt8.self)
            frame.pool.parallelFor(chunks.count) { u in
                let range = chunks[u], at = range.lowerBound
                kiln_qadd(ap + at, xa, oa, sa, bp + at, xb, ob, sb, range.count, sy, zy, outType == .int8 ? 1 : 0, out + at)
            }
        }
    }
}
