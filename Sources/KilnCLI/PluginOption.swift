import ArgumentParser
import Kiln
import KilnTooling

/// `--plugin PATH` (repeatable): vendor plugins whose backends a command may use. Include it in a command
/// with `@OptionGroup var plugins: PluginOption` and call `try plugins.register()` before compiling or
/// loading; plugins named by `KILN_PLUGIN_PATH` are loaded too.
struct PluginOption: ParsableArguments {
    @Option(name: .customLong("plugin"),
            help: ArgumentHelp("Load a backend plugin (a shared library built against kiln_plugin.h; repeatable). Plugins listed in KILN_PLUGIN_PATH (files or folders, ':'-separated) are loaded as well.",
                               valueName: "path.so"))
    var paths: [String] = []

    /// Registers the backends of every `--plugin` (an error stops the command) and of every plugin in
    /// `KILN_PLUGIN_PATH` (a broken one is a warning on standard error) in `Kiln.backends`. Returns the
    /// names of the backends added.
    @discardableResult
    func register() throws -> [String] {
        var names: [String] = []
        for path in paths {
            names += try PluginLoader.register(path: path, in: Kiln.backends)
        }
        let discovered = PluginLoader.discover(into: Kiln.backends)
        for failure in discovered.failures { printError("warning: \(PluginLoader.environmentVariable): \(failure.message)") }
        return names + discovered.backends
    }
}
