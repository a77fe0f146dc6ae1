import KilnIR

/// Arithmetic, comparison, logical, bitwise and unary math ops, with ONNX broadcasting.
enum ElementwiseOps {
    static func register(into table: inout KernelTable) {
        table.add("Add") { ctx in [.tensor(try arithmetic(ctx, { $0 + $1 }, { $0 &+ $1 }, { $0 &+ $1 }))] }
        table.add("Sub") { ctx in [.tensor(try arithmetic(ctx, { $0 - $1 }, { $0 &- $1 }, { $0 &- $1 }))] }
        table.add("Mul") { ctx in [.tensor(try arithmetic(ctx, { $0 * $1 }, { $0 &* $1 }, { $0 &* $1 }))] }
        table.add("Relu") { ctx in [.tensor(Real.unary(try ctx.tensor(0)) { max($0, 0) })] }
    }

    /// A binary arithmetic op over two tensors of one numeric type, broadcast together: floats through
    /// `Double`, signed and narrow integers through `Int64` (wrapped back to their width), uint64 as itself.
    static func arithmetic(_ ctx: KernelContext, _ real: (Double, Double) -> Double,
                           _ signed: (Int64, Int64) throws -> Int64,
                           _ unsigned: (UInt64, UInt64) throws -> UInt64) throws -> Tensor {
        let a = try ctx.tensor(0), b = try ctx.tensor(1)
        guard a.dtype == b.dtype else { throw ctx.fail("input types \(a.dtype) and \(b.dtype) differ") }
        let shape = try ctx.broadcastShape([a, b])
        if a.dtype.isFloatingPoint { return Real.binary(a, b, shape: shape, real) }
        if a.dtype == .uint64 { return try Typed.binary(a, b, UInt64.self, shape: shape, unsigned) }
        guard a.dtype.isInteger else { throw ctx.unsupported("element type \(a.dtype)") }
        let x = a.asInt64s(), y = b.asInt64s()
        let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
        let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
        var out = [Int64](repeating: 0, count: xi.count)
        for k in 0..<xi.count { out[k] = try signed(x[xi[k]], y[yi[k]]) }
        return Tensor(dtype: a.dtype, shape: shape, int64s: out)
    }
}
