import KilnBackend
@_exported import struct KilnCPU.CPUBackend
@_exported import class KilnCPU.CPUProfile
@_exported import enum KilnCPU.CPUTarget
import KilnCPU
@_exported import struct KilnGPU.GPUBackend
import KilnGPU
import KilnPasses
import KilnReference

extension Kiln {
    /// The descriptors of the backends built into Kiln. This list is the one place that names them:
    /// adding an in-tree backend takes its folder, its descriptor here, and its lines in Package.swift.
    public static let builtInBackends: [BackendDescriptor] = [CPUBackend.descriptor, GPUBackend.descriptor, ReferenceBackend.descriptor]

    /// The process's backend registry: the built-in backends, and the plugins registered since
    /// (`PluginLoader`, `KILN_PLUGIN_PATH`). Every API that picks a backend reads it.
    public static let backends: BackendRegistry = makeRegistry()

    /// A new registry holding only the built-in backends (a C context starts from one).
    public static func makeRegistry() -> BackendRegistry {
        let registry = BackendRegistry()
        for descriptor in builtInBackends {
            // Built-in backends take no options here; making them with their defaults cannot fail.
            try! registry.register(descriptor)
        }
        return registry
    }

    /// The reference backend: the oracle that tests and `kiln plugin-check` compare other backends with.
    public static var reference: any Backend { ReferenceBackend() }

    /// The constant-folding evaluator the compiler is given: one node on the reference interpreter.
    public static let constantEvaluator: NodeEvaluator = { node, tensors in try ReferenceBackend.evaluate(node, tensors) }
}
