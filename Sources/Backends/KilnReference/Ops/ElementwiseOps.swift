#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// Arithmetic, comparison, logical, bitwise and unary math ops, with ONNX broadcasting.
enum ElementwiseOps {
    /// Registers every elementwise kernel.
    static func register(into table: inout KernelTable) {
        registerArithmetic(into: &table)
        registerUnaryMath(into: &table)
        registerComparisonAndLogic(into: &table)
        registerSelection(into: &table)
        registerActivations(into: &table)
    }

    // MARK: - Arithmetic

    /// Add, Sub, Mul, Div, Mod, Pow and the variadic Sum, Mean, Max, Min.
    static func registerArithmetic(into table: inout KernelTable) {
        table.add("Add") { ctx in [.tensor(try arithmetic(ctx, { $0 + $1 }, { $0 &+ $1 }, { $0 &+ $1 }, float: { $0 + $1 }))] }
        table.add("Sub") { ctx in [.tensor(try arithmetic(ctx, { $0 - $1 }, { $0 &- $1 }, { $0 &- $1 }, float: { $0 - $1 }))] }
        table.add("Mul") { ctx in [.tensor(try arithmetic(ctx, { $0 * $1 }, { $0 &* $1 }, { $0 &* $1 }, float: { $0 * $1 }))] }
        table.add("Div") { ctx in
            [.tensor(try arithmetic(ctx, { $0 / $1 }, truncatingDivide, { $1 == 0 ? 0 : $0 / $1 }, float: { $0 / $1 }))]
        }
        table.add("Mod") { ctx in
            let fmodMode = try ctx.int("fmod", 0) != 0
            let signed: (Int64, Int64) -> Int64 = { x, y in fmodMode ? truncatingRemainder(x, y) : flooredRemainder(x, y) }
            let unsigned: (UInt64, UInt64) -> UInt64 = { x, y in y == 0 ? 0 : x % y }
            // Floating-point Mod is C's fmod (the sign of the dividend) whichever way `fmod` is set.
            let real: (Double, Double) -> Double = { x, y in fmod(x, y) }
            return [.tensor(try arithmetic(ctx, real, signed, unsigned))]
        }
        table.add("Pow") { ctx in [.tensor(try power(ctx))] }
        table.add("Sum") { ctx in
            [.tensor(try variadic(ctx) { a, b, shape in
                try binaryNumeric(ctx, a, b, shape: shape, { $0 + $1 }, { $0 &+ $1 }, { $0 &+ $1 }, float: { $0 + $1 })
            })]
        }
        table.add("Mean") { ctx in
            let total = try variadic(ctx) { a, b, shape in
                try binaryNumeric(ctx, a, b, shape: shape, { $0 + $1 }, { $0 &+ $1 }, { $0 &+ $1 }, float: { $0 + $1 })
            }
            let n = Double(ctx.inputs.compactMap { $0 }.count)
            if total.dtype.isFloatingPoint { return [.tensor(unaryReal(total) { $0 / n })] }
            let divisor = Int64(n)
            return [.tensor(try integerUnary(ctx, total, { $0 / divisor }, { $0 / UInt64(divisor) }))]
        }
        table.add("Max") { ctx in
            [.tensor(try variadic(ctx) { a, b, shape in
                try binaryNumeric(ctx, a, b, shape: shape, { x, y in x.isNaN || y.isNaN ? .nan : Swift.max(x, y) },
                                  { Swift.max($0, $1) }, { Swift.max($0, $1) })
            })]
        }
        table.add("Min") { ctx in
            [.tensor(try variadic(ctx) { a, b, shape in
                try binaryNumeric(ctx, a, b, shape: shape, { x, y in x.isNaN || y.isNaN ? .nan : Swift.min(x, y) },
                                  { Swift.min($0, $1) }, { Swift.min($0, $1) })
            })]
        }
    }

    /// A binary arithmetic op over two tensors of one numeric type, broadcast together: floats through
    /// `Double` (float32 through `float` when given), signed and narrow integers through `Int64` (wrapped
    /// back to their width), uint64 as itself.
    static func arithmetic(_ ctx: KernelContext, _ real: (Double, Double) -> Double,
                           _ signed: (Int64, Int64) throws -> Int64,
                           _ unsigned: (UInt64, UInt64) throws -> UInt64,
                           float: ((Float, Float) -> Float)? = nil) throws -> Tensor {
        let a = try ctx.tensor(0), b = try ctx.tensor(1)
        let shape = try ctx.broadcastShape([a, b])
        return try binaryNumeric(ctx, a, b, shape: shape, real, signed, unsigned, float: float)
    }

    /// `arithmetic` over two given tensors already known to broadcast to `shape`.
    static func binaryNumeric(_ ctx: KernelContext, _ a: Tensor, _ b: Tensor, shape: [Int],
                              _ real: (Double, Double) -> Double,
                              _ signed: (Int64, Int64) throws -> Int64,
                              _ unsigned: (UInt64, UInt64) throws -> UInt64,
                              float: ((Float, Float) -> Float)? = nil) throws -> Tensor {
        guard a.dtype == b.dtype else { throw ctx.fail("input types \(a.dtype) and \(b.dtype) differ") }
        if a.dtype == .float32, let float { return floatBinary(a, b, shape: shape, float) }
        if a.dtype.isFloatingPoint { return Real.binary(a, b, shape: shape, real) }
        if a.dtype == .uint64 { return try Typed.binary(a, b, UInt64.self, shape: shape, unsigned) }
        guard a.dtype.isInteger || a.dtype == .bool else { throw ctx.unsupported("element type \(a.dtype)") }
        let x = a.asInt64s(), y = b.asInt64s()
        let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
        let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
        var out = [Int64](repeating: 0, count: xi.count)
        for k in 0..<xi.count { out[k] = try signed(x[xi[k]], y[yi[k]]) }
        return Tensor(dtype: a.dtype, shape: shape, int64s: out)
    }

    /// A float32 binary map computed in `Float` (exactly what IEEE single precision gives for + − × ÷).
    static func floatBinary(_ a: Tensor, _ b: Tensor, shape: [Int], _ op: (Float, Float) -> Float) -> Tensor {
        let x = a.elements(as: Float.self), y = b.elements(as: Float.self)
        var out = [Float]()
        if a.shape == shape && b.shape == shape {
            out = [Float](repeating: 0, count: x.count)
            for k in 0..<x.count { out[k] = op(x[k], y[k]) }
        } else if a.shape == shape && y.count == 1 {
            let s = y[0]
            out = x.map { op($0, s) }
        } else if b.shape == shape && x.count == 1 {
            let s = x[0]
            out = y.map { op(s, $0) }
        } else {
            let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
            let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
            out = [Float](repeating: 0, count: xi.count)
            for k in 0..<xi.count { out[k] = op(x[xi[k]], y[yi[k]]) }
        }
        return Tensor(shape: shape, out)
    }

    /// Integer division truncating toward zero (C semantics); 0 for division by zero or overflow.
    static func truncatingDivide(_ x: Int64, _ y: Int64) -> Int64 {
        if y == 0 { return 0 }
        let (q, overflow) = x.dividedReportingOverflow(by: y)
        return overflow ? x : q
    }

    /// Remainder with the sign of the dividend (C's `%`, ONNX Mod with fmod=1); 0 for a zero divisor.
    static func truncatingRemainder(_ x: Int64, _ y: Int64) -> Int64 {
        if y == 0 { return 0 }
        return x.remainderReportingOverflow(dividingBy: y).partialValue
    }

    /// Remainder with the sign of the divisor (Python's `%`, ONNX Mod with fmod=0); 0 for a zero divisor.
    static func flooredRemainder(_ x: Int64, _ y: Int64) -> Int64 {
        let r = truncatingRemainder(x, y)
        return (r != 0 && (r < 0) != (y < 0)) ? r &+ y : r
    }

    /// Pow: the result has the base's type; the exponent may be of any numeric type.
    static func power(_ ctx: KernelContext) throws -> Tensor {
        let a = try ctx.tensor(0), b = try ctx.tensor(1)
        let shape = try ctx.broadcastShape([a, b])
        if a.dtype.isInteger && b.dtype.isInteger && b.dtype != .uint64 {
            // Exact integer power by repeated squaring, wrapping like the base type.
            let x = a.asInt64s(), y = b.asInt64s()
            let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
            let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
            var out = [Int64](repeating: 0, count: xi.count)
            for k in 0..<xi.count { out[k] = integerPower(x[xi[k]], y[yi[k]]) }
            return Tensor(dtype: a.dtype, shape: shape, int64s: out)
        }
        guard a.dtype.isInteger || a.dtype.isFloatingPoint, b.dtype.isInteger || b.dtype.isFloatingPoint else {
            throw ctx.unsupported("Pow of \(a.dtype) by \(b.dtype)")
        }
        let x = doubles(a), y = doubles(b)
        let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
        let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
        var out = [Double](repeating: 0, count: xi.count)
        for k in 0..<xi.count { out[k] = pow(x[xi[k]], y[yi[k]]) }
        return Tensor(dtype: a.dtype, shape: shape, doubles: out)
    }

    /// `t.asDoubles()`, except that uint64 elements are converted by value (KilnIR's `asDoubles`
    /// currently reinterprets their bits).
    static func doubles(_ t: Tensor) -> [Double] {
        t.dtype == .uint64 ? t.elements(as: UInt64.self).map { Double($0) } : t.asDoubles()
    }

    /// `base` raised to a non-negative integer `exponent` with wrapping multiplication; a negative
    /// exponent gives the truncated real result (0 unless |base| is 1).
    static func integerPower(_ base: Int64, _ exponent: Int64) -> Int64 {
        if exponent < 0 {
            if base == 1 { return 1 }
            if base == -1 { return exponent % 2 == 0 ? 1 : -1 }
            return 0
        }
        var result: Int64 = 1, b = base, e = exponent
        while e > 0 {
            if e & 1 == 1 { result = result &* b }
            b = b &* b
            e >>= 1
        }
        return result
    }

    /// Folds the node's tensor inputs left to right with `combine`, broadcasting as it goes.
    static func variadic(_ ctx: KernelContext, _ combine: (Tensor, Tensor, [Int]) throws -> Tensor) throws -> Tensor {
        let tensors = try (0..<ctx.inputCount).compactMap { try ctx.optionalTensor($0) }
        guard var acc = tensors.first else { throw ctx.fail("needs at least one input") }
        for t in tensors.dropFirst() {
            let shape = try ctx.broadcastShape([acc, t])
            acc = try combine(acc, t, shape)
        }
        return acc
    }

    // MARK: - Unary math

    /// Neg, Abs, Sign, the libm functions, rounding, IsNaN and IsInf.
    static func registerUnaryMath(into table: inout KernelTable) {
        table.add("Neg") { ctx in
            [.tensor(try signedUnary(ctx, { -$0 }, { 0 &- $0 }, { 0 &- $0 }))]
        }
        table.add("Abs") { ctx in
            [.tensor(try signedUnary(ctx, { Swift.abs($0) }, { $0 < 0 ? 0 &- $0 : $0 }, { $0 }))]
        }
        table.add("Sign") { ctx in
            [.tensor(try signedUnary(ctx, { $0 > 0 ? 1 : ($0 < 0 ? -1 : $0) }, { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) },
                                     { $0 > 0 ? 1 : 0 }))]
        }
        let math: [(String, @Sendable (Double) -> Double)] = [
            ("Reciprocal", { 1 / $0 }),
            ("Sqrt", { sqrt($0) }),
            ("Exp", { exp($0) }),
            ("Log", { log($0) }),
            ("Ceil", { $0.rounded(.up) }),
            ("Floor", { $0.rounded(.down) }),
            ("Round", { $0.rounded(.toNearestOrEven) }),
            ("Erf", { erf($0) }),
            ("Sin", { sin($0) }),
            ("Cos", { cos($0) }),
            ("Tan", { tan($0) }),
            ("Asin", { asin($0) }),
            ("Acos", { acos($0) }),
            ("Atan", { atan($0) }),
            ("Sinh", { sinh($0) }),
            ("Cosh", { cosh($0) }),
            ("Asinh", { asinh($0) }),
            ("Acosh", { acosh($0) }),
            ("Atanh", { atanh($0) }),
            ("Tanh", { tanh($0) }),
        ]
        for (name, f) in math {
            table.add(name) { ctx in
                let x = try ctx.tensor(0)
                guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
                return [.tensor(unaryReal(x, f))]
            }
        }
        table.add("IsNaN") { ctx in
            let x = try ctx.tensor(0)
            guard x.dtype.isFloatingPoint || x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
            if x.dtype.isInteger { return [.tensor(Tensor(shape: x.shape, [Bool](repeating: false, count: x.count)))] }
            return [.tensor(Tensor(shape: x.shape, x.asDoubles().map { $0.isNaN }))]
        }
        table.add("IsInf") { ctx in
            let x = try ctx.tensor(0)
            guard x.dtype.isFloatingPoint || x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
            let positive = try ctx.int("detect_positive", 1) != 0
            let negative = try ctx.int("detect_negative", 1) != 0
            if x.dtype.isInteger { return [.tensor(Tensor(shape: x.shape, [Bool](repeating: false, count: x.count)))] }
            return [.tensor(Tensor(shape: x.shape, x.asDoubles().map { v -> Bool in
                v.isInfinite && (v > 0 ? positive : negative)
            }))]
        }
    }

    /// A unary map through `Double` for a floating-point tensor, rounded back to its type
    /// (float32 without an intermediate `[Double]`).
    static func unaryReal(_ x: Tensor, _ op: (Double) -> Double) -> Tensor {
        if x.dtype == .float32 {
            return Tensor(shape: x.shape, x.elements(as: Float.self).map { Float(op(Double($0))) })
        }
        return Real.unary(x, op)
    }

    /// A unary op over any numeric type: floats through `Double`, integers through `Int64`
    /// (wrapped back), uint64 as itself.
    static func signedUnary(_ ctx: KernelContext, _ real: (Double) -> Double, _ signed: (Int64) -> Int64,
                            _ unsigned: (UInt64) -> UInt64) throws -> Tensor {
        let x = try ctx.tensor(0)
        if x.dtype.isFloatingPoint { return unaryReal(x, real) }
        return try integerUnary(ctx, x, signed, unsigned)
    }

    /// A unary op over an integer tensor: through `Int64` (wrapped back), uint64 as itself.
    static func integerUnary(_ ctx: KernelContext, _ x: Tensor, _ signed: (Int64) -> Int64,
                             _ unsigned: (UInt64) -> UInt64) throws -> Tensor {
        if x.dtype == .uint64 { return Typed.unary(x, UInt64.self, unsigned) }
        guard x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
        return Tensor(dtype: x.dtype, shape: x.shape, int64s: x.asInt64s().map(signed))
    }

    // MARK: - Comparison, logic, bitwise

    /// An order relation between two elements.
    enum Relation {
        case equal, less, lessOrEqual, greater, greaterOrEqual

        /// Whether `x` stands in this relation to `y` (false when either is NaN).
        func holds<T: Comparable>(_ x: T, _ y: T) -> Bool {
            switch self {
            case .equal: x == y
            case .less: x < y
            case .lessOrEqual: x <= y
            case .greater: x > y
            case .greaterOrEqual: x >= y
            }
        }
    }

    /// Comparisons, boolean logic, bitwise ops and BitShift.
    static func registerComparisonAndLogic(into table: inout KernelTable) {
        let relations: [(String, Relation)] = [
            ("Equal", .equal), ("Less", .less), ("LessOrEqual", .lessOrEqual),
            ("Greater", .greater), ("GreaterOrEqual", .greaterOrEqual),
        ]
        for (name, relation) in relations {
            table.add(name) { ctx in [.tensor(try compare(ctx, relation))] }
        }
        let logical: [(String, @Sendable (Bool, Bool) -> Bool)] = [
            ("And", { $0 && $1 }), ("Or", { $0 || $1 }), ("Xor", { $0 != $1 }),
        ]
        for (name, op) in logical {
            table.add(name) { ctx in
                let a = try ctx.tensor(0), b = try ctx.tensor(1)
                guard a.dtype == .bool, b.dtype == .bool else { throw ctx.unsupported("element types \(a.dtype), \(b.dtype)") }
                let shape = try ctx.broadcastShape([a, b])
                return [.tensor(Typed.binary(a, b, Bool.self, shape: shape, op))]
            }
        }
        table.add("Not") { ctx in
            let x = try ctx.tensor(0)
            guard x.dtype == .bool else { throw ctx.unsupported("element type \(x.dtype)") }
            return [.tensor(Typed.unary(x, Bool.self) { !$0 })]
        }
        let bitwise: [(String, @Sendable (Int64, Int64) -> Int64)] = [
            ("BitwiseAnd", { $0 & $1 }), ("BitwiseOr", { $0 | $1 }), ("BitwiseXor", { $0 ^ $1 }),
        ]
        for (name, op) in bitwise {
            table.add(name) { ctx in
                let a = try ctx.tensor(0), b = try ctx.tensor(1)
                guard a.dtype.isInteger, a.dtype == b.dtype else { throw ctx.unsupported("element types \(a.dtype), \(b.dtype)") }
                let shape = try ctx.broadcastShape([a, b])
                // Bit patterns through Int64: uint64 keeps its bits, narrow types wrap back.
                let x = a.asInt64s(), y = b.asInt64s()
                let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
                let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
                var out = [Int64](repeating: 0, count: xi.count)
                for k in 0..<xi.count { out[k] = op(x[xi[k]], y[yi[k]]) }
                return [.tensor(Tensor(dtype: a.dtype, shape: shape, int64s: out))]
            }
        }
        table.add("BitwiseNot") { ctx in
            let x = try ctx.tensor(0)
            guard x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
            return [.tensor(Tensor(dtype: x.dtype, shape: x.shape, int64s: x.asInt64s().map { ~$0 }))]
        }
        table.add("BitShift") { ctx in
            let a = try ctx.tensor(0), b = try ctx.tensor(1)
            guard a.dtype.isInteger, a.dtype == b.dtype else { throw ctx.unsupported("element types \(a.dtype), \(b.dtype)") }
            let left: Bool
            switch try ctx.string("direction") {
            case "LEFT": left = true
            case "RIGHT": left = false
            default: throw ctx.fail("direction must be LEFT or RIGHT")
            }
            let shape = try ctx.broadcastShape([a, b])
            let x = a.asInt64s().map { UInt64(bitPattern: $0) }, y = b.asInt64s().map { UInt64(bitPattern: $0) }
            let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
            let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
            var out = [Int64](repeating: 0, count: xi.count)
            for k in 0..<xi.count {
                let v = x[xi[k]], s = y[yi[k]]
                let r: UInt64 = s >= 64 ? 0 : (left ? v << s : v >> s)
                out[k] = Int64(bitPattern: r)
            }
            return [.tensor(Tensor(dtype: a.dtype, shape: shape, int64s: out))]
        }
    }

    /// A comparison op: a bool tensor of `relation` over the broadcast inputs (strings for Equal only).
    static func compare(_ ctx: KernelContext, _ relation: Relation) throws -> Tensor {
        let a = try ctx.tensor(0), b = try ctx.tensor(1)
        guard a.dtype == b.dtype else { throw ctx.fail("input types \(a.dtype) and \(b.dtype) differ") }
        let shape = try ctx.broadcastShape([a, b])
        let xi = Broadcast.sourceIndices(from: a.shape, to: shape)
        let yi = Broadcast.sourceIndices(from: b.shape, to: shape)
        var out = [Bool](repeating: false, count: xi.count)
        switch a.dtype {
        case .string:
            let x = a.strings, y = b.strings
            for k in 0..<xi.count { out[k] = relation.holds(x[xi[k]], y[yi[k]]) }
        case .uint64:
            let x = a.elements(as: UInt64.self), y = b.elements(as: UInt64.self)
            for k in 0..<xi.count { out[k] = relation.holds(x[xi[k]], y[yi[k]]) }
        case let t where t.isInteger || t == .bool:
            let x = a.asInt64s(), y = b.asInt64s()
            for k in 0..<xi.count { out[k] = relation.holds(x[xi[k]], y[yi[k]]) }
        case let t where t.isFloatingPoint:
            let x = a.asDoubles(), y = b.asDoubles()
            for k in 0..<xi.count { out[k] = relation.holds(x[xi[k]], y[yi[k]]) }
        default:
            throw ctx.unsupported("element type \(a.dtype)")
        }
        return Tensor(shape: shape, out)
    }

    // MARK: - Where, Clip

    /// Where and Clip.
    static func registerSelection(into table: inout KernelTable) {
        table.add("Where") { ctx in
            let c = try ctx.tensor(0), x = try ctx.tensor(1), y = try ctx.tensor(2)
            guard c.dtype == .bool else { throw ctx.fail("condition must be bool, not \(c.dtype)") }
            guard x.dtype == y.dtype else { throw ctx.fail("input types \(x.dtype) and \(y.dtype) differ") }
            let shape = try ctx.broadcastShape([c, x, y])
            let cond = c.elements(as: Bool.self)
            let ci = Broadcast.sourceIndices(from: c.shape, to: shape)
            let xi = Broadcast.sourceIndices(from: x.shape, to: shape)
            let yi = Broadcast.sourceIndices(from: y.shape, to: shape)
            // Where picks element k from x or y: a gather from their concatenation.
            var pick = [Int](repeating: 0, count: ci.count)
            for k in 0..<ci.count { pick[k] = cond[ci[k]] ? xi[k] : x.count + yi[k] }
            return [.tensor(try gather([x, y], pick, shape: shape, ctx))]
        }
        table.add("Clip") { ctx in
            let x = try ctx.tensor(0)
            var lo = try ctx.optionalTensor(1), hi = try ctx.optionalTensor(2)
            // Clip before opset 11 had float attributes; use them if the importer left them in place.
            if ctx.inputCount < 2, x.dtype.isFloatingPoint {
                if let v = try ctx.float("min") { lo = Tensor(dtype: x.dtype, shape: [], doubles: [Double(v)]) }
                if let v = try ctx.float("max") { hi = Tensor(dtype: x.dtype, shape: [], doubles: [Double(v)]) }
            }
            for bound in [lo, hi].compactMap({ $0 }) where bound.dtype != x.dtype {
                throw ctx.fail("bound type \(bound.dtype) differs from input type \(x.dtype)")
            }
            var result = x
            if let lo {
                let shape = try ctx.broadcastShape([result, lo])
                result = try binaryNumeric(ctx, result, lo, shape: shape, { v, m in v < m ? m : v },
                                           { Swift.max($0, $1) }, { Swift.max($0, $1) })
            }
            if let hi {
                let shape = try ctx.broadcastShape([result, hi])
                result = try binaryNumeric(ctx, result, hi, shape: shape, { v, m in v > m ? m : v },
                                           { Swift.min($0, $1) }, { Swift.min($0, $1) })
            }
            return [.tensor(result)]
        }
    }

    /// Elements of the concatenation of `sources` (all of one type, flattened) at `indices`, as a tensor of `shape`.
    static func gather(_ sources: [Tensor], _ indices: [Int], shape: [Int], _ ctx: KernelContext) throws -> Tensor {
        let dtype = sources[0].dtype
        if dtype == .string {
            let all = sources.flatMap(\.strings)
            return Tensor(shape: shape, strings: indices.map { all[$0] })
        }
        func pick<T: TensorElement>(_: T.Type) -> Tensor {
            let all = sources.flatMap { $0.elements(as: T.self) }
            return Tensor(dtype: dtype, shape: shape, bitPatterns: indices.map { all[$0] })
        }
        switch dtype.byteWidth {
        case 1: return pick(UInt8.self)
        case 2: return pick(UInt16.self)
        case 4: return pick(UInt32.self)
        case 8: return pick(UInt64.self)
        default: throw ctx.unsupported("element type \(dtype)")
        }
    }

    // MARK: - Activations

    /// Relu and the other activation functions.
    static func registerActivations(into table: inout KernelTable) {
        table.add("Relu") { ctx in
            [.tensor(try signedUnary(ctx, { $0 > 0 ? $0 : ($0.isNaN ? $0 : 0) }, { Swift.max($0, 0) }, { $0 }))]
        }
        table.add("LeakyRelu") { ctx in
            let alpha = Double(try ctx.float("alpha", 0.01))
            return [.tensor(try floatUnary(ctx) { $0 >= 0 ? $0 : alpha * $0 })]
        }
        table.add("PRelu") { ctx in
            let x = try ctx.tensor(0)
            var slope = try ctx.tensor(1)
            guard x.dtype == slope.dtype else { throw ctx.fail("input types \(x.dtype) and \(slope.dtype) differ") }
            if Broadcast.shape([x.shape, slope.shape]) == nil, slope.rank == 1, x.rank >= 2, slope.count == x.shape[1] {
                // PRelu before opset 7: a per-channel slope of shape [C] applies along axis 1.
                slope = slope.reshaped([slope.count] + [Int](repeating: 1, count: x.rank - 2))
            }
            let shape = try ctx.broadcastShape([x, slope])
            return [.tensor(Real.binary(x, slope, shape: shape) { v, s in v < 0 ? s * v : v })]
        }
        table.add("Elu") { ctx in
            let alpha = Double(try ctx.float("alpha", 1))
            return [.tensor(try floatUnary(ctx) { $0 >= 0 ? $0 : alpha * (exp($0) - 1) })]
        }
        table.add("Selu") { ctx in
            let alpha = Double(try ctx.float("alpha", 1.67326319217681884765625))
            let gamma = Double(try ctx.float("gamma", 1.05070102214813232421875))
            return [.tensor(try floatUnary(ctx) { gamma * ($0 > 0 ? $0 : alpha * (exp($0) - 1)) })]
        }
        table.add("Celu") { ctx in
            let alpha = Double(try ctx.float("alpha", 1))
            return [.tensor(try floatUnary(ctx) { Swift.max(0, $0) + Swift.min(0, alpha * (exp($0 / alpha) - 1)) })]
        }
        table.add("ThresholdedRelu") { ctx in
            let alpha = Double(try ctx.float("alpha", 1))
            return [.tensor(try floatUnary(ctx) { $0 > alpha ? $0 : 0 })]
        }
        table.add("HardSigmoid") { ctx in
            let alpha = Double(try ctx.float("alpha", 0.2)), beta = Double(try ctx.float("beta", 0.5))
            return [.tensor(try floatUnary(ctx) { Swift.max(0, Swift.min(1, alpha * $0 + beta)) })]
        }
        table.add("HardSwish") { ctx in
            [.tensor(try floatUnary(ctx) { $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) })]
        }
        table.add("Sigmoid") { ctx in [.tensor(try floatUnary(ctx, sigmoid))] }
        table.add("Softplus") { ctx in [.tensor(try floatUnary(ctx, softplus))] }
        table.add("Softsign") { ctx in [.tensor(try floatUnary(ctx) { $0 / (1 + Swift.abs($0)) })] }
        table.add("Mish") { ctx in [.tensor(try floatUnary(ctx) { $0 * tanh(softplus($0)) })] }
        table.add("Gelu") { ctx in
            switch try ctx.string("approximate", "none") {
            case "none":
                return [.tensor(try floatUnary(ctx) { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) })]
            case "tanh":
                let c = (2 / Double.pi).squareRoot()
                return [.tensor(try floatUnary(ctx) { 0.5 * $0 * (1 + tanh(c * ($0 + 0.044715 * $0 * $0 * $0))) })]
            case let other:
                throw ctx.fail("unknown approximate mode '\(other)'")
            }
        }
        table.add("Swish") { ctx in
            let alpha = Double(try ctx.float("alpha", 1))
            return [.tensor(try floatUnary(ctx) { $0 * sigmoid(alpha * $0) })]
        }
        table.add("Shrink") { ctx in
            let bias = Double(try ctx.float("bias", 0)), lambd = Double(try ctx.float("lambd", 0.5))
            let x = try ctx.tensor(0)
            guard x.dtype.isFloatingPoint || x.dtype.isInteger else { throw ctx.unsupported("element type \(x.dtype)") }
            let op: (Double) -> Double = { $0 < -lambd ? $0 + bias : ($0 > lambd ? $0 - bias : 0) }
            return [.tensor(x.dtype.isFloatingPoint ? unaryReal(x, op) : Real.unary(x, op))]
        }
    }

    /// A unary map over input 0, which must be floating point.
    static func floatUnary(_ ctx: KernelContext, _ op: (Double) -> Double) throws -> Tensor {
        let x = try ctx.tensor(0)
        guard x.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(x.dtype)") }
        return unaryReal(x, op)
    }

    /// The logistic function, without overflow for large |x|.
    @Sendable static func sigmoid(_ x: Double) -> Double {
        if x >= 0 { return 1 / (1 + exp(-x)) }
        let e = exp(x)
        return e / (1 + e)
    }

    /// log(1 + eˣ), without overflow for large x.
    @Sendable static func softplus(_ x: Double) -> Double {
        x > 0 ? x + log1p(exp(-x)) : log1p(exp(x))
    }
}
