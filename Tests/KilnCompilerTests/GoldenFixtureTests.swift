import Foundation
import Kiln
import KilnTooling
import Testing

/// Artifacts of format 1.0 committed under Tests/Fixtures/artifacts/format-1, with their inputs and
/// expected outputs. The runtime reads every older format version, so these must load and run forever:
/// never regenerate them to make this test pass (see Tests/Fixtures/README.md).
struct GoldenFixtureTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/artifacts/format-1").path

    /// The fixtures: the Swift-built models of `TestModels` (a plain graph, a subgraph, a large weight,
    /// a graph optimization rewrote), compiled at opt level 2.
    static let names = ["add_relu", "if_subgraph", "large_weight", "conv_bn"]

    @Test(arguments: names)
    func fixtureLoadsAndRunsToItsExpectedOutputs(name: String) throws {
        let path = "\(Self.folder)/\(name).kiln"
        #expect(try Kiln.isArtifact(path: path))
        let session = try Kiln.load(path: path)
        let artifact = try #require(session.artifact)
        #expect(artifact.formatVersion.major == 1 && artifact.formatVersion.minor == 0)
        #expect(artifact.manifest.producer.name == "kiln")
        #expect(artifact.manifest.partitions.map(\.compat) == ["kiln.reference/1"])

        let data = "\(Self.folder)/\(name)"
        let files = try FileManager.default.contentsOfDirectory(atPath: data).sorted()
        var inputs: [String: Tensor] = [:]
        var expected: [String: Tensor] = [:]
        for file in files where file.hasSuffix(".npy") {
            let tensor = try NPY.read(path: "\(data)/\(file)")
            let stem = String(file.dropLast(4))
            if stem.hasPrefix("input.") { inputs[String(stem.dropFirst(6))] = tensor }
            if stem.hasPrefix("output.") { expected[String(stem.dropFirst(7))] = tensor }
        }
        #expect(!inputs.isEmpty && !expected.isEmpty, "no inputs or outputs in \(data)")
        expectClose(try run(session, inputs), expected, tolerance: 1e-5, "fixture \(name)")
    }

    @Test func theLargeWeightLivesInTheWeightsSection() throws {
        let artifact = try Artifact(path: "\(Self.folder)/large_weight.kiln")
        #expect(artifact.sections[1].kind == .weights && artifact.sections[1].rawLength >= 64 * 64 * 4)
        let model = try artifact.model()
        #expect(model.graph.initializers["W"]?.shape == [64, 64])
    }

    @Test func theSubgraphFixtureKeepsItsBranches() throws {
        let model = try Artifact(path: "\(Self.folder)/if_subgraph.kiln").model()
        #expect(model.graph.nodes.map(\.op.name) == ["If"])
        #expect(model.graph.nodes[0].subgraphs.count == 2)
    }

    /// Writes the fixtures. Runs only with KILN_WRITE_FIXTURES=1 — once, when a new format version is
    /// released (into a new format-N folder); format-1 files are never rewritten.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KILN_WRITE_FIXTURES"] == "1"))
    func writeFixtures() throws {
        try FileManager.default.createDirectory(atPath: Self.folder, withIntermediateDirectories: true)
        for (name, make) in TestModels.all {
            // Existing fixtures are history: never overwrite them.
            guard !FileManager.default.fileExists(atPath: "\(Self.folder)/\(name).kiln") else { continue }
            let (model, inputs) = make()
            let output = try Kiln.compiler(options: .init(metadata: ["fixture": name]))
                .compile(model: model, source: SourceInfo(format: "kiln-ir", fileName: "\(name) (Tests/KilnCompilerTests/Support.swift)"))
            try Data(output.bytes).write(to: URL(fileURLWithPath: "\(Self.folder)/\(name).kiln"))
            let data = "\(Self.folder)/\(name)"
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            for (input, tensor) in inputs { try NPY.write(tensor, to: "\(data)/input.\(input).npy") }
            let outputs = try run(Session(model: model, backend: Kiln.backend(named: "kiln.reference")), inputs)
            for (out, tensor) in outputs { try NPY.write(tensor, to: "\(data)/output.\(out).npy") }
        }
    }
}
