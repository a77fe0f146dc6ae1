import KilnBackend
import KilnIR

/// A graph prepared by `kiln.cpu`: the lowered program and one plan per distinct set of input shapes.
final class CPUExecutable: Executable, @unchecked Sendable {
    let program: Program
    let pool: ThreadPool
    let profile: CPUProfile?
    private var plans: [[Int]: Plan] = [:]
    private let lock = Lock()
    /// Plans kept at most (one per distinct input shape); older ones are dropped beyond it.
    static let planLimit = 16

    /// The most bytes one plan's arena may take (nil: no budget); a plan above it is an error naming its
    /// largest values.
    let memoryBudget: Int?

    init(program: Program, threads: Int, profile: CPUProfile?, memoryBudget: Int? = nil) {
        self.program = program
        self.memoryBudget = memoryBudget
        pool = ThreadPool(threadCount: threads)
        self.profile = profile
    }

    /// Builds the plan now when every graph input has a static shape and a supported type.
    func planStaticShapes(_ graph: Graph) throws {
        var signature: [(shape: [Int], dtype: DType)] = []
        for input in program.inputs {
            if let d = input.defaultValue {
                signature.append((d.shape, d.dtype))
                continue
            }
            guard case .tensor(let t)? = graph.inputs.first(where: { $0.name == input.name })?.type,
                  let shape = t.fixedShape else { return }
            signature.append((shape, t.dtype))
        }
        // Other planning failures surface at the first run (as before); a plan over the memory budget is
        // refused now, at load.
        try lock.withLock {
            do { _ = try plan(for: signature) } catch let error as KilnError where memoryBudget != nil && error.message.contains("memory_budget_mb") {
                throw error
            } catch {}
        }
    }

    private func key(_ signature: [(shape: [Int], dtype: DType)]) -> [Int] {
        signature.flatMap { [$0.dtype.onnxCode, $0.shape.count] + $0.shape }
    }

    /// The plan for `signature`, built on first use. Call with the lock held.
    private func plan(for signature: [(shape: [Int], dtype: DType)]) throws -> Plan {
        let k = key(signature)
        if let p = plans[k] { return p }
        let plan = try PlanBuilder(program: program, pool: pool, inputs: signature, memoryBudget: memoryBudget).build()
        if plans.count >= Self.planLimit { plans.removeAll() }
        plans[k] = plan
        return plan
    }

    func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue] {
        var tensors: [Tensor] = []
        for input in program.inputs {
            guard let value = inputs[input.name] ?? input.defaultValue.map(RuntimeValue.tensor) else {
                throw KilnError(.invalidArgument, "input '\(input.name)' is missing")
            }
            guard var t = value.tensor else { throw KilnError(.invalidArgument, "input '\(input.name)': kiln.cpu takes tensors, given \(value.summary)") }
            guard Support.elementTypes.contains(t.dtype) else {
                throw KilnError(.unsupported, "input '\(input.name)': element type \(t.dtype) not supported by kiln.cpu")
            }
            // Kernels read whole elements: copy an input that is not aligned to its element width.
            if let base = t.rawBytes?.baseAddress, Int(bitPattern: base) % t.dtype.byteWidth! != 0 {
                t = Tensor(dtype: t.dtype, shape: t.shape, storage: TensorStorage(copying: t.rawBytes!))
            }
            tensors.append(t)
        }
        return try lock.withLock {
            let plan = try self.plan(for: tensors.map { ($0.shape, $0.dtype) })
            let pointers = tensors.map { $0.rawBytes?.baseAddress ?? UnsafeRawPointer(plan.frame.arena) }
            let outputs: [Tensor]
            if let profile {
                let start = monotonicNanoseconds()
                outputs = try plan.run(inputs: pointers) { i, s, d in profile.record(plan.steps[i], start: s, duration: d) }
                profile.recordRun(start: start, duration: monotonicNanoseconds() - start, arenaBytes: plan.arenaBytes,
                                  unsharedBytes: plan.unsharedBytes)
            } else {
                outputs = try plan.run(inputs: pointers)
            }
            withExtendedLifetime(tensors) {}
            return outputs.map { RuntimeValue.tensor($0) }
        }
    }
}
