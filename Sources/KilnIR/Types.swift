/// One dimension of a tensor shape: a known size, a named symbol bound at run time, or unknown.
public enum Dim: Hashable, Sendable, CustomStringConvertible {
    /// A size known at compile time.
    case fixed(Int)
    /// A named size (`batch`, `seq`) shared by every dim with the same name.
    case symbol(String)
    /// A size nothing is known about.
    case unknown

    /// The size, when known.
    public var value: Int? {
        if case .fixed(let v) = self { return v }
        return nil
    }

    /// `3`, `batch` or `?`.
    public var description: String {
        switch self {
        case .fixed(let v): String(v)
        case .symbol(let s): s
        case .unknown: "?"
        }
    }
}

/// The element type and shape of a tensor value. A nil `shape` means the rank is unknown.
public struct TensorType: Hashable, Sendable, CustomStringConvertible {
    /// The element type.
    public var dtype: DType
    /// The dims, or nil when even the rank is unknown.
    public var shape: [Dim]?

    /// A tensor type with the given element type and shape.
    public init(_ dtype: DType, _ shape: [Dim]?) {
        self.dtype = dtype
        self.shape = shape
    }

    /// A tensor type whose dims are all known.
    public init(_ dtype: DType, fixed shape: [Int]) {
        self.init(dtype, shape.map { .fixed($0) })
    }

    /// The shape as integers when every dim is known.
    public var fixedShape: [Int]? {
        guard let shape else { return nil }
        var out: [Int] = []
        for d in shape {
            guard let v = d.value else { return nil }
            out.append(v)
        }
        return out
    }

    /// `f32[1,3,224,224]`, `i64[batch,?]` or `f32[*]` for unknown rank.
    public var description: String {
        guard let shape else { return "\(dtype)[*]" }
        return "\(dtype)[\(shape.map(\.description).joined(separator: ","))]"
    }
}

/// The type of any value a graph carries: a tensor, a sequence, a map or an optional.
public indirect enum ValueType: Hashable, Sendable, CustomStringConvertible {
    /// A dense tensor.
    case tensor(TensorType)
    /// A sparse tensor (COO); only its element type and shape are tracked.
    case sparseTensor(TensorType)
    /// A sequence of values of one type.
    case sequence(ValueType)
    /// A map from scalar keys to values.
    case map(key: DType, value: ValueType)
    /// A value that may be absent.
    case optional(ValueType)

    /// The tensor type when this is a tensor.
    public var tensorType: TensorType? {
        if case .tensor(let t) = self { return t }
        return nil
    }

    /// `f32[2,3]`, `seq<f32[*]>`, `map<i64,f32[*]>`, `opt<…>`.
    public var description: String {
        switch self {
        case .tensor(let t): t.description
        case .sparseTensor(let t): "sparse<\(t)>"
        case .sequence(let e): "seq<\(e)>"
        case .map(let k, let v): "map<\(k),\(v)>"
        case .optional(let e): "opt<\(e)>"
        }
    }
}
