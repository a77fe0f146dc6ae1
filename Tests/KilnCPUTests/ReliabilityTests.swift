import Kiln
import KilnCPU
import Testing

/// Issue 16 on kiln.cpu: unchecked arithmetic, a memory budget, run deadlines.
@Suite struct CPUReliabilityTests {
    static func tensor(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, [Float](repeating: 0.5, count: shape.reduce(1, *)))
    }

    static func error(_ body: () throws -> Void) -> KilnError? {
        do { try body(); return nil } catch let e as KilnError { return e } catch { return nil }
    }

    /// A graph output named "" used to index `lastUse[-1]` and trap.
    @Test func aGraphOutputWithAnEmptyNameIsATypedError() throws {
        var g = TestGraph()
        let x = g.input("x", [2])
        g.graph.nodes.append(Node(name: "r", op: OpID("", "Relu"), inputs: [x], outputs: [""]))
        g.graph.outputs = [Value(name: "")]
        let error = Self.error { _ = try CPUBackend().prepare(g.graph) }
        #expect(error?.code == .invalidModel, "\(String(describing: error))")
    }

    /// hidden_size near Int.max made `gates * hidden` overflow and trap.
    @Test func aHugeRecurrentHiddenSizeIsATypedError() throws {
        var g = TestGraph()
        let x = g.input("x", [1, 1, 2])
        let w = g.constant(Self.tensor([1, 4, 2]), "w")
        let r = g.constant(Self.tensor([1, 4, 1]), "r")
        let y = g.node("LSTM", [x, w, r], ["hidden_size": .int(Int.max / 3)])
        g.output(y)
        let executable = try CPUBackend().prepare(g.graph)
        let error = Self.error { _ = try executable.run(["x": .tensor(Self.tensor([1, 1, 2]))]) }
        #expect(error != nil, "\(String(describing: error))")
    }

    /// A plan above `memory_budget_mb` is an error at load that names the three largest values.
    @Test func aPlanOverTheMemoryBudgetIsRefusedAtLoadNamingTheLargestValues() throws {
        var g = TestGraph()
        var v = g.input("x", [512, 1024])
        for _ in 0..<3 { v = g.node("Transpose", [g.node("Exp", [v])]) }
        g.output(v)
        let budgeted = try CPUBackend.descriptor.make(BackendConfiguration(options: ["memory_budget_mb": "1"]))
        let error = Self.error { _ = try budgeted.prepare(g.graph) }
        #expect(error?.code == .unsupported, "\(String(describing: error))")
        #expect(error?.message.contains("memory budget of 1.00 MiB") == true, "\(String(describing: error))")
        let largest = error?.message.components(separatedBy: "largest values: ").last ?? ""
        #expect(largest.components(separatedBy: "2.00 MiB").count == 4, "\(String(describing: error))")
        // Within the budget it loads and runs.
        let roomy = try CPUBackend.descriptor.make(BackendConfiguration(options: ["memory_budget_mb": "64"]))
        _ = try roomy.prepare(g.graph).run(["x": .tensor(Self.tensor([512, 1024]))])
    }

    /// Slice, Split, Pad and the other remapping lowerings build per-axis index tables as long as the
    /// declared dims while planning; a Split of a declared [2^32] input built 32 GB of them (a fuzz finding,
    /// Fuzz/regressions/cabi/cabi-cpu-split-plan-time-index-maps.onnx). The tables count against the
    /// memory budget, before they are built.
    @Test func indexTablesSizedByDeclaredDimsCountAgainstTheBudget() throws {
        var g = TestGraph()
        let x = g.input("x", [1 << 32])
        let first = g.node("Split", [x], ["axis": .int(0), "num_outputs": .int(2)], outputs: 2)
        g.output(first, String(first.dropLast()) + "1")
        let budgeted = try CPUBackend.descriptor.make(BackendConfiguration(options: ["memory_budget_mb": "2048"]))
        let error = Self.error { _ = try budgeted.prepare(g.graph) }
        #expect(error?.code == .unsupported, "\(String(describing: error))")
        #expect(error?.message.contains("index tables") == true, "\(String(describing: error))")
        #expect(error?.message.contains("memory_budget_mb") == true, "\(String(describing: error))")
    }

    /// ConvTranspose's (input pixel × tap) → output table is one of them (the next fuzz finding of the same
    /// class: an input declared [1, 1, 2^32, 3] asked for 900 GB; Fuzz/regressions/cabi/
    /// cabi-cpu-convtranspose-plan-time-taps.bin).
    @Test func convTransposeTapTablesCountAgainstTheBudget() throws {
        var g = TestGraph()
        // 3·2^24 input pixels × 9 taps: a 3.6 GB table for an output of 335 MB.
        let x = g.input("x", [1, 1, 1 << 24, 3])
        let w = g.constant(Self.tensor([1, 1, 3, 3]), "w")
        g.output(g.node("ConvTranspose", [x, w]))
        let budgeted = try CPUBackend.descriptor.make(BackendConfiguration(options: ["memory_budget_mb": "2048"]))
        let error = Self.error { _ = try budgeted.prepare(g.graph) }
        #expect(error?.code == .unsupported, "\(String(describing: error))")
        #expect(error?.message.contains("index tables") == true, "\(String(describing: error))")
    }

    /// Range read its three scalars as the start's type, and converted an infinite count to Int: a mutated
    /// model whose limit was another type trapped while planning at load (fuzz round 7,
    /// Fuzz/regressions/cabi/cabi-cpu-range-mixed-types.bin).
    @Test func rangeWithMixedTypesOrAnInfiniteSpanIsATypedError() throws {
        func plan(_ start: Tensor, _ limit: Tensor, _ delta: Tensor) -> KilnError? {
            var g = TestGraph()
            let x = g.input("x", [1])
            let r = g.node("Range", [g.constant(start, "s"), g.constant(limit, "l"), g.constant(delta, "d")])
            g.output(r, x)
            return Self.error { _ = try CPUBackend().prepare(g.graph).run(["x": .tensor(Self.tensor([1]))]) }
        }
        let f = { (v: Float) in Tensor(shape: [], [v]) }, i = { (v: Int64) in Tensor(dtype: .int64, shape: [], int64s: [v]) }
        let mixed = plan(f(0), i(5), f(1))
        #expect(mixed?.code == .invalidModel && mixed?.message.contains("one type") == true, "\(String(describing: mixed))")
        let infinite = plan(f(0), f(.infinity), f(1))
        #expect(infinite?.code == .invalidModel, "\(String(describing: infinite))")
        let overflow = plan(i(.min), i(.max), i(1))
        #expect(overflow?.code == .invalidModel && overflow?.message.contains("overflows") == true, "\(String(describing: overflow))")
        let huge = plan(f(0), f(1e30), f(1))
        #expect(huge?.code == .unsupported, "\(String(describing: huge))")
    }

    /// ConvTranspose computed its output size from attributes without bounds: strides near Int.max
    /// overflowed while planning at load (fuzz round 8, Fuzz/regressions/cabi/cabi-cpu-convtranspose-attribute-overflow.bin).
    @Test func convTransposeWithHugeStridesIsATypedError() throws {
        var g = TestGraph()
        let x = g.input("x", [1, 1, 4, 4])
        let w = g.constant(Self.tensor([1, 1, 3, 3]), "w")
        g.output(g.node("ConvTranspose", [x, w], ["strides": .ints([Int.max / 2, 1])]))
        let error = Self.error { _ = try CPUBackend().prepare(g.graph).run(["x": .tensor(Self.tensor([1, 1, 4, 4]))]) }
        #expect(error?.code == .unsupported && error?.message.contains("strides") == true, "\(String(describing: error))")
    }

    /// The same class, found by reading rather than fuzzing: Tile multiplied dims by repeats and
    /// DepthToSpace/SpaceToDepth squared the blocksize unchecked.
    @Test func tileAndDepthToSpaceSizeArithmeticIsChecked() throws {
        var g = TestGraph()
        let x = g.input("x", [1, 4, 2, 2])
        let repeats = g.constant(Tensor(dtype: .int64, shape: [4], int64s: [1, 1, Int64.max / 2, 1]), "r")
        g.output(g.node("Tile", [x, repeats]), g.node("DepthToSpace", [x], ["blocksize": .int(1 << 33)]))
        let error = Self.error { _ = try CPUBackend().prepare(g.graph).run(["x": .tensor(Self.tensor([1, 4, 2, 2]))]) }
        #expect(error?.code == .unsupported && error?.message.contains("would need more than") == true, "\(String(describing: error))")
        var h = TestGraph()
        let y = h.input("x", [1, 4, 2, 2])
        h.output(h.node("SpaceToDepth", [y], ["blocksize": .int(1 << 33)]))
        let error2 = Self.error { _ = try CPUBackend().prepare(h.graph).run(["x": .tensor(Self.tensor([1, 4, 2, 2]))]) }
        #expect(error2 != nil, "\(String(describing: error2))")
    }

    /// Slice's element count was a ceiling division that overflowed for a step near ±2^63; such a step takes
    /// the first element only (Int64.min included).
    @Test func sliceWithAHugeStepIsExact() throws {
        for step in [Int64.max, Int64.min] {
            var g = TestGraph()
            let x = g.input("x", [5])
            let i = { (v: Int64, n: String) in g.constant(Tensor(dtype: .int64, shape: [1], int64s: [v]), n) }
            let (starts, ends) = step > 0 ? (i(1, "s"), i(5, "e")) : (i(3, "s"), i(-10, "e"))
            g.output(g.node("Slice", [x, starts, ends, i(0, "a"), i(step, "st")]))
            let out = try CPUBackend().prepare(g.graph).run(["x": .tensor(Tensor(shape: [5], [Float](arrayLiteral: 0, 1, 2, 3, 4)))])
            #expect(out.first?.tensor?.elements(as: Float.self) == [step > 0 ? 1 : 3], "step \(step)")
        }
    }

    /// With no budget, the tables are held to one value's limit: a Slice of a [0, 2^40] input (no elements,
    /// but 2^40 indices along axis 1) is an error at run time, not an 8 TB allocation.
    @Test func indexTablesOfAnEmptyValueWithAHugeDimAreAnErrorWithoutABudget() throws {
        var g = TestGraph()
        let x = g.input("x", [0, 1 << 40])
        let starts = g.constant(Tensor(dtype: .int64, shape: [1], int64s: [0]), "starts")
        let ends = g.constant(Tensor(dtype: .int64, shape: [1], int64s: [1]), "ends")
        g.output(g.node("Slice", [x, starts, ends]))
        let executable = try CPUBackend().prepare(g.graph)
        let error = Self.error { _ = try executable.run(["x": .tensor(Tensor(shape: [0, 1 << 40], [Float]()))]) }
        #expect(error?.code == .unsupported, "\(String(describing: error))")
        #expect(error?.message.contains("index tables") == true, "\(String(describing: error))")
    }

    /// kiln.cpu checks the run's deadline between steps.
    @Test func theStepLoopStopsAtTheDeadline() throws {
        var g = TestGraph()
        var v = g.input("x", [64, 64])
        for _ in 0..<20 { v = g.node("Exp", [v]) }
        g.output(v)
        let executable = try CPUBackend().prepare(g.graph)
        let error = Self.error {
            _ = try RunDeadline.$current.withValue(RunDeadline(timeout: .nanoseconds(1))) {
                try executable.run(["x": .tensor(Self.tensor([64, 64]))])
            }
        }
        #expect(error?.code == .runtime && error?.message.contains("run exceeded its deadline of") == true, "\(String(describing: error))")
        _ = try executable.run(["x": .tensor(Self.tensor([64, 64]))])
    }
}
