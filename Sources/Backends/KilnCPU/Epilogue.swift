import CKilnKernels

extension Activation {
    /// The C kernels' activation code.
    var code: kiln_activation {
        switch kind {
        case .none: KILN_ACT_NONE
        case .relu: KILN_ACT_RELU
        case .clip: KILN_ACT_CLIP
        case .sigmoid: KILN_ACT_SIGMOID
        case .silu: KILN_ACT_SILU
        case .hardSigmoid: KILN_ACT_HARDSIGMOID
        case .hardSwish: KILN_ACT_HARDSWISH
        case .geluErf: KILN_ACT_GELU_ERF
        case .geluTanh: KILN_ACT_GELU_TANH
        case .tanh: KILN_ACT_TANH
        case .leakyRelu: KILN_ACT_LEAKY_RELU
        }
    }

    /// Applies the activation to `count` floats at `x`, writing `y` (which may be `x`).
    func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        if kind == .none {
            if UnsafePointer(y) != x { y.update(from: x, count: count) }
            return
        }
        kiln_activation_apply(code, alpha, beta, count, x, y)
    }
}

/// Builds a `kiln_epilogue` for one kernel call.
@inline(__always)
func makeEpilogue(bias: UnsafePointer<Float>?, biasPerRow: Bool = false, residual: UnsafePointer<Float>?, ldr: Int,
                  activation: Activation) -> kiln_epilogue {
    kiln_epilogue(bias: bias, bias_per_row: biasPerRow ? 1 : 0, residual: residual, ldr: ldr,
                  activation: activation.code, alpha: activation.alpha, beta: activation.beta)
}

/// Splits `0..<count` into `parts` nearly equal ranges whose bounds are multiples of `granule` (except the end).
func splitRange(_ count: Int, parts: Int, granule: Int = 1) -> [Range<Int>] {
    let units = (count + granule - 1) / granule
    let n = max(1, min(parts, units))
    var ranges: [Range<Int>] = []
    var start = 0
    for i in 0..<n {
        let endUnit = units * (i + 1) / n
        let end = min(count, endUnit * granule)
        if end > start { ranges.append(start..<end) }
        start = end
    }
    return ranges
}
