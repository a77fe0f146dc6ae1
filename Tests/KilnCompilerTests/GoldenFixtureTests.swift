import Foundation
import Kiln
import KilnTooling
import Testing
import KilnTestSupport

/// Artifacts of format 1.0 committed under Tests/Fixtures/artifacts/format-1, with their inputs and
/// expected outputs. The runtime reads every older format version, so these must load and run forever:
/// never regenerate them to make this test pass (see Tests/Fixtures/README.md). scripts/make-fixtures writes
/// them; this test only reads them.
struct GoldenFixtureTests {
    static let folder = TestPaths.inPackage("Tests/Fixtures/artifacts/format-1")

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
}
