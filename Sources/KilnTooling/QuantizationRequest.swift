import Kiln
import KilnIR

/// Post-training quantization as the CLI flags and the C ABI's compile options spell it: text, checked and
/// turned into `QuantizationOptions` in one place, so `kiln compile --quantize int8 …`,
/// `kiln_compile_file` with `quantize=int8` and Python's `kiln.compile(..., quantize="int8")` accept the
/// same values and refuse the same mistakes with the same words. Documentation/Quantization.md.
public struct QuantizationRequest: Sendable {
    /// How each setting is named in error messages: `--calibration-method` for the CLI,
    /// `compile option calibration_method` for the C ABI.
    public enum Spelling: Sendable {
        /// `kiln compile`'s flags.
        case flags
        /// `kiln_compile_options` keys.
        case compileOptions
    }

    /// `int8`, or nil for no quantization.
    public var quantize: String?
    /// The calibration folder (`CalibrationDirectory`).
    public var calibration: String?
    /// `minmax`, `percentile` or `entropy`.
    public var calibrationMethod = "minmax"
    /// The percentile of values kept by `percentile` calibration, in (0, 100].
    public var percentile = 99.99
    /// `uint8` (asymmetric) or `int8` (symmetric) activations.
    public var activationType = "uint8"
    /// Comma-separated op types kept in float.
    public var keepFloat: String?
    /// Comma-separated op types to quantize (nil: `QuantizationConfig.defaultOps`).
    public var quantizeOps: String?
    /// Whether quantized ops' outputs are quantized too.
    public var quantizeOutputs = true
    /// The backend that runs the float model on the calibration samples (nil: kiln.reference).
    public var calibrationBackend: String?

    /// A request with every setting at its default (no quantization).
    public init() {}

    /// The settings' names, for `spelling`: flag or compile-option key.
    static func name(_ key: String, _ spelling: Spelling) -> String {
        switch spelling {
        case .flags: return "--" + key.replacingUnderscores
        case .compileOptions: return "compile option " + key
        }
    }

    /// The quantization options asked for (nil when `quantize` is nil), with the calibration samples read.
    /// A setting that needs `quantize` without it, or a value outside its choices, is `.invalidArgument`
    /// naming the setting as `spelling` writes it.
    public func options(_ spelling: Spelling) throws -> QuantizationOptions? {
        func n(_ key: String) -> String { Self.name(key, spelling) }
        guard let quantize else {
            if calibration != nil { throw KilnError(.invalidArgument, "\(n("calibration")) goes with \(n("quantize")) int8") }
            return nil
        }
        guard quantize == "int8" else { throw KilnError(.invalidArgument, "\(n("quantize")) '\(quantize)': expected int8") }
        guard let calibration else {
            throw KilnError(.invalidArgument, "\(n("quantize")) int8 needs \(n("calibration")) DIR (the samples ranges are measured on)")
        }
        guard let method = CalibrationMethod(rawValue: calibrationMethod) else {
            throw KilnError(.invalidArgument, "\(n("calibration_method")) '\(calibrationMethod)': expected minmax, percentile or entropy")
        }
        guard let type = ActivationType(rawValue: activationType) else {
            throw KilnError(.invalidArgument, "\(n("activation_type")) '\(activationType)': expected uint8 or int8")
        }
        guard percentile > 0, percentile <= 100 else {
            throw KilnError(.invalidArgument, "\(n("percentile")) \(percentile): expected a number in (0, 100]")
        }
        let allowed: Set<String> = ["Conv", "Gemm", "MatMul", "Add", "Mul"]
        func ops(_ key: String, _ text: String?) throws -> Set<String>? {
            guard let text else { return nil }
            let names = Set(CommaList.items(text))
            if names.isEmpty, key == "quantize_ops" { throw KilnError(.invalidArgument, "\(n(key)): expected at least one op type") }
            for name in names where !allowed.contains(name) {
                throw KilnError(.invalidArgument, "\(n(key)) \(name): expected op types among \(allowed.sorted().joined(separator: ", "))")
            }
            return names
        }
        let config = QuantizationConfig(ops: try ops("quantize_ops", quantizeOps) ?? QuantizationConfig.defaultOps,
                                        keepFloat: try ops("keep_float", keepFloat) ?? [], method: method,
                                        percentile: percentile, activationType: type, quantizeOutputs: quantizeOutputs)
        return QuantizationOptions(config: config, samples: try CalibrationDirectory.load(path: calibration),
                                   calibrationBackend: calibrationBackend)
    }

    /// Sets the setting compile-option `key` names (`quantize`, `calibration`, `calibration_method`,
    /// `percentile`, `activation_type`, `keep_float`, `quantize_ops`, `quantize_outputs`,
    /// `calibration_backend`) to `value`; false when `key` is none of them. A value that is not a number
    /// (`percentile`) or not true/false (`quantize_outputs`) is `.invalidArgument` naming the key.
    public mutating func set(_ key: String, _ value: String) throws -> Bool {
        func invalid(_ expected: String) -> KilnError {
            KilnError(.invalidArgument, "\(Self.name(key, .compileOptions)) '\(value)': expected \(expected)")
        }
        switch key {
        case "quantize": quantize = value
        case "calibration": calibration = value
        case "calibration_method": calibrationMethod = value
        case "percentile":
            guard let p = Double(value), p.isFinite else { throw invalid("a number in (0, 100]") }
            percentile = p
        case "activation_type": activationType = value
        case "keep_float": keepFloat = value
        case "quantize_ops": quantizeOps = value
        case "quantize_outputs":
            guard let flag = Bool(value) else { throw invalid("true or false") }
            quantizeOutputs = flag
        case "calibration_backend": calibrationBackend = value
        default: return false
        }
        return true
    }

    /// The compile-option keys `set` accepts.
    public static let keys = ["quantize", "calibration", "calibration_method", "percentile", "activation_type",
                              "keep_float", "quantize_ops", "quantize_outputs", "calibration_backend"]
}

/// Comma-separated lists, as every list-valued flag and compile option is written.
public enum CommaList {
    /// `a, b,c` → `[a, b, c]`: spaces around items and empty items dropped.
    public static func items(_ text: String) -> [String] {
        text.split(separator: ",").map { item in
            String(item.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
        }.filter { !$0.isEmpty }
    }
}

private extension String {
    var replacingUnderscores: String { String(map { $0 == "_" ? "-" : $0 }) }
}
