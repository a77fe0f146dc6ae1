/// Elementwise ops: math, activations, comparisons, logic, Where, Cast.
extension OpCatalog {
    static func registerElementwise(into catalog: inout OpCatalog) {
        catalog.define([
            "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Ceil", "Cos", "Cosh", "Erf", "Exp", "Floor",
            "Log", "Reciprocal", "Relu", "Round", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign",
            "Sqrt", "Tan", "Tanh", "Elu", "Selu", "Celu", "LeakyRelu", "HardSigmoid", "HardSwish", "ThresholdedRelu",
            "Mish", "Gelu", "Shrink", "BitwiseNot", "Clip", "Swish",
        ], rule: NodeInference.likeFirstInput)
        catalog.define(["Neg"]) { inference in
            inference.set(0, inference.fact(0).dtype, inference.shape(0))
            inference.propagateKnown([0]) { v in
                guard let x = v[0].value, x != Int.min else { return .unknown }
                return .fixed(-x)
            }
        }
        catalog.define(["Not"]) { inference in
            inference.set(0, inference.fact(0).dtype, inference.shape(0))
            inference.propagateKnown([0]) { v in
                guard let x = v[0].value, x != Int.min else { return .unknown }
                return .fixed(x == 0 ? 1 : 0)
            }
        }

        // Broadcasting binary and variadic ops, with arithmetic on known values where it is exact.
        let legacy = CanonicalForm(legacyBroadcasting: true)
        catalog.define(["Add"], canonical: legacy) { inference in
            try inference.elementwise(dtype: inference.firstDType)
            inference.propagateKnown([0, 1]) { DimMath.add($0[0], $0[1]) }
        }
        catalog.define(["Sub"], canonical: legacy) { inference in
            try inference.elementwise(dtype: inference.firstDType)
            inference.propagateKnown([0, 1]) { DimMath.subtract($0[0], $0[1]) }
        }
        catalog.define(["Mul"], canonical: legacy) { inference in
            try inference.elementwise(dtype: inference.firstDType)
            inference.propagateKnown([0, 1]) { DimMath.multiply($0[0], $0[1]) }
        }
        catalog.define(["Div"], canonical: legacy) { inference in
            let dtype = inference.firstDType
            try inference.elementwise(dtype: dtype)
            if NodeInference.isIntegral(dtype) { inference.propagateKnown([0, 1]) { DimMath.divide($0[0], $0[1]) } }
        }
        catalog.define(["Mod"]) { inference in
            let dtype = inference.firstDType
            try inference.elementwise(dtype: dtype)
            guard NodeInference.isIntegral(dtype) else { return }
            let cStyle = inference.int("fmod", 0) != 0
            inference.propagateKnown([0, 1]) { v in
                guard let x = v[0].value, let y = v[1].value, y != 0, y != -1 else { return .unknown }
                return .fixed(cStyle ? x % y : ((x % y) &+ y) % y)
            }
        }
        for (name, isMax) in [("Max", true), ("Min", false)] {
            catalog.define([name]) { inference in
                try inference.elementwise(dtype: inference.firstDType)
                inference.propagateKnown(Array(inference.node.inputs.indices)) { v in
                    let values = v.compactMap(\.value)
                    if values.count == v.count { return .fixed(isMax ? values.max()! : values.min()!) }
                    return v.allSatisfy { $0 == v[0] } ? v[0] : .unknown
                }
            }
        }
        let logic: [(String, @Sendable (Bool, Bool) -> Bool)] = [("And", { $0 && $1 }), ("Or", { $0 || $1 }), ("Xor", { $0 != $1 })]
        for (name, op) in logic {
            catalog.define([name], canonical: legacy) { inference in
                try inference.elementwise(dtype: inference.firstDType)
                inference.propagateKnown([0, 1]) { v in
                    guard let x = v[0].value, let y = v[1].value else { return .unknown }
                    return .fixed(op(x != 0, y != 0) ? 1 : 0)
                }
            }
        }
        catalog.define(["Pow"], canonical: legacy) { try $0.elementwise(dtype: $0.firstDType) }
        catalog.define(["BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "PRelu", "Mean", "Sum"]) {
            try $0.elementwise(dtype: $0.firstDType)
        }
        catalog.define(["Equal"], canonical: legacy) { inference in
            try inference.elementwise(dtype: .bool)
            inference.propagateKnown([0, 1]) { v in
                if let x = v[0].value, let y = v[1].value { return .fixed(x == y ? 1 : 0) }
                if case .symbol = v[0], v[0] == v[1] { return .fixed(1) }
                return .unknown
            }
        }
        let comparisons: [(String, Bool, @Sendable (Int, Int) -> Bool)] = [
            ("Less", true, { $0 < $1 }), ("LessOrEqual", false, { $0 <= $1 }),
            ("Greater", true, { $0 > $1 }), ("GreaterOrEqual", false, { $0 >= $1 }),
        ]
        for (name, hadLegacyBroadcasting, compare) in comparisons {
            catalog.define([name], canonical: hadLegacyBroadcasting ? legacy : nil) { inference in
                try inference.elementwise(dtype: .bool)
                inference.propagateKnown([0, 1]) { v in
                    guard let x = v[0].value, let y = v[1].value else { return .unknown }
                    return .fixed(compare(x, y) ? 1 : 0)
                }
            }
        }
        catalog.define(["IsNaN", "IsInf"]) { $0.set(0, .bool, $0.shape(0)) }
        catalog.define(["Where"]) { inference in
            inference.set(0, inference.dtype(1) ?? inference.dtype(2), try inference.broadcastShape([0, 1, 2]))
            inference.propagateKnown([0, 1, 2]) { v in
                if let c = v[0].value { return c != 0 ? v[1] : v[2] }
                return v[1] == v[2] ? v[1] : .unknown
            }
        }
        catalog.define(["Cast"]) { inference in
            let to = inference.dtypeAttribute("to", nil)
            inference.set(0, to, inference.shape(0))
            inference.castKnown(to: to)
        }
        catalog.define(["CastLike"]) { inference in
            inference.set(0, inference.dtype(1), inference.shape(0))
            inference.castKnown(to: inference.dtype(1))
        }
        // BitCast: the input's shape, read as the type `to` of the same width (no known-value propagation).
        catalog.define(["BitCast"]) { inference in
            inference.set(0, inference.dtypeAttribute("to", nil), inference.shape(0))
        }
    }
}

extension NodeInference {
    /// Computes output 0's known value elementwise from the known values of `inputs` (broadcasting
    /// one-element values), when all are known and the result has as many elements as the largest.
    mutating func propagateKnown(_ inputs: [Int], _ compute: ([Dim]) -> Dim) {
        var values: [KnownValue] = []
        for i in inputs {
            guard let k = known(i) else { return }
            values.append(k)
        }
        let n = values.map(\.count).max() ?? 0
        guard values.allSatisfy({ $0.count == n || $0.count == 1 }) else { return }
        var shape: [Dim] = []
        for v in values {
            guard let b = DimMath.broadcast(shape, v.shape.map { .fixed($0) }) else { return }
            shape = b
        }
        let dims = shape.compactMap(\.value)
        guard dims.count == shape.count, dims.reduce(1, *) == n else { return }
        let elements = (0..<n).map { j in compute(values.map { $0.elements[$0.count == 1 ? 0 : j] }) }
        setKnown(0, KnownValue(shape: dims, elements: elements))
    }

    /// Carries a known value through Cast/CastLike to `to` when the conversion keeps the numbers
    /// (integers within range, exact float32/float64 values, bool as 0 or 1).
    mutating func castKnown(to: DType?) {
        guard let to, let k = known(0) else { return }
        let limit: Int
        switch to {
        case .int64, .uint64: limit = Int.max
        case .int32, .uint32, .float64: limit = 1 << 31
        case .float32, .int16, .uint16: limit = 1 << 15
        case .int8, .uint8: limit = 1 << 7
        case .bool:
            setKnown(0, KnownValue(shape: k.shape, elements: k.elements.map { $0.value.map { .fixed($0 != 0 ? 1 : 0) } ?? .unknown }))
            return
        default: return
        }
        let unsigned = !to.isSignedInteger && to.isInteger
        let elements = k.elements.map { d -> Dim in
            guard let v = d.value else { return d }
            return v < limit && v >= (unsigned ? 0 : -limit) ? d : .unknown
        }
        setKnown(0, KnownValue(shape: k.shape, elements: elements))
    }
}

extension NodeInference {
    /// A broadcasting elementwise op (binary or variadic) producing `dtype`.
    mutating func elementwise(dtype: DType?) throws {
        set(0, dtype, try broadcastShape(Array(node.inputs.indices)))
    }

    /// Whether values of `dtype` are integers (or booleans), so that arithmetic on known values is exact.
    static func isIntegral(_ dtype: DType?) -> Bool { dtype?.isInteger == true || dtype == .bool }
}
