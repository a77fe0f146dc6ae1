import CKilnABI
import Kiln

/// What a `kiln_context *` points to: the backends models loaded through it may use, and their default.
final class ContextHandle {
    /// The backends, by name (today the built-in ones; vendor plugins register here later).
    let registry: BackendRegistry
    /// The backend for models whose load options name none.
    let defaultBackend: String
    /// Backend names as C strings, in registration order (built-in first, then plugins as registered).
    var backendNames: [UnsafePointer<CChar>] { namesLock.withLock { names } }
    private var names: [UnsafePointer<CChar>] = []
    private let namesLock = Lock()
    private let strings = CStringPool()

    init(defaultBackend: String?) throws {
        registry = BackendRegistry()
        for backend in Kiln.backends.all { registry.register(backend) }
        let name = defaultBackend ?? "kiln.reference"
        guard registry.backend(named: name) != nil else {
            throw KilnError(.invalidArgument, "kiln_context_create: no backend named '\(name)' (known: \(registry.all.map(\.info.name).joined(separator: ", ")))")
        }
        self.defaultBackend = name
        names = registry.all.map { strings.add($0.info.name) }
    }

    /// Appends the C names of backends registered since the list was last built (plugins); the strings
    /// already handed out stay valid.
    func refreshBackendNames() {
        namesLock.withLock {
            let known = Set(names.map { String(cString: $0) })
            for backend in registry.all where !known.contains(backend.info.name) {
                names.append(strings.add(backend.info.name))
            }
        }
    }

    /// The context's backends, with those that run worker threads configured for `threads` (> 0).
    func registry(threads: Int) throws -> BackendRegistry {
        guard threads > 0, registry.backend(named: "kiln.cpu") != nil else { return registry }
        let configured = BackendRegistry()
        for backend in registry.all {
            configured.register(backend.info.name == "kiln.cpu" ? try Kiln.backend(named: "kiln.cpu", threads: threads) : backend)
        }
        return configured
    }

    /// The backend called `name` (the default for nil), or an error listing the known ones. `threads` (> 0)
    /// configures backends that run worker threads (`kiln.cpu`); others run on the caller's thread and ignore it.
    func backend(named name: String?, threads: Int = 0) throws -> any Backend {
        let name = name ?? defaultBackend
        guard let backend = registry.backend(named: name) else {
            throw KilnError(.invalidArgument, "no backend named '\(name)' (known: \(registry.all.map(\.info.name).joined(separator: ", ")))")
        }
        if threads > 0 && name == "kiln.cpu" { return try Kiln.backend(named: name, threads: threads) }
        return backend
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
