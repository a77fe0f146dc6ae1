import Kiln
@testable import KilnCPU
import KilnIR
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

    /// Every op kiln.cpu has a kernel for, written with one input too few, with a required input left
    /// absent, or with no outputs, is a typed `.invalidModel` error from the IR verifier before any backend
    /// sees it, on the host target and on kiln.cpu alone: the class of bug behind the fuzz findings above
    /// (kernels read their required inputs and outputs without checking the count).
    @Test func everyKernelOpWithMissingInputsOrOutputsIsAnInvalidModel() throws {
        var checked = 0
        for op in CPUKernelTable.kernels.keys.sorted(by: { $0.name < $1.name }) {
            guard let signature = OpCatalog.standard[op]?.signature else { continue }
            let required = signature.inputCount.lowerBound
            let inputs = (0..<max(required, 1)).map { "x\($0)" }
            var malformed: [(String, Node)] = [
                ("no outputs", Node(name: "n", op: op, inputs: inputs, outputs: [], attributes: [:])),
            ]
            if signature.outputCount.lowerBound == 0 { malformed.removeAll() }
            if required > 0 {
                malformed.append(("one input too few", Node(name: "n", op: op, inputs: Array(inputs.dropLast()), outputs: ["y"], attributes: [:])))
            }
            if let last = inputs.indices.last(where: { signature.requiredInputs & (1 << UInt64($0)) != 0 }) {
                var absent = inputs
                absent[last] = ""
                malformed.append(("required input #\(last) absent", Node(name: "n", op: op, inputs: absent, outputs: ["y"], attributes: [:])))
            }
            for (what, bad) in malformed {
                let graph = Graph(name: "g", inputs: inputs.map { f32($0, [2]) }, outputs: bad.outputs.isEmpty ? [f32("x0", [2])] : [f32("y", [2])],
                                  nodes: [bad])
                let model = Model(graph: graph)
                for options in [Kiln.LoadOptions(), Kiln.LoadOptions(backend: "kiln.cpu")] {
                    let error = #expect(throws: KilnError.self, "\(op) with \(what)") { try Kiln.prepare(model, options: options) }
                    #expect(error?.code == .invalidModel, "\(op) with \(what): \(error?.message ?? "")")
                }
                checked += 1
            }
        }
        #expect(checked > 150)
    }
}
