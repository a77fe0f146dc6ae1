import Kiln
import Testing
@testable import KilnTestSupport

/// Issue 16: `kiln compile` must never write an artifact from an invalid graph, in release builds too
/// (where the pass manager does not verify).
@Suite struct VerifyBeforeWriteTests {
    static func model(_ nodes: [Node], outputs: [String] = ["y"]) -> Model {
        Model(graph: Graph(name: "g", inputs: [f32("x", [2])], outputs: outputs.map { f32($0, [2]) }, nodes: nodes))
    }

    static let invalid: [(String, Model)] = [
        ("a cycle", model([node("Add", ["x", "b"], ["a"]), node("Relu", ["a"], ["b"]), node("Relu", ["b"], ["y"])])),
        ("a dangling input", model([node("Add", ["x", "nowhere"], ["y"])])),
        ("two producers of one value", model([node("Relu", ["x"], ["y"]), node("Neg", ["x"], ["y"])])),
        ("an undefined output", model([node("Relu", ["x"], ["a"])], outputs: ["y"])),
    ]

    @Test(arguments: 0..<4) func anInvalidGraphIsATypedErrorNotAnArtifact(_ index: Int) throws {
        let (what, model) = Self.invalid[index]
        let error = ONNXBuilder.kilnError { try Kiln.compiler().compile(model: model) }
        #expect(error?.code == .invalidModel, "\(what): \(String(describing: error))")
    }
}
