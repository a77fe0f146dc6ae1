import CKilnABI
import Kiln
import KilnCompiler
import KilnFormat
import KilnFrontends
import KilnTooling

/// What a `kiln_blob *` points to: bytes the library produced.
final class BlobHandle {
    /// The bytes, in memory that stays put for the blob's lifetime.
    let storage: TensorStorage

    init(_ bytes: [UInt8]) { storage = bytes.withUnsafeBytes { TensorStorage(copying: $0) } }
}

/// Turning `kiln_compile_options` into `Compiler.Options`.
enum CompileRequest {
    /// The option keys `kiln_compile_options` accepts, with what each sets.
    static let knownKeys = ["opt_level", "backend", "backends", "fallback", "min_group_size", "deny", "max_folded_bytes"]
        + QuantizationRequest.keys + ["metadata.<key>", "input_shape.<input>"]

    /// The compiler options the caller's struct asks for (defaults for NULL), over `context`'s backends.
    static func compiler(_ options: UnsafePointer<kiln_compile_options>?, context: ContextHandle) throws -> Compiler {
        var result = Compiler.Options()
        if let name = context.defaultBackend { try apply("backend", name, to: &result) }
        guard let c = try VersionedStruct.read(options, "kiln_compile_options") else {
            return Kiln.compiler(options: result, registry: context.registry)
        }
        if let target = c.target { result.target = String(cString: target) }
        var quantization = QuantizationRequest()
        if c.option_count > 0 {
            guard let keys = c.option_keys, let values = c.option_values else {
                throw KilnError(.invalidArgument, "kiln_compile_options: option_count is \(c.option_count) but option_keys or option_values is NULL")
            }
            for i in 0..<c.option_count {
                guard let keyPointer = keys[i], let valuePointer = values[i] else {
                    throw KilnError(.invalidArgument, "kiln_compile_options: option_keys[\(i)] or option_values[\(i)] is NULL")
                }
                let key = String(cString: keyPointer), value = String(cString: valuePointer)
                if try !quantization.set(key, value) { try apply(key, value, to: &result) }
            }
        }
        result.quantization = try quantization.options(.compileOptions)
        return Kiln.compiler(options: result, registry: context.registry)
    }

    /// Sets option `key` to `value` in `options`.
    static func apply(_ key: String, _ value: String, to options: inout Compiler.Options) throws {
        func integer() throws -> Int {
            guard let v = Int(value) else { throw KilnError(.invalidArgument, "compile option \(key)='\(value)': expected an integer") }
            return v
        }
        switch key {
        case "opt_level": options.optLevel = try integer()
        case "backend":
            // The whole graph for this one backend, as before ABI 1.1's partitioning options.
            options.backends = [value]
            options.fallback = .deny
        case "backends":
            let names = CommaList.items(value)
            guard !names.isEmpty else { throw KilnError(.invalidArgument, "compile option backends='\(value)': expected NAME[,NAME…]") }
            options.backends = names
        case "fallback":
            guard let policy = FallbackPolicy(rawValue: value) else {
                throw KilnError(.invalidArgument, "compile option fallback='\(value)': expected allow, warn or deny")
            }
            options.fallback = policy
        case "min_group_size":
            let v = try integer()
            guard v >= 1 else { throw KilnError(.invalidArgument, "compile option min_group_size='\(value)': expected at least 1") }
            options.minGroupSize = v
        case "deny": options.deny = CommaList.items(value)
        case "max_folded_bytes":
            let v = try integer()
            guard v >= 0 else { throw KilnError(.invalidArgument, "compile option max_folded_bytes='\(value)': expected 0 or more") }
            options.maxFoldedBytes = v
        case _ where key.hasPrefix("metadata.") && key.count > "metadata.".count:
            options.metadata[String(key.dropFirst("metadata.".count))] = value
        case _ where key.hasPrefix("input_shape.") && key.count > "input_shape.".count:
            let name = String(key.dropFirst("input_shape.".count))
            options.inputShapes[name] = try InputShapes.dims(value, of: name)
        default:
            throw KilnError(.invalidArgument, "unknown compile option '\(key)' (known: \(knownKeys.joined(separator: ", ")))")
        }
    }
}

/// Compiles the ONNX model at `model_path` into the artifact file `artifact_path`.
@c @implementation
public func kiln_compile_file(_ context: OpaquePointer?, _ modelPath: UnsafePointer<CChar>?, _ artifactPath: UnsafePointer<CChar>?,
                              _ options: UnsafePointer<kiln_compile_options>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_compile_file"
        let context = try Handle.resolve(context, "context", of: function, as: ContextHandle.self)
        guard let modelPath else { throw nullArgument("model_path", of: function) }
        guard let artifactPath else { throw nullArgument("artifact_path", of: function) }
        let compiler = try CompileRequest.compiler(options, context: context)
        let output = try compiler.compile(onnxPath: String(cString: modelPath))
        try AtomicFile.write(output.bytes, to: String(cString: artifactPath))
    }
}

/// Compiles an ONNX model held in memory and returns the artifact's bytes in a new blob.
@c @implementation
public func kiln_compile_memory(_ context: OpaquePointer?, _ data: UnsafeRawPointer?, _ size: Int,
                                _ options: UnsafePointer<kiln_compile_options>?, _ outArtifact: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_compile_memory"
        let context = try Handle.resolve(context, "context", of: function, as: ContextHandle.self)
        guard let data else { throw nullArgument("data", of: function) }
        guard size > 0 else { throw KilnError(.invalidModel, "\(function): size is 0 (an empty buffer is not a model)") }
        let out = try Handle.require(outArtifact, "out_artifact", of: function)
        let compiler = try CompileRequest.compiler(options, context: context)
        let bytes = UnsafeRawBufferPointer(start: data, count: size)
        if ModelLoader.isArtifact(bytes) {
            throw KilnError(.invalidArgument, "\(function): the bytes are already a .kiln artifact; compile takes an ONNX model")
        }
        let model = try ONNXImporter().importModel(bytes: bytes, directory: nil)
        let source = SourceInfo(format: "onnx", sha256: SHA256.hash(bytes), fileName: "", byteCount: size)
        let output = try compiler.compile(model: model, source: source)
        out.pointee = Handle.retain(BlobHandle(output.bytes))
    }
}

/// The bytes of `blob`, owned by it.
@c @implementation
public func kiln_blob_data(_ blob: OpaquePointer?) -> UnsafeRawPointer? {
    guard let blob = try? Handle.resolve(blob, "blob", of: "kiln_blob_data", as: BlobHandle.self) else { return nil }
    return blob.storage.base
}

/// The size of `blob` in bytes (0 for NULL).
@c @implementation
public func kiln_blob_size(_ blob: OpaquePointer?) -> Int {
    (try? Handle.resolve(blob, "blob", of: "kiln_blob_size", as: BlobHandle.self))?.storage.byteCount ?? 0
}

/// Frees `blob` (NULL is allowed).
@c @implementation
public func kiln_blob_free(_ blob: OpaquePointer?) {
    Handle.release(blob)
}
