import CKilnKernels
import KilnIR

/// The sliding-window attributes shared by convolution and pooling.
struct Window {
    var kernel: [Int]
    var strides: [Int]
    var dilations: [Int]
    var pads: [Int]?
    var autoPad: String
    var ceilMode: Bool

    /// Reads `strides`, `dilations`, `pads`, `auto_pad` and `ceil_mode` of `node` for a kernel of `kernel`.
    init(node: Node, kernel: [Int]) throws {
        let r = kernel.count
        self.kernel = kernel
        strides = try node.ints("strides") ?? Array(repeating: 1, count: r)
        dilations = try node.ints("dilations") ?? Array(repeating: 1, count: r)
        pads = try node.ints("pads")
        autoPad = try node.string("auto_pad", "NOTSET")
        ceilMode = try node.int("ceil_mode", 0) != 0
        guard strides.count == r, dilations.count == r, pads == nil || pads!.count == 2 * r else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (\(node.op)): strides, dilations and pads must match \(r) spatial dims")
        }
        guard kernel.allSatisfy({ $0 > 0 }), strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }) else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (\(node.op)): kernel, strides and dilations must be positive")
        }
        guard ["NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"].contains(autoPad) else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (\(node.op)): unknown auto_pad '\(autoPad)'")
        }
    }

    /// Output sizes, leading pads and trailing pads for spatial input sizes `input` (ONNX's formulas).
    func resolve(_ input: [Int]) -> (output: [Int], begin: [Int], end: [Int]) {
        let r = kernel.count
        var output = [Int](repeating: 0, count: r), begin = [Int](repeating: 0, count: r)
        var ends = [Int](repeating: 0, count: r)
        for j in 0..<r {
            let span = (kernel[j] - 1) * dilations[j] + 1
            switch autoPad {
            case "SAME_UPPER", "SAME_LOWER":
                output[j] = (input[j] + strides[j] - 1) / strides[j]
                let total = max(0, (output[j] - 1) * strides[j] + span - input[j])
                begin[j] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                ends[j] = total - begin[j]
            default:
                var end = 0
                if autoPad != "VALID", let pads {
                    begin[j] = pads[j]
                    end = pads[j + r]
                }
                ends[j] = end
                let room = input[j] + begin[j] + end - span
                if room < 0 {
                    output[j] = 0
                } else if ceilMode {
                    output[j] = (room + strides[j] - 1) / strides[j] + 1
                    if (output[j] - 1) * strides[j] >= input[j] + begin[j] { output[j] -= 1 }
                } else {
                    output[j] = room / strides[j] + 1
                }
            }
        }
        return (output, begin, ends)
    }

    /// The C kernels' parameters for an NCHW (or NCW, as height 1) image of `channels` × `input` spatial dims.
    func params(channels: Int, outChannels: Int, input: [Int], groups: Int) -> (kiln_conv2d_params, [Int]) {
        let (output, begin, _) = resolve(input)
        let two = kernel.count == 1
        var p = kiln_conv2d_params()
        p.in_channels = channels
        p.out_channels = outChannels
        p.in_height = two ? 1 : input[0]
        p.in_width = two ? input[0] : input[1]
        p.out_height = two ? 1 : output[0]
        p.out_width = two ? output[0] : output[1]
        p.kernel_h = two ? 1 : kernel[0]
        p.kernel_w = two ? kernel[0] : kernel[1]
        p.stride_h = two ? 1 : strides[0]
        p.stride_w = two ? strides[0] : strides[1]
        p.dilation_h = two ? 1 : dilations[0]
        p.dilation_w = two ? dilations[0] : dilations[1]
        p.pad_top = two ? 0 : begin[0]
        p.pad_left = two ? begin[0] : begin[1]
        p.groups = groups
        return (p, output)
    }
}

/// Conv, with BatchNormalization folded into its weights, and bias, residual Add and activation fused
/// into the kernel's epilogue. Depthwise convolutions (groups = in = out channels) use the depthwise kernel.
final class ConvOperation: Operation {
    let kind: String
    let label: String
    let x: Int
    /// The weight value when it is not constant (packed on every run); -1 when packed ahead.
    let weightValue: Int
    /// The bias value when it is not constant; -1 otherwise.
    let biasValue: Int
    let residual: Int
    let output: Int
    let window: Window
    let group: Int
    let outChannels: Int
    let inChannelsPerGroup: Int
    let depthwise: Bool
    /// The weight packed by kiln_conv2d_pack_weight (or [C][KH][KW] for depthwise), when constant.
    let packedWeight: FloatBuffer?
    let bias: FloatBuffer?
    let activation: Activation

    var inputs: [Int] { [x, weightValue, biasValue, residual] }
    var outputs: [Int] { [output] }

    init(kind: String, label: String, x: Int, weightShape: [Int], weight: [Float]?, weightValue: Int, bias: [Float]?,
         biasValue: Int, residual: Int, output: Int, window: Window, group: Int, activation: Activation) {
        self.kind = kind
        self.label = label
        self.x = x
        self.weightValue = weight == nil ? weightValue : -1
        self.biasValue = bias == nil ? biasValue : -1
        self.residual = residual
        self.output = output
        self.window = window
        self.group = group
        self.activation = activation
        outChannels = weightShape[0]
        inChannelsPerGroup = weightShape[1]
        depthwise = group > 1 && inChannelsPerGroup == 1 && outChannels == group
        self.bias = bias.map(FloatBuffer.init)
        if let weight {
            if depthwise {
                packedWeight = FloatBuffer(weight)
            } else {
                var (p, _) = window.params(channels: inChannelsPerGroup * group, outChannels: outChannels,
                                           input: window.kernel.map { _ in 1 }, groups: group)
                let buffer = FloatBuffer(count: kiln_conv2d_pack_weight_size(&p))
                weight.withUnsafeBufferPointer { kiln_conv2d_pack_weight(&p, $0.baseAddress!, buffer.pointer) }
                packedWeight = buffer
            }
        } else {
            packedWeight = nil
        }
    }

    func plan(_ b: PlanBuilder) throws {
        try b.requireFloat(x)
        let xs = try b.shape(x)
        let spatialRank = window.kernel.count
        guard xs.count == 2 + spatialRank, spatialRank <= 2 else {
            throw b.unsupported("input shape \(xs) does not match a \(spatialRank)-D kernel (kiln.cpu runs 1-D and 2-D convolutions)")
        }
        let batch = xs[0], channels = xs[1]
        guard channels == inChannelsPerGroup * group, outChannels % group == 0 else {
            throw b.invalid("input has \(channels) channels; the weight expects \(inChannelsPerGroup) per group × \(group) groups and \(outChannels) outputs")
        }
        var (p, outSpatial) = window.params(channels: channels, outChannels: outChannels, input: Array(xs[2...]), groups: group)
        let outShape = [batch, outChannels] + outSpatial
        let inImage = channels * p.in_height * p.in_width
        let pixels = p.out_height * p.out_width
        let outImage = outChannels * pixels

        var residualFused = -1
        if residual >= 0 {
            try b.requireFloat(residual)
            if try b.shape(residual) == outShape { residualFused = residual }
        }
        // The output never shares the residual's buffer: measured, the kernels' tiled accumulation
        // overwrites residual values before the epilogue reads them.
        b.define(output, shape: outShape)
        if outShape.reduce(1, *) == 0 { return }

        // Weights that are not constant are packed on every run.
        var weightScratch = -1
        if packedWeight == nil {
            try b.requireFloat(weightValue)
            let ws = try b.shape(weightValue)
            guard ws.count == 2 + spatialRank, ws[0] == outChannels, ws[1] == inChannelsPerGroup,
                  Array(ws[2...]) == window.kernel else {
                throw b.invalid("weight shape \(ws) changed from the one the graph declares")
            }
            if !depthwise {
                let size = kiln_conv2d_pack_weight_size(&p)
                weightScratch = b.scratch(bytes: size * 4)
                let w = weightValue, scratch = weightScratch
                let params = p
                b.step("\(kind)/pack") { frame in
                    var q = params
                    kiln_conv2d_pack_weight(&q, frame.f(w), frame.scratch(scratch).assumingMemoryBound(to: Float.self))
                }
            }
        }
        if biasValue >= 0 {
            try b.requireFloat(biasValue)
            guard try b.shape(biasValue).reduce(1, *) == outChannels else { throw b.invalid("bias must have \(outChannels) elements") }
        }

        let (x, output, residual, weightValue, biasValue) = (self.x, self.output, residualFused, self.weightValue, self.biasValue)
        let packed = packedWeight, bias = self.bias, activation = self.activation, params = p
        let threads = b.threads
        // Work units: (image, range of pixels or channels).
        var units: [(image: Int, range: Range<Int>, byChannel: Bool)] = []
        if depthwise {
            let parts = threads == 1 ? 1 : threads * 2
            for n in 0..<batch { for r in splitRange(outChannels, parts: parts) { units.append((n, r, true)) } }
        } else if threads > 1 && group == 1 && pixels < 64 * threads && outChannels >= 12 * threads {
            for n in 0..<batch {
                for r in splitRange(outChannels, parts: threads * 2, granule: Int(KILN_SGEMM_MR)) { units.append((n, r, true)) }
            }
        } else {
            let parts = threads == 1 ? 1 : (batch >= threads ? 1 : threads * 2)
            for n in 0..<batch { for r in splitRange(pixels, parts: parts, granule: 16) { units.append((n, r, false)) } }
        }
        let kSize = inChannelsPerGroup * params.kernel_h * params.kernel_w
        let isDepthwise = depthwise
        let postActivation = residual < 0 && self.residual >= 0
        b.step { frame in
            let xp = frame.f(x), yp = frame.f(output)
            let wp: UnsafePointer<Float> = packed.map { UnsafePointer($0.pointer) }
                ?? (weightScratch >= 0 ? UnsafePointer(frame.scratch(weightScratch).assumingMemoryBound(to: Float.self)) : UnsafePointer(frame.f(weightValue)))
            let bp: UnsafePointer<Float>? = bias.map { UnsafePointer($0.pointer) } ?? (biasValue >= 0 ? UnsafePointer(frame.f(biasValue)) : nil)
            let rp: UnsafePointer<Float>? = residual >= 0 ? UnsafePointer(frame.f(residual)) : nil
            let act = postActivation ? Activation.none : activation
            frame.pool.parallelFor(units.count) { u in
                let unit = units[u]
                var q = params
                let input = xp + unit.image * inImage
                let out = yp + unit.image * outImage
                let res = rp.map { $0 + unit.image * outImage }
                if isDepthwise {
                    var e = makeEpilogue(bias: bp, residual: res, ldr: pixels, activation: act)
                    kiln_depthwise_conv2d_nchw(&q, input, wp, out, unit.range.lowerBound, unit.range.upperBound, &e)
                } else if unit.byChannel {
                    let c0 = unit.range.lowerBound
                    q.out_channels = unit.range.count
                    var e = makeEpilogue(bias: bp.map { $0 + c0 }, residual: res.map { $0 + c0 * pixels }, ldr: pixels, activation: act)
                    kiln_conv2d_nchw(&q, input, wp + c0 * kSize, out + c0 * pixels, 0, pixels, &e)
                } else {
                    var e = makeEpilogue(bias: bp, residual: res, ldr: pixels, activation: act)
                    kiln_conv2d_nchw(&q, input, wp, out, unit.range.lowerBound, unit.range.upperBound, &e)
                }
            }
        }
        // A residual that does not match the output's shape is added with broadcasting afterwards.
        if postActivation {
            try Broadcasting.planBinary(b, op: KILN_BINARY_ADD, a: output, b: self.residual, output: output, kind: "\(kind)/add")
            if activation.kind != .none {
                let count = outShape.reduce(1, *)
                b.step("\(kind)/activation") { frame in activation.apply(frame.f(output), frame.f(output), count: count) }
            }
        }
    }
}
