#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnBackend
import KilnIR

/// A graph prepared by `kiln.cpu`: the lowered program and one plan per distinct set of input shapes.
final class CPUExecutable: Executable, @unchecked Sendable {
    let program: Program
    let pool: ThreadPool
    let profile: CPUProfile?
    private var stages: [[Int]: Stage] = [:]
    private let lock = Lock()
    /// Stages kept at most (one per distinct input signature and known value); all are dropped beyond it.
    static let planLimit = 16
    /// Largest value (bytes) whose contents may key a cached stage; plans that depend on a larger one are
    /// built for each run.
    static let cachedValueBytes = 4096

    /// How a run proceeds from one point of the program: usually one plan for the whole program. When an
    /// operation's output shape depends on a value computed at run time (NonZero, a Reshape whose shape is
    /// computed from data), the plan stops before it (`prefix`): the run executes it, carries what later
    /// operations read as extra inputs, and plans the rest with the needed value known.
    enum Stage {
        /// Runs to the end.
        case final(Plan)
        /// Runs operations up to `end` and carries its outputs; `known` of them were known while planning;
        /// the rest is planned with `needs` known (nil when operation `end` is one the executable runs itself).
        case prefix(Plan, end: Int, known: Set<Int>, needs: Int?)
        /// Operation `operation` (control flow, whose output shapes are known only once it has run) runs
        /// here on the values at hand; its outputs are carried, and the rest is planned after it.
        case direct(Int)
        /// Value `needs` is already at hand (a graph input or carried value): plan again with it known.
        case needsKnown(Int)
    }

    /// The most bytes one plan's arena may take (nil: no budget); a plan above it is an error naming its
    /// largest values.
    let memoryBudget: Int?

    init(program: Program, threads: Int, profile: CPUProfile?, memoryBudget: Int? = nil) {
        self.program = program
        self.memoryBudget = memoryBudget
        pool = ThreadPool(threadCount: threads)
        self.profile = profile
    }

    /// An executable sharing `pool` with the one that runs it (the body of a control-flow operation).
    init(program: Program, pool: ThreadPool, profile: CPUProfile?, memoryBudget: Int?) {
        self.program = program
        self.memoryBudget = memoryBudget
        self.pool = pool
        self.profile = profile
    }

    /// Builds the first plan now when every graph input has a static shape and a supported type.
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
            do { _ = try stage(key(signature), signature: signature, carried: [], start: 0) } catch let error as KilnError where memoryBudget != nil && error.message.contains("memory_budget_mb") {
                throw error
            } catch {}
        }
    }

    private func key(_ signature: [(shape: [Int], dtype: DType)]) -> [Int] {
        signature.flatMap { [$0.dtype.onnxCode, $0.shape.count] + $0.shape }
    }

    /// The stage for `key`, built on first use (cached when `cache`). Call with the lock held.
    private func stage(_ key: [Int], signature: [(shape: [Int], dtype: DType)], carried: [(id: Int, tensor: Tensor, known: Bool)],
                       start: Int, cache: Bool = true) throws -> Stage {
        if let s = stages[key] { return s }
        let stage: Stage
        do {
            stage = .final(try PlanBuilder(program: program, pool: pool, inputs: signature, carried: carried, start: start, memoryBudget: memoryBudget).build())
        } catch let need as PlanNeedsValue {
            if carried.contains(where: { $0.id == need.value }) || program.inputs.contains(where: { $0.id == need.value }) {
                guard !carried.contains(where: { $0.id == need.value && $0.known }) else { throw need }
                stage = .needsKnown(need.value)
            } else {
                guard need.operation > start else {
                    // A missing (absent optional) input has no id: name it by number rather than index with it.
                    let name = program.names.indices.contains(need.value) ? "'\(program.names[need.value])'" : "#\(need.value)"
                    throw KilnError(.unsupported, "kiln.cpu: value \(name) is needed before it can be computed")
                }
                let (plan, known) = try PlanBuilder(program: program, pool: pool, inputs: signature, carried: carried, start: start, memoryBudget: memoryBudget)
                    .build(until: need.operation)
                stage = .prefix(plan, end: need.operation, known: known, needs: need.value)
            }
        } catch let run as PlanRunsOperation {
            if run.operation == start {
                stage = .direct(start)
            } else {
                let (plan, known) = try PlanBuilder(program: program, pool: pool, inputs: signature, carried: carried, start: start, memoryBudget: memoryBudget)
                    .build(until: run.operation)
                stage = .prefix(plan, end: run.operation, known: known, needs: nil)
            }
        }
        if cache {
            if stages.count >= Self.planLimit { stages.removeAll() }
            stages[key] = stage
        }
        return stage
    }

    /// Runs the program on `tensors` (graph inputs in program order), stage by stage. Call with the lock held.
    private func runStages(_ tensors: [Tensor]) throws -> [Tensor] {
        let signature = tensors.map { ($0.shape, $0.dtype) }
        var key = self.key(signature)
        var carried: [(id: Int, tensor: Tensor, known: Bool)] = []
        var start = 0
        var cache = true
        while true {
            let stage = try self.stage(key, signature: signature, carried: carried, start: start, cache: cache)
            let all = tensors + carried.map(\.tensor)
            switch stage {
            case .final(let plan):
                return try run(plan, all)
            case .prefix(let plan, let end, let known, let needs):
                let outputs = try run(plan, all)
                carried = zip(plan.outputs, outputs).map { ($0.id, $1, known.contains($0.id) || $0.id == needs) }
                start = end
                key += [-1, end]
                if let needs, let t = carried.first(where: { $0.id == needs })?.tensor { cache = cache && extend(&key, with: t) }
            case .direct(let index):
                guard let op = program.operations[index] as? ControlFlowOperation else {
                    throw KilnError(.internal, "kiln.cpu: operation #\(index) cannot run outside a plan")
                }
                let values = op.inputs.map { id -> Tensor? in
                    guard id >= 0 else { return nil }
                    if let c = carried.last(where: { $0.id == id }) { return c.tensor }
                    if let k = program.inputs.firstIndex(where: { $0.id == id }) { return tensors[k] }
                    return program.constants[id]
                }
                let outputs = try op.run(values, context: ControlFlowContext(pool: pool, profile: profile, memoryBudget: memoryBudget))
                // The outputs' shapes (not their contents) decide the plans that follow.
                key += [-3, index]
                for (id, t) in zip(op.outputs, outputs) where id >= 0 {
                    carried.append((id, t, false))
                    key += [t.dtype.onnxCode, t.shape.count] + t.shape
                }
                start = index + 1
            case .needsKnown(let value):
                if let k = carried.firstIndex(where: { $0.id == value }) {
                    carried[k].known = true
                    cache = cache && extend(&key, with: carried[k].tensor)
                } else if let k = program.inputs.firstIndex(where: { $0.id == value }) {
                    carried.append((value, tensors[k], true))
                    cache = cache && extend(&key, with: tensors[k])
                }
                key += [-2, value]
            }
        }
    }

    /// Appends the contents of `t` to a stage key; false when `t` is too large to key a cache.
    private func extend(_ key: inout [Int], with t: Tensor) -> Bool {
        guard let bytes = t.rawBytes else { return false }
        key += [t.dtype.onnxCode, t.shape.count] + t.shape + [bytes.count]
        key += bytes.map { Int($0) }
        return bytes.count <= Self.cachedValueBytes
    }

    private func run(_ plan: Plan, _ tensors: [Tensor]) throws -> [Tensor] {
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
        return outputs
    }

    func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue] {
        var tensors: [Tensor] = []
        for input in program.inputs {
            guard let value = inputs[input.name] ?? input.defaultValue.map(RuntimeValue.tensor) else {
                throw KilnError(.invalidArgument, "input '\(input.name)' is missing")
            }
            guard let t = value.tensor else { throw KilnError(.invalidArgument, "input '\(input.name)': kiln.cpu takes tensors, given \(value.summary)") }
            guard Support.castTypes.contains(t.dtype) else {
                throw KilnError(.unsupported, "input '\(input.name)': element type \(t.dtype) not supported by kiln.cpu")
            }
            tensors.append(Self.aligned(t))
        }
        return try lock.withLock { try runStages(tensors).map { RuntimeValue.tensor($0) } }
    }

    /// `t`, or a copy of it when its bytes are not aligned to its element width (kernels read whole elements).
    private static func aligned(_ t: Tensor) -> Tensor {
        guard let base = t.rawBytes?.baseAddress, Int(bitPattern: base) % t.dtype.byteWidth! != 0 else { return t }
        return Tensor(dtype: t.dtype, shape: t.shape, storage: TensorStorage(copying: t.rawBytes!))
    }
}

extension CPUExecutable: BindingExecutable {
    /// A run bound to `inputs` when, for their shapes, one plan runs the whole program (`Stage.final`) and no
    /// profile is attached. nil otherwise: a prefix stage (a shape known only at run time), control flow, an
    /// element type kiln.cpu does not take or without a byte width, an input name the program lacks, or more
    /// than one output located at an input (whose copies could overwrite each other's source in the caller's
    /// memory). Inputs not in `inputs` take their defaults.
    func bind(_ inputs: [(name: String, shape: [Int], dtype: DType)]) throws -> (any BoundRun)? {
        guard profile == nil else { return nil }
        var signature: [(shape: [Int], dtype: DType)] = []
        var sources: [Int] = []
        var defaults: [Tensor?] = []
        for input in program.inputs {
            if let k = inputs.firstIndex(where: { $0.name == input.name }) {
                let dtype = inputs[k].dtype
                guard Support.castTypes.contains(dtype), dtype.byteWidth != nil else { return nil }
                signature.append((inputs[k].shape, dtype))
                sources.append(k)
                defaults.append(nil)
            } else if let value = input.defaultValue, Support.castTypes.contains(value.dtype) {
                let t = Self.aligned(value)
                signature.append((t.shape, t.dtype))
                sources.append(-1)
                defaults.append(t)
            } else {
                return nil
            }
        }
        guard Set(sources.filter { $0 >= 0 }).count == inputs.count else { return nil }
        let stage = try lock.withLock { try self.stage(key(signature), signature: signature, carried: [], start: 0) }
        guard case .final(let plan) = stage,
              plan.outputs.allSatisfy({ $0.dtype != .string && $0.dtype.byteWidth != nil }) else { return nil }
        let atInput = plan.outputs.indices.filter {
            if case .input = plan.frame.locations[plan.outputs[$0].id] { return true }
            return false
        }
        guard atInput.count <= 1 else { return nil }
        return CPUBoundRun(plan: plan, lock: lock, sources: sources, defaults: defaults, firstOutput: atInput.first)
    }
}

/// A kiln.cpu run bound to one input signature whose plan runs the whole program: it sets the caller's
/// pointers into the plan's frame in place, runs the steps, and moves each output from the arena (or an
/// input) into the caller's buffer. It shares the plan, and so the executable's lock, with `run(_:)`.
/// It has no deadline and no profile.
final class CPUBoundRun: BoundRun, @unchecked Sendable {
    let outputs: [(shape: [Int], dtype: DType)]
    private let plan: Plan
    private let lock: Lock
    /// For each program input, the index of the caller's pointer, or -1 for a default.
    private let sources: [Int]
    /// The frame's input pointers with the defaults in place (the caller's slots are filled per run).
    private let fixedInputs: [UnsafeRawPointer]
    /// The default tensors `fixedInputs` points into.
    private let defaults: [Tensor?]
    /// (output index, value id, byte count), in copy order: an output located at an input first, so that
    /// it is read before any output buffer that overlaps that input is written.
    private let copies: [(index: Int, id: Int, bytes: Int)]

    init(plan: Plan, lock: Lock, sources: [Int], defaults: [Tensor?], firstOutput: Int?) {
        self.plan = plan
        self.lock = lock
        self.sources = sources
        self.defaults = defaults
        let placeholder = UnsafeRawPointer(plan.frame.arena)
        fixedInputs = defaults.map { $0?.rawBytes?.baseAddress ?? placeholder }
        outputs = plan.outputs.map { ($0.shape, $0.dtype) }
        var order = Array(plan.outputs.indices)
        if let first = firstOutput { order.removeAll { $0 == first }; order.insert(first, at: 0) }
        copies = order.map { (index: $0, id: plan.outputs[$0].id, bytes: plan.outputs[$0].shape.reduce(1, *) * plan.outputs[$0].dtype.byteWidth!) }
    }

    func run(inputs: UnsafePointer<UnsafeRawPointer>, outputs: UnsafePointer<UnsafeMutableRawPointer>) throws {
        try lock.withLock {
            let frame = plan.frame
            // The general path leaves the frame without inputs after its runs; a bound run sets every slot in
            // place (defaults too: another bound run of this plan may have left its own default pointers).
            if frame.inputs.count != sources.count { frame.inputs = fixedInputs }
            frame.inputs.withUnsafeMutableBufferPointer { slots in
                for (k, source) in sources.enumerated() { slots[k] = source >= 0 ? inputs[source] : fixedInputs[k] }
            }
            try plan.runSteps()
            for copy in copies where copy.bytes > 0 {
                memmove(outputs[copy.index], frame.raw(copy.id), copy.bytes)
            }
        }
    }
}
