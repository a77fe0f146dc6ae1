import ArgumentParser
import Kiln
import KilnTooling

#if canImport(Glibc)
import Glibc
#endif

/// `kiln bench MODEL --threads N --runs 30 --warmup 5`: times repeated runs of a model or artifact
/// on the same inputs and prints the median and 90th-percentile latency; `--profile` adds a per-step table
/// (kiln.cpu) and `--trace FILE` writes it as Chrome-trace JSON.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time repeated runs of a model.",
        discussion: """
            The model (.onnx) runs as `kiln run` would run it: by default on the host target's backends. An \
            artifact (.kiln) runs on the backends it was compiled for. \
            Inputs come from --input NAME=FILE.npy; any other required input is random (--seed). After \
            --warmup untimed runs, --runs runs are timed one by one. The last lines are machine-readable: \
            'runs_ms: …' (every timed run) and 'median_ms: … p90_ms: …'.
            """
    )

    @Argument(help: "The model file (.onnx) or artifact (.kiln).")
    var model: String

    @Option(name: .customLong("input"), help: ArgumentHelp("An input: the input's name and a .npy file (repeatable).", valueName: "name=file.npy"))
    var inputs: [String] = []

    @OptionGroup(title: "Backends (for a model; an artifact's were chosen when it was compiled)")
    var selection: BackendFlags

    @OptionGroup(title: "Trust")
    var trust: TrustOption

    @Option(help: "Timed runs.")
    var runs = 30

    @Option(help: "Untimed runs first.")
    var warmup = 5

    @Option(help: "The seed of random inputs.")
    var seed: UInt64 = 0

    @Flag(help: "Print per-step times (kiln.cpu).")
    var profile = false

    @Option(help: ArgumentHelp("Write the profile as Chrome-trace JSON to FILE (kiln.cpu; implies --profile).", valueName: "file"))
    var trace: String?

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
    }

    func run() throws {
        try diagnosing {
            defer { flushOutput() }
            let clock = ContinuousClock()
            let loadStart = clock.now
            let recorder = profile || trace != nil ? CPUProfile() : nil
            if selection.partitioningRequested, try Kiln.isArtifact(path: model) {
                throw KilnError(.invalidArgument, "\(model) is an artifact: its partitions were chosen when it was compiled (the target and partitioning options apply to models)")
            }
            var options = try selection.loadOptions(profiler: recorder)
            options.trust = try trust.trust()
            let session = try Kiln.load(path: model, options: options)
            let loadTime = clock.now - loadStart
            var feeds: [String: RuntimeValue] = [:]
            for argument in inputs {
                guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex else {
                    throw KilnError(.invalidArgument, "--input '\(argument)': expected NAME=FILE.npy")
                }
                feeds[String(argument[..<equals])] = .tensor(try NPY.read(path: String(argument[argument.index(after: equals)...])))
            }
            var generator = SplitMix64(seed: seed)
            for input in session.requiredInputs where feeds[input.name] == nil {
                feeds[input.name] = .tensor(try RandomInput.make(for: input, using: &generator))
            }
            let firstStart = clock.now
            _ = try session.runOrdered(feeds)
            let firstRun = clock.now - firstStart
            for warning in session.warnings { printError("warning: \(warning)") }
            for _ in 0..<max(0, warmup - 1) { _ = try session.runOrdered(feeds) }
            recorder?.reset()
            var times: [Double] = []
            for _ in 0..<runs {
                let start = clock.now
                _ = try session.runOrdered(feeds)
                times.append(Self.ms(clock.now - start))
            }
            let sorted = times.sorted()
            let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            let p90 = sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.9).rounded(.up)) - 1)]
            print("model: \(model)")
            let backends = session.partitions.count == 1 ? session.backend.info.name
                : session.partitions.map { "\($0.backend.info.name) (\($0.nodes.count) nodes)" }.joined(separator: " → ")
            print("backend: \(backends)\(selection.threads.map { ", \($0) threads" } ?? "")")
            print("load: \(Self.text(Self.ms(loadTime))) ms, first run: \(Self.text(Self.ms(firstRun))) ms")
            if let recorder { try ProfileReport.report(recorder, trace: trace) }
            print("runs_ms: " + times.map { Self.text($0) }.joined(separator: " "))
            print("median_ms: \(Self.text(median)) p90_ms: \(Self.text(p90))")
        }
    }

    /// `d` in milliseconds.
    static func ms(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) * 1e3 + Double(atto) / 1e15
    }

    /// A number with 4 significant digits.
    static func text(_ v: Double) -> String { ProfileReport.text(v) }
}
