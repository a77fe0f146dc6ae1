#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FoundationEssentials
import KilnIR
import SwiftProtobuf

/// Imports ONNX models (`ModelProto`) into Kiln IR.
///
/// It reads the model (memory-mapped), external-data tensors stored beside it (memory-mapped, never
/// copied, and never outside the model's folder), inlines model-local functions, and rewrites ops of
/// older opsets into their canonical form. Every problem is a `KilnError` naming the tensor, node or
/// field concerned; a malformed file never crashes the importer.
public struct ONNXImporter {
    /// The newest ONNX default-domain opset whose ops the importer knows; nodes are canonicalized to it.
    public static let canonicalOpset = OpCatalog.canonicalOpset

    /// The most nodes inlining model-local functions may produce in one import (a typed error beyond it).
    public var maxInlinedNodes = ImportLimits.maxInlinedNodes

    /// An importer.
    public init() {}

    /// Imports the model at `path`. External data is resolved relative to the model's folder.
    public func importModel(path: String) throws -> Model {
        let file = try MappedFile(path: path)
        let directory = Self.directory(of: path)
        return try importModel(bytes: file.bytes, directory: directory, source: path)
    }

    /// Imports a model held in memory. `directory` is where external data lives (nil: external data is an error).
    public func importModel(bytes: UnsafeRawBufferPointer, directory: String?, source: String = "<memory>") throws -> Model {
        let proto: Onnx_ModelProto
        do {
            // Decode straight from the caller's (usually memory-mapped) bytes, without copying the file.
            let data = bytes.baseAddress.map {
                Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0), count: bytes.count, deallocator: .none)
            } ?? Data()
            proto = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw KilnError(.invalidModel, "\(source) is not a valid ONNX model (protobuf decoding failed: \(error))")
        }
        guard proto.hasGraph else { throw KilnError(.invalidModel, "\(source) has no graph (is it an ONNX model?)") }
        guard proto.irVersion < 3 || !proto.opsetImport.isEmpty else {
            throw KilnError(.invalidModel, "\(source) has no opset_import (ONNX IR version \(proto.irVersion) requires one; is the file truncated?)")
        }
        var context = ImportContext(directory: directory, source: source, functions: [:])
        context.maxInlinedNodes = maxInlinedNodes
        var opsets: [String: Int] = [:]
        for o in proto.opsetImport { opsets[o.domain == "ai.onnx" ? "" : o.domain] = Int(o.version) }
        if opsets[""] == nil && proto.irVersion < 3 { opsets[""] = 1 }
        for f in proto.functions { context.functions[FunctionKey(domain: f.domain, name: f.name)] = f }
        context.names = NameGenerator(used: Self.allNames(proto.graph, functions: proto.functions))
        var graph = try context.graph(proto.graph, opsets: opsets, isMain: true)
        // ONNX-ML tree ensembles become Kiln's tree op (Trees/ONNXMLTrees.swift).
        if ONNXMLTrees.rewrite(&graph) { opsets[TreeEnsemble.op.domain] = 1 }
        var metadata: [String: String] = [:]
        for entry in proto.metadataProps { metadata[entry.key] = entry.value }
        let producer = [proto.producerName, proto.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        return Model(graph: graph, opsets: opsets, producer: producer, sourceIRVersion: Int(proto.irVersion), metadata: metadata)
    }

    /// Decodes a value serialized as ONNX test data: a `TensorProto`, or a `SequenceProto` /
    /// `OptionalProto` when `type` says the value is a sequence or optional.
    public func decodeValue(bytes: [UInt8], type: ValueType?) throws -> RuntimeValue {
        var context = ImportContext(directory: nil, source: "test data", functions: [:])
        do {
            switch type {
            case .sequence(let element)?:
                return try context.value(try Onnx_SequenceProto(serializedBytes: bytes), elementType: element)
            case .optional(let element)?:
                return try context.value(try Onnx_OptionalProto(serializedBytes: bytes), elementType: element)
            case .map?:
                throw KilnError(.unsupported, "map-typed test data is not supported")
            default:
                return .tensor(try context.tensor(try Onnx_TensorProto(serializedBytes: bytes)))
            }
        } catch let error as KilnError {
            throw error
        } catch {
            throw KilnError(.invalidModel, "test data is not a valid protobuf value: \(error)")
        }
    }

    /// The folder holding `path` (`.` for a bare file name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    /// Every value name in the model, so that names made during import never clash.
    static func allNames(_ graph: Onnx_GraphProto, functions: [Onnx_FunctionProto]) -> Set<String> {
        var names = Set<String>()
        func walk(_ g: Onnx_GraphProto) {
            for v in g.input { names.insert(v.name) }
            for v in g.output { names.insert(v.name) }
            for t in g.initializer { names.insert(t.name) }
            for n in g.node {
                names.formUnion(n.input)
                names.formUnion(n.output)
                for a in n.attribute {
                    if a.hasG { walk(a.g) }
                    a.graphs.forEach(walk)
                }
            }
        }
        walk(graph)
        for f in functions {
            names.formUnion(f.input)
            names.formUnion(f.output)
            for n in f.node {
                names.formUnion(n.input)
                names.formUnion(n.output)
                for a in n.attribute {
                    if a.hasG { walk(a.g) }
                    a.graphs.forEach(walk)
                }
            }
        }
        return names
    }
}

/// Identifies a model-local function by domain and name.
struct FunctionKey: Hashable {
    var domain: String
    var name: String
}

/// Caps the importer applies to what a small model file may make it build.
public enum ImportLimits {
    /// The most nodes inlining model-local functions may produce in one import.
    public static let maxInlinedNodes = 1_000_000
    /// The largest dense form of a sparse tensor, in bytes of its 8-byte working copy: 1 GiB.
    public static let maxDenseSparseBytes = 1 << 30
}

/// State of one import: where external data lives, the model's functions, name generation.
struct ImportContext {
    let directory: String?
    let source: String
    var functions: [FunctionKey: Onnx_FunctionProto]
    var names = NameGenerator(used: [])
    var mappedFiles: [String: MappedFile] = [:]
    var inlineDepth = 0
    /// Nodes produced by inlining functions so far (bounded by `ImportLimits.maxInlinedNodes`).
    var inlinedNodes = 0
    var maxInlinedNodes = ImportLimits.maxInlinedNodes
    /// Value types known in the graph being imported and the graphs enclosing it.
    var scopeTypes: [String: ValueType] = [:]

    /// A context for one import.
    init(directory: String?, source: String, functions: [FunctionKey: Onnx_FunctionProto]) {
        self.directory = directory
        self.source = source
        self.functions = functions
    }

    // MARK: graphs and nodes

    /// The IR graph for `proto`: initializers, signature, value types and canonical nodes.
    mutating func graph(_ proto: Onnx_GraphProto, opsets: [String: Int], isMain: Bool) throws -> Graph {
        var graph = Graph(name: proto.name.isEmpty ? (isMain ? "main" : "subgraph") : proto.name)
        for t in proto.initializer {
            guard !t.name.isEmpty else { throw KilnError(.invalidModel, "\(source): graph '\(graph.name)' has an initializer with no name") }
            graph.initializers[t.name] = try tensor(t)
        }
        for s in proto.sparseInitializer {
            graph.initializers[s.values.name] = try denseTensor(fromSparse: s)
        }
        // Initializers listed as inputs are defaults the caller may override; keep them as inputs.
        graph.inputs = try proto.input.map { Value(name: $0.name, type: try valueType($0.type, where: "input '\($0.name)'")) }
        graph.outputs = try proto.output.map { Value(name: $0.name, type: try valueType($0.type, where: "output '\($0.name)'")) }
        for info in proto.valueInfo {
            if let t = try valueType(info.type, where: "value '\(info.name)'") { graph.valueTypes[info.name] = t }
        }
        // Types the canonicalizer may consult; restored when this (sub)graph is done.
        let outerTypes = scopeTypes
        defer { scopeTypes = outerTypes }
        for (name, t) in graph.initializers { scopeTypes[name] = .tensor(TensorType(t.dtype, fixed: t.shape)) }
        for v in graph.inputs + graph.outputs { if let t = v.type { scopeTypes[v.name] = t } }
        for (name, t) in graph.valueTypes { scopeTypes[name] = t }
        for node in proto.node {
            graph.nodes += try nodes(node, opsets: opsets, constants: &graph.initializers)
        }
        return graph
    }

    /// The IR nodes for one ONNX node: itself canonicalized, or a function's body inlined.
    mutating func nodes(_ proto: Onnx_NodeProto, opsets: [String: Int], constants: inout [String: Tensor]) throws -> [Node] {
        let domain = proto.domain == "ai.onnx" ? "" : proto.domain
        if let function = functions[FunctionKey(domain: proto.domain, name: proto.opType)] {
            return try inline(function, at: proto, opsets: opsets, constants: &constants)
        }
        var attributes: [String: Attribute] = [:]
        for a in proto.attribute {
            attributes[a.name] = try attribute(a, node: proto, opsets: opsets)
        }
        let node = Node(name: proto.name, op: OpID(domain, proto.opType), inputs: proto.input, outputs: proto.output,
                        attributes: attributes)
        if inlineDepth > 0 {
            inlinedNodes += 1
            guard inlinedNodes <= maxInlinedNodes else {
                throw KilnError(.invalidModel, "\(source): inlining model-local functions produces more than \(maxInlinedNodes) nodes (the importer's inlining node budget); function calls nest too deeply or too often")
            }
        }
        let opset = opsets[domain] ?? (domain.isEmpty ? ONNXImporter.canonicalOpset : 1)
        guard domain.isEmpty else { return [node] }
        return try Canonicalizer.canonicalize(node, opset: opset, constants: &constants, names: &names, types: scopeTypes)
    }

    /// Inlines a model-local function at a call site: formal inputs and outputs take the call's names,
    /// internal values get fresh names, attribute references take the call's attribute values.
    mutating func inline(_ function: Onnx_FunctionProto, at call: Onnx_NodeProto, opsets outer: [String: Int],
                         constants: inout [String: Tensor]) throws -> [Node] {
        inlineDepth += 1
        defer { inlineDepth -= 1 }
        guard inlineDepth < 64 else {
            throw KilnError(.invalidModel, "\(source): function '\(function.name)' calls itself (inlining is more than 64 deep)")
        }
        var rename: [String: String] = [:]
        for (i, formal) in function.input.enumerated() { rename[formal] = i < call.input.count ? call.input[i] : "" }
        for (i, formal) in function.output.enumerated() { rename[formal] = i < call.output.count ? call.output[i] : "" }
        var callAttributes: [String: Onnx_AttributeProto] = [:]
        for a in function.attributeProto { callAttributes[a.name] = a }
        for a in call.attribute { callAttributes[a.name] = a }
        // The function's own opset imports, falling back to the caller's for domains it does not list.
        var opsets = outer
        for o in function.opsetImport { opsets[o.domain == "ai.onnx" ? "" : o.domain] = Int(o.version) }
        var result: [Node] = []
        for var node in function.node {
            node.input = node.input.map { name in name.isEmpty ? "" : mapped(name, &rename, prefix: function.name) }
            node.output = node.output.map { name in name.isEmpty ? "" : mapped(name, &rename, prefix: function.name) }
            node.attribute = node.attribute.compactMap { a in
                guard !a.refAttrName.isEmpty else { return a }
                guard var value = callAttributes[a.refAttrName] else { return nil }
                value.name = a.name
                return value
            }
            // Subgraphs (If/Loop bodies) may read the function's values by name, and may refer to
            // the function's attributes too.
            for i in node.attribute.indices {
                if node.attribute[i].hasG {
                    node.attribute[i].g = Self.substitute(node.attribute[i].g, rename: rename, attributes: callAttributes)
                }
                node.attribute[i].graphs = node.attribute[i].graphs.map {
                    Self.substitute($0, rename: rename, attributes: callAttributes)
                }
            }
            result += try nodes(node, opsets: opsets, constants: &constants)
        }
        return result
    }

    /// `graph` (a subgraph inside an inlined function body) with outer names renamed and attribute
    /// references resolved against the call's attributes. Names the subgraph defines itself shadow
    /// the outer ones and are left alone.
    static func substitute(_ graph: Onnx_GraphProto, rename: [String: String],
                           attributes: [String: Onnx_AttributeProto]) -> Onnx_GraphProto {
        var g = graph
        var local = Set<String>()
        for v in g.input { local.insert(v.name) }
        for t in g.initializer { local.insert(t.name) }
        for n in g.node { local.formUnion(n.output) }
        var inner = rename
        for name in local { inner[name] = nil }
        func map(_ name: String) -> String { inner[name] ?? name }
        for i in g.node.indices {
            g.node[i].input = g.node[i].input.map(map)
            g.node[i].attribute = g.node[i].attribute.compactMap { a -> Onnx_AttributeProto? in
                var a = a
                if !a.refAttrName.isEmpty {
                    guard var value = attributes[a.refAttrName] else { return nil }
                    value.name = a.name
                    a = value
                }
                if a.hasG { a.g = substitute(a.g, rename: inner, attributes: attributes) }
                a.graphs = a.graphs.map { substitute($0, rename: inner, attributes: attributes) }
                return a
            }
        }
        for i in g.output.indices { g.output[i].name = map(g.output[i].name) }
        return g
    }

    private mutating func mapped(_ name: String, _ rename: inout [String: String], prefix: String) -> String {
        if let m = rename[name] { return m }
        let fresh = names.fresh("\(prefix).\(name)")
        rename[name] = fresh
        return fresh
    }

    /// The IR attribute for `a` (subgraphs imported recursively).
    mutating func attribute(_ a: Onnx_AttributeProto, node: Onnx_NodeProto, opsets: [String: Int]) throws -> Attribute {
        func text(_ d: Data) -> String { String(decoding: d, as: UTF8.self) }
        var type = a.type
        if type == .undefined {
            // Models older than IR version 2 leave the type out; infer it from the field that is set.
            if a.hasF { type = .float } else if a.hasI { type = .int } else if a.hasS { type = .string }
            else if a.hasT { type = .tensor } else if a.hasG { type = .graph } else if !a.floats.isEmpty { type = .floats }
            else if !a.ints.isEmpty { type = .ints } else if !a.strings.isEmpty { type = .strings }
            else if !a.tensors.isEmpty { type = .tensors } else if !a.graphs.isEmpty { type = .graphs }
        }
        switch type {
        case .float: return .float(a.f)
        case .int: return .int(Int(a.i))
        case .string: return .string(text(a.s))
        case .tensor: return .tensor(try tensor(a.t))
        case .sparseTensor: return .tensor(try denseTensor(fromSparse: a.sparseTensor))
        case .graph: return .graph(try graph(a.g, opsets: opsets, isMain: false))
        case .typeProto:
            guard let t = try valueType(a.tp, where: "attribute '\(a.name)'") else {
                throw KilnError(.invalidModel, "\(source): node '\(node.name)': attribute '\(a.name)' has an empty type")
            }
            return .type(t)
        case .floats: return .floats(a.floats)
        case .ints: return .ints(a.ints.map { Int($0) })
        case .strings: return .strings(a.strings.map(text))
        case .tensors: return .tensors(try a.tensors.map { try tensor($0) })
        case .graphs: return .graphs(try a.graphs.map { try graph($0, opsets: opsets, isMain: false) })
        case .typeProtos:
            return .types(try a.typeProtos.compactMap { try valueType($0, where: "attribute '\(a.name)'") })
        case .sparseTensors:
            return .tensors(try a.sparseTensors.map { try denseTensor(fromSparse: $0) })
        case .undefined:
            throw KilnError(.invalidModel, "\(source): node '\(node.name)' (\(node.opType)): attribute '\(a.name)' has no value")
        }
    }

    // MARK: types

    /// The IR type for `proto`; nil when it is left unspecified.
    func valueType(_ proto: Onnx_TypeProto, where context: String) throws -> ValueType? {
        switch proto.value {
        case .tensorType(let t)?:
            guard let tt = try tensorType(elemType: t.elemType, shape: t.hasShape ? t.shape : nil, where: context) else { return nil }
            return .tensor(tt)
        case .sparseTensorType(let t)?:
            guard let tt = try tensorType(elemType: t.elemType, shape: t.hasShape ? t.shape : nil, where: context) else { return nil }
            return .sparseTensor(tt)
        case .sequenceType(let s)?:
            guard s.hasElemType, let e = try valueType(s.elemType, where: context) else { return nil }
            return .sequence(e)
        case .optionalType(let o)?:
            guard o.hasElemType, let e = try valueType(o.elemType, where: context) else { return nil }
            return .optional(e)
        case .mapType(let m)?:
            guard let key = DType(onnxCode: Int(m.keyType)) else {
                throw KilnError(.invalidModel, "\(source): \(context) has a map key type \(m.keyType) that ONNX does not define")
            }
            guard m.hasValueType, let v = try valueType(m.valueType, where: context) else { return nil }
            return .map(key: key, value: v)
        case nil:
            return nil
        }
    }

    /// The IR tensor type for an element type code and optional shape; nil when the element type is unspecified.
    func tensorType(elemType: Int32, shape: Onnx_TensorShapeProto?, where context: String) throws -> TensorType? {
        if elemType == 0 { return nil }
        guard let dtype = DType(onnxCode: Int(elemType)) else {
            throw KilnError(.invalidModel, "\(source): \(context) has element type \(elemType), which ONNX does not define")
        }
        guard let shape else { return TensorType(dtype, nil) }
        let dims = try shape.dim.map { d -> Dim in
            switch d.value {
            case .dimValue(let v)? where v > Int64(ElementCount.maxBytes):
                throw KilnError(.invalidModel, "\(source): \(context) has dim \(v), more than any tensor can hold")
            case .dimValue(let v)?: v >= 0 ? .fixed(Int(v)) : .unknown
            case .dimParam(let p)?: p.isEmpty || p == "?" ? .unknown : .symbol(p)  // `?` and "" are anonymous, as in ONNX Runtime
            case nil: .unknown
            }
        }
        try ElementCount.checkDeclared(dims, dtype: dtype, what: "\(source): \(context)")
        return TensorType(dtype, dims)
    }

    // MARK: tensors

    /// The tensor `proto` holds, from whichever field (or external file) carries its data.
    mutating func tensor(_ proto: Onnx_TensorProto) throws -> Tensor {
        let name = proto.name.isEmpty ? "<unnamed>" : proto.name
        guard let dtype = DType(onnxCode: Int(proto.dataType)) else {
            throw KilnError(.invalidModel, "\(source): tensor '\(name)' has element type \(proto.dataType), which ONNX does not define")
        }
        let shape = proto.dims.map { Int($0) }
        let count = try ElementCount.of(shape, dtype: dtype, what: "\(source): tensor '\(name)'")
        let source = self.source
        let mismatch = { (have: Int, field: String) in
            KilnError(.invalidModel, "\(source): tensor '\(name)' of shape \(shape) needs \(count) elements but its \(field) holds \(have)")
        }
        if proto.dataLocation == .external {
            return try externalTensor(proto, name: name, dtype: dtype, shape: shape, count: count)
        }
        if dtype == .string {
            guard proto.stringData.count == count else { throw mismatch(proto.stringData.count, "string_data") }
            return Tensor(shape: shape, strings: proto.stringData.map { String(decoding: $0, as: UTF8.self) })
        }
        if proto.hasRawData {
            return try proto.rawData.withUnsafeBytes { raw in
                try tensor(raw: raw, name: name, dtype: dtype, shape: shape, count: count)
            }
        }
        switch dtype {
        case .float32:
            guard proto.floatData.count == count else { throw mismatch(proto.floatData.count, "float_data") }
            return Tensor(shape: shape, proto.floatData)
        case .float64:
            guard proto.doubleData.count == count else { throw mismatch(proto.doubleData.count, "double_data") }
            return Tensor(shape: shape, proto.doubleData)
        case .complex64:
            guard proto.floatData.count == 2 * count else { throw mismatch(proto.floatData.count / 2, "float_data") }
            return proto.floatData.withUnsafeBytes { Tensor(dtype: .complex64, shape: shape, storage: TensorStorage(copying: $0)) }
        case .complex128:
            guard proto.doubleData.count == 2 * count else { throw mismatch(proto.doubleData.count / 2, "double_data") }
            return proto.doubleData.withUnsafeBytes { Tensor(dtype: .complex128, shape: shape, storage: TensorStorage(copying: $0)) }
        case .int64:
            guard proto.int64Data.count == count else { throw mismatch(proto.int64Data.count, "int64_data") }
            return Tensor(shape: shape, proto.int64Data)
        case .uint32, .uint64:
            guard proto.uint64Data.count == count else { throw mismatch(proto.uint64Data.count, "uint64_data") }
            return Tensor(dtype: dtype, shape: shape, int64s: proto.uint64Data.map { Int64(bitPattern: $0) })
        case .int4, .uint4, .float4e2m1, .int2, .uint2:
            let bytes = proto.int32Data.map { UInt8(truncatingIfNeeded: $0) }
            return try bytes.withUnsafeBytes { try tensor(raw: $0, name: name, dtype: dtype, shape: shape, count: count) }
        case .float16, .bfloat16:
            guard proto.int32Data.count == count else { throw mismatch(proto.int32Data.count, "int32_data") }
            return Tensor(dtype: dtype, shape: shape, bitPatterns: proto.int32Data.map { UInt16(truncatingIfNeeded: $0) })
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0:
            guard proto.int32Data.count == count else { throw mismatch(proto.int32Data.count, "int32_data") }
            return Tensor(dtype: dtype, shape: shape, bitPatterns: proto.int32Data.map { UInt8(truncatingIfNeeded: $0) })
        default:  // bool and the narrow integers travel in int32_data
            guard proto.int32Data.count == count else { throw mismatch(proto.int32Data.count, "int32_data") }
            return Tensor(dtype: dtype, shape: shape, int64s: proto.int32Data.map(Int64.init))
        }
    }

    /// A tensor from ONNX raw bytes (little-endian; sub-byte types packed low bits first).
    func tensor(raw: UnsafeRawBufferPointer, name: String, dtype: DType, shape: [Int], count: Int) throws -> Tensor {
        if dtype.packedBits < 8 {
            let bits = dtype.packedBits
            let perByte = 8 / bits
            let needed = (count + perByte - 1) / perByte
            guard raw.count == needed else {
                throw KilnError(.invalidModel, "\(source): tensor '\(name)' of shape \(shape) needs \(needed) packed bytes but has \(raw.count)")
            }
            let mask = (1 << bits) - 1
            let codes = (0..<count).map { i -> Int64 in Int64((Int(raw[i / perByte]) >> ((i % perByte) * bits)) & mask) }
            if dtype == .float4e2m1 { return Tensor(dtype: dtype, shape: shape, bitPatterns: codes.map { UInt8($0) }) }
            return Tensor(dtype: dtype, shape: shape, int64s: codes)  // sign-extends int4/int2
        }
        let width = dtype.byteWidth!
        guard raw.count == count * width else {
            throw KilnError(.invalidModel, "\(source): tensor '\(name)' of shape \(shape) needs \(count * width) bytes of \(dtype) but raw_data has \(raw.count)")
        }
        if dtype == .bool {
            return Tensor(shape: shape, raw.map { $0 != 0 })
        }
        return Tensor(dtype: dtype, shape: shape, storage: TensorStorage(copying: raw))
    }

    /// A tensor whose bytes live in a file beside the model: mapped, bounds-checked, confined to the model's folder.
    mutating func externalTensor(_ proto: Onnx_TensorProto, name: String, dtype: DType, shape: [Int], count: Int) throws -> Tensor {
        var location = "", offset = 0, length: Int?
        for entry in proto.externalData {
            switch entry.key {
            case "location": location = entry.value
            case "offset":
                guard let v = Int(entry.value), v >= 0 else { throw KilnError(.invalidModel, "\(source): tensor '\(name)' has external-data offset '\(entry.value)'") }
                offset = v
            case "length":
                guard let v = Int(entry.value), v >= 0 else { throw KilnError(.invalidModel, "\(source): tensor '\(name)' has external-data length '\(entry.value)'") }
                length = v
            default: break
            }
        }
        guard let directory else {
            throw KilnError(.invalidModel, "\(source): tensor '\(name)' stores its data externally, but the model was not loaded from a file")
        }
        let path = try ExternalData.resolve(location: location, in: directory, tensor: name, source: source)
        let file: MappedFile
        if let cached = mappedFiles[path] { file = cached } else {
            file = try MappedFile(path: path)
            mappedFiles[path] = file
        }
        guard dtype != .string else { throw KilnError(.invalidModel, "\(source): string tensor '\(name)' cannot be stored externally") }
        let needed = dtype.packedBits < 8 ? (count * dtype.packedBits + 7) / 8 : count * dtype.byteWidth!
        let size = length ?? (file.size - min(offset, file.size))
        let end = try ElementCount.sum(offset, size, what: "\(source): tensor '\(name)' external data (offset + length)")
        guard size == needed else {
            throw KilnError(.invalidModel, "\(source): tensor '\(name)' of shape \(shape) needs \(needed) bytes, but its external data has \(size)")
        }
        guard offset <= file.size, size <= file.size - offset else {
            throw KilnError(.invalidModel, "\(source): tensor '\(name)' reads bytes \(offset)..<\(end) of '\(location)', which has only \(file.size)")
        }
        let raw = UnsafeRawBufferPointer(rebasing: file.bytes[offset..<(offset + size)])
        if dtype.packedBits < 8 || dtype == .bool {
            return try tensor(raw: raw, name: name, dtype: dtype, shape: shape, count: count)
        }
        let storage = TensorStorage(borrowing: raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, byteCount: size, owner: file)
        return Tensor(dtype: dtype, shape: shape, storage: storage)
    }

    /// The dense form of a COO sparse tensor.
    mutating func denseTensor(fromSparse proto: Onnx_SparseTensorProto) throws -> Tensor {
        let values = try tensor(proto.values)
        let indices = try tensor(proto.indices)
        let shape = proto.dims.map { Int($0) }
        let name = proto.values.name
        guard shape.allSatisfy({ $0 >= 0 }), values.rank == 1, values.dtype != .string, indices.dtype != .string else {
            throw KilnError(.invalidModel, "\(source): sparse tensor '\(name)' is malformed")
        }
        // Expansion keeps an 8-byte working copy per element: refuse it beyond ImportLimits.maxDenseSparseBytes,
        // so a tiny sparse tensor cannot ask for gigabytes.
        let total = try ElementCount.of(shape, what: "\(source): sparse tensor '\(name)'")
        guard total <= ImportLimits.maxDenseSparseBytes / 8 else {
            throw KilnError(.invalidModel, "\(source): sparse tensor '\(name)' has dims \(shape): its dense form (\(total) elements) exceeds the \(ImportLimits.maxDenseSparseBytes >> 20) MiB cap on sparse expansion")
        }
        let nnz = values.count
        let idx = indices.asInt64s()
        guard (indices.rank == 1 && idx.count == nnz) || (indices.rank == 2 && idx.count == nnz * shape.count) else {
            throw KilnError(.invalidModel, "\(source): sparse tensor '\(name)' has \(nnz) values but indices of shape \(indices.shape)")
        }
        let integral = values.dtype.isInteger || values.dtype == .bool
        var dense = [Double](repeating: 0, count: integral ? 0 : total)
        var denseInts = [Int64](repeating: 0, count: integral ? total : 0)
        let v = integral ? [] : values.asDoubles()
        let vi = integral ? values.asInt64s() : []
        let dimStrides = { () -> [Int] in
            var s = [Int](repeating: 1, count: shape.count)
            for i in stride(from: shape.count - 2, through: 0, by: -1) { s[i] = s[i + 1] * shape[i + 1] }
            return s
        }()
        for k in 0..<nnz {
            var flat: Int
            if indices.rank == 1 {
                flat = Int(idx[k])
            } else {
                flat = 0
                for d in 0..<shape.count {
                    let i = Int(idx[k * shape.count + d])
                    guard i >= 0, i < shape[d] else {
                        throw KilnError(.invalidModel, "\(source): sparse tensor '\(name)' has an index out of range")
                    }
                    flat += i * dimStrides[d]
                }
            }
            guard flat >= 0, flat < total else {
                throw KilnError(.invalidModel, "\(source): sparse tensor '\(name)' has an index out of range")
            }
            if integral { denseInts[flat] = vi[k] } else { dense[flat] = v[k] }
        }
        if integral { return Tensor(dtype: values.dtype, shape: shape, int64s: denseInts) }
        return Tensor(dtype: values.dtype, shape: shape, doubles: dense)
    }

    // MARK: test-data values

    /// A sequence value from test data.
    mutating func value(_ proto: Onnx_SequenceProto, elementType: ValueType?) throws -> RuntimeValue {
        let items: [RuntimeValue]
        switch proto.elemType {
        case 1, 0 where !proto.tensorValues.isEmpty: items = try proto.tensorValues.map { .tensor(try tensor($0)) }
        case 3:
            var inner: ValueType? = nil
            if case .sequence(let e)? = elementType { inner = e }
            items = try proto.sequenceValues.map { try value($0, elementType: inner) }
        case 5: items = try proto.optionalValues.map { try value($0, elementType: elementType) }
        default: items = []
        }
        return .sequence(items, elementType: elementType)
    }

    /// An optional value from test data.
    mutating func value(_ proto: Onnx_OptionalProto, elementType: ValueType?) throws -> RuntimeValue {
        switch proto.elemType {
        case 0 where proto.hasTensorValue, 1 where proto.hasTensorValue: return .optional(.tensor(try tensor(proto.tensorValue)), type: elementType)
        case 3 where proto.hasSequenceValue:
            var inner: ValueType? = nil
            if case .sequence(let e)? = elementType { inner = e }
            return .optional(try value(proto.sequenceValue, elementType: inner), type: elementType)
        default: return .optional(nil, type: elementType)
        }
    }
}

/// Resolution of external-data locations, refusing any that leave the model's folder.
enum ExternalData {
    /// The real path of external data at `location`, refused unless it is inside `directory`.
    static func resolve(location: String, in directory: String, tensor: String, source: String) throws -> String {
        guard !location.isEmpty else { throw KilnError(.invalidModel, "\(source): tensor '\(tensor)' has external data with no location") }
        let parts = location.split(separator: "/", omittingEmptySubsequences: false)
        guard !location.hasPrefix("/"), !location.contains("\\"), !parts.contains(".."), !location.contains("\0") else {
            throw KilnError(.invalidModel, "\(source): tensor '\(tensor)' has external data at '\(location)', outside the model's folder; refused")
        }
        let path = "\(directory)/\(location)"
        // Symbolic links could still lead out: compare real paths.
        guard let realDirectory = realPath(directory), let realFile = realPath(path) else {
            throw KilnError(.io, "\(source): tensor '\(tensor)': cannot open external data '\(location)' in '\(directory)'")
        }
        guard realFile.hasPrefix(realDirectory.hasSuffix("/") ? realDirectory : realDirectory + "/") else {
            throw KilnError(.invalidModel, "\(source): tensor '\(tensor)' has external data at '\(location)', which resolves outside the model's folder; refused")
        }
        return realFile
    }

    /// `path` with symbolic links and `.`/`..` resolved; nil if it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
