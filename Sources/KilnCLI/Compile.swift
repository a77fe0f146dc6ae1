import ArgumentParser
import Kiln
import KilnTooling

#if canImport(Glibc)
import Glibc
#endif

/// `kiln compile MODEL -o OUT.kiln`: imports, optimizes, partitions and compiles a model into a `.kiln`
/// artifact, reporting progress on standard error and a summary on standard output.
struct Compile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile a model into a .kiln artifact.",
        discussion: """
            Progress goes to standard error while it works: on a terminal, one progress bar redrawn in place \
            (phase n of 6: import, optimize with its pass count, partition, compile, write, file); otherwise, \
            one plain line per phase ([elapsed] phase: detail). A summary (nodes \
            before/after, model vs artifact bytes, partitions, time per phase and per pass) goes to standard output. \
            By default the artifact is for this machine (--target host): its best backends (kiln.cpu) claim \
            the nodes, and kiln.reference runs only what they cannot; one line says how many nodes fell back \
            and why. --target names another target (`kiln targets`), --backends chooses the backends that \
            claim nodes in priority order, and --backend compiles the whole model for one backend with no \
            fallback. The partition report says where each node went and why, and \
            `kiln inspect --partitions` shows it again from the artifact. \
            --input-shape NAME=D,D,… fixes an input's symbolic dims (the artifact then takes only that shape), \
            which lets shape-specializing targets such as --target opencl run the whole model. \
            --quantize int8 --calibration DIR quantizes Conv, Gemm and MatMul to int8 (QDQ form) after \
            optimization, with activation ranges measured on the samples in DIR (Documentation/Quantization.md). \
            The artifact is written atomically: to a temporary file beside OUT, then renamed over it, so a \
            compile that fails leaves an existing OUT untouched and never leaves a partial file.
            """
    )

    @Argument(help: "The model file: ONNX, XGBoost JSON/UBJSON or LightGBM text (recognized by its contents).")
    var model: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The artifact to write.", valueName: "out.kiln"))
    var output: String

    @Option(help: "Optimization level 0–3: 0 none; 1 simplify and dead-code elimination; 2 and 3 add constant folding, BatchNormalization folding and common-subexpression elimination.")
    var optLevel = 2

    @OptionGroup(title: "Backends")
    var selection: BackendFlags

    @OptionGroup(title: "Plugins")
    var plugins: PluginOption

    @OptionGroup(title: "Quantization")
    var quantization: QuantizationFlags

    @Option(help: ArgumentHelp("Print the IR after this pass (repeatable).", valueName: "pass"))
    var printIRAfter: [String] = []

    @Option(help: ArgumentHelp("Store KEY=VALUE in the artifact's metadata (repeatable).", valueName: "key=value"))
    var metadata: [String] = []

    @Option(help: ArgumentHelp("Fix an input's shape (repeatable): its symbolic and unknown dims become these sizes, the same symbols elsewhere follow, and the artifact accepts exactly this shape. For targets that specialize kernels for shapes (opencl, accelerators).", valueName: "name=d,d,…"))
    var inputShape: [String] = []

    @Option(help: ArgumentHelp("Section compression: auto (zstd only when it saves at least 10%), zstd, or none.", valueName: "auto|zstd|none"))
    var compression = "auto"

    func run() throws {
        try diagnosing {
            try plugins.register()
            defer { flushOutput() }
            var values: [String: String] = [:]
            for entry in metadata {
                guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                    throw KilnError(.invalidArgument, "--metadata '\(entry)': expected KEY=VALUE")
                }
                let key = String(entry[..<equals])
                guard values[key] == nil else { throw KilnError(.invalidArgument, "--metadata key '\(key)' is given twice") }
                values[key] = String(entry[entry.index(after: equals)...])
            }
            guard let codec = Compiler.Compression(rawValue: compression) else {
                throw KilnError(.invalidArgument, "--compression \(compression): expected auto, zstd or none")
            }
            var options = Compiler.Options(optLevel: optLevel, printIRAfter: Set(printIRAfter), metadata: values, compression: codec)
            try selection.apply(to: &options)
            options.quantization = try quantization.options()
            for entry in inputShape {
                let (name, dims) = try InputShapes.parse(entry)
                guard options.inputShapes[name] == nil else { throw KilnError(.invalidArgument, "--input-shape '\(name)' is given twice") }
                options.inputShapes[name] = dims
            }
            let reporter = CompileProgress(bar: CompileProgress.standardErrorIsTerminal)
            defer { reporter.clear() }
            let compiler = Kiln.compiler(
                options: options, registry: try Kiln.backends.configured(selection.configuration()),
                progress: { p in reporter.begin(p.phase.description, detail: p.detail, elapsed: p.elapsed) },
                irPrinter: { pass, text in
                    print("== IR after \(pass)")
                    print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
                    flushOutput()
                })
            let result = try compiler.compile(onnxPath: model)
            reporter.begin("file", detail: output, elapsed: result.summary.total)
            reporter.clear()
            for warning in result.summary.warnings { printError("warning: \(warning)") }
            printError(result.summary.report.fallbackSummary)
            printError(result.summary.report.partitionSummary)
            let clock = ContinuousClock()
            let writeStart = clock.now
            try FileSystem.writeAtomically(result.bytes, to: output)
            let writeTime = clock.now - writeStart
            printError("[\(seconds(result.summary.total + writeTime))] done: wrote \(output)")
            print(summaryText(result.summary, fileWrite: writeTime), terminator: "")
        }
    }

    /// The summary printed after a successful compile.
    func summaryText(_ s: Compiler.Summary, fileWrite: Duration) -> String {
        let format = ModelSummary(Model(graph: Graph()))
        var lines = ["compiled \(model) -> \(output)"]
        lines.append("nodes: \(s.nodesBefore) -> \(s.nodesAfter)")
        let ratio = s.sourceBytes > 0 ? " (\(OutputSummary.number(Double(s.artifactBytes) / Double(s.sourceBytes) * 100, digits: 3))% of the model)" : ""
        if let q = s.quantization { lines.append(q.summary) }
        lines.append("bytes: model \(format.byteText(s.sourceBytes)), artifact \(format.byteText(s.artifactBytes))\(ratio)")
        for p in s.partitions {
            lines.append("partition: \(p.nodes) nodes on \(p.backend) \(p.version) (compat \(p.compat), payload \(p.payloadBytes) bytes)")
        }
        if s.partitions.count > 1 || s.report.entries.contains(where: \.isFallback) {
            lines += PartitionReportText.lines(s.report, full: false)
        }
        lines.append("time per phase:")
        for (phase, duration) in s.phases { lines.append("  \(pad(phase.rawValue, 10)) \(milliseconds(duration))") }
        lines.append("  \(pad("file", 10)) \(milliseconds(fileWrite))")
        lines.append("  \(pad("total", 10)) \(milliseconds(s.total + fileWrite))")
        if !s.passes.records.isEmpty {
            lines.append("time per pass (all rounds):")
            var order: [String] = []
            for r in s.passes.records where !order.contains(r.name) { order.append(r.name) }
            let times = s.passes.timeByPass
            for name in order {
                let runs = s.passes.records.filter { $0.name == name }
                let changed = runs.filter(\.changed).count
                lines.append("  \(pad(name, 24)) \(milliseconds(times[name] ?? .zero))  (\(runs.count) run\(runs.count == 1 ? "" : "s"), \(changed) changed the graph)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
}

/// How `kiln compile` reports its phases on standard error: a progress bar redrawn in place on a terminal,
/// one plain line per phase (`[0.012 s] optimize: 5 passes at opt level 2`) otherwise.
final class CompileProgress: @unchecked Sendable {
    /// The phases in order: the compiler's, then writing the file.
    static let phases = Compiler.Phase.allCases.map(\.description) + ["file"]
    /// Characters of the bar.
    static let width = 24
    /// Whether to draw a bar (standard error is a terminal) rather than lines.
    let bar: Bool
    private var drawn = false

    /// A reporter drawing a bar when `bar`, else printing lines.
    init(bar: Bool) { self.bar = bar }

    /// Whether standard error is a terminal that can redraw a line (not TERM=dumb).
    static var standardErrorIsTerminal: Bool {
        guard isatty(2) == 1 else { return false }
        if let term = getenv("TERM"), String(cString: term) == "dumb" { return false }
        return true
    }

    /// Phase `phase` begins, `elapsed` after the compile started.
    func begin(_ phase: String, detail: String, elapsed: Duration) {
        guard bar else {
            printError("[\(seconds(elapsed))] \(phase): \(detail)")
            return
        }
        let total = Self.phases.count
        let index = (Self.phases.firstIndex(of: phase) ?? 0) + 1
        let filled = Self.width * (index - 1) / total
        let shown = detail.count > 48 ? String(detail.prefix(47)) + "…" : detail
        let line = "\r\u{1B}[2K[" + String(repeating: "#", count: filled) + String(repeating: "-", count: Self.width - filled)
            + "] \(index)/\(total) \(phase): \(shown)  \(seconds(elapsed))"
        var standardError = StandardError()
        standardError.write(line)
        drawn = true
    }

    /// Erases the bar (when one is drawn), so that what follows starts on a clean line.
    func clear() {
        guard bar, drawn else { return }
        var standardError = StandardError()
        standardError.write("\r\u{1B}[2K")
        drawn = false
    }
}

/// `1.234 s`.
func seconds(_ duration: Duration) -> String {
    let (s, atto) = duration.components
    return OutputSummary.number(Double(s) + Double(atto) / 1e18, digits: 3) + " s"
}

/// `12.3 ms`.
func milliseconds(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    return OutputSummary.number(Double(seconds) * 1e3 + Double(attoseconds) / 1e15, digits: 4) + " ms"
}
