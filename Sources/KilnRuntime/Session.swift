import KilnBackend
import KilnFormat
import KilnIR

/// A model ready to run on one backend: inputs are checked against the graph's signature before
/// every run, so a wrong name, dtype or shape is a clear error rather than a wrong answer.
///
/// A session comes either from a model (`init(model:backend:)`: the backend prepares the graph) or from
/// a `.kiln` artifact (`init(artifact:backends:)`: each partition's payload is loaded by its backend).
public final class Session: @unchecked Sendable {
    /// The model this session runs.
    public let model: Model
    /// The backend that runs it.
    public let backend: any Backend
    /// The artifact the session was loaded from, or nil when it was prepared from a model.
    public let artifact: Artifact?
    private let executable: any Executable

    private init(model: Model, backend: any Backend, executable: any Executable, artifact: Artifact?) {
        self.model = model
        self.backend = backend
        self.executable = executable
        self.artifact = artifact
    }

    /// Prepares `model` on `backend`. Fails with `.unsupported`, listing every node the backend cannot run
    /// as `(domain, op, opset)` with node names, when there are any.
    public convenience init(model: Model, backend: any Backend) throws {
        let rejections = backend.rejections(in: model.graph)
        if !rejections.isEmpty {
            throw Rejection.error(rejections, in: model, backend: backend.info.name)
        }
        self.init(model: model, backend: backend, executable: try backend.prepare(model.graph), artifact: nil)
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
        guard manifest.partitions.count == 1, let partition = manifest.partitions.first else {
            throw KilnError(.unsupported, "\(origin): the artifact has \(manifest.partitions.count) partitions; this runtime runs artifacts with exactly one")
        }
        let nodeCount = model.graph.nodes.count
        guard partition.nodes.count == nodeCount, partition.nodes.enumerated().allSatisfy({ Int($0.element) == $0.offset }) else {
            throw KilnError(.invalidArtifact, "\(origin): partition 0 (\(partition.backend)) does not list the graph's \(nodeCount) nodes in order")
        }
        let what = "\(origin): partition 0 was compiled by backend '\(partition.backend)' \(partition.backendVersion) (payload compatibility '\(partition.compat)')"
        guard let backend = backends.backend(named: partition.backend) else {
            throw KilnError(.unsupported, "\(what), which this runtime does not have (available: \(available.isEmpty ? "none" : available))")
        }
        if let problem = backend.check(compat: partition.compat) {
            throw KilnError(.versionMismatch, "\(what); this runtime has \(backend.info.name) \(backend.info.version), which cannot load it: \(problem)")
        }
        let payload: [UInt8]
        if partition.hasPayloadSection {
            payload = [UInt8](try artifact.section(Int(partition.payloadSection)).bytes)
        } else {
            payload = []
        }
        let executable: any Executable
        do {
            executable = try backend.load(payload, graph: model.graph)
        } catch let error as KilnError {
            throw KilnError(error.code, "\(origin): partition 0 (\(backend.info.name)): \(error.message)")
        }
        self.init(model: model, backend: backend, executable: executable, artifact: artifact)
    }

    /// Loads the `.kiln` artifact at `path` (memory-mapped) through `backends`; see `init(artifact:backends:)`.
    public convenience init(artifactPath path: String, backends: BackendRegistry) throws {
        try self.init(artifact: Artifact(path: path), backends: backends)
    }

    /// Loads a `.kiln` artifact held in memory through `backends`; see `init(artifact:backends:)`.
    public convenience init(artifactBytes bytes: [UInt8], backends: BackendRegistry) throws {
        try self.init(artifact: Artifact(bytes: bytes), backends: backends)
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
    public func run(_ inputs: [String: RuntimeValue]) throws -> [String: RuntimeValue] {
        try validate(inputs)
        let values = try executable.run(inputs)
        var result: [String: RuntimeValue] = [:]
        for (output, value) in zip(model.graph.outputs, values) { result[output.name] = value }
        return result
    }

    /// Runs the model and returns the outputs in graph order.
    public func runOrdered(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue] {
        try validate(inputs)
        return try executable.run(inputs)
    }

    /// Checks names, element types and shapes of `inputs` against the graph's inputs; symbolic dims must
    /// agree across inputs.
    public func validate(_ inputs: [String: RuntimeValue]) throws {
        let known = Set(model.graph.inputs.map(\.name))
        for name in inputs.keys.sorted() where !known.contains(name) {
            throw KilnError(.invalidArgument, "the model has no input named '\(name)' (inputs: \(model.graph.inputs.map(\.name).joined(separator: ", ")))")
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
            guard tensor.dtype == expected.dtype else {
                throw KilnError(.invalidArgument, "input '\(input.name)': expected element type \(expected.dtype), given \(tensor.dtype)")
            }
            guard let dims = expected.shape else { continue }
            guard dims.count == tensor.rank else {
                throw KilnError(.invalidArgument, "input '\(input.name)': expected shape \(expected), given \(TensorType(tensor.dtype, fixed: tensor.shape)) (rank \(tensor.rank), expected \(dims.count))")
            }
            for (axis, (dim, size)) in zip(dims, tensor.shape).enumerated() {
                switch dim {
                case .fixed(let v) where v != size:
                    throw KilnError(.invalidArgument, "input '\(input.name)': expected shape \(expected), given \(TensorType(tensor.dtype, fixed: tensor.shape)) (dim \(axis) is \(size), expected \(v))")
                case .symbol(let s):
                    if let (bound, by) = symbols[s], bound != size {
                        throw KilnError(.invalidArgument, "input '\(input.name)': dim \(axis) ('\(s)') is \(size), but input '\(by)' set '\(s)' to \(bound)")
                    }
                    symbols[s] = (size, input.name)
                default: break
                }
            }
        }
    }
}
