import Foundation
import Kiln
@testable import KilnFrontends
@testable import KilnTestSupport
import Testing

/// What the importer makes of valid models: unsupported ops, functions, older opsets.
@Suite struct ImportSemanticsTests {
    @Test func unsupportedOpsAreReportedTogether() throws {
        let model = ONNXBuilder.model(
            nodes: [
                ONNXBuilder.node("Relu", ["x"], ["a"], name: "relu"),
                ONNXBuilder.node("NoSuchOp", ["a"], ["b"], name: "mystery_1"),
                ONNXBuilder.node("Frobnicate", ["b"], ["c"], name: "vendor_1", domain: "com.example"),
                ONNXBuilder.node("NoSuchOp", ["c"], ["y"], name: "mystery_2"),
            ],
            inputs: [ONNXBuilder.value("x", .float32, [2])],
            outputs: [ONNXBuilder.value("y")],
            opset: 17, otherOpsets: [("com.example", 3)])
        let folder = try temporaryDirectory("kiln-frontends")
        let path = try ONNXBuilder.write(model, to: folder)
        // Importing works: unknown ops are the backend's business.
        let imported = try Kiln.importONNX(path: path)
        #expect(imported.graph.nodes.map(\.op.name) == ["Relu", "NoSuchOp", "Frobnicate", "NoSuchOp"])

        // With no backend named, the host target's backends (and the fallback) are all asked.
        let byDefault = ONNXBuilder.kilnError { try Kiln.load(path: path) }
        #expect(byDefault?.code == .unsupported)
        let all = byDefault?.message ?? ""
        #expect(all.contains("no backend (kiln.cpu, kiln.reference) can run 3 node(s)"), "\(all)")
        #expect(all.contains("(ai.onnx, NoSuchOp, 17) at nodes: mystery_1, mystery_2"), "\(all)")
        #expect(all.contains("(com.example, Frobnicate, 3) at nodes: vendor_1"), "\(all)")

        let error = ONNXBuilder.kilnError { try Kiln.load(path: path, backend: "kiln.reference") }
        #expect(error?.code == .unsupported)
        let said = error?.message ?? ""
        #expect(said.contains("cannot run 3 node(s)"), "\(said)")
        #expect(said.contains("(ai.onnx, NoSuchOp, 17) at nodes: mystery_1, mystery_2"), "\(said)")
        #expect(said.contains("(com.example, Frobnicate, 3) at nodes: vendor_1"), "\(said)")
        #expect(!said.contains("relu"), "\(said)")

        let sessionError = ONNXBuilder.kilnError { try Session(model: imported, backend: try Kiln.backend(named: "kiln.reference")) }
        #expect(sessionError == error)
    }

    /// A model-local function `local.ScaledSum(a, b) = LeakyRelu((a + b) * a, alpha=@alpha)`, called twice.
    @Test func modelLocalFunctionsAreInlined() throws {
        var function = Onnx_FunctionProto()
        function.name = "ScaledSum"
        function.domain = "local"
        function.input = ["a", "b"]
        function.output = ["out"]
        function.attribute = ["alpha"]
        function.opsetImport = [ONNXBuilder.opset("", 17)]
        function.node = [
            ONNXBuilder.node("Add", ["a", "b"], ["t"]),
            ONNXBuilder.node("Mul", ["t", "a"], ["u"]),
            ONNXBuilder.node("LeakyRelu", ["u"], ["out"],
                             attributes: [ONNXBuilder.attribute("alpha", referring: "alpha", type: .float)]),
        ]
        let model = ONNXBuilder.model(
            nodes: [
                ONNXBuilder.node("ScaledSum", ["x", "z"], ["p"], name: "call1", domain: "local",
                                 attributes: [ONNXBuilder.attribute("alpha", float: 0.5)]),
                ONNXBuilder.node("ScaledSum", ["p", "z"], ["y"], name: "call2", domain: "local",
                                 attributes: [ONNXBuilder.attribute("alpha", float: 0.25)]),
            ],
            inputs: [ONNXBuilder.value("x", .float32, [3]), ONNXBuilder.value("z", .float32, [3])],
            outputs: [ONNXBuilder.value("y", .float32, [3])],
            opset: 17, otherOpsets: [("local", 1)], functions: [function])
        let folder = try temporaryDirectory("kiln-frontends")
        let path = try ONNXBuilder.write(model, to: folder)
        let imported = try Kiln.importONNX(path: path)
        #expect(imported.graph.nodes.map(\.op.name) == ["Add", "Mul", "LeakyRelu", "Add", "Mul", "LeakyRelu"])
        #expect(imported.graph.nodes.allSatisfy { $0.op.domain.isEmpty })
        // Internal values are renamed apart; the call's names are kept.
        let produced = imported.graph.nodes.flatMap(\.outputs)
        #expect(Set(produced).count == produced.count)
        #expect(produced.contains("p") && produced.contains("y"))

        let x: [Float] = [1, -2, 3], z: [Float] = [1, 1, -4]
        func leaky(_ v: Float, _ alpha: Float) -> Float { v < 0 ? v * alpha : v }
        let p = zip(x, z).map { leaky(($0 + $1) * $0, 0.5) }
        let expected = zip(p, z).map { leaky(($0 + $1) * $0, 0.25) }
        let y = try ONNXBuilder.run(model, ["x": Tensor(shape: [3], x), "z": Tensor(shape: [3], z)])["y"]
        #expect(y?.elements(as: Float.self) == expected)
    }

    @Test func aFunctionCallingItselfIsAnError() throws {
        var function = Onnx_FunctionProto()
        function.name = "Loopy"
        function.domain = "local"
        function.input = ["a"]
        function.output = ["b"]
        function.node = [ONNXBuilder.node("Loopy", ["a"], ["b"], domain: "local")]
        let model = ONNXBuilder.model(nodes: [ONNXBuilder.node("Loopy", ["x"], ["y"], domain: "local")],
                                      inputs: [ONNXBuilder.value("x", .float32, [1])], outputs: [ONNXBuilder.value("y")],
                                      otherOpsets: [("local", 1)], functions: [function])
        let error = ONNXBuilder.kilnError {
            try ONNXBuilder.importInMemory(model)
        }
        #expect(error?.code == .invalidModel)
        #expect(error?.message.contains("function 'Loopy' calls itself") == true)
    }

    @Test func splitWithSplitAttributeIsCanonicalized() throws {
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Split", ["x"], ["a", "b"], name: "split",
                                     attributes: [ONNXBuilder.attribute("axis", int: 1), ONNXBuilder.attribute("split", ints: [1, 3])])],
            inputs: [ONNXBuilder.value("x", .float32, [2, 4])],
            outputs: [ONNXBuilder.value("a"), ONNXBuilder.value("b")],
            opset: 11)
        let imported = try ONNXBuilder.importInMemory(model)
        let split = try #require(imported.graph.nodes.first)
        #expect(imported.graph.nodes.count == 1)
        #expect(split.op == OpID("", "Split") && split.attributes["split"] == nil && split.inputs.count == 2)
        #expect(imported.graph.initializers[split.inputs[1]]?.asInt64s() == [1, 3])

        let x = Tensor(shape: [2, 4], (0..<8).map(Float.init))
        let out = try ONNXBuilder.run(model, ["x": x])
        #expect(out["a"]?.shape == [2, 1] && out["a"]?.elements(as: Float.self) == [0, 4])
        #expect(out["b"]?.shape == [2, 3] && out["b"]?.elements(as: Float.self) == [1, 2, 3, 5, 6, 7])
    }

    @Test func splitWithoutSizesGetsNumOutputs() throws {
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Split", ["x"], ["a", "b"], attributes: [ONNXBuilder.attribute("axis", int: 0)])],
            inputs: [ONNXBuilder.value("x", .float32, [4])], outputs: [ONNXBuilder.value("a"), ONNXBuilder.value("b")],
            opset: 13)
        let imported = try ONNXBuilder.importInMemory(model)
        guard case .int(2)? = imported.graph.nodes[0].attributes["num_outputs"] else {
            Issue.record("num_outputs not set: \(imported.graph.nodes[0].attributes)")
            return
        }
    }

    @Test func attributesThatBecameInputsAreCanonicalized() throws {
        // Opset 6: Unsqueeze axes, Slice starts/ends, Clip min/max, Pad pads/value, ReduceSum axes are attributes.
        let model = ONNXBuilder.model(
            nodes: [
                ONNXBuilder.node("Unsqueeze", ["x"], ["u"], attributes: [ONNXBuilder.attribute("axes", ints: [0])]),
                ONNXBuilder.node("Slice", ["u"], ["s"], attributes: [
                    ONNXBuilder.attribute("axes", ints: [2]), ONNXBuilder.attribute("starts", ints: [1]),
                    ONNXBuilder.attribute("ends", ints: [3])]),
                ONNXBuilder.node("Clip", ["s"], ["c"], attributes: [
                    ONNXBuilder.attribute("min", float: -1), ONNXBuilder.attribute("max", float: 4)]),
                ONNXBuilder.node("Pad", ["c"], ["p"], attributes: [
                    ONNXBuilder.attribute("pads", ints: [0, 1, 0, 0, 0, 0]), ONNXBuilder.attribute("value", float: 9)]),
                ONNXBuilder.node("ReduceSum", ["p"], ["y"], attributes: [
                    ONNXBuilder.attribute("axes", ints: [1]), ONNXBuilder.attribute("keepdims", int: 0)]),
            ],
            inputs: [ONNXBuilder.value("x", .float32, [2, 4])],
            outputs: [ONNXBuilder.value("y")],
            opset: 6)
        let imported = try ONNXBuilder.importInMemory(model)
        for node in imported.graph.nodes {
            for attribute in ["axes", "starts", "ends", "min", "max", "pads", "value"] {
                #expect(node.attributes[attribute] == nil, "\(node.op.name) still has \(attribute)")
            }
        }
        // x = [[0, 1, 2, 3], [-5, 6, 7, 8]] → [1, 2, 4] → columns 1..<3: [[1, 2], [6, 7]] → clipped to [-1, 4]:
        // [[1, 2], [4, 4]] → a row of 9s in front: [[9, 9], [1, 2], [4, 4]] → summed over rows: [14, 15].
        let x = Tensor(shape: [2, 4], [Float](arrayLiteral: 0, 1, 2, 3, -5, 6, 7, 8))
        let y = try ONNXBuilder.run(model, ["x": x])["y"]
        #expect(y?.shape == [1, 2])
        #expect(y?.elements(as: Float.self) == [14, 15])
    }

    @Test func legacyBroadcastingIsRewritten() throws {
        // Opset 6 Add with broadcast=1, axis=0: B of shape [2] lines up with A's axis 0.
        // `h` has no declared type, so its rank is only known at run time.
        let model = ONNXBuilder.model(
            nodes: [
                ONNXBuilder.node("Add", ["a", "b"], ["y"], attributes: [
                    ONNXBuilder.attribute("broadcast", int: 1), ONNXBuilder.attribute("axis", int: 0)]),
                ONNXBuilder.node("Identity", ["a"], ["h"]),
                ONNXBuilder.node("Mul", ["h", "b"], ["z"], attributes: [
                    ONNXBuilder.attribute("broadcast", int: 1), ONNXBuilder.attribute("axis", int: 0)]),
            ],
            inputs: [ONNXBuilder.value("a", .float32, [2, 3]), ONNXBuilder.value("b", .float32, [2])],
            outputs: [ONNXBuilder.value("y"), ONNXBuilder.value("z")],
            opset: 6)
        let a = Tensor(shape: [2, 3], [Float](arrayLiteral: 1, 2, 3, 4, 5, 6))
        let b = Tensor(shape: [2], [Float](arrayLiteral: 10, 100))
        let out = try ONNXBuilder.run(model, ["a": a, "b": b])
        #expect(out["y"]?.elements(as: Float.self) == [11, 12, 13, 104, 105, 106])
        #expect(out["z"]?.elements(as: Float.self) == [10, 20, 30, 400, 500, 600])
    }

    @Test func softmaxBeforeOpset13CoercesTo2D() throws {
        // Softmax-11 with axis=1 on [2, 2, 2] flattens to [2, 4] and normalizes each row of 4.
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Softmax", ["x"], ["y"], attributes: [ONNXBuilder.attribute("axis", int: 1)])],
            inputs: [ONNXBuilder.value("x", .float32, [2, 2, 2])], outputs: [ONNXBuilder.value("y")], opset: 11)
        let values: [Float] = [0, 1, 2, 3, 1, 1, 1, 1]
        let y = try ONNXBuilder.run(model, ["x": Tensor(shape: [2, 2, 2], values)])["y"]
        #expect(y?.shape == [2, 2, 2])
        let first = values[0..<4].map { exp(Double($0)) }
        let total = first.reduce(0, +)
        let expected = first.map { Float($0 / total) } + [Float](repeating: 0.25, count: 4)
        let got = y?.elements(as: Float.self) ?? []
        #expect(got.count == 8 && zip(got, expected).allSatisfy { abs($0 - $1) < 1e-6 }, "\(got)")
    }

    @Test func upsampleBecomesResize() throws {
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Upsample", ["x"], ["y"], attributes: [
                ONNXBuilder.attribute("scales", floats: [1, 1, 2, 2]), ONNXBuilder.attribute("mode", string: "nearest")])],
            inputs: [ONNXBuilder.value("x", .float32, [1, 1, 2, 2])], outputs: [ONNXBuilder.value("y")], opset: 7)
        let imported = try ONNXBuilder.importInMemory(model)
        #expect(imported.graph.nodes.map(\.op.name) == ["Resize"])
        let y = try ONNXBuilder.run(model, ["x": Tensor(shape: [1, 1, 2, 2], [Float](arrayLiteral: 1, 2, 3, 4))])["y"]
        #expect(y?.shape == [1, 1, 4, 4])
        #expect(y?.elements(as: Float.self) == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    }

    @Test func castWithATypeNameIsCanonicalized() throws {
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Cast", ["x"], ["y"], attributes: [ONNXBuilder.attribute("to", string: "INT32")])],
            inputs: [ONNXBuilder.value("x", .float32, [2])], outputs: [ONNXBuilder.value("y")], opset: 5)
        let y = try ONNXBuilder.run(model, ["x": Tensor(shape: [2], [Float](arrayLiteral: 1.5, -2.5))])["y"]
        #expect(y?.dtype == .int32 && y?.asInt64s() == [1, -2])
    }

    @Test func removedFormsOfOpset1AreCanonicalized() throws {
        // Opset 1: Reshape's shape, TopK's k and Tile's (tiles, axis) inputs; Dropout's is_test and ratio.
        let model = ONNXBuilder.model(
            nodes: [
                ONNXBuilder.node("Reshape", ["x"], ["r"], attributes: [ONNXBuilder.attribute("shape", ints: [3, 2])]),
                ONNXBuilder.node("TopK", ["r"], ["top", "index"], attributes: [ONNXBuilder.attribute("k", int: 1)]),
                ONNXBuilder.node("Tile", ["top", "tiles", "axis"], ["tiled"]),
                ONNXBuilder.node("Dropout", ["tiled"], ["y"], attributes: [
                    ONNXBuilder.attribute("is_test", int: 1), ONNXBuilder.attribute("ratio", float: 0.3)]),
            ],
            inputs: [ONNXBuilder.value("x", .float32, [6])],
            outputs: [ONNXBuilder.value("y"), ONNXBuilder.value("index")],
            initializers: [ONNXBuilder.int64Tensor("tiles", [], [2]), ONNXBuilder.int64Tensor("axis", [], [1])],
            opset: 1)
        let imported = try ONNXBuilder.importInMemory(model)
        let removed: Set<String> = ["shape", "k", "is_test", "ratio"]
        for node in imported.graph.nodes {
            #expect(removed.isDisjoint(with: node.attributes.keys), "\(node.op.name): \(node.attributes.keys)")
        }
        let out = try ONNXBuilder.run(model, ["x": Tensor(shape: [6], [Float](arrayLiteral: 1, 5, 4, 2, 0, 3))])
        #expect(out["index"]?.asInt64s() == [1, 0, 1])
        #expect(out["y"]?.shape == [3, 2] && out["y"]?.elements(as: Float.self) == [5, 5, 4, 4, 3, 3])
    }

    @Test func clipOfAnUntypedValueGetsBoundsOfItsType() throws {
        // `h` is float64 but has no declared type: the bounds are cast to its type at run time.
        let model = ONNXBuilder.model(
            nodes: [
                ONNXBuilder.node("Identity", ["x"], ["h"]),
                ONNXBuilder.node("Clip", ["h"], ["y"], attributes: [ONNXBuilder.attribute("min", float: -0.5),
                                                                  ONNXBuilder.attribute("max", float: 0.25)]),
            ],
            inputs: [ONNXBuilder.value("x", .float64, [3])], outputs: [ONNXBuilder.value("y")], opset: 6)
        let y = try ONNXBuilder.run(model, ["x": Tensor(shape: [3], [Double](arrayLiteral: -3, 0.1, 7))])["y"]
        #expect(y?.dtype == .float64 && y?.elements(as: Double.self) == [-0.5, 0.1, 0.25])
    }

    @Test func resize10BecomesAsymmetricResize() throws {
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("Resize", ["x", "scales"], ["y"], attributes: [ONNXBuilder.attribute("mode", string: "nearest")])],
            inputs: [ONNXBuilder.value("x", .float32, [1, 1, 1, 3])], outputs: [ONNXBuilder.value("y")],
            initializers: [ONNXBuilder.floatTensor("scales", [4], [1, 1, 1, 2])], opset: 10)
        let imported = try ONNXBuilder.importInMemory(model)
        let resize = imported.graph.nodes[0]
        #expect(resize.inputs == ["x", "", "scales"])
        guard case .string("asymmetric")? = resize.attributes["coordinate_transformation_mode"],
              case .string("floor")? = resize.attributes["nearest_mode"] else {
            Issue.record("\(resize.attributes)")
            return
        }
        let y = try ONNXBuilder.run(model, ["x": Tensor(shape: [1, 1, 1, 3], [Float](arrayLiteral: 1, 2, 3))])["y"]
        #expect(y?.elements(as: Float.self) == [1, 1, 2, 2, 3, 3])
    }

    @Test func batchNormalizationWithoutSpatialIsArithmetic() throws {
        // Opset 7, spatial=0: statistics per (channel, position).
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
                                     attributes: [ONNXBuilder.attribute("spatial", int: 0), ONNXBuilder.attribute("epsilon", float: 0)])],
            inputs: [ONNXBuilder.value("x", .float32, [1, 1, 2])], outputs: [ONNXBuilder.value("y")],
            initializers: [ONNXBuilder.floatTensor("scale", [1, 2], [1, 2]), ONNXBuilder.floatTensor("bias", [1, 2], [0, 1]),
                           ONNXBuilder.floatTensor("mean", [1, 2], [1, 2]), ONNXBuilder.floatTensor("var", [1, 2], [4, 16])],
            opset: 7)
        let y = try ONNXBuilder.run(model, ["x": Tensor(shape: [1, 1, 2], [Float](arrayLiteral: 3, 10))])["y"]
        // (3 - 1) / sqrt(4) * 1 + 0 and (10 - 2) / sqrt(16) * 2 + 1.
        let expected: [Float] = [1, 5]
        #expect(y?.elements(as: Float.self) == expected)
    }

    @Test func imageScalerIsScaleAndBias() throws {
        let model = ONNXBuilder.model(
            nodes: [ONNXBuilder.node("ImageScaler", ["x"], ["y"], attributes: [
                ONNXBuilder.attribute("scale", float: 2), ONNXBuilder.attribute("bias", floats: [1, -1])])],
            inputs: [ONNXBuilder.value("x", .float32, [1, 2, 1, 2])], outputs: [ONNXBuilder.value("y")], opset: 6)
        let y = try ONNXBuilder.run(model, ["x": Tensor(shape: [1, 2, 1, 2], [Float](arrayLiteral: 1, 2, 3, 4))])["y"]
        #expect(y?.elements(as: Float.self) == [3, 5, 5, 7])
    }
}
