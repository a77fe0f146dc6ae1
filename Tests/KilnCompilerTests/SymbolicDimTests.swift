#if DEBUG
import Foundation
import Kiln
@testable import KilnFrontends
import KilnReference
import Testing
@testable import KilnTestSupport

/// Symbolic dims as ONNX Runtime treats them: `?`, empty and unnamed dims are anonymous; a named dim bound
/// to different sizes by different inputs runs with a warning; a fixed dim must match.
struct SymbolicDimTests {
    /// `y = Relu(x)` with x and y of dims `dims`.
    static func relu(_ dims: [ONNXDim]) -> Onnx_ModelProto {
        ONNXBuilder.model(nodes: [ONNXBuilder.node("Relu", ["x"], ["y"], name: "relu")],
                          inputs: [ONNXBuilder.value("x", .float32, dims)], outputs: [ONNXBuilder.value("y", .float32, dims)])
    }

    static func session(_ model: Onnx_ModelProto) throws -> Session {
        try withTemporaryDirectory("kiln-symbolic-dims") { folder in try Kiln.load(path: ONNXBuilder.write(model, to: folder)) }
    }

    @Test func questionMarksAndEmptyNamesAreAnonymousAtImport() throws {
        let model = try ONNXBuilder.importInMemory(Self.relu(["?", "", "batch", 4]))
        guard case .tensor(let t)? = model.graph.inputs[0].type else { Issue.record("no tensor type"); return }
        #expect(t.shape == [.unknown, .unknown, .symbol("batch"), .fixed(4)])
    }

    @Test func dimsAllNamedQuestionMarkTakeAnySizes() throws {
        // An exporter that names every unknown dim `?`: each is a size of its own.
        let session = try Self.session(Self.relu([1, "?", "?", "?"]))
        let x = Tensor(shape: [1, 3, 48, 192], (0..<(3 * 48 * 192)).map { Float($0 % 7) - 3 })
        let y = try #require(session.run(["x": .tensor(x)])["y"]?.tensor)
        #expect(y.shape == [1, 3, 48, 192])
        #expect(y.elements(as: Float.self) == x.elements(as: Float.self).map { max($0, 0) })
        #expect(session.warnings.isEmpty)
    }

    @Test func aNamedDimBoundToDifferentSizesRunsWithAWarning() throws {
        // z = x + y, both declared [n, 3]; given [2, 3] and [1, 3] (broadcast), as ONNX Runtime accepts.
        let model = ONNXBuilder.model(nodes: [ONNXBuilder.node("Add", ["x", "y"], ["z"], name: "add")],
                                      inputs: [ONNXBuilder.value("x", .float32, ["n", 3]), ONNXBuilder.value("y", .float32, ["n", 3])],
                                      outputs: [ONNXBuilder.value("z", .float32, ["n", 3])])
        let session = try Self.session(model)
        let x = Tensor(shape: [2, 3], [Float](arrayLiteral: 1, 2, 3, 4, 5, 6)), y = Tensor(shape: [1, 3], [Float](arrayLiteral: 10, 20, 30))
        for _ in 0..<3 {
            let z = try #require(session.run(["x": .tensor(x), "y": .tensor(y)])["z"]?.tensor)
            #expect(z.elements(as: Float.self) == [11, 22, 33, 14, 25, 36])
        }
        #expect(session.warnings == ["input 'y': dim 0 ('n') is 1, but input 'x' set 'n' to 2; running anyway, as ONNX Runtime does"])
        // A fixed dim must still match.
        let error = #expect(throws: KilnError.self) { _ = try session.run(["x": .tensor(x), "y": .tensor(Tensor(zeros: .float32, shape: [2, 4]))]) }
        #expect(error?.message.contains("dim 1 is 4, expected 3") == true, "\(error?.message ?? "")")
    }
}
#endif
