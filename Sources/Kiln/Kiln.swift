#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_exported import KilnBackend
@_exported import KilnCompiler
@_exported import KilnFormat
@_exported import KilnPluginHost
@_exported import KilnIR
@_exported import KilnRuntime
import KilnFrontends

/// The Kiln SDK's entry points: import or compile a model, load a model or an artifact, run it.
public enum Kiln {
    /// Kiln's version (also the producer version written into artifacts).
    public static let version = Compiler.version

    /// Imports the ONNX model at `path` into Kiln IR.
    public static func importONNX(path: String) throws -> Model {
        try ONNXImporter().importModel(path: path)
    }

    /// Imports the model at `path` into Kiln IR, in whichever format its contents are: ONNX, an XGBoost model
    /// (JSON or UBJSON) or a LightGBM text model (see `ModelFile`).
    public static func importModel(path: String) throws -> Model {
        try ModelFile.importModel(path: path).model
    }

    /// The backend called `name` in `Kiln.backends`, or an `.invalidArgument` error listing the known ones.
    public static func backend(named name: String) throws -> any Backend {
        try backends.require(name)
    }

    /// How a model is loaded: on which backends, and with which backend options.
    public struct LoadOptions: Sendable {
        /// The target whose backends run a model (`host`: this machine's best backends, with the reference
        /// backend only for what they cannot run). Ignored for artifacts, whose backends were chosen at compile time.
        public var target: String
        /// Run the whole model on this one backend, with no fallback (`kiln.reference` as the oracle). For an
        /// artifact, the backend it must have been compiled for.
        public var backend: String?
        /// The backends that claim a model's nodes, highest priority first (empty: the target's); the rest
        /// falls back to the host's backends as `partition` says.
        public var backends: [String]
        /// Minimum group size, deny list and fallback policy when a model is split among backends.
        public var partition: PartitionOptions
        /// Backend options (`threads`) and a profiler, given to the backends that take them.
        public var configuration: BackendConfiguration
        /// The keys an artifact must be signed by (none by default: nothing is required). With trusted keys,
        /// only a `.kiln` artifact with a valid signature by one of them loads, checked before any of its
        /// payloads reaches a backend; an ONNX model, which cannot be signed, is refused.
        public var trust: ArtifactTrust

        /// Options; by default the host target's backends with their default options.
        public init(target: String = BackendRegistry.hostTarget, backend: String? = nil, backends: [String] = [],
                    partition: PartitionOptions = PartitionOptions(), configuration: BackendConfiguration = BackendConfiguration(),
                    trust: ArtifactTrust = ArtifactTrust()) {
            self.target = target
            self.backend = backend
            self.backends = backends
            self.partition = partition
            self.configuration = configuration
            self.trust = trust
        }
    }

    /// Loads the model at `path` and prepares it to run.
    ///
    /// A `.kiln` artifact (recognized by its magic bytes, whatever the file is called) is read into memory
    /// (later changes to the file cannot affect the session), its partitions loaded on the backends they
    /// were compiled for. Anything else is imported (ONNX, XGBoost JSON/UBJSON or
    /// LightGBM text, by its contents) and split among the target's backends (`host` by default: `kiln.cpu`, with `kiln.reference` for
    /// what it cannot run), or prepared whole on `options.backend`.
    public static func load(path: String, options: LoadOptions = LoadOptions(), registry: BackendRegistry = backends) throws -> Session {
        if try isArtifact(path: path) {
            let session = try Session(artifactPath: path, backends: registry.configured(options.configuration), trust: options.trust)
            try check(session, runsOn: options.backend, origin: path)
            return session
        }
        try refuseUnsigned(options, origin: path)
        return try prepare(importModel(path: path), options: options, registry: registry)
    }

    /// Prepares `model` as `options` say, over `registry`'s backends: split among the target's backends (or
    /// `options.backends`), or whole on `options.backend`.
    public static func prepare(_ model: Model, options: LoadOptions = LoadOptions(), registry: BackendRegistry = backends) throws -> Session {
        let registry = try registry.configured(options.configuration)
        if let name = options.backend {
            guard options.backends.isEmpty else {
                throw KilnError(.invalidArgument, "a backend for the whole model and backends to partition it among cannot both be given")
            }
            return try Session(model: model, backend: registry.require(name))
        }
        return try Session(model: model, partitioner: Partitioner(target: options.target, backends: options.backends,
                                                                  registry: registry, options: options.partition))
    }

    /// Loads the model at `path` on `backend` alone (nil: the host target's backends); see `load(path:options:)`.
    public static func load(path: String, backend: String?) throws -> Session {
        try load(path: path, options: LoadOptions(backend: backend))
    }

    /// Loads a `.kiln` artifact held in memory (see `load(path:options:registry:)`).
    public static func load(artifactBytes bytes: [UInt8], options: LoadOptions = LoadOptions(), registry: BackendRegistry = backends) throws -> Session {
        let session = try Session(artifactBytes: bytes, backends: registry.configured(options.configuration), trust: options.trust)
        try check(session, runsOn: options.backend, origin: "<memory>")
        return session
    }

    /// Loads a `.kiln` artifact held in memory, refusing it unless it was compiled for `backend` (when given).
    public static func load(artifactBytes bytes: [UInt8], backend: String?) throws -> Session {
        try load(artifactBytes: bytes, options: LoadOptions(backend: backend))
    }

    /// Whether the file at `path` starts with the `.kiln` magic bytes.
    public static func isArtifact(path: String) throws -> Bool {
        let (fd, _) = try RegularFile.open(path)
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: ArtifactFormat.magic.count)
        var done = 0
        while done < head.count {
            let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        return done == head.count && head == ArtifactFormat.magic
    }

    /// A compiler over `registry` (by default `Kiln.backends`: the built-in backends and registered plugins),
    /// folding constants with the reference interpreter.
    public static func compiler(options: Compiler.Options = Compiler.Options(), registry: BackendRegistry = backends,
                                progress: (@Sendable (Compiler.Progress) -> Void)? = nil,
                                irPrinter: (@Sendable (String, String) -> Void)? = nil) -> Compiler {
        Compiler(options: options, backends: registry, evaluator: constantEvaluator, progress: progress, irPrinter: irPrinter)
    }

    /// Compiles the ONNX model at `path` into `.kiln` artifact bytes.
    public static func compile(onnxPath path: String, options: Compiler.Options = Compiler.Options()) throws -> Compiler.Output {
        try compiler(options: options).compile(onnxPath: path)
    }

    /// Refuses to load a model (not an artifact) when `options` require a signature: a model cannot carry one.
    package static func refuseUnsigned(_ options: LoadOptions, origin: String) throws {
        guard options.trust.requiresSignature else { return }
        let keys = options.trust.trustedKeys.map(\.keyIDText).joined(separator: ", ")
        throw KilnError(.invalidArtifact, "\(origin) is not a .kiln artifact, so it cannot be signed, and a signature by a trusted key (\(keys)) is required")
    }

    /// Refuses a backend request an artifact cannot honour: its partitions chose their backends at compile time.
    static func check(_ session: Session, runsOn backend: String?, origin: String) throws {
        guard let backend, backend != session.backend.info.name else { return }
        throw KilnError(.invalidArgument, "\(origin) was compiled for backend \(session.backend.info.name); to run it on \(backend), compile the model again with --backends \(backend)")
    }
}
