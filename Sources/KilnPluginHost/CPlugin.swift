#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKilnABI
import KilnBackend
import KilnIR

/// A vendor plugin loaded from a shared library (`include/kiln/kiln_plugin.h`): the library handle, the
/// header the plugin returned and the host services it was given. Its backends (`CPluginBackend`) and
/// their executables keep it alive; when the last of them goes, the plugin's `shutdown` runs and the
/// library is closed.
public final class CPlugin: @unchecked Sendable {
    /// The file the plugin was loaded from.
    public let path: String
    /// The plugin's name (`kiln-sample-plugin`).
    public let name: String
    /// Who makes it.
    public let vendor: String
    /// The plugin's version.
    public let version: String
    /// The ABI version the plugin speaks, as (major, minor).
    public let abiVersion: (major: UInt32, minor: UInt32)
    /// The size of the plugin's header struct (it tells which fields the plugin knows).
    public let headerSize: Int

    private let handle: UnsafeMutableRawPointer
    private let services: CPluginHostServices
    private let shutdown: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
    private let context: UnsafeMutableRawPointer?
    /// The backends' tables, copied (zero beyond each one's struct_size).
    let tables: [kiln_plugin_backend]
    /// Each table's struct_size as the plugin set it.
    let tableSizes: [Int]
    /// The options each backend declares (ABI 1.3; empty before), validated at load.
    let optionLists: [[BackendOption]]

    /// Loads the plugin at `path`: dlopen (RTLD_NOW | RTLD_LOCAL), the newest entry symbol this host
    /// speaks, version negotiation, and validation of the header and every backend table.
    ///
    /// Errors: `.io` when the library cannot be opened; `.versionMismatch` for a plugin of an ABI this
    /// host does not speak (the message names both versions and the path); `.invalidArgument` for a
    /// library that is not a Kiln plugin or whose header or tables are malformed.
    ///
    /// Internal: a library is loaded through `PluginLoader.plugin(path:hostVersion:)`, which keeps one load per
    /// file, so the entry point runs once per process as kiln_plugin.h promises (a plugin may keep the host
    /// table in a global; a second load would overwrite it and the first one's shutdown would clear it).
    init(path: String, hostVersion: String = "0.1.0") throws {
        // A FIFO or device at a plugin path would block dlopen forever: only a regular file is opened.
        if path.contains("/") { try RegularFile.check(path, limit: Int.max) }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw KilnError(.io, "cannot load plugin '\(path)': \(why)")
        }
        var ok = false
        defer { if !ok { dlclose(handle) } }

        var entry: UnsafeMutableRawPointer?
        for major in PluginABI.majors {
            entry = dlsym(handle, PluginABI.entrySymbol(major: major))
            if entry != nil { break }
        }
        guard let entry else {
            let others = (0...16).map(UInt32.init).filter { !PluginABI.majors.contains($0) }
                .filter { dlsym(handle, PluginABI.entrySymbol(major: $0)) != nil }
            if let major = others.last {
                throw KilnError(.versionMismatch, "plugin '\(path)' is built for plugin ABI \(major) (it exports \(PluginABI.entrySymbol(major: major))); this Kiln \(hostVersion) supports plugin ABI \(PluginABI.rangeDescription)")
            }
            throw KilnError(.invalidArgument, "'\(path)' is not a Kiln plugin: it exports no \(PluginABI.entrySymbol(major: PluginABI.majors[0])) symbol")
        }
        typealias Query = @convention(c) (UnsafePointer<kiln_plugin_host>?, UnsafeMutablePointer<UnsafePointer<kiln_plugin_header>?>?) -> OpaquePointer?
        let query = unsafeBitCast(entry, to: Query.self)
        let services = CPluginHostServices(path: path, hostVersion: hostVersion)
        var headerPointer: UnsafePointer<kiln_plugin_header>?
        if let error = query(services.table, &headerPointer) {
            throw CPlugin.kilnError(error, origin: "plugin '\(path)'", callback: PluginABI.entrySymbol(major: 1))
        }
        guard let headerPointer else {
            throw KilnError(.invalidArgument, "plugin '\(path)': \(PluginABI.entrySymbol(major: 1)) returned no header and no error")
        }
        // The frozen prefix: struct_size, abi_major, abi_minor.
        let frozenSize = MemoryLayout<Int>.size + 8
        let headerSize = UnsafeRawPointer(headerPointer).load(as: Int.self)
        guard headerSize >= frozenSize else {
            throw KilnError(.invalidArgument, "plugin '\(path)': its header's struct_size \(headerSize) is smaller than the frozen prefix (\(frozenSize) bytes)")
        }
        let major = UnsafeRawPointer(headerPointer).load(fromByteOffset: MemoryLayout<Int>.size, as: UInt32.self)
        let minor = UnsafeRawPointer(headerPointer).load(fromByteOffset: MemoryLayout<Int>.size + 4, as: UInt32.self)
        guard PluginABI.contains(major: major, minor: minor) else {
            let tooNew = major > PluginABI.newest.major || (major == PluginABI.newest.major && minor > PluginABI.newest.minor)
            let needs = tooNew ? "needs a host of plugin ABI \(major).\(minor) or newer" : "speaks plugin ABI \(major).\(minor)"
            throw KilnError(.versionMismatch, "plugin '\(path)' \(needs); this Kiln \(hostVersion) supports plugin ABI \(PluginABI.rangeDescription)")
        }
        let header: kiln_plugin_header = CPlugin.copy(headerPointer, size: headerSize)
        let required = MemoryLayout<kiln_plugin_header>.offset(of: \kiln_plugin_header.backends)! + MemoryLayout<UnsafeRawPointer>.size
        guard headerSize >= required else {
            throw KilnError(.invalidArgument, "plugin '\(path)': its header's struct_size \(headerSize) is too small for ABI \(major).\(minor) (at least \(required))")
        }
        guard let pluginName = CPlugin.string(header.name), !pluginName.isEmpty else {
            throw KilnError(.invalidArgument, "plugin '\(path)': the header has no name")
        }
        let origin = "plugin '\(pluginName)' (\(path))"
        guard header.backend_count >= 1, header.backend_count <= 1024, let list = header.backends else {
            throw KilnError(.invalidArgument, "\(origin): the header lists \(header.backend_count) backends\(header.backends == nil ? " with a NULL array" : "") (expected 1 to 1024)")
        }
        var tables: [kiln_plugin_backend] = []
        var sizes: [Int] = []
        var optionLists: [[BackendOption]] = []
        var names: Set<String> = []
        let tableRequired = MemoryLayout<kiln_plugin_backend>.offset(of: \kiln_plugin_backend.release)! + MemoryLayout<UnsafeRawPointer>.size
        for index in 0..<header.backend_count {
            guard let tablePointer = list[index] else {
                throw KilnError(.invalidArgument, "\(origin): backend \(index) is NULL")
            }
            let declared = UnsafeRawPointer(tablePointer).load(as: Int.self)
            guard declared >= tableRequired else {
                throw KilnError(.invalidArgument, "\(origin): backend \(index)'s struct_size \(declared) is too small for ABI \(major).\(minor) (at least \(tableRequired))")
            }
            // A plugin that negotiated an earlier version is read as the later fields never were: a 1.0/1.1
            // plugin's 1.0 fields only, a 1.2 plugin's fields up to 1.2's.
            let size = minor >= 5 ? declared : minor == 4 ? min(declared, PluginABI.backendSize14) : minor == 3 ? min(declared, PluginABI.backendSize13)
                : minor == 2 ? min(declared, PluginABI.backendSize12) : min(declared, PluginABI.backendSize10)
            let table: kiln_plugin_backend = CPlugin.copy(tablePointer, size: size)
            guard let backendName = CPlugin.string(table.name), !backendName.isEmpty else {
                throw KilnError(.invalidArgument, "\(origin): backend \(index) has no name")
            }
            guard names.insert(backendName).inserted else {
                throw KilnError(.invalidArgument, "\(origin): two backends are called '\(backendName)'")
            }
            var missing: [String] = []
            if table.claim == nil { missing.append("claim") }
            if table.compile == nil { missing.append("compile") }
            if table.check == nil { missing.append("check") }
            if table.load == nil { missing.append("load") }
            if table.execute == nil { missing.append("execute") }
            if table.unload == nil { missing.append("unload") }
            if table.release == nil { missing.append("release") }
            if table.flags & UInt64(KILN_PLUGIN_BACKEND_DEVICE_BUFFERS) != 0 {
                if table.buffer_alloc == nil { missing.append("buffer_alloc") }
                if table.buffer_free == nil { missing.append("buffer_free") }
                if table.buffer_write == nil { missing.append("buffer_write") }
                if table.buffer_read == nil { missing.append("buffer_read") }
            }
            guard missing.isEmpty else {
                let why = missing.contains(where: { $0.hasPrefix("buffer_") }) ? " (required by KILN_PLUGIN_BACKEND_DEVICE_BUFFERS" + (size < MemoryLayout<kiln_plugin_backend>.size ? " and beyond its struct_size \(size))" : ")") : ""
                throw KilnError(.invalidArgument, "\(origin): backend '\(backendName)' has NULL callbacks: \(missing.joined(separator: ", "))\(why)")
            }
            guard table.target_count <= 1024, table.target_count == 0 || table.targets != nil else {
                throw KilnError(.invalidArgument, "\(origin): backend '\(backendName)' lists \(table.target_count) targets\(table.targets == nil ? " with a NULL array" : "") (at most 1024)")
            }
            optionLists.append(try CPlugin.options(of: table, origin: "\(origin): backend '\(backendName)'"))
            tables.append(table)
            sizes.append(size)
        }
        self.path = path
        self.name = pluginName
        self.vendor = CPlugin.string(header.vendor) ?? ""
        self.version = CPlugin.string(header.version) ?? ""
        self.abiVersion = (major, minor)
        self.headerSize = headerSize
        self.handle = handle
        self.services = services
        let hasShutdown = headerSize >= MemoryLayout<kiln_plugin_header>.offset(of: \kiln_plugin_header.shutdown)! + MemoryLayout<UnsafeRawPointer>.size
        self.shutdown = hasShutdown ? header.shutdown : nil
        self.context = header.context
        self.tables = tables
        self.tableSizes = sizes
        self.optionLists = optionLists
        ok = true
    }

    deinit {
        shutdown?(context)
        dlclose(handle)
    }

    /// The plugin's backends, as `Backend`s.
    public var backends: [CPluginBackend] {
        tables.indices.map { CPluginBackend(plugin: self, index: $0) }
    }

    /// Whether the library exports `symbol` (used by `kiln plugin-check` to verify that a plugin exports
    /// only its entry symbol).
    public func exports(_ symbol: String) -> Bool {
        dlsym(handle, symbol) != nil
    }

    /// The host services this plugin was given.
    var hostServices: CPluginHostServices { services }

    /// Reads a `T` whose first field is its struct_size: `size` bytes of it (at most `MemoryLayout<T>.size`),
    /// the rest zero — never past what the plugin declared.
    static func copy<T>(_ pointer: UnsafePointer<T>, size: Int) -> T {
        let local = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        defer { local.deallocate() }
        local.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        local.copyMemory(from: pointer, byteCount: min(size, MemoryLayout<T>.size))
        return local.load(as: T.self)
    }

    /// A C string as a Swift string (nil for NULL).
    static func string(_ pointer: UnsafePointer<CChar>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    /// The options a backend table declares (ABI 1.3), each checked: a non-NULL entry whose struct_size
    /// covers the 1.3 fields, a name of 1 to 64 of [A-Za-z0-9._-] used once, at most 64 non-NULL choices.
    static func options(of table: kiln_plugin_backend, origin: String) throws -> [BackendOption] {
        guard table.option_count > 0 else { return [] }
        guard table.option_count <= 256, let list = table.options else {
            throw KilnError(.invalidArgument, "\(origin) lists \(table.option_count) options\(table.options == nil ? " with a NULL array" : "") (at most 256)")
        }
        let required = MemoryLayout<kiln_plugin_option>.offset(of: \kiln_plugin_option.choices)! + MemoryLayout<UnsafeRawPointer>.size
        var options: [BackendOption] = []
        for k in 0..<table.option_count {
            guard let pointer = list[k] else { throw KilnError(.invalidArgument, "\(origin): option \(k) is NULL") }
            let declared = UnsafeRawPointer(pointer).load(as: Int.self)
            guard declared >= required else {
                throw KilnError(.invalidArgument, "\(origin): option \(k)'s struct_size \(declared) is too small (at least \(required))")
            }
            let option: kiln_plugin_option = copy(pointer, size: declared)
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
            guard let name = string(option.name), (1...64).contains(name.count), name.allSatisfy({ allowed.contains($0) }) else {
                throw KilnError(.invalidArgument, "\(origin): option \(k) has no valid name (1 to 64 of A-Z a-z 0-9 . _ -)")
            }
            guard !options.contains(where: { $0.name == name }) else { throw KilnError(.invalidArgument, "\(origin): option '\(name)' is listed twice") }
            guard option.choice_count <= 64, option.choice_count == 0 || option.choices != nil else {
                throw KilnError(.invalidArgument, "\(origin): option '\(name)' lists \(option.choice_count) choices\(option.choices == nil ? " with a NULL array" : "") (at most 64)")
            }
            var choices: [String] = []
            for c in 0..<option.choice_count {
                guard let choice = string(option.choices![c]) else { throw KilnError(.invalidArgument, "\(origin): option '\(name)' has a NULL choice") }
                choices.append(choice)
            }
            options.append(BackendOption(name: name, type: .text(choices: choices), defaultValue: string(option.default_value).flatMap { $0.isEmpty ? nil : $0 } ?? "the backend's own",
                                         help: string(option.help) ?? ""))
        }
        return options
    }

    /// The `KilnError` for an error pointer a plugin returned from `callback`: the plugin's code and
    /// message, prefixed with where it came from; a pointer the host did not make is reported as such.
    static func kilnError(_ pointer: OpaquePointer, origin: String, callback: String) -> KilnError {
        guard let record = CPluginErrorRegistry.shared.take(pointer) else {
            return KilnError(.internal, "\(origin): \(callback) returned an error pointer that host->error_create did not make")
        }
        let code = KilnError.Code(rawValue: Int(record.code)) ?? .internal
        return KilnError(code, "\(origin): \(callback): \(record.message)")
    }
}
