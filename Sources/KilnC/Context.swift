import CKilnABI
import Kiln

/// What a `kiln_context *` points to: the backends models loaded through it may use, and their default.
final class ContextHandle {
    /// The backends, by name: the built-in ones, then the plugins registered in this context.
    let registry: BackendRegistry
    /// The backend that runs whole models whose load options name none; nil: the host target's backends.
    let defaultBackend: String?
    /// Backend names as C strings, in registration order (built-in first, then plugins as registered).
    var backendNames: [UnsafePointer<CChar>] { namesLock.withLock { names } }
    private var names: [UnsafePointer<CChar>] = []
    private let namesLock = Lock()
    private let strings = CStringPool()

    init(defaultBackend: String?) throws {
        registry = Kiln.makeRegistry()
        if let defaultBackend { _ = try registry.require(defaultBackend) }
        self.defaultBackend = defaultBackend
        names = registry.names.map { strings.add($0) }
    }

    /// Appends the C names of backends registered since the list was last built (plugins); the strings
    /// already handed out stay valid.
    func refreshBackendNames() {
        namesLock.withLock {
            let known = Set(names.map { String(cString: $0) })
            for name in registry.names where !known.contains(name) {
                names.append(strings.add(name))
            }
        }
    }

    /// How models load with `options`: on the backend they name (or, for a model, the context's default),
    /// else on the host target's backends (an artifact: on those it was compiled for); `num_threads` (> 0)
    /// configures the backends that take a thread count; `trusted_keys` (ABI 1.3) are the keys an artifact
    /// must be signed by.
    func loadOptions(_ options: kiln_load_options?, artifact: Bool) throws -> Kiln.LoadOptions {
        let threads = Int(options?.num_threads ?? 0)
        let named = options?.backend.map { String(cString: $0) }
        var configuration = BackendConfiguration(threads: threads > 0 ? threads : nil)
        if let budget = options?.memory_budget_mb, budget > 0 { configuration.options["memory_budget_mb"] = String(budget) }
        return Kiln.LoadOptions(backend: artifact ? named : named ?? defaultBackend, configuration: configuration,
                                trust: try Self.trust(options))
    }

    /// The trusted keys of `options` (ABI 1.3; a struct from an older header reads as none).
    static func trust(_ options: kiln_load_options?) throws -> ArtifactTrust {
        guard let options, options.trusted_key_count > 0 else { return ArtifactTrust() }
        let count = options.trusted_key_count
        guard count <= 4096 else { throw KilnError(.invalidArgument, "kiln_load_options.trusted_key_count is \(count); expected at most 4096") }
        guard let keys = options.trusted_keys else {
            throw KilnError(.invalidArgument, "kiln_load_options.trusted_keys is NULL but trusted_key_count is \(count)")
        }
        return ArtifactTrust(trustedKeys: try (0..<count).map { i in
            do {
                return try ArtifactPublicKey(rawRepresentation: Array(UnsafeBufferPointer(start: keys + 32 * i, count: 32)))
            } catch {
                throw KilnError(.invalidArgument, "kiln_load_options.trusted_keys: key \(i) is not a valid Ed25519 public key")
            }
        })
    }
}

/// Creates a context (`options` may be NULL).
@c @implementation
public func kiln_context_create(_ options: UnsafePointer<kiln_context_options>?, _ outContext: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        let out = try Handle.require(outContext, "out_context", of: "kiln_context_create")
        let options = try VersionedStruct.read(options, "kiln_context_options")
        let context = try ContextHandle(defaultBackend: options?.default_backend.map { String(cString: $0) })
        out.pointee = Handle.retain(context)
    }
}

/// Frees a context (NULL is allowed).
@c @implementation
public func kiln_context_free(_ context: OpaquePointer?) {
    Handle.release(context)
}

/// The number of backends registered in `context`.
@c @implementation
public func kiln_context_backend_count(_ context: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int>?) -> OpaquePointer? {
    guarded {
        let context = try Handle.resolve(context, "context", of: "kiln_context_backend_count", as: ContextHandle.self)
        try Handle.store(context.backendNames.count, outCount, "out_count", of: "kiln_context_backend_count")
    }
}

/// The name of backend `index` of `context`, owned by the context.
@c @implementation
public func kiln_context_backend_name(_ context: OpaquePointer?, _ index: Int, _ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_context_backend_name"
        let context = try Handle.resolve(context, "context", of: function, as: ContextHandle.self)
        let i = try Handle.index(index, count: context.backendNames.count, "backend list", of: function)
        try Handle.store(context.backendNames[i], outName, "out_name", of: function)
    }
}
