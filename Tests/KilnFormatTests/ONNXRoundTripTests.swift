import Kiln
import KilnIR
import KilnTestSupport
import Testing
@testable import KilnFormat

/// Every ONNX backend test model: import → artifact bytes → IR, compared printed and bit for bit.
@Suite struct ONNXRoundTripTests {
    static let folders = ["node", "pytorch-converted", "pytorch-operator", "simple"]

    @Test(.enabled(if: TestData.onnxBackendTests != nil, TestData.onnxBackendTestsMissing))
    func everyBackendTestModelRoundTrips() throws {
        let base = try #require(TestData.onnxBackendTests)
        try #require(fileExists(base), "no ONNX backend test data at \(base)")
        var checked = 0, notImported = 0
        let start = now()
        for folder in Self.folders {
            for name in subfolders("\(base)/\(folder)") ?? [] {
                let path = "\(base)/\(folder)/\(name)/model.onnx"
                guard fileExists(path) else { continue }
                let model: Model
                do { model = try Kiln.importONNX(path: path) } catch { notImported += 1; continue }
                let bytes = try ArtifactWriter(model: model).serialize()
                let decoded = try Artifact(bytes: bytes).model()
                expectSame(model, decoded, "\(folder)/\(name)")
                checked += 1
            }
        }
        print("KilnFormatTests: \(checked) ONNX models round-tripped, \(notImported) not importable, in \(now() - start) s")
        #expect(checked >= 1500, "only \(checked) ONNX models were checked")
    }
}
