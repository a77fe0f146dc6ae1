import Foundation
import Kiln
@testable import KilnFrontends
import SwiftProtobuf

/// Paths of the repository, libKilnC and the C/C++ compilers, and a runner for the programs the tests build.
enum Toolchain {
    /// The repository root (three levels above this file).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The folder holding libKilnC.so: beside the test bundle (`.build/debug`) or `.build/debug` of the repository.
    static let libraryDirectory: String? = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let candidates = [
            URL(fileURLWithPath: exe).deletingLastPathComponent().path,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path,
            root + "/.build/debug",
        ]
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/libKilnC.so") }
    }()

    /// Why the tests that need libKilnC.so cannot run, or nil when it is there.
    static var missingLibrary: String? {
        libraryDirectory == nil ? "libKilnC.so not found beside the tests or in .build/debug; build it with `swift build --product KilnC`" : nil
    }

    /// The C compiler: $CC, else cc, else clang.
    static let cCompiler = ProcessInfo.processInfo.environment["CC"] ?? firstExecutable(["cc", "clang", "gcc"])
    /// The C++ compiler: $CXX, else c++, else clang++.
    static let cxxCompiler = ProcessInfo.processInfo.environment["CXX"] ?? firstExecutable(["c++", "clang++", "g++"])

    private static func firstExecutable(_ names: [String]) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for name in names {
            for folder in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(folder)/\(name)") {
                return "\(folder)/\(name)"
            }
        }
        return names[0]
    }

    /// A program's exit status and output.
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `executable arguments…` with output in files (no pipe can fill up and block it).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let folder = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outPath = folder + "/stdout", errPath = folder + "/stderr"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = out
        process.standardError = err
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return Result(status: process.terminationStatus,
                      stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// Compiles `sources` (paths relative to the repository) into the executable `output`, against
    /// include/, bindings/cpp/ and libKilnC.so (with an rpath to it). Fails with the compiler's messages.
    static func build(_ sources: [String], into output: String, cxx: Bool = false, extraFlags: [String] = []) throws {
        guard let lib = libraryDirectory else { throw KilnError(.io, missingLibrary!) }
        let standard = cxx ? ["-std=c++17"] : ["-std=c11"]
        let arguments = standard + ["-Wall", "-Wextra", "-Werror", "-I", root + "/include", "-I", root + "/bindings/cpp"]
            + sources.map { root + "/" + $0 } + ["-o", output, "-L", lib, "-lKilnC", "-Wl,-rpath," + lib, "-lpthread"] + extraFlags
        let result = try run(cxx ? cxxCompiler : cCompiler, arguments)
        guard result.status == 0 else {
            throw KilnError(.internal, "compiling \(sources.joined(separator: " ")) failed:\n\(result.stderr)\(result.stdout)")
        }
    }

    /// A new, empty temporary folder.
    static func temporaryDirectory() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-c-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }
}

/// The model the C, C++ and Python tests run:
///     x: f32[batch, 4] → y = Relu(x · W + b): f32[batch, 3],  s = Shape(x): i64[2],  xi = Identity(x)
enum TestModel {
    /// W (4×3), row-major.
    static let weights: [Float] = (0..<12).map { (Float($0) - 5) / 10 }
    /// b (3).
    static let bias: [Float] = [0.1, -0.2, 0.3]
    /// The input the test programs feed: [[0.0, 0.1, 0.2, 0.3], [0.4, 0.5, 0.6, 0.7]].
    static let input: [Float] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]

    /// Writes the model to `path`.
    static func write(to path: String) throws {
        func value(_ name: String, _ dtype: DType, _ dims: [Any]) -> Onnx_ValueInfoProto {
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
        func node(_ op: String, _ inputs: [String], _ outputs: [String], _ name: String) -> Onnx_NodeProto {
            var node = Onnx_NodeProto()
            node.opType = op
            node.input = inputs
            node.output = outputs
            node.name = name
            return node
        }
        func constant(_ name: String, _ shape: [Int], _ values: [Float]) -> Onnx_TensorProto {
            var t = Onnx_TensorProto()
            t.name = name
            t.dims = shape.map(Int64.init)
            t.dataType = Int32(DType.float32.onnxCode)
            t.floatData = values
            return t
        }
        var graph = Onnx_GraphProto()
        graph.name = "kiln-c-test"
        graph.input = [value("x", .float32, ["batch", 4])]
        graph.output = [value("y", .float32, ["batch", 3]), value("s", .int64, [2]), value("xi", .float32, ["batch", 4])]
        graph.node = [
            node("MatMul", ["x", "W"], ["h"], "matmul"),
            node("Add", ["h", "b"], ["hb"], "add"),
            node("Relu", ["hb"], ["y"], "relu"),
            node("Shape", ["x"], ["s"], "shape"),
            node("Identity", ["x"], ["xi"], "identity"),
        ]
        graph.initializer = [constant("W", [4, 3], weights), constant("b", [3], bias)]
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.producerName = "kiln-c-tests"
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        model.opsetImport = [opset]
        model.graph = graph
        let bytes: [UInt8] = try model.serializedBytes()
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// kiln.reference's outputs for `input` (shape [2, 4]), in the programs' printed form:
    /// name → (dims, values as Doubles).
    static func reference(modelPath: String) throws -> [String: (dims: [Int], values: [Double])] {
        let session = try Session(model: Kiln.importONNX(path: modelPath), backend: Kiln.backend(named: "kiln.reference"))
        let results = try session.run(["x": .tensor(Tensor(shape: [2, 4], input))])
        var expected: [String: (dims: [Int], values: [Double])] = [:]
        for (name, value) in results {
            guard let tensor = value.tensor else { throw KilnError(.internal, "output \(name) is not a tensor") }
            expected[name] = (tensor.shape, tensor.asDoubles())
        }
        return expected
    }

    /// The `value NAME DIMS: v0 v1 …` lines a test program printed: name → (dims, values).
    static func printedValues(_ stdout: String) -> [String: (dims: [Int], values: [Double])] {
        var values: [String: (dims: [Int], values: [Double])] = [:]
        for line in stdout.split(separator: "\n") where line.hasPrefix("value ") {
            let parts = line.dropFirst("value ".count).split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let head = parts[0].split(separator: " ")
            guard head.count == 2 else { continue }
            let dims = head[1].split(separator: ",").compactMap { Int($0) }
            values[String(head[0])] = (dims, parts[1].split(separator: " ").compactMap { Double($0) })
        }
        return values
    }
}
