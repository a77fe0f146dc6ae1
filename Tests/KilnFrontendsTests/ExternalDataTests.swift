import Foundation
import Kiln
@testable import KilnFrontends
@testable import KilnTestSupport
import Testing

/// Tensors whose bytes live in files beside the model.
@Suite struct ExternalDataTests {
    /// A float tensor `name` of `dims` whose data is at `location` (offset/length in bytes).
    static func externalTensor(_ name: String, dims: [Int], location: String, offset: Int? = nil,
                               length: Int? = nil) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(DType.float32.onnxCode)
        t.dims = dims.map(Int64.init)
        t.dataLocation = .external
        var entries: [(String, String)] = [("location", location)]
        if let offset { entries.append(("offset", String(offset))) }
        if let length { entries.append(("length", String(length))) }
        t.externalData = entries.map { key, value in
            var e = Onnx_StringStringEntryProto()
            e.key = key
            e.value = value
            return e
        }
        return t
    }

    /// y = x + w with w stored externally.
    static func model(weights: Onnx_TensorProto) -> Onnx_ModelProto {
        ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Add", ["x", weights.name], ["y"])],
            inputs: [ONNXBuilder.value("x", .float32, [2, 3])],
            outputs: [ONNXBuilder.value("y", .float32, [2, 3])],
            initializers: [weights])
    }

    /// Importing a model whose external data sits at `location` fails with a refusal.
    func expectRefused(location: String, in folder: String) throws {
        let path = try ONNXBuilder.write(Self.model(weights: Self.externalTensor("w", dims: [2, 3], location: location)), to: folder)
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .invalidModel, "\(location)")
        let said = error?.message ?? ""
        #expect(said.contains("tensor 'w' has external data at '\(location)'"), "\(said)")
        #expect(said.contains("outside the model's folder") && said.hasSuffix("refused"), "\(said)")
    }

    @Test func parentDirectoryEscapeIsRefused() throws {
        try expectRefused(location: "../../etc/passwd", in: try temporaryDirectory("kiln-frontends"))
        try expectRefused(location: "data/../../secret.bin", in: try temporaryDirectory("kiln-frontends"))
    }

    @Test func absoluteLocationIsRefused() throws {
        try expectRefused(location: "/etc/passwd", in: try temporaryDirectory("kiln-frontends"))
    }

    @Test func symlinkLeadingOutsideIsRefused() throws {
        let outside = try temporaryDirectory("kiln-frontends")
        let secret = try ONNXBuilder.write([UInt8](repeating: 7, count: 24), to: outside, name: "secret.bin")
        let folder = try temporaryDirectory("kiln-frontends")
        try FileManager.default.createSymbolicLink(atPath: "\(folder)/weights.bin", withDestinationPath: secret)
        try expectRefused(location: "weights.bin", in: folder)
    }

    @Test func symlinkInsideTheFolderIsAllowed() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        let values: [Float] = [1, 2, 3, 4, 5, 6]
        let data = values.withUnsafeBytes { Array($0) }
        try FileManager.default.createDirectory(atPath: "\(folder)/data", withIntermediateDirectories: true)
        try ONNXBuilder.write(data, to: "\(folder)/data", name: "real.bin")
        try FileManager.default.createSymbolicLink(atPath: "\(folder)/weights.bin", withDestinationPath: "\(folder)/data/real.bin")
        let path = try ONNXBuilder.write(Self.model(weights: Self.externalTensor("w", dims: [2, 3], location: "weights.bin")), to: folder)
        let model = try ONNXImporter().importModel(path: path)
        #expect(model.graph.initializers["w"]?.elements(as: Float.self) == values)
    }

    @Test func missingExternalFileIsAnIOError() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        let path = try ONNXBuilder.write(Self.model(weights: Self.externalTensor("w", dims: [2, 3], location: "absent.bin")), to: folder)
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .io)
        #expect(error?.message.contains("tensor 'w': cannot open external data 'absent.bin'") == true, "\(String(describing: error))")
    }

    @Test func externalDataOutOfBoundsIsRejected() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        try ONNXBuilder.write([UInt8](repeating: 0, count: 30), to: folder, name: "weights.bin")
        let tensor = Self.externalTensor("w", dims: [2, 3], location: "weights.bin", offset: 16, length: 24)
        let path = try ONNXBuilder.write(Self.model(weights: tensor), to: folder)
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("tensor 'w' reads bytes 16..<40 of 'weights.bin', which has only 30") == true,
                "\(String(describing: error))")
    }

    @Test func externalDataOfTheWrongSizeIsRejected() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        try ONNXBuilder.write([UInt8](repeating: 0, count: 64), to: folder, name: "weights.bin")
        let tensor = Self.externalTensor("w", dims: [2, 3], location: "weights.bin", offset: 0, length: 20)
        let path = try ONNXBuilder.write(Self.model(weights: tensor), to: folder)
        let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("tensor 'w' of shape [2, 3] needs 24 bytes, but its external data has 20") == true)
    }

    @Test func externalDataWithoutAFolderIsRejected() throws {
        let model = Self.model(weights: Self.externalTensor("w", dims: [2, 3], location: "weights.bin"))
        let error = ONNXBuilder.kilnError { try ONNXBuilder.importInMemory(model) }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("stores its data externally, but the model was not loaded from a file") == true)
    }

    /// The mapping in /proc/self/maps that contains `address`, if any: its file path.
    static func mappedFile(containing address: UInt) -> String? {
        guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) else { return nil }
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6 else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let low = UInt(range[0], radix: 16), let high = UInt(range[1], radix: 16) else { continue }
            if address >= low && address < high { return fields[5...].joined(separator: " ") }
        }
        return nil
    }

    @Test func externalDataLoadsZeroCopyWithTheRightValues() throws {
        let folder = try temporaryDirectory("kiln-frontends")
        // 4100 bytes of padding, then the weights: an offset no allocator would produce by copying.
        let values: [Float] = [0.5, -1, 2.25, 8, -16.5, 1e-3]
        let offset = 4100
        var file = [UInt8](repeating: 0xAB, count: offset)
        file += values.withUnsafeBytes { Array($0) }
        file += [UInt8](repeating: 0xCD, count: 12)
        let dataPath = try ONNXBuilder.write(file, to: folder, name: "weights.bin")
        let tensor = Self.externalTensor("w", dims: [2, 3], location: "weights.bin", offset: offset, length: 24)
        let path = try ONNXBuilder.write(Self.model(weights: tensor), to: folder)

        let model = try ONNXImporter().importModel(path: path)
        let w = try #require(model.graph.initializers["w"])
        #expect(w.shape == [2, 3] && w.dtype == .float32)
        #expect(w.elements(as: Float.self) == values)
        // Zero-copy: the tensor's bytes are the mapped file's bytes.
        let (storage, storageOffset) = try #require(w.storage)
        let address = UInt(bitPattern: storage.base.advanced(by: storageOffset))
        #expect(address % 4096 == UInt(offset % 4096))
        if let mapped = Self.mappedFile(containing: address) {
            let real = URL(fileURLWithPath: dataPath).resolvingSymlinksInPath().path
            #expect(mapped == real || mapped == dataPath, "mapped from \(mapped)")
        }

        // And the model computes with those values.
        let session = try Session(model: model, backend: try Kiln.backend(named: "kiln.reference"))
        let x = Tensor(shape: [2, 3], [Float](repeating: 1, count: 6))
        let y = try session.run(["x": .tensor(x)])["y"]?.tensor
        #expect(y?.elements(as: Float.self) == values.map { $0 + 1 })
    }
}
