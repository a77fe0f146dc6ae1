import KilnIR

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The optimizer ops of the `ai.onnx.preview.training` domain: Adagrad, Adam and Momentum.
///
/// Each takes a learning rate `R` and a step count `T` (scalars), then one group of tensors per optimized
/// quantity (weights, gradients, then the optimizer's state tensors), and returns the updated weights
/// followed by the updated state, group by group. Arithmetic is done in `Double` and rounded back to each
/// tensor's type. `Gradient` is not supported: it needs automatic differentiation of the enclosing graph.
enum TrainingOps {
    /// The ONNX domain of these ops.
    static let domain = "ai.onnx.preview.training"

    /// Adds this family's kernels to `table`.
    static func register(into table: inout KernelTable) {
        table.add("Adagrad", domain: domain) { ctx in try adagrad(ctx) }
        table.add("Adam", domain: domain) { ctx in try adam(ctx) }
        table.add("Momentum", domain: domain) { ctx in try momentum(ctx) }
    }

    /// The scalar learning rate `R` and step count `T`.
    static func rateAndStep(_ ctx: KernelContext) throws -> (rate: Double, step: Double) {
        let r = try ctx.tensor(0), t = try ctx.tensor(1)
        guard r.count == 1, t.count == 1 else { throw ctx.fail("R and T must be scalars") }
        let step = t.dtype.isFloatingPoint ? t.asDoubles()[0] : Double(t.asInt64s()[0])
        return (r.asDoubles()[0], step)
    }

    /// Splits the inputs after `R` and `T` into `groups` runs of equal length (one tensor per optimized value
    /// in each run), checking that the shapes of corresponding tensors agree.
    static func groupedInputs(_ ctx: KernelContext, groups: Int) throws -> [[Tensor]] {
        let rest = ctx.inputCount - 2
        guard rest > 0, rest % groups == 0 else {
            throw ctx.fail("expected a multiple of \(groups) inputs after R and T, got \(rest)")
        }
        let n = rest / groups
        var result: [[Tensor]] = []
        for g in 0..<groups {
            var run: [Tensor] = []
            for i in 0..<n {
                let t = try ctx.tensor(2 + g * n + i)
                guard t.dtype.isFloatingPoint else { throw ctx.unsupported("element type \(t.dtype)") }
                if g > 0 && t.shape != result[0][i].shape {
                    throw ctx.fail("input \(2 + g * n + i) has shape \(t.shape), expected \(result[0][i].shape)")
                }
                run.append(t)
            }
            result.append(run)
        }
        return result
    }

    /// Adagrad: `H += (λX + G)²`, `X -= R / (1 + T·decay) · (λX + G) / (√H + ε)`.
    static func adagrad(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let (rate, step) = try rateAndStep(ctx)
        let decay = Double(try ctx.float("decay_factor", 0))
        let epsilon = Double(try ctx.float("epsilon", 1e-6))
        let lambda = Double(try ctx.float("norm_coefficient", 0))
        let groups = try groupedInputs(ctx, groups: 3)
        let r = rate / (1 + step * decay)
        var xs: [RuntimeValue?] = [], hs: [RuntimeValue?] = []
        for i in 0..<groups[0].count {
            let xT = groups[0][i], hT = groups[2][i]
            let x = xT.asDoubles(), g = groups[1][i].asDoubles(), h = hT.asDoubles()
            var xNew = x, hNew = h
            for k in 0..<x.count {
                let gr = lambda * x[k] + g[k]
                hNew[k] = h[k] + gr * gr
                xNew[k] = x[k] - r * gr / (hNew[k].squareRoot() + epsilon)
            }
            xs.append(.tensor(Tensor(dtype: xT.dtype, shape: xT.shape, doubles: xNew)))
            hs.append(.tensor(Tensor(dtype: hT.dtype, shape: hT.shape, doubles: hNew)))
        }
        return xs + hs
    }

    /// Adam with optional L2 regularization before the step (`norm_coefficient`) and weight decay after
    /// it (`norm_coefficient_post`); the learning rate is bias-corrected when `T > 0`.
    static func adam(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let (rate, step) = try rateAndStep(ctx)
        let alpha = Double(try ctx.float("alpha", 0.9))
        let beta = Double(try ctx.float("beta", 0.999))
        let epsilon = Double(try ctx.float("epsilon", 1e-6))
        let lambda = Double(try ctx.float("norm_coefficient", 0))
        let lambdaPost = Double(try ctx.float("norm_coefficient_post", 0))
        let groups = try groupedInputs(ctx, groups: 4)
        let r = step > 0 ? rate * (1 - pow(beta, step)).squareRoot() / (1 - pow(alpha, step)) : rate
        var xs: [RuntimeValue?] = [], vs: [RuntimeValue?] = [], hs: [RuntimeValue?] = []
        for i in 0..<groups[0].count {
            let xT = groups[0][i], vT = groups[2][i], hT = groups[3][i]
            let x = xT.asDoubles(), g = groups[1][i].asDoubles(), v = vT.asDoubles(), h = hT.asDoubles()
            var xNew = x, vNew = v, hNew = h
            for k in 0..<x.count {
                let gr = lambda * x[k] + g[k]
                vNew[k] = alpha * v[k] + (1 - alpha) * gr
                hNew[k] = beta * h[k] + (1 - beta) * gr * gr
                let stepped = x[k] - r * vNew[k] / (hNew[k].squareRoot() + epsilon)
                xNew[k] = (1 - lambdaPost) * stepped
            }
            xs.append(.tensor(Tensor(dtype: xT.dtype, shape: xT.shape, doubles: xNew)))
            vs.append(.tensor(Tensor(dtype: vT.dtype, shape: vT.shape, doubles: vNew)))
            hs.append(.tensor(Tensor(dtype: hT.dtype, shape: hT.shape, doubles: hNew)))
        }
        return xs + vs + hs
    }

    /// Momentum, `standard` or `nesterov`; the gradient's coefficient `beta` is 1 on the first step (`T == 0`).
    static func momentum(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let (rate, step) = try rateAndStep(ctx)
        guard let alphaF = try ctx.float("alpha"), let betaF = try ctx.float("beta"),
              let lambdaF = try ctx.float("norm_coefficient") else {
            throw ctx.fail("attributes alpha, beta and norm_coefficient are required")
        }
        let mode = try ctx.string("mode", "standard")
        guard mode == "standard" || mode == "nesterov" else { throw ctx.fail("unknown mode '\(mode)'") }
        let alpha = Double(alphaF), lambda = Double(lambdaF)
        let beta = step > 0 ? Double(betaF) : 1
        let groups = try groupedInputs(ctx, groups: 3)
        var xs: [RuntimeValue?] = [], vs: [RuntimeValue?] = []
        for i in 0..<groups[0].count {
            let xT = groups[0][i], vT = groups[2][i]
            let x = xT.asDoubles(), g = groups[1][i].asDoubles(), v = vT.asDoubles()
            var xNew = x, vNew = v
            for k in 0..<x.count {
                let gr = lambda * x[k] + g[k]
                vNew[k] = alpha * v[k] + beta * gr
                xNew[k] = mode == "standard" ? x[k] - rate * vNew[k] : x[k] - rate * (gr + alpha * vNew[k])
            }
            xs.append(.tensor(Tensor(dtype: xT.dtype, shape: xT.shape, doubles: xNew)))
            vs.append(.tensor(Tensor(dtype: vT.dtype, shape: vT.shape, doubles: vNew)))
        }
        return xs + vs
    }
}
