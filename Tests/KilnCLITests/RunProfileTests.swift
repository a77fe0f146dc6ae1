import Foundation
import Kiln
import KilnTooling
import Testing
@testable import KilnTestSupport

/// `kiln run --profile` and `kiln run --trace FILE`, run as a subprocess on a Conv → Relu model that
/// kiln.cpu fuses into one `Conv+Relu` step (it may add steps of its own, such as layout reorders).
@Suite final class RunProfileTests {
    let folder: String
    let model: String
    let input: Tensor
    let weights: [Float]
    let bias: [Float] = [0.25, -0.5, 0]

    init() throws {
        folder = try temporaryDirectory("kiln-cli-tests")
        model = folder + "/conv_relu.onnx"
        // W: f32[3,2,3,3], x: f32[1,2,5,5]; values chosen so that some outputs are negative before Relu.
        weights = (0..<54).map { Float(($0 * 7) % 11) / 10 - 0.5 }
        input = Tensor(shape: [1, 2, 5, 5], (0..<50).map { Float(($0 * 5) % 13) / 6 - 1 })
        try ONNXBuilder.write(
            to: model,
            inputs: [ONNXBuilder.value("x", .float32, [1, 2, 5, 5])],
            outputs: [ONNXBuilder.value("y", .float32, [1, 3, 3, 3])],
            nodes: [ONNXBuilder.node("Conv", ["x", "w", "b"], ["c"], name: "conv"),
                    ONNXBuilder.node("Relu", ["c"], ["y"], name: "relu")],
            initializers: [ONNXBuilder.floatTensor("w", [3, 2, 3, 3], weights),
                           ONNXBuilder.floatTensor("b", [3], bias)]
        )
        try NPY.write(input, to: folder + "/x.npy")
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    var inputArguments: [String] { ["--input", "x=\(folder)/x.npy"] }

    /// Relu(Conv(x, W, b)) with stride 1 and no padding, computed directly.
    func expected() -> [Float] {
        let x = input.elements(as: Float.self)
        var out: [Float] = []
        for o in 0..<3 {
            for i in 0..<3 {
                for j in 0..<3 {
                    var sum = Double(bias[o])
                    for c in 0..<2 {
                        for ki in 0..<3 {
                            for kj in 0..<3 {
                                sum += Double(weights[((o * 2 + c) * 3 + ki) * 3 + kj]) * Double(x[(c * 5 + i + ki) * 5 + j + kj])
                            }
                        }
                    }
                    out.append(Float(max(sum, 0)))
                }
            }
        }
        return out
    }

    /// The lines of the "by step:" table in `stdout`.
    func stepLines(_ stdout: String) -> [String] {
        let lines = stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let start = lines.firstIndex(of: "  by step:") else { return [] }
        return Array(lines[(start + 1)...].prefix(while: { $0.hasPrefix("    ") }))
    }

    @Test func profilePrintsTheFusedStepAfterTheOutputs() throws {
        let result = try KilnTool.run(["run", model, "--backend", "kiln.cpu", "--profile", "--output-dir", folder + "/out"] + inputArguments)
        #expect(result.status == 0, "\(result.stderr)")
        let y = try NPY.read(path: folder + "/out/y.npy")
        #expect(y.shape == [1, 3, 3, 3])
        let want = expected()
        #expect(want.contains(0) && want.contains { $0 > 0 }, "the model should exercise both sides of Relu")
        for (got, ref) in zip(y.elements(as: Float.self), want) { #expect(abs(got - ref) <= 1e-4, "\(got) vs \(ref)") }

        let out = result.stdout
        #expect(out.contains("profile (1 run, "), "\(out)")
        let output = try #require(out.range(of: "y: f32[1,3,3,3]"), "\(out)")
        let byKind = try #require(out.range(of: "  by operation kind:\n"), "\(out)")
        #expect(output.upperBound <= byKind.lowerBound, "the profile comes after the outputs:\n\(out)")
        let kindLines = out[byKind.upperBound...].split(separator: "\n").prefix(while: { $0.hasPrefix("    ") })
        #expect(kindLines.contains { $0.hasSuffix("%  1×  Conv+Relu") }, "\(out)")
        // "<ms> ms  <share>%  <calls>×  <kind>": the shares add up to 100%.
        let shares = kindLines.compactMap { line in line.split(separator: " ").first { $0.hasSuffix("%") }.flatMap { Double($0.dropLast()) } }
        #expect(shares.count == kindLines.count && abs(shares.reduce(0, +) - 100) < 0.1, "\(out)")
        // Conv and Relu run as one fused step named after both nodes; Relu is no step of its own.
        let steps = stepLines(out)
        #expect(steps.contains { $0.hasSuffix(" ms  Conv+Relu  [conv+relu]") }, "\(out)")
        #expect(!steps.contains { $0.contains(" ms  Relu  ") || $0.contains(" ms  Conv  ") }, "\(out)")
        #expect(!out.contains("trace written"))
    }

    @Test func traceWritesOneChromeTraceEventPerStep() throws {
        let trace = folder + "/out.json"
        let result = try KilnTool.run(["run", model, "--backend", "kiln.cpu", "--trace", trace] + inputArguments)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("trace written to \(trace)"), "\(result.stdout)")
        let steps = stepLines(result.stdout)
        #expect(!steps.isEmpty, "--trace implies --profile:\n\(result.stdout)")

        let data = try Data(contentsOf: URL(fileURLWithPath: trace))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let events = try #require(root["traceEvents"] as? [[String: Any]])
        for event in events {
            #expect(event["name"] is String && event["ph"] as? String == "X", "\(event)")
            let ts = try #require(event["ts"] as? Double, "\(event)")
            let dur = try #require(event["dur"] as? Double, "\(event)")
            #expect(ts >= 0 && dur >= 0, "\(event)")
        }
        let stepEvents = events.filter { $0["cat"] as? String == "step" }
        #expect(stepEvents.count == steps.count, "one event per step of the one run: \(events)")
        #expect(events.filter { $0["cat"] as? String == "run" }.count == 1, "\(events)")
        let conv = try #require(stepEvents.first { $0["name"] as? String == "Conv+Relu" }, "\(events)")
        #expect((conv["args"] as? [String: Any])?["nodes"] as? String == "conv+relu")
        // The step lies within the run.
        let run = try #require(events.first { $0["cat"] as? String == "run" })
        let runStart = run["ts"] as! Double, runEnd = runStart + (run["dur"] as! Double)
        let stepStart = conv["ts"] as! Double, stepEnd = stepStart + (conv["dur"] as! Double)
        #expect(runStart <= stepStart + 0.001 && stepEnd <= runEnd + 0.001, "\(events)")
        // No temporary file is left beside the trace.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == ["conv_relu.onnx", "out.json", "x.npy"])
    }

    @Test func profileOnAnotherBackendIsAnError() throws {
        let trace = folder + "/default.json"
        let reference = try KilnTool.run(["run", model, "--profile", "--trace", trace, "--backend", "kiln.reference"] + inputArguments)
        #expect(reference.status == 1)
        #expect(reference.stderr.contains("--profile") && reference.stderr.contains("kiln.reference"), "\(reference.stderr)")
        #expect(!reference.stdout.contains("y: f32"), "nothing runs:\n\(reference.stdout)")

        #expect(!FileManager.default.fileExists(atPath: trace))
        // With no backend flag the model runs on kiln.cpu, so the trace is written.
        let byDefault = try KilnTool.run(["run", model, "--trace", trace] + inputArguments)
        #expect(byDefault.status == 0, "\(byDefault.stderr)")
        #expect(FileManager.default.fileExists(atPath: trace))

        let partitioned = try KilnTool.run(["run", model, "--backends", "kiln.reference", "--profile"] + inputArguments)
        #expect(partitioned.status == 1)
        #expect(partitioned.stderr.contains("runs on backend kiln.reference"), "\(partitioned.stderr)")
    }

    @Test func profileOfAnArtifactCompiledForKilnCPU() throws {
        let artifact = folder + "/m.kiln"
        let compiled = try KilnTool.run(["compile", model, "-o", artifact, "--backend", "kiln.cpu"])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        let result = try KilnTool.run(["run", artifact, "--profile"] + inputArguments)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(stepLines(result.stdout).contains { $0.hasSuffix("Conv+Relu  [conv+relu]") }, "\(result.stdout)")
        let mismatch = try KilnTool.run(["run", artifact, "--profile", "--backend", "kiln.reference"] + inputArguments)
        #expect(mismatch.status == 1 && mismatch.stderr.contains("was compiled for backend kiln.cpu"), "\(mismatch.stderr)")

        let onReference = folder + "/ref.kiln"
        #expect(try KilnTool.run(["compile", model, "-o", onReference, "--backend", "kiln.reference"]).status == 0)
        let refused = try KilnTool.run(["run", onReference, "--profile"] + inputArguments)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("runs on backend kiln.reference") && refused.stderr.contains("compile the model for the host target"), "\(refused.stderr)")
    }

    @Test func profileOfAPartitionedRunTimesTheKilnCPUPartition() throws {
        let result = try KilnTool.run(["run", model, "--backends", "kiln.cpu", "--deny", "Relu", "--profile", "--output-dir", folder + "/out"] + inputArguments)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("partitions: kiln.cpu (1 node) → kiln.reference (1 node)"), "\(result.stdout)")
        let steps = stepLines(result.stdout)
        #expect(steps.contains { $0.hasSuffix(" ms  Conv  [conv]") }, "\(result.stdout)")
        #expect(!steps.contains { $0.contains("relu") || $0.contains("Relu") }, "Relu runs on kiln.reference:\n\(result.stdout)")
        #expect(result.stdout.contains("(not timed: kiln.reference (1 node))"), "\(result.stdout)")
        let y = try NPY.read(path: folder + "/out/y.npy").elements(as: Float.self)
        for (got, ref) in zip(y, expected()) { #expect(abs(got - ref) <= 1e-4, "\(got) vs \(ref)") }
    }
}
