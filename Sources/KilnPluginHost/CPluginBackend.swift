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
public struct CPluginBackend: Backend {
    /// The plugin this backend comes from (kept alive by the backend).
    public let plugin: CPlugin
    /// The backend's index in the plugin's header.
    public let index: Int
    /// Who this backend is.
    public let info: BackendInfo
    /// `KILN_PLUGIN_BACKEND_*` flags.
    public let flags: UInt64

    init(plugin: CPlugin, index: Int) {
        self.plugin = plugin
        self.index = index
        let table = plugin.tables[index]
        info = BackendInfo(name: CPlugin.string(table.name) ?? "", vendor: CPlugin.string(table.vendor) ?? plugin.vendor,
                           version: CPlugin.string(table.version) ?? plugin.version)
        flags = table.flags
    }

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
        let result = options.target.withCString { target in
            var o = kiln_plugin_compile_options()
            o.struct_size = MemoryLayout<kiln_plugin_compile_options>.size
            o.target = target
            o.opt_level = Int32(clamping: options.optLevel)
            return Self.withBytes(bytes, format: Int32(KILN_PLUGIN_FORMAT_IR_GRAPH)) { graphBytes in
                withUnsafePointer(to: &o) { table.compile(table.context, graphBytes, $0, &out) }
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

    /// Loads a payload through the plugin's load callback.
    public func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        let graphBytes = try Self.graphBytes(graph)
        let table = self.table
        var executable: UnsafeMutableRawPointer?
        let result = Self.withBytes(payload, format: Int32(KILN_PLUGIN_FORMAT_OPAQUE)) { payloadBytes in
            Self.withBytes(graphBytes, format: Int32(KILN_PLUGIN_FORMAT_IR_GRAPH)) { table.load(table.context, payloadBytes, $0, &executable) }
        }
        try check(result, "load")
        guard let executable else {
            throw KilnError(.internal, "\(origin): load returned success without an executable")
        }
        return CPluginExecutable(backend: self, handle: executable, graph: graph)
    }
}

/// A payload loaded by a plugin: runs through its execute callback; unloaded when the last reference goes.
public final class CPluginExecutable: Executable, @unchecked Sendable {
    /// The backend that loaded it.
    public let backend: CPluginBackend
    private let handle: UnsafeMutableRawPointer
    private let graph: Graph
    private let lock: Lock?

    init(backend: CPluginBackend, handle: UnsafeMutableRawPointer, graph: Graph) {
        self.backend = backend
        self.handle = handle
        self.graph = graph
        lock = backend.flags & UInt64(KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE) != 0 ? nil : Lock()
    }

    deinit {
        let table = backend.table
        table.unload(table.context, handle)
    }

    /// Runs the graph: every graph input (the caller's value, else its initializer) crosses as a
    /// `kiln_tensor`; the outputs the plugin allocates through the host are adopted without a copy.
    public func run(_ inputs: [String: RuntimeValue]) throws -> [RuntimeValue] {
        let origin = backend.origin
        var tensors: [Tensor] = []
        for input in graph.inputs {
            guard let value = inputs[input.name] ?? graph.initializers[input.name].map({ .tensor($0) }) else {
                throw KilnError(.invalidArgument, "\(origin): input '\(input.name)' is missing")
            }
            guard let tensor = value.tensor, tensor.dtype != .string else {
                throw KilnError(.invalidArgument, "\(origin): input '\(input.name)' must be a numeric tensor to cross the plugin ABI, given \(value.summary)")
            }
            tensors.append(tensor)
        }
        return try run(tensors: tensors, outputCount: graph.outputs.count)
    }

    /// Runs the executable on `tensors` (positional, as execute receives them: normally one per graph
    /// input) expecting `outputCount` outputs. `kiln plugin-check` uses it to send wrong counts on purpose.
    public func run(tensors: [Tensor], outputCount: Int) throws -> [RuntimeValue] {
        let origin = backend.origin
        guard tensors.allSatisfy({ $0.dtype != .string }) else {
            throw KilnError(.invalidArgument, "\(origin): string tensors do not cross the plugin ABI")
        }
        let maxRank = Int(KILN_PLUGIN_MAX_RANK)
        let shapeCount = tensors.reduce(0) { $0 + $1.rank } + outputCount * maxRank
        let shapes = UnsafeMutablePointer<Int64>.allocate(capacity: max(shapeCount, 1))
        defer { shapes.deallocate() }
        var cInputs: [kiln_tensor] = []
        var at = 0
        for tensor in tensors {
            for (axis, dim) in tensor.shape.enumerated() { shapes[at + axis] = Int64(dim) }
            var t = kiln_tensor()
            t.data = tensor.rawBytes.flatMap { UnsafeMutableRawPointer(mutating: $0.baseAddress) }
            t.device = kiln_device(device_type: Int32(KILN_DEVICE_CPU), device_id: 0)
            t.ndim = Int32(tensor.rank)
            t.dtype = CPluginDType.cType(tensor.dtype)!
            t.shape = tensor.rank > 0 ? shapes + at : nil
            cInputs.append(t)
            at += tensor.rank
        }
        var cOutputs = [kiln_tensor](repeating: kiln_tensor(), count: outputCount)
        var outputShapes: [UnsafeMutablePointer<Int64>] = []
        for index in 0..<outputCount {
            let shape = shapes + at + index * maxRank
            outputShapes.append(shape)
            cOutputs[index].device = kiln_device(device_type: Int32(KILN_DEVICE_CPU), device_id: 0)
            cOutputs[index].shape = shape
        }
        let table = backend.table
        let handle = self.handle
        let result: OpaquePointer? = withExtendedLifetime(tensors) {
            cInputs.withUnsafeBufferPointer { ins in
                cOutputs.withUnsafeMutableBufferPointer { outs in
                    let base = outs.baseAddress, count = outs.count
                    let call = { table.execute(table.context, handle, ins.baseAddress, ins.count, base, count) }
                    if let lock { return lock.withLock(call) }
                    return call()
                }
            }
        }
        // Adopt every output block first, so that it is freed whatever happens next.
        let services = backend.plugin.hostServices.hostContext
        var memory: [CPluginHostMemory?] = []
        var foreign: [Int] = []
        for (index, output) in cOutputs.enumerated() {
            guard let data = output.data else { memory.append(nil); continue }
            if let size = services.adopt(data) { memory.append(CPluginHostMemory(data, size: size)) } else { memory.append(nil); foreign.append(index) }
        }
        try backend.check(result, "execute")
        if let index = foreign.first {
            throw KilnError(.internal, "\(origin): execute set output \(index)'s data to memory that host->alloc did not return")
        }
        var values: [RuntimeValue] = []
        for (index, output) in cOutputs.enumerated() {
            let name = index < graph.outputs.count ? graph.outputs[index].name : "#\(index)"
            guard output.ndim >= 0, Int(output.ndim) <= maxRank else {
                throw KilnError(.internal, "\(origin): execute gave output '\(name)' rank \(output.ndim) (at most \(maxRank))")
            }
            guard output.shape == outputShapes[index], output.strides == nil, output.byte_offset == 0 else {
                throw KilnError(.internal, "\(origin): execute changed output '\(name)''s shape pointer, strides or byte_offset")
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
            let byteCount = count * dtype.byteWidth!
            guard let block = memory[index] else {
                if count == 0 { values.append(.tensor(Tensor(zeros: dtype, shape: shape))); continue }
                throw KilnError(.internal, "\(origin): execute returned success but left output '\(name)''s data NULL")
            }
            guard block.size >= byteCount else {
                throw KilnError(.internal, "\(origin): execute gave output '\(name)' (\(dtype)\(shape), \(byteCount) bytes) a block of only \(block.size) bytes")
            }
            let storage = TensorStorage(borrowing: UnsafeRawPointer(block.pointer), byteCount: byteCount, owner: block)
            values.append(.tensor(Tensor(dtype: dtype, shape: shape, storage: storage)))
        }
        return values
    }
}
