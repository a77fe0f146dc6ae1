import Foundation
import Kiln
import KilnReference
import Testing
import KilnTestSupport
@testable import KilnPasses

/// Calibration statistics (each method on data whose answer is known by hand), per-channel weight
/// quantization, and the QDQ rewrite.
@Suite struct CalibrationStatisticsTests {
    @Test func minmaxIsTheRangeSeenOverAllBatches() {
        var stats = TensorStatistics([1, 2, -0.5])
        stats.add([-8, 4, .nan, .infinity])
        #expect(stats.count == 5)
        #expect(stats.minimum == -8 && stats.maximum == 4)
        let range = stats.range(method: .minmax)
        #expect(range.lower == -8 && range.upper == 4)
        // The first batch's max |x| (2) spanned all bins; 8 needed two doublings.
        #expect(stats.binWidth == 8.0 / Double(TensorStatistics.binCount))
        #expect(stats.histogram.reduce(0, +) == 5)
        #expect(stats.histogram[TensorStatistics.binCount - 1] == 1)  // |-8|
        #expect(stats.histogram[TensorStatistics.binCount / 2] == 1)  // |4|
        let none = TensorStatistics().range(method: .minmax)
        #expect(none.lower == 0 && none.upper == 0)
    }

    @Test func uint8AndInt8ParametersFollowTheRange() {
        // [-2, 3]: scale 5/255, zero point 2/(5/255) = 102.
        let u = QuantizationParameters(lower: -2, upper: 3, type: .uint8)
        #expect(abs(u.scale - 5.0 / 255) < 1e-7 && u.zeroPoint == 102)
        // A positive range is widened to include 0: [0, 5.1] → scale 0.02, zero point 0.
        let positive = QuantizationParameters(lower: 1, upper: 5.1, type: .uint8)
        #expect(abs(positive.scale - 0.02) < 1e-7 && positive.zeroPoint == 0)
        let s = QuantizationParameters(lower: -2, upper: 3, type: .int8)
        #expect(abs(s.scale - 3.0 / 127) < 1e-7 && s.zeroPoint == 0)
        #expect(QuantizationParameters(lower: 0, upper: 0, type: .uint8).scale == 1)
    }

    @Test func percentileClipsTheTailOfAKnownDistribution() {
        // 1…10000 uniformly: 99% of |x| is at most 9900.
        let stats = TensorStatistics((1...10000).map(Float.init))
        let t = stats.percentileThreshold(99)
        #expect(abs(Double(t) - 9900) <= stats.binWidth, "threshold \(t)")
        #expect(stats.percentileThreshold(100) == 10000)
        // The range clips each tail at half the rest: the top 0.5% (values above 9950); nothing is below 0.
        let (lo, hi) = stats.range(method: .percentile, percentile: 99)
        #expect(lo == 1 && abs(Double(hi) - 9950) <= stats.binWidth, "range \(lo) \(hi)")
        // ±1…±10000: 0.5% of all 20000 values (100) beyond each edge, ±9900.
        let symmetric = TensorStatistics((1...10000).flatMap { [Float($0), -Float($0)] })
        let (slo, shi) = symmetric.range(method: .percentile, percentile: 99)
        #expect(abs(Double(shi) - 9900) <= symmetric.binWidth && abs(Double(slo) + 9900) <= symmetric.binWidth, "range \(slo) \(shi)")
        // A heavy negative tail is clipped without touching the positive side: −1000 and 9999 values in [0, 1).
        let skewed = TensorStatistics([-1000] + (0..<9999).map { Float($0) / 9999 })
        let (klo, khi) = skewed.range(method: .percentile, percentile: 99.9)
        #expect(klo > -1 && klo <= 0, "lower \(klo)")
        #expect(abs(Double(khi) - 1) <= 0.01, "upper \(khi)")
    }

    @Test func entropyPicksAThresholdBelowTheMaxOfAHeavyTailedHistogram() {
        // |x| exponential (a Laplace distribution of scale 1, by its quantiles), plus a few outliers at ±50.
        let n = 20000
        var values = (0..<n).map { i -> Float in
            let u = (Double(i) + 0.5) / Double(n)
            return Float(-log(1 - u)) * (i % 2 == 0 ? 1 : -1)
        }
        values += [50, -50, 49, 48]
        let stats = TensorStatistics(values)
        let t = stats.entropyThreshold()
        // Far below the max, but above the 90th percentile of the bulk (ln 10 ≈ 2.3).
        #expect(t < 25, "threshold \(t)")
        #expect(t > 2.3, "threshold \(t)")
        let (lo, hi) = stats.range(method: .entropy)
        #expect(lo == -t && hi == t)
        // Without a tail there is nothing to clip: the threshold covers (almost) everything.
        let flat = TensorStatistics((0..<4096).map { Float($0) / 4096 })
        #expect(flat.entropyThreshold() >= 0.9 * flat.absoluteMaximum, "threshold \(flat.entropyThreshold())")
    }

    @Test func perChannelWeightScalesAreExact() {
        // Two output channels: max |w| 4 and 0.5.
        let w = Tensor(shape: [2, 1, 1, 2], [Float(1), -4, 0.5, 0.25])
        let (q, scales) = quantizeWeight(w, axis: 0)
        #expect(scales == [Float(4) / 127, Float(0.5) / 127])
        // 1/(4/127) = 31.75 → 32; 0.25/(0.5/127) = 63.5 → 64 (half to even).
        #expect(q.dtype == .int8 && q.shape == [2, 1, 1, 2])
        #expect(q.elements(as: Int8.self) == [32, -127, 127, 64])
        // Per column of a [K, N] MatMul weight (axis 1); an all-zero channel gets scale 1.
        let m = Tensor(shape: [2, 2], [Float(2), 0, -1, 0])
        let (mq, mscales) = quantizeWeight(m, axis: 1)
        #expect(mscales == [Float(2) / 127, 1])
        #expect(mq.elements(as: Int8.self) == [127, 0, -64, 0])  // -63.5 → -64
        let (_, single) = quantizeWeight(m, axis: nil)
        #expect(single == [Float(2) / 127])
    }
}

@Suite struct QDQQuantizationTests {
    /// Statistics of every calibration target of `graph` over `images`, measured on kiln.reference.
    func statistics(_ graph: Graph, _ config: QuantizationConfig, _ images: [Tensor]) throws -> [String: TensorStatistics] {
        let targets = QDQQuantization.calibrationTargets(in: graph, config: config)
        var probe = graph
        probe.outputs += targets.filter { $0 != "x" && $0 != "logits" }.map { Value(name: $0) }
        let executable = try ReferenceBackend().prepare(probe)
        var stats: [String: TensorStatistics] = [:]
        for image in images {
            let results = try executable.run(["x": .tensor(image)])
            stats["x", default: TensorStatistics()].add(image.elements(as: Float.self))
            for (value, result) in zip(probe.outputs, results) where targets.contains(value.name) {
                stats[value.name, default: TensorStatistics()].add(result.tensor!.elements(as: Float.self))
            }
        }
        return stats
    }

    @Test func theQuantizedGraphVerifiesRunsAndStaysCloseToFloat() throws {
        let model = try QuantizationModels.smallCNN()
        let config = QuantizationConfig()
        #expect(QDQQuantization.calibrationTargets(in: model.graph, config: config) == ["x", "c1", "r1", "c2", "flat", "g", "m"])
        let stats = try statistics(model.graph, config, QuantizationModels.images(128, seed: 1))
        var graph = model.graph
        let report = QDQQuantization(config: config, statistics: stats).quantize(&graph)
        try Verifier.verify(graph)
        #expect(report.quantized == ["Conv": 2, "Gemm": 1, "MatMul": 1])
        #expect(report.activations == 7 && report.weights == 4 && report.biases == 3)
        #expect(count("QuantizeLinear", in: graph) == 7)
        #expect(count("DequantizeLinear", in: graph) == 7 + 4 + 3)
        // The convolutions read dequantized int8 weights and int32 biases.
        let conv = graph.nodes.first { $0.op.name == "Conv" }!
        let weightDQ = graph.nodes.first { $0.outputs == [conv.inputs[1]] }!
        #expect(weightDQ.op.name == "DequantizeLinear" && graph.initializers[weightDQ.inputs[0]]?.dtype == .int8)
        #expect(graph.initializers[weightDQ.inputs[1]]?.shape == [4])
        let biasDQ = graph.nodes.first { $0.outputs == [conv.inputs[2]] }!
        #expect(graph.initializers[biasDQ.inputs[0]]?.dtype == .int32)
        // Bias scale = x_scale · w_scale[c].
        let xScale = QuantizationParameters(lower: stats["x"]!.minimum, upper: stats["x"]!.maximum, type: .uint8).scale
        let (_, wScales) = quantizeWeight(model.graph.initializers["w1"]!, axis: 0)
        #expect(graph.initializers[biasDQ.inputs[1]]!.elements(as: Float.self) == wScales.map { xScale * $0 })
        // The float weights are no longer read; output names are kept.
        #expect(!graph.nodes.contains { $0.inputs.contains("w1") })
        #expect(graph.outputs.map(\.name) == ["logits"])

        // Held-out images: the same top-1 class as float on every one; within 5% of the largest |logit| on all
        // but one at most, and within 20% on every one (an image whose Gemm output exceeds the calibrated
        // range by 30% is clipped there, as post-training quantization does).
        var close = 0
        for image in QuantizationModels.images(6, seed: 99) {
            let expected = try run(model.graph, ["x": image])["logits"]!.asDoubles()
            let actual = try run(graph, ["x": image])["logits"]!.asDoubles()
            let scale = expected.map(abs).max()!
            let worst = zip(expected, actual).map { abs($0 - $1) }.max()!
            #expect(expected.firstIndex(of: expected.max()!) == actual.firstIndex(of: actual.max()!), "logits \(actual) vs \(expected)")
            #expect(worst <= 0.2 * scale, "logits \(actual) vs \(expected)")
            #expect(worst > 0, "the quantized graph computes exactly the float result: nothing was quantized")
            if worst <= 0.05 * scale { close += 1 }
        }
        #expect(close >= 5)
    }

    @Test func keepFloatLeavesThoseOpsInFloat() throws {
        let model = try QuantizationModels.smallCNN()
        let config = QuantizationConfig(keepFloat: ["Conv"], activationType: .int8)
        #expect(!QDQQuantization.calibrationTargets(in: model.graph, config: config).contains("c1"))
        let stats = try statistics(model.graph, config, QuantizationModels.images(4, seed: 2))
        var graph = model.graph
        let report = QDQQuantization(config: config, statistics: stats).quantize(&graph)
        try Verifier.verify(graph)
        #expect(report.quantized == ["Gemm": 1, "MatMul": 1] && report.keptFloat == ["Conv": 2])
        #expect(graph.nodes.filter { $0.op.name == "Conv" }.allSatisfy { $0.inputs[1] == "w1" || $0.inputs[1] == "w2" })
        // int8 activations: zero points are int8 zeros.
        let q = graph.nodes.first { $0.op.name == "QuantizeLinear" }!
        #expect(graph.initializers[q.inputs[2]]?.dtype == .int8 && graph.initializers[q.inputs[2]]?.asInts() == [0])
        #expect(report.summary.contains("kept float: Conv 2"))
    }

    @Test func withoutOutputQuantizationOnlyInputsGetPairs() throws {
        let model = try QuantizationModels.smallCNN()
        let config = QuantizationConfig(quantizeOutputs: false)
        #expect(QDQQuantization.calibrationTargets(in: model.graph, config: config) == ["x", "r1", "flat"])
        var graph = model.graph
        let report = QDQQuantization(config: config, statistics: try statistics(model.graph, config, QuantizationModels.images(8, seed: 4))).quantize(&graph)
        try Verifier.verify(graph)
        #expect(report.quantized == ["Conv": 2, "Gemm": 1, "MatMul": 1] && report.activations == 3)
        // The convolution's output goes straight to Relu.
        #expect(graph.nodes.first { $0.op.name == "Relu" }?.inputs == ["c1"])
    }

    @Test func nodesWithoutStatisticsStayFloat() throws {
        let model = try QuantizationModels.smallCNN()
        var graph = model.graph
        let report = QDQQuantization(config: QuantizationConfig(), statistics: [:]).quantize(&graph)
        #expect(report.quantized.isEmpty && report.keptFloat == ["Conv": 2, "Gemm": 1, "MatMul": 1])
        #expect(count("QuantizeLinear", in: graph) == 0 && graph.nodes.count == model.graph.nodes.count)
    }
}
