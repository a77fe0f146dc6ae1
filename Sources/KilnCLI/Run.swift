import ArgumentParser
import Kiln
import KilnTooling

#if canImport(Glibc)
import Glibc
#endif

/// `kiln run MODEL --input NAME=FILE.npy …`: runs a model once on NumPy inputs, prints a summary of
/// each output and optionally writes the outputs as `.npy` files; `--profile` adds kiln.cpu's per-step
/// times of the run and `--trace FILE` writes them as Chrome-trace JSON.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on .npy inputs.",
        discussion: """
            Each output is printed with its element type, shape, min/max/mean and first values. With \
            --output-dir, each tensor output is written to DIR/NAME.npy, where NAME is the output's name \
            with every character other than A-Z a-z 0-9 . _ - replaced by '_'. Exits with status 1 when \
            the model or an input is wrong.

            With --profile, the time of each operation kind and of each step (a fused operation, with the \
            nodes it comes from) of the run follows the outputs; --trace FILE also writes every step as \
            Chrome-trace JSON (chrome://tracing, Perfetto). Profiles come from kiln.cpu, which runs models \
            by default, and from plugin backends that report their device's cycles (plugin ABI 1.4): per \
            program, the cycles of each unit and of each layer. Partitions on other backends are not timed; \
            when no partition is, --profile is an error. --html FILE writes the profile as one self-contained HTML page (a timeline \
            of the steps and a bar chart of the operation kinds, drawn by an inline script; no network).

            A model (.onnx) runs on the target's backends (default host: kiln.cpu, with kiln.reference only \
            for what it cannot run), or whole on --backend; an artifact runs on the backends it was compiled for.
            """
    )

    @Argument(help: "The model file (ONNX, XGBoost JSON/UBJSON, LightGBM text) or artifact (.kiln); recognized by its contents.")
    var model: String

    @Option(name: .customLong("input"), help: ArgumentHelp("An input: the input's name and a .npy file (repeatable).", valueName: "name=file.npy"))
    var inputs: [String] = []

    @Option(help: ArgumentHelp("Write each output to DIR/NAME.npy (the folder is created if missing).", valueName: "dir"))
    var outputDir: String?

    @Flag(help: "Make random inputs for every required input not given with --input (symbolic dims are 1).")
    var random = false

    @Option(help: "The seed of --random.")
    var seed: UInt64 = 0

    @Flag(help: "Print the time of each operation kind and step of the run (kiln.cpu only).")
    var profile = false

    @Option(help: ArgumentHelp("Stop the run with an error once it has taken SECONDS (checked between steps).", valueName: "seconds"))
    var timeout: Double?

    @Option(help: ArgumentHelp("Write the run's steps as Chrome-trace JSON to FILE (kiln.cpu only; implies --profile).", valueName: "file"))
    var trace: String?

    @Option(help: ArgumentHelp("Write the profile as a self-contained HTML page to FILE: a timeline of the steps and a bar per operation kind (kiln.cpu only; implies --profile).", valueName: "file"))
    var html: String?

    @OptionGroup(title: "Backends (for a model; an artifact's were chosen when it was compiled)")
    var selection: BackendFlags

    @OptionGroup(title: "Plugins")
    var plugins: PluginOption

    @OptionGroup(title: "Trust")
    var trust: TrustOption

    func run() throws {
        try diagnosing {
            try plugins.register()
            // Whatever was printed appears before an error message (which goes unbuffered to standard error).
            defer { flushOutput() }
            let clock = ContinuousClock()
            let loadStart = clock.now
            let recorder = profile || trace != nil || html != nil ? CPUProfile() : nil
            let session = try loadSession(profile: recorder)
            let untimed = try recorder.map { try untimedPartitions(of: session, profile: $0) } ?? []
            let loadTime = clock.now - loadStart
            var feeds = try readInputs(session)
            if random {
                var generator = SplitMix64(seed: seed)
                for input in session.requiredInputs where feeds[input.name] == nil {
                    let tensor = try RandomInput.make(for: input, using: &generator)
                    print("random input \(input.name): \(tensor.dtype)\(OutputSummary.shapeText(tensor.shape))")
                    feeds[input.name] = .tensor(tensor)
                }
            }
            for input in session.requiredInputs where feeds[input.name] == nil {
                throw KilnError(.invalidArgument, "input '\(input.name)' is missing; expected \(input.type.map { "\($0)" } ?? "a value") (give it with --input \(input.name)=FILE.npy, or use --random)")
            }
            let runStart = clock.now
            var runOptions = RunOptions()
            if let timeout {
                guard timeout.isFinite, timeout > 0, timeout <= 1e9 else {
                    throw KilnError(.invalidArgument, "--timeout \(timeout): expected a positive number of seconds")
                }
                runOptions.timeout = .nanoseconds(Int64(timeout * 1e9))
            }
            let results = try session.runOrdered(feeds, options: runOptions)
            let runTime = clock.now - runStart
            for warning in session.warnings { printError("warning: \(warning)") }

            if let outputDir {
                // An empty folder would make every output '/NAME.npy', at the root of the file system.
                guard !outputDir.isEmpty else { throw KilnError(.invalidArgument, "--output-dir is empty: give a folder") }
                try FileSystem.makeDirectories(outputDir)
            }
            var usedFileNames = Set<String>()
            for (output, value) in zip(session.outputs, results) {
                print(OutputSummary.describe(name: output.name, value))
                guard let outputDir else { continue }
                guard let tensor = OutputSummary.writableTensor(value) else {
                    print("  (not written: a \(value.summary) value cannot be stored in a .npy file)")
                    continue
                }
                var file = OutputSummary.fileName(for: output.name)
                var suffix = 1
                while usedFileNames.contains(file) {
                    file = "\(OutputSummary.fileName(for: output.name))_\(suffix)"
                    suffix += 1
                }
                usedFileNames.insert(file)
                let path = "\(outputDir)/\(file).npy"
                let (stored, note) = OutputSummary.npyCompatible(tensor)
                try NPY.write(stored, to: path)
                print("  written to \(path)\(note.map { " (\($0))" } ?? "")")
            }
            print("time: load \(milliseconds(loadTime)), first run \(milliseconds(runTime))")
            if let recorder {
                try ProfileReport.report(recorder, trace: trace)
                if let html {
                    let name = model.split(separator: "/").last.map(String.init) ?? model
                    try FileSystem.writeAtomically(Array(ProfileHTML.page(recorder, model: name).utf8), to: html)
                    print("profile page written to \(html)")
                }
                if !untimed.isEmpty { print("  (not timed: \(untimed.joined(separator: ", ")))") }
            }
        }
    }

    /// The model or artifact, loaded as the backend flags say (`Kiln.load`). With `recorder`, kiln.cpu
    /// records the time of every step into it.
    func loadSession(profile recorder: CPUProfile?) throws -> Session {
        if selection.partitioningRequested, try Kiln.isArtifact(path: model) {
            throw KilnError(.invalidArgument, "\(model) is an artifact: its partitions were chosen when it was compiled (the target and partitioning options apply to models)")
        }
        var options = try selection.loadOptions(profiler: recorder)
        options.trust = try trust.trust()
        let session = try Kiln.load(path: model, options: options)
        if session.artifact == nil {
            for warning in session.partitionReport.warnings { printError("warning: \(warning)") }
            if session.partitionReport.entries.contains(where: \.isFallback) { printError(session.partitionReport.fallbackSummary) }
        }
        if session.partitions.count > 1 {
            let stages = session.partitions.map { "\($0.backend.info.name) (\($0.nodes.count) node\($0.nodes.count == 1 ? "" : "s"))" }
            print("partitions: " + stages.joined(separator: " → "))
        }
        return session
    }

    /// The partitions of `session` whose steps `recorder` does not time (`backend (N nodes)`): those neither
    /// on kiln.cpu nor on a plugin backend that reports its device's profile (plugin ABI 1.4). When no
    /// partition is timed, `--profile` is refused with an error naming the backends.
    func untimedPartitions(of session: Session, profile recorder: CPUProfile) throws -> [String] {
        let timed = { (p: Partition) in
            (p.backend as? CPUBackend)?.profile === recorder || (p.backend as? CPluginBackend)?.profiler === recorder
        }
        guard session.partitions.contains(where: timed) else {
            let names = session.backends.map(\.info.name).joined(separator: ", ")
            let hint = session.artifact != nil ? "compile the model for the host target to profile it"
                : "run it on the host target's backends to profile it"
            throw KilnError(.invalidArgument, "--profile times the steps of backend \(CPUBackend.descriptor.info.name) and of plugin backends that report a device profile, but \(model) runs on backend \(names): \(hint)")
        }
        return session.partitions.filter { !timed($0) }.map {
            "\($0.backend.info.name) (\($0.nodes.count) node\($0.nodes.count == 1 ? "" : "s"))"
        }
    }

    /// The tensors named by `--input`, checked against the model's inputs by the session when it runs.
    func readInputs(_ session: Session) throws -> [String: RuntimeValue] {
        var feeds: [String: RuntimeValue] = [:]
        for argument in inputs {
            guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex,
                  argument.index(after: equals) != argument.endIndex else {
                throw KilnError(.invalidArgument, "--input '\(argument)': expected NAME=FILE.npy (inputs: \(session.inputs.map(\.name).joined(separator: ", ")))")
            }
            let name = String(argument[..<equals])
            let path = String(argument[argument.index(after: equals)...])
            guard feeds[name] == nil else { throw KilnError(.invalidArgument, "input '\(name)' is given twice") }
            guard let input = session.inputs.first(where: { $0.name == name }) else {
                throw KilnError(.invalidArgument, "the model has no input named '\(name)' (inputs: \(session.inputs.map(\.name).joined(separator: ", ")))")
            }
            let tensor: Tensor
            do {
                tensor = try NPY.read(path: path)
            } catch let error as KilnError {
                throw KilnError(error.code, "input '\(name)': \(error.message)")
            }
            switch input.type {
            case .optional(let element)?:
                feeds[name] = .optional(.tensor(tensor), type: element)
            case .sequence?, .map?:
                throw KilnError(.invalidArgument, "input '\(name)': expected \(input.type!), but a .npy file holds a tensor")
            default:
                feeds[name] = .tensor(tensor)
            }
        }
        return feeds
    }
}

/// Random inputs for `kiln run --random`.
enum RandomInput {
    /// The most elements `--random` makes for one input (2^28: a second or so of generating, 2 GiB of
    /// doubles on the way); a model that wants more is given real data.
    static let maxElements = 1 << 28

    /// A random tensor of `input`'s type: symbolic and unknown dims are 1; floating-point elements
    /// are uniform in [-1, 1), integers in [0, 10), bools either.
    static func make(for input: Value, using generator: inout SplitMix64) throws -> Tensor {
        let type: TensorType
        switch input.type {
        case .tensor(let t)?: type = t
        case .optional(.tensor(let t))?: type = t
        default:
            throw KilnError(.invalidArgument, "--random cannot make input '\(input.name)' of type \(input.type.map { "\($0)" } ?? "unknown"); give it with --input")
        }
        guard let dims = type.shape else {
            throw KilnError(.invalidArgument, "--random cannot make input '\(input.name)': its rank is unknown (\(type)); give it with --input")
        }
        let shape = dims.map { $0.value ?? 1 }
        let count = try ElementCount.of(shape, dtype: type.dtype, what: "--random input '\(input.name)'")
        guard count <= maxElements else {
            throw KilnError(.invalidArgument, "--random input '\(input.name)' would have \(count) elements (shape \(shape)); --random makes at most \(maxElements): give it with --input")
        }
        let dtype = type.dtype
        if dtype == .string {
            let words = ["a", "b", "c", "d"]
            return Tensor(shape: shape, strings: (0..<count).map { _ in words[Int(generator.next() % 4)] })
        }
        if dtype == .complex64 || dtype == .complex128 {
            throw KilnError(.invalidArgument, "--random cannot make input '\(input.name)' of type \(type); give it with --input")
        }
        if dtype.isFloatingPoint {
            let values = (0..<count).map { _ in Double(generator.next() >> 11) / Double(1 << 53) * 2 - 1 }
            return Tensor(dtype: dtype, shape: shape, doubles: values)
        }
        let bound: UInt64 = dtype == .bool ? 2 : 10
        return Tensor(dtype: dtype, shape: shape, int64s: (0..<count).map { _ in Int64(generator.next() % bound) })
    }
}

/// How `kiln run` prints and stores outputs.
enum OutputSummary {
    /// `name: f32[2,3]  min=… max=… mean=…  [first values]`, with one indented line per element of a sequence.
    static func describe(name: String, _ value: RuntimeValue) -> String {
        switch value {
        case .tensor(let t):
            return "\(name): \(describe(t))"
        case .optional(let inner, _):
            guard let inner else { return "\(name): empty optional" }
            return describe(name: name, inner)
        case .sequence(let items, let elementType):
            var lines = ["\(name): sequence of \(items.count)\(elementType.map { " \($0)" } ?? "")"]
            for (i, item) in items.prefix(8).enumerated() {
                lines.append(describe(name: "  [\(i)]", item))
            }
            if items.count > 8 { lines.append("  …") }
            return lines.joined(separator: "\n")
        case .map(let keys, let values):
            return "\(name): map of \(keys.count) keys (\(keys.dtype)) to \(values.summary)"
        }
    }

    /// `f32[2,3]  min=… max=… mean=…  [first values]`.
    static func describe(_ t: Tensor) -> String {
        let head = "\(t.dtype)\(shapeText(t.shape))"
        if t.count == 0 { return head + "  (empty)" }
        if t.dtype == .string {
            return head + "  [" + t.strings.prefix(6).map { Printer.quoted($0) }.joined(separator: ", ") + (t.count > 6 ? ", …]" : "]")
        }
        guard t.dtype.isFloatingPoint || t.dtype.isInteger || t.dtype == .bool else { return head }
        let values = t.asDoubles()
        let isInteger = !t.dtype.isFloatingPoint
        let finite = values.filter { $0.isFinite }
        var parts = [head]
        if let lo = finite.min(), let hi = finite.max() {
            let mean = finite.reduce(0, +) / Double(finite.count)
            parts.append("min=\(number(lo, integer: isInteger)) max=\(number(hi, integer: isInteger)) mean=\(number(mean))")
        }
        let nans = values.count(where: { $0.isNaN })
        let infinities = values.count(where: { $0.isInfinite })
        if nans > 0 { parts.append("nan=\(nans)") }
        if infinities > 0 { parts.append("inf=\(infinities)") }
        let first = values.prefix(6).map { number($0, integer: isInteger) }.joined(separator: ", ")
        parts.append("[" + first + (values.count > 6 ? ", …]" : "]"))
        return parts.joined(separator: "  ")
    }

    /// `[2,3]` (`[]` for a scalar), as types print shapes.
    static func shapeText(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ",") + "]" }

    /// A number with `digits` significant digits (`%g`), or exactly when `integer`.
    static func number(_ v: Double, integer: Bool = false, digits: Int = 6) -> String {
        if integer, let i = Int64(exactly: v) { return String(i) }
        if v.isNaN { return "nan" }
        if v.isInfinite { return v < 0 ? "-inf" : "inf" }
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([v]) { vsnprintf(&buffer, buffer.count, "%.\(digits)g", $0) }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The tensor a value stores in a `.npy` file: a tensor, or the tensor in a non-empty optional.
    static func writableTensor(_ value: RuntimeValue) -> Tensor? {
        switch value {
        case .tensor(let t): t.dtype == .string ? nil : t
        case .optional(let inner?, _): writableTensor(inner)
        default: nil
        }
    }

    /// `tensor`, or a conversion NumPy can hold (bfloat16 and 8/4-bit floats widen to f32, 4/2-bit
    /// integers to i8/u8) with a note saying so.
    static func npyCompatible(_ tensor: Tensor) -> (Tensor, String?) {
        if NPY.typeString(for: tensor.dtype) != nil { return (tensor, nil) }
        let target: DType = tensor.dtype.isFloatingPoint ? .float32 : tensor.dtype.isSignedInteger ? .int8 : .uint8
        return (Tensor(dtype: target, shape: tensor.shape, doubles: tensor.asDoubles()), "converted from \(tensor.dtype) to \(target)")
    }

    /// The file name (without `.npy`) for output `name`: every character outside `A-Z a-z 0-9 . _ -` becomes `_`.
    static func fileName(for name: String) -> String {
        let allowed: (Character) -> Bool = { c in c.isASCII && (c.isLetter || c.isNumber || c == "." || c == "_" || c == "-") }
        let sanitized = String(name.map { allowed($0) ? $0 : "_" })
        return sanitized.isEmpty ? "_" : sanitized
    }
}
