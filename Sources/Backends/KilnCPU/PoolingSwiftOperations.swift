import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Pooling in plain Swift for what the C kernels (1-D and 2-D windows) do not take: MaxPool and AveragePool
/// over 3-D and larger windows, and LpPool of any rank. The geometry is `Window`'s (ONNX's formulas).
extension SwiftOps {
    /// Why kiln.cpu cannot run an LpPool node, or nil.
    static func lpPoolRejection(_ node: Node, _ facts: SupportFacts) -> String? {
        guard let k = (try? node.ints("kernel_shape")) ?? nil, !k.isEmpty else { return "LpPool needs kernel_shape" }
        return Window.rejection(of: node)
    }

    /// MaxPool, AveragePool (count_include_pad) or LpPool (p) over float32 of any spatial rank: one pass
    /// per output element over its window's taps, accumulated in Double.
    static func poolND(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 1, ins[0] >= 0, outs.count >= 1 else { throw b.invalid("needs an input") }
        try b.requireFloat(ins[0])
        let xs = try b.shape(ins[0])
        guard xs.count >= 3 else { throw b.invalid("input of shape \(xs) has no spatial dims") }
        let input = Array(xs[2...]), r = input.count
        guard let kernel = try node.ints("kernel_shape"), kernel.count == r else {
            throw b.invalid("kernel_shape must have \(r) entries for an input of shape \(xs)")
        }
        let window = try Window(node: node, kernel: kernel)
        let (output, begin, end) = window.resolve(input)
        // Bounds the work of one output element (a window of more than 2^24 taps is refused).
        _ = try b.checkedBytes(kernel, width: 1 << 9, name: "the pooling window")
        let op = node.op.name
        let includePad = try node.int("count_include_pad", 0) != 0
        let p = Double(try node.int("p", 2))
        let outShape = Array(xs[..<2]) + output
        _ = try b.checkedBytes(outShape, width: 4, name: b.name(outs[0]))
        let planes = xs[0] * xs[1], inCount = input.reduce(1, *), outCount = output.reduce(1, *)
        let taps = kernel.reduce(1, *)
        let inStrides = contiguousStrides(input)
        // Each tap's offset per dim (kernel index × dilation).
        var tapOffsets = [Int](repeating: 0, count: taps * r)
        for t in 0..<taps {
            var rest = t
            for j in stride(from: r - 1, through: 0, by: -1) {
                tapOffsets[t * r + j] = (rest % kernel[j]) * window.dilations[j]
                rest /= kernel[j]
            }
        }
        let strides = window.strides
        try b.compute([(outs[0], outShape, .float32)], from: [ins[0]]) { src, dst in
            let x = src[0].assumingMemoryBound(to: Float.self), y = dst[0].assumingMemoryBound(to: Float.self)
            var start = [Int](repeating: 0, count: r)
            for o in 0..<outCount {
                var rest = o
                for j in stride(from: r - 1, through: 0, by: -1) {
                    start[j] = (rest % output[j]) * strides[j] - begin[j]
                    rest /= output[j]
                }
                for plane in 0..<planes {
                    let base = plane * inCount
                    var sum = 0.0, inside = 0, padded = 0, best = -Double.infinity, sawNumber = false
                    for t in 0..<taps {
                        var offset = 0, isInside = true, isPadded = true
                        for j in 0..<r {
                            let at = start[j] + tapOffsets[t * r + j]
                            if at < 0 || at >= input[j] {
                                isInside = false
                                // Padding taps count toward count_include_pad; taps past the padding (ceil_mode) do not.
                                if at < -begin[j] || at >= input[j] + end[j] { isPadded = false }
                            }
                            offset += at * inStrides[j]
                        }
                        if isPadded { padded += 1 }
                        guard isInside else { continue }
                        let v = Double(x[base + offset])
                        inside += 1
                        switch op {
                        case "MaxPool":
                            if !v.isNaN, !sawNumber || v > best { best = v; sawNumber = true }
                        case "LpPool": sum += p == 1 ? abs(v) : (p == 2 ? v * v : pow(abs(v), p))
                        default: sum += v
                        }
                    }
                    let result: Double
                    switch op {
                    // A window of NaNs is NaN; one wholly in the padding is -infinity.
                    case "MaxPool": result = sawNumber ? best : (inside > 0 ? .nan : -.infinity)
                    case "LpPool": result = p == 1 ? sum : (p == 2 ? sum.squareRoot() : pow(sum, 1 / p))
                    default:
                        let count = includePad ? padded : inside
                        result = count > 0 ? sum / Double(count) : .nan
                    }
                    y[plane * outCount + o] = Float(result)
                }
            }
        }
    }
}

extension SwiftOps {
    /// Conv over 3-D and larger windows, float32, in plain Swift: groups, strides, dilations, pads or
    /// auto_pad, optional bias; each output a sum over its group's input channels and window taps,
    /// accumulated in Double. (1-D and 2-D convolutions take `ConvOperation`'s C kernels.)
    static func convND(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 2, ins[0] >= 0, ins[1] >= 0, outs.count >= 1 else { throw b.invalid("needs X and W") }
        let bias = ins.count > 2 ? ins[2] : -1
        for v in [ins[0], ins[1], bias] where v >= 0 { try b.requireFloat(v) }
        let xs = try b.shape(ins[0]), ws = try b.shape(ins[1])
        guard xs.count >= 3, ws.count == xs.count else { throw b.invalid("X of shape \(xs) and W of shape \(ws) do not fit") }
        let input = Array(xs[2...]), r = input.count
        let group = try node.int("group", 1)
        let outChannels = ws[0], groupChannels = ws[1]
        guard group >= 1, groupChannels * group == xs[1], outChannels % group == 0 else {
            throw b.invalid("W of shape \(ws) and group \(group) do not fit \(xs[1]) input channels")
        }
        let kernel = try node.ints("kernel_shape") ?? Array(ws[2...])
        guard kernel == Array(ws[2...]) else { throw b.invalid("kernel_shape \(kernel) does not match W of shape \(ws)") }
        if bias >= 0 {
            guard try b.shape(bias) == [outChannels] else { throw b.invalid("B must have \(outChannels) elements") }
        }
        let window = try Window(node: node, kernel: kernel)
        let (output, begin, _) = window.resolve(input)
        _ = try b.checkedBytes(kernel, width: 1 << 9, name: "the convolution window")
        let outShape = [xs[0], outChannels] + output
        _ = try b.checkedBytes(outShape, width: 4, name: b.name(outs[0]))
        let inCount = input.reduce(1, *), outCount = output.reduce(1, *), taps = kernel.reduce(1, *)
        let inStrides = contiguousStrides(input), perGroup = outChannels / group
        var tapOffsets = [Int](repeating: 0, count: taps * r)
        for t in 0..<taps {
            var rest = t
            for j in stride(from: r - 1, through: 0, by: -1) {
                tapOffsets[t * r + j] = (rest % kernel[j]) * window.dilations[j]
                rest /= kernel[j]
            }
        }
        let strides = window.strides, batch = xs[0], channels = xs[1]
        try b.compute([(outs[0], outShape, .float32)], from: [ins[0], ins[1], bias]) { src, dst in
            let x = src[0].assumingMemoryBound(to: Float.self), w = src[1].assumingMemoryBound(to: Float.self)
            let y = dst[0].assumingMemoryBound(to: Float.self)
            let biases: UnsafePointer<Float>? = bias >= 0 ? UnsafePointer(src[2].assumingMemoryBound(to: Float.self)) : nil
            var start = [Int](repeating: 0, count: r)
            // The input offset of each tap for the current output position, or -1 outside the input.
            var offsets = [Int](repeating: 0, count: taps)
            for o in 0..<outCount {
                var rest = o
                for j in stride(from: r - 1, through: 0, by: -1) {
                    start[j] = (rest % output[j]) * strides[j] - begin[j]
                    rest /= output[j]
                }
                for t in 0..<taps {
                    var offset = 0
                    for j in 0..<r {
                        let at = start[j] + tapOffsets[t * r + j]
                        if at < 0 || at >= input[j] { offset = -1; break }
                        offset += at * inStrides[j]
                    }
                    offsets[t] = offset
                }
                for n in 0..<batch {
                    for m in 0..<outChannels {
                        let g = m / perGroup
                        var acc = Double(biases?[m] ?? 0)
                        for c in 0..<groupChannels {
                            let plane = (n * channels + g * groupChannels + c) * inCount
                            let weights = (m * groupChannels + c) * taps
                            for t in 0..<taps where offsets[t] >= 0 {
                                acc += Double(x[plane + offsets[t]]) * Double(w[weights + t])
                            }
                        }
                        y[(n * outChannels + m) * outCount + o] = Float(acc)
                    }
                }
            }
        }
    }
}

extension SwiftOps {
    /// Col2Im over float32: input [N, C·∏block, L] of sliding blocks is summed back into an image of
    /// `image_shape` (both shape inputs read while planning), with strides, dilations and pads; L must be the
    /// number of block positions those give.
    static func col2Im(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        guard ins.count >= 3, ins[0] >= 0, ins[1] >= 0, ins[2] >= 0, outs.count >= 1 else { throw b.invalid("needs input, image_shape and block_shape") }
        try b.requireFloat(ins[0])
        let xs = try b.shape(ins[0]), image = try b.requireKnownInts(ins[1]), block = try b.requireKnownInts(ins[2])
        let r = image.count
        guard xs.count == 3, r >= 1, block.count == r, image.allSatisfy({ $0 >= 0 }), block.allSatisfy({ $0 > 0 }) else {
            throw b.invalid("input \(xs), image_shape \(image) and block_shape \(block) do not fit")
        }
        let strides = try node.ints("strides") ?? Array(repeating: 1, count: r)
        let dilations = try node.ints("dilations") ?? Array(repeating: 1, count: r)
        let pads = try node.ints("pads") ?? Array(repeating: 0, count: 2 * r)
        guard strides.count == r, dilations.count == r, pads.count == 2 * r, strides.allSatisfy({ $0 > 0 }),
              dilations.allSatisfy({ $0 > 0 }), pads.allSatisfy({ $0 >= 0 }) else {
            throw b.invalid("strides, dilations and pads must fit \(r) spatial dims")
        }
        if let reason = Window.rejection(kernel: block, strides: strides, dilations: dilations, pads: pads) { throw b.unsupported(reason) }
        // Products of hostile sizes must not overflow: bound them first.
        _ = try b.checkedBytes(block, width: 1, name: "block_shape")
        _ = try b.checkedBytes([xs[0], xs[1]] + image, width: 4, name: b.name(outs[0]))
        let blockCount = block.reduce(1, *)
        guard xs[1] % blockCount == 0 else { throw b.invalid("\(xs[1]) rows are not a multiple of the block's \(blockCount) elements") }
        let channels = xs[1] / blockCount, batch = xs[0]
        var positions: [Int] = []
        for d in 0..<r {
            let span: Int = dilations[d] * (block[d] - 1) + 1
            let room: Int = image[d] + pads[d] + pads[d + r] - span
            positions.append(room < 0 ? -1 : room / strides[d] + 1)
        }
        guard positions.allSatisfy({ $0 >= 0 }), try b.checkedBytes(positions, width: 1, name: "block positions") == xs[2] else {
            throw b.invalid("\(xs[2]) block positions given; image_shape \(image) has \(positions.reduce(1, *))")
        }
        let outShape = [batch, channels] + image
        let imageCount = image.reduce(1, *), positionCount = xs[2], imageStrides = contiguousStrides(image)
        try b.compute([(outs[0], outShape, .float32)], from: [ins[0]]) { p, o in
            let x = p[0].assumingMemoryBound(to: Float.self), y = o[0].assumingMemoryBound(to: Float.self)
            y.initialize(repeating: 0, count: batch * channels * imageCount)
            var k = [Int](repeating: 0, count: r), l = [Int](repeating: 0, count: r)
            for n in 0..<batch {
                for c in 0..<channels {
                    for kflat in 0..<blockCount {
                        var rest = kflat
                        for d in stride(from: r - 1, through: 0, by: -1) { k[d] = rest % block[d]; rest /= block[d] }
                        let row = ((n * channels + c) * blockCount + kflat) * positionCount
                        for lflat in 0..<positionCount {
                            var rest = lflat, offset = 0, inside = true
                            for d in stride(from: r - 1, through: 0, by: -1) { l[d] = rest % positions[d]; rest /= positions[d] }
                            for d in 0..<r {
                                let at = l[d] * strides[d] - pads[d] + k[d] * dilations[d]
                                if at < 0 || at >= image[d] { inside = false; break }
                                offset += at * imageStrides[d]
                            }
                            if inside { y[(n * channels + c) * imageCount + offset] += x[row + lflat] }
                        }
                    }
                }
            }
        }
    }
}
