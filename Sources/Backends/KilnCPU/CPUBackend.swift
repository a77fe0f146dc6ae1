import CKilnKernels
import KilnBackend
import KilnIR

/// `kiln.cpu`: the optimized CPU backend. It fuses patterns (Conv+BatchNormalization+activation+residual,
/// MatMul/Gemm+bias+activation, GELU, elementwise chains), packs constant weights once, plans all
/// intermediate tensors into one arena with buffer reuse and in-place operations, and splits large
/// operations across a thread pool. Kernels come from `CKilnKernels`, chosen at run time by CPU features.
public struct CPUBackend: Backend {
    /// `kiln.cpu`.
    public var info: BackendInfo { Self.descriptor.info }
    /// Threads each prepared graph uses (the caller's thread included).
    public let threads: Int
    /// The target payloads are compiled for (`host` resolves to this machine's best).
    public let target: CPUTarget
    /// Receives per-step timings of every run, when set.
    public let profile: CPUProfile?
    /// The most bytes one prepared graph's memory plan may take (option `memory_budget_mb`); nil for none.
    public var memoryBudget: Int?

    /// `kiln.cpu` with `threads` threads (default: the number of physical cores) for `target`
    /// (`host`, `x86_64-avx2`, `x86_64-avx512`, `aarch64-neon`, `generic`). An unknown target name
    /// or a thread count below 1 is an `.invalidArgument` error.
    public init(threads: Int? = nil, target: String = "host", profile: CPUProfile? = nil) throws {
        if let threads, threads < 1 { throw KilnError(.invalidArgument, "kiln.cpu: threads must be at least 1, got \(threads)") }
        self.threads = threads ?? HostCPU.physicalCores
        self.target = try CPUTarget.named(target)
        self.profile = profile
    }

    /// `kiln.cpu` with the default thread count, for the host.
    public init() {
        threads = HostCPU.physicalCores
        target = .host
        profile = nil
    }

    /// The nodes `kiln.cpu` has no kernel for, or whose element types or constant inputs it does not support.
    public func rejections(in graph: Graph) -> [Rejection] {
        Support.rejections(in: graph)
    }

    /// Lowers, fuses and packs `graph`; plans memory now when every input shape is static. Nodes of `graph`
    /// that kiln.cpu rejects or cannot lower are a `CompileRefusal` naming them.
    public func prepare(_ graph: Graph) throws -> any Executable {
        // A graph output with an empty name has no value id: the graph is malformed, whatever its nodes.
        if let bad = graph.outputs.firstIndex(where: { $0.name.isEmpty }) {
            throw KilnError(.invalidModel, "kiln.cpu: graph output #\(bad) has an empty name")
        }
        let rejected = rejections(in: graph)
        if !rejected.isEmpty { throw CompileRefusal(backend: info.name, rejections: rejected, in: graph) }
        if let missing = target.missing(on: CPUFeatures.host) {
            throw KilnError(.unsupported, "kiln.cpu target \(target.rawValue) needs \(missing), which this CPU lacks (it has: \(CPUFeatures.host))")
        }
        var lowering = Lowering(graph: graph)
        let program = try lowering.lower()
        let executable = CPUExecutable(program: program, threads: threads, profile: profile, memoryBudget: memoryBudget)
        try executable.planStaticShapes(graph)
        return executable
    }

    /// The compatibility string for `target`: `kiln.cpu/1/<target>`.
    public static func compat(for target: CPUTarget) -> String { "kiln.cpu/1/\(target.rawValue)" }

    /// Compiles for `options.target` (`host` = this machine's best): the payload names the target; the
    /// graph is lowered again at load, which takes milliseconds.
    public func compile(_ graph: Graph, options: CompileOptions) throws -> Payload {
        let target = try CPUTarget.named(options.target)
        let rejected = rejections(in: graph)
        if !rejected.isEmpty { throw CompileRefusal(backend: info.name, rejections: rejected, in: graph) }
        // Lowering now finds what load would refuse (it needs no particular CPU).
        var lowering = Lowering(graph: graph)
        _ = try lowering.lower()
        return Payload(bytes: Array("target=\(target.rawValue)\n".utf8), compat: Self.compat(for: target))
    }

    /// nil when this machine can run payloads compiled with compatibility string `compat`, else why not.
    public func check(compat: String) -> String? {
        let parts = compat.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, parts[0] == info.name else {
            return "kiln.cpu \(info.version) loads payloads of compatibility 'kiln.cpu/1/<target>', not '\(compat)'"
        }
        guard parts[1] == "1" else {
            return "kiln.cpu \(info.version) reads payload format 1; this payload has format \(parts[1]) (compat '\(compat)'): use a matching Kiln version"
        }
        guard let target = CPUTarget(rawValue: parts[2]) else {
            return "kiln.cpu \(info.version) does not know target '\(parts[2])' (known: \(CPUTarget.allCases.map(\.rawValue).joined(separator: ", ")))"
        }
        if let missing = target.missing(on: CPUFeatures.host) {
            return "this payload was compiled for \(target.rawValue), which needs \(missing); this CPU has: \(CPUFeatures.host). Compile for 'generic' or for this machine's target (\(CPUTarget.host.rawValue))"
        }
        return nil
    }

    /// Loads a payload from `compile`: checks its target against this CPU, then prepares `graph`.
    public func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        let text = String(decoding: payload, as: UTF8.self)
        guard text.hasPrefix("target="), let line = text.split(separator: "\n").first else {
            throw KilnError(.invalidArtifact, "kiln.cpu payload is not a target description (\(payload.count) bytes)")
        }
        let name = String(line.dropFirst("target=".count))
        if let reason = check(compat: "kiln.cpu/1/\(name)") { throw KilnError(.unsupported, reason) }
        return try prepare(graph)
    }

    /// The name of the kernel family in use on this machine (`avx512`, `avx2`, `neon`, `generic`).
    public static var kernelISA: String { String(cString: kiln_kernels_isa()) }
}
