import Foundation
import Kiln
import KilnTooling
@testable import KilnTestSupport
import Testing

/// The complete example of Documentation/API.md, run as written on a small ONNX model.
@Suite struct APIExampleTests {
    @Test func compileForTheHostLoadWithThreadsAndRun() throws {
        let folder = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let modelPath = folder + "/add_relu.onnx"
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: modelPath)

        let output = try Kiln.compile(onnxPath: modelPath)
        #expect(output.summary.report.fallbackSummary == "fallback: none (all 2 nodes on kiln.cpu)")
        try AtomicFile.write(output.bytes, to: folder + "/model.kiln")

        let session = try Kiln.load(path: folder + "/model.kiln",
                                    options: Kiln.LoadOptions(configuration: BackendConfiguration(threads: 2)))
        #expect((session.backend as? CPUBackend)?.threads == 2)
        let x = Tensor(shape: [2, 3], [Float](arrayLiteral: 1, -2, 3, -4, 5, -6))
        let y = Tensor(shape: [2, 3], [Float](repeating: 0.5, count: 6))
        let outputs = try session.run(["x": .tensor(x), "y": .tensor(y)])
        #expect(outputs["relu"]?.tensor?.elements(as: Float.self) == [1.5, 0, 3.5, 0, 5.5, 0])

        // The artifact describes itself without its protobuf types.
        let summary = try Artifact(path: folder + "/model.kiln").summary()
        #expect(summary.targets == ["host"] && summary.inputs.map(\.name) == ["x", "y"])
        #expect(summary.partitions.map(\.backend) == ["kiln.cpu"] && summary.partitions[0].payloadSection != nil)
        #expect(summary.report.map(\.reason) == ["claimed by kiln.cpu", "claimed by kiln.cpu"])

        // An option no backend takes, or a value the backend refuses, is a typed error.
        for (options, message) in [(["tiles": "4"], "no backend takes option 'tiles'"), (["threads": "0"], "threads=0: expected at least 1")] {
            let error = #expect(throws: KilnError.self) {
                try Kiln.load(path: modelPath, options: Kiln.LoadOptions(configuration: BackendConfiguration(options: options)))
            }
            #expect(error?.code == .invalidArgument && error?.message.contains(message) == true, "\(error?.message ?? "")")
        }
    }
}
