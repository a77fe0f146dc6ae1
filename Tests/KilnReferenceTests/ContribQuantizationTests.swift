import Kiln
import Testing
@testable import KilnReference

/// ONNX Runtime's quantized contrib ops (com.microsoft QLinear*), which quantize_static writes in QOperator
/// form, on values worked out by hand.
@Suite struct ContribQuantizationTests {
    /// Runs one com.microsoft node whose inputs are all constants and returns its output.
    func run(_ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:]) throws -> Tensor {
        var initializers: [String: Tensor] = [:]
        let names = inputs.enumerated().map { i, t -> String in
            guard let t else { return "" }
            initializers["i\(i)"] = t
            return "i\(i)"
        }
        let graph = Graph(outputs: [Value(name: "y")], initializers: initializers,
                          nodes: [Node(op: OpID("com.microsoft", op), inputs: names, outputs: ["y"], attributes: attributes)])
        return try #require(try Interpreter(table: .reference).run(graph, inputs: [:], parent: nil).first?.tensor)
    }

    func u8(_ shape: [Int], _ values: [UInt8]) -> Tensor { Tensor(shape: shape, values) }
    func scalar(_ v: Float) -> Tensor { Tensor(scalar: v) }
    func zero(_ v: UInt8) -> Tensor { Tensor(scalar: v) }

    @Test func addAndMulDequantizeBroadcastAndRequantize() throws {
        // A = ([10, 20] − 10) · 0.5 = [0, 5]; B = 4 · 0.25 = 1; C = y / 0.1 + 5.
        let inputs: [Tensor?] = [u8([2], [10, 20]), scalar(0.5), zero(10), u8([1], [4]), scalar(0.25), zero(0), scalar(0.1), zero(5)]
        let sum = try run("QLinearAdd", inputs)
        #expect(sum.dtype == .uint8 && sum.shape == [2] && sum.elements(as: UInt8.self) == [15, 65])
        #expect(try run("QLinearMul", inputs).elements(as: UInt8.self) == [5, 55])
        // Saturation at the type's bounds.
        let big: [Tensor?] = [u8([1], [255]), scalar(1), zero(0), u8([1], [255]), scalar(1), zero(0), scalar(1), zero(0)]
        #expect(try run("QLinearAdd", big).elements(as: UInt8.self) == [255])
    }

    @Test func qgemmWithPerColumnScalesAndAnInt32Bias() throws {
        // A = ([12, 14] − 10) · 0.5 = [1, 2]; B = [[1, 0], [0, 2]] with column scales [1, 0.5] = identity;
        // C = [2, 4] at scales 0.5 · [1, 0.5] = [1, 1]: Y = [1, 2] + [1, 1].
        let inputs: [Tensor?] = [u8([1, 2], [12, 14]), scalar(0.5), zero(10), Tensor(shape: [2, 2], [Int8(1), 0, 0, 2]),
                                 Tensor(shape: [2], [Float(1), 0.5]), nil, Tensor(shape: [2], [Int32(2), 4])]
        let y = try run("QGemm", inputs)
        #expect(y.dtype == .float32 && y.shape == [1, 2] && y.elements(as: Float.self) == [2, 3])
        // Requantized with y_scale 0.5, zero point 100.
        let q = try run("QGemm", inputs + [scalar(0.5), zero(100)])
        #expect(q.dtype == .uint8 && q.elements(as: UInt8.self) == [104, 106])
    }

    @Test func globalAveragePoolKeepsSpatialOnes() throws {
        // Means 3 and 10, requantized with scale 0.5 and zero point 1.
        let x = u8([1, 2, 2, 2], [0, 2, 4, 6, 10, 10, 10, 10])
        let y = try run("QLinearGlobalAveragePool", [x, scalar(1), zero(0), scalar(0.5), zero(1)])
        #expect(y.shape == [1, 2, 1, 1] && y.elements(as: UInt8.self) == [7, 21])
        // Channels last: [1, 2, 2, C=2].
        let nhwc = u8([1, 2, 2, 2], [0, 10, 2, 10, 4, 10, 6, 10])
        let z = try run("QLinearGlobalAveragePool", [nhwc, scalar(1), zero(0), scalar(0.5), zero(1)], ["channels_last": .int(1)])
        #expect(z.shape == [1, 1, 1, 2] && z.elements(as: UInt8.self) == [7, 21])
    }

    @Test func concatRequantizesEachOperand() throws {
        // [2, 4] · 0.5 = [1, 2] and (13 − 10) · 1 = 3, into scale 1, zero point 0.
        let y = try run("QLinearConcat", [scalar(1), zero(0), u8([1, 2], [2, 4]), scalar(0.5), zero(0), u8([1, 1], [13]), scalar(1), zero(10)],
                        ["axis": .int(1)])
        #expect(y.shape == [1, 3] && y.elements(as: UInt8.self) == [1, 2, 3])
        #expect(throws: KilnError.self) { try self.run("QLinearConcat", [self.scalar(1), self.zero(0), self.u8([2], [1, 2]), self.scalar(1)], ["axis": .int(0)]) }
    }

    @Test func softmaxSigmoidAndLeakyRelu() throws {
        // softmax([0, 0]) = [0.5, 0.5] → 128 with scale 1/256.
        let s = try run("QLinearSoftmax", [u8([1, 2], [7, 7]), scalar(1), zero(0), scalar(1.0 / 256), zero(0)], ["opset": .int(13)])
        #expect(s.elements(as: UInt8.self) == [128, 128])
        // sigmoid(0) = 0.5 → 128.
        #expect(try run("QLinearSigmoid", [u8([1], [50]), scalar(0.1), zero(50), scalar(1.0 / 256), zero(0)]).elements(as: UInt8.self) == [128])
        // x = (40 − 50) · 0.1 = −1 → −0.5 with alpha 0.5 → −0.5 / 0.1 + 50 = 45.
        #expect(try run("QLinearLeakyRelu", [u8([1], [40]), scalar(0.1), zero(50), scalar(0.1), zero(50)], ["alpha": .float(0.5)]).elements(as: UInt8.self) == [45])
    }
}
