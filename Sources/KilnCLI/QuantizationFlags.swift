import ArgumentParser
import Kiln
import KilnTooling

/// `kiln compile`'s post-training quantization flags (Documentation/Quantization.md).
struct QuantizationFlags: ParsableArguments {
    @Option(help: ArgumentHelp("Quantize the model after optimization: int8 (QDQ form; weights int8 per output channel, biases int32). Needs --calibration.", valueName: "int8"))
    var quantize: String?

    @Option(help: ArgumentHelp("The calibration samples: a folder per sample holding INPUT.npy per model input, or, for a one-input model, one .npy per sample.", valueName: "dir"))
    var calibration: String?

    @Option(help: ArgumentHelp("How activation ranges are chosen: minmax (default), percentile (each tail clipped at half of 100 - --percentile) or entropy (KL-divergence threshold of |x|).", valueName: "minmax|percentile|entropy"))
    var calibrationMethod = "minmax"

    @Option(help: ArgumentHelp("The percentile of the values kept by --calibration-method percentile (99.99: 0.005% clipped at each end).", valueName: "p"))
    var percentile = 99.99

    @Option(help: ArgumentHelp("Activation type: uint8 (asymmetric, default) or int8 (symmetric).", valueName: "uint8|int8"))
    var activationType = "uint8"

    @Option(help: ArgumentHelp("Op types kept in float (of Conv, Gemm, MatMul, and Add and Mul when --quantize-ops names them).", valueName: "op[,op…]"))
    var keepFloat: String?

    @Option(help: ArgumentHelp("Op types to quantize (default Conv,Gemm,MatMul; Add and Mul may be added).", valueName: "op[,op…]"))
    var quantizeOps: String?

    @Flag(inversion: .prefixedNo, help: "Quantize the outputs of quantized ops too (default), or only their inputs.")
    var quantizeOutputs = true

    @Option(help: ArgumentHelp("The backend that runs the float model on the calibration samples (default kiln.reference).", valueName: "name"))
    var calibrationBackend: String?

    /// The quantization options the flags ask for (nil without --quantize), with the samples read from
    /// --calibration; a flag that needs --quantize without it is an error.
    func options() throws -> QuantizationOptions? {
        var request = QuantizationRequest()
        request.quantize = quantize
        request.calibration = calibration
        request.calibrationMethod = calibrationMethod
        request.percentile = percentile
        request.activationType = activationType
        request.keepFloat = keepFloat
        request.quantizeOps = quantizeOps
        request.quantizeOutputs = quantizeOutputs
        request.calibrationBackend = calibrationBackend
        return try request.options(.flags)
    }
}
