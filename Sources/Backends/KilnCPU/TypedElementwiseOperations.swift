import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What an elementwise op computes per element, in the domain its operands' types call for.
enum ElementFunction {
    /// float32 → float32.
    case floatUnary((Float) -> Float)
    /// float32 → bool (IsNaN, IsInf).
    case floatPredicate((Float) -> Bool)
    /// Integers (int32/int64) → same type.
    case intUnary((Int64) -> Int64)
    /// bool → bool.
    case boolUnary((Bool) -> Bool)
    /// Folded left to right over the operands (variadic Max/Min/Sum, binary Add, Pow…), in float32; `finish`
    /// receives the result and the operand count (Mean).
    case floatFold((Float, Float) -> Float, finish: ((Float, Int) -> Float)?)
    /// The same over integers; may throw (division by zero).
    case intFold((Int64, Int64) throws -> Int64)
    /// Compares two operands (read as float32 or integers by their common type) → bool.
    case compare(float: (Float, Float) -> Bool, int: (Int64, Int64) -> Bool)
    /// bool × bool → bool.
    case logic((Bool, Bool) -> Bool)
    /// Pow with an exponent of another type: computed in Double, stored in the base's type.
    case power
    /// Where(condition, x, y).
    case select
    /// float64 → float64.
    case doubleUnary((Double) -> Double)
    /// Folded left to right over float64 operands (every operand float64); `finish` as for `floatFold`.
    case doubleFold((Double, Double) -> Double, finish: ((Double, Int) -> Double)?)
    /// Folded left to right over uint64 operands (every operand uint64), unsigned; may throw.
    case uint64Fold((UInt64, UInt64) throws -> UInt64)
    /// Compares two uint64 operands, unsigned → bool.
    case uint64Compare((UInt64, UInt64) -> Bool)
}

/// The elementwise ops of any element type kiln.cpu holds, with NumPy broadcasting: integer arithmetic on
/// shapes, comparisons, logic, Where, Pow and the float activations without a C kernel. Small results over
/// known inputs are computed while planning (shape arithmetic); the rest run as a step.
final class MapOperation: Operation {
    let kind: String
    let label: String
    let operands: [Int]
    let output: Int
    let function: ElementFunction

    var inputs: [Int] { operands }
    var outputs: [Int] { [output] }

    init(node: Node, operands: [Int], output: Int, function: ElementFunction) {
        kind = node.op.name
        label = node.displayName
        self.operands = operands
        self.output = output
        self.function = function
    }

    func plan(_ b: PlanBuilder) throws {
        let shapes = try operands.map { try b.shape($0) }
        let types = try operands.map { try b.dtype($0) }
        var shape = shapes[0]
        for s in shapes.dropFirst() {
            guard let joint = Broadcasting.shape(shape, s) else { throw b.invalid("shapes \(shapes) do not broadcast") }
            shape = joint
        }
        let outType: DType
        switch function {
        case .floatPredicate, .compare, .logic, .boolUnary, .uint64Compare: outType = .bool
        case .select: outType = types[1]
        default: outType = types[0]
        }
        let function = self.function
        let m = operands.count
        // Integer Add, Sub and Mul of two operands of one type (int32: the bias additions of dynamically
        // quantized models; int64: shape arithmetic) in typed loops rather than per-element dispatch.
        if m == 2, let op = IntegerArithmetic(kind), types[0] == types[1] {
            if types[0] == .int32 {
                try b.compute([(output, shape, outType)], from: operands) { ins, outs in
                    op.apply(ins[0].assumingMemoryBound(to: Int32.self), ins[1].assumingMemoryBound(to: Int32.self),
                             outs[0].assumingMemoryBound(to: Int32.self), out: shape, shapes: shapes)
                }
                return
            }
            if types[0] == .int64 {
                try b.compute([(output, shape, outType)], from: operands) { ins, outs in
                    op.apply(ins[0].assumingMemoryBound(to: Int64.self), ins[1].assumingMemoryBound(to: Int64.self),
                             outs[0].assumingMemoryBound(to: Int64.self), out: shape, shapes: shapes)
                }
                return
            }
        }
        try b.compute([(output, shape, outType)], from: operands) { ins, outs in
            let out = outs[0]
            try forEachBroadcastRow(out: shape, operands: shapes) { o, offs, st, n in
                switch function {
                case .floatUnary(let f):
                    for i in 0..<n { Element.store(float: f(Element.float(ins[0], types[0], offs[0] + i * st[0])), out, outType, o + i) }
                case .floatPredicate(let f):
                    for i in 0..<n { out.storeBytes(of: UInt8(f(Element.float(ins[0], types[0], offs[0] + i * st[0])) ? 1 : 0), toByteOffset: o + i, as: UInt8.self) }
                case .intUnary(let f):
                    for i in 0..<n { Element.store(int: f(Element.int(ins[0], types[0], offs[0] + i * st[0])), out, outType, o + i) }
                case .boolUnary(let f):
                    for i in 0..<n { out.storeBytes(of: UInt8(f(Element.int(ins[0], types[0], offs[0] + i * st[0]) != 0) ? 1 : 0), toByteOffset: o + i, as: UInt8.self) }
                case .floatFold(let f, let finish):
                    for i in 0..<n {
                        var acc = Element.float(ins[0], types[0], offs[0] + i * st[0])
                        for k in 1..<max(m, 1) { acc = f(acc, Element.float(ins[k], types[k], offs[k] + i * st[k])) }
                        if let finish { acc = finish(acc, m) }
                        Element.store(float: acc, out, outType, o + i)
                    }
                case .intFold(let f):
                    for i in 0..<n {
                        var acc = Element.int(ins[0], types[0], offs[0] + i * st[0])
                        for k in 1..<max(m, 1) { acc = try f(acc, Element.int(ins[k], types[k], offs[k] + i * st[k])) }
                        Element.store(int: acc, out, outType, o + i)
                    }
                case .compare(let ff, let fi):
                    let asFloat = types[0] == .float32 || types[1] == .float32
                    for i in 0..<n {
                        let a = offs[0] + i * st[0], c = offs[1] + i * st[1]
                        let r = asFloat ? ff(Element.float(ins[0], types[0], a), Element.float(ins[1], types[1], c))
                                        : fi(Element.int(ins[0], types[0], a), Element.int(ins[1], types[1], c))
                        out.storeBytes(of: UInt8(r ? 1 : 0), toByteOffset: o + i, as: UInt8.self)
                    }
                case .logic(let f):
                    for i in 0..<n {
                        let r = f(Element.int(ins[0], types[0], offs[0] + i * st[0]) != 0, Element.int(ins[1], types[1], offs[1] + i * st[1]) != 0)
                        out.storeBytes(of: UInt8(r ? 1 : 0), toByteOffset: o + i, as: UInt8.self)
                    }
                case .power:
                    for i in 0..<n {
                        let x = Element.double(ins[0], types[0], offs[0] + i * st[0]), y = Element.double(ins[1], types[1], offs[1] + i * st[1])
                        if outType == .float32 {
                            let r = types[1] == .float32 ? powf(Float(x), Float(y)) : Float(pow(x, y))
                            out.storeBytes(of: r, toByteOffset: (o + i) * 4, as: Float.self)
                        } else {
                            let r = pow(x, y)
                            Element.store(int: r.isFinite ? Int64(exactly: r.rounded(.towardZero)) ?? 0 : 0, out, outType, o + i)
                        }
                    }
                case .doubleUnary(let f):
                    for i in 0..<n {
                        let v = ins[0].load(fromByteOffset: (offs[0] + i * st[0]) &* 8, as: Double.self)
                        out.storeBytes(of: f(v), toByteOffset: (o + i) &* 8, as: Double.self)
                    }
                case .doubleFold(let f, let finish):
                    for i in 0..<n {
                        var acc = ins[0].load(fromByteOffset: (offs[0] + i * st[0]) &* 8, as: Double.self)
                        for k in 1..<max(m, 1) { acc = f(acc, ins[k].load(fromByteOffset: (offs[k] + i * st[k]) &* 8, as: Double.self)) }
                        if let finish { acc = finish(acc, m) }
                        out.storeBytes(of: acc, toByteOffset: (o + i) &* 8, as: Double.self)
                    }
                case .uint64Fold(let f):
                    for i in 0..<n {
                        var acc = ins[0].load(fromByteOffset: (offs[0] + i * st[0]) &* 8, as: UInt64.self)
                        for k in 1..<max(m, 1) { acc = try f(acc, ins[k].load(fromByteOffset: (offs[k] + i * st[k]) &* 8, as: UInt64.self)) }
                        out.storeBytes(of: acc, toByteOffset: (o + i) &* 8, as: UInt64.self)
                    }
                case .uint64Compare(let f):
                    for i in 0..<n {
                        let a = ins[0].load(fromByteOffset: (offs[0] + i * st[0]) &* 8, as: UInt64.self)
                        let c = ins[1].load(fromByteOffset: (offs[1] + i * st[1]) &* 8, as: UInt64.self)
                        out.storeBytes(of: UInt8(f(a, c) ? 1 : 0), toByteOffset: o + i, as: UInt8.self)
                    }
                case .select:
                    let width = outType.byteWidth!
                    for i in 0..<n {
                        let c = ins[0].load(fromByteOffset: offs[0] + i * st[0], as: UInt8.self) != 0
                        let k = c ? 1 : 2
                        (out + (o + i) * width).copyMemory(from: ins[k] + (offs[k] + i * st[k]) * width, byteCount: width)
                    }
                }
            }
        }
    }

    // MARK: the ops

    static let selu = (alpha: Float(1.67326319217681884765625), gamma: Float(1.05070102214813232421875))

    /// The function of `node` for operands of `types` (nil when kiln.cpu does not compute it).
    static func function(_ node: Node, types: [DType]) throws -> ElementFunction? {
        if types.contains(.float64) {
            guard types.allSatisfy({ $0 == .float64 }) else { return nil }
            return try doubleFunction(node)
        }
        if types.contains(.uint64) {
            guard types.allSatisfy({ $0 == .uint64 }) else { return nil }
            return try uint64Function(node)
        }
        let isFloat = types.first == .float32
        func attr(_ name: String, _ d: Float) throws -> Float { try node.float(name, d) }
        switch node.op.name {
        case "Add", "Sum": return isFloat ? .floatFold(+, finish: nil) : .intFold(&+)
        case "Sub": return isFloat ? .floatFold(-, finish: nil) : .intFold(&-)
        case "Mul": return isFloat ? .floatFold(*, finish: nil) : .intFold(&*)
        case "Div":
            return isFloat ? .floatFold(/, finish: nil) : .intFold({ a, c in
                guard c != 0 else { throw KilnError(.runtime, "Div '\(node.displayName)': integer division by zero") }
                return a == .min && c == -1 ? .min : a / c
            })
        case "Max": return isFloat ? .floatFold({ $0.isNaN || $1.isNaN ? .nan : Swift.max($0, $1) }, finish: nil) : .intFold(Swift.max)
        case "Min": return isFloat ? .floatFold({ $0.isNaN || $1.isNaN ? .nan : Swift.min($0, $1) }, finish: nil) : .intFold(Swift.min)
        case "Mean": return isFloat ? .floatFold(+, finish: { $0 / Float($1) }) : nil
        case "Mod":
            if try node.int("fmod", 0) != 0 {
                return isFloat ? .floatFold({ fmodf($0, $1) }, finish: nil) : .intFold({ a, c in
                    guard c != 0 else { throw KilnError(.runtime, "Mod '\(node.displayName)': integer division by zero") }
                    return c == -1 ? 0 : a % c
                })
            }
            guard !isFloat else { return nil }
            return .intFold({ a, c in
                guard c != 0 else { throw KilnError(.runtime, "Mod '\(node.displayName)': integer division by zero") }
                if c == -1 { return 0 }
                let r = a % c
                return r != 0 && (r < 0) != (c < 0) ? r + c : r
            })
        case "Pow": return .power
        case "PRelu": return .floatFold({ x, slope in x < 0 ? slope * x : x }, finish: nil)
        case "BitwiseAnd": return .intFold(&)
        case "BitwiseOr": return .intFold(|)
        case "BitwiseXor": return .intFold(^)
        case "BitwiseNot": return .intUnary(~)
        case "BitShift":
            let left = try node.string("direction", "") == "LEFT"
            return .intFold { a, c in c < 0 || c >= 64 ? 0 : (left ? a << c : a >> c) }
        case "Equal": return .compare(float: ==, int: ==)
        case "Less": return .compare(float: <, int: <)
        case "LessOrEqual": return .compare(float: <=, int: <=)
        case "Greater": return .compare(float: >, int: >)
        case "GreaterOrEqual": return .compare(float: >=, int: >=)
        case "And": return .logic { $0 && $1 }
        case "Or": return .logic { $0 || $1 }
        case "Xor": return .logic { $0 != $1 }
        case "Not": return .boolUnary { !$0 }
        case "Where": return .select
        case "Abs": return isFloat ? .floatUnary(abs) : .intUnary { $0 == .min ? .min : Swift.abs($0) }
        case "Neg": return isFloat ? .floatUnary(-) : .intUnary { 0 &- $0 }
        case "Sign": return isFloat ? .floatUnary { $0 > 0 ? 1 : ($0 < 0 ? -1 : ($0.isNaN ? .nan : 0)) } : .intUnary { $0.signum() }
        case "Relu": return isFloat ? .floatUnary { Swift.max($0, 0) } : .intUnary { Swift.max($0, 0) }
        case "Floor": return .floatUnary { $0.rounded(.down) }
        case "Ceil": return .floatUnary { $0.rounded(.up) }
        case "Round": return .floatUnary { $0.rounded(.toNearestOrEven) }
        case "Sin": return .floatUnary(sinf)
        case "Cos": return .floatUnary(cosf)
        case "Tan": return .floatUnary(tanf)
        case "Asin": return .floatUnary(asinf)
        case "Acos": return .floatUnary(acosf)
        case "Atan": return .floatUnary(atanf)
        case "Sinh": return .floatUnary(sinhf)
        case "Cosh": return .floatUnary(coshf)
        case "Asinh": return .floatUnary(asinhf)
        case "Acosh": return .floatUnary(acoshf)
        case "Atanh": return .floatUnary(atanhf)
        case "Softsign": return .floatUnary { $0 / (1 + abs($0)) }
        case "Softplus": return .floatUnary { x in x > 30 ? x : log1pf(expf(x)) }
        case "Mish": return .floatUnary { x in x * tanhf(x > 30 ? x : log1pf(expf(x))) }
        case "Elu":
            let a = try attr("alpha", 1)
            return .floatUnary { $0 >= 0 ? $0 : a * (expf($0) - 1) }
        case "Selu":
            let a = try attr("alpha", selu.alpha), g = try attr("gamma", selu.gamma)
            return .floatUnary { $0 > 0 ? g * $0 : g * a * (expf($0) - 1) }
        case "Celu":
            let a = try attr("alpha", 1)
            return .floatUnary { Swift.max(0, $0) + Swift.min(0, a * (expf($0 / a) - 1)) }
        case "ThresholdedRelu":
            let a = try attr("alpha", 1)
            return .floatUnary { $0 > a ? $0 : 0 }
        case "Shrink":
            let bias = try attr("bias", 0), lambd = try attr("lambd", 0.5)
            return .floatUnary { $0 < -lambd ? $0 + bias : ($0 > lambd ? $0 - bias : 0) }
        case "Gelu":
            if try node.string("approximate", "none") == "tanh" {
                return .floatUnary { x in 0.5 * x * (1 + tanhf(0.7978845608028654 * (x + 0.044715 * x * x * x))) }
            }
            return .floatUnary { x in 0.5 * x * (1 + erff(x * 0.70710678118654752)) }
        case "IsNaN": return .floatPredicate { $0.isNaN }
        case "IsInf":
            let neg = try node.int("detect_negative", 1) != 0, pos = try node.int("detect_positive", 1) != 0
            return .floatPredicate { $0.isInfinite && ($0 > 0 ? pos : neg) }
        default: return nil
        }
    }

    /// The ops kiln.cpu computes over float64 (every operand float64), in Double: arithmetic, Max/Min/Mean
    /// (NaN propagates), Mod with fmod=1, and Abs, Neg, Exp, Log, Sqrt, Reciprocal. nil for the rest.
    static func doubleFunction(_ node: Node) throws -> ElementFunction? {
        switch node.op.name {
        case "Add", "Sum": return .doubleFold(+, finish: nil)
        case "Sub": return .doubleFold(-, finish: nil)
        case "Mul": return .doubleFold(*, finish: nil)
        case "Div": return .doubleFold(/, finish: nil)
        case "Max": return .doubleFold({ $0.isNaN || $1.isNaN ? .nan : Swift.max($0, $1) }, finish: nil)
        case "Min": return .doubleFold({ $0.isNaN || $1.isNaN ? .nan : Swift.min($0, $1) }, finish: nil)
        case "Mean": return .doubleFold(+, finish: { $0 / Double($1) })
        case "Mod": return try node.int("fmod", 0) != 0 ? .doubleFold({ fmod($0, $1) }, finish: nil) : nil
        case "Abs": return .doubleUnary(abs)
        case "Neg": return .doubleUnary(-)
        case "Exp": return .doubleUnary(exp)
        case "Log": return .doubleUnary(log)
        case "Sqrt": return .doubleUnary { $0.squareRoot() }
        case "Reciprocal": return .doubleUnary { 1 / $0 }
        default: return nil
        }
    }

    /// The ops kiln.cpu computes over uint64 (every operand uint64), unsigned: wrapping Add, Sum, Sub, Mul;
    /// Div and Mod (a zero divisor is a run-time error); Max, Min; the comparisons; BitShift (shifts of 64
    /// or more give 0). nil for the rest.
    static func uint64Function(_ node: Node) throws -> ElementFunction? {
        let name = node.displayName
        switch node.op.name {
        case "Add", "Sum": return .uint64Fold(&+)
        case "Sub": return .uint64Fold(&-)
        case "Mul": return .uint64Fold(&*)
        case "Div":
            return .uint64Fold { a, c in
                guard c != 0 else { throw KilnError(.runtime, "Div '\(name)': integer division by zero") }
                return a / c
            }
        case "Mod":
            return .uint64Fold { a, c in
                guard c != 0 else { throw KilnError(.runtime, "Mod '\(name)': integer division by zero") }
                return a % c
            }
        case "Max": return .uint64Fold(Swift.max)
        case "Min": return .uint64Fold(Swift.min)
        case "Equal": return .uint64Compare(==)
        case "Less": return .uint64Compare(<)
        case "LessOrEqual": return .uint64Compare(<=)
        case "Greater": return .uint64Compare(>)
        case "GreaterOrEqual": return .uint64Compare(>=)
        case "BitShift":
            let left = try node.string("direction", "") == "LEFT"
            return .uint64Fold { a, c in c >= 64 ? 0 : (left ? a << c : a >> c) }
        default: return nil
        }
    }
}

/// Wrapping integer Add, Sub or Mul of two broadcast operands of one fixed-width type, row by row with the
/// common stride patterns (both contiguous, or one repeating a single value along the row) as plain loops.
enum IntegerArithmetic {
    case add, sub, mul

    /// The arithmetic of op `kind`, or nil.
    init?(_ kind: String) {
        switch kind {
        case "Add": self = .add
        case "Sub": self = .sub
        case "Mul": self = .mul
        default: return nil
        }
    }

    func apply<T: FixedWidthInteger>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, out: [Int], shapes: [[Int]]) {
        forEachBroadcastRow(out: out, operands: shapes) { o, offs, st, n in
            let x = a + offs[0], z = b + offs[1], r = y + o
            // The op is chosen per row and its loop written with the operation inline, so each is a plain
            // (vectorizable) loop rather than a closure call per element.
            switch self {
            case .add: Self.row(x, st[0], z, st[1], r, n) { $0 &+ $1 }
            case .sub: Self.row(x, st[0], z, st[1], r, n) { $0 &- $1 }
            case .mul: Self.row(x, st[0], z, st[1], r, n) { $0 &* $1 }
            }
        }
    }

    @inline(__always)
    private static func row<T: FixedWidthInteger>(_ x: UnsafePointer<T>, _ sx: Int, _ z: UnsafePointer<T>, _ sz: Int,
                                                  _ r: UnsafeMutablePointer<T>, _ n: Int, _ f: (T, T) -> T) {
        switch (sx, sz) {
        case (1, 1): for i in 0..<n { r[i] = f(x[i], z[i]) }
        case (1, 0): let c = z[0]; for i in 0..<n { r[i] = f(x[i], c) }
        case (0, 1): let c = x[0]; for i in 0..<n { r[i] = f(c, z[i]) }
        default: for i in 0..<n { r[i] = f(x[i * sx], z[i * sz]) }
        }
    }
}
