import KilnBackend
@_exported import struct KilnCPU.CPUBackend
@_exported import class KilnCPU.CPUProfile
@_exported import enum KilnCPU.CPUTarget
import KilnCPU
import KilnReference

extension Kiln {
    /// The built-in backends, registered in priority order: `kiln.reference`, then `kiln.cpu`.
    public static let backends: BackendRegistry = {
        let registry = BackendRegistry()
        registry.register(ReferenceBackend())
        registry.register(CPUBackend())
        return registry
    }()

    /// The backend called `name`, configured with `threads` when it is `kiln.cpu` (other backends take no
    /// thread count: asking for one is an `.invalidArgument` error).
    public static func backend(named name: String, threads: Int?, profile: CPUProfile? = nil) throws -> any Backend {
        if name == "kiln.cpu" { return try CPUBackend(threads: threads, profile: profile) }
        if threads != nil || profile != nil {
            throw KilnError(.invalidArgument, "backend '\(name)' takes no thread count or profile (only kiln.cpu does)")
        }
        return try backend(named: name)
    }
}
