import KilnBackend
import KilnIR

/// A model ready to run on one backend: inputs are checked against the graph's signature before
/// every run, so a wrong name, dtype or shape is a clear error rather than a wrong answer.
public final class Session: @unchecked Sendable {
    /// The model this session runs.
    public let model: Model
    /// The backend that runs it.
    public let backend: any Backend
    private let executable: any Executable

    /// Prepares `model` on `backend`. Fails with `.unsupported`, listing every node the backend cannot run
    /// as `(domain, op, opset)` with node names, when there are any.
    public init(model: Model, backend: any Backend) throws {
        let rejections = backend.rejections(in: model.graph)
        if !rejections.isEmpty {
            var byOp: [String: [String]] = [:]
            var order: [String] = []
            for r in rejections {
                let node = model.graph.nodes[r.node]
                let domain = node.op.domain.isEmpty ? "ai.onnx" : node.op.domain
                let opset = model.opsets[node.op.domain].map(String.init) ?? "?"
                let key = "(\(domain), \(node.op.name), \(opset))"
                if byOp[key] == nil { order.append(key) }
                byOp[key, default: []].append(node.name.isEmpty ? "#\(r.node)" : node.name)
            }
            let lines = order.map { "  \($0) at nodes: \(byOp[$0]!.prefix(10).joined(separator: ", "))\(byOp[$0]!.count > 10 ? ", …" : "")" }
            throw KilnError(.unsupported, "\(backend.info.name) cannot run \(rejections.count) node(s) of this model:\n" + lines.joined(separator: "\n"))
        }
        self.model = model
        self.backend = backend
        self.executable = try backend.prepare(model.graph)
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
