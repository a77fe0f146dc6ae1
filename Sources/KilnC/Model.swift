import CKilnABI
import Kiln
import KilnFormat
import KilnFrontends

/// A model input or output described once, in the C form `kiln_model_input/output` hand out.
struct ValueDescription {
    /// The C struct (its `struct_size` is set by the caller's copy, not here).
    var info: kiln_value_info
    /// Its name as a Swift string, for messages.
    var name: String
    /// Its tensor type, nil for a sequence, map or optional.
    var type: TensorType?
}

/// What a `kiln_model *` points to: a session plus the C strings and arrays its queries return.
final class ModelHandle {
    /// The prepared model.
    let session: Session
    /// The inputs the caller supplies, in `kiln_run` order.
    let inputs: [ValueDescription]
    /// The outputs, in `kiln_run` order.
    let outputs: [ValueDescription]
    /// The partition report.
    let partition: [kiln_partition_entry]
    /// `kiln_run`'s bound runs, by input signature.
    let boundRuns: BoundRuns
    private let strings = CStringPool()
    private var arrays: [AnyObject] = []

    init(session: Session) {
        self.session = session
        boundRuns = BoundRuns(session: session)
        let strings = self.strings
        var arrays: [AnyObject] = []
        func describe(_ value: Value) -> ValueDescription {
            var info = kiln_value_info()
            info.struct_size = MemoryLayout<kiln_value_info>.size
            info.name = strings.add(value.name)
            let tensorType = value.type?.tensorType
            if let t = tensorType {
                info.dtype = TensorBridge.cType(t.dtype)
                info.elem_type = Int32(t.dtype.onnxCode)
                if let dims = t.shape {
                    info.rank = Int32(dims.count)
                    if !dims.isEmpty {
                        let sizes = CArray(dims.map { Int64($0.value ?? -1) })
                        let names = CArray(dims.map { dim -> UnsafePointer<CChar>? in
                            if case .symbol(let s) = dim { return strings.add(s) }
                            return nil
                        })
                        arrays.append(sizes)
                        arrays.append(names)
                        info.dims = UnsafePointer(sizes.base)
                        info.dim_names = UnsafePointer(names.base)
                    }
                } else {
                    info.rank = -1
                }
            } else {
                info.dtype = kiln_dtype(code: UInt8(KILN_DTYPE_OPAQUE), bits: 0, lanes: 1)
                info.elem_type = 0
                info.rank = -1
            }
            return ValueDescription(info: info, name: value.name, type: tensorType)
        }
        inputs = session.requiredInputs.map(describe)
        outputs = session.outputs.map(describe)
        let nodes = session.model.graph.nodes
        func entry(_ index: Int, backend: String, reason: String) -> kiln_partition_entry {
            var entry = kiln_partition_entry()
            entry.struct_size = MemoryLayout<kiln_partition_entry>.size
            let node = index >= 0 && index < nodes.count ? nodes[index] : nil
            entry.node = strings.add(node.map { $0.name.isEmpty ? "#\(index)" : $0.name } ?? "#\(index)")
            entry.op = strings.add(node?.op.description ?? "?")
            entry.backend = strings.add(backend)
            entry.reason = strings.add(reason)
            return entry
        }
        partition = session.partitionReport.entries.map { entry($0.node, backend: $0.backend, reason: $0.reason) }
        self.arrays = arrays
    }
}

/// Reading models for the C API: ONNX or `.kiln`, told apart by the artifact's magic bytes.
enum ModelLoader {
    /// Whether `bytes` start like a `.kiln` artifact.
    static func isArtifact(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= ArtifactFormat.magic.count && bytes.prefix(ArtifactFormat.magic.count).elementsEqual(ArtifactFormat.magic)
    }

    /// A session for the model or artifact in the file at `path`.
    static func session(path: String, context: ContextHandle, options: kiln_load_options?) throws -> Session {
        try checkThreads(options)
        return try Kiln.load(path: path, options: context.loadOptions(options, artifact: Kiln.isArtifact(path: path)), registry: context.registry)
    }

    /// A session for the model or artifact in `bytes` (copied or decoded during the call: nothing refers
    /// to `bytes` afterwards).
    static func session(bytes: UnsafeRawBufferPointer, context: ContextHandle, options: kiln_load_options?) throws -> Session {
        try checkThreads(options)
        let artifact = isArtifact(bytes)
        let load = try context.loadOptions(options, artifact: artifact)
        if artifact { return try Kiln.load(artifactBytes: [UInt8](bytes), options: load, registry: context.registry) }
        try Kiln.refuseUnsigned(load, origin: "the model in memory")
        return try Kiln.prepare(ONNXImporter().importModel(bytes: bytes, directory: nil), options: load, registry: context.registry)
    }

    /// Refuses a negative thread count and a set reserved field.
    private static func checkThreads(_ options: kiln_load_options?) throws {
        if let threads = options?.num_threads, threads < 0 {
            throw KilnError(.invalidArgument, "kiln_load_options.num_threads is \(threads); expected 0 (default) or more")
        }
        if let budget = options?.memory_budget_mb, budget > UInt64(Int.max >> 20) {
            throw KilnError(.invalidArgument, "kiln_load_options.memory_budget_mb is \(budget); too large")
        }
        if let reserved = options?.reserved, reserved != 0 {
            throw KilnError(.invalidArgument, "kiln_load_options.reserved is \(reserved); it must be 0")
        }
    }
}

/// Loads the model (ONNX or `.kiln`) at `path`.
@c @implementation
public func kiln_model_load_file(_ context: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ options: UnsafePointer<kiln_load_options>?,
                                 _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_model_load_file"
        let context = try Handle.resolve(context, "context", of: function, as: ContextHandle.self)
        guard let path else { throw nullArgument("path", of: function) }
        let out = try Handle.require(outModel, "out_model", of: function)
        let options = try VersionedStruct.read(options, "kiln_load_options")
        let session = try ModelLoader.session(path: String(cString: path), context: context, options: options)
        out.pointee = Handle.retain(ModelHandle(session: session))
    }
}

/// Loads a model (ONNX or `.kiln`) from `size` bytes at `data`, which are copied during the call.
@c @implementation
public func kiln_model_load_memory(_ context: OpaquePointer?, _ data: UnsafeRawPointer?, _ size: Int,
                                   _ options: UnsafePointer<kiln_load_options>?, _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_model_load_memory"
        let context = try Handle.resolve(context, "context", of: function, as: ContextHandle.self)
        guard let data else { throw nullArgument("data", of: function) }
        guard size > 0 else { throw KilnError(.invalidModel, "\(function): size is 0 (an empty buffer is not a model)") }
        let out = try Handle.require(outModel, "out_model", of: function)
        let options = try VersionedStruct.read(options, "kiln_load_options")
        let session = try ModelLoader.session(bytes: UnsafeRawBufferPointer(start: data, count: size), context: context, options: options)
        out.pointee = Handle.retain(ModelHandle(session: session))
    }
}

/// Frees a model (NULL is allowed).
@c @implementation
public func kiln_model_free(_ model: OpaquePointer?) {
    Handle.release(model)
}

/// The number of inputs the caller supplies to `kiln_run`.
@c @implementation
public func kiln_model_input_count(_ model: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int>?) -> OpaquePointer? {
    guarded {
        let model = try Handle.resolve(model, "model", of: "kiln_model_input_count", as: ModelHandle.self)
        try Handle.store(model.inputs.count, outCount, "out_count", of: "kiln_model_input_count")
    }
}

/// The number of outputs `kiln_run` produces.
@c @implementation
public func kiln_model_output_count(_ model: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int>?) -> OpaquePointer? {
    guarded {
        let model = try Handle.resolve(model, "model", of: "kiln_model_output_count", as: ModelHandle.self)
        try Handle.store(model.outputs.count, outCount, "out_count", of: "kiln_model_output_count")
    }
}

/// Fills `info` with input `index` of `model`.
@c @implementation
public func kiln_model_input(_ model: OpaquePointer?, _ index: Int, _ info: UnsafeMutablePointer<kiln_value_info>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_model_input"
        let model = try Handle.resolve(model, "model", of: function, as: ModelHandle.self)
        let i = try Handle.index(index, count: model.inputs.count, "model's input list", of: function)
        guard let info else { throw nullArgument("info", of: function) }
        try VersionedStruct.write(model.inputs[i].info, to: info, "kiln_value_info")
    }
}

/// Fills `info` with output `index` of `model`.
@c @implementation
public func kiln_model_output(_ model: OpaquePointer?, _ index: Int, _ info: UnsafeMutablePointer<kiln_value_info>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_model_output"
        let model = try Handle.resolve(model, "model", of: function, as: ModelHandle.self)
        let i = try Handle.index(index, count: model.outputs.count, "model's output list", of: function)
        guard let info else { throw nullArgument("info", of: function) }
        try VersionedStruct.write(model.outputs[i].info, to: info, "kiln_value_info")
    }
}

/// The number of entries in `model`'s partition report.
@c @implementation
public func kiln_model_partition_count(_ model: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int>?) -> OpaquePointer? {
    guarded {
        let model = try Handle.resolve(model, "model", of: "kiln_model_partition_count", as: ModelHandle.self)
        try Handle.store(model.partition.count, outCount, "out_count", of: "kiln_model_partition_count")
    }
}

/// Fills `entry` with entry `index` of `model`'s partition report.
@c @implementation
public func kiln_model_partition_entry(_ model: OpaquePointer?, _ index: Int, _ entry: UnsafeMutablePointer<kiln_partition_entry>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_model_partition_entry"
        let model = try Handle.resolve(model, "model", of: function, as: ModelHandle.self)
        let i = try Handle.index(index, count: model.partition.count, "partition report", of: function)
        guard let entry else { throw nullArgument("entry", of: function) }
        try VersionedStruct.write(model.partition[i], to: entry, "kiln_partition_entry")
    }
}
