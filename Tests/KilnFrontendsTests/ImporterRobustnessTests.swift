import Foundation
import Kiln
@testable import KilnFrontends
@testable import KilnTestSupport
import Testing

/// Malformed and hostile model files: each is a typed `KilnError` naming the problem, never a crash.
@Suite struct ImporterRobustnessTests {
    /// A small valid model: y = x + w, with w an initializer.
    static func addModel() -> Onnx_ModelProto {
        ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Add", ["x", "w"], ["y"], name: "add")],
            inputs: [ONNXBuilder.value("x", .float32, [2, 3])],
            outputs: [ONNXBuilder.value("y", .float32, [2, 3])],
            initializers: [ONNXBuilder.floatTensor("w", [2, 3], [1, 2, 3, 4, 5, 6])])
    }

    /// Found by fuzzing (Fuzz/regressions/onnx/resize-without-inputs.onnx): a Resize (opset ≥ 11) with no
    /// inputs trapped in the canonicalizer (`1..<0`); it must be an error, not a crash.
    @Test func resizeWithoutInputsIsAnErrorNotATrap() {
        typealias B = ONNXBuilder
        let model = B.model(nodes: [B.node("Resize", [], ["y"], name: "resize")], inputs: [B.value("x", .float32, [1, 1, 2, 2])],
                            outputs: [B.value("y", .float32, [1, 1, 4, 4])], opset: 13)
        let bytes = try! model.serializedBytes() as [UInt8]
        do {
            _ = try bytes.withUnsafeBytes { try ONNXImporter().importModel(bytes: $0, directory: nil) }
        } catch {
            #expect(error is KilnError)
        }
    }

    @Test func nonexistentPathIsAnIOError() {
        let path = "/nonexistent-kiln-folder/missing.onnx"
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .io)
        #expect(error?.message.contains("cannot open '\(path)'") == true)
        #expect(error?.message.contains("No such file") == true)
    }

    @Test func aFolderIsNotAModel() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: folder) }
        #expect(error?.code == .io)
        #expect(error?.message.contains("is not a regular file") == true)
    }

    @Test func randomBytesAreNotAModel() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        for seed in UInt64(1)...8 {
            var random = TestRandom(state: seed)
            let path = try ONNXBuilder.write(random.bytes(count: 4096), to: folder, name: "random\(seed).onnx")
            let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
            #expect(error?.code == .invalidModel, "seed \(seed)")
            #expect(error?.message.hasPrefix(path) == true, "seed \(seed): \(String(describing: error))")
            let said = error?.message ?? ""
            #expect(said.contains("is not a valid ONNX model (protobuf decoding failed") || said.contains("has no graph"),
                    "seed \(seed): \(said)")
        }
    }

    @Test func aTextFileIsNotAModel() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        let text = "This is a README, not an ONNX model.\nIt has two lines.\n"
        let path = try ONNXBuilder.write(Array(text.utf8), to: folder, name: "README.onnx")
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("\(path) is not a valid ONNX model (protobuf decoding failed") == true,
                "\(String(describing: error))")
    }

    @Test func anEmptyFileHasNoGraph() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        let path = try ONNXBuilder.write([], to: folder)
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .invalidModel)
        #expect(error?.message == "\(path) has no graph (is it an ONNX model?)")
    }

    @Test func truncatedModelsAreRejected() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        let full = try ONNXBuilder.bytes(Self.addModel())
        // The complete model loads.
        _ = try ONNXImporter().importModel(path: try ONNXBuilder.write(full, to: folder, name: "full.onnx"))
        let lengths = [1, 2, 5, 17, full.count / 3, full.count / 2, full.count - 8, full.count - 1]
        for length in lengths {
            let path = try ONNXBuilder.write(Array(full.prefix(length)), to: folder, name: "cut\(length).onnx")
            let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
            #expect(error?.code == .invalidModel, "cut at \(length)")
            let said = error?.message ?? ""
            #expect(said.hasPrefix(path), "cut at \(length): \(said)")
            #expect(said.contains("protobuf decoding failed") || said.contains("has no graph") || said.contains("has no opset_import"),
                    "cut at \(length): \(said)")
        }
    }

    @Test func aModelWithoutOpsetImportIsRejected() throws {
        var model = Self.addModel()
        model.opsetImport = []
        let folder = try temporaryDirectory("kiln-frontends")
        let path = try ONNXBuilder.write(model, to: folder)
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("has no opset_import") == true)
    }

    /// Every single-byte corruption of a valid model either imports or fails with a KilnError.
    @Test func corruptedBytesNeverCrash() throws {
        let full = try ONNXBuilder.bytes(Self.addModel())
        for position in 0..<full.count {
            for replacement: UInt8 in [0x00, 0xFF, 0x7F] {
                var bytes = full
                bytes[position] = replacement
                do {
                    _ = try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> Model in
                        try ONNXImporter().importModel(bytes: raw, directory: nil)
                    }
                } catch let error as KilnError {
                    #expect(error.code == .invalidModel || error.code == .unsupported, "\(error)")
                } catch {
                    Issue.record("byte \(position) = \(replacement): not a KilnError: \(error)")
                }
            }
        }
    }

    @Test func dimsWhoseProductOverflowAreRejected() throws {
        var huge = ONNXBuilder.floatTensor("huge", [], [])
        huge.dims = [1 << 32, 1 << 32, 16]
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Add", ["x", "huge"], ["y"])],
            inputs: [ONNXBuilder.value("x", .float32, [1])],
            outputs: [ONNXBuilder.value("y")],
            initializers: [huge])
        let folder = try temporaryDirectory("kiln-frontends")
        let path = try ONNXBuilder.write(model, to: folder)
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("tensor 'huge' has dims [4294967296, 4294967296, 16] whose product is too large") == true,
                "\(String(describing: error))")
    }

    @Test func negativeDimsAreRejected() throws {
        var bad = ONNXBuilder.floatTensor("bad", [], [])
        bad.dims = [2, -3]
        let model = ONNXBuilder.model(nodes: [ONNXBuilder.node("Identity", ["bad"], ["y"])], inputs: [],
                                      outputs: [ONNXBuilder.value("y")], initializers: [bad])
        let error = ONNXBuilder.kilnError {
            try ONNXBuilder.importInMemory(model)
        }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("tensor 'bad' has a negative dim -3") == true)
    }

    @Test func dataThatDoesNotMatchTheShapeIsRejected() throws {
        let model = ONNXBuilder.model(nodes: [ONNXBuilder.node("Identity", ["w"], ["y"])], inputs: [],
                                      outputs: [ONNXBuilder.value("y")],
                                      initializers: [ONNXBuilder.floatTensor("w", [2, 3], [1, 2, 3])])
        let error = ONNXBuilder.kilnError {
            try ONNXBuilder.importInMemory(model)
        }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("tensor 'w' of shape [2, 3] needs 6 elements but its float_data holds 3") == true)
    }
}
