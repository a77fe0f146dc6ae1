import Kiln
import KilnTooling
import Testing

/// Plugin ABI 1.4's `profile`: a plugin's device reports what each step of a run cost, and
/// `kiln run --profile` prints it per program, unit and layer beside kiln.cpu's steps, and in the trace.
@Suite struct PluginProfileTests {
    /// MatMul(x[2,4], W[4,3]) → Relu → Sigmoid → Add(·, b): the sample plugin runs MatMul+Relu and Add,
    /// kiln.cpu the Sigmoid between them.
    static func model() -> Model {
        let w = Tensor(shape: [4, 3], (0..<12).map { Float($0) / 10 - 0.5 })
        let b = Tensor(shape: [2, 3], [Float](repeating: 0.25, count: 6))
        let graph = Graph(name: "profiled", inputs: [f32("x", [2, 4])], outputs: [f32("y", [2, 3])], initializers: ["w": w, "b": b],
                          nodes: [node("MatMul", ["x", "w"], ["m"], name: "matmul"), node("Relu", ["m"], ["r"], name: "relu"),
                                  node("Sigmoid", ["r"], ["s"], name: "sigmoid"), node("Add", ["s", "b"], ["y"], name: "add")])
        return Model(graph: graph, opsets: ["": 21])
    }

    @Test func kilnRunProfilePrintsTheDevicesCyclesPerLayerAndTracesThem() throws {
        let plugin = try PluginBuild.sample()
        let registry = Kiln.makeRegistry()
        try PluginLoader.register(path: plugin, in: registry)
        let output = try Kiln.compiler(options: Compiler.Options(target: "sample-ksb1"), registry: registry).compile(model: Self.model())
        #expect(output.summary.partitions.map(\.backend) == ["sample.bytecode", "kiln.cpu", "sample.bytecode"])
        let folder = try temporaryDirectory("plugin-profile")
        defer { removeTemporaryDirectory(folder) }
        let artifact = folder + "/m.kiln"
        try FileSystem.writeAtomically(output.bytes, to: artifact)

        let result = try KilnTool.run(["run", artifact, "--plugin", plugin, "--random", "--profile", "--trace", folder + "/t.json"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        // The sample device's cost model (bytecode.h): a multiply-add or an output element is one cycle.
        // MatMul: 2·3 outputs × 4 = 24 cycles, Relu: 6; the second program's Add: 6. Assumed clock 1 GHz.
        let devices = lines.filter { $0.hasPrefix("device sample.bytecode") }
        #expect(devices.count == 2, "\(result.stdout)")
        #expect(devices.first?.contains("(1 run): 30 cycles per run (0.03 µs at 1 GHz)") == true, "\(devices)")
        #expect(devices.last?.contains("(1 run): 6 cycles per run") == true, "\(devices)")
        #expect(lines.contains { $0.hasSuffix("24  [0 MatMul]  core") }, "\(result.stdout)")
        #expect(lines.contains { $0.hasSuffix("6  [1 Relu]  core") }, "\(result.stdout)")
        #expect(lines.contains { $0.hasSuffix("30     100%  core") }, "\(result.stdout)")
        // kiln.cpu's steps are still there, and the partitions no profile times are none.
        #expect(lines.contains { $0.contains("Sigmoid") }, "\(result.stdout)")
        let trace = String(decoding: try FileSystem.read(folder + "/t.json"), as: UTF8.self)
        #expect(trace.contains("\"name\":\"0 MatMul\",\"cat\":\"device\""), "\(trace.prefix(2000))")
        #expect(trace.contains("sample.bytecode (device cycles)"))
    }

    @Test func aPluginWithoutProfileIsNotTimedAndAloneIsRefused() throws {
        // Built for ABI 1.3, the sample has no `profile`: its partitions are untimed, and a model that runs
        // only on it cannot be profiled.
        let plugin = try PluginBuild.sample("libkiln_sample_plugin_13", defines: ["SAMPLE_ABI_MINOR=3"])
        let registry = Kiln.makeRegistry()
        try PluginLoader.register(path: plugin, in: registry)
        let graph = Graph(name: "relu", inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3])], nodes: [node("Relu", ["x"], ["y"], name: "relu")])
        let output = try Kiln.compiler(options: Compiler.Options(target: "sample-ksb1"), registry: registry).compile(model: Model(graph: graph, opsets: ["": 21]))
        let folder = try temporaryDirectory("plugin-profile")
        defer { removeTemporaryDirectory(folder) }
        try FileSystem.writeAtomically(output.bytes, to: folder + "/m.kiln")
        let result = try KilnTool.run(["run", folder + "/m.kiln", "--plugin", plugin, "--random", "--profile"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("plugin backends that report a device profile"), "\(result.stderr)")
    }

    /// Records device profiles, as `kiln run --profile`'s recorder does.
    final class Recorder: ExecutionProfiler, @unchecked Sendable {
        var runs: [DeviceProfile] = []
        func record(_ profile: DeviceProfile) { runs.append(profile) }
    }

    @Test func aMalformedOrFailingProfileIsATypedErrorOfTheRunAndOnlyAskedForWhenProfiling() throws {
        let graph = Graph(inputs: [f32("x", [2, 2])], outputs: [f32("y", [2, 2])], nodes: [node("Relu", ["x"], ["y"])])
        let x = RuntimeValue.tensor(Tensor(shape: [2, 2], [Float](arrayLiteral: 1, 2, 3, 4)))
        for (mode, words) in [(24, "5 steps with a NULL array"), (25, "the cycle counters are gone")] {
            let plain = try #require(PluginLoader.plugin(path: PluginBuild.broken(mode: mode)).backends.first)
            #expect(plain.supportsProfile)
            // Without a profiler the callback is never called: the run succeeds.
            #expect(try plain.prepare(graph).run(["x": x]).count == 1)
            let recorder = Recorder()
            let profiled = plain.configured([:], profiler: recorder)
            let error = #expect(throws: KilnError.self) { _ = try profiled.prepare(graph).run(["x": x]) }
            #expect(error?.message.contains(words) == true && error?.message.contains("broken.backend") == true, "\(error?.message ?? "")")
            #expect(recorder.runs.isEmpty)
        }
        // The sample's profile arrives once per run, for that run's program.
        // Through the loader's one instance per library: a second CPlugin of the same .so would re-run its
        // entry point under other tests that use it (the sample keeps the host table in a global).
        let sample = try #require(PluginLoader.plugin(path: PluginBuild.sample()).backends.first)
        let recorder = Recorder()
        let executable = try sample.configured([:], profiler: recorder).prepare(graph)
        for _ in 0..<3 { _ = try executable.run(["x": x]) }
        #expect(recorder.runs.count == 3)
        #expect(recorder.runs.allSatisfy { $0.backend == "sample.bytecode" && $0.totalCycles == 4 && $0.steps == [DeviceProfile.Step(name: "0 Relu", unit: "core", startCycle: 0, cycles: 4)] })
    }
}
