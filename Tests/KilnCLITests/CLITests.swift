import Foundation
import Kiln
import KilnTooling
import Testing
@testable import KilnTestSupport

/// `kiln run` and `kiln inspect`, run as a subprocess on small models built by the tests.
/// Each test gets its own instance, hence its own temporary folder, removed when the test ends.
@Suite final class CLITests {
    let folder: String
    let model: String

    init() throws {
        folder = try temporaryDirectory("kiln-cli-tests")
        model = folder + "/add_relu.onnx"
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: model)
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    /// Writes the standard x and y inputs and returns their `--input` arguments.
    func writeInputs() throws -> [String] { try TestModels.writeAddReluInputs(in: folder) }

    @Test func runWritesOutputsWithSanitizedNames() throws {
        let result = try KilnTool.run(["run", model] + writeInputs() + ["--output-dir", folder + "/out"])
        #expect(result.status == 0, "\(result.stderr)")
        let sum = try NPY.read(path: folder + "/out/out_sum_0.npy")
        #expect(sum.dtype == .float32 && sum.shape == [2, 3])
        #expect(sum.elements(as: Float.self) == [1.5, -1.5, 3.5, -3.5, 5.5, -5.5])
        let relu = try NPY.read(path: folder + "/out/relu.npy")
        #expect(relu.elements(as: Float.self) == [1.5, 0, 3.5, 0, 5.5, 0])
        #expect(result.stdout.contains("out/sum:0: f32[2,3]"))
        #expect(result.stdout.contains("min=-5.5 max=5.5"))
        #expect(result.stdout.contains("time: load"))
    }

    @Test func runWithoutOutputDirWritesNothing() throws {
        let result = try KilnTool.run(["run", model] + writeInputs())
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("relu: f32[2,3]"))
        #expect(!result.stdout.contains("written"))
    }

    @Test func outputsWhoseNamesSanitizeAlikeGetDistinctFiles() throws {
        let path = folder + "/two.onnx"
        try ONNXBuilder.write(to: path, inputs: [ONNXBuilder.value("x", .float32, [2])],
                            outputs: [ONNXBuilder.value("a/b", .float32, [2]), ONNXBuilder.value("a:b", .float32, [2])],
                            nodes: [ONNXBuilder.node("Relu", ["x"], ["a/b"]), ONNXBuilder.node("Add", ["x", "x"], ["a:b"])])
        try NPY.write(Tensor(shape: [2], [Float](arrayLiteral: -1, 2)), to: folder + "/x2.npy")
        let result = try KilnTool.run(["run", path, "--input", "x=\(folder)/x2.npy", "--output-dir", folder + "/two"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try NPY.read(path: folder + "/two/a_b.npy").elements(as: Float.self) == [0, 2])
        #expect(try NPY.read(path: folder + "/two/a_b_1.npy").elements(as: Float.self) == [-2, 4])
    }

    @Test func nonexistentModel() throws {
        let result = try KilnTool.run(["run", folder + "/missing.onnx", "--random"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("missing.onnx"))
    }

    @Test func nonProtobufModel() throws {
        let path = folder + "/garbage.onnx"
        try Data("this is not a model\n".utf8).write(to: URL(fileURLWithPath: path))
        let result = try KilnTool.run(["run", path, "--random"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("garbage.onnx"))
        #expect(result.stderr.hasPrefix("error:"))
    }

    @Test func missingInput() throws {
        let arguments = try writeInputs()
        let result = try KilnTool.run(["run", model] + arguments.prefix(2))
        #expect(result.status == 1)
        #expect(result.stderr.contains("input 'y' is missing"), "\(result.stderr)")
        #expect(result.stderr.contains("f32[2,3]"))
    }

    @Test func unknownInputName() throws {
        let arguments = try writeInputs()
        let result = try KilnTool.run(["run", model] + arguments + ["--input", "z=\(folder)/x.npy"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("no input named 'z'"), "\(result.stderr)")
    }

    @Test func wrongDType() throws {
        _ = try writeInputs()
        try NPY.write(Tensor(shape: [2, 3], [Double](repeating: 1, count: 6)), to: folder + "/x64.npy")
        let result = try KilnTool.run(["run", model, "--input", "x=\(folder)/x64.npy", "--input", "y=\(folder)/y.npy"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("input 'x'"), "\(result.stderr)")
        #expect(result.stderr.contains("f32") && result.stderr.contains("f64"))
    }

    @Test func wrongShape() throws {
        _ = try writeInputs()
        try NPY.write(Tensor(shape: [3, 2], [Float](repeating: 1, count: 6)), to: folder + "/x32.npy")
        let result = try KilnTool.run(["run", model, "--input", "x=\(folder)/x32.npy", "--input", "y=\(folder)/y.npy"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("input 'x'"), "\(result.stderr)")
        #expect(result.stderr.contains("expected shape f32[2,3]") && result.stderr.contains("given f32[3,2]"), "\(result.stderr)")
    }

    @Test func malformedNPY() throws {
        _ = try writeInputs()
        var bytes = try NPY.encode(Tensor(shape: [2, 3], [Float](repeating: 1, count: 6)))
        bytes.removeLast(5)
        try Data(bytes).write(to: URL(fileURLWithPath: folder + "/short.npy"))
        let result = try KilnTool.run(["run", model, "--input", "x=\(folder)/short.npy", "--input", "y=\(folder)/y.npy"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("input 'x'") && result.stderr.contains("short.npy") && result.stderr.contains("truncated"),
                "\(result.stderr)")
    }

    @Test func badInputArgument() throws {
        let result = try KilnTool.run(["run", model, "--input", "x"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("NAME=FILE.npy"))
    }

    @Test func randomInputsAreSeededAndSymbolicDimsAreOne() throws {
        let path = folder + "/sym.onnx"
        try ONNXBuilder.write(to: path, inputs: [ONNXBuilder.value("x", .float32, ["batch", 3])],
                            outputs: [ONNXBuilder.value("y", .float32, ["batch", 3])],
                            nodes: [ONNXBuilder.node("Relu", ["x"], ["y"])])
        let first = try KilnTool.run(["run", path, "--random", "--seed", "7", "--output-dir", folder + "/r1"])
        let second = try KilnTool.run(["run", path, "--random", "--seed", "7", "--output-dir", folder + "/r2"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(second.status == 0, "\(second.stderr)")
        let a = try NPY.read(path: folder + "/r1/y.npy"), b = try NPY.read(path: folder + "/r2/y.npy")
        #expect(a.shape == [1, 3])
        #expect(a.elements(as: Float.self) == b.elements(as: Float.self))
        #expect(a.elements(as: Float.self).allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(first.stdout.contains("random input x: f32[1,3]"))
    }

    @Test func inspectShowsHistogramAndParameters() throws {
        let path = folder + "/hist.onnx"
        try ONNXBuilder.write(
            to: path,
            inputs: [ONNXBuilder.value("x", .float32, [2, 3])],
            outputs: [ONNXBuilder.value("d", .float32, [2, 3])],
            nodes: [ONNXBuilder.node("Relu", ["x"], ["a"]), ONNXBuilder.node("Add", ["a", "w"], ["b"]),
                    ONNXBuilder.node("Relu", ["b"], ["c"]), ONNXBuilder.node("Relu", ["c"], ["d"], name: "last")],
            initializers: [ONNXBuilder.floatTensor("w", [2, 3], [1, 2, 3, 4, 5, 6])]
        )
        let result = try KilnTool.run(["inspect", path])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let relu = try #require(lines.firstIndex(of: "3  Relu"))
        let add = try #require(lines.firstIndex(of: "1  Add"))
        #expect(relu < add)
        #expect(result.stdout.contains("parameters: 6 in 1 initializer, 24 bytes"))
        #expect(result.stdout.contains("x: f32[2,3]"))
        #expect(result.stdout.contains("producer: kiln-tests"))
        #expect(result.stdout.contains("verify: ok"))

        let ir = try KilnTool.run(["inspect", "--ir", path])
        #expect(ir.status == 0)
        #expect(ir.stdout.contains("%d = Relu(%c)  # last"))
        #expect(ir.stdout.contains("init %w: f32[2,3]"))
    }

    @Test func sequenceOutputsArePrintedButNotWritten() throws {
        let path = folder + "/seq.onnx"
        try ONNXBuilder.write(to: path, inputs: [ONNXBuilder.value("x", .float32, [2])],
                            outputs: [ONNXBuilder.sequence("s", .float32), ONNXBuilder.value("r", .float32, [2])],
                            nodes: [ONNXBuilder.node("SequenceConstruct", ["x", "x"], ["s"]), ONNXBuilder.node("Relu", ["x"], ["r"])])
        let result = try KilnTool.run(["run", path, "--random", "--output-dir", folder + "/seq"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("s: sequence of 2"), "\(result.stdout)")
        #expect(result.stdout.contains("not written"))
        #expect(!FileManager.default.fileExists(atPath: folder + "/seq/s.npy"))
        #expect(FileManager.default.fileExists(atPath: folder + "/seq/r.npy"))
    }

    @Test func inspectReportsInvalidIR() throws {
        let path = folder + "/order.onnx"
        try ONNXBuilder.write(to: path, inputs: [ONNXBuilder.value("x", .float32, [2])],
                            outputs: [ONNXBuilder.value("z", .float32, [2])],
                            nodes: [ONNXBuilder.node("Relu", ["y"], ["z"]), ONNXBuilder.node("Relu", ["x"], ["y"])])
        let result = try KilnTool.run(["inspect", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("2  Relu"))
        #expect(result.stdout.contains("verify: FAILED"))
        #expect(result.stderr.contains("reads 'y' before it is produced"), "\(result.stderr)")
    }

    @Test func inspectNonexistentModel() throws {
        let result = try KilnTool.run(["inspect", folder + "/nothing.onnx"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("nothing.onnx"))
    }

    @Test func precisionFlagReachesKilnGPUAndIsChecked() throws {
        // --precision is kiln.gpu's precision option: a bad value is refused by name, and giving it twice
        // (flag and --backend-option) is an error.
        let bad = try KilnTool.run(["compile", model, "-o", folder + "/bad.kiln", "--target", "opencl", "--precision", "fp8"])
        #expect(bad.status != 0 && bad.stderr.contains("precision='fp8'"), "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/bad.kiln"))
        let twice = try KilnTool.run(["compile", model, "-o", folder + "/twice.kiln", "--precision", "fp16", "--backend-option", "precision=fp16"])
        #expect(twice.status != 0 && twice.stderr.contains("--precision and --backend-option precision"), "\(twice.stderr)")
        // On an OpenCL device (PoCL here), the fp16 payload records its precision and the artifact runs.
        guard !GPUBackend().devices().isEmpty else { return }
        let half = try KilnTool.run(["compile", model, "-o", folder + "/half.kiln", "--target", "opencl", "--precision", "fp16"])
        #expect(half.status == 0, "\(half.stderr)")
        let bytes = try FileSystem.read(folder + "/half.kiln")
        #expect(String(decoding: bytes, as: UTF8.self).contains("precision=fp16"))
        let run = try KilnTool.run(["run", folder + "/half.kiln"] + writeInputs())
        #expect(run.status == 0, "\(run.stderr)")
    }
}
