import KilnBackend
import KilnFormat
import KilnFrontends
import KilnIR
import KilnPasses
import SwiftProtobuf

/// The compiler driver: import → optimize (KilnPasses) → partition → compile (backend payloads) →
/// write the `.kiln` artifact (KilnFormat).
///
/// ```swift
/// let output = try Compiler(options: .init(optLevel: 2)).compile(onnxPath: "model.onnx")
/// // output.bytes is the artifact; output.summary says what happened and how long each phase took
/// ```
/// Partitioning is the host's (`Partitioner`): the backends the registry selects for `Options.target`
/// (`host`, this machine, by default) — or those named in `Options.backends`, in priority order — claim
/// nodes, the rest falls back to the host's backends and then the reference backend under
/// `Options.fallback`, and each partition's subgraph is compiled by its backend. The manifest records every partition and the
/// partition report (node → backend, reason).
public struct Compiler: Sendable {
    /// The producer version recorded in every artifact's manifest.
    public static let version = "0.1.0"

    /// What to compile for and how.
    public struct Options: Sendable {
        /// The target (`host`: this machine; `kiln targets` lists the others).
        public var target: String
        /// Optimization level 0–3 (see `Compiler.pipeline(optLevel:)`).
        public var optLevel: Int
        /// The backends that may claim nodes, highest priority first; empty means the target's backends.
        public var backends: [String]
        /// What happens to nodes no selected backend takes.
        public var fallback: FallbackPolicy
        /// Groups of a selected backend with fewer nodes than this run on the fallback instead (nil: each
        /// backend's own `Backend.minimumGroupSize`).
        public var minGroupSize: Int?
        /// Ops never given to the selected backends (`Softmax`, `com.microsoft.Gelu`).
        public var deny: [String]
        /// Names of passes after which the IR is printed (through `Compiler.irPrinter`).
        public var printIRAfter: Set<String>
        /// Free-form metadata stored in the manifest.
        public var metadata: [String: String]
        /// Constant folding leaves outputs larger than this many bytes unfolded.
        public var maxFoldedBytes: Int
        /// How the artifact's sections are stored.
        public var compression: Compression
        /// Post-training int8 quantization after the pass pipeline (nil: none); see `QuantizationOptions`.
        public var quantization: QuantizationOptions?
        /// Input shapes fixed before optimizing (input name → dims); see `InputShapes`. Empty: as the model says.
        public var inputShapes: [String: [Int]] = [:]

        /// How the partitioner applies these options.
        public var partitionOptions: PartitionOptions {
            PartitionOptions(minGroupSize: minGroupSize, deny: deny, fallback: fallback)
        }

        /// Options; by default the host target's backends, level 2, fallback policy warn, no IR dumps, no metadata.
        public init(target: String = BackendRegistry.hostTarget, optLevel: Int = 2,
                    printIRAfter: Set<String> = [], metadata: [String: String] = [:], maxFoldedBytes: Int = 1 << 20,
                    compression: Compression = .auto, backends: [String] = [], fallback: FallbackPolicy = .warn,
                    minGroupSize: Int? = nil, deny: [String] = [], quantization: QuantizationOptions? = nil) {
            self.target = target
            self.optLevel = optLevel
            self.backends = backends
            self.fallback = fallback
            self.minGroupSize = minGroupSize
            self.deny = deny
            self.printIRAfter = printIRAfter
            self.metadata = metadata
            self.maxFoldedBytes = maxFoldedBytes
            self.compression = compression
            self.quantization = quantization
        }
    }

    /// How an artifact's sections are stored.
    public enum Compression: String, Sendable, CaseIterable {
        /// zstd when it makes the artifact at least `Compiler.minimumSavings` smaller, else uncompressed:
        /// float weights shrink only ~7% but take ~3× longer to load compressed than memory-mapped in place.
        case auto
        /// zstd for every section zstd makes smaller.
        case zstd
        /// Every section stored as is (weights are used in place from the memory-mapped file).
        case none
    }

    /// The fraction of the uncompressed size that zstd must save for `Compression.auto` to use it.
    public static let minimumSavings = 0.10

    /// A phase of compilation.
    public enum Phase: String, Sendable, CaseIterable, CustomStringConvertible {
        /// Reading the source model into Kiln IR.
        case `import`
        /// Running the pass pipeline.
        case optimize
        /// Assigning nodes to backends.
        case partition
        /// Compiling each partition into a payload.
        case compile
        /// Encoding the artifact.
        case write

        /// The phase's name.
        public var description: String { rawValue }
    }

    /// A progress report: a phase begins, at `elapsed` since the compile started.
    public struct Progress: Sendable {
        /// The phase that begins.
        public var phase: Phase
        /// Time since the compile started.
        public var elapsed: Duration
        /// What the phase works on (`resnet18.onnx`, `5 passes at opt level 2`).
        public var detail: String
    }

    /// What a compile did.
    public struct Summary: Sendable {
        /// Nodes (main graph and subgraphs) after import.
        public var nodesBefore = 0
        /// Nodes (main graph and subgraphs) after optimization.
        public var nodesAfter = 0
        /// Size of the source model file in bytes (0 when compiled from memory).
        public var sourceBytes = 0
        /// Size of the artifact in bytes.
        public var artifactBytes = 0
        /// Wall time of each phase, in order.
        public var phases: [(phase: Phase, duration: Duration)] = []
        /// What the pass pipeline did, pass by pass.
        public var passes = PassReport()
        /// Each partition: backend, version, compatibility string, node count, payload bytes.
        public var partitions: [(backend: String, version: String, compat: String, nodes: Int, payloadBytes: Int)] = []
        /// What post-training quantization did (nil when the compile did not quantize).
        public var quantization: QuantizationReport?
        /// Where every node went and why, with the partitioner's warnings.
        public var report = PartitionReport()
        /// Warnings raised while compiling (fallbacks under `FallbackPolicy.warn`).
        public var warnings: [String] { report.warnings }

        /// Total wall time.
        public var total: Duration { phases.reduce(.zero) { $0 + $1.duration } }
    }

    /// The result of a compile.
    public struct Output: Sendable {
        /// The artifact's bytes.
        public var bytes: [UInt8]
        /// What the compile did.
        public var summary: Summary
    }

    /// How to compile.
    public var options: Options
    /// The backends partitions may use.
    public var backends: BackendRegistry
    /// Called when each phase begins.
    public var progress: (@Sendable (Progress) -> Void)?
    /// Receives `(pass name, IR text)` after each pass named in `Options.printIRAfter`.
    public var irPrinter: (@Sendable (String, String) -> Void)?

    /// Evaluates one node on constant inputs, for constant folding (nil: only folds that need no kernel).
    public var evaluator: NodeEvaluator?

    /// A compiler with `options` over `backends`, folding constants with `evaluator` (the Kiln facade passes
    /// the reference interpreter: the compiler itself depends on no backend).
    public init(options: Options = Options(), backends: BackendRegistry, evaluator: NodeEvaluator? = nil,
                progress: (@Sendable (Progress) -> Void)? = nil, irPrinter: (@Sendable (String, String) -> Void)? = nil) {
        self.options = options
        self.backends = backends
        self.evaluator = evaluator
        self.progress = progress
        self.irPrinter = irPrinter
    }

    /// Compiles the model at `path` into artifact bytes: ONNX, or a tree ensemble saved by XGBoost (JSON or
    /// UBJSON) or LightGBM (text), recognized by the file's contents (`ModelFile`).
    public func compile(onnxPath path: String) throws -> Output {
        try checkOptions()
        let clock = ContinuousClock()
        let start = clock.now
        progress?(Progress(phase: .import, elapsed: .zero, detail: path))
        // The format is recognized by the file's contents: ONNX, XGBoost JSON/UBJSON or LightGBM text.
        let (model, format) = try ModelFile.importModel(path: path)
        let source = try SourceInfo.file(path, format: format.rawValue)
        let importTime = clock.now - start
        var output = try compile(model: model, source: source, startedAt: start, phases: [(.import, importTime)])
        output.summary.sourceBytes = source.byteCount
        return output
    }

    /// Compiles `model` (already in Kiln IR) into artifact bytes; `source` describes where it came from.
    public func compile(model: Model, source: SourceInfo = SourceInfo(format: "kiln-ir")) throws -> Output {
        try checkOptions()
        return try compile(model: model, source: source, startedAt: ContinuousClock().now, phases: [])
    }

    /// The pass names `Options.printIRAfter` may use at `optLevel`.
    public static func passNames(optLevel: Int) -> [String] {
        pipeline(optLevel: optLevel).map(\.name)
    }

    /// The passes the compiler runs at `optLevel`: level 0 none; from level 1, shape and type inference
    /// first (so that later passes and the artifact know every value's type), then
    /// `PassManager.pipeline(level:)`.
    public static func pipeline(optLevel: Int) -> [any Pass] {
        let passes = PassManager.pipeline(level: optLevel)
        guard optLevel >= 1, !passes.contains(where: { $0 is ShapeInference }) else { return passes }
        return [ShapeInference()] + passes
    }

    private func checkOptions() throws {
        guard (0...3).contains(options.optLevel) else {
            throw KilnError(.invalidArgument, "optimization level \(options.optLevel) is not between 0 and 3")
        }
        _ = try partitioner()
        if let quantization = options.quantization, quantization.samples.isEmpty {
            throw KilnError(.invalidArgument, "quantization needs at least one calibration sample")
        }
        let names = Self.passNames(optLevel: options.optLevel)
        for pass in options.printIRAfter.sorted() where !names.contains(pass) {
            throw KilnError(.invalidArgument, "--print-ir-after \(pass): no such pass at opt level \(options.optLevel) (passes: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
        }
    }

    private func compile(model imported: Model, source: SourceInfo, startedAt start: ContinuousClock.Instant,
                         phases: [(phase: Phase, duration: Duration)]) throws -> Output {
        let clock = ContinuousClock()
        var summary = Summary()
        summary.phases = phases
        var model = imported
        summary.nodesBefore = model.graph.allNodes.count
        // Always verified, in release builds too: passes assume a valid graph (a cycle, a dangling input,
        // two producers of one value or an undefined output would otherwise reach the artifact).
        try Verifier.verify(model.graph)
        try InputShapes.apply(options.inputShapes, to: &model.graph)

        func begin(_ phase: Phase, _ detail: String) -> ContinuousClock.Instant {
            let now = clock.now
            progress?(Progress(phase: phase, elapsed: now - start, detail: detail))
            return now
        }

        // Optimize.
        var phaseStart = begin(.optimize, "\(Self.passNames(optLevel: options.optLevel).count) passes at opt level \(options.optLevel)")
        let passes = PassManager(passes: Self.pipeline(optLevel: options.optLevel), verifyAfterEachPass: Self.verifiesAfterEachPass,
                                 printIRAfter: options.printIRAfter, printer: irPrinter)
        let context = PassContext(evaluator: evaluator, maxFoldedBytes: options.maxFoldedBytes)
        summary.passes = try passes.run(&model, context: context)
        if let quantization = options.quantization {
            // After the pipeline: constant folding would fold the weights' DequantizeLinear back to float.
            summary.quantization = try Self.quantize(&model, options: quantization, registry: backends)
            if options.optLevel >= 1 { _ = try ShapeInference().run(&model.graph, context: context) }
        }
        summary.nodesAfter = model.graph.allNodes.count
        summary.phases.append((.optimize, clock.now - phaseStart))

        // Partition.
        let partitioner = try partitioner()
        phaseStart = begin(.partition, "target \(options.target): " + partitioner.selected.map(\.info.name).joined(separator: ", "))
        // Each partition is compiled as soon as the plan is made: a backend that refuses nodes it claimed
        // (`CompileRefusal`) has them rejected and the graph is partitioned again (`Partitioner.plan`).
        var compileTime = Duration.zero
        let (plan, payloads) = try partitioner.plan(model) { i, partition, subgraph -> Payload in
            let compileStart = clock.now
            defer { compileTime += clock.now - compileStart }
            let target = backends.compileTarget(for: partition.backend.info.name, in: options.target)
            do {
                return try partition.backend.compile(subgraph, options: CompileOptions(target: target, optLevel: options.optLevel))
            } catch let error as KilnError where error.code != .unsupported && partition.nodes.count != model.graph.nodes.count {
                throw KilnError(error.code, "partition \(i) (\(partition.backend.info.name), \(partition.nodes.count) nodes): \(error.message)")
            }
        }
        var report = Kiln_Artifact_PartitionReport()
        report.entries = plan.report.entries.map { e in
            var entry = Kiln_Artifact_PartitionReport.Entry()
            entry.node = UInt32(e.node)
            entry.backend = e.backend
            entry.reason = e.reason
            return entry
        }
        summary.report = plan.report
        summary.phases.append((.partition, clock.now - phaseStart - compileTime))

        // Compile (done above, with the partitioning; reported as its own phase).
        _ = begin(.compile, plan.partitions.map { "\($0.backend.info.name) \($0.backend.info.version)" }.joined(separator: ", "))
        summary.phases.append((.compile, compileTime))

        // Write.
        let payloadBytes = payloads.reduce(0) { $0 + $1.bytes.count }
        phaseStart = begin(.write, "manifest, weights, \(payloadBytes == 0 ? "no payload" : "\(payloads.count(where: { !$0.bytes.isEmpty })) payload(s) of \(payloadBytes) bytes")")
        var manifest = Kiln_Artifact_Manifest()
        manifest.producer.name = "kiln"
        manifest.producer.version = Self.version
        manifest.source.format = source.format
        if !source.sha256.isEmpty, source.sha256.count < 128 {
            // `bytes` fields are Foundation `Data`; merging the encoded field (number 2, length-delimited)
            // sets it without bringing Foundation into the compiler.
            try manifest.source.merge(serializedBytes: [0x12, UInt8(source.sha256.count)] + source.sha256)
        }
        manifest.source.fileName = source.fileName
        var target = Kiln_Artifact_Target()
        target.name = options.target
        manifest.targets = [target]
        let signature = IRProto.message(from: Graph(name: "signature", inputs: model.graph.inputs, outputs: model.graph.outputs))
        manifest.inputs = signature.inputs
        manifest.outputs = signature.outputs
        manifest.partitionReport = report
        manifest.userMetadata = options.metadata
        manifest.optLevel = UInt32(options.optLevel)
        // Verified again just before writing: no artifact is ever written from an invalid graph.
        try Verifier.verify(model.graph)
        var writer = ArtifactWriter(model: model, manifest: manifest)
        writer.manifest.partitions = zip(plan.partitions, payloads).map { planned, payload in
            var partition = Kiln_Artifact_Partition()
            partition.backend = planned.backend.info.name
            partition.backendVersion = planned.backend.info.version
            partition.compat = payload.compat
            partition.nodes = planned.nodes.map { UInt32($0) }
            partition.inputs = planned.inputs
            partition.outputs = planned.outputs
            if !payload.bytes.isEmpty { partition.payloadSection = writer.addPayload(payload.bytes) }
            return partition
        }
        let bytes: [UInt8]
        switch options.compression {
        case .zstd:
            bytes = try writer.serialize()
        case .none:
            writer.codec = .none
            bytes = try writer.serialize()
        case .auto:
            writer.codec = .none
            let plain = try writer.serialize()
            writer.codec = .zstd
            let packed = try writer.serialize()
            bytes = Double(packed.count) <= Double(plain.count) * (1 - Self.minimumSavings) ? packed : plain
        }
        summary.phases.append((.write, clock.now - phaseStart))
        summary.artifactBytes = bytes.count
        summary.partitions = zip(plan.partitions, payloads).map { planned, payload in
            (planned.backend.info.name, planned.backend.info.version, payload.compat, planned.nodes.count, payload.bytes.count)
        }
        return Output(bytes: bytes, summary: summary)
    }

    /// The partitioner for `options`: the target's backends (or `options.backends`) over `backends`.
    private func partitioner() throws -> Partitioner {
        try Partitioner(target: options.target, backends: options.backends, registry: backends, options: options.partitionOptions)
    }

    /// Debug builds verify the IR after every pass; release builds do not.
    static var verifiesAfterEachPass: Bool {
        var debug = false
        assert({ debug = true; return true }())
        return debug
    }
}
