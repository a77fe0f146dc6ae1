import Foundation
import Kiln
import KilnTooling
import Testing
@testable import KilnTestSupport

/// `kiln compile --quantize int8 --calibration DIR`, run as a subprocess on the small CNN.
@Suite final class QuantizeCLITests {
    let folder: String
    let model: String

    init() throws {
        folder = try temporaryDirectory("kiln-quantize-cli")
        model = folder + "/cnn.onnx"
        try QuantizationModels.writeSmallCNN(to: model)
    }

    deinit { removeTemporaryDirectory(folder) }

    /// Writes `count` images as a calibration folder of one folder per sample (or one file per sample).
    func calibration(_ name: String, count: Int, flat: Bool = false) throws -> String {
        let dir = folder + "/" + name
        for (i, image) in QuantizationModels.images(count, seed: 21).enumerated() {
            let path = flat ? "\(dir)/\(i).npy" : "\(dir)/\(i)/x.npy"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try NPY.write(image, to: path)
        }
        return dir
    }

    @Test func quantizesAndTheArtifactRunsCloseToFloat() throws {
        let dir = try calibration("calibration", count: 6)
        let result = try KilnTool.run(["compile", model, "-o", folder + "/q.kiln", "--quantize", "int8", "--calibration", dir,
                                       "--calibration-method", "entropy", "--backend", "kiln.reference"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("quantized 4 nodes (Conv 2, Gemm 1, MatMul 1), 7 activations, 4 int8 weights, 3 int32 biases"), "\(result.stdout)")
        let image = QuantizationModels.images(1, seed: 500)[0]
        try NPY.write(image, to: folder + "/x.npy")
        let quantized = try KilnTool.run(["run", folder + "/q.kiln", "--input", "x=\(folder)/x.npy", "--output-dir", folder + "/q"])
        let float = try KilnTool.run(["run", model, "--backend", "kiln.reference", "--input", "x=\(folder)/x.npy", "--output-dir", folder + "/f"])
        #expect(quantized.status == 0 && float.status == 0, "\(quantized.stderr)\(float.stderr)")
        let q = try NPY.read(path: folder + "/q/logits.npy").asDoubles(), f = try NPY.read(path: folder + "/f/logits.npy").asDoubles()
        #expect(zip(q, f).map { abs($0 - $1) }.max()! <= 0.03 * f.map(abs).max()!, "\(q) vs \(f)")
    }

    @Test func oneFilePerSampleAndKeepFloat() throws {
        let dir = try calibration("flat", count: 3, flat: true)
        let result = try KilnTool.run(["compile", model, "-o", folder + "/q.kiln", "--quantize", "int8", "--calibration", dir,
                                       "--keep-float", "Conv", "--activation-type", "int8"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("quantized 2 nodes (Gemm 1, MatMul 1)") && result.stdout.contains("kept float: Conv 2"), "\(result.stdout)")
    }

    @Test func noQuantizeOutputsLeavesOutputsFloat() throws {
        let dir = try calibration("calibration", count: 3)
        let result = try KilnTool.run(["compile", model, "-o", folder + "/q.kiln", "--quantize", "int8", "--calibration", dir, "--no-quantize-outputs"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("quantized 4 nodes (Conv 2, Gemm 1, MatMul 1), 3 activations"), "\(result.stdout)")
    }

    @Test func badFlagsAndBadFoldersFailWithoutWritingTheArtifact() throws {
        let out = folder + "/never.kiln"
        let dir = try calibration("calibration", count: 2)
        try NPY.write(Tensor(shape: [1, 3, 4, 4], [Float](repeating: 0, count: 48)), to: dir + "/1/x.npy")
        let cases: [([String], String)] = [
            (["--quantize", "int8"], "--calibration"),
            (["--calibration", dir], "--quantize"),
            (["--quantize", "int4", "--calibration", dir], "int4"),
            (["--quantize", "int8", "--calibration", dir, "--calibration-method", "median"], "median"),
            (["--quantize", "int8", "--calibration", dir, "--keep-float", "Softmax"], "Softmax"),
            (["--quantize", "int8", "--calibration", dir], dir + "/1/x.npy"),
            (["--quantize", "int8", "--calibration", folder + "/none"], folder + "/none"),
        ]
        for (flags, named) in cases {
            let result = try KilnTool.run(["compile", model, "-o", out] + flags)
            #expect(result.status == 1 && result.stderr.contains(named), "\(flags): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(flags) left \(out)")
        }
    }
}
