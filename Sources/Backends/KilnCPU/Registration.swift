import KilnBackend

extension CPUProfile: ExecutionProfiler {}

extension CPUBackend {
    /// How the registry knows `kiln.cpu`: the optimized backend of every CPU target, first for `host`.
    public static let descriptor = BackendDescriptor(
        info: BackendInfo(name: "kiln.cpu", vendor: "kiln", version: "0.1.0"),
        kind: .optimized,
        summary: "optimized CPU backend: fused, vectorized kernels (AVX-512, AVX2, NEON), memory plan, threads",
        targets: Dictionary(uniqueKeysWithValues: CPUTarget.names.map { ($0, 100) }),
        options: [BackendOption(name: "threads", type: .integer(minimum: 1), defaultValue: "the physical cores",
                                help: "threads each prepared graph uses, the caller's included")],
        profiles: true
    ) { configuration in
        try CPUBackend(threads: configuration.integer("threads"), profile: configuration.profiler as? CPUProfile)
    }
}
