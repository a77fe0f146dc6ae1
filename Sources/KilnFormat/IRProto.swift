#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import KilnIR

/// Conversion between KilnIR and its protobuf form (`kiln.ir`, proto/kiln/ir.proto), lossless both ways.
///
/// Encoding is deterministic: attributes, initializers and value types are sorted by name. Decoding
/// validates everything (element types, shapes, data sizes, references) and throws
/// `KilnError(.invalidArtifact)` naming the graph, node, attribute or tensor concerned.
package enum IRProto {
    /// `model` as a protobuf message with every tensor's data inline (the form that crosses the plugin ABI).
    public static func message(from model: Model) -> Kiln_Ir_Model {
        var encoder = Encoder(inlineLimit: nil, weightsSection: 0)
        return encoder.encode(model)
    }

    /// `graph` as a protobuf message with every tensor's data inline.
    public static func message(from graph: Graph) -> Kiln_Ir_Graph {
        var encoder = Encoder(inlineLimit: nil, weightsSection: 0)
        return encoder.encode(graph)
    }

    /// The model a message encodes. Tensors that reference artifact sections (`DataRef`) are an error here:
    /// read those through `Artifact.model()`.
    public static func model(from message: Kiln_Ir_Model) throws -> Model {
        try Decoder(resolve: nil).decode(message)
    }

    /// The graph a message encodes (inline tensor data only).
    public static func graph(from message: Kiln_Ir_Graph) throws -> Graph {
        try Decoder(resolve: nil).decode(message, path: "graph")
    }

    /// The protobuf element type of `dtype` (same numbers as ONNX).
    public static func dataType(_ dtype: DType) -> Kiln_Ir_DataType {
        Kiln_Ir_DataType(rawValue: dtype.onnxCode) ?? .unspecified
    }
}

/// Builds the protobuf form; tensors above `inlineLimit` bytes go to `weights` (64-byte aligned) as DataRefs.
struct Encoder {
    /// Tensors with more data bytes than this are stored in the weights section; nil keeps everything inline.
    let inlineLimit: Int?
    /// The section index DataRefs name.
    let weightsSection: UInt32
    /// The weights section's raw bytes.
    var weights: [UInt8] = []

    init(inlineLimit: Int?, weightsSection: UInt32) {
        self.inlineLimit = inlineLimit
        self.weightsSection = weightsSection
    }

    mutating func encode(_ model: Model) -> Kiln_Ir_Model {
        var m = Kiln_Ir_Model()
        m.graph = encode(model.graph)
        m.opsets = model.opsets.mapValues { Int64($0) }
        m.producer = model.producer
        m.sourceIrVersion = Int64(model.sourceIRVersion)
        m.metadata = model.metadata
        return m
    }

    mutating func encode(_ graph: Graph) -> Kiln_Ir_Graph {
        var g = Kiln_Ir_Graph()
        g.name = graph.name
        g.inputs = graph.inputs.map(encode)
        g.outputs = graph.outputs.map(encode)
        g.initializers = graph.initializers.sorted { $0.key < $1.key }.map { encode($0.value, name: $0.key) }
        g.nodes = graph.nodes.map { encode($0) }
        g.valueTypes = graph.valueTypes.sorted { $0.key < $1.key }.map { encode(Value(name: $0.key, type: $0.value)) }
        return g
    }

    func encode(_ value: Value) -> Kiln_Ir_Value {
        var v = Kiln_Ir_Value()
        v.name = value.name
        if let t = value.type { v.type = encode(t) }
        return v
    }

    func encode(_ type: ValueType) -> Kiln_Ir_Type {
        var t = Kiln_Ir_Type()
        switch type {
        case .tensor(let tt): t.tensor = encode(tt)
        case .sparseTensor(let tt): t.sparseTensor = encode(tt)
        case .sequence(let e): t.sequence = encode(e)
        case .optional(let e): t.optional = encode(e)
        case .map(let key, let value):
            var m = Kiln_Ir_MapType()
            m.key = IRProto.dataType(key)
            m.value = encode(value)
            t.map = m
        }
        return t
    }

    func encode(_ type: TensorType) -> Kiln_Ir_TensorType {
        var t = Kiln_Ir_TensorType()
        t.dtype = IRProto.dataType(type.dtype)
        if let shape = type.shape {
            t.hasShape_p = true
            t.dims = shape.map { dim in
                var d = Kiln_Ir_Dim()
                switch dim {
                case .fixed(let v): d.fixed = Int64(v)
                case .symbol(let s): d.symbol = s
                case .unknown: break
                }
                return d
            }
        }
        return t
    }

    mutating func encode(_ node: Node) -> Kiln_Ir_Node {
        var n = Kiln_Ir_Node()
        n.name = node.name
        n.domain = node.op.domain
        n.op = node.op.name
        n.inputs = node.inputs
        n.outputs = node.outputs
        n.attributes = node.attributes.sorted { $0.key < $1.key }.map { encode($0.value, name: $0.key) }
        return n
    }

    mutating func encode(_ attribute: Attribute, name: String) -> Kiln_Ir_Attribute {
        var a = Kiln_Ir_Attribute()
        a.name = name
        switch attribute {
        case .float(let v): a.f = v
        case .int(let v): a.i = Int64(v)
        case .string(let v): a.s = v
        case .tensor(let v): a.t = encode(v, name: "")
        case .graph(let v): a.g = encode(v)
        case .type(let v): a.type = encode(v)
        case .floats(let v): a.floats = .with { $0.values = v }
        case .ints(let v): a.ints = .with { $0.values = v.map { Int64($0) } }
        case .strings(let v): a.strings = .with { $0.values = v }
        case .tensors(let v):
            var list = Kiln_Ir_Tensors()
            list.values = v.map { encode($0, name: "") }
            a.tensors = list
        case .graphs(let v):
            var list = Kiln_Ir_Graphs()
            list.values = v.map { encode($0) }
            a.graphs = list
        case .types(let v): a.types = .with { $0.values = v.map(encode) }
        }
        return a
    }

    mutating func encode(_ tensor: Tensor, name: String) -> Kiln_Ir_Tensor {
        var t = Kiln_Ir_Tensor()
        t.name = name
        t.dtype = IRProto.dataType(tensor.dtype)
        t.shape = tensor.shape.map { Int64($0) }
        if tensor.dtype == .string {
            t.strings = .with { $0.values = tensor.strings }
            return t
        }
        let raw = tensor.rawBytes!
        if let limit = inlineLimit, raw.count > limit {
            let padding = (ArtifactFormat.alignment - weights.count % ArtifactFormat.alignment) % ArtifactFormat.alignment
            weights.append(contentsOf: repeatElement(0, count: padding))
            var ref = Kiln_Ir_DataRef()
            ref.section = weightsSection
            ref.offset = UInt64(weights.count)
            ref.length = UInt64(raw.count)
            weights.append(contentsOf: raw)
            t.ref = ref
        } else {
            t.raw = Data(raw)
        }
        return t
    }
}

/// Reads the protobuf form back, validating as it goes. `resolve` maps a DataRef (already checked
/// against nothing) to the storage of its section and the tensor's offset in it.
struct Decoder {
    /// Returns the decompressed, checksum-verified storage of a section a DataRef names (checks kind and bounds itself).
    let resolve: ((Kiln_Ir_DataRef, String) throws -> TensorStorage)?

    func fail(_ message: String) -> KilnError { KilnError(.invalidArtifact, message) }

    func decode(_ m: Kiln_Ir_Model) throws -> Model {
        guard m.hasGraph else { throw fail("model: no graph") }
        let graph = try decode(m.graph, path: "graph")
        return Model(graph: graph, opsets: m.opsets.mapValues { Int($0) }, producer: m.producer,
                     sourceIRVersion: Int(m.sourceIrVersion), metadata: m.metadata)
    }

    func decode(_ g: Kiln_Ir_Graph, path: String) throws -> Graph {
        let here = "\(path) '\(g.name)'"
        var initializers: [String: Tensor] = [:]
        for t in g.initializers {
            guard initializers[t.name] == nil else { throw fail("\(here): initializer '\(t.name)' appears twice") }
            initializers[t.name] = try decode(t, what: "\(here) initializer '\(t.name)'")
        }
        var valueTypes: [String: ValueType] = [:]
        for v in g.valueTypes {
            guard valueTypes[v.name] == nil else { throw fail("\(here): value type of '\(v.name)' appears twice") }
            guard v.hasType else { throw fail("\(here): value type of '\(v.name)' has no type") }
            valueTypes[v.name] = try decode(v.type, what: "\(here) value '\(v.name)'")
        }
        let nodes = try g.nodes.enumerated().map { index, n in try decode(n, path: "\(here) node \(index) '\(n.name)'") }
        return Graph(name: g.name, inputs: try g.inputs.map { try decode($0, what: "\(here) input") },
                     outputs: try g.outputs.map { try decode($0, what: "\(here) output") },
                     initializers: initializers, nodes: nodes, valueTypes: valueTypes)
    }

    func decode(_ v: Kiln_Ir_Value, what: String) throws -> Value {
        Value(name: v.name, type: v.hasType ? try decode(v.type, what: "\(what) '\(v.name)'") : nil)
    }

    func dtype(_ d: Kiln_Ir_DataType, what: String) throws -> DType {
        guard let t = DType(onnxCode: d.rawValue) else { throw fail("\(what): unknown element type \(d.rawValue)") }
        return t
    }

    func decode(_ t: Kiln_Ir_Type, what: String) throws -> ValueType {
        switch t.value {
        case .tensor(let tt): return .tensor(try decode(tt, what: what))
        case .sparseTensor(let tt): return .sparseTensor(try decode(tt, what: what))
        case .sequence(let e): return .sequence(try decode(e, what: what))
        case .optional(let e): return .optional(try decode(e, what: what))
        case .map(let m):
            guard m.hasValue else { throw fail("\(what): map type has no value type") }
            return .map(key: try dtype(m.key, what: what), value: try decode(m.value, what: what))
        case nil: throw fail("\(what): type has no kind")
        }
    }

    func decode(_ t: Kiln_Ir_TensorType, what: String) throws -> TensorType {
        let element = try dtype(t.dtype, what: what)
        guard t.hasShape_p else {
            guard t.dims.isEmpty else { throw fail("\(what): type of unknown rank lists \(t.dims.count) dims") }
            return TensorType(element, nil)
        }
        let dims = try t.dims.map { d -> Dim in
            switch d.value {
            case .fixed(let v) where v < 0 || v > Int64(ElementCount.maxBytes):
                throw fail("\(what): dim \(v) is negative or too large")
            case .fixed(let v): .fixed(Int(v))
            case .symbol(let s): .symbol(s)
            case nil: .unknown
            }
        }
        do {
            try ElementCount.checkDeclared(dims, dtype: element, what: what)
        } catch let error as KilnError {
            throw fail(error.message)
        }
        return TensorType(element, dims)
    }

    func decode(_ n: Kiln_Ir_Node, path: String) throws -> Node {
        var attributes: [String: Attribute] = [:]
        for a in n.attributes {
            guard attributes[a.name] == nil else { throw fail("\(path): attribute '\(a.name)' appears twice") }
            attributes[a.name] = try decode(a, what: "\(path) attribute '\(a.name)'")
        }
        return Node(name: n.name, op: OpID(n.domain, n.op), inputs: n.inputs, outputs: n.outputs, attributes: attributes)
    }

    func decode(_ a: Kiln_Ir_Attribute, what: String) throws -> Attribute {
        switch a.value {
        case .f(let v): return .float(v)
        case .i(let v): return .int(Int(v))
        case .s(let v): return .string(v)
        case .t(let v): return .tensor(try decode(v, what: what))
        case .g(let v): return .graph(try decode(v, path: "\(what) subgraph"))
        case .type(let v): return .type(try decode(v, what: what))
        case .floats(let v): return .floats(v.values)
        case .ints(let v): return .ints(v.values.map { Int($0) })
        case .strings(let v): return .strings(v.values)
        case .tensors(let v):
            return .tensors(try v.values.enumerated().map { try decode($0.element, what: "\(what)[\($0.offset)]") })
        case .graphs(let v):
            return .graphs(try v.values.enumerated().map { try decode($0.element, path: "\(what)[\($0.offset)] subgraph") })
        case .types(let v): return .types(try v.values.map { try decode($0, what: what) })
        case nil: throw fail("\(what): attribute has no value")
        }
    }

    func decode(_ t: Kiln_Ir_Tensor, what: String) throws -> Tensor {
        let element = try dtype(t.dtype, what: what)
        var count = 1
        for d in t.shape {
            guard d >= 0 else { throw fail("\(what): negative dim \(d) in shape \(t.shape)") }
            guard d <= Int64(Int32.max) * 1024 else { throw fail("\(what): dim \(d) in shape \(t.shape) is too large") }
            let (p, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, p <= Int(Int32.max) * 1024 else { throw fail("\(what): shape \(t.shape) is too large") }
            count = p
        }
        let shape = t.shape.map { Int($0) }
        if element == .string {
            switch t.data {
            case .strings(let s):
                guard s.values.count == count else { throw fail("\(what): \(s.values.count) strings for shape \(shape)") }
                return Tensor(shape: shape, strings: s.values)
            case nil where count == 0: return Tensor(shape: shape, strings: [])
            default: throw fail("\(what): a string tensor must hold strings")
            }
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: element.byteWidth!)
        guard !overflow else { throw fail("\(what): shape \(t.shape) is too large") }
        switch t.data {
        case .raw(let data):
            guard data.count == byteCount else {
                throw fail("\(what): \(data.count) data bytes for \(element)\(shape), which needs \(byteCount)")
            }
            let storage = data.withUnsafeBytes { TensorStorage(copying: $0) }
            try checkBools(element, storage.bytes, what: what)
            return Tensor(dtype: element, shape: shape, storage: storage)
        case .ref(let ref):
            guard let resolve else { throw fail("\(what): references section \(ref.section), but no artifact sections are available") }
            guard ref.length == UInt64(byteCount) else {
                throw fail("\(what): reference of \(ref.length) bytes for \(element)\(shape), which needs \(byteCount)")
            }
            let storage = try resolve(ref, what)
            // resolve checked offset + length against the section.
            let bytes = UnsafeRawBufferPointer(rebasing: storage.bytes[Int(ref.offset)..<(Int(ref.offset) + byteCount)])
            try checkBools(element, bytes, what: what)
            return Tensor(dtype: element, shape: shape, storage: storage, offset: Int(ref.offset))
        case .strings: throw fail("\(what): a \(element) tensor holds strings")
        case nil:
            guard byteCount == 0 else { throw fail("\(what): tensor has no data") }
            return Tensor(zeros: element, shape: shape)
        }
    }

    /// A bool element must be 0 or 1 (anything else is not a valid Swift `Bool`).
    func checkBools(_ element: DType, _ bytes: UnsafeRawBufferPointer, what: String) throws {
        guard element == .bool else { return }
        for b in bytes where b > 1 { throw fail("\(what): bool element with byte value \(b)") }
    }
}
