import Kiln
import KilnCPU
import Testing
import KilnTestSupport

/// Nodes the importer lets through but no kernel can lower (found by fuzzing the C ABI's model loading).
@Suite struct MalformedNodeTests {
    @Test func aNodeWithoutOutputsIsRejectedNotLowered() throws {
        let graph = Graph(name: "no-outputs", inputs: [f32("x", [2, 3]), f32("w", [3, 2])], outputs: [f32("y", [2, 3])],
                          nodes: [node("Shape", ["x"], [], name: "shape"), node("MatMul", ["x", "w"], [""], name: "matmul"),
                                  node("Relu", ["x"], ["y"], name: "relu")])
        let rejected = CPUBackend().rejections(in: graph)
        #expect(rejected.map(\.node) == [0, 1])
        #expect(rejected.map(\.reason) == ["Shape has no output", "MatMul has no output"])
        // Preparing the graph on kiln.cpu alone is a typed refusal naming the nodes, never a trap.
        let refusal = #expect(throws: CompileRefusal.self) { try CPUBackend().prepare(graph) }
        #expect(refusal?.rejections.map(\.node) == [0, 1] && refusal?.error.code == .unsupported, "\(refusal?.error.message ?? "")")
    }
}
