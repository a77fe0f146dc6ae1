import Dispatch
import Kiln
import KilnCPU
import Synchronization
import Testing

/// Runs bound to one input signature (`Session.bind`, kiln.cpu's `BindingExecutable`): what `kiln_run`'s
/// fast path uses. They must give what `runOrdered` gives, check signatures as `validate` does, and decline
/// what they cannot run.
@Suite struct CPUBoundRunTests {
    /// a, b: f32[batch, 3] and scale: f32[3] (an input with a default) → y = (a + b) · scale, z = a − b.
    static func twoInputs() -> Model {
        var g = TestGraph()
        let a = g.input("a", [.symbol("batch"), .fixed(3)])
        let b = g.input("b", [.symbol("batch"), .fixed(3)])
        g.graph.inputs.append(Value(name: "scale", type: .tensor(TensorType(.float32, [.fixed(3)]))))
        g.graph.initializers["scale"] = Tensor(shape: [3], [Float(0.5), 2, -1])
        let y = g.node("Mul", [g.node("Add", [a, b]), "scale"])
        let z = g.node("Sub", [a, b])
        g.output(y, z)
        return g.model
    }

    /// x: f32[batch, 4] → y = Identity(x) (the plan's output is located at the input).
    static func identity() -> Model {
        var g = TestGraph()
        let x = g.input("x", [.symbol("batch"), .fixed(4)])
        g.output(g.node("Identity", [x]))
        return g.model
    }

    static func tensor(_ shape: [Int], seed: Int) -> Tensor {
        Tensor(shape: shape, (0..<shape.reduce(1, *)).map { Float(($0 * 7 + seed * 13) % 17 - 8) / 4 })
    }

    /// Runs `bound` on `inputs` into new output buffers (or into `into`, when given) and returns the outputs.
    static func run(_ bound: any BoundRun, _ inputs: [Tensor], into: [UnsafeMutableRawPointer]? = nil) throws -> [Tensor] {
        let sizes = bound.outputs.map { $0.shape.reduce(1, *) * $0.dtype.byteWidth! }
        let buffers = into ?? sizes.map { UnsafeMutableRawPointer.allocate(byteCount: max($0, 1), alignment: 64) }
        defer { if into == nil { buffers.forEach { $0.deallocate() } } }
        let pointers = inputs.map { $0.rawBytes!.baseAddress! }
        try pointers.withUnsafeBufferPointer { i in
            try buffers.withUnsafeBufferPointer { o in try bound.run(inputs: i.baseAddress!, outputs: o.baseAddress!) }
        }
        return zip(bound.outputs, zip(buffers, sizes)).map { output, buffer in
            Tensor(dtype: output.dtype, shape: output.shape, storage: TensorStorage(copying: UnsafeRawBufferPointer(start: buffer.0, count: buffer.1)))
        }
    }

    static func expectEqual(_ got: [Tensor], _ want: [Tensor], _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(got.count == want.count, "\(context): output count", sourceLocation: sourceLocation)
        for (i, (g, w)) in zip(got, want).enumerated() {
            #expect(g.shape == w.shape && g.dtype == w.dtype, "\(context): output \(i) is \(g.dtype)\(g.shape), expected \(w.dtype)\(w.shape)", sourceLocation: sourceLocation)
            #expect(g.asDoubles() == w.asDoubles(), "\(context): output \(i) values", sourceLocation: sourceLocation)
        }
    }

    @Test func aBoundRunGivesWhatRunGivesAsTheSignatureChanges() throws {
        let session = try Session(model: Self.twoInputs(), backend: CPUBackend(threads: 1))
        #expect(session.bindsRuns)
        #expect(session.requiredInputs.map(\.name) == ["a", "b"])
        for (call, batch) in [1, 3, 1].enumerated() {
            let a = Self.tensor([batch, 3], seed: call), b = Self.tensor([batch, 3], seed: call + 5)
            let bound = try #require(try session.bind([([batch, 3], .float32), ([batch, 3], .float32)]), "batch \(batch)")
            #expect(bound.outputs.map(\.shape) == [[batch, 3], [batch, 3]])
            let got = try Self.run(bound, [a, b])
            let want = try session.runOrdered(["a": .tensor(a), "b": .tensor(b)]).map { $0.tensor! }
            Self.expectEqual(got, want, "batch \(batch)")
            // The default-valued input is supplied: y = (a + b) · scale.
            let scale = [0.5, 2.0, -1.0]
            let expectedY = zip(a.asDoubles(), b.asDoubles()).enumerated().map { ($0.element.0 + $0.element.1) * scale[$0.offset % 3] }
            #expect(got[0].asDoubles() == expectedY, "batch \(batch): y")
        }
    }

    @Test func anIdentityOutputMayBeWrittenOverItsInput() throws {
        let session = try Session(model: Self.identity(), backend: CPUBackend(threads: 1))
        let x = Self.tensor([2, 4], seed: 3)
        let bound = try #require(try session.bind([([2, 4], .float32)]))
        Self.expectEqual(try Self.run(bound, [x]), [x], "identity")
        let before = x.asDoubles()
        let memory = UnsafeMutableRawPointer(mutating: x.rawBytes!.baseAddress!)
        _ = try Self.run(bound, [x], into: [memory])
        #expect(x.asDoubles() == before, "in place")
    }

    @Test func bindChecksTheSignatureAsValidateDoes() throws {
        let session = try Session(model: Self.twoInputs(), backend: CPUBackend(threads: 1))
        func message(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch let e as KilnError { return "\(e.code): \(e.message)" } catch { return "\(error)" }
        }
        let cases: [([Int], DType)] = [([2, 3], .int32), ([2, 4], .float32), ([2, 3, 1], .float32)]
        for (shape, dtype) in cases {
            let viaBind = message { _ = try session.bind([([2, 3], .float32), (shape, dtype)]) }
            let viaValidate = message { try session.validate(["a": .tensor(Tensor(zeros: .float32, shape: [2, 3])), "b": .tensor(Tensor(zeros: dtype, shape: shape))]) }
            #expect(viaBind != nil && viaBind == viaValidate, "\(dtype)\(shape): \(viaBind ?? "no error") vs \(viaValidate ?? "no error")")
        }
        // A named dim bound to two sizes: the same warning as a run raises.
        _ = try session.bind([([1, 3], .float32), ([2, 3], .float32)])
        let other = try Session(model: Self.twoInputs(), backend: CPUBackend(threads: 1))
        try other.validate(["a": .tensor(Tensor(zeros: .float32, shape: [1, 3])), "b": .tensor(Tensor(zeros: .float32, shape: [2, 3]))])
        #expect(session.warnings.count == 1 && session.warnings == other.warnings, "\(session.warnings) vs \(other.warnings)")
    }

    @Test func bindDeclinesWhatItCannotRunInOnePlan() throws {
        // A profile records every run: bound runs would bypass it.
        let profiled = try Session(model: Self.twoInputs(), backend: CPUBackend(threads: 1, profile: CPUProfile()))
        #expect(try profiled.bind([([1, 3], .float32), ([1, 3], .float32)]) == nil)
        // NonZero's output shape is known only at run time: the plan stops before it (a prefix stage).
        var g = TestGraph()
        let x = g.input("x", [.fixed(4)])
        g.output(g.node("NonZero", [x]))
        let session = try Session(model: g.model, backend: CPUBackend(threads: 1))
        #expect(try session.bind([([4], .float32)]) == nil)
        // kiln.reference does not bind runs.
        let reference = try Session(model: Self.twoInputs(), backend: Kiln.backend(named: "kiln.reference"))
        #expect(!reference.bindsRuns)
        #expect(try reference.bind([([1, 3], .float32), ([1, 3], .float32)]) == nil)
    }

    @Test func boundRunsFromEightThreadsAgree() throws {
        let session = try Session(model: Self.twoInputs(), backend: CPUBackend(threads: 2))
        let bound1 = try #require(try session.bind([([1, 3], .float32), ([1, 3], .float32)]))
        let bound3 = try #require(try session.bind([([3, 3], .float32), ([3, 3], .float32)]))
        let inputs = (0..<8).map { t in [Self.tensor([t % 2 == 0 ? 1 : 3, 3], seed: t), Self.tensor([t % 2 == 0 ? 1 : 3, 3], seed: t + 9)] }
        let want = try inputs.map { try session.runOrdered(["a": .tensor($0[0]), "b": .tensor($0[1])]).map { $0.tensor!.asDoubles() } }
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for _ in 0..<200 {
                let got = try? Self.run(t % 2 == 0 ? bound1 : bound3, inputs[t]).map { $0.asDoubles() }
                if got != want[t] { failures.withLock { $0 += 1 } }
            }
        }
        #expect(failures.withLock { $0 } == 0)
    }
}
