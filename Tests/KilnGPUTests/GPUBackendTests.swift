// kiln.gpu on the OpenCL devices of this machine (PoCL's CPU device in CI: scripts/setup installs it):
// every claimed op on seeded random inputs against kiln.reference, models end to end through the host
// API, artifacts, fallback, the launch/copy counters, and a missing OpenCL library.
import Kiln
import KilnGPU
import KilnReference
import KilnTestSupport
import Testing

/// Builds small float32 graphs with static shapes.
struct GraphBuilder {
    var graph = Graph(name: "gpu-test")
    private var counter = 0

    mutating func input(_ name: String, _ shape: [Int]) -> String {
        graph.inputs.append(Value(name: name, type: .tensor(TensorType(.float32, fixed: shape))))
        return name
    }

    mutating func constant(_ tensor: Tensor) -> String {
        counter += 1
        graph.initializers["w\(counter)"] = tensor
        return "w\(counter)"
    }

    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:]) -> String {
        counter += 1
        let out = "\(op.lowercased())\(counter)"
        graph.nodes.append(Node(name: "\(op)_\(counter)", op: OpID("", op), inputs: inputs, outputs: [out], attributes: attributes))
        return out
    }

    mutating func output(_ names: String...) { graph.outputs = names.map { Value(name: $0) } }

    var model: Model { Model(graph: graph, opsets: ["": 21]) }
}

/// Runs `model` whole on kiln.gpu and on kiln.reference and expects the outputs to agree within
/// `tolerance` relative to the largest reference magnitude (at least 1).
@discardableResult
func expectGPUMatchesReference(_ model: Model, _ inputs: [String: Tensor], tolerance: Double = 1e-4, _ context: String,
                               sourceLocation: SourceLocation = #_sourceLocation) throws -> Session {
    let gpu = try Session(model: model, backend: GPUBackend())
    let reference = try Session(model: model, backend: ReferenceBackend())
    let feeds = inputs.mapValues { RuntimeValue.tensor($0) }
    let want = try reference.runOrdered(feeds).map { $0.tensor! }
    let got = try gpu.runOrdered(feeds).map { $0.tensor! }
    #expect(got.count == want.count, "\(context): output count", sourceLocation: sourceLocation)
    for (g, w) in zip(got, want) {
        #expect(g.shape == w.shape, "\(context): shape \(g.shape) vs \(w.shape)", sourceLocation: sourceLocation)
        let x = g.asDoubles(), y = w.asDoubles()
        var error = 0.0, scale = 1.0
        for i in 0..<min(x.count, y.count) { error = max(error, abs(x[i] - y[i])); scale = max(scale, abs(y[i])) }
        #expect(x.count == y.count && error <= tolerance * scale, "\(context): max error \(error) (scale \(scale))", sourceLocation: sourceLocation)
    }
    return gpu
}

/// A float32 tensor of `shape` drawn from SplitMix64 seeded with `seed`, uniform in [lo, hi).
func seeded(_ seed: UInt64, _ shape: [Int], _ lo: Float = -1, _ hi: Float = 1) -> Tensor {
    var rng = SplitMix64(seed: seed)
    return rng.tensor(shape, lo, hi)
}

@Suite("kiln.gpu") struct GPUBackendTests {
    @Test func reportsTheOpenCLDevicesOfThisMachine() throws {
        let devices = GPUBackend().devices()
        #expect(!devices.isEmpty, "no OpenCL device: \(GPUBackend().unavailableReason ?? "")")
        #expect(devices.allSatisfy { $0.properties["platform"] != nil && $0.properties["max_work_group_size"] != nil })
        let registry = Kiln.makeRegistry()
        #expect(registry.descriptor(named: "kiln.gpu")?.kind == .accelerator)
        #expect(registry.targets.contains("opencl") && registry.targets.contains("opencl-gpu"))
        #expect(try registry.selection(target: "opencl").selected.map(\.info.name) == ["kiln.gpu"])
        #expect(registry.backend(named: "kiln.gpu")?.devices().map(\.name) == devices.map(\.name))
    }

    @Test func selectsADeviceByIndexOrNameAndRefusesUnknownOnes() throws {
        let first = try #require(GPUBackend().devices().first)
        let model = try oneNode("Relu", [[4]])
        #expect(try GPUBackend(device: "0").prepare(model.graph) is GPUExecutable)
        #expect(try GPUBackend(device: String(first.name.prefix(4))).prepare(model.graph) is GPUExecutable)
        #expect(throws: KilnError.self) { try GPUBackend(device: "99").prepare(model.graph) }
        #expect(throws: KilnError.self) { try GPUBackend(device: "no such device name").prepare(model.graph) }
        // Through the registry (`--backend-option device=`), an unknown device is an error when configuring.
        #expect(throws: KilnError.self) { _ = try Kiln.makeRegistry().configured(BackendConfiguration(options: ["device": "99"])) }
        let configured = try Kiln.makeRegistry().configured(BackendConfiguration(options: ["device": "0"]))
        #expect((configured.backend(named: "kiln.gpu") as? GPUBackend)?.deviceSelector == "0")
    }

    func oneNode(_ op: String, _ shapes: [[Int]], _ attributes: [String: Attribute] = [:]) throws -> Model {
        var b = GraphBuilder()
        let names = shapes.enumerated().map { b.input("x\($0.offset)", $0.element) }
        b.output(b.node(op, names, attributes))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        return model
    }

    func random(_ shapes: [[Int]], seed: UInt64, lo: Float = -2, hi: Float = 2) -> [String: Tensor] {
        var rng = SplitMix64(seed: seed)
        return Dictionary(uniqueKeysWithValues: shapes.enumerated().map { ("x\($0.offset)", rng.tensor($0.element, lo, hi)) })
    }

    @Test(arguments: ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "LeakyRelu"])
    func unaryOp(_ op: String) throws {
        let model = try oneNode(op, [[3, 5, 7]], op == "LeakyRelu" ? ["alpha": .float(0.2)] : [:])
        try expectGPUMatchesReference(model, random([[3, 5, 7]], seed: 1), op)
    }

    @Test(arguments: ["Add", "Sub", "Mul", "Div"])
    func binaryOpBroadcasts(_ op: String) throws {
        for shapes in [[[2, 3, 4], [2, 3, 4]], [[2, 3, 4], [4]], [[2, 1, 4], [3, 1]], [[1], [2, 3]], [[5, 1, 1, 2], [1, 3, 2, 1]]] {
            var inputs = random(shapes, seed: 2)
            if op == "Div" { inputs["x1"] = seeded(3, shapes[1], 0.5, 2) }
            try expectGPUMatchesReference(try oneNode(op, shapes), inputs, "\(op) \(shapes)")
        }
    }

    @Test func matMulTiledAndBatched() throws {
        for shapes in [[[5, 7], [7, 9]], [[33, 40], [40, 17]], [[2, 3, 17, 20], [2, 3, 20, 19]], [[2, 17, 20], [20, 5]], [[4, 6], [3, 6, 2]]] {
            try expectGPUMatchesReference(try oneNode("MatMul", shapes), random(shapes, seed: 4), "MatMul \(shapes)")
        }
    }

    @Test func gemmWithTransposesBiasAndScales() throws {
        let (m, k, n) = (19, 23, 18)
        // Every transpose with a row bias, and every bias shape without transposes (each case builds a kernel).
        let cases: [(Int, Int, [Int]?)] = [(1, 0, [n]), (0, 1, [n]), (1, 1, [n])] + ([nil, [n], [m, 1], [m, n], [1]] as [[Int]?]).map { (0, 0, $0) }
        for (transA, transB, bias) in cases {
            do {
                let shapes = [transA == 1 ? [k, m] : [m, k], transB == 1 ? [n, k] : [k, n]] + (bias.map { [$0] } ?? [])
                let model = try oneNode("Gemm", shapes, ["transA": .int(transA), "transB": .int(transB), "alpha": .float(0.5), "beta": .float(2)])
                try expectGPUMatchesReference(model, random(shapes, seed: 5), "Gemm transA=\(transA) transB=\(transB) C=\(String(describing: bias))")
            }
        }
    }

    @Test func convAsImplicitGemm() throws {
        let cases: [(x: [Int], w: [Int], bias: Bool, attributes: [String: Attribute])] = [
            ([1, 3, 9, 9], [8, 3, 3, 3], true, ["pads": .ints([1, 1, 1, 1])]),
            ([2, 4, 11, 10], [6, 4, 3, 2], false, ["strides": .ints([2, 1]), "dilations": .ints([2, 1]), "pads": .ints([1, 0, 2, 1])]),
            ([1, 4, 8, 8], [6, 2, 3, 3], true, ["group": .int(2), "pads": .ints([1, 1, 1, 1])]),
            ([2, 5, 7, 7], [5, 1, 3, 3], true, ["group": .int(5), "strides": .ints([2, 2]), "auto_pad": .string("SAME_UPPER")]),
            ([1, 3, 6, 7], [4, 3, 2, 2], false, ["auto_pad": .string("SAME_LOWER")]),
            ([1, 20, 5, 5], [33, 20, 1, 1], true, [:]),
        ]
        for c in cases {
            var b = GraphBuilder()
            let x = b.input("x0", c.x)
            var rng = SplitMix64(seed: 6)
            var inputs = [x, b.constant(rng.tensor(c.w))]
            if c.bias { inputs.append(b.constant(rng.tensor([c.w[0]]))) }
            b.output(b.node("Conv", inputs, c.attributes))
            var model = b.model
            _ = try GraphInference.infer(&model.graph)
            try expectGPUMatchesReference(model, random([c.x], seed: 7), "Conv x=\(c.x) w=\(c.w) \(c.attributes.keys.sorted())")
        }
    }

    @Test func pooling() throws {
        let cases: [(op: String, attributes: [String: Attribute])] = [
            ("MaxPool", ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])]),
            ("MaxPool", ["kernel_shape": .ints([2, 2]), "ceil_mode": .int(1), "strides": .ints([2, 2])]),
            ("MaxPool", ["kernel_shape": .ints([2, 3]), "dilations": .ints([2, 1])]),
            ("AveragePool", ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])]),
            ("AveragePool", ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1]), "count_include_pad": .int(1), "strides": .ints([2, 2])]),
            ("AveragePool", ["kernel_shape": .ints([2, 2]), "auto_pad": .string("SAME_UPPER")]),
            ("GlobalAveragePool", [:]), ("GlobalMaxPool", [:]),
        ]
        for c in cases {
            try expectGPUMatchesReference(try oneNode(c.op, [[2, 3, 9, 8]], c.attributes), random([[2, 3, 9, 8]], seed: 8), "\(c.op) \(c.attributes.keys.sorted())")
        }
    }

    @Test func softmaxOnAnyAxis() throws {
        for axis in [-1, 0, 1, 2] {
            try expectGPUMatchesReference(try oneNode("Softmax", [[3, 4, 10]], ["axis": .int(axis)]), random([[3, 4, 10]], seed: 9, lo: -5, hi: 5), "Softmax axis \(axis)")
        }
    }

    @Test func transposeAndViews() throws {
        for perm in [[1, 0, 2], [2, 0, 1], [0, 2, 1]] {
            try expectGPUMatchesReference(try oneNode("Transpose", [[3, 4, 5]], ["perm": .ints(perm)]), random([[3, 4, 5]], seed: 10), "Transpose \(perm)")
        }
        // Reshape and Flatten are views: a chain of them around one Relu costs one launch.
        var b = GraphBuilder()
        let x = b.input("x0", [2, 3, 4])
        let r = b.node("Reshape", [x, b.constant(Tensor(int64s: [6, 4]))])
        let relu = b.node("Relu", [r])
        b.output(b.node("Flatten", [relu], ["axis": .int(0)]))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        let session = try expectGPUMatchesReference(model, random([[2, 3, 4]], seed: 11), "Reshape/Relu/Flatten")
        let executable = try #require(try GPUBackend().prepare(model.graph) as? GPUExecutable)
        #expect(executable.counters.launchesPerRun == 1)
        _ = session
    }

    /// A small MLP: counts one launch per MatMul/Add/Gemm/Softmax (the Relu is fused), weights uploaded once, and per run
    /// exactly the input's and the output's bytes copied.
    @Test func mlpKeepsIntermediatesOnTheDevice() throws {
        var b = GraphBuilder()
        var rng = SplitMix64(seed: 12)
        let x = b.input("x0", [4, 32])
        let h = b.node("Relu", [b.node("Add", [b.node("MatMul", [x, b.constant(rng.tensor([32, 64]))]), b.constant(rng.tensor([64]))])])
        let logits = b.node("Gemm", [h, b.constant(rng.tensor([10, 64])), b.constant(rng.tensor([10]))], ["transB": .int(1)])
        b.output(b.node("Softmax", [logits]))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        try expectGPUMatchesReference(model, random([[4, 32]], seed: 13), "MLP")
        let executable = try #require(try GPUBackend().prepare(model.graph) as? GPUExecutable)
        #expect(executable.counters.weightBytes == (32 * 64 + 64 + 10 * 64 + 10) * 4)
        for _ in 0..<3 { _ = try executable.run(["x0": .tensor(seeded(14, [4, 32]))]) }
        let c = executable.counters
        // MatMul, Add (with the Relu fused into it), Gemm, Softmax.
        #expect(c.launchesPerRun == 4 && c.launches == 12 && c.runs == 3)
        #expect(c.bytesToDevice == 3 * 4 * 32 * 4)
        #expect(c.bytesToHost == 3 * 4 * 10 * 4)
        #expect(throws: KilnError.self) { _ = try executable.run(["x0": .tensor(Tensor(shape: [4, 31], [Float](repeating: 0, count: 124)))]) }
    }

    /// Unary ops after a kernel are fused into it (chains compose); not when the intermediate is also read
    /// elsewhere or returned.
    @Test func activationsFuseIntoTheirProducer() throws {
        var b = GraphBuilder()
        var rng = SplitMix64(seed: 18)
        let x = b.input("x0", [1, 4, 6, 6])
        let conv = b.node("Conv", [x, b.constant(rng.tensor([5, 4, 3, 3])), b.constant(rng.tensor([5]))], ["pads": .ints([1, 1, 1, 1])])
        let chain = b.node("Tanh", [b.node("Sigmoid", [b.node("Relu", [conv])])])
        let pooled = b.node("MaxPool", [chain], ["kernel_shape": .ints([2, 2])])
        let neg = b.node("Neg", [pooled])
        b.output(b.node("Exp", [pooled]), neg)
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        try expectGPUMatchesReference(model, random([[1, 4, 6, 6]], seed: 19), "Conv→Relu→Sigmoid→Tanh→MaxPool→{Neg, Exp}")
        let executable = try #require(try GPUBackend().prepare(model.graph) as? GPUExecutable)
        // Conv with its chain of three, MaxPool, and Neg and Exp each on their own: pooled has two readers.
        #expect(executable.counters.launchesPerRun == 4)
    }

    /// A small CNN through the host API with target opencl, as an ONNX file, in memory and via an artifact.
    @Test func cnnEndToEndThroughTheHostAPIAndAnArtifact() throws {
        var b = GraphBuilder()
        var rng = SplitMix64(seed: 15)
        let x = b.input("image", [1, 3, 16, 16])
        var t = b.node("Relu", [b.node("Conv", [x, b.constant(rng.tensor([8, 3, 3, 3])), b.constant(rng.tensor([8]))], ["pads": .ints([1, 1, 1, 1])])])
        t = b.node("MaxPool", [t], ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])])
        t = b.node("Conv", [t, b.constant(rng.tensor([8, 1, 3, 3])), b.constant(rng.tensor([8]))], ["group": .int(8), "pads": .ints([1, 1, 1, 1])])
        t = b.node("GlobalAveragePool", [b.node("Sigmoid", [t])])
        t = b.node("Flatten", [t])
        b.output(b.node("Softmax", [b.node("Gemm", [t, b.constant(rng.tensor([8, 5])), b.constant(rng.tensor([5]))])]))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        let image = seeded(16, [1, 3, 16, 16])
        let want = try Session(model: model, backend: ReferenceBackend()).runOrdered(["image": .tensor(image)])[0].tensor!.elements(as: Float.self)

        let session = try Kiln.prepare(model, options: Kiln.LoadOptions(target: "opencl"))
        #expect(session.partitionReport.entries.allSatisfy { $0.backend == "kiln.gpu" }, "\(session.partitionReport.entries.map(\.reason))")
        let got = try session.runOrdered(["image": .tensor(image)])[0].tensor!.elements(as: Float.self)
        #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-4 })

        let output = try Kiln.compiler(options: Compiler.Options(target: "opencl")).compile(model: model)
        #expect(output.summary.partitions.map(\.backend) == ["kiln.gpu"])
        #expect(output.summary.partitions.first?.compat == "kiln.gpu/1")
        let loaded = try Kiln.load(artifactBytes: output.bytes, backend: nil)
        let again = try loaded.runOrdered(["image": .tensor(image)])[0].tensor!.elements(as: Float.self)
        #expect(zip(again, want).allSatisfy { abs($0 - $1) <= 1e-4 } && again.count == want.count)
    }

    @Test func unclaimedOpsFallBackToTheCPU() throws {
        var b = GraphBuilder()
        let x = b.input("x0", [2, 8])
        let y = b.node("Hardmax", [b.node("Relu", [x])])
        b.output(b.node("Tanh", [y]))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        #expect(GPUBackend().rejections(in: model.graph).map(\.node) == [1])
        // Groups of one node: below kiln.gpu's own minimum group size, so a minimum of 1 is asked for here.
        let session = try Kiln.prepare(model, options: Kiln.LoadOptions(target: "opencl", partition: PartitionOptions(minGroupSize: 1)))
        #expect(session.partitionReport.entries.map(\.backend) == ["kiln.gpu", "kiln.cpu", "kiln.gpu"])
        #expect(session.partitionReport.entries[1].reason.contains("Hardmax"))
        let input = seeded(17, [2, 8])
        let want = try Session(model: model, backend: ReferenceBackend()).runOrdered(["x0": .tensor(input)])[0].tensor!.elements(as: Float.self)
        let got = try session.runOrdered(["x0": .tensor(input)])[0].tensor!.elements(as: Float.self)
        #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-5 })
        // float64 is not claimed, with the reason.
        var d = GraphBuilder()
        d.graph.inputs = [Value(name: "x", type: .tensor(TensorType(.float64, fixed: [3])))]
        d.output(d.node("Relu", ["x"]))
        #expect(GPUBackend().rejections(in: d.graph).first?.reason.contains("float32") == true)
    }

    /// Dims whose product overflows, or is too large for 32-bit indexing, or empty values, are refused with a
    /// reason, never a crash (an artifact's graph comes from anywhere).
    @Test func hugeOrEmptyShapesAreRefused() throws {
        for shape in [[1 << 40, 1 << 40], [1 << 20, 1 << 20], [0, 3]] {
            var b = GraphBuilder()
            b.graph.inputs = [Value(name: "x", type: .tensor(TensorType(.float32, fixed: shape)))]
            b.output(b.node("Relu", ["x"]))
            b.graph.valueTypes[b.graph.nodes[0].outputs[0]] = .tensor(TensorType(.float32, fixed: shape))
            let rejections = GPUBackend().rejections(in: b.graph)
            #expect(rejections.count == 1, "\(shape)")
            let refusal = #expect(throws: CompileRefusal.self) { _ = try GPUBackend().prepare(b.graph) }
            #expect(refusal?.error.message.contains(shape.contains(0) ? "is empty" : "32-bit") == true, "\(shape)")
        }
    }

    @Test func groupsBelowTheMinimumGroupSizeRunOnTheCPUWithTheReason() throws {
        // Relu → Hardmax (not claimed) → Tanh: two kiln.gpu groups of one node, below kiln.gpu's minimum.
        var b = GraphBuilder()
        let x = b.input("x0", [2, 8])
        b.output(b.node("Tanh", [b.node("Hardmax", [b.node("Relu", [x])])]))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        #expect(GPUBackend().minimumGroupSize > 1)
        let output = try Kiln.compiler(options: Compiler.Options(target: "opencl")).compile(model: model)
        #expect(output.summary.partitions.map(\.backend) == ["kiln.cpu"])
        #expect(output.summary.report.entries[0].reason.contains("kiln.gpu's minimum group size"), "\(output.summary.report.entries[0].reason)")
        // An explicit minimum wins, and fallback deny keeps every group where it is claimed.
        let kept = try Kiln.compiler(options: Compiler.Options(target: "opencl", minGroupSize: 1)).compile(model: model)
        #expect(kept.summary.partitions.map(\.backend) == ["kiln.gpu", "kiln.cpu", "kiln.gpu"])
        // A group with no neighbour on another backend (here the whole graph) saves no copies by moving: it stays.
        var w = GraphBuilder()
        w.output(w.node("Tanh", [w.node("Relu", [w.input("x0", [2, 8])])]))
        var whole = w.model
        _ = try GraphInference.infer(&whole.graph)
        let small = try Kiln.compiler(options: Compiler.Options(target: "opencl")).compile(model: whole)
        #expect(small.summary.partitions.map(\.backend) == ["kiln.gpu"])
    }

    @Test func theGPUOnlyTargetRefusesANonGPUDevice() throws {
        guard !GPUBackend().devices().contains(where: { $0.kind == .gpu }) else { return }
        let model = try oneNode("Relu", [[4]])
        #expect(throws: KilnError.self) { _ = try GPUBackend().compile(model.graph, options: CompileOptions(target: "opencl-gpu")) }
        let output = try Kiln.compiler(options: Compiler.Options(target: "opencl-gpu", minGroupSize: 1)).compile(model: model)
        #expect(output.summary.partitions.map(\.backend) == ["kiln.cpu"])
        #expect(output.summary.report.entries.first?.reason.contains("opencl-gpu") == true)
    }

    @Test func withoutAnOpenCLLibraryThereIsNoDeviceAndNoClaim() throws {
        let missing = GPUBackend(libraryPath: "/nonexistent/libOpenCL.so.1")
        #expect(missing.devices().isEmpty)
        #expect(missing.unavailableReason?.contains("/nonexistent/libOpenCL.so.1") == true)
        let model = try oneNode("Relu", [[4]])
        let rejections = missing.rejections(in: model.graph)
        #expect(rejections.count == 1 && rejections[0].reason.contains("cannot open the OpenCL library"))
        #expect(throws: KilnError.self) { _ = try missing.prepare(model.graph) }
        let payload = try GPUBackend().compile(model.graph, options: CompileOptions(target: "opencl"))
        #expect(throws: KilnError.self) { _ = try missing.load(payload.bytes, graph: model.graph) }
        #expect(throws: KilnError.self) { _ = try GPUBackend().load([1, 2, 3], graph: model.graph) }
        #expect(GPUBackend().check(compat: "kiln.gpu/2") != nil)
    }
}
