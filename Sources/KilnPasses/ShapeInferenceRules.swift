import KilnIR

/// The inference of one node: reads its inputs' facts from the environment and fills `results`
/// (one fact per output), plus known values and constants of outputs where they follow.
struct NodeInference {
    /// The node.
    let node: Node
    /// What is known in the node's scope.
    let environment: InferenceEnvironment
    /// One fact per output of the node.
    var results: [TypeFact]
    /// Known values of outputs (small integer tensors), by output position.
    var knownResults: [KnownValue?]
    /// Constant outputs (Constant nodes), by output position.
    var constantResults: [Tensor?]
    /// The output facts of the node's subgraphs, by attribute name (set before `infer` runs).
    var subgraphOutputs: [String: [TypeFact]] = [:]

    /// The inference of `node` in `environment`; nothing is known yet.
    init(node: Node, environment: InferenceEnvironment) {
        self.node = node
        self.environment = environment
        results = Array(repeating: .unknown, count: node.outputs.count)
        knownResults = Array(repeating: nil, count: node.outputs.count)
        constantResults = Array(repeating: nil, count: node.outputs.count)
    }

    // MARK: inputs

    /// Whether input `i` is given.
    func present(_ i: Int) -> Bool { i >= 0 && i < node.inputs.count && !node.inputs[i].isEmpty }
    /// The fact of input `i` (unknown when absent).
    func fact(_ i: Int) -> TypeFact { present(i) ? environment.facts[node.inputs[i]] ?? .unknown : .unknown }
    /// The shape of input `i`, when its rank is known.
    func shape(_ i: Int) -> [Dim]? { fact(i).shape }
    /// The element type of input `i`, when known.
    func dtype(_ i: Int) -> DType? { fact(i).dtype }
    /// The known value of input `i`.
    func known(_ i: Int) -> KnownValue? { present(i) ? environment.known[node.inputs[i]] : nil }
    /// The elements of input `i` when all are known numbers.
    func knownInts(_ i: Int) -> [Int]? { known(i)?.ints }
    /// The constant tensor of input `i`.
    func constant(_ i: Int) -> Tensor? { present(i) ? environment.constants[node.inputs[i]] : nil }
    /// The element type of the first input whose type is known.
    var firstDType: DType? {
        for i in node.inputs.indices { if let d = dtype(i) { return d } }
        return nil
    }
    /// The number of outputs the node has.
    var outputCount: Int { node.outputs.count }

    // MARK: attributes

    /// A string attribute, or `defaultValue`.
    func string(_ name: String, _ defaultValue: String) -> String {
        if case .string(let v)? = node.attributes[name] { return v }
        return defaultValue
    }

    /// An int attribute, or `defaultValue`.
    func int(_ name: String, _ defaultValue: Int) -> Int { node.int(name, defaultValue) }

    /// An ints attribute, or nil.
    func ints(_ name: String) -> [Int]? { node.ints(name) }

    /// An element type given by an int attribute (ONNX data type number), or `defaultValue`.
    func dtypeAttribute(_ name: String, _ defaultValue: DType?) -> DType? {
        guard case .int(let code)? = node.attributes[name] else { return defaultValue }
        return DType(onnxCode: code) ?? defaultValue
    }

    // MARK: results

    /// An error naming this node.
    func failure(_ message: String) -> KilnError {
        let label = node.name.isEmpty ? (node.outputs.first(where: { !$0.isEmpty }).map { "producing '\($0)'" } ?? "")
                                      : "'\(node.name)'"
        return KilnError(.invalidModel, "node \(label) (\(node.op)): \(message)")
    }

    /// `axis` normalized against `rank`; throws when it is out of range.
    func axis(_ axis: Int, rank: Int, what: String = "axis") throws -> Int {
        guard axis >= -rank, axis < rank else { throw failure("\(what) \(axis) is out of range for rank \(rank)") }
        return axis < 0 ? axis + rank : axis
    }

    /// Sets output `i`.
    mutating func set(_ i: Int, _ dtype: DType?, _ shape: [Dim]?) {
        guard i >= 0, i < results.count else { return }
        results[i] = TypeFact(dtype, shape)
    }

    /// Sets output `i` to a fact.
    mutating func set(_ i: Int, _ fact: TypeFact) {
        guard i >= 0, i < results.count else { return }
        results[i] = fact
    }

    /// Records the known value of output `i`.
    mutating func setKnown(_ i: Int, _ value: KnownValue?) {
        guard i >= 0, i < knownResults.count, let value, value.count <= KnownValue.maxCount else { return }
        knownResults[i] = value
    }

    /// The broadcast of the shapes of `inputs`; nil when one rank is unknown; throws when fixed dims clash.
    func broadcastShape(_ inputs: [Int]) throws -> [Dim]? {
        var out: [Dim] = []
        for i in inputs where present(i) {
            guard let s = shape(i) else { return nil }
            guard let b = DimMath.broadcast(out, s) else {
                throw failure("shapes \(describe(out)) and \(describe(s)) do not broadcast")
            }
            out = b
        }
        return out
    }

    /// `[2,batch,?]`.
    func describe(_ shape: [Dim]) -> String { "[\(shape.map(\.description).joined(separator: ","))]" }

    // MARK: dispatch

    static let unarySameType: Set<String> = [
        "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Ceil", "Cos", "Cosh", "Erf", "Exp", "Floor",
        "Log", "Reciprocal", "Relu", "Round", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign",
        "Sqrt", "Tan", "Tanh", "Elu", "Selu", "Celu", "LeakyRelu", "HardSigmoid", "HardSwish", "ThresholdedRelu",
        "Mish", "Gelu", "Shrink", "BitwiseNot", "RotaryEmbedding", "Clip", "Softmax", "LogSoftmax", "Hardmax",
        "LpNormalization", "MeanVarianceNormalization", "InstanceNormalization", "LRN", "Swish", "CumSum",
        "CumProd", "Trilu", "ReverseSequence", "GroupNormalization", "RMSNormalization", "ScatterElements",
        "ScatterND", "Scatter", "TensorScatter",
    ]
    static let binarySameType: Set<String> = [
        "Add", "Sub", "Mul", "Div", "Pow", "Mod", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "And", "Or",
        "Xor", "PRelu", "Max", "Min", "Mean", "Sum",
    ]
    static let comparisons: Set<String> = ["Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual"]
    static let reductions: Set<String> = [
        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSum", "ReduceSumSquare",
    ]

    /// Fills `results` from the node's op and inputs.
    mutating func infer() throws {
        guard node.op.domain.isEmpty else { return }
        let op = node.op.name
        if Self.unarySameType.contains(op) {
            set(0, fact(0).dtype, shape(0))
            return
        }
        if op == "Neg" || op == "Abs" || op == "Not" {
            set(0, fact(0).dtype, shape(0))
            propagateKnown([0]) { v in
                guard let x = v[0].value else { return .unknown }
                guard x != Int.min else { return .unknown }
                return .fixed(op == "Neg" ? -x : op == "Abs" ? abs(x) : (x == 0 ? 1 : 0))
            }
            return
        }
        if Self.binarySameType.contains(op) {
            try elementwise(dtype: firstDType)
            return
        }
        if Self.comparisons.contains(op) {
            try elementwise(dtype: .bool)
            return
        }
        if Self.reductions.contains(op) {
            try reduce()
            return
        }
        switch op {
        case "Identity":
            set(0, fact(0))
            setKnown(0, known(0))
            if let c = constant(0) { constantResults[0] = c }
        case "IsNaN", "IsInf":
            set(0, .bool, shape(0))
        case "Where":
            set(0, dtype(1) ?? dtype(2), try broadcastShape([0, 1, 2]))
            propagateKnown([0, 1, 2]) { v in
                if let c = v[0].value { return c != 0 ? v[1] : v[2] }
                return v[1] == v[2] ? v[1] : .unknown
            }
        case "Cast":
            let to = dtypeAttribute("to", nil)
            set(0, to, shape(0))
            castKnown(to: to)
        case "CastLike":
            set(0, dtype(1), shape(0))
            castKnown(to: dtype(1))
        case "Constant":
            constantNode()
        case "Shape":
            shapeOp()
        case "Size":
            set(0, .int64, [])
            if let s = shape(0) { setKnown(0, KnownValue(shape: [], elements: [DimMath.product(s)])) }
        case "ConstantOfShape":
            constantOfShape()
        case "Dropout":
            set(0, dtype(0), shape(0))
            set(1, .bool, shape(0))
        case "BatchNormalization":
            set(0, dtype(0), shape(0))
            set(1, dtype(3), shape(3))
            set(2, dtype(4), shape(4))
        case "LayerNormalization":
            try layerNormalization()
        case "MatMul", "MatMulInteger", "QLinearMatMul":
            try matMul()
        case "Gemm":
            try gemm()
        case "Conv", "ConvInteger", "QLinearConv", "DeformConv":
            try conv()
        case "ConvTranspose":
            try convTranspose()
        case "MaxPool", "AveragePool", "LpPool":
            try pool()
        case "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool":
            let s = shape(0).map { s in s.count < 2 ? s : Array(s[..<2]) + Array(repeating: Dim.fixed(1), count: s.count - 2) }
            set(0, dtype(0), s)
        case "Reshape":
            try reshape()
        case "Flatten":
            try flatten()
        case "Transpose":
            try transpose()
        case "Concat":
            try concat()
        case "Split":
            try split()
        case "Slice":
            try slice()
        case "Gather":
            try gather()
        case "GatherElements":
            set(0, dtype(0), shape(1))
        case "GatherND":
            gatherND()
        case "Unsqueeze":
            try unsqueeze()
        case "Squeeze":
            try squeeze()
        case "Expand":
            try expand()
        case "Tile":
            tile()
        case "Pad":
            try pad()
        case "Resize":
            try resize()
        case "Range":
            range()
        case "ArgMax", "ArgMin":
            try argReduce()
        case "TopK":
            try topK()
        case "Einsum":
            einsum()
        case "OneHot":
            try oneHot()
        case "NonZero":
            set(0, .int64, [shape(0).map { .fixed($0.count) } ?? .unknown, .unknown])
        case "Compress":
            try compress()
        case "Unique":
            try unique()
        case "DepthToSpace", "SpaceToDepth":
            depthSpace(toSpace: op == "DepthToSpace")
        case "EyeLike":
            set(0, dtypeAttribute("dtype", dtype(0)), shape(0))
        case "RandomNormal", "RandomUniform":
            set(0, dtypeAttribute("dtype", .float32), ints("shape")?.map { .fixed($0) })
        case "RandomNormalLike", "RandomUniformLike", "Bernoulli":
            set(0, dtypeAttribute("dtype", dtype(0)), shape(0))
        case "Multinomial":
            let batch = shape(0).flatMap { $0.count == 2 ? $0[0] : nil } ?? .unknown
            set(0, dtypeAttribute("dtype", .int32), [batch, .fixed(int("sample_size", 1))])
        case "QuantizeLinear":
            set(0, dtypeAttribute("output_dtype", nil) ?? (present(2) ? dtype(2) : .uint8), shape(0))
        case "DequantizeLinear":
            set(0, dtypeAttribute("output_dtype", nil) ?? dtype(1), shape(0))
        case "DynamicQuantizeLinear":
            set(0, .uint8, shape(0))
            set(1, .float32, [])
            set(2, .uint8, [])
        case "RNN", "GRU", "LSTM":
            recurrent()
        case "Det":
            set(0, dtype(0), shape(0).flatMap { $0.count >= 2 ? Array($0.dropLast(2)) : nil })
        case "MaxUnpool":
            maxUnpool()
        case "GridSample":
            if let x = shape(0), let g = shape(1), x.count >= 3, g.count == x.count {
                set(0, dtype(0), [x[0], x[1]] + g[1..<(g.count - 1)])
            } else {
                set(0, dtype(0), shape(0).map { Array(repeating: Dim.unknown, count: $0.count) })
            }
        case "RoiAlign":
            let rois = shape(1).flatMap { $0.count == 2 ? $0[0] : nil } ?? .unknown
            let channels = shape(0).flatMap { $0.count == 4 ? $0[1] : nil } ?? .unknown
            set(0, dtype(0), [rois, channels, .fixed(int("output_height", 1)), .fixed(int("output_width", 1))])
        case "NonMaxSuppression":
            set(0, .int64, [.unknown, .fixed(3)])
        case "HannWindow", "HammingWindow", "BlackmanWindow":
            let size = known(0)?.elements.first ?? .unknown
            set(0, dtypeAttribute("output_datatype", .float32), [size])
        case "NegativeLogLikelihoodLoss":
            set(0, dtype(0), string("reduction", "mean") == "none" ? shape(1) : [])
        case "SoftmaxCrossEntropyLoss":
            set(0, dtype(0), string("reduction", "mean") == "none" ? shape(1) : [])
            set(1, dtype(0), shape(0))
        case "Attention":
            attention()
        case "CenterCropPad":
            try centerCropPad()
        case "Col2Im":
            col2Im()
        case "RegexFullMatch":
            set(0, .bool, shape(0))
        case "StringConcat":
            set(0, .string, try broadcastShape([0, 1]))
        case "StringSplit":
            set(0, .string, shape(0).map { $0 + [.unknown] })
            set(1, .int64, shape(0))
        case "StringNormalizer":
            set(0, .string, shape(0).map { s in s.count == 2 ? [s[0], .unknown] : s.map { _ in .unknown } })
        case "If":
            ifOp()
        case "Loop":
            loop()
        case "Scan":
            scan()
        case "Optional":
            if case .type(let t)? = node.attributes["type"] {
                set(0, TypeFact(other: .optional(t)))
            } else if let t = fact(0).valueType {
                set(0, TypeFact(other: .optional(t)))
            }
        case "OptionalHasElement":
            set(0, .bool, [])
        case "OptionalGetElement":
            let input = fact(0)
            if case .optional(let t)? = input.other { set(0, TypeFact(t)) } else { set(0, input) }
        case "SequenceEmpty":
            set(0, TypeFact(other: .sequence(.tensor(TensorType(dtypeAttribute("dtype", .float32)!, nil)))))
        case "SequenceConstruct":
            sequenceConstruct()
        case "SequenceAt":
            if case .sequence(let t)? = fact(0).other { set(0, TypeFact(t)) }
        case "SequenceLength":
            set(0, .int64, [])
        case "SequenceInsert", "SequenceErase":
            if let seq = fact(0).other { set(0, TypeFact(other: seq)) }
        case "SplitToSequence":
            if let d = dtype(0) { set(0, TypeFact(other: .sequence(.tensor(TensorType(d, nil))))) }
        case "ConcatFromSequence":
            if case .sequence(.tensor(let t))? = fact(0).other {
                let rank = t.shape.map { $0.count + (int("new_axis", 0) != 0 ? 1 : 0) }
                set(0, t.dtype, rank.map { Array(repeating: Dim.unknown, count: $0) })
            }
        default:
            break
        }
    }

    // MARK: elementwise and reductions

    /// A broadcasting elementwise op (binary or variadic) producing `dtype`.
    mutating func elementwise(dtype: DType?) throws {
        set(0, dtype, try broadcastShape(Array(node.inputs.indices)))
        // Arithmetic and comparisons on known values.
        let op = node.op.name
        let integral = dtype?.isInteger == true || dtype == .bool
        switch op {
        case "Add": propagateKnown([0, 1]) { DimMath.add($0[0], $0[1]) }
        case "Sub": propagateKnown([0, 1]) { DimMath.subtract($0[0], $0[1]) }
        case "Mul": propagateKnown([0, 1]) { DimMath.multiply($0[0], $0[1]) }
        case "Div" where integral: propagateKnown([0, 1]) { DimMath.divide($0[0], $0[1]) }
        case "Mod" where integral:
            let cStyle = int("fmod", 0) != 0
            propagateKnown([0, 1]) { v in
                guard let x = v[0].value, let y = v[1].value, y != 0, y != -1 else { return .unknown }
                return .fixed(cStyle ? x % y : ((x % y) &+ y) % y)
            }
        case "Max", "Min":
            let isMax = op == "Max"
            propagateKnown(Array(node.inputs.indices)) { v in
                let values = v.compactMap(\.value)
                if values.count == v.count { return .fixed(isMax ? values.max()! : values.min()!) }
                return v.allSatisfy { $0 == v[0] } ? v[0] : .unknown
            }
        case "And", "Or", "Xor":
            propagateKnown([0, 1]) { v in
                guard let x = v[0].value, let y = v[1].value else { return .unknown }
                let (a, b) = (x != 0, y != 0)
                return .fixed((op == "And" ? a && b : op == "Or" ? a || b : a != b) ? 1 : 0)
            }
        case "Equal":
            propagateKnown([0, 1]) { v in
                if let x = v[0].value, let y = v[1].value { return .fixed(x == y ? 1 : 0) }
                if case .symbol = v[0], v[0] == v[1] { return .fixed(1) }
                return .unknown
            }
        case "Less", "LessOrEqual", "Greater", "GreaterOrEqual":
            propagateKnown([0, 1]) { v in
                guard let x = v[0].value, let y = v[1].value else { return .unknown }
                let result = op == "Less" ? x < y : op == "LessOrEqual" ? x <= y : op == "Greater" ? x > y : x >= y
                return .fixed(result ? 1 : 0)
            }
        default:
            break
        }
    }

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

    /// Reduce* ops: axes from input 1, `keepdims`, `noop_with_empty_axes`.
    mutating func reduce() throws {
        let keep = int("keepdims", 1) != 0
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        var axes: [Int]
        if present(1) {
            guard let given = knownInts(1) else {
                // Axes unknown: with keepdims the rank stays, else nothing is known.
                return set(0, dtype(0), keep ? Array(repeating: .unknown, count: s.count) : nil)
            }
            axes = given
        } else {
            axes = []
        }
        if axes.isEmpty {
            if int("noop_with_empty_axes", 0) != 0 { return set(0, dtype(0), s) }
            axes = Array(s.indices)
        }
        let normalized = Set(try axes.map { try axis($0, rank: s.count) })
        var out: [Dim] = []
        for (j, d) in s.enumerated() {
            if normalized.contains(j) {
                if keep { out.append(.fixed(1)) }
            } else {
                out.append(d)
            }
        }
        set(0, dtype(0), out)
    }

    /// ArgMax and ArgMin.
    mutating func argReduce() throws {
        guard let s = shape(0) else { return set(0, .int64, nil) }
        let a = try axis(int("axis", 0), rank: max(s.count, 1))
        var out = s
        if s.isEmpty { return set(0, .int64, []) }
        if int("keepdims", 1) != 0 { out[a] = .fixed(1) } else { out.remove(at: a) }
        set(0, .int64, out)
    }

    /// TopK: values and int64 indices with `k` along `axis`.
    mutating func topK() throws {
        guard var s = shape(0) else {
            set(0, dtype(0), nil)
            set(1, .int64, nil)
            return
        }
        let a = try axis(int("axis", -1), rank: s.count)
        s[a] = known(1)?.elements.count == 1 ? known(1)!.elements[0] : .unknown
        if let k = s[a].value, let d = shape(0)![a].value, k > d { throw failure("k = \(k) exceeds the axis size \(d)") }
        set(0, dtype(0), s)
        set(1, .int64, s)
    }

    // MARK: constants and shapes

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

    /// Attention (opset 23): Y, present key and value, and the QK product, from 3-D or 4-D inputs.
    mutating func attention() {
        let dtype = dtype(0)
        guard let q = shape(0), let k = shape(1), let v = shape(2), q.count == k.count, k.count == v.count,
              q.count == 3 || q.count == 4 else { return set(0, dtype, nil) }
        let batch = q[0]
        let qHeads, kvHeads, qSeq, kvSeq, vHead, kHead: Dim
        if q.count == 4 {
            (qHeads, qSeq, kvHeads, kvSeq, kHead, vHead) = (q[1], q[2], k[1], k[2], k[3], v[3])
        } else {
            guard node.attributes["q_num_heads"] != nil, node.attributes["kv_num_heads"] != nil else { return set(0, dtype, nil) }
            qHeads = .fixed(int("q_num_heads", 1))
            kvHeads = .fixed(int("kv_num_heads", 1))
            (qSeq, kvSeq) = (q[1], k[1])
            kHead = DimMath.divide(k[2], kvHeads)
            vHead = DimMath.divide(v[2], kvHeads)
        }
        var total = kvSeq
        if present(4) {
            if let past = shape(4), past.count == 4 { total = DimMath.add(past[2], kvSeq) } else { total = .unknown }
        }
        set(0, dtype, q.count == 4 ? [batch, qHeads, qSeq, vHead] : [batch, qSeq, DimMath.multiply(qHeads, vHead)])
        set(1, self.dtype(1), [batch, kvHeads, total, kHead])
        set(2, self.dtype(2), [batch, kvHeads, total, vHead])
        set(3, dtype, [batch, qHeads, qSeq, total])
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

    /// Gather along `axis`: data dims around the indices' shape.
    mutating func gather() throws {
        guard let data = shape(0), let indices = shape(1) else { return set(0, dtype(0), nil) }
        let a = try axis(int("axis", 0), rank: data.count)
        set(0, dtype(0), Array(data[..<a]) + indices + Array(data[(a + 1)...]))
        if a == 0, let k = known(0), k.shape.count == 1, let picks = knownInts(1) {
            var elements: [Dim] = []
            for p in picks {
                let q = p < 0 ? p + k.count : p
                guard q >= 0, q < k.count else { throw failure("index \(p) is out of range for \(k.count) elements") }
                elements.append(k.elements[q])
            }
            setKnown(0, KnownValue(shape: known(1)!.shape, elements: elements))
        }
    }

    /// GatherND with `batch_dims`.
    mutating func gatherND() {
        let b = int("batch_dims", 0)
        guard let data = shape(0), let indices = shape(1), let last = indices.last?.value, b >= 0, last >= 0,
              b <= data.count, last <= data.count - b else { return set(0, dtype(0), nil) }
        set(0, dtype(0), Array(indices.dropLast()) + Array(data[(b + last)...]))
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

    /// Resize from constant `sizes` (input 3) or `scales` (input 2), on `axes`.
    mutating func resize() throws {
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        var out = s
        let axes = try (ints("axes") ?? Array(s.indices)).map { try axis($0, rank: s.count) }
        let policy = string("keep_aspect_ratio_policy", "stretch")
        if present(3), known(3)?.count != 0 || (constant(3)?.count ?? 1) != 0 {
            guard let sizes = knownInts(3), sizes.count == axes.count else {
                return set(0, dtype(0), Array(repeating: .unknown, count: s.count))
            }
            if policy == "stretch" {
                for (j, a) in axes.enumerated() { out[a] = .fixed(sizes[j]) }
            } else {
                let inputs = axes.map { s[$0].value }
                guard inputs.allSatisfy({ ($0 ?? 0) > 0 }) else {
                    return set(0, dtype(0), Array(repeating: .unknown, count: s.count))
                }
                let ratios = zip(sizes, inputs).map { Double($0) / Double($1!) }
                let scale = policy == "not_larger" ? ratios.min()! : ratios.max()!
                for (j, a) in axes.enumerated() { out[a] = Self.exactDim(scale * Double(inputs[j]!) + 0.5) }
            }
        } else if let scales = constant(2), scales.count > 0, scales.dtype.isFloatingPoint {
            let values = scales.asDoubles()
            guard values.count == axes.count else { throw failure("scales has \(values.count) entries for \(axes.count) axes") }
            for (j, a) in axes.enumerated() {
                if let d = s[a].value {
                    out[a] = Self.exactDim(values[j] * Double(d))
                } else {
                    out[a] = values[j] == 1 ? s[a] : .unknown
                }
            }
        } else {
            out = Array(repeating: .unknown, count: s.count)
        }
        set(0, dtype(0), out)
    }

    /// Range from known (or constant) start, limit and delta.
    mutating func range() {
        let dtype = dtype(0)
        func scalar(_ i: Int) -> Double? {
            if let c = constant(i), c.count == 1, c.dtype.isFloatingPoint || c.dtype.isInteger { return c.asDoubles()[0] }
            if let k = knownInts(i), k.count == 1 { return Double(k[0]) }
            return nil
        }
        guard let start = scalar(0), let limit = scalar(1), let delta = scalar(2), delta != 0 else {
            return set(0, dtype, [.unknown])
        }
        guard case .fixed(let count) = Self.exactDim(((limit - start) / delta).rounded(.up)) else {
            return set(0, dtype, [.unknown])
        }
        let n = max(count, 0)
        set(0, dtype, [.fixed(n)])
        if dtype?.isInteger == true, n <= KnownValue.maxCount, abs(start) < 1e15, abs(delta) < 1e12 {
            setKnown(0, KnownValue(shape: [n], elements: (0..<n).map { .fixed(Int(start) + $0 * Int(delta)) }))
        }
    }

    /// `value` rounded down as a fixed dim, or unknown when it is not a finite, representable size.
    static func exactDim(_ value: Double) -> Dim {
        guard value.isFinite, abs(value) < 1e15 else { return .unknown }
        return .fixed(Int(value.rounded(.down)))
    }

    // MARK: linear algebra and convolution

    /// MatMul (numpy semantics, batched), MatMulInteger (int32) and QLinearMatMul.
    mutating func matMul() throws {
        let quantized = node.op.name == "QLinearMatMul"
        let (ai, bi) = quantized ? (0, 3) : (0, 1)
        let dtype: DType? = switch node.op.name {
        case "MatMulInteger": .int32
        case "QLinearMatMul": self.dtype(7)
        default: self.dtype(0)
        }
        guard var a = shape(ai), var b = shape(bi), !a.isEmpty, !b.isEmpty else { return set(0, dtype, nil) }
        let (aVector, bVector) = (a.count == 1, b.count == 1)
        if aVector { a.insert(.fixed(1), at: 0) }
        if bVector { b.append(.fixed(1)) }
        let k1 = a[a.count - 1], k2 = b[b.count - 2]
        guard DimMath.unify(k1, k2) != nil else {
            throw failure("inner dims differ: \(describe(shape(ai)!)) × \(describe(shape(bi)!))")
        }
        guard let batch = DimMath.broadcast(Array(a.dropLast(2)), Array(b.dropLast(2))) else {
            throw failure("batch dims of \(describe(shape(ai)!)) and \(describe(shape(bi)!)) do not broadcast")
        }
        var out = batch
        if !aVector { out.append(a[a.count - 2]) }
        if !bVector { out.append(b[b.count - 1]) }
        set(0, dtype, out)
    }

    /// Gemm: `[M, N]` from A and B after their transposes.
    mutating func gemm() throws {
        guard let a = shape(0), let b = shape(1), a.count == 2, b.count == 2 else { return set(0, dtype(0), [.unknown, .unknown]) }
        let (m, k1) = int("transA", 0) != 0 ? (a[1], a[0]) : (a[0], a[1])
        let (k2, n) = int("transB", 0) != 0 ? (b[1], b[0]) : (b[0], b[1])
        guard DimMath.unify(k1, k2) != nil else { throw failure("inner dims differ: \(k1) and \(k2)") }
        if let c = shape(2), DimMath.broadcast(c, [m, n]).map({ $0.count == 2 }) != true {
            throw failure("C of shape \(describe(c)) does not broadcast to [\(m),\(n)]")
        }
        set(0, dtype(0), [m, n])
    }

    /// Ranks above this are not believed (a shape input claiming more dims is left unknown).
    static let maxRank = 1024

    /// Whether `v` is small enough that sums and products of two such numbers cannot overflow.
    static func isSane(_ v: Int) -> Bool { v > -(1 << 31) && v < (1 << 31) }

    /// The output size of a sliding window over `input`.
    func windowOutput(_ input: Dim, kernel: Int, stride: Int, dilation: Int, begin: Int, end: Int,
                      autoPad: String, ceilMode: Bool) -> Dim {
        let span = (kernel &- 1) &* dilation &+ 1
        if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            if stride == 1 { return input }
            guard let d = input.value, Self.isSane(d) else { return .unknown }
            return .fixed((d + stride - 1) / stride)
        }
        let (b, e) = autoPad == "VALID" ? (0, 0) : (begin, end)
        guard let d = input.value, Self.isSane(d) else {
            return span == 1 && stride == 1 && b == 0 && e == 0 ? input : .unknown
        }
        let room = d &+ b &+ e &- span
        if room < 0 { return .unknown }
        if ceilMode {
            var out = (room + stride - 1) / stride + 1
            if (out &- 1) &* stride >= d &+ b { out -= 1 }
            return .fixed(out)
        }
        return .fixed(room / stride + 1)
    }

    /// The spatial window settings of a conv or pool over `spatial` dims.
    func window(spatial: Int, kernel: [Int]) -> (strides: [Int], dilations: [Int], begin: [Int], end: [Int], autoPad: String)? {
        let strides = ints("strides") ?? Array(repeating: 1, count: spatial)
        let dilations = ints("dilations") ?? Array(repeating: 1, count: spatial)
        let pads = ints("pads") ?? Array(repeating: 0, count: 2 * spatial)
        guard kernel.count == spatial, strides.count == spatial, dilations.count == spatial, pads.count == 2 * spatial,
              strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }), kernel.allSatisfy({ $0 > 0 }),
              (kernel + strides + dilations + pads).allSatisfy(Self.isSane) else { return nil }
        return (strides, dilations, Array(pads[..<spatial]), Array(pads[spatial...]), string("auto_pad", "NOTSET"))
    }

    /// Conv, ConvInteger, QLinearConv and DeformConv.
    mutating func conv() throws {
        let (xi, wi) = node.op.name == "QLinearConv" ? (0, 3) : (0, 1)
        let dtype: DType? = switch node.op.name {
        case "ConvInteger": .int32
        case "QLinearConv": self.dtype(7)
        default: self.dtype(0)
        }
        var x = shape(xi), w = shape(wi)
        guard let rank = x?.count ?? w?.count, rank >= 3 else { return set(0, dtype, nil) }
        if x?.count != rank { x = nil }
        if w?.count != rank { w = nil }
        let spatial = rank - 2
        var out = Array(repeating: Dim.unknown, count: rank)
        out[0] = x?[0] ?? .unknown
        out[1] = w?[0] ?? .unknown
        let group = int("group", 1)
        if let c = x?[1].value, let wc = w?[1].value, c != wc &* group {
            throw failure("input has \(c) channels but the weights expect \(wc) × group \(group)")
        }
        let kernel = ints("kernel_shape") ?? w.flatMap { w in w.count == rank ? w[2...].map(\.value) : nil }
            .flatMap { $0.allSatisfy { $0 != nil } ? $0.map { $0! } : nil }
        if let x, let kernel, let settings = window(spatial: spatial, kernel: kernel) {
            for j in 0..<spatial {
                out[j + 2] = windowOutput(x[j + 2], kernel: kernel[j], stride: settings.strides[j],
                                          dilation: settings.dilations[j], begin: settings.begin[j],
                                          end: settings.end[j], autoPad: settings.autoPad, ceilMode: false)
            }
        }
        set(0, dtype, out)
    }

    /// ConvTranspose: `output_shape`, or the stride/pad arithmetic.
    mutating func convTranspose() throws {
        var x = shape(0), w = shape(1)
        guard let rank = x?.count ?? w?.count, rank >= 3 else { return set(0, dtype(0), nil) }
        if x?.count != rank { x = nil }
        if w?.count != rank { w = nil }
        let spatial = rank - 2
        let group = int("group", 1)
        var out = Array(repeating: Dim.unknown, count: rank)
        out[0] = x?[0] ?? .unknown
        if let w { out[1] = DimMath.multiply(w[1], .fixed(group)) }
        let kernel = ints("kernel_shape") ?? w.flatMap { w in w.count == rank ? w[2...].map(\.value) : nil }
            .flatMap { $0.allSatisfy { $0 != nil } ? $0.map { $0! } : nil }
        if let given = ints("output_shape"), given.count >= spatial {
            for j in 0..<spatial { out[j + 2] = .fixed(given[given.count - spatial + j]) }
        } else if let x, let kernel, let settings = window(spatial: spatial, kernel: kernel) {
            let outputPadding = ints("output_padding") ?? Array(repeating: 0, count: spatial)
            for j in 0..<spatial {
                guard let d = x[j + 2].value, j < outputPadding.count else { continue }
                let s = settings.strides[j]
                if settings.autoPad == "SAME_UPPER" || settings.autoPad == "SAME_LOWER" {
                    out[j + 2] = .fixed(d * s)
                } else {
                    let (b, e) = settings.autoPad == "VALID" ? (0, 0) : (settings.begin[j], settings.end[j])
                    let span = (kernel[j] &- 1) &* settings.dilations[j] &+ 1
                    out[j + 2] = .fixed(s &* (d &- 1) &+ outputPadding[j] &+ span &- b &- e)
                }
            }
        }
        set(0, dtype(0), out)
    }

    /// MaxPool (values and int64 indices), AveragePool and LpPool.
    mutating func pool() throws {
        guard let x = shape(0), x.count >= 3 else {
            set(0, dtype(0), nil)
            set(1, .int64, nil)
            return
        }
        let spatial = x.count - 2
        var out = Array(x[..<2]) + Array(repeating: Dim.unknown, count: spatial)
        if let kernel = ints("kernel_shape"), let settings = window(spatial: spatial, kernel: kernel) {
            let ceilMode = int("ceil_mode", 0) != 0
            for j in 0..<spatial {
                out[j + 2] = windowOutput(x[j + 2], kernel: kernel[j], stride: settings.strides[j],
                                          dilation: settings.dilations[j], begin: settings.begin[j],
                                          end: settings.end[j], autoPad: settings.autoPad, ceilMode: ceilMode)
            }
        }
        set(0, dtype(0), out)
        set(1, .int64, out)
    }

    /// MaxUnpool: `output_shape` (input 2) or the inverse pooling arithmetic.
    mutating func maxUnpool() {
        guard let x = shape(0), x.count >= 3 else { return set(0, dtype(0), nil) }
        if let given = known(2), given.count == x.count { return set(0, dtype(0), given.elements) }
        let spatial = x.count - 2
        var out = Array(x[..<2]) + Array(repeating: Dim.unknown, count: spatial)
        if !present(2), let kernel = ints("kernel_shape"), let settings = window(spatial: spatial, kernel: kernel) {
            for j in 0..<spatial {
                guard let d = x[j + 2].value else { continue }
                out[j + 2] = .fixed((d &- 1) &* settings.strides[j] &+ kernel[j] &- settings.begin[j] &- settings.end[j])
            }
        }
        set(0, dtype(0), out)
    }

    /// LayerNormalization: Y like X; Mean and InvStdDev (in the stash type) with the normalized dims as 1.
    mutating func layerNormalization() throws {
        set(0, dtype(0), shape(0))
        let stash = dtypeAttribute("stash_type", .float32)
        guard let s = shape(0) else {
            set(1, stash, nil)
            set(2, stash, nil)
            return
        }
        let a = try axis(int("axis", -1), rank: s.count)
        let stats = Array(s[..<a]) + Array(repeating: Dim.fixed(1), count: s.count - a)
        set(1, stash, stats)
        set(2, stash, stats)
    }

    /// RNN, GRU and LSTM: Y, Y_h (and LSTM's Y_c) from `hidden_size`, `direction` and `layout`.
    mutating func recurrent() {
        let dtype = dtype(0)
        let directions: Dim = string("direction", "forward") == "bidirectional" ? .fixed(2) : .fixed(1)
        let hidden: Dim = node.attributes["hidden_size"] != nil ? .fixed(int("hidden_size", 0))
                                                                : (shape(2).flatMap { $0.count == 3 ? $0[2] : nil } ?? .unknown)
        let layout = int("layout", 0)
        guard let x = shape(0), x.count == 3 else {
            for i in 0..<outputCount { set(i, dtype, Array(repeating: .unknown, count: i == 0 ? 4 : 3)) }
            return
        }
        let (sequence, batch) = layout == 0 ? (x[0], x[1]) : (x[1], x[0])
        set(0, dtype, layout == 0 ? [sequence, directions, batch, hidden] : [batch, sequence, directions, hidden])
        let state: [Dim] = layout == 0 ? [directions, batch, hidden] : [batch, directions, hidden]
        set(1, dtype, state)
        set(2, dtype, state)
    }

    // MARK: indexing and rearrangement

    /// OneHot: the indices' shape with `depth` inserted at `axis`.
    mutating func oneHot() throws {
        guard let s = shape(0) else { return set(0, dtype(2), nil) }
        let a = try axis(int("axis", -1), rank: s.count + 1)
        var out = s
        let depth = constant(1).flatMap { $0.dtype.isFloatingPoint || $0.dtype.isInteger ? $0.asDoubles().first : nil }
            .map { Self.exactDim($0) } ?? .unknown
        out.insert(depth, at: a)
        set(0, dtype(2), out)
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

    /// Compress: rank 1 without `axis`, else the axis dim becomes unknown.
    mutating func compress() throws {
        guard node.attributes["axis"] != nil else { return set(0, dtype(0), [.unknown]) }
        guard var s = shape(0) else { return set(0, dtype(0), nil) }
        s[try axis(int("axis", 0), rank: s.count)] = .unknown
        set(0, dtype(0), s)
    }

    /// Unique: Y (flattened, or with an unknown axis dim) and int64 vectors.
    mutating func unique() throws {
        if node.attributes["axis"] != nil, var s = shape(0) {
            let a = try axis(int("axis", 0), rank: s.count)
            let n = s[a]
            s[a] = .unknown
            set(0, dtype(0), s)
            set(2, .int64, [n])
        } else {
            set(0, dtype(0), node.attributes["axis"] == nil ? [.unknown] : nil)
            set(2, .int64, shape(0).map { [DimMath.product($0)] } ?? [.unknown])
        }
        set(1, .int64, [.unknown])
        set(3, .int64, [.unknown])
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

    /// Einsum: dims of the output letters (explicit or implicit output), ellipsis dims broadcast.
    mutating func einsum() {
        let dtype = dtype(0)
        let equation = string("equation", "").filter { $0 != " " }
        let sides = equation.split(separator: "-", omittingEmptySubsequences: false)
        guard sides.count <= 2, sides.count == 1 || sides[1].hasPrefix(">") else { return set(0, dtype, nil) }
        let lhs = String(sides[0])
        let terms = lhs.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard terms.count == node.inputs.count else { return set(0, dtype, nil) }
        var letters: [Character: Dim] = [:]
        var counts: [Character: Int] = [:]
        var ellipsis: [Dim] = []
        for (i, term) in terms.enumerated() {
            guard let s = shape(i) else { return set(0, dtype, nil) }
            let hasEllipsis = term.contains("...")
            let labels = Array(removingEllipsis(term))
            guard labels.allSatisfy(\.isLetter), term.count - labels.count == (hasEllipsis ? 3 : 0) else {
                return set(0, dtype, nil)
            }
            let ellipsisRank = s.count - labels.count
            guard ellipsisRank >= 0, hasEllipsis || ellipsisRank == 0 else { return set(0, dtype, nil) }
            var position = 0
            var index = term.startIndex
            while index < term.endIndex {
                if term[index...].hasPrefix("...") {
                    let dims = Array(s[position..<(position + ellipsisRank)])
                    guard let b = DimMath.broadcast(ellipsis, dims) else { return set(0, dtype, nil) }
                    ellipsis = b
                    position += ellipsisRank
                    index = term.index(index, offsetBy: 3)
                    continue
                }
                let c = term[index]
                let d = s[position]
                if let existing = letters[c] {
                    letters[c] = DimMath.unify(existing, d) ?? (existing == .fixed(1) ? d : (d == .fixed(1) ? existing : .unknown))
                } else {
                    letters[c] = d
                }
                counts[c, default: 0] += 1
                position += 1
                index = term.index(after: index)
            }
        }
        var out: [Dim] = []
        if sides.count == 2 {
            let rhs = String(sides[1].dropFirst())  // drop the '>'
            var index = rhs.startIndex
            while index < rhs.endIndex {
                if rhs[index...].hasPrefix("...") {
                    out += ellipsis
                    index = rhs.index(index, offsetBy: 3)
                    continue
                }
                guard let d = letters[rhs[index]] else { return set(0, dtype, nil) }
                out.append(d)
                index = rhs.index(after: index)
            }
        } else {
            out = ellipsis + counts.filter { $0.value == 1 }.keys.sorted().map { letters[$0]! }
        }
        set(0, dtype, out)
    }

    // MARK: control flow and sequences

    /// If: each output joins the two branches' outputs.
    mutating func ifOp() {
        guard let thenOut = subgraphOutputs["then_branch"], let elseOut = subgraphOutputs["else_branch"] else { return }
        for i in 0..<min(outputCount, thenOut.count, elseOut.count) {
            let (a, b) = (thenOut[i], elseOut[i])
            if a.other != nil || b.other != nil {
                if a.other == b.other { set(i, a) }
                continue
            }
            set(i, a.dtype == b.dtype ? a.dtype : nil, DimMath.join(a.shape, b.shape))
        }
    }

    /// Loop: carried values join their initial value and the body's result; scan outputs gain a
    /// leading dim of unknown size.
    mutating func loop() {
        guard let body = subgraphOutputs["body"] else { return }
        let carried = node.inputs.count - 2
        for i in 0..<outputCount {
            let j = i + 1  // body output 0 is the condition
            guard j < body.count else { continue }
            if i < carried {
                let (initial, result) = (fact(i + 2), body[j])
                if initial.other != nil || result.other != nil {
                    if let other = result.other ?? initial.other { set(i, TypeFact(other: other)) }
                    continue
                }
                set(i, result.dtype ?? initial.dtype, DimMath.join(initial.shape, result.shape))
            } else if body[j].other == nil {
                set(i, body[j].dtype, body[j].shape.map { [.unknown] + $0 })
            }
        }
    }

    /// Scan: final states join initial and body results; scan outputs stack the body's per-step outputs.
    mutating func scan() {
        guard let body = subgraphOutputs["body"] else { return }
        let scanInputs = int("num_scan_inputs", 0)
        guard scanInputs >= 0, scanInputs <= node.inputs.count else { return }
        let states = node.inputs.count - scanInputs
        var length: Dim = .unknown
        if scanInputs > 0, let s = shape(states) {
            let axis = ints("scan_input_axes")?.first ?? 0
            let a = axis < 0 ? axis + s.count : axis
            if (0..<s.count).contains(a) { length = s[a] }
        }
        let outputAxes = ints("scan_output_axes")
        for i in 0..<min(outputCount, body.count) {
            if i < states {
                set(i, body[i].dtype ?? dtype(i), DimMath.join(shape(i), body[i].shape))
            } else if var s = body[i].shape {
                let raw = outputAxes.map { $0.count > i - states ? $0[i - states] : 0 } ?? 0
                let a = raw < 0 ? raw + s.count + 1 : raw
                guard (0...s.count).contains(a) else { continue }
                s.insert(length, at: a)
                set(i, body[i].dtype, s)
            } else {
                set(i, body[i].dtype, nil)
            }
        }
    }

    /// SequenceConstruct: a sequence whose element type joins the inputs' types.
    mutating func sequenceConstruct() {
        var element: TypeFact? = nil
        for i in node.inputs.indices {
            let f = fact(i)
            guard f.other == nil, let d = f.dtype else { return }
            if let e = element {
                guard e.dtype == d else { return }
                element = TypeFact(d, DimMath.join(e.shape, f.shape))
            } else {
                element = f
            }
        }
        if let element, let t = element.valueType { set(0, TypeFact(other: .sequence(t))) }
    }
}

/// `term` without its ellipsis (`...`).
private func removingEllipsis(_ term: String) -> String {
    var result = ""
    var index = term.startIndex
    while index < term.endIndex {
        if term[index...].hasPrefix("...") {
            index = term.index(index, offsetBy: 3)
        } else {
            result.append(term[index])
            index = term.index(after: index)
        }
    }
    return result
}
