import Kiln
import KilnReference
import Testing

/// A plugin's targets reach the registry: `--target` picks the vendor's backend, and what it does not run
/// falls back to the host's backends, compiled for the host.
@Suite struct PluginTargetTests {
    @Test func thePluginsTargetSelectsItsBackendAndTheHostTakesTheRest() throws {
        let registry = Kiln.makeRegistry()
        #expect(registry.targets.first == "host" && !registry.targets.contains("sample-ksb1"))
        try PluginLoader.register(path: PluginBuild.sample(), in: registry)
        #expect(registry.targets.contains("sample-ksb1"))
        let descriptor = try #require(registry.descriptor(named: "sample.bytecode"))
        #expect(descriptor.kind == .simulator && descriptor.targets == ["sample-ksb1": PluginLoader.targetPriority])

        let selection = try registry.selection(target: "sample-ksb1")
        #expect(selection.selected.map(\.info.name) == ["sample.bytecode"])
        #expect(selection.fallbacks.map(\.info.name) == ["kiln.cpu", "kiln.reference"])
        // The host target is unchanged by the plugin: it declares no `host`.
        #expect(try registry.selection().selected.map(\.info.name) == ["kiln.cpu"])

        // Relu and Add on the sample; Sigmoid (which it does not run) on kiln.cpu, compiled for the host.
        let graph = Graph(name: "mixed", inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3])],
                          nodes: [node("Relu", ["x"], ["r"], name: "relu"), node("Sigmoid", ["r"], ["s"], name: "sigmoid"),
                                  node("Add", ["s", "x"], ["y"], name: "add")])
        let model = Model(graph: graph, opsets: ["": 21])
        let output = try Kiln.compiler(options: Compiler.Options(target: "sample-ksb1"), registry: registry).compile(model: model)
        #expect(output.summary.partitions.map(\.backend) == ["sample.bytecode", "kiln.cpu", "sample.bytecode"])
        #expect(output.summary.partitions[1].compat == CPUBackend.compat(for: .host))
        #expect(output.summary.report.fallbackSummary.hasPrefix("fallback: 1 of 3 nodes on kiln.cpu: Sigmoid (rejected by sample.bytecode:"))
        let summary = try Artifact(bytes: output.bytes).summary()
        #expect(summary.targets == ["sample-ksb1"])

        let x = Tensor(shape: [2, 3], [Float](arrayLiteral: -1, 2, -3, 4, -5, 6))
        let got = try Session(artifactBytes: output.bytes, backends: registry).run(["x": .tensor(x)])
        let want = try Session(model: model, backend: ReferenceBackend()).run(["x": .tensor(x)])
        let a = try #require(got["y"]?.tensor).elements(as: Float.self), b = try #require(want["y"]?.tensor).elements(as: Float.self)
        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 }, "\(a) vs \(b)")
    }
}
