import KilnIR

/// A reference kernel: computes a node's outputs from its inputs.
///
/// It returns one entry per node output, in order; it may return fewer when the trailing outputs are
/// optional and nobody asked for them (`context.wants(i)` says whether output `i` is used).
typealias Kernel = @Sendable (KernelContext) throws -> [RuntimeValue?]

/// Everything a kernel may look at: the node, its inputs, and a way to run the node's subgraphs.
struct KernelContext {
    /// The node being run.
    let node: Node
    /// The inputs, positionally; nil where the node omits an optional input.
    let inputs: [RuntimeValue?]
    /// Runs a subgraph of this node with `inputs` bound positionally to its inputs; the
    /// subgraph sees every value visible at this node by name.
    let runSubgraph: (Graph, [RuntimeValue]) throws -> [RuntimeValue]

    /// Number of inputs the node lists (including omitted ones).
    var inputCount: Int { inputs.count }

    /// Whether output `index` exists and someone reads it.
    func wants(_ index: Int) -> Bool { index < node.outputs.count && !node.outputs[index].isEmpty }

    // MARK: inputs

    /// Input `index`, which must be present.
    func value(_ index: Int) throws -> RuntimeValue {
        guard index < inputs.count, let v = inputs[index] else { throw fail("input \(index) is required") }
        return v
    }

    /// Input `index`, which must be present and a tensor.
    func tensor(_ index: Int) throws -> Tensor {
        guard let t = try value(index).tensor else { throw fail("input \(index) must be a tensor") }
        return t
    }

    /// Input `index` if the node supplies it (a tensor), else nil.
    func optionalTensor(_ index: Int) throws -> Tensor? {
        guard index < inputs.count, let v = inputs[index] else { return nil }
        guard let t = v.tensor else { throw fail("input \(index) must be a tensor") }
        return t
    }

    // MARK: attributes

    /// Integer attribute `name`, or `defaultValue` when absent.
    func int(_ name: String, _ defaultValue: Int) throws -> Int {
        try int(name) ?? defaultValue
    }
    /// Integer attribute `name`, or nil.
    func int(_ name: String) throws -> Int? {
        switch node.attributes[name] {
        case nil: return nil
        case .int(let v): return v
        default: throw fail("attribute '\(name)' must be an int")
        }
    }
    /// Float attribute `name`, or `defaultValue` when absent.
    func float(_ name: String, _ defaultValue: Float) throws -> Float {
        try float(name) ?? defaultValue
    }
    /// Float attribute `name`, or nil.
    func float(_ name: String) throws -> Float? {
        switch node.attributes[name] {
        case nil: return nil
        case .float(let v): return v
        case .int(let v): return Float(v)
        default: throw fail("attribute '\(name)' must be a float")
        }
    }
    /// String attribute `name`, or `defaultValue` when absent.
    func string(_ name: String, _ defaultValue: String) throws -> String {
        try string(name) ?? defaultValue
    }
    /// String attribute `name`, or nil.
    func string(_ name: String) throws -> String? {
        switch node.attributes[name] {
        case nil: return nil
        case .string(let v): return v
        default: throw fail("attribute '\(name)' must be a string")
        }
    }
    /// Integer-list attribute `name`, or nil.
    func ints(_ name: String) throws -> [Int]? {
        switch node.attributes[name] {
        case nil: return nil
        case .ints(let v): return v
        case .int(let v): return [v]
        default: throw fail("attribute '\(name)' must be a list of ints")
        }
    }
    /// Float-list attribute `name`, or nil.
    func floats(_ name: String) throws -> [Float]? {
        switch node.attributes[name] {
        case nil: return nil
        case .floats(let v): return v
        case .float(let v): return [v]
        default: throw fail("attribute '\(name)' must be a list of floats")
        }
    }
    /// String-list attribute `name`, or nil.
    func strings(_ name: String) throws -> [String]? {
        switch node.attributes[name] {
        case nil: return nil
        case .strings(let v): return v
        case .string(let v): return [v]
        default: throw fail("attribute '\(name)' must be a list of strings")
        }
    }
    /// Tensor attribute `name`, or nil.
    func tensorAttribute(_ name: String) throws -> Tensor? {
        switch node.attributes[name] {
        case nil: return nil
        case .tensor(let v): return v
        default: throw fail("attribute '\(name)' must be a tensor")
        }
    }
    /// Graph attribute `name`, which must be present.
    func graph(_ name: String) throws -> Graph {
        guard case .graph(let g) = node.attributes[name] else { throw fail("attribute '\(name)' must be a graph") }
        return g
    }
    /// Type attribute `name`, or nil.
    func type(_ name: String) throws -> ValueType? {
        switch node.attributes[name] {
        case nil: return nil
        case .type(let t): return t
        default: throw fail("attribute '\(name)' must be a type")
        }
    }

    // MARK: errors

    /// An error about this node, for bad inputs or attributes (a `KilnError.invalidArgument`).
    func fail(_ message: String) -> KilnError {
        KilnError(.invalidArgument, "\(node.op) node '\(node.name)': \(message)")
    }
    /// An error for an input type this kernel does not handle.
    func unsupported(_ what: String) -> KilnError {
        KilnError(.unsupported, "\(node.op) node '\(node.name)': \(what) is not supported by kiln.reference")
    }
}

/// The kernels of the reference backend, by op.
struct KernelTable {
    private(set) var kernels: [OpID: Kernel] = [:]

    /// Registers `kernel` for op `name` of `domain` (`""` is ONNX's default domain).
    mutating func add(_ name: String, domain: String = "", _ kernel: @escaping Kernel) {
        let id = OpID(domain, name)
        precondition(kernels[id] == nil, "two kernels for \(id)")
        kernels[id] = kernel
    }

    /// The kernel for `op`, or nil.
    subscript(op: OpID) -> Kernel? { kernels[op] }
}
