// The ONNX builders use KilnFrontends' generated protobuf types, which are internal: only a module built
// for testing shows them. SwiftPM builds for testing in debug builds (where the tests run), so the builders
// exist there; a plain `swift build -c release` still builds this target, without them.
#if DEBUG
import Foundation
import Kiln
@testable import KilnFrontends
import SwiftProtobuf

/// One dimension of an ONNX value: a size or a symbol. Written as a literal: `[2, 3]`, `["batch", 4]`.
public enum ONNXDim: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral, Sendable {
    case fixed(Int)
    case symbol(String)

    public init(integerLiteral value: Int) { self = .fixed(value) }
    public init(stringLiteral value: String) { self = .symbol(value) }
}

/// Builds small ONNX models from the importer's own protobuf types, and writes, imports and runs them.
enum ONNXBuilder {
    /// A tensor value info: `name` of `dtype` and `dims` (nil: no shape at all).
    static func value(_ name: String, _ dtype: DType = .float32, _ dims: [ONNXDim]? = nil) -> Onnx_ValueInfoProto {
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(dtype.onnxCode)
        if let dims {
            var shape = Onnx_TensorShapeProto()
            shape.dim = dims.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                switch d {
                case .fixed(let v): dim.dimValue = Int64(v)
                case .symbol(let s): dim.dimParam = s
                }
                return dim
            }
            tensor.shape = shape
        }
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType = tensor
        return info
    }

    /// A value info `name: seq<dtype[*]>`.
    static func sequence(_ name: String, _ dtype: DType) -> Onnx_ValueInfoProto {
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(dtype.onnxCode)
        var element = Onnx_TypeProto()
        element.tensorType = tensor
        var sequence = Onnx_TypeProto.Sequence()
        sequence.elemType = element
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.sequenceType = sequence
        return info
    }

    /// A float32 tensor stored in `float_data`.
    static func floatTensor(_ name: String, _ dims: [Int], _ values: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(DType.float32.onnxCode)
        t.dims = dims.map(Int64.init)
        t.floatData = values
        return t
    }

    /// An int64 tensor stored in `int64_data`.
    static func int64Tensor(_ name: String, _ dims: [Int], _ values: [Int64]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(DType.int64.onnxCode)
        t.dims = dims.map(Int64.init)
        t.int64Data = values
        return t
    }

    /// An int attribute.
    static func attribute(_ name: String, int: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = Int64(int)
        return a
    }

    /// An ints attribute.
    static func attribute(_ name: String, ints: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = ints.map(Int64.init)
        return a
    }

    /// A float attribute.
    static func attribute(_ name: String, float: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .float
        a.f = float
        return a
    }

    /// A floats attribute.
    static func attribute(_ name: String, floats: [Float]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .floats
        a.floats = floats
        return a
    }

    /// A string attribute.
    static func attribute(_ name: String, string: String) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .string
        a.s = Data(string.utf8)
        return a
    }

    /// An attribute inside a function body that takes its value from the call's attribute `reference`.
    static func attribute(_ name: String, referring reference: String, type: Onnx_AttributeProto.AttributeType) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.refAttrName = reference
        a.type = type
        return a
    }

    /// A node of `domain` (default: ONNX).
    static func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String = "", domain: String = "",
                     attributes: [Onnx_AttributeProto] = []) -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.opType = op
        n.input = inputs
        n.output = outputs
        n.name = name
        n.domain = domain
        n.attribute = attributes
        return n
    }

    /// An opset import.
    static func opset(_ domain: String, _ version: Int) -> Onnx_OperatorSetIdProto {
        var o = Onnx_OperatorSetIdProto()
        o.domain = domain
        o.version = Int64(version)
        return o
    }

    /// A model (IR version 8, producer `producer`) around one graph, importing the default opset `opset`
    /// and `otherOpsets`.
    static func model(nodes: [Onnx_NodeProto], inputs: [Onnx_ValueInfoProto], outputs: [Onnx_ValueInfoProto],
                      initializers: [Onnx_TensorProto] = [], opset: Int = 17, otherOpsets: [(String, Int)] = [],
                      functions: [Onnx_FunctionProto] = [], graphName: String = "test",
                      producer: String = "kiln-tests") -> Onnx_ModelProto {
        var g = Onnx_GraphProto()
        g.name = graphName
        g.node = nodes
        g.input = inputs
        g.output = outputs
        g.initializer = initializers
        var m = Onnx_ModelProto()
        m.irVersion = 8
        m.producerName = producer
        m.graph = g
        m.opsetImport = [Self.opset("", opset)] + otherOpsets.map { Self.opset($0.0, $0.1) }
        m.functions = functions
        return m
    }

    /// The model's serialized bytes.
    static func bytes(_ model: Onnx_ModelProto) throws -> [UInt8] {
        try model.serializedBytes()
    }

    /// Imports `model` from memory (no folder: external data is an error).
    static func importInMemory(_ model: Onnx_ModelProto) throws -> Model {
        let bytes = try self.bytes(model)
        return try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> Model in
            try ONNXImporter().importModel(bytes: raw, directory: nil)
        }
    }

    /// Writes `bytes` to `folder/name` and returns the path.
    @discardableResult
    static func write(_ bytes: [UInt8], to folder: String, name: String = "model.onnx") throws -> String {
        let path = "\(folder)/\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Writes `model` to `folder/name` and returns the path.
    @discardableResult
    static func write(_ model: Onnx_ModelProto, to folder: String, name: String = "model.onnx") throws -> String {
        try write(bytes(model), to: folder, name: name)
    }

    /// Writes `model` to the file `path`.
    static func write(_ model: Onnx_ModelProto, toFile path: String) throws {
        try Data(bytes(model)).write(to: URL(fileURLWithPath: path))
    }

    /// Writes a model of these graph parts (IR version 8, opset 17 and `otherOpsets`) to the file `path`.
    static func write(to path: String, inputs: [Onnx_ValueInfoProto], outputs: [Onnx_ValueInfoProto], nodes: [Onnx_NodeProto],
                      initializers: [Onnx_TensorProto] = [], otherOpsets: [(String, Int)] = []) throws {
        try write(model(nodes: nodes, inputs: inputs, outputs: outputs, initializers: initializers, otherOpsets: otherOpsets), toFile: path)
    }

    /// Runs the error-producing `body` and returns the KilnError it threw (nil if it threw none or another error).
    static func kilnError<T>(_ body: () throws -> T) -> KilnError? {
        do {
            _ = try body()
            return nil
        } catch let error as KilnError {
            return error
        } catch {
            return nil
        }
    }

    /// Runs `model` (written to a temporary folder) on the default backend with `inputs`.
    static func run(_ model: Onnx_ModelProto, _ inputs: [String: Tensor]) throws -> [String: Tensor] {
        try withTemporaryDirectory("kiln-onnx-run") { folder in
            let session = try Kiln.load(path: write(model, to: folder))
            return try session.run(inputs.mapValues { RuntimeValue.tensor($0) }).compactMapValues(\.tensor)
        }
    }

    // MARK: - Models several test targets use

    /// `out/sum:0 = x + y` and `relu = Relu(out/sum:0)`, with x and y f32[2,3].
    static func addRelu() -> Onnx_ModelProto {
        model(nodes: [node("Add", ["x", "y"], ["out/sum:0"], name: "add"), node("Relu", ["out/sum:0"], ["relu"], name: "relu")],
              inputs: [value("x", .float32, [2, 3]), value("y", .float32, [2, 3])],
              outputs: [value("out/sum:0", .float32, [2, 3]), value("relu", .float32, [2, 3])])
    }

    /// `z = Frobnicate(x + y)`: an op no backend has (`acme.Frobnicate`, opset acme 1).
    static func unsupported() -> Onnx_ModelProto {
        model(nodes: [node("Add", ["x", "y"], ["s"], name: "add"), node("Frobnicate", ["s"], ["z"], name: "frob", domain: "acme")],
              inputs: [value("x", .float32, [2, 3]), value("y", .float32, [2, 3])],
              outputs: [value("z", .float32, [2, 3])], otherOpsets: [("acme", 1)])
    }
}
#endif
