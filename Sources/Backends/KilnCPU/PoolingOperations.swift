import CKilnKernels
import KilnIR

/// MaxPool and AveragePool over 1-D or 2-D windows: in the blocked layout (NCHW16c) when the input has
/// it (the output of a convolution), else in NCHW.
final class PoolOperation: LayoutAware {
    let kind: String
    let label: String
    let x: Int
    let output: Int
    let window: Window
    let isMax: Bool
    let countIncludePad: Bool

    var inputs: [Int] { [x] }
    var outputs: [Int] { [output] }
    var imageValues: [Int] { [x, output] }

    init(node: Node, x: Int, output: Int) throws {
        kind = node.op.name
        label = node.displayName
        self.x = x
        self.output = output
        guard let kernel = try node.ints("kernel_shape") else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (\(node.op)): kernel_shape is required")
        }
        window = try Window(node: node, kernel: kernel)
        isMax = node.op.name == "MaxPool"
        countIncludePad = try node.int("count_include_pad", 0) != 0
    }

    func plan(_ b: PlanBuilder) throws {
        try b.requireFloat(x)
        let xs = try b.shape(x)
        let r = window.kernel.count
        guard xs.count == 2 + r, r <= 2 else { throw b.unsupported("input \(xs) with a \(r)-D window (kiln.cpu pools 1-D and 2-D)") }
        let (p, outSpatial) = window.params(channels: xs[1], outChannels: xs[1], input: Array(xs[2...]), groups: 1)
        let outShape = [xs[0], xs[1]] + outSpatial
        let inPlane = p.in_height * p.in_width, outPlane = p.out_height * p.out_width
        // Average pooling divides by the taps inside the declared padding (not the ceil-mode overhang).
        let ends = window.resolve(Array(xs[2...])).end
        let padBottom = r == 1 ? 0 : ends[0], padRight = r == 1 ? ends[0] : ends[1]
        if let source = b.blockedForm(x) {
            let target = try b.defineBlocked(output, shape: outShape)
            if outShape.reduce(1, *) == 0 { return }
            let blocks = Int(kiln_blocked_channels(xs[1])) / Int(KILN_BLOCK)
            let inImage = blocks * Int(KILN_BLOCK) * inPlane, outImage = blocks * Int(KILN_BLOCK) * outPlane
            let parts = splitRange(blocks, parts: b.threads == 1 ? 1 : b.threads * 4)
            let (batch, isMax, includePad) = (xs[0], self.isMax, self.countIncludePad)
            b.step { frame in
                let xp = frame.f(source), yp = frame.f(target)
                for n in 0..<batch {
                    frame.pool.parallelFor(parts.count) { i in
                        var q = p
                        let (src, dst) = (xp + n * inImage, yp + n * outImage)
                        let (c0, c1) = (parts[i].lowerBound, parts[i].upperBound)
                        if isMax {
                            kiln_maxpool2d_blocked(&q, src, dst, c0, c1)
                        } else {
                            kiln_avgpool2d_blocked(&q, includePad ? 1 : 0, padBottom, padRight, src, dst, c0, c1)
                        }
                    }
                }
            }
            return
        }
        try b.define(output, shape: outShape)
        let planes = xs[0] * xs[1]
        if outShape.reduce(1, *) == 0 { return }
        let parts = splitRange(planes, parts: b.threads == 1 ? 1 : b.threads * 2)
        let (x, output, isMax, includePad) = (self.x, self.output, self.isMax, self.countIncludePad)
        b.step { frame in
            let xp = frame.f(x), yp = frame.f(output)
            frame.pool.parallelFor(parts.count) { i in
                var q = p
                q.in_channels = parts[i].count
                q.out_channels = parts[i].count
                let src = xp + parts[i].lowerBound * inPlane, dst = yp + parts[i].lowerBound * outPlane
                if isMax {
                    kiln_maxpool2d_nchw(&q, src, dst)
                } else {
                    kiln_avgpool2d_nchw_padded(&q, includePad ? 1 : 0, padBottom, padRight, src, dst)
                }
            }
        }
    }
}

/// GlobalAveragePool and GlobalMaxPool: one value per channel plane, read from the blocked layout when
/// the input has it; the output is NCHW.
final class GlobalPoolOperation: LayoutAware {
    let kind: String
    let label: String
    let x: Int
    let output: Int
    let isMax: Bool

    var inputs: [Int] { [x] }
    var outputs: [Int] { [output] }

    init(node: Node, x: Int, output: Int) {
        kind = node.op.name
        label = node.displayName
        self.x = x
        self.output = output
        isMax = node.op.name == "GlobalMaxPool"
    }

    var imageValues: [Int] { [x] }

    func plan(_ b: PlanBuilder) throws {
        try b.requireFloat(x)
        let xs = try b.shape(x)
        guard xs.count >= 3 else { throw b.invalid("input must have rank ≥ 3, got \(xs)") }
        let outShape = [xs[0], xs[1]] + Array(repeating: 1, count: xs.count - 2)
        try b.define(output, shape: outShape)
        let planes = xs[0] * xs[1], plane = xs[2...].reduce(1, *)
        if planes == 0 { return }
        if plane == 0 { throw b.invalid("pooling over an empty plane") }
        if let source = b.blockedForm(x) {
            let (batch, channels, output, isMax) = (xs[0], xs[1], self.output, self.isMax)
            let inImage = Int(kiln_blocked_channels(channels)) * plane
            b.step { frame in
                let xp = frame.f(source), yp = frame.f(output)
                for n in 0..<batch { kiln_global_pool_blocked(channels, plane, isMax ? 1 : 0, xp + n * inImage, yp + n * channels) }
            }
            return
        }
        let parts = splitRange(planes, parts: b.threads == 1 || planes * plane < 65_536 ? 1 : b.threads)
        let (x, output, isMax) = (self.x, self.output, self.isMax)
        b.step { frame in
            let xp = frame.f(x), yp = frame.f(output)
            frame.pool.parallelFor(parts.count) { i in
                let r = parts[i]
                if isMax {
                    for c in r {
                        var m = -Float.infinity
                        let src = xp + c * plane
                        for j in 0..<plane { m = max(m, src[j]) }
                        yp[c] = m
                    }
                } else {
                    kiln_global_avgpool_nchw(r.count, plane, xp + r.lowerBound * plane, yp + r.lowerBound)
                }
            }
        }
    }
}
