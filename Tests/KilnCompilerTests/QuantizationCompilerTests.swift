import Foundation
import Kiln
import KilnTooling
import Testing
@testable import KilnTestSupport

/// Post-training quantization through the compiler: calibration on samples, the artifact, and typed errors
/// for calibration folders that do not fit the model.
@Suite final class QuantizationCompilerTests {
    let folder: String

    init() throws { folder = try temporaryDirectory("kiln-quantize") }
    deinit { removeTemporaryDirectory(folder) }

    func samples(_ images: [Tensor]) -> [CalibrationSample] {
        images.enumerated().map { CalibrationSample(name: "sample \($0.offset)", inputs: ["x": $0.element]) }
    }

    @Test func aQuantizedArtifactRunsCloseToFloat() throws {
        let model = try QuantizationModels.smallCNN()
        var options = Compiler.Options()
        options.quantization = QuantizationOptions(config: QuantizationConfig(method: .percentile), samples: samples(QuantizationModels.images(128, seed: 3)))
        let output = try Kiln.compiler(options: options).compile(model: model)
        let report = try #require(output.summary.quantization)
        #expect(report.quantized == ["Conv": 2, "Gemm": 1, "MatMul": 1])
        let quantized = try Kiln.load(artifactBytes: output.bytes)
        #expect(quantized.model.graph.nodes.contains { $0.op.name == "QuantizeLinear" })
        let float = try Kiln.prepare(model, options: Kiln.LoadOptions(backend: "kiln.reference"))
        for image in QuantizationModels.images(4, seed: 77) {
            let expected = try run(float, ["x": image])["logits"]!.asDoubles()
            let actual = try run(quantized, ["x": image])["logits"]!.asDoubles()
            let worst = zip(expected, actual).map { abs($0 - $1) }.max()!
            #expect(worst <= 0.05 * expected.map(abs).max()!, "logits \(actual) vs \(expected)")
        }
    }

    @Test func entropyAndInt8ActivationsCompileToo() throws {
        let model = try QuantizationModels.smallCNN()
        var model2 = model
        let options = QuantizationOptions(config: QuantizationConfig(method: .entropy, activationType: .int8),
                                          samples: samples(QuantizationModels.images(4, seed: 5)))
        let report = try Compiler.quantize(&model2, options: options, registry: Kiln.backends)
        #expect(report.activations == 7)
        let zeroPoints = model2.graph.nodes.filter { $0.op.name == "QuantizeLinear" }.map { model2.graph.initializers[$0.inputs[2]]! }
        #expect(zeroPoints.allSatisfy { $0.dtype == .int8 && $0.asInts() == [0] })
    }

    /// The error `body` throws (it must throw a KilnError).
    func error(_ body: () throws -> Void) -> KilnError? {
        do {
            try body()
            return nil
        } catch let error as KilnError {
            return error
        } catch {
            return nil
        }
    }

    /// Quantizes the add/relu model (inputs x and y, f32[2,3]) on the samples in `dir`.
    func quantizeAddRelu(_ dir: String) throws {
        var model = try ONNXBuilder.importInMemory(ONNXBuilder.addRelu())
        let options = QuantizationOptions(config: QuantizationConfig(ops: ["Add"]), samples: try CalibrationDirectory.load(path: dir))
        _ = try Compiler.quantize(&model, options: options, registry: Kiln.backends)
    }

    func write(_ tensor: Tensor, _ path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try NPY.write(tensor, to: path)
    }

    @Test func goodSamplesQuantizeAnAdd() throws {
        let dir = folder + "/good"
        for i in 0..<2 {
            try write(Tensor(shape: [2, 3], [Float](repeating: Float(i), count: 6)), "\(dir)/000\(i)/x.npy")
            try write(Tensor(shape: [2, 3], [Float](repeating: 1, count: 6)), "\(dir)/000\(i)/y.npy")
        }
        try quantizeAddRelu(dir)
    }

    @Test func badCalibrationFoldersAreTypedErrorsNamingTheFile() throws {
        let x = Tensor(shape: [2, 3], [Float](repeating: 1, count: 6))
        // Empty folder.
        try FileManager.default.createDirectory(atPath: folder + "/empty", withIntermediateDirectories: true)
        let empty = error { try self.quantizeAddRelu(self.folder + "/empty") }
        #expect(empty?.code == .invalidArgument && empty!.message.contains(folder + "/empty") && empty!.message.contains("empty"), "\(String(describing: empty))")
        // Missing folder.
        let missing = error { try self.quantizeAddRelu(self.folder + "/nowhere") }
        #expect(missing?.code == .invalidArgument && missing!.message.contains("nowhere"))
        // A missing input: the sample folder is named.
        try write(x, folder + "/missing/0001/x.npy")
        let noY = error { try self.quantizeAddRelu(self.folder + "/missing") }
        #expect(noY?.code == .invalidArgument && noY!.message.contains(folder + "/missing/0001") && noY!.message.contains("'y'"), "\(String(describing: noY))")
        // An input the model does not have.
        try write(x, folder + "/unknown/0001/x.npy")
        try write(x, folder + "/unknown/0001/y.npy")
        try write(x, folder + "/unknown/0001/z.npy")
        let z = error { try self.quantizeAddRelu(self.folder + "/unknown") }
        #expect(z?.code == .invalidArgument && z!.message.contains(folder + "/unknown/0001/z.npy"), "\(String(describing: z))")
        // Wrong shape, in the second sample.
        try write(x, folder + "/shape/0001/x.npy")
        try write(x, folder + "/shape/0001/y.npy")
        try write(x, folder + "/shape/0002/x.npy")
        try write(Tensor(shape: [3, 2], [Float](repeating: 1, count: 6)), folder + "/shape/0002/y.npy")
        let shape = error { try self.quantizeAddRelu(self.folder + "/shape") }
        #expect(shape?.code == .invalidArgument && shape!.message.contains(folder + "/shape/0002/y.npy") && shape!.message.contains("[3, 2]"), "\(String(describing: shape))")
        // Wrong element type.
        try write(x, folder + "/dtype/0001/x.npy")
        try write(Tensor(shape: [2, 3], [Int64](repeating: 1, count: 6)), folder + "/dtype/0001/y.npy")
        let dtype = error { try self.quantizeAddRelu(self.folder + "/dtype") }
        #expect(dtype?.code == .invalidArgument && dtype!.message.contains(folder + "/dtype/0001/y.npy") && dtype!.message.contains("i64"), "\(String(describing: dtype))")
        // A file that is not .npy, and a .npy that is not valid.
        try write(x, folder + "/text/0001/x.npy")
        try Data("hello".utf8).write(to: URL(fileURLWithPath: folder + "/text/0001/notes.txt"))
        let text = error { try self.quantizeAddRelu(self.folder + "/text") }
        #expect(text?.code == .invalidArgument && text!.message.contains(folder + "/text/0001/notes.txt"), "\(String(describing: text))")
        try FileManager.default.createDirectory(atPath: folder + "/corrupt/0001", withIntermediateDirectories: true)
        try Data("not numpy".utf8).write(to: URL(fileURLWithPath: folder + "/corrupt/0001/x.npy"))
        let corrupt = error { try self.quantizeAddRelu(self.folder + "/corrupt") }
        #expect(corrupt?.code == .invalidArgument && corrupt!.message.contains(folder + "/corrupt/0001/x.npy"), "\(String(describing: corrupt))")
        // One file per sample fits one-input models only.
        try write(x, folder + "/flat/0001.npy")
        let flat = error { try self.quantizeAddRelu(self.folder + "/flat") }
        #expect(flat?.code == .invalidArgument && flat!.message.contains(folder + "/flat/0001.npy"), "\(String(describing: flat))")
    }
}
