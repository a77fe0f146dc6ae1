// Whole graphs on kiln.cpu: a small CNN and a small transformer block built in Swift (and the
// scripts/make-models models when out/models has them), fusion and memory planning, targets, errors.
import Foundation
import Kiln
@testable import KilnCPU
import KilnReference
import Testing
import KilnTestSupport

enum SmallModels {
    /// A ResNet/MobileNet-like CNN: conv+BN+ReLU stem, max pool, a residual block, a depthwise block with
    /// ReLU6 and an inverted-residual Add, global average pool, flatten and a Gemm classifier.
    static func cnn(_ r: inout SplitMix64) -> TestGraph {
        var g = TestGraph()
        func bn(_ g: inout TestGraph, _ x: String, _ c: Int, _ r: inout SplitMix64) -> String {
            let p = [r.tensor([c], 0.5, 1.5), r.tensor([c], -0.1, 0.1), r.tensor([c], -0.1, 0.1), r.tensor([c], 0.5, 1.5)]
            return g.node("BatchNormalization", [x] + p.map { g.constant($0) }, ["epsilon": .float(1e-5)])
        }
        func conv(_ g: inout TestGraph, _ x: String, _ cin: Int, _ cout: Int, _ k: Int, _ s: Int, _ groups: Int, _ r: inout SplitMix64) -> String {
            let scale = (2 / Float(cin / groups * k * k)).squareRoot()
            return g.node("Conv", [x, g.constant(r.tensor([cout, cin / groups, k, k], -scale, scale))],
                          ["kernel_shape": .ints([k, k]), "strides": .ints([s, s]), "pads": .ints(Array(repeating: k / 2, count: 4)), "group": .int(groups)])
        }
        let x = g.input("input", [.symbol("batch"), .fixed(3), .fixed(32), .fixed(32)])
        var y = g.node("Relu", [bn(&g, conv(&g, x, 3, 16, 7, 2, 1, &r), 16, &r)])
        y = g.node("MaxPool", [y], ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])])
        let block = bn(&g, conv(&g, g.node("Relu", [bn(&g, conv(&g, y, 16, 16, 3, 1, 1, &r), 16, &r)]), 16, 16, 3, 1, 1, &r), 16, &r)
        y = g.node("Relu", [g.node("Add", [block, y])])
        let six = g.constant(Tensor(scalar: Float(6))), zero = g.constant(Tensor(scalar: Float(0)))
        var h = g.node("Clip", [bn(&g, conv(&g, y, 16, 48, 1, 1, 1, &r), 48, &r), zero, six])
        h = g.node("Clip", [bn(&g, conv(&g, h, 48, 48, 3, 1, 48, &r), 48, &r), zero, six])
        h = bn(&g, conv(&g, h, 48, 16, 1, 1, 1, &r), 16, &r)
        y = g.node("Add", [y, h])
        y = g.node("Flatten", [g.node("GlobalAveragePool", [y])], ["axis": .int(1)])
        let logits = g.node("Gemm", [y, g.constant(r.tensor([10, 16], -0.3, 0.3)), g.constant(r.tensor([10], -0.1, 0.1))], ["transB": .int(1)])
        g.output(logits)
        return g
    }

    /// A BERT-like encoder layer: embedding Gather + position Add, LayerNorm, Q/K/V projections with
    /// Reshape/Transpose into heads, scaled scores with an additive mask from an int64 attention mask,
    /// Softmax, context, output projection with residual and LayerNorm, GELU (written with Erf) FFN.
    static func transformer(_ r: inout SplitMix64, hidden: Int = 32, heads: Int = 4, seq: Int = 12, ffn: Int = 64) -> TestGraph {
        var g = TestGraph()
        let d = hidden / heads
        let ids = g.input("input_ids", [.symbol("batch"), .fixed(seq)], .int64)
        let mask = g.input("attention_mask", [.symbol("batch"), .fixed(seq)], .int64)
        func dense(_ g: inout TestGraph, _ x: String, _ i: Int, _ o: Int, _ r: inout SplitMix64) -> String {
            let s = (1 / Float(i)).squareRoot()
            return g.node("Add", [g.node("MatMul", [x, g.constant(r.tensor([i, o], -s, s))]), g.constant(r.tensor([o], -0.05, 0.05))])
        }
        func layerNorm(_ g: inout TestGraph, _ x: String, _ r: inout SplitMix64) -> String {
            g.node("LayerNormalization", [x, g.constant(r.tensor([hidden], 0.8, 1.2)), g.constant(r.tensor([hidden], -0.05, 0.05))],
                   ["axis": .int(-1), "epsilon": .float(1e-12)])
        }
        var x = g.node("Add", [g.node("Gather", [g.constant(r.tensor([50, hidden], -0.5, 0.5)), ids], ["axis": .int(0)]),
                               g.constant(r.tensor([seq, hidden], -0.5, 0.5))])
        x = layerNorm(&g, x, &r)
        var m = g.node("Cast", [mask], ["to": .int(1)])
        m = g.node("Mul", [g.node("Sub", [g.constant(Tensor(scalar: Float(1))), m]), g.constant(Tensor(scalar: Float(-10000)))])
        m = g.node("Unsqueeze", [m, g.constant(Tensor(int64s: [1, 2]))])
        let split = g.constant(Tensor(int64s: [0, 0, heads, d])), merge = g.constant(Tensor(int64s: [0, 0, hidden]))
        func headsOf(_ g: inout TestGraph, _ t: String) -> String {
            g.node("Transpose", [g.node("Reshape", [t, split])], ["perm": .ints([0, 2, 1, 3])])
        }
        let q = headsOf(&g, dense(&g, x, hidden, hidden, &r))
        let k = headsOf(&g, dense(&g, x, hidden, hidden, &r))
        let v = headsOf(&g, dense(&g, x, hidden, hidden, &r))
        var scores = g.node("MatMul", [q, g.node("Transpose", [k], ["perm": .ints([0, 1, 3, 2])])])
        scores = g.node("Add", [g.node("Div", [scores, g.constant(Tensor(scalar: Float(d).squareRoot()))]), m])
        var ctx = g.node("MatMul", [g.node("Softmax", [scores], ["axis": .int(-1)]), v])
        ctx = g.node("Reshape", [g.node("Transpose", [ctx], ["perm": .ints([0, 2, 1, 3])]), merge])
        x = layerNorm(&g, g.node("Add", [x, dense(&g, ctx, hidden, hidden, &r)]), &r)
        let h = dense(&g, x, hidden, ffn, &r)
        let erf = g.node("Erf", [g.node("Div", [h, g.constant(Tensor(scalar: Float(2).squareRoot()))])])
        let gelu = g.node("Mul", [g.node("Mul", [h, g.constant(Tensor(scalar: Float(0.5)))]),
                                  g.node("Add", [erf, g.constant(Tensor(scalar: Float(1)))])])
        x = layerNorm(&g, g.node("Add", [x, dense(&g, gelu, ffn, hidden, &r)]), &r)
        g.output(g.node("Identity", [x]))
        return g
    }

    static func transformerInputs(batch: Int, seq: Int = 12, _ r: inout SplitMix64) -> [String: Tensor] {
        let ids = (0..<(batch * seq)).map { _ in Int64(r.int(0...49)) }
        let mask = (0..<(batch * seq)).map { i in Int64(i % seq < seq - 3 ? 1 : 0) }
        return ["input_ids": Tensor(shape: [batch, seq], ids), "attention_mask": Tensor(shape: [batch, seq], mask)]
    }
}

@Suite("kiln.cpu whole graphs, fusion, memory plan and targets")
struct CPUBackendModelTests {
    @Test("Small CNN matches kiln.reference at 1 and 2 threads and batch 1 and 3")
    func smallCNN() throws {
        var r = SplitMix64(seed: 101)
        let g = SmallModels.cnn(&r)
        for threads in [1, 2] {
            for batch in [1, 3] {
                try expectMatchesReference(g.model, inputs: ["input": r.tensor([batch, 3, 32, 32])], threads: threads,
                                           "cnn threads \(threads) batch \(batch)")
            }
        }
    }

    @Test("Small transformer block matches kiln.reference; one plan per batch size, reused")
    func smallTransformer() throws {
        var r = SplitMix64(seed: 102)
        let g = SmallModels.transformer(&r)
        for threads in [1, 2] {
            for batch in [1, 2] {
                try expectMatchesReference(g.model, inputs: SmallModels.transformerInputs(batch: batch, &r), threads: threads,
                                           "transformer threads \(threads) batch \(batch)")
            }
        }
        let executable = try #require(try CPUBackend(threads: 2).prepare(g.graph) as? CPUExecutable)
        for batch in [1, 2, 1, 2] {
            let out = try executable.run(SmallModels.transformerInputs(batch: batch, &r).mapValues { .tensor($0) })
            #expect(out[0].tensor?.shape == [batch, 12, 32])
        }
    }

    @Test("Fusion: Conv+BN+Add+Relu, Conv+BN+Clip, MatMul+Add+Add, GELU as an epilogue, transposes and scales folded")
    func fusion() throws {
        var r = SplitMix64(seed: 103)
        var cnn = Lowering(graph: SmallModels.cnn(&r).graph)
        let cnnKinds = try cnn.lower().operations.map(\.kind)
        #expect(cnnKinds.contains("Conv+BatchNormalization+Relu"))
        #expect(cnnKinds.contains("Conv+BatchNormalization+Add+Relu"))
        #expect(cnnKinds.contains("Conv+BatchNormalization+Clip"))
        #expect(cnnKinds.contains("Conv+BatchNormalization+Add"))
        #expect(cnnKinds.contains("Gemm"))
        #expect(!cnnKinds.contains("BatchNormalization"), "\(cnnKinds)")
        var bert = Lowering(graph: SmallModels.transformer(&r).graph)
        let program = try bert.lower()
        let kinds = program.operations.map(\.kind)
        #expect(kinds.contains("MatMul+Add+Gelu"), "\(kinds)")
        #expect(kinds.contains("MatMul+Add+Add"), "\(kinds)")
        #expect(kinds.contains("MatMul+Div+Add"), "\(kinds)")
        #expect(kinds.contains("Sub+Mul"), "\(kinds)")
        #expect(!kinds.contains("Erf"), "\(kinds)")
        #expect(kinds.filter { $0 == "Transpose" }.count == 4, "\(kinds)")
        #expect(kinds.contains("MatMul+Transpose+Div+Add") || kinds.contains("MatMul+Div+Add"), "\(kinds)")
    }

    @Test("Memory plan: buffers are reused and the arena is smaller than the sum of the intermediates")
    func memoryPlan() throws {
        let plan = MemoryPlan([.init(bytes: 100, first: 0, last: 1), .init(bytes: 100, first: 2, last: 3), .init(bytes: 50, first: 1, last: 2)])
        #expect(plan.offsets[0] == plan.offsets[1], "disjoint lifetimes share bytes")
        #expect(plan.offsets[2] >= 128 || plan.offsets[2] + 64 <= plan.offsets[0], "overlapping lifetimes do not")
        #expect(plan.arenaBytes == 192)
        var r = SplitMix64(seed: 104)
        let profile = CPUProfile()
        let session = try Session(model: SmallModels.cnn(&r).model, backend: CPUBackend(threads: 1, profile: profile))
        _ = try session.run(["input": .tensor(r.tensor([1, 3, 32, 32]))])
        #expect(profile.arena.bytes > 0 && profile.arena.bytes < profile.arena.unshared / 2, "\(profile.arena)")
    }

    @Test("Profile: per-step totals and a Chrome trace")
    func profile() throws {
        var r = SplitMix64(seed: 105)
        let profile = CPUProfile()
        let session = try Session(model: SmallModels.transformer(&r).model, backend: CPUBackend(threads: 2, profile: profile))
        for _ in 0..<3 { _ = try session.run(SmallModels.transformerInputs(batch: 1, &r).mapValues { .tensor($0) }) }
        #expect(profile.runCount == 3)
        #expect(profile.steps.allSatisfy { $0.calls == 3 })
        #expect(profile.byKind.contains { $0.kind == "LayerNormalization" && $0.calls == 9 })
        let trace = profile.chromeTrace()
        let json = try JSONSerialization.jsonObject(with: Data(trace.utf8)) as? [String: Any]
        let events = try #require(json?["traceEvents"] as? [[String: Any]])
        #expect(events.count == 3 + profile.steps.count * 3)
    }

    @Test("Device profiles: a run that would pass the step limit is dropped whole and counted, never cut")
    func deviceProfileLimit() {
        let profile = CPUProfile()
        profile.traceLimit = 5
        func run(_ steps: Int) -> DeviceProfile {
            DeviceProfile(backend: "b", program: "p", clockHz: 0, totalCycles: UInt64(steps),
                          steps: (0..<steps).map { .init(name: "l\($0)", unit: "u", startCycle: UInt64($0), cycles: 1) })
        }
        profile.record(run(3))
        profile.record(run(3))
        profile.record(run(2))
        #expect(profile.devices.map(\.steps.count) == [3, 2])
        #expect(profile.droppedDeviceRuns == 1)
        profile.reset()
        profile.record(run(5))
        #expect(profile.devices.map(\.steps.count) == [5] && profile.droppedDeviceRuns == 0)
    }

    @Test("Rejections name unsupported ops and element types; the whole graph must be supported")
    func rejections() throws {
        var g = TestGraph()
        let x = g.input("x", [.fixed(2), .fixed(3)], .float64)
        let y = g.input("y", [2, 3])
        g.output(g.node("Relu", [x]), g.node("Einsum", [y, y], ["equation": .string("...j,...j->...j")]))
        let rejections = try CPUBackend().rejections(in: g.graph)
        #expect(rejections.count == 2)
        #expect(rejections[0].reason.contains("f64"))
        #expect(rejections[1].reason.contains("Einsum"))
        #expect(throws: KilnError.self) { try Session(model: g.model, backend: CPUBackend()) }
        var h = TestGraph()
        let z = h.input("z", [2, 3])
        h.output(h.node("Reshape", [z, h.input("shape", [.fixed(1)], .int64)]))
        // A shape that is a graph input is planned once its value is at hand (CPUExecutable.Stage).
        #expect(try CPUBackend().rejections(in: h.graph).isEmpty)
        // Negative pads crop (kiln.reference runs them); kiln.cpu refuses them by name instead of failing.
        for op in ["Conv", "MaxPool", "AveragePool"] {
            var k = TestGraph()
            let input = k.input("x", [1, 16, 8, 8])
            let inputs = op == "Conv" ? [input, k.constant(Tensor(shape: [16, 16, 3, 3], [Float](repeating: 0.1, count: 2304)))] : [input]
            k.output(k.node(op, inputs, ["kernel_shape": .ints([3, 3]), "pads": .ints([-1, 0, -1, 0])]))
            let reason = try CPUBackend().rejections(in: k.graph).first?.reason ?? ""
            #expect(reason.contains("negative pads"), "\(op): \(reason)")
            #expect(throws: KilnError.self) { try Session(model: k.model, backend: CPUBackend()) }
        }
        // Geometry large enough to overflow size arithmetic is refused by name too.
        var big = TestGraph()
        let bx = big.input("x", [1, 16, 4, 4])
        big.output(big.node("MaxPool", [bx], ["kernel_shape": .ints([3, 3]), "pads": .ints([1 << 40, 0, 0, 0])]))
        #expect(try CPUBackend().rejections(in: big.graph).first?.reason.contains("above") == true)
    }

    @Test("A model whose values would not fit in memory gets a typed error, not a failed allocation")
    func oversizedValuesAreRefused() throws {
        var g = TestGraph()
        let x = g.input("x", [1, 16, 4, 4])
        let w = g.constant(Tensor(shape: [16, 16, 3, 3], [Float](repeating: 0.1, count: 2304)))
        // 16 × 200002² floats: 2.5 TB.
        g.output(g.node("Conv", [x, w], ["pads": .ints([100_000, 100_000, 100_000, 100_000])]))
        let session = try Session(model: g.model, backend: CPUBackend())
        let input = RuntimeValue.tensor(Tensor(shape: [1, 16, 4, 4], [Float](repeating: 1, count: 256)))
        #expect {
            try session.runOrdered(["x": input])
        } throws: { error in
            (error as? KilnError).map { $0.code == .unsupported && $0.message.contains("GiB") } ?? false
        }
    }

    @Test("Targets: names, compatibility strings, payload round trip, refusal of a bad target")
    func targets() throws {
        #expect(CPUTarget.names == ["host", "generic", "x86_64-avx2", "x86_64-avx512", "aarch64-neon"])
        #expect(throws: KilnError.self) { try CPUBackend(target: "riscv") }
        #expect(throws: KilnError.self) { try CPUBackend(threads: 0) }
        let backend = CPUBackend()
        #expect(backend.check(compat: "kiln.cpu/1/generic") == nil)
        #expect(backend.check(compat: "kiln.cpu/2/generic")?.contains("format") == true)
        #expect(backend.check(compat: "kiln.reference/1") != nil)
        let host = CPUTarget.host
        #expect(backend.check(compat: CPUBackend.compat(for: host)) == nil)
        if host != .aarch64_neon { #expect(backend.check(compat: "kiln.cpu/1/aarch64-neon")?.contains("NEON") == true) }
        var r = SplitMix64(seed: 106)
        let g = SmallModels.cnn(&r)
        let payload = try backend.compile(g.graph, options: CompileOptions(target: "generic"))
        #expect(payload.compat == "kiln.cpu/1/generic")
        let executable = try backend.load(payload.bytes, graph: g.graph)
        let out = try executable.run(["input": .tensor(r.tensor([1, 3, 32, 32]))])
        #expect(out[0].tensor?.shape == [1, 10])
        #expect(throws: KilnError.self) { try backend.load(Array("junk".utf8), graph: g.graph) }
        #expect(HostCPU.physicalCores >= 1)
        #expect(["avx512", "avx2", "neon", "generic"].contains(CPUBackend.kernelISA))
    }

    @Test("Bad input at run time is a typed error: wrong dtype, a Gather index out of range")
    func runtimeErrors() throws {
        var g = TestGraph()
        let table = g.constant(Tensor(shape: [4, 2], [Float](repeating: 1, count: 8)))
        let ids = g.input("ids", [.fixed(3)], .int64)
        g.output(g.node("Gather", [table, ids]))
        let session = try Session(model: g.model, backend: CPUBackend())
        #expect(throws: KilnError.self) { try session.run(["ids": .tensor(Tensor(shape: [3], [Int64(0), 4, 1]))]) }
        #expect(throws: KilnError.self) { try session.run(["ids": .tensor(Tensor(shape: [3], [Float(0), 1, 1]))]) }
        let ok = try session.run(["ids": .tensor(Tensor(shape: [3], [Int64(0), -1, 1]))])
        #expect(ok.values.first?.tensor?.shape == [3, 2])
    }

    @Test("The scripts/make-models models, when built into out/models, match kiln.reference")
    func generatedModels() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var r = SplitMix64(seed: 107)
        for name in ["mlp", "bert", "mobilenetv2", "resnet18"] {
            let path = root.appendingPathComponent("out/models/\(name).onnx").path
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let model = try Kiln.importONNX(path: path)
            let inputs: [String: Tensor]
            switch name {
            case "bert": inputs = ["input_ids": Tensor(shape: [1, 128], (0..<128).map { _ in Int64(r.int(0...999)) }),
                                   "attention_mask": Tensor(shape: [1, 128], (0..<128).map { Int64($0 < 100 ? 1 : 0) })]
            case "mlp": inputs = ["input": r.tensor([4, 784])]
            default: inputs = ["input": r.tensor([1, 3, 224, 224])]
            }
            try expectMatchesReference(model, inputs: inputs, threads: 2, tolerance: 1e-4, name)
        }
    }
}
