import KilnIR
import Testing

/// The op catalog: one entry per op, with its signature, canonical-form facts and shape rule.
@Suite struct OpCatalogTests {
    let catalog = OpCatalog.standard

    /// A shape rule defined for a misspelled or non-ONNX name would create an entry without a signature.
    @Test func everyDefaultDomainOpWithARuleIsAnONNXOp() {
        let unknown = catalog.ops.filter { op in
            op.domain.isEmpty && catalog[op]!.hasShapeRule && catalog[op]!.inputCount == nil
        }
        #expect(unknown.isEmpty, "ops with a shape rule but no ONNX signature: \(unknown)")
    }

    @Test func entriesCarryTheirSchemaAndRule() throws {
        let conv = try #require(catalog[OpID("", "Conv")])
        #expect(conv.hasShapeRule)
        #expect(conv.inputCount == 3)
        #expect(!conv.isVariadic)
        let sum = try #require(catalog[OpID("ai.onnx", "Sum")])
        #expect(sum.isVariadic)
        #expect(catalog[OpID("ai.onnx.ml", "LabelEncoder")] != nil)
        #expect(catalog[OpID("acme", "Conv")] == nil)
    }

    @Test func canonicalFormFacts() throws {
        let reduceMean = try #require(catalog[OpID("", "ReduceMean")]).canonical.attributeInputs
        #expect(reduceMean.map(\.attribute) == ["axes"] && reduceMean.map(\.since) == [18] && reduceMean.map(\.input) == [1])
        #expect(try #require(catalog[OpID("", "ReduceSum")]).canonical.attributeInputs.map(\.since) == [13])
        let slice = try #require(catalog[OpID("", "Slice")]).canonical.attributeInputs
        #expect(slice.map(\.attribute) == ["starts", "ends", "axes"] && slice.map(\.required) == [true, true, false])
        #expect(try #require(catalog[OpID("", "Add")]).canonical.legacyBroadcasting)
        #expect(!(try #require(catalog[OpID("", "Mod")]).canonical.legacyBroadcasting))
        #expect(try #require(catalog[OpID("", "Scatter")]).canonical.replacement == OpID("", "ScatterElements"))
    }

    /// Inference through the catalog: Conv, then Shape → Gather → Reshape with a known value.
    @Test func graphInferenceUsesTheRules() throws {
        var graph = Graph(
            inputs: [Value(name: "x", type: .tensor(TensorType(.float32, [.symbol("batch"), .fixed(3), .fixed(8), .fixed(8)])))],
            outputs: [Value(name: "y")],
            initializers: ["w": Tensor(shape: [4, 3, 3, 3], [Float](repeating: 0, count: 108)),
                           "shape": Tensor(int64s: [0, -1])],
            nodes: [
                Node(op: OpID("", "Conv"), inputs: ["x", "w"], outputs: ["c"], attributes: ["pads": .ints([1, 1, 1, 1])]),
                Node(op: OpID("", "Reshape"), inputs: ["c", "shape"], outputs: ["y"]),
            ])
        #expect(try GraphInference.infer(&graph))
        #expect(graph.valueTypes["c"] == .tensor(TensorType(.float32, [.symbol("batch"), .fixed(4), .fixed(8), .fixed(8)])))
        #expect(graph.outputs[0].type == .tensor(TensorType(.float32, [.symbol("batch"), .fixed(256)])))
    }
}
