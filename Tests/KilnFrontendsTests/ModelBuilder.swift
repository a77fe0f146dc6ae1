import Foundation
import Kiln
@testable import KilnFrontends
import SwiftProtobuf

/// Builds small ONNX models from the generated protobuf types and writes them to temporary folders.
enum ONNXBuilder {
    /// A fresh, empty temporary folder.
    static func temporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-frontends-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A tensor value-info: `name` of `dtype` and `dims` (nil dims: no shape).
    static func value(_ name: String, _ dtype: DType = .float32, _ dims: [Int]? = nil) -> Onnx_ValueInfoProto {
        var v = Onnx_ValueInfoProto()
        v.name = name
        var tt = Onnx_TypeProto.Tensor()
        tt.elemType = Int32(dtype.onnxCode)
        if let dims {
            var shape = Onnx_TensorShapeProto()
            shape.dim = dims.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                dim.dimValue = Int64(d)
                return dim
            }
            tt.shape = shape
        }
        var type = Onnx_TypeProto()
        type.tensorType = tt
        v.type = type
        return v
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

    /// An attribute of the given kind.
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

    /// A node.
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

    /// A model around one graph.
    static func model(nodes: [Onnx_NodeProto], inputs: [Onnx_ValueInfoProto], outputs: [Onnx_ValueInfoProto],
                      initializers: [Onnx_TensorProto] = [], opset: Int = 17, otherOpsets: [(String, Int)] = [],
                      functions: [Onnx_FunctionProto] = []) -> Onnx_ModelProto {
        var g = Onnx_GraphProto()
        g.name = "test"
        g.node = nodes
        g.input = inputs
        g.output = outputs
        g.initializer = initializers
        var m = Onnx_ModelProto()
        m.irVersion = 8
        m.producerName = "kiln-tests"
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

    /// Runs `model` (written to a temporary folder) on the reference backend with float inputs.
    static func run(_ model: Onnx_ModelProto, _ inputs: [String: Tensor]) throws -> [String: Tensor] {
        let folder = try temporaryFolder()
        let path = try write(model, to: folder)
        let session = try Kiln.load(path: path)
        let outputs = try session.run(inputs.mapValues { RuntimeValue.tensor($0) })
        return outputs.compactMapValues(\.tensor)
    }

    /// A deterministic pseudo-random byte sequence (a 64-bit LCG), for corrupt-file tests.
    static func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }
}
