import KilnBackend
import KilnIR

extension CPUProfile: ExecutionProfiler {}

extension CPUBackend {
    /// How the registry knows `kiln.cpu`: the optimized backend of every CPU target, first for `host`.
    public static let descriptor = BackendDescriptor(
        info: BackendInfo(name: "kiln.cpu", vendor: "kiln", version: "0.1.0"),
        kind: .optimized,
        summary: "optimized CPU backend: fused, vectorized kernels (AVX-512, AVX2, NEON), memory plan, threads",
        targets: Dictionary(uniqueKeysWithValues: CPUTarget.names.map { ($0, 100) }),
        options: [BackendOption(name: "threads", type: .integer(minimum: 1), defaultValue: "the physical cores",
                                help: "threads each prepared graph uses, the caller's included"),
                  BackendOption(name: "memory_budget_mb", type: .integer(minimum: 1), defaultValue: "no budget",
                                help: "the most MiB one prepared graph's memory plan may take; a larger plan is an error at load naming its largest values")],
        profiles: true
    ) { configuration in
        var backend = try CPUBackend(threads: configuration.integer("threads"), profile: configuration.profiler as? CPUProfile)
        if let mb = configuration.integer("memory_budget_mb") {
            backend.memoryBudget = try ElementCount.product(mb, 1 << 20, what: "kiln.cpu option memory_budget_mb", code: .invalidArgument)
        }
        return backend
    }
}
