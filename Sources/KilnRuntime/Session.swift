import KilnBackend
import KilnFormat
import KilnIR

/// A model ready to run on one or more backends: inputs are checked against the graph's signature
/// before every run, so a wrong name, dtype or shape is a clear error rather than a wrong answer.
///
/// A session comes from a model (`init(model:backend:)`: one backend prepares the whole graph;
/// `init(model:partitioner:)`: the graph is split among several backends), or from a `.kiln` artifact
/// (`init(artifact:backends:)`: each partition's payload is loaded by its backend). Partitions run in
/// order, passing values by name.
public final class Session: @unchecked Sendable {
    /// The model this session runs.
    public let model: Model
    /// The backend that runs the most nodes (the first partition's on a tie); see `partitions` for all.
    public let backend: any Backend
    /// The artifact the session was loaded from, or nil when it was prepared from a model.
    public let artifact: Artifact?
    /// The partitions, in execution order (one covering every node when a single backend runs the model).
    public let partitions: [Partition]
    /// Where every node runs and why.
    public let partitionReport: PartitionReport
    private let executable: any Executable
    /// The graph's input names, for `validate` (built once, not per run).
    private let inputNames: Set<String>

    private init(model: Model, partitions: [Partition], report: PartitionReport, executable: any Executable, artifact: Artifact?) {
        self.model = model
        self.inputNames = Set(model.graph.inputs.map(\.name))
        self.partitions = partitions
        self.partitionReport = report
        var best = partitions[0]
        for p in partitions.dropFirst() where p.nodes.count > best.nodes.count { best = p }
        self.backend = best.backend
        self.executable = executable
        self.artifact = artifact
    }

    /// The distinct backends of the partitions, in order of first use.
    public var backends: [any Backend] {
        var seen = Set<String>()
        return partitions.map(\.backend).filter { seen.insert($0.info.name).inserted }
    }

    /// Prepares `model` on `backend`. Fails with `.invalidModel` when the graph breaks the IR's invariants
    /// (`Verifier`), and with `.unsupported`, listing every node the backend cannot run
    /// as `(domain, op, opset)` with node names, when there are any.
    public convenience init(model: Model, backend: any Backend) throws {
        try Verifier.verify(model.graph)  // backends rely on the IR's invariants (arity included)
        let rejections = backend.rejections(in: model.graph)
        if !rejections.isEmpty {
            throw Rejection.error(rejections, in: model, backend: backend.info.name)
        }
        let whole = Partition(backend: backend, nodes: Array(model.graph.nodes.indices), inputs: model.graph.inputs.map(\.name),
                              outputs: model.graph.outputs.map(\.name))
        let executable: any Executable
        do {
            executable = try backend.prepare(model.graph)
        } catch let refusal as CompileRefusal {
            throw refusal.error  // one backend, no fallback: the refusal is the error
        }
        self.init(model: model, partitions: [whole],
                  report: PartitionReport(graph: model.graph, backend: backend.info.name, reason: "claimed by \(backend.info.name)"),
                  executable: executable, artifact: nil)
    }

    /// Splits `model` with `partitioner` and prepares each partition on its backend: the in-memory
    /// counterpart of compiling with several backends and loading the artifact. A backend that refuses nodes
    /// it claimed while preparing them has them rejected and the graph is partitioned again, as the compiler
    /// does (`Partitioner.plan(_:building:)`); the report says so.
    public convenience init(model: Model, partitioner: Partitioner) throws {
        try Verifier.verify(model.graph)  // backends rely on the IR's invariants (arity included)
        let graph = model.graph
        let (plan, executables) = try partitioner.plan(model) { i, partition, subgraph -> any Executable in
            do {
                return try partition.backend.prepare(subgraph)
            } catch let error as KilnError where error.code != .unsupported && partition.nodes.count != graph.nodes.count {
                throw KilnError(error.code, "partition \(i) (\(partition.backend.info.name)): \(error.message)")
            }
        }
        let stages = zip(plan.partitions, executables).map { PartitionedExecutable.Stage(partition: $0, executable: $1) }
        self.init(model: model, partitions: plan.partitions, report: plan.report,
                  executable: Self.executable(stages, graph: graph), artifact: nil)
    }

    /// Prepares each partition of `plan` (a plan of `model`'s main graph) on its backend.
    public convenience init(model: Model, plan: PartitionPlan) throws {
        let graph = model.graph
        let problems = PartitionPlan.problems(in: graph, partitions: plan.partitions.map { ($0.backend.info.name, $0.nodes, $0.inputs, $0.outputs) })
        guard !plan.partitions.isEmpty, problems.isEmpty || Self.coversWholeGraph(plan.partitions, graph) else {
            throw KilnError(.invalidArgument, "the partition plan does not fit the model: \(problems.first ?? "it has no partitions")")
        }
        var stages: [PartitionedExecutable.Stage] = []
        for (i, partition) in plan.partitions.enumerated() {
            do {
                stages.append(.init(partition: partition, executable: try Self.prepare(partition.backend, partition.subgraph(of: graph))))
            } catch let error as KilnError where plan.partitions.count > 1 {
                throw KilnError(error.code, "partition \(i) (\(partition.backend.info.name)): \(error.message)")
            }
        }
        self.init(model: model, partitions: plan.partitions, report: plan.report,
                  executable: Self.executable(stages, graph: graph), artifact: nil)
    }

    /// `backend.prepare(graph)`, with a refusal as its `KilnError` (a given plan cannot be repartitioned).
    private static func prepare(_ backend: any Backend, _ graph: Graph) throws -> any Executable {
        do { return try backend.prepare(graph) } catch let refusal as CompileRefusal { throw refusal.error }
    }

    private static func coversWholeGraph(_ partitions: [Partition], _ graph: Graph) -> Bool {
        partitions.count == 1 && partitions[0].nodes.elementsEqual(graph.nodes.indices)
    }

    private static func executable(_ stages: [PartitionedExecutable.Stage], graph: Graph) -> any Executable {
        if stages.count == 1, stages[0].partition.nodes.elementsEqual(graph.nodes.indices) { return stages[0].executable }
        return PartitionedExecutable(stages: stages, graph: graph)
    }

    /// Loads a `.kiln` artifact: decodes and verifies its graph, finds each partition's backend in
    /// `backends`, asks it whether it can load the payload's compatibility string, and loads the payload.
    ///
    /// A backend that is missing is `.unsupported`; a payload the backend cannot load is `.versionMismatch`;
    /// both messages name the backend, the version that compiled the payload and what this runtime has.
    public convenience init(artifact: Artifact, backends: BackendRegistry) throws {
        let manifest = artifact.manifest
        let origin = artifact.origin
        let model = try artifact.model()
        do {
            try Verifier.verify(model.graph)
        } catch let error as KilnError {
            throw KilnError(.invalidArtifact, "\(origin): the artifact's graph is invalid: \(error.message)")
        }
        let graphInputs = model.graph.inputs.map(\.name), graphOutputs = model.graph.outputs.map(\.name)
        if !manifest.inputs.isEmpty || !manifest.outputs.isEmpty {
            guard manifest.inputs.map(\.name) == graphInputs, manifest.outputs.map(\.name) == graphOutputs else {
                throw KilnError(.invalidArtifact, "\(origin): the manifest's signature (inputs \(manifest.inputs.map(\.name)), outputs \(manifest.outputs.map(\.name))) does not match its graph (inputs \(graphInputs), outputs \(graphOutputs))")
            }
        }
        let available = backends.all.map { "\($0.info.name) \($0.info.version)" }.joined(separator: ", ")
        guard !manifest.partitions.isEmpty else {
            throw KilnError(.unsupported, "\(origin): the artifact has 0 partitions; there is nothing to run")
        }
        let graph = model.graph
        let nodeCount = graph.nodes.count
        let listed = manifest.partitions.map { ($0.backend, $0.nodes.map { Int($0) }, $0.inputs, $0.outputs) }
        let whole = listed.count == 1 && listed[0].1.elementsEqual(graph.nodes.indices)
        if !whole {
            let problems = PartitionPlan.problems(in: graph, partitions: listed)
            if !problems.isEmpty {
                let shown = problems.prefix(10).map { "  " + $0 }.joined(separator: "\n")
                throw KilnError(.invalidArtifact, "\(origin): the artifact's \(listed.count) partition(s) do not fit its graph of \(nodeCount) nodes:\n\(shown)")
            }
        }

        // Every backend first, so that all missing ones are named at once.
        var resolved: [any Backend] = []
        var missing: [String] = []
        for (i, p) in manifest.partitions.enumerated() {
            if let backend = backends.backend(named: p.backend) {
                resolved.append(backend)
            } else {
                missing.append("partition \(i) was compiled by backend '\(p.backend)' \(p.backendVersion) (payload compatibility '\(p.compat)')")
            }
        }
        if !missing.isEmpty {
            throw KilnError(.unsupported, "\(origin): \(missing.joined(separator: "; ")), which this runtime does not have (available: \(available.isEmpty ? "none" : available))")
        }
        var partitions: [Partition] = []
        var stages: [PartitionedExecutable.Stage] = []
        for (i, (p, backend)) in zip(manifest.partitions, resolved).enumerated() {
            let what = "\(origin): partition \(i) was compiled by backend '\(p.backend)' \(p.backendVersion) (payload compatibility '\(p.compat)')"
            if let problem = backend.check(compat: p.compat) {
                throw KilnError(.versionMismatch, "\(what); this runtime has \(backend.info.name) \(backend.info.version), which cannot load it: \(problem)")
            }
            let payload: [UInt8] = p.hasPayloadSection ? [UInt8](try artifact.section(Int(p.payloadSection)).bytes) : []
            let partition = whole
                ? Partition(backend: backend, nodes: Array(graph.nodes.indices), inputs: graph.inputs.map(\.name), outputs: graph.outputs.map(\.name))
                : Partition(backend: backend, nodes: p.nodes.map { Int($0) }, inputs: p.inputs, outputs: p.outputs)
            do {
                let subgraph = partition.subgraph(of: graph)
                do {
                    stages.append(.init(partition: partition, executable: try backend.load(payload, graph: subgraph)))
                } catch let refusal as CompileRefusal {
                    throw refusal.error  // an artifact's partitions are fixed: a refusal at load is an error
                }
            } catch let error as KilnError {
                throw KilnError(error.code, "\(origin): partition \(i) (\(backend.info.name)): \(error.message)")
            }
            partitions.append(partition)
        }
        var report = PartitionReport(partitions: manifest.partitions.map(\.backend))
        report.entries = manifest.partitionReport.entries.map { e in
            let node = Int(e.node) < nodeCount ? graph.nodes[Int(e.node)] : nil
            return PartitionReport.Entry(node: Int(e.node), name: node?.name ?? "", op: node?.op.description ?? "",
                                         backend: e.backend, reason: e.reason)
        }
        self.init(model: model, partitions: partitions, report: report, executable: Self.executable(stages, graph: graph), artifact: artifact)
    }

    /// Loads the `.kiln` artifact at `path` through `backends`; see `init(artifact:backends:)`. The file is
    /// read into memory (`access: .read`, the default), so changing or truncating it afterwards cannot affect
    /// the session; `.map` memory-maps it instead, for trusted files that do not change while in use. With
    /// trusted keys in `trust`, the artifact must carry a valid signature by one of them (checked before
    /// anything else of it is read).
    public convenience init(artifactPath path: String, backends: BackendRegistry, access: Artifact.FileAccess = .read,
                            trust: ArtifactTrust = ArtifactTrust()) throws {
        try self.init(artifact: Artifact(path: path, access: access, trust: trust), backends: backends)
    }

    /// Loads a `.kiln` artifact held in memory through `backends`; see `init(artifact:backends:)`.
    public convenience init(artifactBytes bytes: [UInt8], backends: BackendRegistry, trust: ArtifactTrust = ArtifactTrust()) throws {
        try self.init(artifact: Artifact(bytes: bytes, trust: trust), backends: backends)
    }

    /// The inputs a caller must supply (graph inputs without a default initializer).
    public var requiredInputs: [Value] {
        model.graph.inputs.filter { model.graph.initializers[$0.name] == nil }
    }

    /// Every graph input, including those whose initializer provides a default.
    public var inputs: [Value] { model.graph.inputs }

    /// The graph outputs.
    public var outputs: [Value] { model.graph.outputs }

    /// Runs the model. `inputs` is keyed by input name; the result is keyed by output name.
    ///
    /// Thread safety: a session may be run from any number of threads at once, without locking by the
    /// caller. Each run has its own intermediate values; the weights and prepared kernels it shares with
    /// other runs are only read. Concurrent runs on the same inputs give the same outputs as one run at a
    /// time (tested with 8 threads × 500 runs through the C ABI and the Python binding).
    public func run(_ inputs: [String: RuntimeValue], options: RunOptions = RunOptions()) throws -> [String: RuntimeValue] {
        let values = try runOrdered(inputs, options: options)
        var result: [String: RuntimeValue] = [:]
        for (output, value) in zip(model.graph.outputs, values) { result[output.name] = value }
        return result
    }

    /// Runs the model and returns the outputs in graph order. With `options.timeout`, a run that takes
    /// longer is stopped between steps with a `.runtime` error ("run exceeded its deadline of N s").
    public func runOrdered(_ inputs: [String: RuntimeValue], options: RunOptions = RunOptions()) throws -> [RuntimeValue] {
        try validate(inputs)
        guard let timeout = options.timeout else { return try executable.run(inputs) }
        guard timeout > .zero else { throw KilnError(.invalidArgument, "run timeout must be positive, got \(timeout)") }
        let deadline = RunDeadline(timeout: timeout)
        return try RunDeadline.$current.withValue(deadline) {
            let results = try executable.run(inputs)
            try deadline.check()
            return results
        }
    }

    /// Warnings raised while running, each once, in the order first raised (a named dim bound to different
    /// sizes by different inputs).
    public var warnings: [String] { warningLock.withLock { warningList } }
    private let warningLock = Lock()
    private var warningList: [String] = []

    private func warn(_ message: String) {
        warningLock.withLock { if !warningList.contains(message), warningList.count < 100 { warningList.append(message) } }
    }

    /// Checks names, element types and shapes of `inputs` against the graph's inputs. Fixed dims must match.
    /// A named dim bound to different sizes by different inputs runs, as ONNX Runtime runs it, with a warning
    /// (`warnings`); `?` and unnamed dims are anonymous.
    public func validate(_ inputs: [String: RuntimeValue]) throws {
        let known = inputNames
        if inputs.keys.contains(where: { !known.contains($0) }) {
            for name in inputs.keys.sorted() where !known.contains(name) {
                throw KilnError(.invalidArgument, "the model has no input named '\(name)' (inputs: \(model.graph.inputs.map(\.name).joined(separator: ", ")))")
            }
        }
        var symbols: [String: (Int, String)] = [:]
        for input in model.graph.inputs {
            guard let value = inputs[input.name] else {
                if model.graph.initializers[input.name] != nil { continue }
                throw KilnError(.invalidArgument, "input '\(input.name)' is missing; expected \(input.type.map { "\($0)" } ?? "a value")")
            }
            guard case .tensor(let expected)? = input.type else { continue }
            guard let tensor = value.tensor else {
                throw KilnError(.invalidArgument, "input '\(input.name)': expected a tensor \(expected), given \(value.summary)")
            }
            try check(input.name, expected: expected, dtype: tensor.dtype, shape: tensor.shape, symbols: &symbols)
        }
    }

    /// The checks `validate` makes on one tensor of element type `dtype` and shape `shape` given for input
    /// `name`, declared as `expected`: element type, size, rank and fixed dims. Named dims are bound in
    /// `symbols` (name → size and the input that set it); a second input that binds one to another size
    /// raises a warning.
    private func check(_ name: String, expected: TensorType, dtype: DType, shape: [Int], symbols: inout [String: (Int, String)]) throws {
        guard dtype == expected.dtype else {
            throw KilnError(.invalidArgument, "input '\(name)': expected element type \(expected.dtype), given \(dtype)")
        }
        // The one checked size computation: a bound input's shape product never overflows later arithmetic.
        _ = try ElementCount.of(shape, dtype: dtype, what: "input '\(name)'", code: .invalidArgument)
        guard let dims = expected.shape else { return }
        guard dims.count == shape.count else {
            throw KilnError(.invalidArgument, "input '\(name)': expected shape \(expected), given \(TensorType(dtype, fixed: shape)) (rank \(shape.count), expected \(dims.count))")
        }
        for (axis, (dim, size)) in zip(dims, shape).enumerated() {
            switch dim {
            case .fixed(let v) where v != size:
                throw KilnError(.invalidArgument, "input '\(name)': expected shape \(expected), given \(TensorType(dtype, fixed: shape)) (dim \(axis) is \(size), expected \(v))")
            case .symbol(let s) where !s.isEmpty && s != "?":  // `?` (artifacts from before import made it anonymous)
                if let (bound, by) = symbols[s] {
                    if bound != size {
                        warn("input '\(name)': dim \(axis) ('\(s)') is \(size), but input '\(by)' set '\(s)' to \(bound); running anyway, as ONNX Runtime does")
                    }
                } else {
                    symbols[s] = (size, name)
                }
            default: break
            }
        }
    }

    /// Whether `bind` may return runs: the whole graph is one partition whose backend binds runs
    /// (`BindingExecutable`). When false, `bind` always returns nil.
    public var bindsRuns: Bool { executable is any BindingExecutable }

    /// A run bound to the input signature `inputs` (the shape and element type of each of `requiredInputs`,
    /// in that order), for a caller that runs those shapes many times from raw memory (the C ABI's
    /// `kiln_run`). The signature is checked once, as `validate` checks a run's inputs (same errors, same
    /// warnings). nil when the model cannot be run that way: it is split among partitions, its backend
    /// cannot bind runs (`BindingExecutable`), or it declines this signature; use `runOrdered` then.
    /// A bound run has no deadline (`RunOptions.timeout` does not apply to it).
    public func bind(_ inputs: [(shape: [Int], dtype: DType)]) throws -> (any BoundRun)? {
        let required = requiredInputs
        guard inputs.count == required.count else {
            throw KilnError(.invalidArgument, "\(inputs.count) input(s) given; the model takes \(required.count) (\(required.map(\.name).joined(separator: ", ")))")
        }
        var symbols: [String: (Int, String)] = [:]
        for (input, given) in zip(required, inputs) {
            switch input.type {
            case .tensor(let expected)?: try check(input.name, expected: expected, dtype: given.dtype, shape: given.shape, symbols: &symbols)
            case nil: continue
            default: return nil  // not declared as a tensor: `runOrdered` says what it expects
            }
        }
        guard let binding = executable as? any BindingExecutable else { return nil }
        return try binding.bind(zip(required, inputs).map { (name: $0.name, shape: $1.shape, dtype: $1.dtype) })
    }
}

/// How one run goes.
public struct RunOptions: Sendable {
    /// The longest the run may take; nil = no limit. The built-in backends check it between steps
    /// (see `RunDeadline`).
    public var timeout: Duration?

    /// Options for one run.
    public init(timeout: Duration? = nil) {
        self.timeout = timeout
    }
}

/// Partitions run one after another: each receives its inputs by name from the caller's inputs, the
/// graph's initializers or earlier partitions' outputs, and adds its outputs to the values passed on.
///
/// A value produced by a partition whose executable keeps tensors on a device (`DeviceExecutable` with a
/// placement) stays there, as a `DeviceBuffer`, when every later partition that reads it runs on that same
/// device and it is not a graph output: it passes from one partition to the next without a copy through
/// host memory. Every other value is in host memory.
struct PartitionedExecutable: Executable {
    /// One partition ready to run.
    struct Stage {
        let partition: Partition
        let executable: any Executable
    }

    let stages: [Stage]
    let graph: Graph
    /// For each stage, the indices of its outputs that stay on its device.
    let outputsOnDevice: [Set<Int>]

    init(stages: [Stage], graph: Graph) {
        self.stages = stages
        self.graph = graph
        outputsOnDevice = Self.deviceResidentOutputs(stages, graph: graph)
    }

    /// Which outputs of each stage stay on its device: those read by at least one later stage, only by
    /// stages on the same device placement, and not returned by the graph.
    static func deviceResidentOutputs(_ stages: [Stage], graph: Graph) -> [Set<Int>] {
        let placements = stages.map { ($0.executable as? any DeviceExecutable)?.placement }
        let graphOutputs = Set(graph.outputs.map(\.name))
        return stages.indices.map { i in
            guard let placement = placements[i] else { return [] }
            var kept: Set<Int> = []
            for (index, name) in stages[i].partition.outputs.enumerated() where !graphOutputs.contains(name) {
                let readers = stages.indices.dropFirst(i + 1).filter { stages[$0].partition.inputs.contains(name) }
                if !readers.isEmpty, readers.allSatisfy({ placements[$0] == placement }) { kept.insert(index) }
            }
            return kept
        }
    }

    func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue] {
        var values: [String: PlacedValue] = inputs.mapValues { .host($0) }
        for (i, stage) in stages.enumerated() {
            try RunDeadline.check()
            var feed: [String: PlacedValue] = [:]
            for name in stage.partition.inputs {
                if let value = values[name] {
                    feed[name] = value
                } else if graph.initializers[name] == nil {
                    throw KilnError(.runtime, "partition \(i) (\(stage.partition.backend.info.name)) needs '\(name)', which no input or earlier partition provided")
                }
                // An input with a default initializer that the caller left out: the subgraph keeps the default.
            }
            let results: [PlacedValue]
            if let device = stage.executable as? any DeviceExecutable, device.placement != nil {
                results = try device.run(placed: feed, outputsOnDevice: outputsOnDevice[i])
            } else {
                results = try stage.executable.run(feed.mapValues { try $0.onHost() }).map { .host($0) }
            }
            guard results.count == stage.partition.outputs.count else {
                throw KilnError(.runtime, "partition \(i) (\(stage.partition.backend.info.name)) returned \(results.count) values for its \(stage.partition.outputs.count) outputs")
            }
            for (name, value) in zip(stage.partition.outputs, results) { values[name] = value }
        }
        return try graph.outputs.map { output in
            if let value = values[output.name] { return try value.onHost() }
            if let constant = graph.initializers[output.name] { return .tensor(constant) }
            throw KilnError(.runtime, "graph output '\(output.name)' was produced by no partition")
        }
    }
}
