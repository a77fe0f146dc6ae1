import CKilnKernels
import KilnIR

/// A two-operand float Mul whose operands are not constants. When, at plan time, one is an image [N, C, H, W]
/// held in the blocked layout (a convolution's output) and the other a per-channel [N, C, 1, 1] tensor
/// (squeeze-and-excitation), it runs in the blocked layout, so the convolutions around it need no reorders;
/// anything else runs as the broadcasting Mul on NCHW.
final class ChannelScaleOperation: LayoutAware {
    let kind = "Mul"
    let label: String
    let a: Int
    let b: Int
    let output: Int

    var inputs: [Int] { [a, b] }
    var outputs: [Int] { [output] }
    var imageValues: [Int] { [a, b, output] }

    init(label: String, a: Int, b: Int, output: Int) {
        self.label = label
        self.a = a
        self.b = b
        self.output = output
    }

    func plan(_ builder: PlanBuilder) throws {
        try builder.requireFloat(a)
        try builder.requireFloat(b)
        let aShape = try builder.shape(a), bShape = try builder.shape(b)
        // Blocked only when the image already is (a plain image stays plain: no reorders either way).
        func isScale(_ s: [Int], of x: [Int], image: Int) -> Bool {
            x.count == 4 && s == [x[0], x[1], 1, 1] && x[2] * x[3] > 1 && builder.blockedForm(image) != nil
        }
        let (x, scale, xs): (Int, Int, [Int])
        if isScale(bShape, of: aShape, image: a) {
            (x, scale, xs) = (a, b, aShape)
        } else if isScale(aShape, of: bShape, image: b) {
            (x, scale, xs) = (b, a, bShape)
        } else {
            try builder.requirePlain(a)
            try builder.requirePlain(b)
            guard let shape = Broadcasting.shape(aShape, bShape) else {
                throw builder.invalid("shapes \(aShape) and \(bShape) do not broadcast")
            }
            _ = try builder.defineInPlace(output, shape: shape, reusing: [a, b].filter { (try? builder.shape($0)) == shape })
            try Broadcasting.planBinary(builder, op: KILN_BINARY_MUL, a: a, b: b, output: output)
            return
        }
        try builder.requirePlain(scale)
        let source = try builder.requireBlocked(x)
        let twin = try builder.defineBlocked(output, shape: xs)
        if xs.reduce(1, *) == 0 { return }
        let (n, c, hw) = (xs[0], xs[1], xs[2] * xs[3])
        let image = Int(kiln_blocked_channels(c)) * hw
        let parts = splitRange(Int(kiln_blocked_channels(c)) / Int(KILN_BLOCK), parts: builder.threads == 1 ? 1 : builder.threads * 2)
        builder.step { frame in
            let xp = frame.f(source), yp = frame.f(twin), sp = frame.f(scale)
            for i in 0..<n {
                frame.pool.parallelFor(parts.count) { k in
                    kiln_blocked_channel_scale(c, hw, sp + i * c, xp + i * image, yp + i * image, parts[k].lowerBound, parts[k].upperBound)
                }
            }
        }
    }
}
