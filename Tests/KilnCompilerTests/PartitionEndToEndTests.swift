import Foundation
import Kiln
import KilnReference
import Testing
import KilnTestSupport

/// Compiling with several backends, storing every partition in the artifact, and running it.
struct PartitionEndToEndTests {
    /// `Conv → Relu → Sigmoid → Add(relu, sigmoid) → Relu`; acme.npu claims Conv, Relu and Add but not Sigmoid.
    static func model() -> (Model, [String: Tensor]) {
        var random = TestRandom(state: 11)
        let graph = Graph(name: "split", inputs: [f32("x", [1, 3, 8, 8])], outputs: [f32("y", [1, 4, 6, 6]), f32("s", [1, 4, 6, 6])],
                          initializers: ["W": random.tensor([4, 3, 3, 3]), "B": random.tensor([4])],
                          nodes: [node("Conv", ["x", "W", "B"], ["c"], name: "conv"), node("Relu", ["c"], ["r"], name: "relu"),
                                  node("Sigmoid", ["r"], ["s"], name: "sigmoid"), node("Add", ["r", "s"], ["a"], name: "add"),
                                  node("Relu", ["a"], ["y"], name: "relu2")])
        return (Model(graph: graph), ["x": random.tensor([1, 3, 8, 8])])
    }

    static let npu = ClaimingBackend("acme.npu", claims: ["Conv", "Relu", "Add"])

    @Test(arguments: [0, 2])
    func aMultiPartitionArtifactRunsLikeOneBackend(optLevel: Int) throws {
        let (model, inputs) = Self.model()
        let backends = registry(Self.npu)
        let compiler = Compiler(options: .init(optLevel: optLevel, backends: ["acme.npu"], fallback: .allow), backends: backends)
        let output = try compiler.compile(model: model)
        let artifact = try Artifact(bytes: output.bytes)
        let partitions = artifact.manifest.partitions
        #expect(partitions.map(\.backend) == ["acme.npu", "kiln.reference", "acme.npu"])
        #expect(partitions.map(\.nodes) == [[0, 1], [2], [3, 4]])
        #expect(partitions[0].inputs == ["x"] && partitions[0].outputs == ["r"])
        #expect(partitions[1].inputs == ["r"] && partitions[1].outputs == ["s"])
        #expect(partitions[2].inputs == ["r", "s"] && partitions[2].outputs == ["y"])
        #expect(partitions[0].hasPayloadSection && !partitions[1].hasPayloadSection)
        #expect(artifact.manifest.partitionReport.entries.map(\.backend) == ["acme.npu", "acme.npu", "kiln.reference", "acme.npu", "acme.npu"])
        #expect(artifact.manifest.partitionReport.entries[2].reason == "rejected by acme.npu: Sigmoid is not supported; fallback kiln.reference")
        #expect(output.summary.partitions.map(\.nodes) == [2, 1, 2])
        #expect(output.summary.partitions.map(\.payloadBytes) == [10, 0, 10])

        let session = try Session(artifactBytes: output.bytes, backends: backends)
        #expect(session.partitions.count == 3 && session.backend.info.name == "acme.npu")
        #expect(session.backends.map(\.info.name) == ["acme.npu", "kiln.reference"])
        #expect(session.partitionReport.entries[2].op == "Sigmoid" && session.partitionReport.entries[2].name == "sigmoid")
        let expected = try run(Session(model: model, backend: ReferenceBackend()), inputs)
        expectClose(try run(session, inputs), expected, "artifact of 3 partitions at opt level \(optLevel)")

        // The in-memory path gives the same partitions and answers.
        let inMemory = try Session(model: model, partitioner: Partitioner(backends: ["acme.npu"], registry: backends))
        #expect(inMemory.partitions.map(\.nodes) == [[0, 1], [2], [3, 4]])
        expectClose(try run(inMemory, inputs), expected, "in-memory session of 3 partitions")
    }

    @Test func warningsAndTheDenyPolicyReachTheCompiler() throws {
        let (model, _) = Self.model()
        let backends = registry(Self.npu)
        let warned = try Compiler(options: .init(backends: ["acme.npu"]), backends: backends).compile(model: model)
        #expect(warned.summary.warnings.count == 1 && warned.summary.warnings[0].contains("1 node(s) not taken by acme.npu"))
        #expect(warned.summary.report.entries.count == 5)

        let error = #expect(throws: KilnError.self) {
            try Compiler(options: .init(backends: ["acme.npu"], fallback: .deny), backends: backends).compile(model: model)
        }
        #expect(error?.code == .unsupported && error?.message.contains("node 2 'sigmoid'") == true, "\(error?.message ?? "")")

        let denied = try Compiler(options: .init(optLevel: 0, backends: ["acme.npu"], fallback: .allow, minGroupSize: 3, deny: ["Add"]),
                                  backends: backends).compile(model: model)
        #expect(denied.summary.partitions.map(\.backend) == ["kiln.reference"])
        #expect(denied.summary.report.entries[3].reason == "denied by --deny Add; fallback kiln.reference")

        let unknown = #expect(throws: KilnError.self) {
            try Compiler(options: .init(backends: ["acme.npu", "acme.gpu"]), backends: backends).compile(model: model)
        }
        #expect(unknown?.code == .invalidArgument && unknown?.message.contains("no backend named 'acme.gpu'") == true)
    }

    @Test func aMissingBackendIsRefusedByName() throws {
        let (model, _) = Self.model()
        let bytes = try Compiler(options: .init(backends: ["acme.npu"], fallback: .allow), backends: registry(Self.npu)).compile(model: model).bytes
        let error = #expect(throws: KilnError.self) { try Session(artifactBytes: bytes, backends: registry()) }
        #expect(error?.code == .unsupported)
        for part in ["partition 0 was compiled by backend 'acme.npu' 1.0.0", "partition 2 was compiled by backend 'acme.npu'",
                     "acme.npu/1", "available: kiln.reference 0.1.0"] {
            #expect(error?.message.contains(part) == true, "\(part) not in \(error?.message ?? "")")
        }
        let newer = registry(ClaimingBackend("acme.npu", claims: Self.npu.ops, version: "2.0.0"))
        // Same compat string: a newer version loads the old payload.
        #expect(try Session(artifactBytes: bytes, backends: newer).partitions.count == 3)
    }

    @Test func partitionsThatDoNotFitTheGraphAreInvalid() throws {
        let (model, _) = Self.model()
        let bytes = try Compiler(options: .init(optLevel: 0, backends: ["acme.npu"], fallback: .allow), backends: registry(Self.npu)).compile(model: model).bytes
        let artifact = try Artifact(bytes: bytes)
        func rewritten(_ edit: (inout [Kiln_Artifact_Partition]) -> Void) throws -> [UInt8] {
            var writer = ArtifactWriter(model: try artifact.model(), manifest: artifact.manifest)
            var partitions = artifact.manifest.partitions
            for i in partitions.indices where partitions[i].hasPayloadSection {
                partitions[i].payloadSection = writer.addPayload([UInt8](try artifact.section(Int(partitions[i].payloadSection)).bytes))
            }
            edit(&partitions)
            writer.manifest.partitions = partitions
            return try writer.serialize()
        }
        #expect(try Session(artifactBytes: rewritten { _ in }, backends: registry(Self.npu)).partitions.count == 3)
        let cases: [((inout [Kiln_Artifact_Partition]) -> Void, String)] = [
            ({ $0[1].nodes = [] }, "no partition lists node 2"),
            ({ $0[1].nodes = [2, 7] }, "lists node 7, but the graph has 5 nodes"),
            ({ $0[2].nodes = [1, 3, 4] }, "lists node 1, which partition 0 also lists"),
            ({ $0.swapAt(1, 2) }, "input 's' is not a graph input, an initializer or an output of an earlier partition"),
            ({ $0[2].inputs = ["r"] }, "reads 's', which the partition neither produces nor lists as an input"),
            ({ $0[0].outputs = ["c"] }, "partition 1 (kiln.reference) input 'r' is not"),
            ({ $0[2].outputs = ["a"] }, "graph output 'y' is produced by no partition"),
        ]
        for (edit, message) in cases {
            let error = #expect(throws: KilnError.self) { try Session(artifactBytes: rewritten(edit), backends: registry(Self.npu)) }
            #expect(error?.code == .invalidArtifact && error?.message.contains(message) == true, "\(message) not in \(error?.message ?? "")")
        }
    }

    @Test func aSingleBackendCompileIsStillOnePartitionOfTheWholeGraph() throws {
        let (model, inputs) = TestModels.convBatchNorm()
        let output = try Kiln.compiler().compile(model: model)
        let artifact = try Artifact(bytes: output.bytes)
        #expect(artifact.manifest.partitions.count == 1)
        #expect(artifact.manifest.partitions[0].inputs == model.graph.inputs.map(\.name))
        #expect(artifact.manifest.partitionReport.entries.allSatisfy { $0.reason == "claimed by kiln.cpu" })
        let session = try Kiln.load(artifactBytes: output.bytes)
        expectClose(try run(session, inputs), try run(Session(model: model, backend: ReferenceBackend()), inputs), "one partition")
    }
}
