import Foundation
import Kiln
@testable import KilnFrontends
import SwiftProtobuf

/// Writes tiny ONNX models (with the importer's own protobuf types) for the compiler and CLI tests.
enum ONNXFile {
    /// A value info `name: dtype[dims]`.
    static func value(_ name: String, _ dtype: DType, _ dims: [Int]) -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = name
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(dtype.onnxCode)
        var shape = Onnx_TensorShapeProto()
        for d in dims {
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = Int64(d)
            shape.dim.append(dim)
        }
        tensor.shape = shape
        info.type.tensorType = tensor
        return info
    }

    /// A node of `domain` (default ONNX).
    static func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String = "", domain: String = "") -> Onnx_NodeProto {
        var node = Onnx_NodeProto()
        node.opType = op
        node.input = inputs
        node.output = outputs
        node.name = name
        node.domain = domain
        return node
    }

    /// Writes a model with these graph parts to `path` (opset 17, plus `acme` 1).
    static func write(to path: String, inputs: [Onnx_ValueInfoProto], outputs: [Onnx_ValueInfoProto], nodes: [Onnx_NodeProto]) throws {
        var graph = Onnx_GraphProto()
        graph.name = "test"
        graph.input = inputs
        graph.output = outputs
        graph.node = nodes
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.producerName = "kiln-compiler-tests"
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        var acme = Onnx_OperatorSetIdProto()
        acme.domain = "acme"
        acme.version = 1
        model.opsetImport = [opset, acme]
        model.graph = graph
        let bytes: [UInt8] = try model.serializedBytes()
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// `out/sum:0 = x + y`, `relu = Relu(out/sum:0)`, x and y f32[2,3].
    static func writeAddRelu(to path: String) throws {
        try write(to: path, inputs: [value("x", .float32, [2, 3]), value("y", .float32, [2, 3])],
                  outputs: [value("out/sum:0", .float32, [2, 3]), value("relu", .float32, [2, 3])],
                  nodes: [node("Add", ["x", "y"], ["out/sum:0"], name: "add"), node("Relu", ["out/sum:0"], ["relu"], name: "relu")])
    }

    /// Like `writeAddRelu`, plus a node of an op no backend has (`acme.Frobnicate`).
    static func writeUnsupported(to path: String) throws {
        try write(to: path, inputs: [value("x", .float32, [2, 3]), value("y", .float32, [2, 3])],
                  outputs: [value("z", .float32, [2, 3])],
                  nodes: [node("Add", ["x", "y"], ["s"], name: "add"),
                          node("Frobnicate", ["s"], ["z"], name: "frob", domain: "acme")])
    }
}
