import Foundation
import Kiln

/// Builds the C plugins under bindings/c/examples/vendor-plugin with the C compiler, as a vendor would (hidden
/// visibility, its own protobuf-c copy of the IR schema), once per set of flags and test run.
public enum PluginBuild {
    public static let root = TestPaths.packageRoot
    public static let pluginFolder = root + "/bindings/c/examples/vendor-plugin"

    private final class Cache: @unchecked Sendable {
        var built: [String: String] = [:]
        let lock = NSLock()
        let folder: String = {
            let path = NSTemporaryDirectory() + "kiln-plugin-tests-\(getpid())"
            try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "kiln-plugin-tests-\(getpid())") }
            return path
        }()
    }
    private static let cache = Cache()

    /// The sample plugin built with `defines` (e.g. `["SAMPLE_BACKEND_NAME=\"sample.two\""]`) as `name`.so.
    public static func sample(_ name: String = "libkiln_sample_plugin", defines: [String] = []) throws -> String {
        try build(name, sources: ["\(pluginFolder)/sample_plugin.c", "\(pluginFolder)/bytecode.c", "\(root)/bindings/c/proto/kiln/ir.pb-c.c"],
                  defines: defines, libraries: ["-lprotobuf-c"])
    }

    /// The deliberately broken plugin in `mode` (see testing/broken_plugin.c).
    public static func broken(mode: Int) throws -> String {
        try build("libbroken_\(mode)", sources: ["\(pluginFolder)/testing/broken_plugin.c"], defines: ["BROKEN_MODE=\(mode)"], libraries: [])
    }

    private static func build(_ name: String, sources: [String], defines: [String], libraries: [String]) throws -> String {
        let key = name + "|" + defines.joined(separator: "|")
        cache.lock.lock()
        defer { cache.lock.unlock() }
        if let path = cache.built[key] { return path }
        let output = "\(cache.folder)/\(name).so"
        let arguments = ["-std=c11", "-O1", "-Wall", "-Wextra", "-Wno-missing-braces", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden",
                         "-I\(root)/include", "-I\(root)/bindings/c/proto"] + defines.map { "-D\($0)" } + ["-o", output] + sources + libraries
            + CToolchain.extraFlags
        let result = try ProcessRunner.run(CToolchain.cCompiler, arguments)
        guard result.status == 0 else {
            throw KilnError(.internal, "\(CToolchain.cCompiler) \(arguments.joined(separator: " ")) failed:\n\(result.stderr)\(result.stdout)")
        }
        cache.built[key] = output
        return output
    }
}
