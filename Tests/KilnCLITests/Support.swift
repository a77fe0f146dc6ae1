import Foundation
import Kiln
@testable import KilnFrontends
import SwiftProtobuf

/// The result of running the `kiln` executable.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the built `kiln` executable and builds small ONNX models for it to run.
enum CLI {
    /// The `kiln` executable built beside the test bundle (`.build/debug/kiln`).
    static let executable: String = {
        let candidates = [
            URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
                .deletingLastPathComponent().appendingPathComponent("kiln").path,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("kiln").path,
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(".build/debug/kiln").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }()

    /// Runs `kiln arguments…` and collects its exit status and output.
    static func run(_ arguments: [String]) throws -> CLIResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        // Output goes to files, so that neither stream can fill a pipe and block the process.
        let folder = try temporaryDirectory()
        let outPath = folder + "/stdout", errPath = folder + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardOutput = out
        process.standardError = err
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        return CLIResult(status: process.terminationStatus,
                         stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// A new, empty temporary folder.
    static func temporaryDirectory() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-cli-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }
}

/// Builders for tiny ONNX models, serialized with the importer's own protobuf types.
enum ONNXModel {
    /// A value info `name: dtype[dims]`; a dim is an `Int` or a `String` symbol.
    static func value(_ name: String, _ dtype: DType, _ dims: [Any]) -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = name
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(dtype.onnxCode)
        var shape = Onnx_TensorShapeProto()
        for d in dims {
            var dim = Onnx_TensorShapeProto.Dimension()
            if let v = d as? Int { dim.dimValue = Int64(v) } else if let s = d as? String { dim.dimParam = s }
            shape.dim.append(dim)
        }
        tensor.shape = shape
        info.type.tensorType = tensor
        return info
    }

    /// A value info `name: seq<dtype[*]>`.
    static func sequence(_ name: String, _ dtype: DType) -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = name
        var element = Onnx_TypeProto()
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(dtype.onnxCode)
        element.tensorType = tensor
        var sequence = Onnx_TypeProto.Sequence()
        sequence.elemType = element
        info.type.sequenceType = sequence
        return info
    }

    /// A node of the default domain.
    static func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String = "") -> Onnx_NodeProto {
        var node = Onnx_NodeProto()
        node.opType = op
        node.input = inputs
        node.output = outputs
        node.name = name
        return node
    }

    /// A float32 initializer.
    static func initializer(_ name: String, shape: [Int], _ values: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = shape.map(Int64.init)
        t.dataType = Int32(DType.float32.onnxCode)
        t.floatData = values
        return t
    }

    /// Writes a model with the given graph parts to `path` (opset 17).
    static func write(to path: String, inputs: [Onnx_ValueInfoProto], outputs: [Onnx_ValueInfoProto],
                      nodes: [Onnx_NodeProto], initializers: [Onnx_TensorProto] = []) throws {
        var graph = Onnx_GraphProto()
        graph.name = "test"
        graph.input = inputs
        graph.output = outputs
        graph.node = nodes
        graph.initializer = initializers
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.producerName = "kiln-tests"
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = 17
        model.opsetImport = [opset]
        model.graph = graph
        let bytes: [UInt8] = try model.serializedBytes()
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// `out/sum:0 = x + y` and `relu = Relu(out/sum:0)`, with x and y f32[2,3].
    static func writeAddRelu(to path: String) throws {
        try write(
            to: path,
            inputs: [value("x", .float32, [2, 3]), value("y", .float32, [2, 3])],
            outputs: [value("out/sum:0", .float32, [2, 3]), value("relu", .float32, [2, 3])],
            nodes: [node("Add", ["x", "y"], ["out/sum:0"], name: "add"), node("Relu", ["out/sum:0"], ["relu"], name: "relu")]
        )
    }
}
