@testable import KilnCPU
import KilnIR
import KilnReference
import Testing

/// kiln.cpu's kernel table against the op catalog and the reference backend.
@Suite struct CPUKernelTableTests {
    /// Every op kiln.cpu runs is a catalog op with a shape rule, and kiln.reference (its fallback and oracle) runs it too.
    @Test func everyOpIsInTheCatalogAndTheReference() {
        for op in CPUKernelTable.kernels.keys {
            #expect(OpCatalog.standard[op]?.hasShapeRule == true, "\(op)")
            #expect(ReferenceBackend.supports(op), "\(op)")
        }
    }

    /// Rejections name the op and what is missing.
    @Test func rejectionReasons() {
        let graph = Graph(
            inputs: [Value(name: "x", type: .tensor(TensorType(.float32, fixed: [1, 3, 4, 4]))),
                     Value(name: "s", type: .tensor(TensorType(.int64, fixed: [2])))],
            outputs: [Value(name: "a"), Value(name: "b"), Value(name: "c")],
            nodes: [
                Node(op: OpID("", "Erfc"), inputs: ["x"], outputs: ["a"]),
                Node(op: OpID("", "Reshape"), inputs: ["x", "s"], outputs: ["b"]),
                Node(op: OpID("", "Relu"), inputs: ["s"], outputs: ["c"]),
            ])
        let reasons = Support.rejections(in: graph).map(\.reason)
        // A shape computed at run time is fine: the executable plans what follows once it is known.
        #expect(reasons == [
            "no kiln.cpu kernel for Erfc",
            "Relu on i64 not supported (float32 only; input 's')",
        ])
    }
}
