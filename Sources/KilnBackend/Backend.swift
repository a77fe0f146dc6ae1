#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// Who a backend is: its unique name, vendor and version.
public struct BackendInfo: Sendable, Hashable {
    /// Unique name, `vendor.target` (`kiln.reference`, `acme.npu`).
    public var name: String
    /// Who makes it.
    public var vendor: String
    /// Semantic version of the backend.
    public var version: String

    /// A backend identity.
    public init(name: String, vendor: String, version: String) {
        self.name = name
        self.vendor = vendor
        self.version = version
    }
}

/// A backend's answer for one node it will not run.
public struct Rejection: Sendable, Hashable {
    /// Index of the node in the graph.
    public var node: Int
    /// Why (`unsupported op ai.onnx.ml.TreeEnsemble`, `float64 not supported`).
    public var reason: String

    /// A rejection of node `node` for `reason`.
    public init(node: Int, reason: String) {
        self.node = node
        self.reason = reason
    }
}

extension Rejection {
    /// The `.unsupported` error for a backend that rejects `rejections` of `model`'s main graph: every
    /// unsupported op at once, as `(domain, op, opset)`, with up to ten node names each.
    public static func error(_ rejections: [Rejection], in model: Model, backend: String) -> KilnError {
        var byOp: [String: [String]] = [:]
        var order: [String] = []
        for r in rejections {
            let node = r.node >= 0 && r.node < model.graph.nodes.count ? model.graph.nodes[r.node] : nil
            let domain = node.map { $0.op.domain.isEmpty ? "ai.onnx" : $0.op.domain } ?? "?"
            let opset = node.flatMap { model.opsets[$0.op.domain] }.map(String.init) ?? "?"
            let key = "(\(domain), \(node?.op.name ?? "?"), \(opset))"
            if byOp[key] == nil { order.append(key) }
            byOp[key, default: []].append(node.map { $0.name.isEmpty ? "#\(r.node)" : $0.name } ?? "#\(r.node)")
        }
        let lines = order.map { key in
            let names = byOp[key]!
            return "  \(key) at nodes: \(names.prefix(10).joined(separator: ", "))\(names.count > 10 ? ", …" : "")"
        }
        return KilnError(.unsupported, "\(backend) cannot run \(rejections.count) node(s) of this model:\n" + lines.joined(separator: "\n"))
    }
}

/// A graph prepared by a backend, ready to run many times.
public protocol Executable: Sendable {
    /// Runs the graph on `inputs` (by graph input name) and returns its outputs in graph-output order.
    func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue]
}

/// An executable that can bind a run to one input signature ahead of time, for callers that run the same
/// shapes many times from raw memory (the C ABI's `kiln_run`): the bound run skips the per-run work of
/// `run(_:)` (dictionaries, tensors, shape lookups) and writes straight into the caller's buffers.
public protocol BindingExecutable: Executable {
    /// A run bound to `inputs` (name, shape and element type of each input the caller will supply, in the
    /// order the bound run's input pointers come in), or nil when this executable cannot run that signature
    /// that way (the caller then uses `run(_:)`). Inputs left out take their defaults, as in `run(_:)`.
    /// Throws what `run(_:)` would throw while preparing those shapes (a plan over the memory budget).
    func bind(_ inputs: [(name: String, shape: [Int], dtype: DType)]) throws -> (any BoundRun)?
}

/// A run bound to one input signature (see `BindingExecutable.bind(_:)`). Its results equal those of
/// `Executable.run(_:)` on tensors of that signature. It has no deadline: `RunDeadline` is not consulted.
public protocol BoundRun: AnyObject, Sendable {
    /// The shape and element type of each output, in graph-output order (fixed by the input signature).
    var outputs: [(shape: [Int], dtype: DType)] { get }
    /// Runs on the input bytes at `inputs` (one pointer per bound input, in bound order: compact row-major,
    /// aligned to the element width) and writes each output, compact row-major, to the buffer at
    /// `outputs[i]` (sized for `self.outputs[i]`). An output buffer may be an input's memory.
    /// Safe to call from many threads at once.
    func run(inputs: UnsafePointer<UnsafeRawPointer>, outputs: UnsafePointer<UnsafeMutableRawPointer>) throws
}

/// What a backend compiled ahead of time: opaque bytes stored in an artifact's payload section, and
/// the compatibility string the backend checks before loading them on another machine or version.
public struct Payload: Sendable, Hashable {
    /// The compiled bytes (may be empty: an interpreter needs nothing besides the graph).
    public var bytes: [UInt8]
    /// What a loader must be able to read (`kiln.reference/1`); see `Backend.check(compat:)`.
    public var compat: String

    /// A payload of `bytes` with compatibility string `compat`.
    public init(bytes: [UInt8], compat: String) {
        self.bytes = bytes
        self.compat = compat
    }
}

/// How the compiler asks a backend to compile a graph.
public struct CompileOptions: Sendable, Hashable {
    /// The target the payload is for (`host`, `x86_64-avx2`).
    public var target: String
    /// The optimization level (0–3) the graph was optimized at.
    public var optLevel: Int

    /// Options for `target` at `optLevel`.
    public init(target: String = "host", optLevel: Int = 2) {
        self.target = target
        self.optLevel = optLevel
    }
}

/// A target that can run (part of) a graph. Every backend — built in or a vendor's — implements this.
///
/// Two ways to run: `prepare` a graph in process (import and run), or `compile` it ahead of time into a
/// `Payload` that an artifact stores, and later `check` and `load` that payload with the same graph.
public protocol Backend: Sendable {
    /// Who this backend is.
    var info: BackendInfo { get }
    /// The nodes of `graph` this backend cannot run, each with a reason. Empty means it runs all of them.
    func rejections(in graph: Graph) -> [Rejection]
    /// Prepares `graph` to run on this machine.
    func prepare(_ graph: Graph) throws -> any Executable
    /// Compiles `graph` ahead of time into a payload (and the compatibility string loaders check).
    func compile(_ graph: Graph, options: CompileOptions) throws -> Payload
    /// nil when this backend can load a payload whose compatibility string is `compat`, else why not.
    func check(compat: String) -> String?
    /// Loads a payload this backend compiled for `graph` (the graph the artifact stores beside it).
    func load(_ payload: [UInt8], graph: Graph) throws -> any Executable
    /// What this backend can run on here (may be empty: compiling ahead of time needs no device).
    /// By default, the host CPU.
    func devices() -> [Device]
    /// The fewest connected nodes worth giving this backend when the user sets no minimum group size
    /// (`--min-group-size`): a smaller group runs on the fallback. 1 (the default) for a backend on the host's
    /// memory; more for one whose values must be copied to and from a device, measured against that cost.
    var minimumGroupSize: Int { get }
}

extension Backend {
    /// By default a backend runs on the host CPU.
    public func devices() -> [Device] { [Device.hostCPU] }

    /// By default every group is worth running: values stay in host memory.
    public var minimumGroupSize: Int { 1 }

    /// The compatibility string of a backend that compiles nothing and runs the stored graph: `name/1`
    /// (payload format 1: empty). It changes only if what such a backend needs from an artifact changes.
    public var graphOnlyCompat: String { "\(info.name)/1" }

    /// By default a backend stores no payload: it prepares the graph again when loading.
    public func compile(_ graph: Graph, options: CompileOptions) throws -> Payload {
        Payload(bytes: [], compat: graphOnlyCompat)
    }

    /// By default a payload is loadable when its compatibility string equals `graphOnlyCompat`.
    public func check(compat: String) -> String? {
        compat == graphOnlyCompat ? nil : "\(info.name) \(info.version) loads payloads of compatibility '\(graphOnlyCompat)', not '\(compat)'"
    }

    /// By default the payload must be empty and the graph is prepared as `prepare` does.
    public func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        guard payload.isEmpty else {
            throw KilnError(.invalidArtifact, "\(info.name) expects an empty payload, found \(payload.count) bytes")
        }
        return try prepare(graph)
    }
}
