#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnBackend
import KilnIR

/// Loads vendor plugins (`include/kiln/kiln_plugin.h`) by path, or finds them through `KILN_PLUGIN_PATH`.
///
/// ```swift
/// for backend in try PluginLoader.load(path: "/opt/acme/libacme_kiln.so") { registry.register(backend) }
/// ```
/// Loading one library twice (by the same path or another path to the same file) returns the plugin
/// already loaded: the library's entry point runs once per process.
public enum PluginLoader {
    /// The environment variable listing plugin files or folders, separated by `:`.
    public static let environmentVariable = "KILN_PLUGIN_PATH"

    private final class Table: @unchecked Sendable {
        var plugins: [String: CPlugin] = [:]
        let lock = Lock()
    }

    private static let loaded = Table()

    /// Loads the plugin at `path` (or returns the one loaded from the same file before), telling it that the
    /// host is Kiln `hostVersion`. This is the only way a plugin is loaded. Errors are `CPlugin`'s: `.io`,
    /// `.versionMismatch`, `.invalidArgument`; a load that fails is not kept, so a later call tries again.
    public static func plugin(path: String, hostVersion: String = "0.1.0") throws -> CPlugin {
        let key = canonicalPath(path)
        return try loaded.lock.withLock {
            if let plugin = loaded.plugins[key] { return plugin }
            let plugin = try CPlugin(path: path, hostVersion: hostVersion)
            loaded.plugins[key] = plugin
            return plugin
        }
    }

    /// The backends of the plugin at `path`.
    public static func load(path: String) throws -> [any Backend] {
        try plugin(path: path).backends
    }

    /// The priority a plugin backend has for each target it declares: above the built-in backends (100), so
    /// that `--target NAME` picks the vendor's backend for its own target.
    public static let targetPriority = 200

    /// Loads the plugin at `path` and registers its backends in `registry`, each for the targets it declares
    /// (kind `simulator` when every device it reports is simulated, else `accelerator`); returns their names.
    @discardableResult
    public static func register(path: String, in registry: BackendRegistry) throws -> [String] {
        let backends = try plugin(path: path).backends
        for backend in backends {
            if let existing = registry.backend(named: backend.info.name), !(existing is CPluginBackend) {
                throw KilnError(.invalidArgument, "plugin '\(path)' provides backend '\(backend.info.name)', which is already a built-in backend")
            }
            let devices = backend.devices()
            let kind: BackendKind = !devices.isEmpty && devices.allSatisfy({ $0.kind == .simulator }) ? .simulator : .accelerator
            // The descriptor makes the backend with the options the user gave it (ABI 1.3), so that a
            // configured registry (--backend-option) hands them to the plugin's compile, and with the
            // profiler when the plugin reports device profiles (ABI 1.4).
            try registry.register(BackendDescriptor(
                info: backend.info, kind: kind, summary: "plugin \(backend.plugin.name) (\(path))",
                targets: Dictionary(backend.targets.map { ($0, targetPriority) }, uniquingKeysWith: max),
                options: backend.options, profiles: backend.supportsProfile) { configuration in backend.configured(configuration.options, profiler: configuration.profiler) })
        }
        return backends.map(\.info.name)
    }

    /// The plugin files `KILN_PLUGIN_PATH` names: each entry is a `.so` file, or a folder whose `*.so`
    /// files are taken in name order. Missing entries are skipped.
    public static func discoveredPaths(environment value: String? = nil) -> [String] {
        let list = value ?? getenv(environmentVariable).map { String(cString: $0) } ?? ""
        var paths: [String] = []
        for entry in list.split(separator: ":").map(String.init) where !entry.isEmpty {
            var info = stat()
            guard stat(entry, &info) == 0 else { continue }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                guard let dir = opendir(entry) else { continue }
                var names: [String] = []
                while let item = readdir(dir) {
                    // Read the name in place: copying `d_name` reads all 256 bytes, past a short record (ASan).
                    let name = String(cString: UnsafeRawPointer(item).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
                        .assumingMemoryBound(to: CChar.self))
                    if name.hasSuffix(".so") || name.contains(".so.") || name.hasSuffix(".dylib") { names.append(name) }
                }
                closedir(dir)
                paths += names.sorted().map { entry.hasSuffix("/") ? entry + $0 : entry + "/" + $0 }
            } else {
                paths.append(entry)
            }
        }
        return paths
    }

    /// Loads every plugin `KILN_PLUGIN_PATH` names (or `environment`, a value of that form) into
    /// `registry`. Returns the backends registered and, per plugin that failed, its error: one broken
    /// plugin does not keep the others from loading.
    public static func discover(into registry: BackendRegistry, environment: String? = nil) -> (backends: [String], failures: [KilnError]) {
        var names: [String] = []
        var failures: [KilnError] = []
        for path in discoveredPaths(environment: environment) {
            do {
                names += try register(path: path, in: registry)
            } catch let error as KilnError {
                failures.append(error)
            } catch {
                failures.append(KilnError(.internal, "plugin '\(path)': \(error)"))
            }
        }
        return (names, failures)
    }

    /// `path` resolved (symbolic links, `..`), or as given when it does not exist.
    static func canonicalPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
