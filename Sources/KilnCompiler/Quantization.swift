import KilnBackend
import KilnIR
import KilnPasses

/// How activation ranges are chosen from calibration (see `KilnPasses.CalibrationMethod`).
public typealias CalibrationMethod = KilnPasses.CalibrationMethod
/// The integer type activations are quantized to (see `KilnPasses.ActivationType`).
public typealias ActivationType = KilnPasses.ActivationType
/// What post-training quantization quantizes and how (see `KilnPasses.QuantizationConfig`).
public typealias QuantizationConfig = KilnPasses.QuantizationConfig
/// What post-training quantization did (see `KilnPasses.QuantizationReport`).
public typealias QuantizationReport = KilnPasses.QuantizationReport
/// Calibration statistics of one tensor (see `KilnPasses.TensorStatistics`).
public typealias TensorStatistics = KilnPasses.TensorStatistics

/// One calibration sample: a value for each model input, and the file each came from (named in errors).
public struct CalibrationSample: Sendable {
    /// Where the sample came from (its folder or file), named in errors.
    public var name: String
    /// Input values by input name. A key may also be the input name with every character other than
    /// `A-Z a-z 0-9 . _ -` replaced by `_` (how a file is named after an input), or empty for the only
    /// input of a one-input model.
    public var inputs: [String: Tensor]
    /// The file each value came from, by the same keys (missing: `name` is named instead).
    public var files: [String: String]

    /// A sample.
    public init(name: String, inputs: [String: Tensor], files: [String: String] = [:]) {
        self.name = name
        self.inputs = inputs
        self.files = files
    }

    /// `name` as a calibration file may spell it: characters other than `A-Z a-z 0-9 . _ -` become `_`.
    public static func fileName(forInput name: String) -> String {
        String(name.map { c in c.isASCII && (c.isLetter || c.isNumber || c == "." || c == "_" || c == "-") ? c : "_" })
    }
}

/// Post-training int8 quantization: the model is run in float on the calibration samples, the ranges of
/// the activations feeding quantized ops are measured, and the graph is rewritten in QDQ form
/// (`KilnPasses.QDQQuantization`).
public struct QuantizationOptions: Sendable {
    /// What is quantized and how ranges are chosen.
    public var config: QuantizationConfig
    /// The samples the float model is run on (at least one).
    public var samples: [CalibrationSample]
    /// The backend that runs the float model for calibration (nil: the registry's reference backend,
    /// `kiln.reference`, which runs every op; `kiln.cpu` is faster on large models).
    public var calibrationBackend: String?

    /// Options quantizing as `config` says, calibrated on `samples`.
    public init(config: QuantizationConfig = QuantizationConfig(), samples: [CalibrationSample], calibrationBackend: String? = nil) {
        self.config = config
        self.samples = samples
        self.calibrationBackend = calibrationBackend
    }
}

extension Compiler {
    /// The inputs of `sample` by the model's input names, checked against `graph`'s inputs: every
    /// input present, none unknown, element types equal, ranks and fixed dims equal. Errors are
    /// `.invalidArgument` and name the file (or the sample).
    public static func calibrationInputs(_ sample: CalibrationSample, for graph: Graph) throws -> [String: Tensor] {
        let inputs = graph.inputs.filter { graph.initializers[$0.name] == nil }
        func file(_ key: String) -> String { sample.files[key] ?? sample.name }
        var resolved: [String: Tensor] = [:]
        for key in sample.inputs.keys.sorted() {
            let tensor = sample.inputs[key]!
            let match: Value?
            if key.isEmpty {
                guard inputs.count == 1 else {
                    throw KilnError(.invalidArgument, "calibration file '\(file(key))': a file per sample fits a model with one input; this one has \(inputs.count) (\(inputs.map(\.name).joined(separator: ", "))): use a folder per sample with one INPUT.npy per input")
                }
                match = inputs[0]
            } else {
                match = inputs.first { $0.name == key } ?? inputs.first { CalibrationSample.fileName(forInput: $0.name) == key }
            }
            guard let input = match else {
                throw KilnError(.invalidArgument, "calibration file '\(file(key))': the model has no input '\(key)' (inputs: \(inputs.map(\.name).joined(separator: ", ")))")
            }
            guard resolved[input.name] == nil else {
                throw KilnError(.invalidArgument, "calibration file '\(file(key))': input '\(input.name)' is given twice in sample '\(sample.name)'")
            }
            if let type = input.type?.tensorType {
                guard tensor.dtype == type.dtype else {
                    throw KilnError(.invalidArgument, "calibration file '\(file(key))': input '\(input.name)' is \(type.dtype), the file holds \(tensor.dtype)")
                }
                if let dims = type.shape {
                    let fits = dims.count == tensor.rank && zip(dims, tensor.shape).allSatisfy { d, n in d.value.map { $0 == n } ?? true }
                    guard fits else {
                        throw KilnError(.invalidArgument, "calibration file '\(file(key))': shape \(tensor.shape) does not fit input '\(input.name)' of shape \(type)")
                    }
                }
            }
            resolved[input.name] = tensor
        }
        for input in inputs where resolved[input.name] == nil {
            throw KilnError(.invalidArgument, "calibration sample '\(sample.name)': no value for input '\(input.name)' (expected a file named \(CalibrationSample.fileName(forInput: input.name)).npy)")
        }
        return resolved
    }

    /// Statistics of every float32 value in `targets`, from running `graph` on `backend` over `samples`
    /// (values not measured, because they are not float32 or not computed, are absent).
    public static func calibrate(_ graph: Graph, targets: [String], samples: [CalibrationSample], backend: any Backend) throws -> [String: TensorStatistics] {
        guard !samples.isEmpty else { throw KilnError(.invalidArgument, "calibration needs at least one sample") }
        let inputNames = Set(graph.inputs.map(\.name))
        var probe = graph
        let outputs = Set(graph.outputs.map(\.name))
        let extra = targets.filter { !inputNames.contains($0) && !outputs.contains($0) }
        probe.outputs += extra.map { Value(name: $0, type: graph.valueTypes[$0]) }
        // Every sample is checked before anything runs.
        let resolved = try samples.map { try calibrationInputs($0, for: graph) }
        let executable = try backend.prepare(probe)
        var statistics: [String: TensorStatistics] = [:]
        let wanted = Set(targets)
        for (sample, inputs) in zip(samples, resolved) {
            var values: [String: Tensor] = [:]
            for (name, t) in inputs where wanted.contains(name) { values[name] = t }
            let results: [RuntimeValue]
            do {
                results = try executable.run(inputs.mapValues { .tensor($0) })
            } catch let error as KilnError {
                throw KilnError(error.code, "calibration sample '\(sample.name)': \(error.message)")
            }
            for (value, result) in zip(probe.outputs, results) where wanted.contains(value.name) {
                if let t = result.tensor { values[value.name] = t }
            }
            for (name, t) in values where t.dtype == .float32 {
                statistics[name, default: TensorStatistics()].add(t.elements(as: Float.self))
            }
        }
        return statistics
    }

    /// Calibrates `model` on `options.samples` (run on `options.calibrationBackend` from `registry`, or
    /// its reference backend) and rewrites it in QDQ form; returns what was quantized.
    public static func quantize(_ model: inout Model, options: QuantizationOptions, registry: BackendRegistry) throws -> QuantizationReport {
        guard !options.samples.isEmpty else { throw KilnError(.invalidArgument, "quantization needs at least one calibration sample") }
        guard options.config.percentile > 0, options.config.percentile <= 100 else {
            throw KilnError(.invalidArgument, "percentile \(options.config.percentile) is not in (0, 100]")
        }
        let backend: any Backend
        if let name = options.calibrationBackend {
            backend = try registry.require(name)
        } else {
            guard let reference = registry.first(ofKind: .reference) else {
                throw KilnError(.unsupported, "calibration runs the float model on a reference backend, and none is registered")
            }
            backend = reference
        }
        let targets = QDQQuantization.calibrationTargets(in: model.graph, config: options.config)
        let statistics = try calibrate(model.graph, targets: targets, samples: options.samples, backend: backend)
        let pass = QDQQuantization(config: options.config, statistics: statistics)
        let report = pass.quantize(&model.graph)
        _ = try DeadCodeElimination().run(&model.graph, context: PassContext())
        try Verifier.verify(model.graph)
        return report
    }
}
