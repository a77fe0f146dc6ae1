import Kiln
import KilnReference
import Testing
import KilnTestSupport

/// The host-side partitioner on hand-built graphs with fake backends.
struct PartitionerTests {
    /// `x → a: Relu → b: Sigmoid → c: Add(a, b) → y`: the middle node is one only the fallback runs.
    static func wrapAround() -> Graph {
        Graph(name: "wrap", inputs: [f32("x", [4])], outputs: [f32("y", [4])],
              nodes: [node("Relu", ["x"], ["r"], name: "a"), node("Sigmoid", ["r"], ["s"], name: "b"),
                      node("Add", ["r", "s"], ["y"], name: "c")])
    }

    /// A diamond: `top: Relu → left: Neg, right: Sigmoid → bottom: Add(left, right)`.
    static func diamond() -> Graph {
        Graph(name: "diamond", inputs: [f32("x", [4])], outputs: [f32("y", [4])],
              nodes: [node("Relu", ["x"], ["t"], name: "top"), node("Neg", ["t"], ["l"], name: "left"),
                      node("Sigmoid", ["t"], ["r"], name: "right"), node("Add", ["l", "r"], ["y"], name: "bottom")])
    }

    /// A chain `n0 … n(k-1)` of the given ops, each reading the previous one.
    static func chain(_ ops: [String], dtype: DType = .float32) -> Graph {
        let value = { (name: String) in Value(name: name, type: .tensor(TensorType(dtype, fixed: [4]))) }
        return Graph(name: "chain", inputs: [value("v0")], outputs: [value("v\(ops.count)")],
                     nodes: ops.enumerated().map { i, op in node(op, ["v\(i)"], ["v\(i + 1)"], name: "n\(i)") })
    }

    @Test func overlappingClaimsGoToTheHigherPriorityBackend() throws {
        let a = ClaimingBackend("acme.npu", claims: ["Relu", "Add"])
        let b = ClaimingBackend("beta.dsp", claims: ["Relu", "Sigmoid"])
        let graph = Self.chain(["Relu", "Sigmoid", "Add"].map { $0 == "Add" ? "Relu" : $0 })
        let reference = [any Backend](arrayLiteral: ReferenceBackend())

        let ab = try Partitioner(selected: [a, b], fallbacks: reference).partition(graph)
        #expect(ab.report.entries.map(\.backend) == ["acme.npu", "beta.dsp", "acme.npu"])
        #expect(ab.report.entries[0].reason == "claimed by acme.npu (priority over beta.dsp, which also claims it)")
        #expect(ab.report.entries[1].reason == "claimed by beta.dsp; rejected by acme.npu: Sigmoid is not supported")
        #expect(ab.partitions.count == 3)
        expectSound(ab, graph)

        let ba = try Partitioner(selected: [b, a], fallbacks: reference).partition(graph)
        #expect(ba.report.entries.map(\.backend) == ["beta.dsp", "beta.dsp", "beta.dsp"])
        #expect(ba.partitions.count == 1 && ba.partitions[0].nodes == [0, 1, 2])
        #expect(ba.partitions[0].subgraph(of: graph).nodes.count == 3)
    }

    @Test func aGroupThatWouldWrapAroundAnotherIsSplit() throws {
        let npu = ClaimingBackend("acme.npu", claims: ["Relu", "Add", "Neg"])
        let graph = Self.wrapAround()
        let plan = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()]).partition(graph)
        // {a, c} would read from b and feed b: a cycle between partitions. So a and c are apart.
        #expect(groups(plan, graph) == [["a"], ["b"], ["c"]])
        #expect(plan.partitions.map(\.backend.info.name) == ["acme.npu", "kiln.reference", "acme.npu"])
        #expect(plan.partitions[0].inputs == ["x"] && plan.partitions[0].outputs == ["r"])
        #expect(plan.partitions[1].inputs == ["r"] && plan.partitions[1].outputs == ["s"])
        #expect(plan.partitions[2].inputs == ["r", "s"] && plan.partitions[2].outputs == ["y"])
        expectSound(plan, graph)

        let diamond = Self.diamond()
        let split = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()]).partition(diamond)
        #expect(groups(split, diamond) == [["top", "left"], ["right"], ["bottom"]])
        expectSound(split, diamond)
    }

    @Test func independentClaimedBranchesShareAPartition() throws {
        // Two branches of x, both claimed, joined by a fallback node: one npu partition, then the fallback.
        let graph = Graph(name: "branches", inputs: [f32("x", [4])], outputs: [f32("y", [4])],
                          nodes: [node("Relu", ["x"], ["p"], name: "p"), node("Neg", ["x"], ["q"], name: "q"),
                                  node("Sum", ["p", "q"], ["y"], name: "join")])
        let npu = ClaimingBackend("acme.npu", claims: ["Relu", "Neg"])
        let plan = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()]).partition(graph)
        #expect(groups(plan, graph) == [["p", "q"], ["join"]])
        #expect(plan.partitions[0].outputs == ["p", "q"])
        expectSound(plan, graph)
    }

    @Test func groupsBelowTheMinimumSizeFallBack() throws {
        let npu = ClaimingBackend("acme.npu", claims: ["Relu", "Neg"])
        let graph = Self.chain(["Relu", "Sigmoid", "Relu", "Neg"])
        let options = PartitionOptions(minGroupSize: 2, fallback: .allow)
        let plan = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()], options: options).partition(graph)
        #expect(plan.report.entries.map(\.backend) == ["kiln.reference", "kiln.reference", "acme.npu", "acme.npu"])
        #expect(plan.report.entries[0].reason == "claimed by acme.npu, but its group of 1 node is below --min-group-size 2; fallback kiln.reference")
        #expect(groups(plan, graph) == [["n0", "n1"], ["n2", "n3"]])
        expectSound(plan, graph)

        // Size 3: nothing is left on the npu.
        let all = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()], options: PartitionOptions(minGroupSize: 3)).partition(graph)
        #expect(all.partitions.count == 1 && all.partitions[0].backend.info.name == "kiln.reference")
        #expect(all.report.entries[3].reason.contains("group of 2 nodes is below --min-group-size 3"))
    }

    @Test func deniedOpsNeverGoToTheSelectedBackends() throws {
        let npu = ClaimingBackend("acme.npu", claims: ["Relu", "Softmax"])
        let graph = Self.chain(["Relu", "Softmax", "Relu"])
        for entry in ["Softmax", "ai.onnx.Softmax"] {
            let plan = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()],
                                       options: PartitionOptions(deny: [entry], fallback: .deny)).partition(graph)
            #expect(plan.report.entries[1].backend == "kiln.reference")
            #expect(plan.report.entries[1].reason == "denied by --deny \(entry); fallback kiln.reference")
            #expect(plan.partitions.count == 3)
            expectSound(plan, graph)
        }
        // Denying an op from a selected backend that is also the first fallback sends it to the next fallback.
        let cpu = ClaimingBackend("kiln.cpu", claims: ["Relu", "Softmax"])
        let skipped = try Partitioner(selected: [cpu], fallbacks: [cpu, ReferenceBackend()], options: PartitionOptions(deny: ["Softmax"])).partition(graph)
        #expect(skipped.report.entries.map(\.backend) == ["kiln.cpu", "kiln.reference", "kiln.cpu"])
        #expect(skipped.report.entries[1].reason == "denied by --deny Softmax; fallback kiln.reference")
        // A small group of a selected backend that is a fallback too moves to the next one, once.
        let small = try Partitioner(selected: [cpu, ReferenceBackend()], fallbacks: [cpu, ReferenceBackend()],
                                    options: PartitionOptions(minGroupSize: 5)).partition(graph)
        #expect(small.report.entries.map(\.backend) == ["kiln.reference", "kiln.reference", "kiln.reference"])
        let other = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()], options: PartitionOptions(deny: ["com.acme.Softmax"])).partition(graph)
        #expect(other.report.entries.allSatisfy { $0.backend == "acme.npu" })
    }

    @Test func fallbackPolicies() throws {
        let npu = ClaimingBackend("acme.npu", claims: ["Relu"])
        let graph = Self.chain(["Relu", "Sigmoid", "Relu", "Tanh"])
        func partition(_ policy: FallbackPolicy) throws -> PartitionPlan {
            try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()], options: PartitionOptions(fallback: policy)).partition(graph)
        }
        let allowed = try partition(.allow)
        #expect(allowed.report.warnings.isEmpty && allowed.partitions.count == 4)

        let warned = try partition(.warn)
        #expect(warned.report.warnings.count == 1)
        #expect(warned.report.warnings.first?.contains("2 node(s) not taken by acme.npu run on the fallback (2 on kiln.reference)") == true)
        #expect(warned.report.warnings.first?.contains("node 3 'n3' (ai.onnx, Tanh, ?): rejected by acme.npu: Tanh is not supported") == true)
        #expect(warned.report.entries.map(\.backend) == allowed.report.entries.map(\.backend))

        let error = #expect(throws: KilnError.self) { try partition(.deny) }
        #expect(error?.code == .unsupported)
        for part in ["fallback policy deny: 2 node(s)", "node 1 'n1' (ai.onnx, Sigmoid, ?): rejected by acme.npu: Sigmoid is not supported",
                     "node 3 'n3' (ai.onnx, Tanh, ?)"] {
            #expect(error?.message.contains(part) == true, "\(part) not in \(error?.message ?? "")")
        }
        #expect(error?.message.contains("node 0") == false)
    }

    @Test func everyReasonIsReported() throws {
        let npu = ClaimingBackend("acme.npu", claims: ["Relu", "Neg", "Softmax"])
        let graph = Self.chain(["Relu", "Neg", "Sigmoid", "Softmax", "Relu"], dtype: .float64)
        var f32graph = Self.chain(["Relu", "Neg", "Sigmoid", "Softmax", "Relu"])
        let plan64 = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()]).partition(graph)
        #expect(plan64.report.entries[0].reason == "rejected by acme.npu: float64 not supported; fallback kiln.reference")
        // Only the input's type is known to be float64: the nodes after it are claimed.
        #expect(plan64.report.entries.map(\.backend) == ["kiln.reference", "acme.npu", "kiln.reference", "acme.npu", "acme.npu"])

        f32graph.nodes[0].name = "first"
        let plan = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()],
                                   options: PartitionOptions(minGroupSize: 2, deny: ["Softmax"])).partition(f32graph)
        let reasons = plan.report.entries.map(\.reason)
        #expect(reasons == ["claimed by acme.npu", "claimed by acme.npu",
                            "rejected by acme.npu: Sigmoid is not supported; fallback kiln.reference",
                            "denied by --deny Softmax; fallback kiln.reference",
                            "claimed by acme.npu, but its group of 1 node is below --min-group-size 2; fallback kiln.reference"])
        #expect(plan.report.entries.map(\.name) == ["first", "n1", "n2", "n3", "n4"])
        #expect(plan.report.entries.map(\.op) == ["Relu", "Neg", "Sigmoid", "Softmax", "Relu"])
        #expect(plan.report.nodesPerBackend.map(\.backend) == ["acme.npu", "kiln.reference"])
        #expect(plan.report.nodesPerBackend.map(\.nodes) == [2, 3])
    }

    @Test func nodesNoBackendRunsAreListedAtOnce() throws {
        let npu = ClaimingBackend("acme.npu", claims: ["Relu"])
        var graph = Self.chain(["Relu", "FancyOp", "Relu", "OtherOp"])
        graph.nodes[3].op = OpID("com.acme", "OtherOp")
        let error = #expect(throws: KilnError.self) {
            try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()]).partition(Model(graph: graph, opsets: ["": 21]))
        }
        #expect(error?.code == .unsupported)
        for part in ["no backend (acme.npu, kiln.reference) can run 2 node(s)", "node 1 'n1' (ai.onnx, FancyOp, 21)",
                     "rejected by kiln.reference: no kernel for FancyOp", "node 3 'n3' (com.acme, OtherOp, ?)"] {
            #expect(error?.message.contains(part) == true, "\(part) not in \(error?.message ?? "")")
        }
    }

    @Test func fallbackPrefersKilnCPUWhenItRunsTheNode() throws {
        let backends = registry(ClaimingBackend("acme.npu", claims: ["Add"]), cpu: true)
        // kiln.cpu runs Relu (float32); no backend but kiln.reference runs a string op.
        let graph = Graph(name: "mixed", inputs: [f32("x", [4]), Value(name: "s", type: .tensor(TensorType(.string, fixed: [2])))],
                          outputs: [f32("y", [4]), Value(name: "u", type: .tensor(TensorType(.string, fixed: [2])))],
                          nodes: [node("Relu", ["x"], ["r"], name: "relu"), node("Add", ["r", "x"], ["y"], name: "add"),
                                  node("StringNormalizer", ["s"], ["u"], ["case_change_action": .string("UPPER")], name: "strings")])
        let plan = try Partitioner(backends: ["acme.npu"], registry: backends, options: PartitionOptions(fallback: .allow)).partition(graph)
        #expect(plan.report.entries.map(\.backend) == ["kiln.cpu", "acme.npu", "kiln.reference"])
        #expect(plan.report.entries[0].reason == "rejected by acme.npu: Relu is not supported; fallback kiln.cpu")
        expectSound(plan, graph)
    }

    @Test func aLongInterleavedGraphPartitionsQuickly() throws {
        // 2,000 nodes alternating between a claimed and an unclaimed op, each also reading the graph input:
        // 2,000 groups, none of which may merge with an earlier one of its backend.
        let count = 2_000
        let nodes = (0..<count).map { i in node(i % 2 == 0 ? "Add" : "Sub", ["v\(i)", "x"], ["v\(i + 1)"], name: "n\(i)") }
        let graph = Graph(name: "long", inputs: [f32("v0", [4]), f32("x", [4])], outputs: [f32("v\(count)", [4])], nodes: nodes)
        let npu = ClaimingBackend("acme.npu", claims: ["Add"])
        let clock = ContinuousClock()
        let start = clock.now
        let plan = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()], options: PartitionOptions(fallback: .allow)).partition(graph)
        let elapsed = clock.now - start
        #expect(plan.partitions.count == count)
        #expect(plan.partitions.allSatisfy { $0.inputs.count == 2 && $0.outputs.count == 1 })
        #expect(elapsed < .seconds(10), "partitioning \(count) nodes took \(elapsed)")
    }

    @Test func badSelectionsAreRefused() {
        let backends = registry(ClaimingBackend("acme.npu", claims: ["Relu"]))
        let cases: [([String], PartitionOptions, String)] = [
            (["acme.gpu"], PartitionOptions(), "no backend named 'acme.gpu' (known: kiln.reference, acme.npu)"),
            (["acme.npu", "acme.npu"], PartitionOptions(), "backend 'acme.npu' is selected twice"),
            (["acme.npu"], PartitionOptions(minGroupSize: 0), "minimum group size 0"),
            (["acme.npu"], PartitionOptions(deny: [""]), "deny list entry ''"),
        ]
        for (names, options, message) in cases {
            let error = #expect(throws: KilnError.self) { try Partitioner(backends: names, registry: backends, options: options) }
            #expect(error?.code == .invalidArgument && error?.message.contains(message) == true, "\(error?.message ?? "")")
        }
    }

    @Test func subgraphsCarryTheirInitializersAndOuterReads() throws {
        // A partition that reads an initializer keeps it; a node whose If branch reads an outer value gets it as an input.
        let then = Graph(name: "then", outputs: [f32("t_out", [4])], nodes: [node("Neg", ["r"], ["t_out"])])
        let otherwise = Graph(name: "else", outputs: [f32("e_out", [4])], nodes: [node("Identity", ["r"], ["e_out"])])
        let graph = Graph(name: "outer", inputs: [Value(name: "c", type: .tensor(TensorType(.bool, fixed: []))), f32("x", [4])],
                          outputs: [f32("y", [4])], initializers: ["w": Tensor(shape: [4], [Float](repeating: 2, count: 4))],
                          nodes: [node("Mul", ["x", "w"], ["m"], name: "mul"), node("Relu", ["m"], ["r"], name: "relu"),
                                  node("If", ["c"], ["y"], ["then_branch": .graph(then), "else_branch": .graph(otherwise)], name: "if")])
        let npu = ClaimingBackend("acme.npu", claims: ["Mul"])
        let plan = try Partitioner(selected: [npu], fallbacks: [ReferenceBackend()]).partition(graph)
        #expect(groups(plan, graph) == [["mul"], ["relu", "if"]])
        let first = plan.partitions[0].subgraph(of: graph)
        #expect(first.inputs.map(\.name) == ["x"] && first.initializers.keys.sorted() == ["w"] && first.outputs.map(\.name) == ["m"])
        #expect(plan.partitions[1].inputs == ["m", "c"])
        let second = plan.partitions[1].subgraph(of: graph)
        #expect(second.initializers.isEmpty && second.outputs.map(\.name) == ["y"])
        try Verifier.verify(first)
        try Verifier.verify(second)

        let session = try Session(model: Model(graph: graph), plan: plan)
        let x = Tensor(shape: [4], [Float](arrayLiteral: -1, 2, -3, 4))
        let out = try session.run(["c": .tensor(Tensor(scalar: true)), "x": .tensor(x)])
        #expect(out["y"]?.tensor?.elements(as: Float.self) == [0, -4, 0, -8])
    }
}
