import CKilnABI
import Kiln
import KilnBackend
import KilnPluginHost

/// Registering vendor plugins (`include/kiln/kiln_plugin.h`) in one context's backend registry.
enum PluginRegistration {
    /// Loads the plugin at `path` into `context`'s registry; returns how many backends it added.
    static func register(path: String, in context: ContextHandle) throws -> Int {
        let before = context.registry.all.count
        do {
            try PluginLoader.register(path: path, in: context.registry)
        } catch let error as KilnError {
            context.refreshBackendNames()
            // Make sure the message names the file, whatever the loader said.
            throw error.message.contains(path) ? error : KilnError(error.code, "plugin '\(path)': \(error.message)")
        }
        context.refreshBackendNames()
        return context.registry.all.count - before
    }

    /// Loads every plugin `KILN_PLUGIN_PATH` names into `context`'s registry. Returns how many backends
    /// were added; when some plugins fail, the others stay registered and the error lists each failure.
    static func discover(in context: ContextHandle) throws -> Int {
        let before = context.registry.all.count
        let paths = PluginLoader.discoveredPaths()
        var failures: [String] = []
        for path in paths {
            do {
                _ = try register(path: path, in: context)
            } catch let error as KilnError {
                failures.append(error.message)
            }
        }
        let added = context.registry.all.count - before
        if !failures.isEmpty {
            throw KilnError(.invalidArgument, "\(PluginLoader.environmentVariable): \(failures.count) of \(paths.count) plugin(s) failed to load (\(added) backend(s) added from the others): " + failures.joined(separator: "; "))
        }
        return added
    }
}

/// Loads the plugin at `path` into `context` (only that context sees its backends).
@c @implementation
public func kiln_context_register_plugin(_ context: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ outAdded: UnsafeMutablePointer<Int>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_context_register_plugin"
        let context = try Handle.resolve(context, "context", of: function, as: ContextHandle.self)
        guard let path else { throw nullArgument("path", of: function) }
        let added = try PluginRegistration.register(path: String(cString: path), in: context)
        outAdded?.pointee = added
    }
}

/// Loads every plugin `KILN_PLUGIN_PATH` names into `context`.
@c @implementation
public func kiln_context_discover_plugins(_ context: OpaquePointer?, _ outAdded: UnsafeMutablePointer<Int>?) -> OpaquePointer? {
    guarded {
        let context = try Handle.resolve(context, "context", of: "kiln_context_discover_plugins", as: ContextHandle.self)
        let added = try PluginRegistration.discover(in: context)
        outAdded?.pointee = added
    }
}
