import KilnIR

/// Where a device buffer lives: one device of one backend instance.
///
/// Two placements are equal only when they name the same device of the same backend *instance* (the
/// `owner` object, e.g. one loaded plugin), so a buffer never crosses into a backend that merely has the
/// same name.
public struct DevicePlacement: Hashable, Sendable, CustomStringConvertible {
    /// The backend's name (`sample.bytecode`).
    public let backend: String
    /// The device's index in the backend's `devices()` list.
    public let device: Int
    private let owner: ObjectIdentifier

    /// Device `device` of backend `backend`, whose identity is the object `owner` (e.g. the loaded plugin).
    public init(backend: String, device: Int, owner: AnyObject) {
        self.backend = backend
        self.device = device
        self.owner = ObjectIdentifier(owner)
    }

    /// `sample.bytecode device 0`.
    public var description: String { "\(backend) device \(device)" }
}

/// A tensor held in a device's memory rather than the host's: what passes between two partitions that
/// run on the same device, so that it never travels through host memory. It is freed when the last
/// reference goes.
public protocol DeviceBuffer: AnyObject, Sendable {
    /// The device that holds it.
    var placement: DevicePlacement { get }
    /// The element type.
    var dtype: DType { get }
    /// The dims.
    var shape: [Int] { get }
    /// The tensor copied into host memory (device → host).
    func copyToHost() throws -> Tensor
}

/// A value between partitions: in host memory, or in a device buffer.
public enum PlacedValue: Sendable {
    /// A value in host memory.
    case host(RuntimeValue)
    /// A tensor in a device's memory.
    case device(any DeviceBuffer)

    /// The value in host memory, copying a device buffer to the host when it is one.
    public func onHost() throws -> RuntimeValue {
        switch self {
        case .host(let value): return value
        case .device(let buffer): return .tensor(try buffer.copyToHost())
        }
    }
}

/// An executable that can take inputs from, and leave outputs in, device buffers of its device. The
/// runtime's partitioned executor uses it to pass a value from one partition to the next on the same
/// device without copying it through host memory.
public protocol DeviceExecutable: Executable {
    /// The device it runs on, when it can exchange device buffers; nil when it cannot (then it only
    /// takes and gives host values).
    var placement: DevicePlacement? { get }

    /// Runs the graph. `inputs` (by graph input name) are host values or device buffers of `placement`;
    /// the outputs at the indices in `outputsOnDevice` come back as device buffers of `placement`, the
    /// others as host values, in graph-output order.
    func run(placed inputs: [String: PlacedValue], outputsOnDevice: Set<Int>) throws -> [PlacedValue]
}

/// A backend that runs on one of several devices, chosen when a payload is loaded.
public protocol DeviceSelectingBackend: Backend {
    /// Loads a payload this backend compiled for `graph` onto device `deviceIndex` (an index into
    /// `devices()`); an index out of range is `.invalidArgument`.
    func load(_ payload: [UInt8], graph: Graph, deviceIndex: Int) throws -> any Executable
}

extension Backend {
    /// Loads a payload onto device `device` (an index into `devices()`): through
    /// `DeviceSelectingBackend.load(_:graph:deviceIndex:)` when the backend selects devices; otherwise
    /// device 0 is `load(_:graph:)` and any other index is `.invalidArgument`.
    public func load(_ payload: [UInt8], graph: Graph, device: Int) throws -> any Executable {
        if let selecting = self as? any DeviceSelectingBackend {
            return try selecting.load(payload, graph: graph, deviceIndex: device)
        }
        guard device == 0 else {
            throw KilnError(.invalidArgument, "\(info.name) cannot choose a device: it loads onto device 0 only, not device \(device)")
        }
        return try load(payload, graph: graph)
    }

    /// Compiles `graph`, checks the payload's compatibility and loads it onto device `device`: `prepare`
    /// with a device choice. Device 0 of a backend that does not select devices is `prepare(_:)`.
    public func prepare(_ graph: Graph, device: Int) throws -> any Executable {
        guard self is any DeviceSelectingBackend else {
            guard device == 0 else {
                throw KilnError(.invalidArgument, "\(info.name) cannot choose a device: it runs on device 0 only, not device \(device)")
            }
            return try prepare(graph)
        }
        let payload = try compile(graph, options: CompileOptions())
        if let problem = check(compat: payload.compat) {
            throw KilnError(.internal, "\(info.name) refuses the compatibility string its own compile returned ('\(payload.compat)'): \(problem)")
        }
        return try load(payload.bytes, graph: graph, device: device)
    }
}
