import Foundation
import Kiln
@testable import KilnFrontends
@testable import KilnTestSupport
import Testing

/// Issue 16: what a small hostile model file may make the importer compute or allocate.
@Suite struct ImportLimitTests {
    @Test func externalDataWhoseOffsetPlusLengthOverflowsIsRefused() throws {
        try withTemporaryDirectory("kiln-frontends") { folder in
            try ONNXBuilder.write([UInt8](repeating: 0, count: 30), to: folder, name: "weights.bin")
            let tensor = ExternalDataTests.externalTensor("w", dims: [2, 3], location: "weights.bin", offset: Int.max - 10, length: 24)
            let path = try ONNXBuilder.write(ExternalDataTests.model(weights: tensor), to: folder)
            let error = ONNXBuilder.kilnError { try ONNXImporter().importModel(path: path) }
            #expect(error?.code == .invalidModel, "\(String(describing: error))")
        }
    }

    @Test func hugeDimsOfInputsAndInitializersAreRefused() throws {
        let input = ONNXBuilder.model(nodes: [ONNXBuilder.node("Relu", ["x"], ["y"])],
                                      inputs: [ONNXBuilder.value("x", .float32, [.fixed(1 << 62), 2])], outputs: [ONNXBuilder.value("y")])
        #expect(ONNXBuilder.kilnError { try ONNXBuilder.importInMemory(input) }?.code == .invalidModel)
        var w = ONNXBuilder.floatTensor("w", [], [])
        w.dims = [Int64(Int.max), 4]
        let initializer = ONNXBuilder.model(nodes: [ONNXBuilder.node("Add", ["x", "w"], ["y"])],
                                            inputs: [ONNXBuilder.value("x", .float32, [1])], outputs: [ONNXBuilder.value("y")],
                                            initializers: [w])
        #expect(ONNXBuilder.kilnError { try ONNXBuilder.importInMemory(initializer) }?.code == .invalidModel)
    }

    /// Dims that are each allowed but whose product no tensor can hold: refused where the type is read, even
    /// when another dim is 0 (kernels multiply parts of a shape; a 1M-execution cabi run found kiln.cpu's
    /// Hardmax overflowing on [2^31 - 1, 2^40, 5]).
    @Test func declaredTypesWhoseDimsMultiplyPastTheCapAreRefused() throws {
        for dims: [ONNXDim] in [[.fixed(Int(Int32.max)), .fixed(1 << 40), 5], [0, .fixed(1 << 40), .fixed(1 << 40)]] {
            let model = ONNXBuilder.model(nodes: [ONNXBuilder.node("Hardmax", ["x"], ["y"])],
                                          inputs: [ONNXBuilder.value("x", .float32, dims)], outputs: [ONNXBuilder.value("y")])
            let error = ONNXBuilder.kilnError { try ONNXBuilder.importInMemory(model) }
            #expect(error?.code == .invalidModel && error?.message.contains("product is too large") == true, "\(dims): \(error?.message ?? "no error")")
        }
        #expect(throws: KilnError.self) { try ElementCount.of([0, 1 << 40, 1 << 40], what: "a value") }
        #expect(try ElementCount.of([0, 1 << 20], what: "an empty value") == 0)
    }

    /// A sparse initializer of one value with dims [65536, 65536] would expand to 32 GiB of working copy.
    @Test func aTinySparseTensorWithAHugeDenseFormIsRefused() throws {
        var sparse = Onnx_SparseTensorProto()
        sparse.values = ONNXBuilder.floatTensor("s", [1], [1])
        sparse.indices = ONNXBuilder.int64Tensor("s_indices", [1], [0])
        sparse.dims = [65536, 65536]
        var model = ONNXBuilder.model(nodes: [ONNXBuilder.node("Identity", ["s"], ["y"])], inputs: [], outputs: [ONNXBuilder.value("y")])
        model.graph.sparseInitializer = [sparse]
        let error = ONNXBuilder.kilnError { try ONNXBuilder.importInMemory(model) }
        #expect(error?.code == .invalidModel && error?.message.contains("sparse expansion") == true, "\(String(describing: error))")
    }

    /// 40 nested functions, each calling the next twice: 2^40 nodes if inlined; the budget stops it.
    @Test func functionInliningHasANodeBudget() throws {
        var functions: [Onnx_FunctionProto] = []
        for level in 0..<40 {
            var f = Onnx_FunctionProto()
            f.name = "F\(level)"
            f.domain = "local"
            f.input = ["a"]
            f.output = ["b"]
            f.opsetImport = [ONNXBuilder.opset("", 17), ONNXBuilder.opset("local", 1)]
            f.node = level == 39 ? [ONNXBuilder.node("Relu", ["a"], ["b"])]
                : [ONNXBuilder.node("F\(level + 1)", ["a"], ["t"], domain: "local"), ONNXBuilder.node("F\(level + 1)", ["t"], ["b"], domain: "local")]
            functions.append(f)
        }
        let model = ONNXBuilder.model(nodes: [ONNXBuilder.node("F0", ["x"], ["y"], domain: "local")],
                                      inputs: [ONNXBuilder.value("x", .float32, [1])], outputs: [ONNXBuilder.value("y")],
                                      otherOpsets: [("local", 1)], functions: functions)
        // A smaller budget than the default (ImportLimits.maxInlinedNodes) keeps the test fast in debug builds.
        var importer = ONNXImporter()
        importer.maxInlinedNodes = 20_000
        let bytes = try ONNXBuilder.bytes(model)
        let error = ONNXBuilder.kilnError { try bytes.withUnsafeBytes { try importer.importModel(bytes: $0, directory: nil) } }
        #expect(error?.code == .invalidModel && error?.message.contains("more than 20000 nodes (the importer's inlining node budget)") == true,
                "\(String(describing: error))")
    }

    /// Integer attributes given as floats that are infinite or beyond Int's range: Int(f) used to trap.
    @Test func nonFiniteOrHugeFloatAttributesAreTypedErrors() throws {
        for value in [Float.infinity, -Float.infinity, Float.nan, 1e30] {
            let model = ONNXBuilder.model(nodes: [ONNXBuilder.node("LpPool", ["x"], ["y"], attributes: [
                ONNXBuilder.attribute("p", float: value), ONNXBuilder.attribute("kernel_shape", ints: [1, 1])])],
                                          inputs: [ONNXBuilder.value("x", .float32, [1, 1, 2, 2])], outputs: [ONNXBuilder.value("y")], opset: 1)
            let error = ONNXBuilder.kilnError { try ONNXBuilder.importInMemory(model) }
            #expect(error?.code == .invalidModel, "p=\(value): \(String(describing: error))")
            let topK = ONNXBuilder.model(nodes: [ONNXBuilder.node("TopK", ["x"], ["v", "i"], attributes: [ONNXBuilder.attribute("k", float: value)])],
                                         inputs: [ONNXBuilder.value("x", .float32, [4])], outputs: [ONNXBuilder.value("v"), ONNXBuilder.value("i")], opset: 1)
            #expect(ONNXBuilder.kilnError { try ONNXBuilder.importInMemory(topK) }?.code == .invalidModel, "k=\(value)")
        }
    }
}
