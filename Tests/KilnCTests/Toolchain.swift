import Foundation
import Kiln
@testable import KilnTestSupport

/// libKilnC.so and the builds of the C and C++ programs the tests run (compilers: `CToolchain`).
enum Toolchain {
    /// The folder holding libKilnC.so: the build products beside the test executable, where
    /// `swift build --build-tests` puts it. Nil when it is not there.
    static let libraryDirectory: String? =
        FileManager.default.fileExists(atPath: TestPaths.buildProducts + "/libKilnC.so") ? TestPaths.buildProducts : nil

    /// Why the tests that need libKilnC.so cannot run, or nil when it is there.
    static var missingLibrary: String? {
        libraryDirectory == nil ? "libKilnC.so not found in \(TestPaths.buildProducts), beside the tests; build it with `swift build --build-tests`" : nil
    }

    /// Compiles `sources` (paths relative to the repository) into the executable `output`, against
    /// include/, bindings/cpp/ and libKilnC.so (with an rpath to it). Fails with the compiler's messages.
    static func build(_ sources: [String], into output: String, cxx: Bool = false, extraFlags: [String] = []) throws {
        guard let lib = libraryDirectory else { throw KilnError(.io, missingLibrary!) }
        let root = TestPaths.packageRoot
        let standard = cxx ? ["-std=c++17"] : ["-std=c11"]
        let arguments = standard + ["-Wall", "-Wextra", "-Werror", "-I", root + "/include", "-I", root + "/bindings/cpp"]
            + sources.map { root + "/" + $0 } + ["-o", output, "-L", lib, "-lKilnC", "-Wl,-rpath," + lib, "-lpthread"] + extraFlags
            + CToolchain.extraFlags
        let result = try ProcessRunner.run(cxx ? CToolchain.cxxCompiler : CToolchain.cCompiler, arguments)
        guard result.status == 0 else {
            throw KilnError(.internal, "compiling \(sources.joined(separator: " ")) failed:\n\(result.stderr)\(result.stdout)")
        }
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
        typealias B = ONNXBuilder
        let model = B.model(
            nodes: [
                B.node("MatMul", ["x", "W"], ["h"], name: "matmul"),
                B.node("Add", ["h", "b"], ["hb"], name: "add"),
                B.node("Relu", ["hb"], ["y"], name: "relu"),
                B.node("Shape", ["x"], ["s"], name: "shape"),
                B.node("Identity", ["x"], ["xi"], name: "identity"),
            ],
            inputs: [B.value("x", .float32, ["batch", 4])],
            outputs: [B.value("y", .float32, ["batch", 3]), B.value("s", .int64, [2]), B.value("xi", .float32, ["batch", 4])],
            initializers: [B.floatTensor("W", [4, 3], weights), B.floatTensor("b", [3], bias)],
            graphName: "kiln-c-test", producer: "kiln-c-tests")
        try B.write(model, toFile: path)
    }

    /// Writes x: f32[batch, 4] → y = x · W, W: f32[4, 16384] (256 KB: a weights section, not inline).
    static func writeLargeWeight(to path: String) throws {
        typealias B = ONNXBuilder
        let columns = 16384
        let values: [Float] = (0..<(4 * columns)).map { Float($0 % 7) }
        let y: [ONNXDim] = ["batch", .fixed(columns)]
        let model = B.model(nodes: [B.node("MatMul", ["x", "W"], ["y"], name: "matmul")],
                            inputs: [B.value("x", .float32, ["batch", 4])], outputs: [B.value("y", .float32, y)],
                            initializers: [B.floatTensor("W", [4, columns], values)],
                            graphName: "large-weight", producer: "kiln-c-tests")
        try B.write(model, toFile: path)
    }

    /// Writes a, b: f32[batch, 3] and scale: f32[3] (an input with the default {0.5, 2, -1}) →
    /// y = (a + b) · scale, z = a − b.
    static func writeTwoInputs(to path: String) throws {
        typealias B = ONNXBuilder
        let nodes = [B.node("Add", ["a", "b"], ["s"], name: "add"), B.node("Mul", ["s", "scale"], ["y"], name: "mul"),
                     B.node("Sub", ["a", "b"], ["z"], name: "sub")]
        let inputs = [B.value("a", .float32, ["batch", 3]), B.value("b", .float32, ["batch", 3]), B.value("scale", .float32, [3])]
        let outputs = [B.value("y", .float32, ["batch", 3]), B.value("z", .float32, ["batch", 3])]
        let model = B.model(nodes: nodes, inputs: inputs, outputs: outputs, initializers: [B.floatTensor("scale", [3], [0.5, 2, -1])],
                            graphName: "two-inputs", producer: "kiln-c-tests")
        try B.write(model, toFile: path)
    }

    /// Writes x: f32[batch, 4] → y = Identity(x).
    static func writeIdentity(to path: String) throws {
        typealias B = ONNXBuilder
        let model = B.model(nodes: [B.node("Identity", ["x"], ["y"], name: "identity")], inputs: [B.value("x", .float32, ["batch", 4])],
                            outputs: [B.value("y", .float32, ["batch", 4])], graphName: "identity", producer: "kiln-c-tests")
        try B.write(model, toFile: path)
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
