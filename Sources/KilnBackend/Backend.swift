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

/// A graph prepared by a backend, ready to run many times.
public protocol Executable: Sendable {
    /// Runs the graph on `inputs` (by graph input name) and returns its outputs in graph-output order.
    func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue]
}

/// A target that can run (part of) a graph. Every backend — built in or a vendor's — implements this.
/// (The artifact-level methods — compile to a payload, check, load — arrive with the artifact format.)
public protocol Backend: Sendable {
    /// Who this backend is.
    var info: BackendInfo { get }
    /// The nodes of `graph` this backend cannot run, each with a reason. Empty means it runs all of them.
    func rejections(in graph: Graph) -> [Rejection]
    /// Prepares `graph` to run on this machine.
    func prepare(_ graph: Graph) throws -> any Executable
}

/// The backends known to this process, by name.
public final class BackendRegistry: @unchecked Sendable {
    private var backends: [String: any Backend] = [:]
    private var order: [String] = []
    private let lock = Lock()

    /// An empty registry.
    public init() {}

    /// Adds `backend`; a backend with the same name is replaced.
    public func register(_ backend: any Backend) {
        lock.withLock {
            if backends[backend.info.name] == nil { order.append(backend.info.name) }
            backends[backend.info.name] = backend
        }
    }

    /// The backend called `name`, or nil.
    public func backend(named name: String) -> (any Backend)? {
        lock.withLock { backends[name] }
    }

    /// All registered backends, in registration order.
    public var all: [any Backend] {
        lock.withLock { order.compactMap { backends[$0] } }
    }
}
