import Foundation
import Kiln
import KilnCPU
import KilnReference
import Testing
@testable import KilnTestSupport

/// A backend that claims `ops` and then, when compiling or preparing, refuses every node whose op is in
/// `refuses`, by a `CompileRefusal` naming those nodes: a claim broken at compile time.
struct RefusingBackend: Backend {
    let info: BackendInfo
    let claiming: ClaimingBackend
    let refuses: Set<String>

    init(_ name: String, claims ops: Set<String>, refuses: Set<String>) {
        info = BackendInfo(name: name, vendor: "tests", version: "1.0.0")
        claiming = ClaimingBackend(name, claims: ops)
        self.refuses = refuses
    }

    func rejections(in graph: Graph) -> [Rejection] { claiming.rejections(in: graph) }

    private func refuse(_ graph: Graph) throws {
        let refused = graph.nodes.enumerated().filter { refuses.contains($0.element.op.name) }
            .map { Rejection(node: $0.offset, reason: "\($0.element.op.name) refused at compile") }
        if !refused.isEmpty { throw CompileRefusal(backend: info.name, rejections: refused, in: graph) }
    }

    func prepare(_ graph: Graph) throws -> any Executable {
        try refuse(graph)
        return try claiming.prepare(graph)
    }

    func compile(_ graph: Graph, options: CompileOptions) throws -> Payload {
        try refuse(graph)
        return try claiming.compile(graph, options: options)
    }

    func check(compat: String) -> String? { claiming.check(compat: compat) }
    func load(_ payload: [UInt8], graph: Graph) throws -> any Executable { try claiming.load(payload, graph: graph) }
}

/// A claim binds: a backend that refuses at compile what it claimed has those nodes repartitioned.
struct CompileRefusalTests {
    static let flaky = RefusingBackend("acme.flaky", claims: ["Conv", "Relu", "Sigmoid", "Add"], refuses: ["Relu"])

    @Test func aRefusedClaimIsRepartitionedAndReported() throws {
        let (model, inputs) = PartitionEndToEndTests.model()  // conv, relu, sigmoid, add, relu2
        let backends = registry(Self.flaky)
        let output = try Compiler(options: .init(optLevel: 0, backends: ["acme.flaky"], fallback: .allow), backends: backends).compile(model: model)
        let report = output.summary.report
        #expect(report.entries.map(\.backend) == ["acme.flaky", "kiln.reference", "acme.flaky", "acme.flaky", "kiln.reference"])
        #expect(report.entries[1].reason == "claimed by acme.flaky, but its compile refused it: Relu refused at compile; fallback kiln.reference")
        #expect(report.entries[1].isFallback && !report.entries[0].isFallback)
        #expect(report.partitions == ["acme.flaky", "kiln.reference", "acme.flaky", "kiln.reference"])
        #expect(report.transitions == 3)
        #expect(report.partitionSummary == "partitions: 4 (3 backend transitions)")
        #expect(report.fallbackSummary.contains("Relu ×2 (claimed by acme.flaky, but its compile refused it: Relu refused at compile)"), "\(report.fallbackSummary)")

        let expected = try run(Session(model: model, backend: ReferenceBackend()), inputs)
        let session = try Session(artifactBytes: output.bytes, backends: backends)
        #expect(session.partitionReport.transitions == 3)
        #expect(session.partitionReport.entries[4].reason.contains("its compile refused it"))
        expectClose(try run(session, inputs), expected, "artifact after a refusal")

        // Prepared in memory, the same contract holds at load.
        let inMemory = try Session(model: model, partitioner: Partitioner(backends: ["acme.flaky"], registry: backends,
                                                                         options: PartitionOptions(fallback: .allow)))
        #expect(inMemory.partitions.map(\.nodes) == [[0], [1], [2, 3], [4]])
        #expect(inMemory.partitionReport.entries[1].reason.hasPrefix("claimed by acme.flaky, but its compile refused it"))
        expectClose(try run(inMemory, inputs), expected, "in-memory session after a refusal")
    }

    @Test func underFallbackDenyARefusalIsAnErrorNamingTheNode() throws {
        let (model, _) = PartitionEndToEndTests.model()
        let backends = registry(Self.flaky)
        let error = #expect(throws: KilnError.self) {
            _ = try Compiler(options: .init(optLevel: 0, backends: ["acme.flaky"], fallback: .deny), backends: backends).compile(model: model)
        }
        #expect(error?.code == .unsupported)
        #expect(error?.message.contains("fallback policy deny") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("node 1 'relu' (ai.onnx, Relu, ") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("): claimed by acme.flaky, but its compile refused it: Relu refused at compile") == true)
        let atLoad = #expect(throws: KilnError.self) {
            _ = try Session(model: model, partitioner: Partitioner(backends: ["acme.flaky"], registry: backends, options: PartitionOptions(fallback: .deny)))
        }
        #expect(atLoad?.message.contains("'relu'") == true)
        // One backend and no fallback: the refusal is the error.
        let alone = #expect(throws: KilnError.self) { _ = try Session(model: model, backend: Self.flaky) }
        #expect(alone?.message.contains("acme.flaky cannot compile node 'relu' (Relu): Relu refused at compile (and 1 more)") == true, "\(alone?.message ?? "")")
    }

    @Test func adjacentFragmentsOfOneBackendMerge() throws {
        // x → Relu → Sigmoid → Add(sigmoid, x) → Sigmoid: after Relu is refused, the rest is one acme.flaky partition.
        let graph = Graph(name: "chain", inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3])],
                          nodes: [node("Relu", ["x"], ["r"], name: "relu"), node("Sigmoid", ["r"], ["s"], name: "s1"),
                                  node("Add", ["s", "x"], ["a"], name: "add"), node("Sigmoid", ["a"], ["y"], name: "s2")])
        let model = Model(graph: graph)
        let output = try Compiler(options: .init(optLevel: 0, backends: ["acme.flaky"], fallback: .allow), backends: registry(Self.flaky)).compile(model: model)
        #expect(output.summary.partitions.map(\.nodes) == [1, 3])
        #expect(output.summary.report.transitions == 1)
    }

    /// A Reshape whose shape arrives at run time from arithmetic on another shape: kiln.cpu plans it in stages
    /// (its compile no longer refuses it), so the whole graph stays on kiln.cpu and matches the reference.
    @Test func kilnCPURunsAReshapeWhoseShapeIsComputedAtRunTime() throws {
        let graph = Graph(name: "split-shape", inputs: [f32("x", [2, 2])], outputs: [f32("y", [2, 2])],
                          nodes: [node("Shape", ["x"], ["s"], name: "shape"),
                                  node("Cast", ["s"], ["sf"], ["to": .int(1)], name: "cast"),
                                  node("Sin", ["sf"], ["sn"], name: "sin"),
                                  node("Add", ["x", "sn"], ["a"], name: "add"),
                                  node("Reshape", ["a", "s"], ["y"], name: "reshape")])
        let model = Model(graph: graph, opsets: ["": 17])
        let backends = registry(cpu: true)
        #expect(CPUBackend().rejections(in: graph).isEmpty)
        let output = try Compiler(options: .init(optLevel: 0), backends: backends).compile(model: model)
        #expect(output.summary.report.entries.allSatisfy { $0.backend == "kiln.cpu" }, "\(output.summary.report.entries)")
        #expect(output.summary.report.transitions == 0)
        let inputs = ["x": Tensor(shape: [2, 2], [Float](arrayLiteral: 1, -2, 3, 4))]
        let expected = try run(Session(model: model, backend: ReferenceBackend()), inputs)
        expectClose(try run(Session(artifactBytes: output.bytes, backends: backends), inputs), expected, "kiln.cpu, run-time Reshape")
    }

    /// kiln.cpu's claim agrees with its lowering: the string casts it cannot run are rejected, and the Reshape
    /// whose shape they compute, which kiln.cpu plans once the shape arrives from the other partition, is not;
    /// the compile succeeds and the answers match the reference.
    @Test func kilnCPURejectsOnlyTheShapeChainItCannotRun() throws {
        let graph = Graph(name: "chain", inputs: [f32("x", [2, 2])], outputs: [f32("y", [2, 2])],
                          nodes: [node("Shape", ["x"], ["s"], name: "shape"),
                                  node("Cast", ["s"], ["s8"], ["to": .int(8)], name: "cast-string"),  // strings: rejected
                                  node("Cast", ["s8"], ["s64"], ["to": .int(7)], name: "cast-back"),
                                  node("Reshape", ["x", "s64"], ["y"], name: "reshape")])
        #expect(CPUBackend().rejections(in: graph).map(\.node) == [1, 2])
        let model = Model(graph: graph, opsets: ["": 21])
        let backends = registry(cpu: true)
        let output = try Compiler(options: .init(optLevel: 0), backends: backends).compile(model: model)
        #expect(output.summary.report.entries.map(\.backend) == ["kiln.cpu", "kiln.reference", "kiln.reference", "kiln.cpu"])
        let inputs = ["x": Tensor(shape: [2, 2], [Float](arrayLiteral: 1, -2, 3, 4))]
        let expected = try run(Session(model: model, backend: ReferenceBackend()), inputs)
        expectClose(try run(Session(artifactBytes: output.bytes, backends: backends), inputs), expected, "Reshape after a fallback chain")
    }
}

/// A C plugin that claims a node and then refuses it at compile (broken_plugin.c, mode 19: it refuses, with
/// KILN_ERROR_UNSUPPORTED, any graph holding a Relu).
struct PluginCompileRefusalTests {
    static func model() -> (Model, [String: Tensor]) {
        let graph = Graph(name: "relu-sigmoid", inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3])],
                          nodes: [node("Relu", ["x"], ["r"], name: "relu"), node("Sigmoid", ["r"], ["y"], name: "sigmoid")])
        return (Model(graph: graph, opsets: ["": 17]), ["x": Tensor(shape: [2, 3], [Float](arrayLiteral: -1, 2, -3, 4, 0.5, -0.25))])
    }

    @Test func aPluginThatRefusesWhatItClaimedFallsBack() throws {
        let registry = try PluginTests.registry(with: [PluginBuild.broken(mode: 19)])
        let (model, inputs) = Self.model()
        let output = try Compiler(options: .init(optLevel: 0, backends: ["broken.backend"], fallback: .allow), backends: registry).compile(model: model)
        let report = output.summary.report
        #expect(report.entries.map(\.backend) == ["kiln.cpu", "kiln.cpu"])
        #expect(report.entries[0].reason.hasPrefix("claimed by broken.backend, but its compile refused it: "), "\(report.entries[0].reason)")
        #expect(report.entries[0].reason.contains("Relu is not supported after all"))
        #expect(report.entries[0].reason.hasSuffix("; fallback kiln.cpu"))
        #expect(report.transitions == 0)
        let expected = try run(Session(model: model, backend: ReferenceBackend()), inputs)
        expectClose(try run(Session(artifactBytes: output.bytes, backends: registry), inputs), expected, "plugin refusal")

        let error = #expect(throws: KilnError.self) {
            _ = try Compiler(options: .init(optLevel: 0, backends: ["broken.backend"], fallback: .deny), backends: registry).compile(model: model)
        }
        #expect(error?.message.contains("node 0 'relu'") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("its compile refused it") == true)
    }
}
