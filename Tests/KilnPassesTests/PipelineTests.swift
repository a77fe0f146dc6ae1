import Kiln
import KilnFrontends
import KilnReference
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Testing
import KilnTestSupport
@testable import KilnPasses

/// Collects printed IR from the pass manager's callback.
final class TextLog: Sendable {
    let entries = Mutex<[(String, String)]>([])
}

/// A small residual network with random weights:
/// Conv→BN→Relu→Conv→BN→Add(·, relu)→Identity, plus some dead and duplicate work.
func residualNetwork(seed: UInt64) -> Graph {
    var random = TestRandom(state: seed)
    var initializers: [String: Tensor] = [
        "w1": random.tensor([4, 3, 3, 3]), "b1": random.tensor([4]),
        "w2": random.tensor([4, 4, 3, 3]),
        "unused": random.tensor([10]),
    ]
    for prefix in ["bn1", "bn2"] {
        initializers.merge(BatchNormFoldingTests.bnParams(prefix, 4, &random)) { a, _ in a }
    }
    let pads: [String: Attribute] = ["pads": .ints([1, 1, 1, 1]), "kernel_shape": .ints([3, 3])]
    return Graph(
        name: "residual",
        inputs: [f32("x", [1, 3, 6, 6])], outputs: [f32("out", [1, 4, 6, 6])], initializers: initializers,
        nodes: [
            node("Conv", ["x", "w1", "b1"], ["c1"], pads, name: "conv1"),
            BatchNormFoldingTests.bn("bn1", "c1", "n1"),
            node("Relu", ["n1"], ["r1"]),
            node("Relu", ["n1"], ["r1_dup"]),
            node("Conv", ["r1", "w2"], ["c2"], pads, name: "conv2"),
            BatchNormFoldingTests.bn("bn2", "c2", "n2"),
            node("Identity", ["r1_dup"], ["skip"]),
            node("Add", ["n2", "skip"], ["sum"]),
            node("Sigmoid", ["sum"], ["dead"]),
            node("Identity", ["sum"], ["out"]),
        ])
}

@Suite struct PassManagerTests {
    @Test func pipelinesPerLevel() {
        #expect(PassManager.pipeline(level: 0).isEmpty)
        #expect(PassManager.pipeline(level: 1).map(\.name) == ["simplify", "dce"])
        let full = ["simplify", "constant-folding", "bn-folding", "cse", "dce"]
        #expect(PassManager.pipeline(level: 2).map(\.name) == full)
        #expect(PassManager.pipeline(level: 3).map(\.name) == full)
    }

    @Test func levelZeroChangesNothing() throws {
        var graph = residualNetwork(seed: 1)
        let report = try PassManager(level: 0).run(&graph, context: referenceContext)
        #expect(report.records.isEmpty)
        #expect(graph.nodes.count == 10)
    }

    @Test func reportsTimesVerifiesAndPrints() throws {
        let original = residualNetwork(seed: 2)
        var graph = original
        let log = TextLog()
        let manager = PassManager(level: 2, verifyAfterEachPass: true, printIRAfter: ["bn-folding"]) { name, text in
            log.entries.withLock { $0.append((name, text)) }
        }
        let report = try manager.run(&graph, context: referenceContext)
        #expect(report.nodesBefore == 10)
        #expect(report.records.first?.name == "simplify")
        #expect(report.records.contains { $0.name == "bn-folding" && $0.changed })
        #expect(report.records.allSatisfy { $0.duration >= .zero })
        #expect(report.timeByPass.keys.sorted() == ["bn-folding", "constant-folding", "cse", "dce", "simplify"])
        #expect(report.records.last?.changed == false || report.records.last?.round == manager.maxRounds)
        #expect(!report.description.isEmpty)
        let printed = log.entries.withLock { $0 }
        #expect(!printed.isEmpty)
        #expect(printed.allSatisfy { $0.0 == "bn-folding" })
        #expect(printed.first?.1.contains("Conv(") == true)
        #expect(printed.first?.1.contains("BatchNormalization") == false)

        #expect(graph.nodes.map(\.op.name) == ["Conv", "Relu", "Conv", "Add"])
        #expect(graph.initializers["unused"] == nil)
        try expectSameOutputs(original, graph)
    }

    @Test func levelOneKeepsBatchNorm() throws {
        let original = residualNetwork(seed: 3)
        var graph = original
        _ = try PassManager(level: 1, verifyAfterEachPass: true).run(&graph, context: referenceContext)
        #expect(count("BatchNormalization", in: graph) == 2)
        #expect(count("Identity", in: graph) == 0)
        #expect(count("Sigmoid", in: graph) == 0)
        try expectSameOutputs(original, graph)
    }

    @Test func verificationNamesTheBrokenPass() throws {
        struct Breaker: Pass {
            let name = "breaker"
            func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
                graph.nodes.removeFirst()
                return true
            }
        }
        var graph = residualNetwork(seed: 4)
        let error = #expect(throws: KilnError.self) {
            try PassManager(passes: [Breaker()], verifyAfterEachPass: true).run(&graph)
        }
        #expect(error?.code == .internal)
        #expect(error?.message.contains("breaker") == true)
    }
}

@Suite struct WholeModelTests {
    @Test func residualNetworkLosesEveryBatchNorm() throws {
        let original = residualNetwork(seed: 9)
        var model = Model(graph: original)
        _ = try PassManager(level: 3, verifyAfterEachPass: true).run(&model, context: referenceContext)
        #expect(count("BatchNormalization", in: model.graph) == 0)
        #expect(count("Conv", in: model.graph) == 2)
        try expectSameOutputs(original, model.graph, seed: 11)
    }

    /// The models of `scripts/make-models`, when they have been built (it needs Python with onnx).
    @Test(.enabled(if: TestData.models != nil, TestData.modelsMissing), arguments: ["mlp", "resnet18", "mobilenetv2", "bert"])
    func generatedModels(name: String) throws {
        let model = try Kiln.importONNX(path: TestData.model(name))
        var optimized = model
        if name == "resnet18" || name == "mobilenetv2" { #expect(count("BatchNormalization", in: model.graph) > 0) }
        let report = try PassManager(level: 2, verifyAfterEachPass: true).run(&optimized, context: referenceContext)
        #expect(count("BatchNormalization", in: optimized.graph) == 0)
        #expect(optimized.graph.outputs.map(\.name) == model.graph.outputs.map(\.name))
        #expect(optimized.graph.allNodes.count <= report.nodesBefore)
        #expect(optimized.graph.allNodes.count < report.nodesBefore || name == "mlp")
        // The convolutional models take ~15 s each on kiln.reference in a debug build: opt in with KILN_SLOW_TESTS=1.
        if name == "mlp" || name == "bert" || getenv("KILN_SLOW_TESTS") != nil {
            try expectSameOutputs(model.graph, optimized.graph, tolerance: 1e-3)
        }
    }
}
