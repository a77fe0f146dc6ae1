/// A named SSA value: produced once (by a node, or as a graph input or constant), read by any number of nodes.
public struct Value: Hashable, Sendable, CustomStringConvertible {
    /// The name, unique within the graph and its enclosing graphs.
    public var name: String
    /// The type, when known.
    public var type: ValueType?

    /// A value with a name and an optional type.
    public init(name: String, type: ValueType? = nil) {
        self.name = name
        self.type = type
    }

    /// `name: type`.
    public var description: String { type.map { "\(name): \($0)" } ?? name }
}

/// An operator identity: its domain (`""` for the default ONNX domain, `ai.onnx.ml`, `kiln`, a vendor's) and name.
public struct OpID: Hashable, Sendable, CustomStringConvertible {
    /// The domain; `""` and `ai.onnx` are the same domain and are stored as `""`.
    public var domain: String
    /// The operator name (`Conv`).
    public var name: String

    /// An op of `domain` called `name` (`ai.onnx` is normalized to `""`).
    public init(_ domain: String, _ name: String) {
        self.domain = domain == "ai.onnx" ? "" : domain
        self.name = name
    }

    /// `Conv` or `ai.onnx.ml.LabelEncoder`.
    public var description: String { domain.isEmpty ? name : "\(domain).\(name)" }
}

/// The value of a node attribute.
public enum Attribute: Sendable {
    case float(Float)
    case int(Int)
    case string(String)
    case tensor(Tensor)
    case graph(Graph)
    case type(ValueType)
    case floats([Float])
    case ints([Int])
    case strings([String])
    case tensors([Tensor])
    case graphs([Graph])
    case types([ValueType])
}

/// One operator application: reads input values, writes output values.
public struct Node: Sendable {
    /// The node's name (may be empty; used in messages and reports).
    public var name: String
    /// Which operator this is.
    public var op: OpID
    /// Input value names, in the operator's order; `""` marks an omitted optional input.
    public var inputs: [String]
    /// Output value names; `""` marks an output nobody wants.
    public var outputs: [String]
    /// Attributes by name.
    public var attributes: [String: Attribute]

    /// A node; attributes default to none.
    public init(name: String = "", op: OpID, inputs: [String], outputs: [String], attributes: [String: Attribute] = [:]) {
        self.name = name
        self.op = op
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    /// The subgraphs this node owns (If branches, Loop/Scan bodies), in attribute-name order.
    public var subgraphs: [Graph] {
        attributes.sorted { $0.key < $1.key }.flatMap { _, attribute -> [Graph] in
            switch attribute {
            case .graph(let g): [g]
            case .graphs(let gs): gs
            default: []
            }
        }
    }
}

/// A dataflow graph: typed inputs and outputs, constant initializers, and nodes in topological order.
///
/// Subgraphs (the bodies of If, Loop and Scan) are `Graph`s too, owned by a node attribute; they may
/// read values of the graphs that enclose them by name.
public struct Graph: Sendable {
    /// The graph's name.
    public var name: String
    /// Values the caller supplies.
    public var inputs: [Value]
    /// Values the graph returns.
    public var outputs: [Value]
    /// Constant values by name (weights). An initializer that is also listed in `inputs` is a default the caller may override.
    public var initializers: [String: Tensor]
    /// Nodes, each after the producers of its inputs.
    public var nodes: [Node]
    /// Known types of intermediate values.
    public var valueTypes: [String: ValueType]

    /// A graph; everything but the name defaults to empty.
    public init(name: String = "main", inputs: [Value] = [], outputs: [Value] = [], initializers: [String: Tensor] = [:],
                nodes: [Node] = [], valueTypes: [String: ValueType] = [:]) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.initializers = initializers
        self.nodes = nodes
        self.valueTypes = valueTypes
    }

    /// The type of `name` if the graph knows it (inputs, outputs, initializers, value types).
    public func type(of name: String) -> ValueType? {
        if let t = valueTypes[name] { return t }
        if let v = inputs.first(where: { $0.name == name }), let t = v.type { return t }
        if let v = outputs.first(where: { $0.name == name }), let t = v.type { return t }
        if let c = initializers[name] { return .tensor(TensorType(c.dtype, fixed: c.shape)) }
        return nil
    }

    /// Every node of this graph and of its subgraphs, depth first.
    public var allNodes: [Node] {
        nodes.flatMap { node in [node] + node.subgraphs.flatMap(\.allNodes) }
    }
}

/// A whole model: the main graph plus the metadata that came with it.
public struct Model: Sendable {
    /// The main graph.
    public var graph: Graph
    /// The operator-set version the model was written against, per domain (`""` is ONNX's default domain).
    /// After import, ONNX ops are in canonical form (see `KilnFrontends`), whatever version this says.
    public var opsets: [String: Int]
    /// The tool that produced the model (`pytorch 2.3`).
    public var producer: String
    /// The source format's IR version (ONNX `ir_version`), 0 if none.
    public var sourceIRVersion: Int
    /// Free-form metadata from the source model.
    public var metadata: [String: String]

    /// A model around `graph`.
    public init(graph: Graph, opsets: [String: Int] = ["": 23], producer: String = "", sourceIRVersion: Int = 0,
                metadata: [String: String] = [:]) {
        self.graph = graph
        self.opsets = opsets
        self.producer = producer
        self.sourceIRVersion = sourceIRVersion
        self.metadata = metadata
    }
}

/// A value at run time: a tensor, a sequence, a map, or an optional that may be empty.
public indirect enum RuntimeValue: Sendable {
    /// A dense tensor.
    case tensor(Tensor)
    /// A sequence; `elementType` is kept so that an empty sequence still has a type.
    case sequence([RuntimeValue], elementType: ValueType?)
    /// A map with int64 or string keys (as tensors of one element each) and values of one type.
    case map(keys: Tensor, values: RuntimeValue)
    /// An optional; nil is the empty optional, `type` its element type.
    case optional(RuntimeValue?, type: ValueType?)

    /// The tensor, when this is one.
    public var tensor: Tensor? {
        if case .tensor(let t) = self { return t }
        return nil
    }

    /// A short description of the kind and shape, for messages (`f32[2,3]`, `seq(3)`).
    public var summary: String {
        switch self {
        case .tensor(let t): "\(t.dtype)\(t.shape)"
        case .sequence(let items, _): "seq(\(items.count))"
        case .map: "map"
        case .optional(let v, _): v.map { "opt(\($0.summary))" } ?? "opt(none)"
        }
    }
}
