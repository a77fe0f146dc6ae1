
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
    func int(_ name: String, _ defaultValue: Int) -> Int {
        if case .int(let v)? = node.attributes[name] { return v }
        return defaultValue
    }

    /// An ints attribute, or nil.
    func ints(_ name: String) -> [Int]? {
        if case .ints(let v)? = node.attributes[name] { return v }
        return nil
    }

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

    /// Ranks above this are not believed (a shape input claiming more dims is left unknown).
    static let maxRank = 1024

    /// Whether `v` is small enough that sums and products of two such numbers cannot overflow.
    static func isSane(_ v: Int) -> Bool { v > -(1 << 31) && v < (1 << 31) }

    /// `value` rounded down as a fixed dim, or unknown when it is not a finite, representable size.
    static func exactDim(_ value: Double) -> Dim {
        guard value.isFinite, abs(value) < 1e15 else { return .unknown }
        return .fixed(Int(value.rounded(.down)))
    }

    /// Runs the catalog's rule for the node's op, if it has one. Rules read the inputs and write the
    /// outputs the op's schema requires without counting them, so a node outside its schema's counts (which
    /// the verifier refuses; inference may run before it) is left with unknown outputs instead.
    mutating func infer() throws {
        guard let schema = OpCatalog.standard[node.op], let rule = schema.shapeRule else { return }
        if let signature = schema.signature, Verifier.arityProblem(node, signature) != nil { return }
        try rule(&self)
    }

    /// The rule of ops whose one output has the element type and shape of input 0.
    static let likeFirstInput: ShapeRule = { $0.set(0, $0.fact(0).dtype, $0.shape(0)) }
}
