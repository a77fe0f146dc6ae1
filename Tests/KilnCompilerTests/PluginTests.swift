import Foundation
import Kiln
import KilnReference
import KilnTooling
@testable import KilnTestSupport
import Testing

/// The C plugin ABI end to end: the sample vendor plugin (bindings/c/examples/vendor-plugin) built with cc,
/// loaded by path, compiling and running models; version refusal; misbehaving plugins; two plugins at once.
@Suite(.serialized) struct PluginTests {
    /// Conv → Relu → MatMul (batched) + Gemm → Add → Relu: every node one the sample claims.
    static func convolutionModel() -> (Model, [String: Tensor]) {
        var random = TestRandom(state: 7)
        let graph = Graph(
            name: "sample_ops",
            inputs: [f32("x", [1, 2, 6, 6]), f32("y", [6, 8])],
            outputs: [f32("out", [1, 4, 6, 5])],
            initializers: ["W": random.tensor([4, 2, 3, 3]), "B": random.tensor([4]), "M": random.tensor([6, 5]),
                           "G": random.tensor([5, 8]), "C": random.tensor([5])],
            nodes: [
                node("Conv", ["x", "W", "B"], ["conv"], ["pads": .ints([1, 1, 1, 1]), "kernel_shape": .ints([3, 3])], name: "conv"),
                node("Relu", ["conv"], ["act"], name: "relu1"),
                node("MatMul", ["act", "M"], ["mm"], name: "matmul"),
                node("Gemm", ["y", "G", "C"], ["gemm"], ["transB": .int(1), "alpha": .float(0.5)], name: "gemm"),
                node("Add", ["mm", "gemm"], ["sum"], name: "add"),
                node("Relu", ["sum"], ["out"], name: "relu2"),
            ])
        return (Model(graph: graph, opsets: ["": 21]), ["x": random.tensor([1, 2, 6, 6]), "y": random.tensor([6, 8])])
    }

    static func registry(with paths: [String]) throws -> BackendRegistry {
        let registry = Kiln.makeRegistry()
        for path in paths { try PluginLoader.register(path: path, in: registry) }
        return registry
    }

    static func reference(_ model: Model, _ inputs: [String: Tensor]) throws -> [String: RuntimeValue] {
        try Session(model: model, backend: ReferenceBackend()).run(inputs.mapValues { .tensor($0) })
    }

    static func expectClose(_ a: Tensor?, _ b: Tensor?, tolerance: Float = 1e-4) {
        guard let a, let b else { Issue.record("missing tensor"); return }
        #expect(a.shape == b.shape)
        let x = a.elements(as: Float.self), y = b.elements(as: Float.self)
        #expect(x.count == y.count)
        let worst = zip(x, y).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst <= tolerance, "largest relative difference \(worst)")
    }

    @Test func theSampleLoadsByPathAndExportsOnlyItsEntry() throws {
        let plugin = try PluginLoader.plugin(path: PluginBuild.sample())
        #expect(plugin.name == "kiln-sample-plugin")
        #expect(plugin.abiVersion.major == 1)
        #expect(plugin.backends.map(\.info.name) == ["sample.bytecode"])
        #expect(plugin.exports("kiln_plugin_query_v1"))
        #expect(!plugin.exports("kiln__ir__graph__unpack"))
        #expect(!plugin.exports("bc_run"))
        // Loading the same file again gives the same plugin (its entry runs once).
        #expect(try PluginLoader.plugin(path: PluginBuild.sample()) === plugin)
    }

    @Test func aModelOfClaimedOpsCompilesRunsAndMatchesTheReference() throws {
        let (model, inputs) = Self.convolutionModel()
        let registry = try Self.registry(with: [PluginBuild.sample()])
        let compiler = Compiler(options: Compiler.Options(backends: ["sample.bytecode"]), backends: registry)
        let output = try compiler.compile(model: model)
        #expect(output.summary.partitions.map(\.backend) == ["sample.bytecode"])
        #expect(output.summary.partitions[0].payloadBytes > 4 * (72 + 4 + 30 + 40 + 5))
        #expect(output.summary.partitions[0].compat == "sample.bytecode/ksb1")
        let session = try Session(artifactBytes: output.bytes, backends: registry)
        let got = try session.run(inputs.mapValues { .tensor($0) })
        let want = try Self.reference(model, inputs)
        Self.expectClose(got["out"]?.tensor, want["out"]?.tensor)
    }

    @Test func claimGivesAReasonForEveryNodeItRejects() throws {
        let backend = try #require(PluginLoader.load(path: PluginBuild.sample()).first)
        let graph = Graph(inputs: [f32("x", [2, 3]), Value(name: "i", type: .tensor(TensorType(.int64, fixed: [2, 3])))],
                          outputs: [f32("s", [2, 3]), Value(name: "j", type: .tensor(TensorType(.int64, fixed: [2, 3])))],
                          nodes: [node("Relu", ["x"], ["r"]), node("Sigmoid", ["r"], ["s"]), node("Add", ["i", "i"], ["j"]),
                                  Node(name: "custom", op: OpID("acme", "Thing"), inputs: ["x"], outputs: ["t"])])
        let rejections = backend.rejections(in: graph)
        #expect(rejections.map(\.node) == [1, 2, 3])
        #expect(rejections[0].reason.contains("Sigmoid"))
        #expect(rejections[1].reason.contains("float32"))
        #expect(rejections[2].reason.contains("acme"))
        #expect(backend.rejections(in: Graph()).isEmpty)
    }

    @Test func zeroSizeTensorsAndRepeatedLoadsWork() throws {
        let backend = try #require(PluginLoader.load(path: PluginBuild.sample()).first)
        let graph = Graph(inputs: [Value(name: "x", type: .tensor(TensorType(.float32, [.symbol("n"), .fixed(3)]))), f32("b", [3])],
                          outputs: [Value(name: "y")], nodes: [node("Add", ["x", "b"], ["s"]), node("Relu", ["s"], ["y"])])
        let payload = try backend.compile(graph, options: CompileOptions())
        for _ in 0..<50 {
            let executable = try backend.load(payload.bytes, graph: graph)
            let out = try executable.run(["x": .tensor(Tensor(shape: [0, 3], [Float]())), "b": .tensor(Tensor(shape: [3], [Float](arrayLiteral: 1, 2, 3)))])
            #expect(out.first?.tensor?.shape == [0, 3])
        }
        let executable = try backend.load(payload.bytes, graph: graph)
        let out = try executable.run(["x": .tensor(Tensor(shape: [2, 3], [Float](arrayLiteral: -5, 0, 1, 2, -9, 4))),
                                      "b": .tensor(Tensor(shape: [3], [Float](arrayLiteral: 1, 2, 3)))])
        #expect(out.first?.tensor?.elements(as: Float.self) == [0, 2, 4, 3, 0, 7])
    }

    @Test func garbagePayloadsAndForeignCompatStringsAreRefused() throws {
        let backend = try #require(PluginLoader.load(path: PluginBuild.sample()).first)
        let graph = Graph(inputs: [f32("x", [2])], outputs: [f32("y", [2])], nodes: [node("Relu", ["x"], ["y"])])
        let payload = try backend.compile(graph, options: CompileOptions())
        #expect(backend.check(compat: payload.compat) == nil)
        #expect(backend.check(compat: "sample.bytecode/ksb0")?.contains("ksb0") == true)
        for garbage in [[UInt8](), [UInt8](repeating: 0xA5, count: 64), Array(payload.bytes.dropLast(3)), Array("KSB1".utf8) + [255, 255, 255, 255]] {
            #expect(throws: KilnError.self) { _ = try backend.load(garbage, graph: graph) }
        }
        // Every truncation of a real payload is an error, never a crash.
        for length in stride(from: 0, to: payload.bytes.count, by: 3) {
            #expect(throws: KilnError.self) { _ = try backend.load(Array(payload.bytes.prefix(length)), graph: graph) }
        }
    }

    @Test func executeErrorsAreCleanKilnErrors() throws {
        let backend = try #require(PluginLoader.load(path: PluginBuild.sample()).first)
        let graph = Graph(inputs: [f32("a", [2, 3]), f32("b", [4, 5])], outputs: [f32("y", [2, 5])], nodes: [node("MatMul", ["a", "b"], ["y"])])
        let executable = try backend.prepare(graph)
        let error = #expect(throws: KilnError.self) {
            _ = try executable.run(["a": .tensor(Tensor(zeros: .float32, shape: [2, 3])), "b": .tensor(Tensor(zeros: .float32, shape: [4, 5]))])
        }
        #expect(error?.code == .runtime)
        #expect(error?.message.contains("sample.bytecode") == true)
        #expect(error?.message.contains("execute") == true)
        #expect(error?.message.contains("inner dims") == true)
    }

    @Test func aPluginOfAnotherABIMajorIsRefusedNamingBothVersionsAndItsPath() throws {
        let entryV2 = try PluginBuild.sample("libsample_abi2", defines: ["SAMPLE_ABI_MAJOR=2"])
        let error = #expect(throws: KilnError.self) { _ = try PluginLoader.plugin(path: entryV2) }
        #expect(error?.code == .versionMismatch)
        #expect(error?.message.contains(entryV2) == true)
        #expect(error?.message.contains("plugin ABI 2") == true)
        #expect(error?.message.contains("1.0 to 1.5") == true)

        let headerV2 = try PluginBuild.sample("libsample_header2", defines: ["SAMPLE_HEADER_ABI_MAJOR=2"])
        let error2 = #expect(throws: KilnError.self) { _ = try PluginLoader.plugin(path: headerV2) }
        #expect(error2?.code == .versionMismatch)
        #expect(error2?.message.contains(headerV2) == true)
        #expect(error2?.message.contains("plugin ABI 2.") == true)
        #expect(error2?.message.contains("1.0 to 1.5") == true)
    }

    @Test func aLibraryThatIsNotAPluginIsRefused() throws {
        let error = #expect(throws: KilnError.self) { _ = try PluginLoader.plugin(path: "/nonexistent/libnothing.so") }
        #expect(error?.code == .io)
        let libc = #expect(throws: KilnError.self) { _ = try PluginLoader.plugin(path: "libc.so.6") }
        #expect(libc?.message.contains("kiln_plugin_query_v1") == true)
    }

    @Test(arguments: [
        (1, "claim", "NULL supported"), (2, "compile", "the compiler exploded"), (3, "compile", "NULL payload"),
        (4, "load", "without an executable"), (5, "execute", "caught fire"), (6, "execute", "data NULL"),
        (9, "execute", "did not make"), (10, "execute", "host->alloc did not return"), (12, "claim", "without a reason"),
    ])
    func misbehavingCallbacksBecomeKilnErrors(mode: Int, callback: String, words: String) throws {
        let path = try PluginBuild.broken(mode: mode)
        let backend = try #require(PluginLoader.plugin(path: path).backends.first)
        let graph = Graph(inputs: [f32("x", [2, 2])], outputs: [f32("y", [2, 2])], nodes: [node("Relu", ["x"], ["y"])])
        let error = #expect(throws: KilnError.self) {
            if callback == "claim" { _ = try backend.claim(graph); return }
            let executable = try backend.prepare(graph)
            _ = try executable.run(["x": .tensor(Tensor(zeros: .float32, shape: [2, 2]))])
        }
        #expect(error?.message.contains(words) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains(callback) == true)
        #expect(error?.message.contains("broken.backend") == true)
        if callback == "claim" {
            // A failing claim rejects every node, with the error as the reason.
            #expect(backend.rejections(in: graph).map(\.node) == [0])
        }
    }

    @Test(arguments: [(7, "no header"), (8, "frozen prefix"), (11, "NULL callbacks: execute")])
    func malformedHeadersAreRefused(mode: Int, words: String) throws {
        let path = try PluginBuild.broken(mode: mode)
        let error = #expect(throws: KilnError.self) { _ = try PluginLoader.plugin(path: path) }
        #expect(error?.message.contains(words) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains(path) == true)
    }

    @Test func theCorrectBrokenPluginRunsAndItsOutputsAreAdopted() throws {
        let backend = try #require(PluginLoader.plugin(path: PluginBuild.broken(mode: 0)).backends.first)
        let graph = Graph(inputs: [f32("x", [2, 2])], outputs: [f32("y", [2, 2]), f32("z", [2, 2])], nodes: [node("Relu", ["x"], ["y"]), node("Relu", ["x"], ["z"])])
        let out = try backend.prepare(graph).run(["x": .tensor(Tensor(shape: [2, 2], [Float](arrayLiteral: 1, 2, 3, 4)))])
        #expect(out.map { $0.tensor?.elements(as: Float.self) ?? [] } == [[1, 2, 3, 4], [1, 2, 3, 4]])
    }

    @Test func twoPluginsLoadedAtOnceDoNotInterfere() throws {
        let one = try PluginBuild.sample("libsample_one", defines: ["SAMPLE_BACKEND_NAME=\"sample.one\"", "SAMPLE_PLUGIN_NAME=\"sample-one\""])
        let two = try PluginBuild.sample("libsample_two", defines: ["SAMPLE_BACKEND_NAME=\"sample.two\"", "SAMPLE_PLUGIN_NAME=\"sample-two\""])
        let registry = try Self.registry(with: [one, two])
        let a = try #require(registry.backend(named: "sample.one")), b = try #require(registry.backend(named: "sample.two"))
        let (model, inputs) = Self.convolutionModel()
        let want = try Self.reference(model, inputs)
        var payloads: [Payload] = []
        for backend in [a, b] {
            let payload = try backend.compile(model.graph, options: CompileOptions())
            payloads.append(payload)
            let got = try backend.load(payload.bytes, graph: model.graph).run(inputs.mapValues { .tensor($0) })
            Self.expectClose(got.first?.tensor, want["out"]?.tensor)
        }
        // Each copy keeps its own identity: its compat string, refused by the other.
        #expect(payloads.map(\.compat) == ["sample.one/ksb1", "sample.two/ksb1"])
        #expect(a.check(compat: payloads[1].compat) != nil)
        #expect(b.check(compat: payloads[0].compat) != nil)
        // And artifacts compiled for each run side by side through one registry.
        for name in ["sample.one", "sample.two"] {
            let output = try Compiler(options: Compiler.Options(backends: [name]), backends: registry).compile(model: model)
            let got = try Session(artifactBytes: output.bytes, backends: registry).run(inputs.mapValues { .tensor($0) })
            Self.expectClose(got["out"]?.tensor, want["out"]?.tensor)
        }
    }

    @Test func discoveryReadsFilesAndFoldersFromThePluginPath() throws {
        let sample = try PluginBuild.sample()
        let folder = URL(fileURLWithPath: sample).deletingLastPathComponent().path
        let paths = PluginLoader.discoveredPaths(environment: "\(folder):/nonexistent:\(sample)")
        #expect(paths.contains(sample))
        #expect(paths.filter { $0 == sample }.count == 2)
        let registry = BackendRegistry()
        let result = PluginLoader.discover(into: registry, environment: sample + ":" + (try PluginBuild.broken(mode: 8)))
        #expect(result.backends == ["sample.bytecode"])
        #expect(result.failures.count == 1)
    }
}

/// The plugin inside a partitioned compile: its groups beside the fallback backend's, and `kiln plugin-check`.
@Suite(.serialized) struct PluginPartitionTests {
    @Test func aMixedModelPartitionsBetweenThePluginAndTheFallback() throws {
        var (model, inputs) = PluginTests.convolutionModel()
        // Sigmoid (which the sample does not claim) between the two halves.
        model.graph.nodes.insert(node("Sigmoid", ["act"], ["act_s"], name: "sigmoid"), at: 2)
        model.graph.nodes[3].inputs[0] = "act_s"
        let registry = try PluginTests.registry(with: [PluginBuild.sample()])
        let options = Compiler.Options(optLevel: 1, backends: ["sample.bytecode"], fallback: .allow)
        let output = try Compiler(options: options, backends: registry).compile(model: model)
        let report = output.summary.report.entries
        #expect(Set(report.map(\.backend)).contains("sample.bytecode"))
        let sigmoid = try #require(report.first { $0.op.contains("Sigmoid") })
        #expect(["kiln.reference", "kiln.cpu"].contains(sigmoid.backend))
        #expect(report.filter { $0.backend == "sample.bytecode" }.count == model.graph.nodes.count - 1)
        #expect(output.summary.partitions.filter { $0.backend == "sample.bytecode" }.count >= 1)
        #expect(output.summary.partitions.contains { $0.backend != "sample.bytecode" })
        let got = try Session(artifactBytes: output.bytes, backends: registry).run(inputs.mapValues { .tensor($0) })
        let want = try PluginTests.reference(model, inputs)
        PluginTests.expectClose(got["out"]?.tensor, want["out"]?.tensor)
    }

    @Test func pluginCheckPassesOnTheSampleAndFailsOnABrokenPlugin() throws {
        let good = try KilnTool.run(["plugin-check", PluginBuild.sample()])
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        #expect(good.stdout.contains("0 failed"))
        #expect(good.stdout.contains("Conv: load and execute vs kiln.reference"))
        #expect(!good.stdout.contains("FAIL"))
        // The plugin ABI 1.2 checks: devices, selection, buffers.
        for row in ["sample.bytecode: devices ", "2 device(s): #0 simulator: sample device 0", "sample.bytecode: targets ", "sample-ksb1",
                    "load and execute on each device", "a device index out of range is refused",
                    "device buffers: upload and download on each device", "execute on buffers, outputs left on the device",
                    "device buffers: reads and writes out of range are refused"] {
            #expect(good.stdout.contains(row), "missing: \(row)")
        }
        for mode in [6, 12, 8] {
            let bad = try KilnTool.run(["plugin-check", PluginBuild.broken(mode: mode)])
            #expect(bad.status == 1, "mode \(mode): \(bad.stdout)\(bad.stderr)")
            #expect(bad.stdout.contains("FAIL"))
        }
    }

    /// The rows of a plugin-check table whose result is `result`, as check names.
    static func rows(_ stdout: String, _ result: String) -> [String] {
        stdout.split(separator: "\n").compactMap { line -> String? in
            guard let range = line.range(of: "  \(result)  ") else { return nil }
            return line[..<range.lowerBound].trimmingCharacters(in: .whitespaces)
        }
    }

    @Test func pluginCheckReportsACrashingPluginAsFailedChecksAndCarriesOn() throws {
        // execute dereferences NULL: each check that executes fails with SIGSEGV; the others still run.
        let segfault = try KilnTool.run(["plugin-check", PluginBuild.broken(mode: 13)])
        #expect(segfault.status == 1, "\(segfault.stdout)\(segfault.stderr)")
        #expect(Self.rows(segfault.stdout, "FAIL").contains("broken.backend: Relu: load and execute vs kiln.reference"), "\(segfault.stdout)")
        #expect(segfault.stdout.contains("the plugin crashed with signal 11 (SIGSEGV"))
        // Checks after the crashes ran: the last probe's and the device checks.
        #expect(Self.rows(segfault.stdout, "PASS").contains("broken.backend: Softmax: check own and foreign compat"))
        #expect(Self.rows(segfault.stdout, "PASS").contains("broken.backend: devices"))
        #expect(segfault.stdout.contains("checks:"))
        // Checks that never execute pass as they would in process.
        #expect(Self.rows(segfault.stdout, "PASS").contains("broken.backend: Relu: compile"))

        // claim aborts: the claim checks fail with SIGABRT, and nothing depends on a claim that crashed.
        let abort = try KilnTool.run(["plugin-check", PluginBuild.broken(mode: 14)])
        #expect(abort.status == 1)
        #expect(Self.rows(abort.stdout, "FAIL") == ["broken.backend: claim rejects an unknown op and a string tensor", "broken.backend: claim on probe graphs",
                                                    "broken.backend: devices: a probe op to run on them"], "\(abort.stdout)")
        #expect(abort.stdout.contains("SIGABRT"))
        #expect(!abort.stdout.contains("child process"))

        // In process, the same plugin takes the checker down: that is what the child process is for. (In a
        // sanitized build the sanitizer would catch the SIGABRT and exit with 1: let the signal through.)
        var signalsThrough: [String: String] = [:]
        for name in ["ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"] {
            let given = ProcessInfo.processInfo.environment[name].map { $0.isEmpty ? "" : $0 + ":" } ?? ""
            signalsThrough[name] = given + "handle_segv=0:handle_sigbus=0:handle_abort=0"
        }
        let inProcess = try KilnTool.run(["plugin-check", "--no-isolated", PluginBuild.broken(mode: 14)], environment: signalsThrough)
        #expect(inProcess.status != 0 && inProcess.status != 1, "status \(inProcess.status)")
        #expect(!inProcess.stdout.contains("checks:"))
    }

    /// Plugin ABI 1.3: a backend declares its compile options; the host lists them, checks values against
    /// their choices, passes exactly the given ones (not other backends') to compile, refuses malformed
    /// declarations at load, and reads a plugin that answers 1.2 without them.
    @Test func pluginOptionsAreDeclaredCheckedAndPassedToCompile() throws {
        let model = try temporaryDirectory() + "/add-relu.onnx"
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: model)
        let plugin = try PluginBuild.broken(mode: 20)
        let listed = try KilnTool.run(["backends", "--plugin", plugin])
        #expect(listed.stdout.contains("option level (low|high, default: low): a choice"), "\(listed.stdout)")
        let compile = ["compile", model, "-o", model + ".kiln", "--plugin", plugin, "--backends", "broken.backend", "--fallback", "deny"]
        let given = try KilnTool.run(compile + ["--backend-option", "level=high", "--backend-option", "echo=a b", "--threads", "1"])
        #expect(given.status == 1)
        #expect(given.stderr.contains("compile got options: echo=a b level=high\n"), "\(given.stderr)")
        let none = try KilnTool.run(compile)
        #expect(none.stderr.contains("compile got options:\n"), "\(none.stderr)")
        let refused = try KilnTool.run(compile + ["--backend-option", "level=mid"])
        #expect(refused.status == 1 && refused.stderr.contains("broken.backend: option level='mid': expected one of low, high"), "\(refused.stderr)")
        let twice = try KilnTool.run(["backends", "--plugin", try PluginBuild.broken(mode: 21)])
        #expect(twice.status == 1 && twice.stderr.contains("option 'level' is listed twice"), "\(twice.stderr)")
        let unnamed = try KilnTool.run(["backends", "--plugin", try PluginBuild.broken(mode: 22)])
        #expect(unnamed.status == 1 && unnamed.stderr.contains("option 0 has no valid name"), "\(unnamed.stderr)")
        let older = try KilnTool.run(["backends", "--plugin", try PluginBuild.broken(mode: 23)])
        #expect(older.status == 0 && older.stdout.contains("broken.backend") && !older.stdout.contains("option level"), "\(older.stdout)\(older.stderr)")
    }

    @Test func pluginCheckFailsAHangingCheckAfterTheTimeout() throws {
        let hang = try KilnTool.run(["plugin-check", "--timeout", "1", PluginBuild.broken(mode: 18)])
        #expect(hang.status == 1)
        #expect(Self.rows(hang.stdout, "FAIL").count == 3, "\(hang.stdout)")
        #expect(hang.stdout.contains("the plugin hung: no answer within 1 s"))
        #expect(Self.rows(hang.stdout, "PASS").contains("broken.backend: devices"))
    }
}
