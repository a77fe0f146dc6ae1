#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKilnABI
import KilnBackend
import KilnFormat
import KilnIR
import SwiftProtobuf

/// One backend of a C plugin, as a `Backend`: every call goes through the plugin's callback table.
///
/// Every error a callback returns, and every answer that breaks the ABI's rules (a NULL the header
/// forbids, a wrong count, an output the plugin did not allocate through the host), becomes a
/// `KilnError` naming the plugin, the backend and the callback. Blobs the plugin hands back are copied
/// and then released through its `release` callback.
public struct CPluginBackend: Backend, DeviceSelectingBackend {
    /// The plugin this backend comes from (kept alive by the backend).
    public let plugin: CPlugin
    /// The backend's index in the plugin's header.
    public let index: Int
    /// Who this backend is.
    public let info: BackendInfo
    /// `KILN_PLUGIN_BACKEND_*` flags.
    public let flags: UInt64
    /// The target names the backend compiles for besides `host` (`npu-nc2`), from its table (ABI 1.2;
    /// empty for older plugins).
    public let targets: [String]
    /// The compile options the backend declares (ABI 1.3; empty for older plugins).
    public let options: [BackendOption]
    /// The values of `options` this backend instance passes to every compile (see `configured(_:)`).
    public private(set) var optionValues: [String: String] = [:]
    /// Where this backend instance's executables report each run's device profile (ABI 1.4), when the
    /// user asked for a profile and the backend has a `profile` callback (see `configured(_:profiler:)`).
    public private(set) var profiler: (any ExecutionProfiler)?

    init(plugin: CPlugin, index: Int) {
        self.plugin = plugin
        self.index = index
        let table = plugin.tables[index]
        info = BackendInfo(name: CPlugin.string(table.name) ?? "", vendor: CPlugin.string(table.vendor) ?? plugin.vendor,
                           version: CPlugin.string(table.version) ?? plugin.version)
        flags = table.flags
        var targets: [String] = []
        if let list = table.targets {
            for i in 0..<table.target_count { if let name = CPlugin.string(list[i]), !name.isEmpty { targets.append(name) } }
        }
        self.targets = targets
        options = plugin.optionLists[index]
    }

    /// This backend passing `values` (option name → value, for options it declares; the registry has
    /// checked them against `options`) to every compile, and, when it reports profiles, handing each run's
    /// device profile to `profiler`.
    public func configured(_ values: [String: String], profiler: (any ExecutionProfiler)? = nil) -> CPluginBackend {
        var copy = self
        copy.optionValues = values.filter { key, _ in options.contains { $0.name == key } }
        copy.profiler = supportsProfile ? profiler : nil
        return copy
    }

    /// Whether the backend reports what its device did in each run (a `profile` callback, ABI 1.4).
    public var supportsProfile: Bool { table.profile != nil }

    /// The plugin's minimum group size (ABI 1.5 `min_group_size`; 0, or a plugin of an older minor: 1).
    public var minimumGroupSize: Int { max(1, Int(table.min_group_size)) }

    /// Whether the backend keeps tensors in device buffers (`KILN_PLUGIN_BACKEND_DEVICE_BUFFERS`, ABI 1.2):
    /// its executables then pass values between partitions on one device without a host copy.
    public var supportsDeviceBuffers: Bool { flags & UInt64(KILN_PLUGIN_BACKEND_DEVICE_BUFFERS) != 0 }

    /// Where errors come from: `plugin 'kiln-sample-plugin' (/path/lib.so) backend 'sample.bytecode'`.
    var origin: String { "plugin '\(plugin.name)' (\(plugin.path)) backend '\(info.name)'" }

    var table: kiln_plugin_backend { plugin.tables[index] }

    /// `graph` as kiln.ir.Graph bytes with every tensor inline (what crosses the ABI).
    public static func graphBytes(_ graph: Graph) throws -> [UInt8] {
        do {
            return try IRProto.message(from: graph).serializedBytes()
        } catch {
            throw KilnError(.internal, "cannot encode graph '\(graph.name)' for a plugin: \(error)")
        }
    }

    /// Throws the `KilnError` for `result` (a callback's error pointer) when it is not NULL.
    func check(_ result: OpaquePointer?, _ callback: String) throws {
        if let result { throw CPlugin.kilnError(result, origin: origin, callback: callback) }
    }

    /// Calls `body` with `bytes` as a `kiln_plugin_bytes` of `format`.
    static func withBytes<T>(_ bytes: [UInt8], format: Int32, _ body: (UnsafePointer<kiln_plugin_bytes>) throws -> T) rethrows -> T {
        try bytes.withUnsafeBytes { raw in
            var tagged = kiln_plugin_bytes()
            tagged.struct_size = MemoryLayout<kiln_plugin_bytes>.size
            tagged.data = raw.count > 0 ? raw.baseAddress : nil
            tagged.size = raw.count
            tagged.format = UInt32(format)
            return try withUnsafePointer(to: &tagged) { try body($0) }
        }
    }

    /// The plugin's answer for `graph`: for each node, nil when claimed, else the reason it is rejected.
    /// Unlike `rejections(in:)`, a failing or misbehaving claim is thrown.
    public func claim(_ graph: Graph) throws -> [String?] {
        try claim(graphBytes: Self.graphBytes(graph), nodes: graph.nodes.map(\.op.name))
    }

    /// The plugin's answer for a graph given as bytes (any bytes: `kiln plugin-check` sends malformed ones
    /// on purpose) whose nodes are `nodes` (op names, for messages; the answer must have as many entries).
    public func claim(graphBytes bytes: [UInt8], nodes: [String]) throws -> [String?] {
        let table = self.table
        var out = kiln_plugin_claim()
        out.struct_size = MemoryLayout<kiln_plugin_claim>.size
        let result = Self.withBytes(bytes, format: Int32(KILN_PLUGIN_FORMAT_IR_GRAPH)) { table.claim(table.context, $0, &out) }
        defer { if let owner = out.owner { table.release(table.context, owner) } }
        try check(result, "claim")
        let count = nodes.count
        guard out.node_count == count else {
            throw KilnError(.internal, "\(origin): claim answered for \(out.node_count) nodes; the graph has \(count)")
        }
        guard count == 0 || out.supported != nil else {
            throw KilnError(.internal, "\(origin): claim returned success with a NULL supported array for \(count) nodes")
        }
        var answer: [String?] = []
        answer.reserveCapacity(count)
        for node in 0..<count {
            if out.supported![node] != 0 { answer.append(nil); continue }
            guard let reasons = out.reasons, let reason = reasons[node], reason.pointee != 0 else {
                throw KilnError(.internal, "\(origin): claim rejected node \(node) (\(nodes[node])) without a reason")
            }
            answer.append(String(cString: reason))
        }
        return answer
    }

    /// The nodes this backend rejects, with the plugin's reasons. A claim that fails rejects every node,
    /// with the error as the reason.
    public func rejections(in graph: Graph) -> [Rejection] {
        do {
            return try claim(graph).enumerated().compactMap { index, reason in reason.map { Rejection(node: index, reason: $0) } }
        } catch {
            let message = (error as? KilnError)?.message ?? "\(error)"
            return graph.nodes.indices.map { Rejection(node: $0, reason: message) }
        }
    }

    /// Compiles `graph` and loads the payload at once.
    public func prepare(_ graph: Graph) throws -> any Executable {
        let payload = try compile(graph, options: CompileOptions())
        if let problem = check(compat: payload.compat) {
            throw KilnError(.internal, "\(origin): check refuses the compatibility string its own compile returned ('\(payload.compat)'): \(problem)")
        }
        return try load(payload.bytes, graph: graph)
    }

    /// Compiles `graph` through the plugin's compile callback.
    public func compile(_ graph: Graph, options: CompileOptions) throws -> Payload {
        let bytes = try Self.graphBytes(graph)
        let table = self.table
        var out = kiln_plugin_payload()
        out.struct_size = MemoryLayout<kiln_plugin_payload>.size
        // The options the user gave this backend, as C strings the call borrows.
        let given = optionValues.sorted { $0.key < $1.key }
        let keys = given.map { strdup($0.key) }, values = given.map { strdup($0.value) }
        defer { for p in keys + values { free(p) } }
        guard !(keys + values).contains(where: { $0 == nil }) else { throw KilnError(.runtime, "\(origin): out of memory for compile options") }
        let keyPointers = keys.map { UnsafePointer($0) }, valuePointers = values.map { UnsafePointer($0) }
        let result = options.target.withCString { target in
            keyPointers.withUnsafeBufferPointer { keyList in
                valuePointers.withUnsafeBufferPointer { valueList in
                    var o = kiln_plugin_compile_options()
                    o.struct_size = MemoryLayout<kiln_plugin_compile_options>.size
                    o.target = target
                    o.opt_level = Int32(clamping: options.optLevel)
                    o.option_count = given.count
                    o.option_keys = given.isEmpty ? nil : keyList.baseAddress
                    o.option_values = given.isEmpty ? nil : valueList.baseAddress
                    return Self.withBytes(bytes, format: Int32(KILN_PLUGIN_FORMAT_IR_GRAPH)) { graphBytes in
                        withUnsafePointer(to: &o) { table.compile(table.context, graphBytes, $0, &out) }
                    }
                }
            }
        }
        defer { if let owner = out.owner { table.release(table.context, owner) } }
        try check(result, "compile")
        guard out.size == 0 || out.data != nil else {
            throw KilnError(.internal, "\(origin): compile returned success with a NULL payload of \(out.size) bytes")
        }
        guard out.size < 1 << 40 else {
            throw KilnError(.internal, "\(origin): compile returned an implausible payload size \(out.size)")
        }
        guard let compatPointer = out.compat, compatPointer.pointee != 0 else {
            throw KilnError(.internal, "\(origin): compile returned success without a compatibility string")
        }
        let payload = out.size == 0 ? [] : [UInt8](UnsafeRawBufferPointer(start: out.data, count: out.size))
        return Payload(bytes: payload, compat: String(cString: compatPointer))
    }

    /// nil when the plugin can load payloads of compatibility `compat`, else its reason.
    public func check(compat: String) -> String? {
        let table = self.table
        guard let result = compat.withCString({ table.check(table.context, $0) }) else { return nil }
        return CPlugin.kilnError(result, origin: origin, callback: "check").message
    }

    /// Loads a payload onto device 0 through the plugin's load callback (or `load_with_options`, ABI 1.2).
    public func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        try load(payload, graph: graph, deviceIndex: 0)
    }

    /// Loads a payload onto device `deviceIndex` (an index into `deviceList()`): through the plugin's
    /// `load_with_options` (ABI 1.2) when it has one; a backend without it loads onto device 0 only.
    public func load(_ payload: [UInt8], graph: Graph, deviceIndex: Int) throws -> any Executable {
        let table = self.table
        if deviceIndex != 0 || table.devices != nil {
            let count = try deviceList().count
            guard deviceIndex >= 0, deviceIndex < count else {
                throw KilnError(.invalidArgument, "\(origin): there is no device \(deviceIndex); the backend has \(count) device(s)")
            }
        }
        guard deviceIndex == 0 || table.load_with_options != nil else {
            throw KilnError(.invalidArgument, "\(origin): the backend cannot load onto device \(deviceIndex): it has no load_with_options (plugin ABI 1.2)")
        }
        let graphBytes = try Self.graphBytes(graph)
        var executable: UnsafeMutableRawPointer?
        let result = Self.withBytes(payload, format: Int32(KILN_PLUGIN_FORMAT_OPAQUE)) { payloadBytes in
            Self.withBytes(graphBytes, format: Int32(KILN_PLUGIN_FORMAT_IR_GRAPH)) { graphBytes -> OpaquePointer? in
                guard let loadWithOptions = table.load_with_options else { return table.load(table.context, payloadBytes, graphBytes, &executable) }
                var options = kiln_plugin_load_options()
                options.struct_size = MemoryLayout<kiln_plugin_load_options>.size
                options.device = UInt32(deviceIndex)
                return withUnsafePointer(to: &options) { loadWithOptions(table.context, payloadBytes, graphBytes, $0, &executable) }
            }
        }
        try check(result, table.load_with_options != nil ? "load_with_options" : "load")
        guard let executable else {
            throw KilnError(.internal, "\(origin): load returned success without an executable")
        }
        return CPluginExecutable(backend: self, handle: executable, graph: graph, device: deviceIndex)
    }

    /// What this backend runs on here: the plugin's device list (ABI 1.2), or the host CPU for a plugin
    /// without one. A failing or malformed answer is an empty list; `deviceList()` throws it instead.
    public func devices() -> [Device] {
        (try? deviceList()) ?? []
    }

    /// The plugin's device list, in its fixed order (a device's index is what `load(_:graph:deviceIndex:)`
    /// takes). A backend without a devices callback has one device, the host CPU. An error or an answer
    /// that breaks the ABI's rules (NULL array or name, unknown kind, an empty or repeated property key)
    /// is thrown.
    public func deviceList() throws -> [Device] {
        let table = self.table
        guard let callback = table.devices else { return [Device.hostCPU] }
        var out = kiln_plugin_device_list()
        out.struct_size = MemoryLayout<kiln_plugin_device_list>.size
        let result = callback(table.context, &out)
        defer { if let owner = out.owner { table.release(table.context, owner) } }
        try check(result, "devices")
        guard out.device_count <= 4096 else {
            throw KilnError(.internal, "\(origin): devices answered an implausible \(out.device_count) devices")
        }
        guard out.device_count == 0 || out.devices != nil else {
            throw KilnError(.internal, "\(origin): devices returned success with a NULL array for \(out.device_count) devices")
        }
        var devices: [Device] = []
        for index in 0..<out.device_count {
            guard let pointer = out.devices![index] else { throw KilnError(.internal, "\(origin): devices: device \(index) is NULL") }
            let size = UnsafeRawPointer(pointer).load(as: Int.self)
            let required = MemoryLayout<kiln_plugin_device>.offset(of: \kiln_plugin_device.property_values)! + MemoryLayout<UnsafeRawPointer>.size
            guard size >= required else {
                throw KilnError(.internal, "\(origin): devices: device \(index)'s struct_size \(size) is too small (at least \(required))")
            }
            let device: kiln_plugin_device = CPlugin.copy(pointer, size: size)
            guard let name = CPlugin.string(device.name), !name.isEmpty else {
                throw KilnError(.internal, "\(origin): devices: device \(index) has no name")
            }
            guard let kind = Self.deviceKind(device.kind) else {
                throw KilnError(.internal, "\(origin): devices: device \(index) ('\(name)') has unknown kind \(device.kind) (known: 0–\(DeviceKind.allCases.count - 1), \(DeviceKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard device.property_count <= 1024, device.property_count == 0 || (device.property_keys != nil && device.property_values != nil) else {
                throw KilnError(.internal, "\(origin): devices: device \(index) ('\(name)') lists \(device.property_count) properties with a NULL key or value array")
            }
            var properties: [String: String] = [:]
            for p in 0..<device.property_count {
                guard let key = CPlugin.string(device.property_keys![p]), !key.isEmpty else {
                    throw KilnError(.internal, "\(origin): devices: device \(index) ('\(name)') property \(p) has no key")
                }
                guard properties[key] == nil else {
                    throw KilnError(.internal, "\(origin): devices: device \(index) ('\(name)') lists property '\(key)' twice")
                }
                properties[key] = CPlugin.string(device.property_values![p]) ?? ""
            }
            devices.append(Device(kind: kind, name: name, memoryBytes: device.memory_bytes, properties: properties))
        }
        return devices
    }

    /// The `DeviceKind` of a `KILN_PLUGIN_DEVICE_*` number, or nil.
    static func deviceKind(_ number: UInt32) -> DeviceKind? {
        switch Int(number) {
        case Int(KILN_PLUGIN_DEVICE_CPU): return .cpu
        case Int(KILN_PLUGIN_DEVICE_GPU): return .gpu
        case Int(KILN_PLUGIN_DEVICE_NPU): return .npu
        case Int(KILN_PLUGIN_DEVICE_FPGA): return .fpga
        case Int(KILN_PLUGIN_DEVICE_DSP): return .dsp
        case Int(KILN_PLUGIN_DEVICE_SIMULATOR): return .simulator
        default: return nil
        }
    }

    /// Where this backend's buffers on device `device` live.
    public func placement(device: Int) -> DevicePlacement {
        DevicePlacement(backend: info.name, device: device, owner: plugin)
    }

    /// Copies `tensor` into a new buffer on device `device` (host → device: the plugin's buffer_alloc and
    /// buffer_write). Throws `.unsupported` when the backend has no device buffers.
    public func upload(_ tensor: Tensor, device: Int) throws -> CPluginDeviceBuffer {
        guard supportsDeviceBuffers, let alloc = table.buffer_alloc, let write = table.buffer_write else {
            throw KilnError(.unsupported, "\(origin): the backend has no device buffers")
        }
        guard tensor.dtype != .string, let width = tensor.dtype.byteWidth else {
            throw KilnError(.invalidArgument, "\(origin): \(tensor.dtype) tensors do not cross the plugin ABI")
        }
        guard device >= 0, device <= Int(UInt32.max) else { throw KilnError(.invalidArgument, "\(origin): there is no device \(device)") }
        let byteCount = tensor.count * width
        let table = self.table
        var handle: UnsafeMutableRawPointer?
        try check(alloc(table.context, UInt32(device), byteCount, &handle), "buffer_alloc")
        guard let handle else { throw KilnError(.internal, "\(origin): buffer_alloc returned success without a buffer") }
        let buffer = CPluginDeviceBuffer(backend: self, handle: handle, device: device, dtype: tensor.dtype, shape: tensor.shape)
        if byteCount > 0, let bytes = tensor.rawBytes {
            try check(write(table.context, handle, 0, bytes.baseAddress, byteCount), "buffer_write")
        }
        return buffer
    }
}

/// A tensor in one of a plugin backend's device buffers (ABI 1.2): released through the plugin's
/// buffer_free when the last reference goes; the buffer keeps its plugin loaded.
public final class CPluginDeviceBuffer: DeviceBuffer, @unchecked Sendable {
    /// The backend that owns the buffer.
    public let backend: CPluginBackend
    /// The plugin's handle.
    let handle: UnsafeMutableRawPointer
    /// The device's index in the backend's device list.
    public let device: Int
    /// The element type.
    public let dtype: DType
    /// The dims.
    public let shape: [Int]

    init(backend: CPluginBackend, handle: UnsafeMutableRawPointer, device: Int, dtype: DType, shape: [Int]) {
        self.backend = backend
        self.handle = handle
        self.device = device
        self.dtype = dtype
        self.shape = shape
    }

    deinit {
        let table = backend.table
        table.buffer_free?(table.context, handle)
    }

    /// Device `device` of the backend.
    public var placement: DevicePlacement { backend.placement(device: device) }

    /// `byteCount` bytes of the buffer from `byteOffset`, through the plugin's buffer_read (device → host).
    /// A range outside the buffer must be refused by the plugin (an error, not a crash).
    public func read(byteOffset: Int, byteCount: Int) throws -> [UInt8] {
        let table = backend.table
        guard let read = table.buffer_read else { throw KilnError(.unsupported, "\(backend.origin): the backend has no buffer_read") }
        guard byteOffset >= 0, byteCount >= 0, byteCount <= 1 << 32 else {
            throw KilnError(.invalidArgument, "\(backend.origin): cannot read \(byteCount) bytes at \(byteOffset)")
        }
        var bytes = [UInt8](repeating: 0, count: byteCount)
        let result = bytes.withUnsafeMutableBytes { read(table.context, handle, byteOffset, $0.baseAddress, byteCount) }
        try backend.check(result, "buffer_read")
        return bytes
    }

    /// Copies `bytes` into the buffer at `byteOffset`, through the plugin's buffer_write (host → device).
    /// A range outside the buffer must be refused by the plugin (an error, not a crash).
    public func write(_ bytes: [UInt8], byteOffset: Int) throws {
        let table = backend.table
        guard let write = table.buffer_write else { throw KilnError(.unsupported, "\(backend.origin): the backend has no buffer_write") }
        guard byteOffset >= 0 else { throw KilnError(.invalidArgument, "\(backend.origin): cannot write at \(byteOffset)") }
        let result = bytes.withUnsafeBytes { write(table.context, handle, byteOffset, $0.baseAddress, bytes.count) }
        try backend.check(result, "buffer_write")
    }

    /// The tensor copied into host memory through the plugin's buffer_read (device → host).
    public func copyToHost() throws -> Tensor {
        let table = backend.table
        guard let read = table.buffer_read else { throw KilnError(.unsupported, "\(backend.origin): the backend has no buffer_read") }
        let count = shape.reduce(1, *)
        let byteCount = count * dtype.byteWidth!
        let memory = CPluginHostMemory(UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64), size: byteCount, deallocate: true)
        if byteCount > 0 {
            try backend.check(read(table.context, handle, 0, memory.pointer, byteCount), "buffer_read")
        }
        return Tensor(dtype: dtype, shape: shape, storage: TensorStorage(borrowing: UnsafeRawPointer(memory.pointer), byteCount: byteCount, owner: memory))
    }
}

/// A payload loaded by a plugin onto one of its backend's devices: runs through its execute callback;
/// unloaded when the last reference goes. When the backend has device buffers (ABI 1.2), it takes inputs
/// from and leaves outputs in buffers of its device (`DeviceExecutable`).
public final class CPluginExecutable: DeviceExecutable, @unchecked Sendable {
    /// The backend that loaded it.
    public let backend: CPluginBackend
    /// The device it was loaded onto (an index into the backend's device list).
    public let device: Int
    private let handle: UnsafeMutableRawPointer
    private let graph: Graph
    private let lock: Lock?
    /// Serializes execute + profile when profiling a backend that otherwise executes concurrently.
    private let profileLock = Lock()

    init(backend: CPluginBackend, handle: UnsafeMutableRawPointer, graph: Graph, device: Int) {
        self.backend = backend
        self.handle = handle
        self.graph = graph
        self.device = device
        lock = backend.flags & UInt64(KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE) != 0 ? nil : Lock()
    }

    deinit {
        let table = backend.table
        table.unload(table.context, handle)
    }

    /// The backend's device this executable runs on, when the backend has device buffers; else nil.
    public var placement: DevicePlacement? {
        backend.supportsDeviceBuffers ? backend.placement(device: device) : nil
    }

    /// Runs the graph: every graph input (the caller's value, else its initializer) crosses as a
    /// `kiln_tensor`; the outputs the plugin allocates through the host are adopted without a copy.
    public func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue] {
        try run(placed: inputs.mapValues { .host($0) }, outputsOnDevice: []).map { try $0.onHost() }
    }

    /// Runs the graph with inputs in host memory or in device buffers: a buffer of this executable's
    /// device crosses as a device-buffer tensor (no copy); a buffer of another device is copied to the
    /// host first. The outputs at `outputsOnDevice` come back as `CPluginDeviceBuffer`s of this device.
    public func run(placed inputs: [String: PlacedValue], outputsOnDevice: Set<Int>) throws -> [PlacedValue] {
        let origin = backend.origin
        var arguments: [Argument] = []
        for input in graph.inputs {
            guard let value = inputs[input.name] ?? graph.initializers[input.name].map({ .host(.tensor($0)) }) else {
                throw KilnError(.invalidArgument, "\(origin): input '\(input.name)' is missing")
            }
            switch value {
            case .device(let buffer):
                if let own = buffer as? CPluginDeviceBuffer, own.placement == placement {
                    arguments.append(.device(own))
                } else {
                    arguments.append(.host(try buffer.copyToHost()))
                }
            case .host(let value):
                guard let tensor = value.tensor, tensor.dtype != .string else {
                    throw KilnError(.invalidArgument, "\(origin): input '\(input.name)' must be a numeric tensor to cross the plugin ABI, given \(value.summary)")
                }
                arguments.append(.host(tensor))
            }
        }
        return try execute(arguments, outputCount: graph.outputs.count, outputsOnDevice: outputsOnDevice)
    }

    /// Runs the executable on `tensors` (positional, as execute receives them: normally one per graph
    /// input) expecting `outputCount` outputs. `kiln plugin-check` uses it to send wrong counts on purpose.
    public func run(tensors: [Tensor], outputCount: Int) throws -> [RuntimeValue] {
        try execute(tensors.map { .host($0) }, outputCount: outputCount, outputsOnDevice: []).map { try $0.onHost() }
    }

    /// Runs the executable on positional `arguments`, host tensors or buffers of this device.
    public func run(arguments: [Argument], outputCount: Int, outputsOnDevice: Set<Int> = []) throws -> [PlacedValue] {
        try execute(arguments, outputCount: outputCount, outputsOnDevice: outputsOnDevice)
    }

    /// One input as execute receives it.
    public enum Argument {
        /// A tensor in host memory.
        case host(Tensor)
        /// A tensor in a buffer of the executable's device.
        case device(CPluginDeviceBuffer)

        var rank: Int {
            switch self {
            case .host(let t): return t.rank
            case .device(let b): return b.shape.count
            }
        }
    }

    /// The most steps one profile may hold (`kiln_plugin_profile.step_count`).
    static let maxProfileSteps = 1 << 20

    /// Hands the profile the plugin gave for the execute that just succeeded (`answer`: the callback's
    /// result and what it filled in) to `profiler`, and releases it. A profile the plugin cannot give, or
    /// gives malformed, is an error of the run: the user asked for it.
    private func report(_ answer: (result: OpaquePointer?, profile: kiln_plugin_profile), to profiler: any ExecutionProfiler) throws {
        let table = backend.table, origin = backend.origin, out = answer.profile
        defer { if let owner = out.owner { table.release(table.context, owner) } }
        try backend.check(answer.result, "profile")
        guard out.step_count <= Self.maxProfileSteps, out.step_count == 0 || out.steps != nil else {
            throw KilnError(.internal, "\(origin): profile gave \(out.step_count) steps\(out.steps == nil ? " with a NULL array" : "") (at most \(Self.maxProfileSteps))")
        }
        guard out.clock_hz.isFinite, out.clock_hz >= 0 else {
            throw KilnError(.internal, "\(origin): profile gave clock_hz \(out.clock_hz)")
        }
        var steps: [DeviceProfile.Step] = []
        steps.reserveCapacity(out.step_count)
        for i in 0..<out.step_count {
            let step = out.steps![i]
            steps.append(DeviceProfile.Step(name: CPlugin.string(step.name) ?? "", unit: CPlugin.string(step.unit) ?? "",
                                            startCycle: step.start_cycle, cycles: step.cycles))
        }
        profiler.record(DeviceProfile(backend: backend.info.name, program: graph.name, clockHz: out.clock_hz, totalCycles: out.total_cycles, steps: steps))
    }

    private func execute(_ arguments: [Argument], outputCount: Int, outputsOnDevice: Set<Int>) throws -> [PlacedValue] {
        let origin = backend.origin
        let onDevice = outputsOnDevice.filter { $0 >= 0 && $0 < outputCount }
        if !onDevice.isEmpty || arguments.contains(where: { if case .device = $0 { return true } else { return false } }) {
            guard let placement else {
                throw KilnError(.invalidArgument, "\(origin): the backend has no device buffers (KILN_PLUGIN_BACKEND_DEVICE_BUFFERS)")
            }
            for case .device(let buffer) in arguments where buffer.placement != placement {
                throw KilnError(.invalidArgument, "\(origin): an input is a buffer of \(buffer.placement), not of \(placement)")
            }
        }
        for case .host(let tensor) in arguments where tensor.dtype == .string {
            throw KilnError(.invalidArgument, "\(origin): string tensors do not cross the plugin ABI")
        }
        let bufferDevice = kiln_device(device_type: Int32(KILN_PLUGIN_DEVICE_BUFFER), device_id: Int32(clamping: device))
        let cpu = kiln_device(device_type: Int32(KILN_DEVICE_CPU), device_id: 0)
        let maxRank = Int(KILN_PLUGIN_MAX_RANK)
        let shapeCount = arguments.reduce(0) { $0 + $1.rank } + outputCount * maxRank
        let shapes = UnsafeMutablePointer<Int64>.allocate(capacity: max(shapeCount, 1))
        defer { shapes.deallocate() }
        var cInputs: [kiln_tensor] = []
        var at = 0
        for argument in arguments {
            var t = kiln_tensor()
            switch argument {
            case .host(let tensor):
                for (axis, dim) in tensor.shape.enumerated() { shapes[at + axis] = Int64(dim) }
                t.data = tensor.rawBytes.flatMap { UnsafeMutableRawPointer(mutating: $0.baseAddress) }
                t.device = cpu
                t.dtype = CPluginDType.cType(tensor.dtype)!
            case .device(let buffer):
                for (axis, dim) in buffer.shape.enumerated() { shapes[at + axis] = Int64(dim) }
                t.data = buffer.handle
                t.device = bufferDevice
                t.dtype = CPluginDType.cType(buffer.dtype)!
            }
            t.ndim = Int32(argument.rank)
            t.shape = argument.rank > 0 ? shapes + at : nil
            cInputs.append(t)
            at += argument.rank
        }
        var cOutputs = [kiln_tensor](repeating: kiln_tensor(), count: outputCount)
        var outputShapes: [UnsafeMutablePointer<Int64>] = []
        for index in 0..<outputCount {
            let shape = shapes + at + index * maxRank
            outputShapes.append(shape)
            cOutputs[index].device = onDevice.contains(index) ? bufferDevice : cpu
            cOutputs[index].shape = shape
        }
        let table = backend.table
        let handle = self.handle
        // With a profiler, the profile is asked for right after a successful execute, under the same lock,
        // so that it describes this execute and no other (even for a backend that executes concurrently).
        let profiler = backend.profiler
        var profileAnswer: (result: OpaquePointer?, profile: kiln_plugin_profile)?
        let result: OpaquePointer? = withExtendedLifetime(arguments) {
            cInputs.withUnsafeBufferPointer { ins in
                cOutputs.withUnsafeMutableBufferPointer { outs in
                    let base = outs.baseAddress, count = outs.count
                    let call = { () -> OpaquePointer? in
                        let result = table.execute(table.context, handle, ins.baseAddress, ins.count, base, count)
                        if result == nil, profiler != nil, let profile = table.profile {
                            var out = kiln_plugin_profile()
                            out.struct_size = MemoryLayout<kiln_plugin_profile>.size
                            let answer = profile(table.context, handle, &out)
                            profileAnswer = (answer, out)
                        }
                        return result
                    }
                    if let lock = lock ?? (profiler != nil ? profileLock : nil) { return lock.withLock(call) }
                    return call()
                }
            }
        }
        // Adopt every output block and buffer first, so that it is freed whatever happens next.
        let services = backend.plugin.hostServices.hostContext
        var memory: [CPluginHostMemory?] = []
        var buffers: [Int: UnsafeMutableRawPointer] = [:]
        defer { for (_, buffer) in buffers { table.buffer_free?(table.context, buffer) } }
        var foreign: [Int] = []
        for (index, output) in cOutputs.enumerated() {
            guard let data = output.data else { memory.append(nil); continue }
            if onDevice.contains(index) { buffers[index] = data; memory.append(nil); continue }
            if let size = services.adopt(data) { memory.append(CPluginHostMemory(data, size: size)) } else { memory.append(nil); foreign.append(index) }
        }
        try backend.check(result, "execute")
        if let profiler, let profileAnswer { try report(profileAnswer, to: profiler) }
        if let index = foreign.first {
            throw KilnError(.internal, "\(origin): execute set output \(index)'s data to memory that host->alloc did not return")
        }
        var values: [PlacedValue] = []
        for (index, output) in cOutputs.enumerated() {
            let name = index < graph.outputs.count ? graph.outputs[index].name : "#\(index)"
            guard output.ndim >= 0, Int(output.ndim) <= maxRank else {
                throw KilnError(.internal, "\(origin): execute gave output '\(name)' rank \(output.ndim) (at most \(maxRank))")
            }
            guard output.shape == outputShapes[index], output.strides == nil, output.byte_offset == 0 else {
                throw KilnError(.internal, "\(origin): execute changed output '\(name)''s shape pointer, strides or byte_offset")
            }
            let wanted = onDevice.contains(index) ? bufferDevice : cpu
            guard output.device.device_type == wanted.device_type, output.device.device_id == wanted.device_id else {
                throw KilnError(.internal, "\(origin): execute changed output '\(name)''s device to (\(output.device.device_type), \(output.device.device_id))")
            }
            guard let dtype = CPluginDType.dtype(output.dtype) else {
                throw KilnError(.internal, "\(origin): execute gave output '\(name)' an unknown dtype (code \(output.dtype.code), bits \(output.dtype.bits), lanes \(output.dtype.lanes))")
            }
            var shape: [Int] = []
            var count = 1
            for axis in 0..<Int(output.ndim) {
                let dim = outputShapes[index][axis]
                guard dim >= 0, dim <= Int64(Int32.max) else {
                    throw KilnError(.internal, "\(origin): execute gave output '\(name)' dim \(axis) = \(dim)")
                }
                shape.append(Int(dim))
                let (product, overflow) = count.multipliedReportingOverflow(by: Int(dim))
                guard !overflow, product <= 1 << 40 else {
                    throw KilnError(.internal, "\(origin): execute gave output '\(name)' an implausible shape \(shape)")
                }
                count = product
            }
            if onDevice.contains(index) {
                guard let buffer = buffers.removeValue(forKey: index) else {
                    throw KilnError(.internal, "\(origin): execute returned success but left device output '\(name)''s buffer NULL")
                }
                values.append(.device(CPluginDeviceBuffer(backend: backend, handle: buffer, device: device, dtype: dtype, shape: shape)))
                continue
            }
            let byteCount = count * dtype.byteWidth!
            guard let block = memory[index] else {
                if count == 0 { values.append(.host(.tensor(Tensor(zeros: dtype, shape: shape)))); continue }
                throw KilnError(.internal, "\(origin): execute returned success but left output '\(name)''s data NULL")
            }
            guard block.size >= byteCount else {
                throw KilnError(.internal, "\(origin): execute gave output '\(name)' (\(dtype)\(shape), \(byteCount) bytes) a block of only \(block.size) bytes")
            }
            let storage = TensorStorage(borrowing: UnsafeRawPointer(block.pointer), byteCount: byteCount, owner: block)
            values.append(.host(.tensor(Tensor(dtype: dtype, shape: shape, storage: storage))))
        }
        return values
    }
}
