import KilnIR

/// Infers the element type and shape of every value of a graph and records them in
/// `Graph.valueTypes` (and on graph outputs whose type is unknown or only partly known).
///
/// Symbolic dims flow through: `batch` in an input reaches every value it determines. Broadcasting a
/// symbol against 1 keeps the symbol, against a fixed size above 1 gives that size, and two different
/// symbols give an unknown dim. Shape-carrying inputs (Reshape's shape, Slice's starts, Unsqueeze's
/// axes, …) are read from constants, and from a table of *known values*: small integer tensors whose
/// elements (fixed or symbolic) follow from `Shape`, `Constant`, `Gather`, `Concat`, `Unsqueeze`,
/// `Slice`, `Cast`, `Squeeze` and simple arithmetic, so that `Shape → Gather → Concat → Reshape`
/// chains resolve. Subgraphs (If branches, Loop and Scan bodies) are inferred too.
///
/// An op without a rule leaves its outputs unknown (or with only the element type, when that follows
/// from its inputs): nothing is guessed. Shapes that are provably inconsistent (fixed MatMul inner
/// dims that differ, fixed dims that do not broadcast, …) throw `KilnError(.invalidModel)` naming
/// the node. Types already declared (`value_info`) are kept where inference knows less.
public struct ShapeInference: Pass {
    /// `shape-inference`.
    public let name = "shape-inference"

    /// The pass.
    public init() {}

    /// Infers types in `graph` and its subgraphs; true if any recorded type changed.
    public func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
        var environment = InferenceEnvironment()
        return try Self.infer(&graph, environment: &environment)
    }

    /// Infers `graph` (a main graph or a subgraph) in `environment`, which holds what the enclosing
    /// graphs know; the graph's own inputs, constants and values are added to it.
    static func infer(_ graph: inout Graph, environment: inout InferenceEnvironment) throws -> Bool {
        var changed = false
        let inputNames = Set(graph.inputs.map(\.name))
        for (name, tensor) in graph.initializers {
            environment.facts[name] = TypeFact(tensor.dtype, tensor.shape.map { .fixed($0) })
            if !inputNames.contains(name) {
                environment.constants[name] = tensor
                if let known = KnownValue(tensor) { environment.known[name] = known }
            }
        }
        for input in graph.inputs {
            if let t = input.type {
                environment.facts[input.name] = TypeFact(t)
            } else if environment.facts[input.name] == nil {
                environment.facts[input.name] = .unknown
            }
        }
        var declaredOutputs: [String: ValueType] = [:]
        for output in graph.outputs { if let t = output.type { declaredOutputs[output.name] = t } }

        for index in graph.nodes.indices {
            var node = graph.nodes[index]
            // The rule holds the environment; it ends before the environment is written, so that the
            // writes below do not copy the environment's tables.
            let results: [TypeFact], knownResults: [KnownValue?], constantResults: [Tensor?]
            do {
                var rule = NodeInference(node: node, environment: environment)
                if node.hasSubgraphs {
                    if try inferSubgraphs(of: &node, rule: &rule, environment: environment) { changed = true }
                    graph.nodes[index] = node
                }
                try rule.infer()
                (results, knownResults, constantResults) = (rule.results, rule.knownResults, rule.constantResults)
            }
            for (i, name) in node.outputs.enumerated() where !name.isEmpty {
                let declared = graph.valueTypes[name] ?? declaredOutputs[name]
                var fact = results[i]
                if let declared { fact = fact.refined(by: TypeFact(declared)) }
                environment.facts[name] = fact
                if let known = knownResults[i], fact.other == nil, known.count <= KnownValue.maxCount {
                    environment.known[name] = known
                }
                if let constant = constantResults[i] { environment.constants[name] = constant }
                if let type = fact.valueType, graph.valueTypes[name] != type {
                    graph.valueTypes[name] = type
                    changed = true
                }
            }
        }
        // Types of values no node here produces any more (removed by other passes) are dropped.
        let produced = Set(graph.nodes.flatMap(\.outputs))
        for name in graph.valueTypes.keys where !produced.contains(name) {
            graph.valueTypes[name] = nil
            changed = true
        }

        for i in graph.outputs.indices {
            guard let fact = environment.facts[graph.outputs[i].name], let inferred = fact.valueType else { continue }
            let current = graph.outputs[i].type
            // Declared dims win: inference only fills what the declaration leaves unknown.
            let refined = current.map { TypeFact($0).filling(from: fact).valueType ?? $0 } ?? inferred
            if current != refined {
                graph.outputs[i].type = refined
                changed = true
            }
        }
        return changed
    }

    /// Infers the subgraphs of `node` and gives `rule` what they imply for the node's outputs
    /// (If, Loop and Scan); true if any recorded type in them changed.
    static func inferSubgraphs(of node: inout Node, rule: inout NodeInference,
                               environment: InferenceEnvironment) throws -> Bool {
        var changed = false
        let op = node.op.domain.isEmpty ? node.op.name : ""
        for key in node.attributes.keys.sorted() {
            switch node.attributes[key]! {
            case .graph(var sub):
                var inner = environment
                switch op {
                case "Loop" where key == "body": prepareLoopBody(&sub, rule: rule, environment: &inner)
                case "Scan" where key == "body": prepareScanBody(&sub, rule: rule, environment: &inner)
                default: break
                }
                if try infer(&sub, environment: &inner) { changed = true }
                rule.subgraphOutputs[key] = sub.outputs.map { inner.facts[$0.name] ?? .unknown }
                node.attributes[key] = .graph(sub)
            case .graphs(var subs):
                for j in subs.indices {
                    var inner = environment
                    if try infer(&subs[j], environment: &inner) { changed = true }
                }
                node.attributes[key] = .graphs(subs)
            default:
                break
            }
        }
        return changed
    }

    /// Types for a Loop body's inputs that the body does not declare: iteration number (i64 scalar),
    /// condition (bool scalar) and loop-carried values (element type of the initial value; the shape
    /// may change from one iteration to the next, so it is left unknown).
    static func prepareLoopBody(_ body: inout Graph, rule: NodeInference, environment: inout InferenceEnvironment) {
        for (j, input) in body.inputs.enumerated() where input.type == nil {
            switch j {
            case 0: environment.facts[input.name] = TypeFact(.int64, [])
            case 1: environment.facts[input.name] = TypeFact(.bool, [])
            default:
                let initial = rule.fact(j)
                environment.facts[input.name] = initial.other != nil ? TypeFact(other: initial.other!)
                                                                     : TypeFact(initial.dtype, nil)
            }
        }
    }

    /// Types for a Scan body's inputs that the body does not declare: state variables get the element
    /// type of their initial value, scan inputs the element type and the shape of one slice.
    static func prepareScanBody(_ body: inout Graph, rule: NodeInference, environment: inout InferenceEnvironment) {
        let scanInputs = rule.node.int("num_scan_inputs", 0)
        guard scanInputs >= 0, scanInputs <= body.inputs.count else { return }
        let stateCount = body.inputs.count - scanInputs
        let axes = rule.node.ints("scan_input_axes")
        for (j, input) in body.inputs.enumerated() where input.type == nil {
            let outer = rule.fact(j)
            if j < stateCount {
                environment.facts[input.name] = TypeFact(outer.dtype, nil)
            } else {
                var shape = outer.shape
                if let s = shape {
                    let axis = axes.map { $0.count > j - stateCount ? $0[j - stateCount] : 0 } ?? 0
                    let a = axis < 0 ? axis + s.count : axis
                    shape = (0..<s.count).contains(a) ? Array(s[..<a] + s[(a + 1)...]) : nil
                }
                environment.facts[input.name] = TypeFact(outer.dtype, shape)
            }
        }
    }
}

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
