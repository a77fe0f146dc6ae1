/// What inference knows about values in scope: their type facts, constant tensors and known values.
struct InferenceEnvironment {
    /// Type facts by value name.
    var facts: [String: TypeFact] = [:]
    /// Constant tensors by value name (non-overridable initializers and Constant outputs).
    var constants: [String: Tensor] = [:]
    /// Known elements of small integer tensors by value name.
    var known: [String: KnownValue] = [:]
}

/// What is known about one value's type: for a tensor, its element type and shape, each possibly
/// unknown; for another kind of value (sequence, optional, map), its `ValueType`.
struct TypeFact: Equatable {
    /// The element type, when known.
    var dtype: DType?
    /// The dims, or nil when the rank is unknown.
    var shape: [Dim]?
    /// The type of a non-tensor value.
    var other: ValueType?

    /// Nothing known.
    static let unknown = TypeFact(nil, nil)

    /// A tensor fact.
    init(_ dtype: DType?, _ shape: [Dim]?) {
        self.dtype = dtype
        self.shape = shape
    }

    /// A non-tensor fact.
    init(other: ValueType) {
        self.other = other
    }

    /// The fact a declared type states.
    init(_ type: ValueType) {
        if case .tensor(let t) = type {
            self.init(t.dtype, t.shape)
        } else {
            self.init(other: type)
        }
    }

    /// The type to record, when the element type (or the non-tensor type) is known.
    var valueType: ValueType? {
        if let other { return other }
        guard let dtype else { return nil }
        return .tensor(TensorType(dtype, shape))
    }

    /// The rank, when known.
    var rank: Int? { shape?.count }

    /// This (inferred) fact completed by a declared one: inferred dims win, declared ones fill what
    /// inference left unknown; a rank disagreement keeps the inferred shape.
    func refined(by declared: TypeFact) -> TypeFact {
        if other != nil { return self }
        if declared.other != nil { return dtype == nil && shape == nil ? declared : self }
        var result = TypeFact(dtype ?? declared.dtype, shape)
        guard let d = declared.shape else { return result }
        guard let s = shape else {
            result.shape = d
            return result
        }
        guard s.count == d.count else { return result }
        result.shape = zip(s, d).map { inferred, declared in
            if case .unknown = inferred { return declared }
            if case .symbol = inferred, case .fixed = declared { return declared }
            return inferred
        }
        return result
    }

    /// This (declared) fact with its unknown parts filled from an inferred one.
    func filling(from inferred: TypeFact) -> TypeFact {
        if other != nil { return self }
        var result = TypeFact(dtype ?? inferred.dtype, shape ?? inferred.shape)
        if let s = shape, let i = inferred.shape, s.count == i.count {
            result.shape = zip(s, i).map { declared, inferred in
                if case .unknown = declared { return inferred }
                return declared
            }
        }
        return result
    }
}

/// The elements of a small integer tensor, each a fixed number, a symbol (a dim of some tensor) or
/// unknown; the shape is fixed.
struct KnownValue: Equatable {
    /// Tensors with more elements than this are not tracked.
    static let maxCount = 1024
    /// The tensor's shape.
    var shape: [Int]
    /// The elements in row-major order.
    var elements: [Dim]

    /// The number of elements.
    var count: Int { elements.count }

    /// A known value of `shape` with `elements`.
    init(shape: [Int], elements: [Dim]) {
        self.shape = shape
        self.elements = elements
    }

    /// The elements of an integer constant (nil for other types or large tensors).
    init?(_ tensor: Tensor) {
        guard tensor.dtype.isInteger, tensor.count <= KnownValue.maxCount else { return nil }
        self.init(shape: tensor.shape, elements: tensor.asInts().map { .fixed($0) })
    }

    /// The elements as integers when all are fixed.
    var ints: [Int]? {
        var out: [Int] = []
        out.reserveCapacity(elements.count)
        for e in elements {
            guard let v = e.value else { return nil }
            out.append(v)
        }
        return out
    }
}

// MARK: - Dim arithmetic

enum DimMath {
    /// The product of `dims`: fixed when all are fixed (or one is 0), a symbol when it is the only
    /// non-1 factor, else unknown.
    static func product(_ dims: [Dim]) -> Dim {
        var fixed = 1
        var others: [Dim] = []
        for d in dims {
            switch d {
            case .fixed(let v): fixed = fixed &* v
            default: others.append(d)
            }
        }
        if dims.contains(.fixed(0)) { return .fixed(0) }
        if others.isEmpty { return .fixed(fixed) }
        if others.count == 1, fixed == 1, case .symbol = others[0] { return others[0] }
        return .unknown
    }

    /// One dim of a broadcast result, or nil when fixed sizes are incompatible.
    static func broadcast(_ a: Dim, _ b: Dim) -> Dim? {
        switch (a, b) {
        case (.fixed(let x), .fixed(let y)):
            if x == y { return a }
            if x == 1 { return b }
            if y == 1 { return a }
            return nil
        case (.fixed(let x), _):
            return x == 1 ? b : a
        case (_, .fixed(let y)):
            return y == 1 ? a : b
        case (.symbol(let x), .symbol(let y)):
            return x == y ? a : .unknown
        default:
            return .unknown
        }
    }

    /// A broadcast shape (numpy rules), or nil when fixed sizes are incompatible.
    static func broadcast(_ a: [Dim], _ b: [Dim]) -> [Dim]? {
        let rank = max(a.count, b.count)
        var out: [Dim] = []
        out.reserveCapacity(rank)
        for i in 0..<rank {
            let x = i < rank - a.count ? Dim.fixed(1) : a[i - (rank - a.count)]
            let y = i < rank - b.count ? Dim.fixed(1) : b[i - (rank - b.count)]
            guard let d = broadcast(x, y) else { return nil }
            out.append(d)
        }
        return out
    }

    /// Two dims that must be equal, merged: the more specific one; nil when fixed sizes differ.
    static func unify(_ a: Dim, _ b: Dim) -> Dim? {
        switch (a, b) {
        case (.fixed(let x), .fixed(let y)): return x == y ? a : nil
        case (.fixed, _): return a
        case (_, .fixed): return b
        case (.symbol, _): return a
        default: return b
        }
    }

    /// Dims that may differ (e.g. the two branches of an If): kept where equal, else unknown.
    static func join(_ a: [Dim]?, _ b: [Dim]?) -> [Dim]? {
        guard let a, let b, a.count == b.count else { return nil }
        return zip(a, b).map { $0 == $1 ? $0 : .unknown }
    }

    /// `a + b` on dims.
    static func add(_ a: Dim, _ b: Dim) -> Dim {
        if let x = a.value, let y = b.value { return .fixed(x &+ y) }
        if a == .fixed(0) { return b }
        if b == .fixed(0) { return a }
        return .unknown
    }

    /// `a − b` on dims.
    static func subtract(_ a: Dim, _ b: Dim) -> Dim {
        if let x = a.value, let y = b.value { return .fixed(x &- y) }
        if b == .fixed(0) { return a }
        return .unknown
    }

    /// `a × b` on dims.
    static func multiply(_ a: Dim, _ b: Dim) -> Dim {
        if let x = a.value, let y = b.value { return .fixed(x &* y) }
        if a == .fixed(1) { return b }
        if b == .fixed(1) { return a }
        if a == .fixed(0) || b == .fixed(0) { return .fixed(0) }
        return .unknown
    }

    /// `a ÷ b` on dims (integer division; only exact or non-negative cases are computed).
    static func divide(_ a: Dim, _ b: Dim) -> Dim {
        if let x = a.value, let y = b.value, y != 0 {
            let (q, overflow) = x.dividedReportingOverflow(by: y)
            if !overflow, x % y == 0 || (x >= 0 && y > 0) { return .fixed(q) }
            return .unknown
        }
        if b == .fixed(1) { return a }
        if a == b, case .symbol = a { return .fixed(1) }
        return .unknown
    }

    /// The size of dim `missing` of a reshape of `input` into `output` (whose entry at `missing` is
    /// ignored): fixed when the element counts determine it, a symbol when symbols cancel out to one,
    /// else unknown. Nil when fixed counts cannot divide.
    static func inferredReshapeDim(input: [Dim], output: [Dim], missing: Int) -> Dim? {
        var numerator = 1, denominator = 1
        var symbols: [String: Int] = [:]
        for d in input {
            switch d {
            case .fixed(let v): numerator = numerator &* v
            case .symbol(let s): symbols[s, default: 0] += 1
            case .unknown: return .unknown
            }
        }
        for (j, d) in output.enumerated() where j != missing {
            switch d {
            case .fixed(let v): denominator = denominator &* v
            case .symbol(let s): symbols[s, default: 0] -= 1
            case .unknown: return .unknown
            }
        }
        let remaining = symbols.filter { $0.value != 0 }
        if remaining.values.contains(where: { $0 < 0 }) { return .unknown }
        if denominator == 0 { return .unknown }
        if remaining.isEmpty {
            let (q, overflow) = numerator.dividedReportingOverflow(by: denominator)
            if overflow { return .unknown }
            return numerator % denominator == 0 ? .fixed(q) : nil
        }
        if remaining.count == 1, remaining.first!.value == 1, numerator == denominator {
            return .symbol(remaining.first!.key)
        }
        return .unknown
    }
}
