import Foundation
import Kiln
import KilnReference
import KilnFormat
import Synchronization
import Testing
@testable import KilnTestSupport

/// Compile → artifact → load → run against running the model directly, and the compiler's contract.
struct CompilerTests {
    @Test(arguments: 0...3)
    func artifactRunsLikeTheModel(optLevel: Int) throws {
        for (name, make) in TestModels.all {
            let (model, inputs) = make()
            let direct = try run(Session(model: model, backend: ReferenceBackend()), inputs)
            let output = try Kiln.compiler(options: .init(optLevel: optLevel)).compile(model: model)
            let session = try Kiln.load(artifactBytes: output.bytes)
            #expect(session.artifact != nil)
            expectClose(try run(session, inputs), direct, "\(name) at opt level \(optLevel)")
        }
    }

    @Test func bothBranchesOfASubgraphSurviveTheArtifact() throws {
        for condition in [true, false] {
            let (model, inputs) = TestModels.ifSubgraph(condition: condition)
            let bytes = try Kiln.compiler().compile(model: model).bytes
            let got = try run(Kiln.load(artifactBytes: bytes), inputs)
            let expected: [Float] = condition ? [0, 4, 0, 8] : [1.5, -2, 3, -4]
            #expect(got["y"]?.elements(as: Float.self) == expected)
        }
    }

    @Test func optimizationShrinksTheGraphAndIsReported() throws {
        let (model, _) = TestModels.convBatchNorm()
        let summary = try Kiln.compiler(options: .init(optLevel: 2)).compile(model: model).summary
        #expect(summary.nodesBefore == 6)
        #expect(summary.nodesAfter < summary.nodesBefore, "\(summary.nodesAfter) nodes after optimization")
        #expect(summary.phases.map(\.phase) == [.optimize, .partition, .compile, .write])
        #expect(Set(summary.passes.records.map(\.name)) == Set(Compiler.passNames(optLevel: 2)))
        #expect(summary.artifactBytes > 0)
        // With no backend named, the host target's optimized backend takes the whole graph.
        #expect(summary.partitions.count == 1 && summary.partitions[0].backend == CPUBackend.descriptor.info.name)
        #expect(summary.report.fallbackSummary == "fallback: none (all \(summary.report.entries.count) nodes on kiln.cpu)")

        let unoptimized = try Kiln.compiler(options: .init(optLevel: 0)).compile(model: model).summary
        #expect(unoptimized.nodesAfter == 6 && unoptimized.passes.records.isEmpty)
    }

    @Test func constantFoldingMovesTheTransposeIntoTheWeights() throws {
        let (model, _) = TestModels.largeWeight()
        let artifact = try Artifact(bytes: Kiln.compiler().compile(model: model).bytes)
        let optimized = try artifact.model()
        #expect(!optimized.graph.nodes.contains { $0.op.name == "Transpose" })
        #expect(optimized.graph.initializers["W"]?.shape == [64, 64])
        // The 16 KiB weight lives in the weights section, not inline in the manifest.
        #expect(artifact.sections[1].kind == .weights && artifact.sections[1].rawLength >= 64 * 64 * 4)
    }

    @Test func manifestRecordsWhatWasCompiled() throws {
        let (model, _) = TestModels.addRelu()
        let source = SourceInfo(format: "onnx", sha256: SHA256.hash(Array("model".utf8)), fileName: "add_relu.onnx", byteCount: 5)
        let options = Compiler.Options(optLevel: 3, metadata: ["owner": "tests", "purpose": "manifest"])
        let artifact = try Artifact(bytes: Kiln.compiler(options: options).compile(model: model, source: source).bytes)
        let m = artifact.manifest
        #expect(m.producer.name == "kiln" && m.producer.version == Kiln.version)
        #expect(m.source.format == "onnx" && m.source.fileName == "add_relu.onnx")
        #expect(Array(m.source.sha256) == source.sha256)
        #expect(m.targets.map(\.name) == ["host"])
        #expect(m.optLevel == 3)
        #expect(m.userMetadata == ["owner": "tests", "purpose": "manifest"])
        #expect(m.inputs.map(\.name) == ["x", "y"] && m.outputs.map(\.name) == ["sum", "relu"])
        #expect(m.partitions.count == 1)
        #expect(m.partitions[0].backend == "kiln.cpu" && m.partitions[0].compat == CPUBackend.compat(for: .host))
        #expect(m.partitions[0].nodes == [0, 1] && m.partitions[0].hasPayloadSection)
        #expect(m.partitionReport.entries.map(\.node) == [0, 1])
        #expect(m.partitionReport.entries.allSatisfy { $0.backend == "kiln.cpu" && $0.reason == "claimed by kiln.cpu" })
    }

    @Test func compileIsDeterministic() throws {
        let (model, _) = TestModels.convBatchNorm()
        #expect(try Kiln.compiler().compile(model: model).bytes == Kiln.compiler().compile(model: model).bytes)
    }

    @Test func unsupportedOpsAreListedAtOnce() throws {
        var (model, _) = TestModels.addRelu()
        model.graph.nodes.append(node("FancyOp", ["relu"], ["fancy"], name: "fancy1"))
        model.graph.nodes.append(Node(name: "tree", op: OpID("acme", "Tree"), inputs: ["relu"], outputs: ["tree"]))
        model.graph.outputs += [f32("fancy", [2, 3]), f32("tree", [2, 3])]
        let error = #expect(throws: KilnError.self) { try Kiln.compiler().compile(model: model) }
        #expect(error?.code == .unsupported)
        #expect(error?.message.contains("(ai.onnx, FancyOp, 23) at nodes: fancy1") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("(acme, Tree, ?) at nodes: tree") == true, "\(error?.message ?? "")")
    }

    @Test func badOptionsAreRefused() throws {
        let (model, _) = TestModels.addRelu()
        let cases: [(Compiler.Options, String)] = [
            (.init(optLevel: 4), "optimization level 4"),
            (.init(target: "mars"), "unknown target 'mars'"),
            (.init(backends: ["acme.npu"]), "no backend named 'acme.npu'"),
            (.init(printIRAfter: ["nonsense"]), "no such pass"),
            (.init(optLevel: 0, printIRAfter: ["dce"]), "no such pass at opt level 0"),
        ]
        for (options, message) in cases {
            let error = #expect(throws: KilnError.self) { try Kiln.compiler(options: options).compile(model: model) }
            #expect(error?.code == .invalidArgument && error?.message.contains(message) == true, "\(error?.message ?? "")")
        }
    }

    @Test func printsIRAfterTheNamedPass() throws {
        let (model, _) = TestModels.convBatchNorm()
        let printed = Mutex<[String]>([])
        let compiler = Kiln.compiler(options: .init(printIRAfter: ["bn-folding"]),
                                     irPrinter: { pass, text in printed.withLock { $0.append("\(pass)\n\(text)") } })
        _ = try compiler.compile(model: model)
        let dumps = printed.withLock { $0 }
        #expect(!dumps.isEmpty && dumps.allSatisfy { $0.hasPrefix("bn-folding\n") })
        #expect(dumps.first?.contains("BatchNormalization") == false)
    }

    @Test func progressReportsEachPhaseInOrder() throws {
        let (model, _) = TestModels.addRelu()
        let seen = Mutex<[(Compiler.Phase, Duration)]>([])
        _ = try Kiln.compiler(progress: { p in seen.withLock { $0.append((p.phase, p.elapsed)) } }).compile(model: model)
        let events = seen.withLock { $0 }
        #expect(events.map(\.0) == [.optimize, .partition, .compile, .write])
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.1 <= $1.1 })
    }

    @Test func compilesAnONNXFileAndRecordsItsHash() throws {
        let folder = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/add_relu.onnx"
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: path)
        let output = try Kiln.compile(onnxPath: path)
        let fileBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(output.summary.sourceBytes == fileBytes.count)
        #expect(output.summary.phases.first?.phase == .import)
        let artifact = try Artifact(bytes: output.bytes)
        #expect(Array(artifact.manifest.source.sha256) == SHA256.hash(fileBytes))
        #expect(artifact.manifest.source.fileName == "add_relu.onnx" && artifact.manifest.source.format == "onnx")
    }
}

/// Loading artifacts: by contents not by name, from memory, and refusing what this runtime cannot run.
struct LoadTests {
    @Test func loadRecognizesArtifactsByTheirMagicNotTheirName() throws {
        let folder = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (model, inputs) = TestModels.addRelu()
        let bytes = try Kiln.compiler().compile(model: model).bytes
        for name in ["a.kiln", "misnamed.onnx", "no_extension"] {
            try Data(bytes).write(to: URL(fileURLWithPath: "\(folder)/\(name)"))
            #expect(try Kiln.isArtifact(path: "\(folder)/\(name)"))
            let session = try Kiln.load(path: "\(folder)/\(name)")
            #expect(session.artifact?.origin == "\(folder)/\(name)")
            #expect(try run(session, inputs)["relu"]?.elements(as: Float.self) == [1.5, 0, 3.5, 0, 5.5, 0])
        }
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: folder + "/really.kiln")
        #expect(try !Kiln.isArtifact(path: folder + "/really.kiln"))
        #expect(try Kiln.load(path: folder + "/really.kiln").artifact == nil)
    }

    @Test func loadFromMemoryValidatesInputsLikeASession() throws {
        let (model, inputs) = TestModels.addRelu()
        let session = try Kiln.load(artifactBytes: Kiln.compiler().compile(model: model).bytes)
        #expect(session.requiredInputs.map(\.name) == ["x", "y"])
        let wrongShape = #expect(throws: KilnError.self) {
            try session.run(["x": .tensor(Tensor(shape: [3, 2], [Float](repeating: 0, count: 6))), "y": .tensor(inputs["y"]!)])
        }
        #expect(wrongShape?.code == .invalidArgument && wrongShape?.message.contains("input 'x'") == true)
        let missing = #expect(throws: KilnError.self) { try session.run(["x": .tensor(inputs["x"]!)]) }
        #expect(missing?.message.contains("input 'y' is missing") == true)
    }

    @Test func missingBackendIsReportedByNameVersionAndWhatIsAvailable() throws {
        let (model, _) = TestModels.addRelu()
        let registry = BackendRegistry()
        registry.register(RenamedBackend(name: "acme.npu", version: "2.1.0", compat: "acme.npu/isa-7"))
        let bytes = try Compiler(options: .init(backends: ["acme.npu"]), backends: registry).compile(model: model).bytes
        let artifact = try Artifact(bytes: bytes)
        #expect(artifact.manifest.partitions[0].hasPayloadSection)

        let error = #expect(throws: KilnError.self) { try Kiln.load(artifactBytes: bytes) }
        #expect(error?.code == .unsupported)
        for part in ["'acme.npu'", "2.1.0", "acme.npu/isa-7", "available: kiln.cpu 0.1.0, kiln.gpu 0.1.0, kiln.reference 0.1.0"] {
            #expect(error?.message.contains(part) == true, "\(part) not in: \(error?.message ?? "")")
        }
        // With the backend present it loads and runs, from its payload.
        let session = try Session(artifactBytes: bytes, backends: registry)
        #expect(session.backend.info.name == "acme.npu")
    }

    @Test func incompatiblePayloadIsAVersionMismatch() throws {
        let (model, _) = TestModels.addRelu()
        let old = BackendRegistry()
        old.register(RenamedBackend(name: "acme.npu", version: "1.0.0", compat: "acme.npu/isa-5"))
        let bytes = try Compiler(options: .init(backends: ["acme.npu"]), backends: old).compile(model: model).bytes
        let newer = BackendRegistry()
        newer.register(RenamedBackend(name: "acme.npu", version: "3.0.0", compat: "acme.npu/isa-7"))
        let error = #expect(throws: KilnError.self) { try Session(artifactBytes: bytes, backends: newer) }
        #expect(error?.code == .versionMismatch)
        for part in ["'acme.npu' 1.0.0", "acme.npu/isa-5", "acme.npu 3.0.0", "reads 'acme.npu/isa-7' only"] {
            #expect(error?.message.contains(part) == true, "\(part) not in: \(error?.message ?? "")")
        }
    }

    @Test func referenceBackendChecksItsCompatString() {
        let reference = ReferenceBackend()
        #expect(reference.check(compat: "kiln.reference/1") == nil)
        #expect(reference.check(compat: "kiln.reference/2")?.contains("'kiln.reference/1'") == true)
        #expect(throws: KilnError.self) { try reference.load([1, 2, 3], graph: Graph()) }
    }

    @Test func askingForAnotherBackendThanTheArtifactsIsAnError() throws {
        let (model, _) = TestModels.addRelu()
        let bytes = try Kiln.compiler().compile(model: model).bytes
        let error = #expect(throws: KilnError.self) { try Kiln.load(artifactBytes: bytes, backend: "kiln.reference") }
        #expect(error?.code == .invalidArgument && error?.message.contains("compiled for backend kiln.cpu") == true)
        #expect(try Kiln.load(artifactBytes: bytes, backend: "kiln.cpu").backend.info.name == "kiln.cpu")
    }

    @Test func aGraphThatDoesNotVerifyIsRefused() throws {
        let (model, _) = TestModels.addRelu()
        var writer = ArtifactWriter(model: model)
        var broken = model
        broken.graph.nodes[1].inputs = ["undefined"]
        writer.model = broken
        var partition = Kiln_Artifact_Partition()
        partition.backend = "kiln.reference"
        partition.compat = "kiln.reference/1"
        partition.nodes = [0, 1]
        writer.manifest.partitions = [partition]
        let error = #expect(throws: KilnError.self) { try Kiln.load(artifactBytes: writer.serialize()) }
        #expect(error?.code == .invalidArtifact && error?.message.contains("graph is invalid") == true, "\(error?.message ?? "")")
    }

    @Test func anArtifactWithoutPartitionsIsRefused() throws {
        let (model, _) = TestModels.addRelu()
        let error = #expect(throws: KilnError.self) { try Kiln.load(artifactBytes: ArtifactWriter(model: model).serialize()) }
        #expect(error?.code == .unsupported && error?.message.contains("0 partitions") == true)
    }
}

/// The SHA-256 the manifest's source hash uses, against FIPS 180-4 test vectors.
struct SHA256Tests {
    @Test func knownVectors() {
        #expect(SHA256.hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func updatesInPiecesEqualOneHash() {
        let message = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for split in [0, 1, 55, 56, 63, 64, 65, 500, 999, 1000] {
            var h = SHA256()
            message[..<split].withUnsafeBytes { h.update($0) }
            message[split...].withUnsafeBytes { h.update($0) }
            #expect(h.finalize() == SHA256.hash(message), "split at \(split)")
        }
    }
}

/// How the compiler chooses to store sections.
struct CompressionTests {
    @Test func autoStoresIncompressibleWeightsAsIsAndCompressibleOnesPacked() throws {
        // Random floats barely compress: auto keeps them uncompressed (usable in place when mapped).
        let (model, inputs) = TestModels.largeWeight()
        let auto = try Artifact(bytes: Kiln.compiler(options: .init(compression: .auto)).compile(model: model).bytes)
        #expect(auto.sections.allSatisfy { $0.codec == SectionCodec.none })
        let zstd = try Artifact(bytes: Kiln.compiler(options: .init(compression: .zstd)).compile(model: model).bytes)
        #expect(zstd.sections[0].codec == .zstd)
        // Zeros compress to almost nothing: auto packs them.
        var zeros = model
        zeros.graph.initializers["Wt"] = Tensor(zeros: .float32, shape: [64, 64])
        let packed = try Artifact(bytes: Kiln.compiler(options: .init(compression: .auto)).compile(model: zeros).bytes)
        #expect(packed.sections[1].codec == .zstd)
        for artifact in [auto, zstd] {
            let session = try Session(artifact: artifact, backends: Kiln.backends)
            expectClose(try run(session, inputs), try run(Session(model: model, backend: ReferenceBackend()), inputs), "compressed or not")
        }
    }
}
