import CKilnKernels
import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// BatchNormalization in inference mode: `y = x · scale[c] + shift[c]`, with scale and shift computed once
/// when the statistics are constant.
final class BatchNormOperation: Operation {
    let kind = "BatchNormalization"
    let label: String
    let x: Int
    let parameters: [Int]
    let output: Int
    let epsilon: Float
    /// Scale and shift when every parameter is constant.
    let folded: (scale: FloatBuffer, shift: FloatBuffer)?

    var inputs: [Int] { [x] + parameters }
    var outputs: [Int] { [output] }

    init(node: Node, x: Int, parameters: [Int], constants: [Tensor?], output: Int) throws {
        label = node.displayName
        self.x = x
        self.parameters = parameters
        self.output = output
        epsilon = try node.float("epsilon", 1e-5)
        if constants.allSatisfy({ $0?.dtype == .float32 }) {
            let (scale, shift) = try BatchNormOperation.fold(constants.map { $0!.elements(as: Float.self) }, epsilon: epsilon, node: node)
            folded = (FloatBuffer(scale), FloatBuffer(shift))
        } else {
            folded = nil
        }
    }

    /// Scale `gamma / sqrt(var + eps)` and shift `beta - mean · scale` from [gamma, beta, mean, var].
    static func fold(_ p: [[Float]], epsilon: Float, node: Node) throws -> ([Float], [Float]) {
        let c = p[0].count
        guard p.allSatisfy({ $0.count == c }) else {
            throw KilnError(.invalidModel, "node '\(node.displayName)' (BatchNormalization): scale, bias, mean and var must have the same length")
        }
        var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
        for i in 0..<c {
            scale[i] = p[0][i] / (p[3][i] + epsilon).squareRoot()
            shift[i] = p[1][i] - p[2][i] * scale[i]
        }
        return (scale, shift)
    }

    func plan(_ b: PlanBuilder) throws {
        try b.requireFloat(x)
        let xs = try b.shape(x)
        guard xs.count >= 2 else { throw b.invalid("input must have rank ≥ 2, got \(xs)") }
        let channels = xs[1]
        try b.defineInPlace(output, shape: xs, reusing: [x])
        let count = xs.reduce(1, *)
        if count == 0 { return }
        var scaleScratch = -1
        if folded == nil {
            for p in parameters {
                try b.requireFloat(p)
                guard try b.shape(p).reduce(1, *) == channels else { throw b.invalid("parameter '\(b.name(p))' must have \(channels) elements") }
            }
            scaleScratch = try b.scratch(bytes: channels * 8)
        } else if folded!.scale.count != channels {
            throw b.invalid("parameters have \(folded!.scale.count) elements for \(channels) channels")
        }
        let rows = xs[0] * channels, cols = count / max(rows, 1)
        let (x, output, parameters, folded, epsilon) = (self.x, self.output, self.parameters, self.folded, self.epsilon)
        let parts = splitRange(rows, parts: b.threads > 1 && count >= 65_536 ? b.threads * 2 : 1)
        b.step { frame in
            var scale: UnsafePointer<Float>, shift: UnsafePointer<Float>
            if let folded {
                scale = UnsafePointer(folded.scale.pointer)
                shift = UnsafePointer(folded.shift.pointer)
            } else {
                let s = frame.scratch(scaleScratch).assumingMemoryBound(to: Float.self)
                let (g, bt, m, v) = (frame.f(parameters[0]), frame.f(parameters[1]), frame.f(parameters[2]), frame.f(parameters[3]))
                for c in 0..<channels {
                    s[c] = g[c] / (v[c] + epsilon).squareRoot()
                    s[channels + c] = bt[c] - m[c] * s[c]
                }
                scale = UnsafePointer(s)
                shift = UnsafePointer(s + channels)
            }
            let xp = frame.f(x), yp = frame.f(output)
            frame.pool.parallelFor(parts.count) { i in
                let r = parts[i]
                let offset = r.lowerBound * cols
                // Rows are (image, channel) planes: row r uses channel r % C.
                let c0 = r.lowerBound % channels
                var row = 0
                while row < r.count {
                    let c = (c0 + row) % channels
                    let run = min(r.count - row, channels - c)
                    kiln_binary(KILN_BINARY_MUL, KILN_BROADCAST_COLUMN, run, cols, xp + offset + row * cols, scale + c, run, 0,
                                yp + offset + row * cols)
                    kiln_binary(KILN_BINARY_ADD, KILN_BROADCAST_COLUMN, run, cols, yp + offset + row * cols, shift + c, run, 0,
                                yp + offset + row * cols)
                    row += run
                }
            }
        }
    }
}

/// LayerNormalization over the trailing dims from `axis`, with optional Mean and InvStdDev outputs.
final class LayerNormOperation: Operation {
    let kind = "LayerNormalization"
    let label: String
    let x: Int, gamma: Int, beta: Int
    let outputs: [Int]
    let axis: Int
    let epsilon: Float

    var inputs: [Int] { [x, gamma, beta] }

    init(node: Node, x: Int, gamma: Int, beta: Int, outputs: [Int]) throws {
        label = node.displayName
        self.x = x
        self.gamma = gamma
        self.beta = beta
        self.outputs = outputs
        axis = try node.int("axis", -1)
        epsilon = try node.float("epsilon", 1e-5)
    }

    func plan(_ b: PlanBuilder) throws {
        try b.requireFloat(x)
        let xs = try b.shape(x)
        let a = axis < 0 ? axis + xs.count : axis
        guard a >= 0, a < max(xs.count, 1) else { throw b.invalid("axis \(axis) is out of range for \(xs)") }
        let rows = xs[..<a].reduce(1, *), cols = xs[a...].reduce(1, *)
        for p in [gamma, beta] where p >= 0 {
            try b.requireFloat(p)
            let count = try b.shape(p).reduce(1, *)
            guard count == cols else { throw b.unsupported("'\(b.name(p))' has \(count) elements; kiln.cpu needs one per normalized element (\(cols))") }
        }
        try b.defineInPlace(outputs[0], shape: xs, reusing: [x])
        let statShape = Array(xs[..<a]) + Array(repeating: 1, count: xs.count - a)
        if outputs.count > 1 { try b.define(outputs[1], shape: statShape) }
        if outputs.count > 2 { try b.define(outputs[2], shape: statShape) }
        if rows * cols == 0 { return }
        let (x, gamma, beta, epsilon, outs) = (self.x, self.gamma, self.beta, self.epsilon, self.outputs)
        let parts = splitRange(rows, parts: b.threads > 1 && rows * cols >= 16_384 ? b.threads : 1)
        b.step { frame in
            let xp = frame.f(x), yp = frame.f(outs[0])
            let gp = frame.optionalF(gamma), bp = frame.optionalF(beta)
            let meanp = outs.count > 1 ? frame.optionalF(outs[1]) : nil
            let invp = outs.count > 2 ? frame.optionalF(outs[2]) : nil
            frame.pool.parallelFor(parts.count) { i in
                let r = parts[i], o = r.lowerBound * cols
                kiln_layer_norm_rows(r.count, cols, xp + o, cols, nil, yp + o, cols, gp, bp, epsilon,
                                     meanp.map { $0 + r.lowerBound }, invp.map { $0 + r.lowerBound })
            }
        }
    }
}

/// Softmax (and LogSoftmax) along one axis.
final class SoftmaxOperation: Operation {
    let kind: String
    let label: String
    let x: Int
    let output: Int
    let axis: Int
    let isLog: Bool

    var inputs: [Int] { [x] }
    var outputs: [Int] { [output] }

    init(node: Node, x: Int, output: Int) throws {
        kind = node.op.name
        label = node.displayName
        self.x = x
        self.output = output
        axis = try node.int("axis", -1)
        isLog = node.op.name == "LogSoftmax"
    }

    func plan(_ b: PlanBuilder) throws {
        try b.requireFloat(x)
        let xs = try b.shape(x)
        let a = axis < 0 ? axis + xs.count : axis
        guard a >= 0, a < max(xs.count, 1) else { throw b.invalid("axis \(axis) is out of range for \(xs)") }
        try b.defineInPlace(output, shape: xs, reusing: [x])
        let count = xs.reduce(1, *)
        if count == 0 { return }
        let outer = xs.isEmpty ? 1 : xs[..<a].reduce(1, *)
        let length = xs.isEmpty ? 1 : xs[a]
        let inner = xs.isEmpty ? 1 : xs[(a + 1)...].reduce(1, *)
        let (x, output, isLog) = (self.x, self.output, self.isLog)
        if inner == 1 && !isLog {
            let parts = splitRange(outer, parts: b.threads > 1 && count >= 16_384 ? b.threads * 2 : 1)
            b.step { frame in
                let xp = frame.f(x), yp = frame.f(output)
                frame.pool.parallelFor(parts.count) { i in
                    let r = parts[i], o = r.lowerBound * length
                    kiln_softmax_rows(r.count, length, xp + o, length, yp + o, length, 1, nil)
                }
            }
        } else {
            // Softmax across a non-trailing axis, and LogSoftmax: strided loops (rare in models).
            b.step { frame in
                let xp = frame.f(x), yp = frame.f(output)
                for o in 0..<outer {
                    for i in 0..<inner {
                        let base = o * length * inner + i
                        var m = -Float.infinity
                        for j in 0..<length { m = max(m, xp[base + j * inner]) }
                        var sum: Float = 0
                        for j in 0..<length { sum += expf(xp[base + j * inner] - m) }
                        let logSum = logf(sum)
                        for j in 0..<length {
                            let shifted = xp[base + j * inner] - m
                            yp[base + j * inner] = isLog ? shifted - logSum : expf(shifted) / sum
                        }
                    }
                }
            }
        }
    }
}
