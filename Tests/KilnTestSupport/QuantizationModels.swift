#if DEBUG
import Foundation
import Kiln
@testable import KilnFrontends

/// The small CNN the quantization tests calibrate and quantize, and images to feed it.
public enum QuantizationModels {
    /// `x` f32[1,3,8,8] → Conv 3→4 (3×3, pad 1, bias) → Relu → Conv 4→8 (3×3, stride 2, pad 1, bias) → Relu →
    /// GlobalAveragePool → Flatten → `logits` f32[1,5] = Gemm(transB, bias) + MatMul: seeded weights.
    static func smallCNNProto(seed: UInt64 = 11) -> Onnx_ModelProto {
        var random = SplitMix64(seed: seed)
        let b = ONNXBuilder.self
        let inits = [
            b.floatTensor("w1", [4, 3, 3, 3], random.floats(108, -0.5, 0.5)), b.floatTensor("b1", [4], random.floats(4, -0.1, 0.1)),
            b.floatTensor("w2", [8, 4, 3, 3], random.floats(288, -0.3, 0.3)), b.floatTensor("b2", [8], random.floats(8, -0.1, 0.1)),
            b.floatTensor("w3", [5, 8], random.floats(40, -1, 1)), b.floatTensor("b3", [5], random.floats(5, -0.2, 0.2)),
            b.floatTensor("w4", [8, 5], random.floats(40, -1, 1)),
        ]
        let conv = [b.attribute("kernel_shape", ints: [3, 3]), b.attribute("pads", ints: [1, 1, 1, 1])]
        let nodes = [
            b.node("Conv", ["x", "w1", "b1"], ["c1"], name: "conv1", attributes: conv),
            b.node("Relu", ["c1"], ["r1"], name: "relu1"),
            b.node("Conv", ["r1", "w2", "b2"], ["c2"], name: "conv2", attributes: conv + [b.attribute("strides", ints: [2, 2])]),
            b.node("Relu", ["c2"], ["r2"], name: "relu2"),
            b.node("GlobalAveragePool", ["r2"], ["pooled"], name: "pool"),
            b.node("Flatten", ["pooled"], ["flat"], name: "flatten"),
            b.node("Gemm", ["flat", "w3", "b3"], ["g"], name: "gemm", attributes: [b.attribute("transB", int: 1)]),
            b.node("MatMul", ["flat", "w4"], ["m"], name: "matmul"),
            b.node("Add", ["g", "m"], ["logits"], name: "add"),
        ]
        return b.model(nodes: nodes, inputs: [b.value("x", .float32, [1, 3, 8, 8])], outputs: [b.value("logits", .float32, [1, 5])],
                       initializers: inits, opset: 17)
    }

    /// The small CNN in Kiln IR.
    public static func smallCNN(seed: UInt64 = 11) throws -> Model { try ONNXBuilder.importInMemory(smallCNNProto(seed: seed)) }

    /// Writes the small CNN as ONNX to `path`.
    public static func writeSmallCNN(to path: String, seed: UInt64 = 11) throws {
        try ONNXBuilder.write(smallCNNProto(seed: seed), toFile: path)
    }

    /// `count` seeded images f32[1,3,8,8]: smooth gradients plus noise, in [0, 1].
    public static func images(_ count: Int, seed: UInt64) -> [Tensor] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let (fx, fy, phase) = (random.float(0.2, 1.5), random.float(0.2, 1.5), random.float(0, 6))
            var values: [Float] = []
            for c in 0..<3 {
                for y in 0..<8 {
                    for x in 0..<8 {
                        let wave = 0.5 + 0.4 * sin(Float(x) * fx + Float(y) * fy + phase + Float(c))
                        values.append(min(1, max(0, wave + random.float(-0.05, 0.05))))
                    }
                }
            }
            return Tensor(shape: [1, 3, 8, 8], values)
        }
    }
}
#endif
