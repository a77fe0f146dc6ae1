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
        if let reason = Self.rejection(kernel: kernel, strides: strides, dilations: dilations, pads: pads) {
            throw KilnError(.unsupported, "node '\(node.displayName)' (\(node.op)): \(reason)")
        }
        guard ["NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"].contains(autoPad) else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (\(node.op)): unknown auto_pad '\(autoPad)'")
        }
    }

    /// Geometry kiln.cpu refuses (ONNX allows it or kiln.reference runs it): negative pads, which crop, and
    /// kernel, strides, dilations or pads above 2^20 — bounding them keeps the kernels' size arithmetic far
    /// from overflow, and the plan builder then refuses outputs too large to hold. Nil when supported.
    static func rejection(kernel: [Int], strides: [Int], dilations: [Int], pads: [Int]?) -> String? {
        let limit = 1 << 20
        if let pads, pads.contains(where: { $0 < 0 }) { return "negative pads \(pads) (cropping) are not supported" }
        guard (kernel + strides + dilations + (pads ?? [])).allSatisfy({ $0 <= limit }) else {
            return "kernel, strides, dilations and pads above \(limit) are not supported"
        }
        return nil
    }

    /// The same for `node`'s attributes (checked before lowering, so the partitioner can fall back).
    static func rejection(of node: Node) -> String? {
        func ints(_ name: String) -> [Int]? { (try? node.ints(name)) ?? nil }
        return rejection(kernel: ints("kernel_shape") ?? [], strides: ints("strides") ?? [],
                         dilations: ints("dilations") ?? [], pads: ints("pads"))
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
/// into the kernel's epilogue. Dense and depthwise convolutions run in the blocked layout (NCHW16c):
/// their outputs stay blocked for the convolutions and pools that follow, and the plan builder reorders
/// to NCHW only where another operation reads them. Other grouped convolutions run in NCHW as implicit
/// GEMMs.
final class ConvOperation: LayoutAware {
    /// How a convolution runs.
    enum Method: Equatable {
        /// Direct convolution into the blocked layout (groups = 1); `blockedInput` when it reads the
        /// input blocked (16 or more input channels) rather than NCHW (e.g. a 3-channel image).
        case blocked(blockedInput: Bool)
        /// Depthwise convolution, blocked in and out.
        case depthwise
        /// Implicit GEMM over NCHW (other grouped convolutions).
        case nchw
    }

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
    let method: Method
    /// The weight packed for `method`, when constant.
    let packedWeight: FloatBuffer?
    let bias: FloatBuffer?
    /// The per-output-channel PReLU slope applied after the bias and residual, before `activation`.
    let slope: FloatBuffer?
    let activation: Activation
    /// The Winograd form of the constant weight, made when a plan first uses it (plans are built one
    /// at a time, under the executable's lock).
    private var winogradWeight: FloatBuffer?

    var inputs: [Int] { [x, weightValue, biasValue, residual] }
    var outputs: [Int] { [output] }
    var imageValues: [Int] { method == .nchw ? [] : [x, residual, output] }

    init(kind: String, label: String, x: Int, weightShape: [Int], weight: Tensor?, weightValue: Int, bias: [Float]?,
         biasValue: Int, residual: Int, output: Int, window: Window, group: Int, activation: Activation,
         slope: [Float]? = nil) {
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
        let method: Method
        if group == 1 {
            method = .blocked(blockedInput: weightShape[1] >= Int(KILN_BLOCK))
        } else if weightShape[1] == 1 && weightShape[0] == group {
            method = .depthwise
        } else {
            method = .nchw
        }
        self.method = method
        self.bias = bias.map(FloatBuffer.init)
        self.slope = slope.map(FloatBuffer.init)
        packedWeight = weight.map { weight in
            var (p, _) = window.params(channels: weightShape[1] * group, outChannels: weightShape[0],
                                       input: window.kernel.map { _ in 1 }, groups: group)
            return Self.pack(weight, params: &p, method: method)
        }
    }

    /// `weight` (OIHW) packed for `method`.
    private static func pack(_ weight: UnsafePointer<Float>, params p: inout kiln_conv2d_params, method: Method, into buffer: UnsafeMutablePointer<Float>) {
        switch method {
        case .blocked(let blockedInput): kiln_conv2d_blocked_pack_weight(&p, blockedInput ? 1 : 0, weight, buffer)
        case .depthwise: kiln_depthwise_blocked_pack_weight(&p, weight, buffer)
        case .nchw: kiln_conv2d_pack_weight(&p, weight, buffer)
        }
    }

    /// Floats of `method`'s packed weight.
    private static func packedSize(_ p: inout kiln_conv2d_params, method: Method) -> Int {
        switch method {
        case .blocked(let blockedInput): kiln_conv2d_blocked_pack_weight_size(&p, blockedInput ? 1 : 0)
        case .depthwise: kiln_depthwise_blocked_pack_weight_size(&p)
        case .nchw: kiln_conv2d_pack_weight_size(&p)
        }
    }

    private static func pack(_ weight: Tensor, params p: inout kiln_conv2d_params, method: Method) -> FloatBuffer {
        let buffer = FloatBuffer(count: packedSize(&p, method: method))
        weight.withFloats { pack($0, params: &p, method: method, into: buffer.pointer) }
        return buffer
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

        var residualFused = -1
        if residual >= 0 {
            try b.requireFloat(residual)
            if try b.shape(residual) == outShape { residualFused = residual }
        }
        if method == .nchw { try b.define(output, shape: outShape) } else { try b.defineBlocked(output, shape: outShape) }
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
            weightScratch = try b.scratch(bytes: Self.packedSize(&p, method: method) * 4)
            let (w, scratch, params, method) = (weightValue, weightScratch, p, self.method)
            b.step("\(kind)/pack") { frame in
                var q = params
                Self.pack(frame.f(w), params: &q, method: method, into: frame.scratch(scratch).assumingMemoryBound(to: Float.self))
            }
        }
        if biasValue >= 0 {
            try b.requireFloat(biasValue)
            guard try b.shape(biasValue).reduce(1, *) == outChannels else { throw b.invalid("bias must have \(outChannels) elements") }
        }
        let weights = WeightSource(packed: packedWeight, scratch: weightScratch, bias: bias, biasValue: biasValue)
        let postActivation = residualFused < 0 && residual >= 0
        // The NCHW kernel has no PReLU epilogue: it runs without the slope and activation, then a step applies both.
        let postSlope = slope != nil && (postActivation || method == .nchw)
        let act = postActivation || postSlope ? Activation.none : activation
        let fusedSlope = postSlope ? nil : slope
        switch method {
        case .blocked(let blockedInput):
            try planBlocked(b, p: p, batch: batch, blockedInput: blockedInput, residual: residualFused, weights: weights,
                            activation: act, slope: fusedSlope)
        case .depthwise:
            try planDepthwise(b, p: p, batch: batch, residual: residualFused, weights: weights, activation: act, slope: fusedSlope)
        case .nchw:
            try planNCHW(b, p: p, batch: batch, residual: residualFused, weights: weights, activation: act)
        }
        if postSlope && !postActivation {
            // Only the NCHW method gets here: its output is plain.
            try planSlope(b, outShape: outShape)
        }
        // A residual that does not match the output's shape is added with broadcasting afterwards.
        if postActivation {
            try b.requirePlain(output)
            try b.requirePlain(residual)
            try Broadcasting.planBinary(b, op: KILN_BINARY_ADD, a: output, b: self.residual, output: output, kind: "\(kind)/add")
            if slope != nil {
                try planSlope(b, outShape: outShape)
            } else if activation.kind != .none {
                let count = outShape.reduce(1, *), output = self.output, activation = self.activation
                b.step("\(kind)/activation") { frame in activation.apply(frame.f(output), frame.f(output), count: count) }
            }
            // The blocked form holds the convolution alone: bring the sum into it for blocked readers.
            if method != .nchw { try b.addReorder(output, toBlocked: true) }
        }
    }

    /// A step applying the slope, then the activation, to the plain output of `outShape` in place.
    private func planSlope(_ b: PlanBuilder, outShape: [Int]) throws {
        guard let slope else { return }
        try b.requirePlain(output)
        let channels = outShape[1], plane = outShape[2...].reduce(1, *), images = outShape[0]
        let count = outShape.reduce(1, *), output = self.output, activation = self.activation
        b.step("\(kind)/prelu") { frame in
            let y = frame.f(output)
            for n in 0..<images {
                kiln_channel_prelu(channels, plane, slope.pointer, y + n * channels * plane, y + n * channels * plane)
            }
            if activation.kind != .none { activation.apply(y, y, count: count) }
        }
    }

    /// Where a step finds the packed weight and the bias.
    private struct WeightSource {
        let packed: FloatBuffer?
        let scratch: Int
        let bias: FloatBuffer?
        let biasValue: Int

        func weight(_ frame: Frame) -> UnsafePointer<Float> {
            if let packed { return UnsafePointer(packed.pointer) }
            return UnsafePointer(frame.scratch(scratch).assumingMemoryBound(to: Float.self))
        }

        func biasPointer(_ frame: Frame) -> UnsafePointer<Float>? {
            bias.map { UnsafePointer($0.pointer) } ?? (biasValue >= 0 ? UnsafePointer(frame.f(biasValue)) : nil)
        }
    }

    /// Floats of one image of `shape` ([N, C, spatial…]) in the blocked layout.
    private static func blockedImage(_ channels: Int, _ pixels: Int) -> Int {
        Int(kiln_blocked_channels(channels)) * pixels
    }

    /// Whether a convolution of `p` runs as Winograd F(4×4, 3×3): 3×3, stride 1, blocked input, constant
    /// weights, and at least 36 output tiles (measured: 2–2.8× faster than the direct convolution from
    /// 28×28 planes up, 1.3× at 14×14 but with 4× the weight bytes to stream, slower at 7×7).
    private func usesWinograd(_ p: inout kiln_conv2d_params, blockedInput: Bool) -> Bool {
        blockedInput && packedWeight != nil && kiln_conv2d_winograd_supported(&p) != 0
            && ((p.out_height + 3) / 4) * ((p.out_width + 3) / 4) >= 36
    }

    private func planWinograd(_ b: PlanBuilder, p: kiln_conv2d_params, batch: Int, residual: Int, weights: WeightSource,
                              activation: Activation, slope: FloatBuffer?) throws {
        var p = p
        if winogradWeight == nil, let packedWeight {
            let buffer = FloatBuffer(count: kiln_conv2d_winograd_pack_weight_size(&p))
            kiln_conv2d_winograd_pack_weight(&p, packedWeight.pointer, buffer.pointer)
            winogradWeight = buffer
        }
        let w = winogradWeight!
        let source = try b.requireBlocked(x)
        let residualTwin = residual >= 0 ? try b.requireBlocked(residual) : -1
        let outTwin = b.blockedForm(output)!
        let inImage = Self.blockedImage(p.in_channels, p.in_height * p.in_width)
        let outImage = Self.blockedImage(p.out_channels, p.out_height * p.out_width)
        let parts = splitRange(kiln_conv2d_winograd_work(&p), parts: b.threads == 1 ? 1 : b.threads * 4)
        let params = p
        b.step { frame in
            let xp = frame.f(source), yp = frame.f(outTwin), bias = weights.biasPointer(frame)
            let rp: UnsafePointer<Float>? = residualTwin >= 0 ? UnsafePointer(frame.f(residualTwin)) : nil
            for n in 0..<batch {
                let e = makeEpilogue(bias: bias, residual: rp.map { $0 + n * outImage }, ldr: 0, activation: activation)
                frame.pool.parallelFor(parts.count) { i in
                    var q = params, ep = e
                    kiln_conv2d_winograd_prelu(&q, xp + n * inImage, w.pointer, yp + n * outImage, parts[i].lowerBound,
                                               parts[i].upperBound, &ep, slope?.pointer)
                }
            }
        }
    }

    private func planBlocked(_ b: PlanBuilder, p: kiln_conv2d_params, batch: Int, blockedInput: Bool, residual: Int,
                             weights: WeightSource, activation: Activation, slope: FloatBuffer?) throws {
        var p = p
        if usesWinograd(&p, blockedInput: blockedInput) {
            try planWinograd(b, p: p, batch: batch, residual: residual, weights: weights, activation: activation, slope: slope)
            return
        }
        let ib: Int32 = blockedInput ? 1 : 0
        let source: Int
        if blockedInput { source = try b.requireBlocked(x) } else { try b.requirePlain(x); source = x }
        let residualTwin = residual >= 0 ? try b.requireBlocked(residual) : -1
        let outTwin = b.blockedForm(output)!
        let pixels = p.out_height * p.out_width, inPixels = p.in_height * p.in_width
        let inImage = blockedInput ? Self.blockedImage(p.in_channels, inPixels) : p.in_channels * inPixels
        let outImage = Self.blockedImage(p.out_channels, pixels)
        let direct = kiln_conv2d_blocked_reads_input_directly(&p) != 0
        let padScratch = direct ? -1 : try b.scratch(bytes: kiln_conv2d_blocked_padded_size(&p, ib) * 4)
        let threads = b.threads
        let padParts = splitRange(kiln_conv2d_blocked_pad_units(&p, ib), parts: threads == 1 ? 1 : threads * 2)
        let workParts = splitRange(kiln_conv2d_blocked_work(&p), parts: threads == 1 ? 1 : threads * 4)
        let params = p
        b.step { frame in
            let xp = frame.f(source), yp = frame.f(outTwin), w = weights.weight(frame), bias = weights.biasPointer(frame)
            let rp: UnsafePointer<Float>? = residualTwin >= 0 ? UnsafePointer(frame.f(residualTwin)) : nil
            let padded = padScratch >= 0 ? frame.scratch(padScratch).assumingMemoryBound(to: Float.self) : nil
            for n in 0..<batch {
                let input = UnsafePointer(xp + n * inImage)
                var src = input
                if let padded {
                    frame.pool.parallelFor(padParts.count) { i in
                        var q = params
                        kiln_conv2d_blocked_pad_input(&q, ib, input, padded, padParts[i].lowerBound, padParts[i].upperBound)
                    }
                    src = UnsafePointer(padded)
                }
                let out = yp + n * outImage
                let e = makeEpilogue(bias: bias, residual: rp.map { $0 + n * outImage }, ldr: 0, activation: activation)
                frame.pool.parallelFor(workParts.count) { i in
                    var q = params, ep = e
                    kiln_conv2d_blocked_prelu(&q, ib, src, w, out, workParts[i].lowerBound, workParts[i].upperBound, &ep,
                                              slope?.pointer)
                }
            }
        }
    }

    private func planDepthwise(_ b: PlanBuilder, p: kiln_conv2d_params, batch: Int, residual: Int,
                               weights: WeightSource, activation: Activation, slope: FloatBuffer?) throws {
        let source = try b.requireBlocked(x)
        let residualTwin = residual >= 0 ? try b.requireBlocked(residual) : -1
        let outTwin = b.blockedForm(output)!
        let pixels = p.out_height * p.out_width, inPixels = p.in_height * p.in_width
        let inImage = Self.blockedImage(p.in_channels, inPixels), outImage = Self.blockedImage(p.out_channels, pixels)
        let blocks = Int(kiln_blocked_channels(p.in_channels)) / Int(KILN_BLOCK)
        let parts = splitRange(blocks, parts: b.threads == 1 ? 1 : b.threads * 4)
        let params = p
        b.step { frame in
            let xp = frame.f(source), yp = frame.f(outTwin), w = weights.weight(frame), bias = weights.biasPointer(frame)
            let rp: UnsafePointer<Float>? = residualTwin >= 0 ? UnsafePointer(frame.f(residualTwin)) : nil
            for n in 0..<batch {
                let e = makeEpilogue(bias: bias, residual: rp.map { $0 + n * outImage }, ldr: 0, activation: activation)
                frame.pool.parallelFor(parts.count) { i in
                    var q = params, ep = e
                    kiln_depthwise_conv2d_blocked_prelu(&q, xp + n * inImage, w, yp + n * outImage, parts[i].lowerBound,
                                                        parts[i].upperBound, &ep, slope?.pointer)
                }
            }
        }
    }

    private func planNCHW(_ b: PlanBuilder, p: kiln_conv2d_params, batch: Int, residual: Int, weights: WeightSource,
                          activation: Activation) throws {
        try b.requirePlain(x)
        try b.requirePlain(residual)
        let pixels = p.out_height * p.out_width
        let inImage = p.in_channels * p.in_height * p.in_width, outImage = outChannels * pixels
        let threads = b.threads
        // Work units: (image, range of pixels).
        var units: [(image: Int, range: Range<Int>)] = []
        let parts = threads == 1 ? 1 : (batch >= threads ? 1 : threads * 2)
        for n in 0..<batch { for r in splitRange(pixels, parts: parts, granule: 16) { units.append((n, r)) } }
        let (x, output, params) = (self.x, self.output, p)
        b.step { frame in
            let xp = frame.f(x), yp = frame.f(output), w = weights.weight(frame), bias = weights.biasPointer(frame)
            let rp: UnsafePointer<Float>? = residual >= 0 ? UnsafePointer(frame.f(residual)) : nil
            frame.pool.parallelFor(units.count) { u in
                let unit = units[u]
                var q = params
                var e = makeEpilogue(bias: bias, residual: rp.map { $0 + unit.image * outImage }, ldr: pixels, activation: activation)
                kiln_conv2d_nchw(&q, xp + unit.image * inImage, w, yp + unit.image * outImage, unit.range.lowerBound, unit.range.upperBound, &e)
            }
        }
    }
}
