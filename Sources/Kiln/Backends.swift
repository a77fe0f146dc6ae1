import KilnBackend
import KilnCPU
import KilnReference

extension Kiln {
    /// The built-in backends, registered in priority order.
    public static let backends: BackendRegistry = {
        let registry = BackendRegistry()
        registry.register(ReferenceBackend())
        return registry
    }()
}
