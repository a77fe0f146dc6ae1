import KilnBackend
import KilnIR

/// If, Loop and Scan on kiln.cpu. Each body is lowered by kiln.cpu into its own `Program` (recursively: a
/// body may hold control flow too) and runs through its own `CPUExecutable`, which caches one plan per
/// distinct input signature, so a body is lowered once and planned once per set of shapes it meets.
///
/// Values of enclosing graphs that a body reads by name are the body's extra inputs (after its formal
/// ones); those that are constants (initializers, Constant nodes) become the body's own initializers, so
/// its weights are packed once. Output shapes depend on run-time values (the condition, the trip count),
/// so a control-flow operation is never planned: the executable runs the plan before it, runs the
/// operation itself on the values at hand, and plans what follows with its outputs as carried values
/// (`CPUExecutable.Stage.direct`).
enum ControlFlow {
    /// Whether `op` is one of If, Loop and Scan.
    static func isControlFlow(_ op: OpID) -> Bool {
        op.domain.isEmpty && ["If", "Loop", "Scan"].contains(op.name)
    }

    /// The bodies of a control-flow node by attribute name, in a fixed order (then_branch before else_branch).
    static func bodies(of node: Node) -> [(name: String, graph: Graph)] {
        let names = node.op.name == "If" ? ["then_branch", "else_branch"] : ["body"]
        return names.compactMap { name in
            if case .graph(let g)? = node.attributes[name] { return (name, g) }
            return nil
        }
    }

    /// The element types of a control-flow node's outputs that its bodies declare (nil where unknown).
    static func outputTypes(of node: Node) -> [DType?]? {
        guard isControlFlow(node.op), let body = bodies(of: node).first?.graph else { return nil }
        let declared = body.outputs.map { $0.type?.tensorType?.dtype }
        switch node.op.name {
        case "If": return declared
        case "Loop": return Array(declared.dropFirst())
        default: return declared
        }
    }

    /// `body` as a graph of its own: its formal inputs, then an input for every value it reads from the
    /// enclosing graphs that is not in `constants` (those become its initializers). `types` gives the
    /// element types of the enclosing values. Returns the graph and the names of the captured inputs.
    static func standalone(_ body: Graph, types: [String: DType], constants: [String: Tensor]) -> (graph: Graph, captured: [String]) {
        var graph = body
        var captured: [String] = []
        for name in body.freeValues {
            if let t = constants[name] {
                graph.initializers[name] = t
            } else {
                captured.append(name)
                graph.inputs.append(Value(name: name, type: types[name].map { .tensor(TensorType($0, nil)) }))
            }
        }
        return (graph, captured)
    }

    /// Why kiln.cpu cannot run control-flow node `node`, or nil: a body that is not a graph of tensors or
    /// holds a node kiln.cpu rejects makes the whole node fall back, so that the claim agrees with lowering.
    static func rejection(_ node: Node, _ facts: SupportFacts) -> String? {
        let bodies = bodies(of: node)
        guard bodies.count == (node.op.name == "If" ? 2 : 1) else { return "\(node.op.name) without its body attribute(s)" }
        let inputCount = node.inputs.count
        switch node.op.name {
        case "If":
            guard inputCount == 1, !node.inputs[0].isEmpty else { return "If needs exactly one condition input" }
            for (name, g) in bodies where g.outputs.count != node.outputs.count {
                return "If's \(name) has \(g.outputs.count) outputs for \(node.outputs.count) node outputs"
            }
        case "Loop":
            guard inputCount >= 2 else { return "Loop needs its M and cond inputs (either may be empty)" }
            let body = bodies[0].graph
            guard body.inputs.count == inputCount, body.outputs.count == node.outputs.count + 1,
                  node.outputs.count >= inputCount - 2 else {
                return "Loop body's inputs/outputs (\(body.inputs.count)/\(body.outputs.count)) do not match the node's (\(inputCount)/\(node.outputs.count))"
            }
        default:
            let body = bodies[0].graph
            if inputCount == body.inputs.count + 1 { return "Scan in its opset 8 form (sequence_lens, batch axis) is not supported" }
            guard body.inputs.count == inputCount, body.outputs.count == node.outputs.count else {
                return "Scan body's inputs/outputs (\(body.inputs.count)/\(body.outputs.count)) do not match the node's (\(inputCount)/\(node.outputs.count))"
            }
            guard let m = try? node.int("num_scan_inputs", 0), m >= 1, m <= inputCount else {
                return "Scan needs num_scan_inputs in 1...\(inputCount)"
            }
        }
        for (name, g) in bodies {
            // A value with no name has no id in the body's program: the body is malformed.
            if g.inputs.contains(where: { $0.name.isEmpty }) || g.outputs.contains(where: { $0.name.isEmpty }) {
                return "\(node.op.name) \(name) has an input or output with an empty name"
            }
            for v in g.inputs + g.outputs {
                if let t = v.type, t.tensorType == nil { return "\(node.op.name) \(name) value '\(v.name)' is not a tensor" }
                if let t = v.type?.tensorType?.dtype, !Support.castTypes.contains(t) {
                    return "\(node.op.name) \(name) value '\(v.name)' is \(t), which kiln.cpu does not hold"
                }
            }
            let (standalone, _) = standalone(g, types: facts.types, constants: facts.constants)
            if let first = Support.rejections(in: standalone).first, first.node < standalone.nodes.count {
                let inner = standalone.nodes[first.node]
                return "\(node.op.name) \(name) node '\(inner.displayName)' (\(inner.op.name)): \(first.reason)"
            }
        }
        return nil
    }
}

/// A body of a control-flow node, lowered by kiln.cpu; its executable is made at first use, with the
/// enclosing executable's thread pool.
final class CompiledBody: @unchecked Sendable {
    /// The attribute it comes from (`then_branch`, `body`).
    let name: String
    /// Its program.
    let program: Program
    /// Names of its formal inputs, then of the enclosing values it reads.
    let inputNames: [String]
    /// Number of formal inputs.
    let formalCount: Int
    /// Number of outputs.
    let outputCount: Int
    /// The declared types of its outputs (for empty stacks).
    let outputTypes: [ValueType?]
    private var executable: CPUExecutable?
    private let lock = Lock()

    init(name: String, program: Program, inputNames: [String], formalCount: Int, outputTypes: [ValueType?]) {
        self.name = name
        self.program = program
        self.inputNames = inputNames
        self.formalCount = formalCount
        self.outputCount = outputTypes.count
        self.outputTypes = outputTypes
    }

    /// Runs the body on `formal` inputs and the enclosing values `captured` (by name).
    func run(_ formal: [Tensor], captured: [String: Tensor], context: ControlFlowContext) throws -> [Tensor] {
        let executable = lock.withLock { () -> CPUExecutable in
            if let e = self.executable { return e }
            let e = CPUExecutable(program: program, pool: context.pool, profile: context.profile, memoryBudget: context.memoryBudget)
            self.executable = e
            return e
        }
        var inputs: [String: RuntimeValue] = [:]
        for (k, name) in inputNames.enumerated() {
            if k < formalCount {
                guard k < formal.count else { throw KilnError(.invalidModel, "kiln.cpu: \(self.name) input '\(name)' has no value") }
                inputs[name] = .tensor(formal[k])
            } else {
                guard let t = captured[name] else { throw KilnError(.invalidModel, "kiln.cpu: \(self.name) reads '\(name)', which has no value") }
                inputs[name] = .tensor(t)
            }
        }
        let outputs = try executable.run(inputs)
        guard outputs.count == outputCount else {
            throw KilnError(.internal, "kiln.cpu: \(name) returned \(outputs.count) values for \(outputCount) outputs")
        }
        return try outputs.map { value in
            guard let t = value.tensor else { throw KilnError(.unsupported, "kiln.cpu: \(name) returned a value that is not a tensor") }
            return t
        }
    }
}

/// What a control-flow operation needs from the executable that runs it.
struct ControlFlowContext {
    let pool: ThreadPool
    let profile: CPUProfile?
    let memoryBudget: Int?
}

/// If, Loop or Scan: never planned (its output shapes are known only once it has run); the executable
/// runs it between plans (`run`).
final class ControlFlowOperation: Operation {
    let kind: String
    let label: String
    /// The node's inputs, then the enclosing values its bodies read.
    let inputs: [Int]
    let outputs: [Int]
    /// Number of node inputs (the rest of `inputs` are captured values).
    let nodeInputCount: Int
    /// Names of the captured values (`inputs[nodeInputCount...]`).
    let capturedNames: [String]
    let bodies: [CompiledBody]
    let node: Node

    /// The most iterations whose scan outputs a Loop may stack, as kiln.reference allows (2^24).
    static let maxScanSlices = 1 << 24

    init(node: Node, inputs: [Int], outputs: [Int], capturedIDs: [Int], capturedNames: [String], bodies: [CompiledBody]) {
        self.node = node
        kind = node.op.name
        label = node.displayName
        self.inputs = inputs + capturedIDs
        self.outputs = outputs
        nodeInputCount = inputs.count
        self.capturedNames = capturedNames
        self.bodies = bodies
    }

    func plan(_ builder: PlanBuilder) throws {
        throw PlanRunsOperation(operation: -1)
    }

    private func fail(_ message: String) -> KilnError {
        KilnError(.invalidModel, "kiln.cpu: \(kind) '\(label)': \(message)")
    }

    /// Runs the operation on `values` (one per entry of `inputs`, nil for an omitted optional input) and
    /// returns one tensor per entry of `outputs`.
    func run(_ values: [Tensor?], context: ControlFlowContext) throws -> [Tensor] {
        guard values.count == inputs.count else { throw KilnError(.internal, "kiln.cpu: \(kind) '\(label)' given \(values.count) values") }
        var captured: [String: Tensor] = [:]
        for (k, name) in capturedNames.enumerated() {
            if let t = values[nodeInputCount + k] { captured[name] = t }
        }
        let args = Array(values[..<nodeInputCount])
        let results: [Tensor]
        switch kind {
        case "If": results = try runIf(args, captured, context)
        case "Loop": results = try runLoop(args, captured, context)
        default: results = try runScan(args, captured, context)
        }
        guard results.count == outputs.count else {
            throw fail("computed \(results.count) outputs for \(outputs.count)")
        }
        return results
    }

    /// The truth of a one-element tensor.
    private func truth(_ t: Tensor, _ what: String) throws -> Bool {
        guard t.count == 1 else { throw fail("\(what) must hold one element, has \(t.count)") }
        return t.asDoubles()[0] != 0
    }

    private func runIf(_ args: [Tensor?], _ captured: [String: Tensor], _ context: ControlFlowContext) throws -> [Tensor] {
        guard args.count == 1, let cond = args[0], bodies.count == 2 else { throw fail("needs a condition and two branches") }
        let branch = try truth(cond, "cond") ? bodies[0] : bodies[1]
        return try branch.run([], captured: captured, context: context)
    }

    private func runLoop(_ args: [Tensor?], _ captured: [String: Tensor], _ context: ControlFlowContext) throws -> [Tensor] {
        guard args.count >= 2, let body = bodies.first else { throw fail("needs M, cond and a body") }
        var maxTrips: Int64? = nil
        if let m = args[0] {
            guard m.count == 1 else { throw fail("M must hold one element, has \(m.count)") }
            maxTrips = m.asInt64s()[0]
        }
        var cond = true
        if let c = args[1] { cond = try truth(c, "cond") }
        var carried: [Tensor] = []
        for (k, t) in args.dropFirst(2).enumerated() {
            guard let t else { throw fail("loop-carried value #\(k) is missing") }
            carried.append(t)
        }
        let carriedCount = carried.count
        let scanCount = body.outputCount - 1 - carriedCount
        guard scanCount >= 0 else { throw fail("body has too few outputs") }
        var scans = [[Tensor]](repeating: [], count: scanCount)
        var iteration: Int64 = 0
        let deadline = RunDeadline.current
        while cond, maxTrips.map({ iteration < $0 }) ?? true {
            try deadline?.check()
            let results = try body.run([Tensor(scalar: iteration), Tensor(scalar: cond)] + carried, captured: captured, context: context)
            cond = try truth(results[0], "the body's cond output")
            carried = Array(results[1..<(1 + carriedCount)])
            for k in 0..<scanCount {
                let t = results[1 + carriedCount + k]
                scans[k].append(t)
                guard scans[k].count <= Self.maxScanSlices else {
                    throw KilnError(.unsupported, "kiln.cpu: \(kind) '\(label)': scan output \(k) would stack more than \(Self.maxScanSlices) iterations")
                }
                _ = try stackBytes([scans[k].count] + t.shape, t.dtype, "scan output \(k)")
            }
            iteration += 1
        }
        var outputs = carried
        for k in 0..<scanCount {
            outputs.append(try stack(scans[k], axis: 0, emptyType: body.outputTypes[1 + carriedCount + k], "scan output \(k)"))
        }
        return outputs
    }

    private func runScan(_ args: [Tensor?], _ captured: [String: Tensor], _ context: ControlFlowContext) throws -> [Tensor] {
        guard let body = bodies.first else { throw fail("has no body") }
        let m = (try? node.int("num_scan_inputs", 0)) ?? 0
        guard m >= 1, m <= args.count else { throw fail("num_scan_inputs must be in 1...\(args.count)") }
        let n = args.count - m
        var values: [Tensor] = []
        for (k, t) in args.enumerated() {
            guard let t else { throw fail("input #\(k) is missing") }
            values.append(t)
        }
        var states = Array(values[..<n])
        let scanInputs = Array(values[n...])
        let k = body.outputCount - n
        guard k >= 0 else { throw fail("body has too few outputs") }
        let inputAxes = try node.ints("scan_input_axes") ?? Array(repeating: 0, count: m)
        let inputDirections = try node.ints("scan_input_directions") ?? Array(repeating: 0, count: m)
        let outputAxes = try node.ints("scan_output_axes") ?? Array(repeating: 0, count: k)
        let outputDirections = try node.ints("scan_output_directions") ?? Array(repeating: 0, count: k)
        guard inputAxes.count == m, inputDirections.count == m, outputAxes.count == k, outputDirections.count == k else {
            throw fail("scan axis/direction attributes do not match the number of scan inputs/outputs")
        }
        var axes: [Int] = []
        for (t, a) in zip(scanInputs, inputAxes) {
            guard t.rank >= 1, a >= -t.rank, a < t.rank else { throw fail("scan axis \(a) is out of range for an input of rank \(t.rank)") }
            axes.append(a < 0 ? a + t.rank : a)
        }
        let lengths = zip(scanInputs, axes).map { $0.shape[$1] }
        guard let steps = lengths.first, lengths.allSatisfy({ $0 == steps }) else {
            throw fail("scan inputs have different sequence lengths \(lengths)")
        }
        var scans = [[Tensor]](repeating: [], count: k)
        let deadline = RunDeadline.current
        for step in 0..<steps {
            try deadline?.check()
            var slices: [Tensor] = []
            for (i, t) in scanInputs.enumerated() {
                slices.append(slice(t, axis: axes[i], index: inputDirections[i] != 0 ? steps - 1 - step : step))
            }
            let results = try body.run(states + slices, captured: captured, context: context)
            states = Array(results[..<n])
            for j in 0..<k { scans[j].append(results[n + j]) }
        }
        var outputs = states
        for j in 0..<k {
            var slices = scans[j]
            if outputDirections[j] != 0 { slices.reverse() }
            let rank = (slices.first?.rank ?? 0) + 1
            let a = outputAxes[j]
            guard a >= -rank, a < rank else { throw fail("scan_output_axes \(a) is out of range for rank \(rank)") }
            outputs.append(try stack(slices, axis: a < 0 ? a + rank : a, emptyType: body.outputTypes[n + j], "scan output \(j)"))
        }
        return outputs
    }

    /// Bytes of a stacked value of `shape`, checked against kiln.cpu's limit for one value.
    private func stackBytes(_ shape: [Int], _ dtype: DType, _ what: String) throws -> Int {
        var bytes = dtype.byteWidth ?? 1
        for d in shape {
            let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard d >= 0, !overflow, p <= PlanBuilder.maxBufferBytes else {
                throw KilnError(.unsupported, "kiln.cpu: \(kind) '\(label)': \(what) of shape \(shape) is larger than kiln.cpu's limit for one value")
            }
            bytes = p
        }
        return bytes
    }

    /// Slice `index` of `t` along `axis` (that axis removed).
    private func slice(_ t: Tensor, axis: Int, index: Int) -> Tensor {
        let width = t.dtype.byteWidth ?? 1
        let outer = t.shape[..<axis].reduce(1, *), length = t.shape[axis]
        let inner = t.shape[(axis + 1)...].reduce(1, *) * width
        var shape = t.shape
        shape.remove(at: axis)
        let source = t.rawBytes
        let storage = TensorStorage(byteCount: outer * inner) { dst in
            guard inner > 0, let src = source?.baseAddress, let d = dst.baseAddress else { return }
            for o in 0..<outer {
                (d + o * inner).copyMemory(from: src + (o * length + index) * inner, byteCount: inner)
            }
        }
        return Tensor(dtype: t.dtype, shape: shape, storage: storage)
    }

    /// `slices` (one shape and type) stacked along a new axis `axis`; with no slices, an empty value of
    /// the body output's declared type (shape [0, dims…] when its dims are fixed).
    private func stack(_ slices: [Tensor], axis: Int, emptyType: ValueType?, _ what: String) throws -> Tensor {
        guard let first = slices.first else {
            guard case .tensor(let t)? = emptyType else { return Tensor(zeros: .float32, shape: [0]) }
            var shape = t.fixedShape ?? []
            shape.insert(0, at: min(axis, shape.count))
            return Tensor(zeros: t.dtype, shape: shape)
        }
        for s in slices where s.shape != first.shape || s.dtype != first.dtype {
            throw fail("\(what): iterations produced \(first.dtype)\(first.shape) and \(s.dtype)\(s.shape), which do not stack")
        }
        var shape = first.shape
        shape.insert(slices.count, at: axis)
        let bytes = try stackBytes(shape, first.dtype, what)
        let width = first.dtype.byteWidth ?? 1
        let outer = first.shape[..<axis].reduce(1, *)
        let inner = first.shape[axis...].reduce(1, *) * width
        let sources = slices.map { $0.rawBytes?.baseAddress }
        let storage = TensorStorage(byteCount: bytes) { dst in
            guard inner > 0, let d = dst.baseAddress else { return }
            for o in 0..<outer {
                for (j, src) in sources.enumerated() {
                    guard let src else { continue }
                    (d + (o * slices.count + j) * inner).copyMemory(from: src + o * inner, byteCount: inner)
                }
            }
        }
        return withExtendedLifetime(slices) { Tensor(dtype: first.dtype, shape: shape, storage: storage) }
    }
}

/// Thrown while planning by an operation that cannot be planned (control flow): `CPUExecutable` runs the
/// operations before `operation`, then runs that one itself.
struct PlanRunsOperation: Error {
    var operation: Int
}

extension Lowering {
    /// If, Loop or Scan: lowers each body into its own program (its unsupported nodes refuse this node).
    mutating func lowerControlFlow(_ node: Node, at i: Int) throws {
        var bodies: [CompiledBody] = []
        var capturedNames: [String] = []
        for (name, body) in ControlFlow.bodies(of: node) {
            let (graph, captured) = ControlFlow.standalone(body, types: types, constants: constants)
            for c in captured where !capturedNames.contains(c) { capturedNames.append(c) }
            var lowering = Lowering(graph: graph)
            let program: Program
            do {
                program = try lowering.lower()
            } catch let refusal as CompileRefusal {
                throw KilnError(.unsupported, "kiln.cpu: \(node.op.name) '\(node.displayName)' \(name): \(refusal)")
            } catch let error as KilnError {
                throw KilnError(.unsupported, "kiln.cpu: \(node.op.name) '\(node.displayName)' \(name): \(error.message)")
            }
            bodies.append(CompiledBody(name: name, program: program, inputNames: graph.inputs.map(\.name),
                                       formalCount: body.inputs.count, outputTypes: body.outputs.map(\.type)))
        }
        let op = ControlFlowOperation(node: node, inputs: node.inputs.map { program.id($0) },
                                      outputs: node.outputs.map { program.id($0) },
                                      capturedIDs: capturedNames.map { program.id($0) }, capturedNames: capturedNames,
                                      bodies: bodies)
        placeOperation(op, nodes: [i])
    }
}
