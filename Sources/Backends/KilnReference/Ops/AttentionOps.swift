import KilnIR
#if canImport(Glibc)
import Glibc
#endif

/// Attention family: Attention (opset 23/24), RotaryEmbedding, LinearAttention, CausalConvWithState and
/// `ai.onnx.preview` FlexAttention. Computed in `Double`, results rounded to the inputs' element type.
enum AttentionOps {
    static func register(into table: inout KernelTable) {
        table.add("Attention") { ctx in try attention(ctx) }
        table.add("RotaryEmbedding") { ctx in [.tensor(try rotaryEmbedding(ctx))] }
        table.add("LinearAttention") { ctx in try linearAttention(ctx) }
        table.add("CausalConvWithState") { ctx in try causalConvWithState(ctx) }
        table.add("FlexAttention", domain: "ai.onnx.preview") { ctx in [.tensor(try flexAttention(ctx))] }
    }

    // MARK: shared helpers

    /// A rank-4 `(batch, heads, seq, head)` view of `t` as doubles: 4-D tensors as they are, 3-D
    /// `(batch, seq, heads × head)` tensors split into `heads` heads and transposed.
    static func heads4D(_ ctx: KernelContext, _ t: Tensor, heads: Int?, name: String) throws -> (values: [Double], shape: [Int]) {
        if t.rank == 4 { return (t.asDoubles(), t.shape) }
        guard t.rank == 3 else { throw ctx.fail("\(name) must have rank 3 or 4") }
        guard let heads, heads > 0, t.shape[2] % heads == 0 else {
            throw ctx.fail("\(name) has hidden size \(t.shape[2]), which does not split into \(heads ?? 0) heads")
        }
        let (b, s, d) = (t.shape[0], t.shape[1], t.shape[2] / heads)
        let src = t.asDoubles()
        var out = [Double](repeating: 0, count: src.count)
        for bi in 0..<b {
            for si in 0..<s {
                for h in 0..<heads {
                    let from = (bi * s + si) * heads * d + h * d
                    let to = ((bi * heads + h) * s + si) * d
                    for k in 0..<d { out[to + k] = src[from + k] }
                }
            }
        }
        return (out, [b, heads, s, d])
    }

    /// The inverse of `heads4D` for 3-D layouts: `(batch, heads, seq, head)` to `(batch, seq, heads × head)`.
    static func merge3D(_ values: [Double], _ shape: [Int]) -> [Double] {
        let (b, h, s, d) = (shape[0], shape[1], shape[2], shape[3])
        var out = [Double](repeating: 0, count: values.count)
        for bi in 0..<b {
            for hi in 0..<h {
                for si in 0..<s {
                    let from = ((bi * h + hi) * s + si) * d
                    let to = (bi * s + si) * h * d + hi * d
                    for k in 0..<d { out[to + k] = values[from + k] }
                }
            }
        }
        return out
    }

    /// Softmax of `row` in place; a row that is entirely -inf becomes NaN, as in the ONNX definition.
    static func softmax(_ row: inout [Double]) {
        let m = row.max() ?? 0
        var sum = 0.0
        for j in 0..<row.count {
            row[j] = exp(row[j] - m)
            sum += row[j]
        }
        for j in 0..<row.count { row[j] /= sum }
    }

    /// The element type a `softmax_precision` attribute names, if any.
    static func precisionType(_ ctx: KernelContext) throws -> DType? {
        guard let code = try ctx.int("softmax_precision") else { return nil }
        guard let t = DType(onnxCode: code), t.isFloatingPoint else { throw ctx.fail("softmax_precision \(code) is not a floating-point type") }
        return t
    }

    /// `values` rounded to `dtype` (a no-op for float64).
    static func rounded(_ values: [Double], to dtype: DType) -> [Double] {
        dtype == .float64 ? values : Tensor(dtype: dtype, shape: [values.count], doubles: values).asDoubles()
    }

    // MARK: Attention

    /// Attention (opset 23/24): scaled dot-product attention with masks, causal masking, softcap,
    /// grouped-query heads, a KV cache and an optional view of the attention scores.
    static func attention(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let qT = try ctx.tensor(0), kT = try ctx.tensor(1), vT = try ctx.tensor(2)
        guard qT.rank == kT.rank, kT.rank == vT.rank else { throw ctx.fail("Q, K and V must have the same rank") }
        let is3D = qT.rank == 3
        let qHeadsAttr = try ctx.int("q_num_heads"), kvHeadsAttr = try ctx.int("kv_num_heads")
        let (q, qShape) = try heads4D(ctx, qT, heads: qHeadsAttr, name: "Q")
        var (k, kShape) = try heads4D(ctx, kT, heads: kvHeadsAttr, name: "K")
        var (v, vShape) = try heads4D(ctx, vT, heads: kvHeadsAttr, name: "V")
        let (batch, qHeads, qLen, headSize) = (qShape[0], qShape[1], qShape[2], qShape[3])
        let kvHeads = kShape[1]
        guard kShape[0] == batch, vShape[0] == batch, vShape[1] == kvHeads, kShape[3] == headSize, vShape[2] == kShape[2] else {
            throw ctx.fail("shapes Q \(qT.shape), K \(kT.shape), V \(vT.shape) do not agree")
        }
        guard kvHeads > 0, qHeads % kvHeads == 0 else { throw ctx.fail("q heads \(qHeads) is not a multiple of kv heads \(kvHeads)") }
        let vHead = vShape[3]

        // KV cache: present = concat(past, new) along the sequence axis.
        let pastK = try ctx.optionalTensor(4), pastV = try ctx.optionalTensor(5)
        var pastLength = 0
        if let pastK {
            guard pastK.rank == 4, pastK.shape[0] == batch, pastK.shape[1] == kvHeads, pastK.shape[3] == headSize else {
                throw ctx.fail("past_key \(pastK.shape) does not match K")
            }
            pastLength = pastK.shape[2]
            k = concatSeq(pastK.asDoubles(), pastK.shape, k, kShape)
            kShape[2] += pastLength
        }
        if let pastV {
            guard pastV.rank == 4, pastV.shape[0] == batch, pastV.shape[1] == kvHeads, pastV.shape[3] == vHead else {
                throw ctx.fail("past_value \(pastV.shape) does not match V")
            }
            v = concatSeq(pastV.asDoubles(), pastV.shape, v, vShape)
            vShape[2] += pastV.shape[2]
        }
        let total = kShape[2]
        guard vShape[2] == total else { throw ctx.fail("past_key and past_value have different lengths") }

        let scale = try ctx.float("scale").map(Double.init) ?? 1 / Double(headSize).squareRoot()
        let softcap = Double(try ctx.float("softcap", 0))
        let causal = try ctx.int("is_causal", 0) != 0
        let mode = try ctx.int("qk_matmul_output_mode", 0)
        let precision = try precisionType(ctx)

        // The additive bias from attn_mask (broadcast to (batch, qHeads, qLen, total); a short last dim is
        // padded with -inf), is_causal and nonpad_kv_seqlen.
        let mask = try ctx.optionalTensor(3)
        var maskValues: [Double] = []
        var maskStrides = [0, 0, 0, 0]
        var maskLast = total
        if let mask {
            guard mask.rank >= 1, mask.rank <= 4 else { throw ctx.fail("attn_mask must have rank 1 to 4") }
            let dims = Array(repeating: 1, count: 4 - mask.rank) + mask.shape
            let target = [batch, qHeads, qLen, total]
            let s = strides(of: dims)
            for a in 0..<3 {
                guard dims[a] == 1 || dims[a] == target[a] else { throw ctx.fail("attn_mask \(mask.shape) does not broadcast to \(target)") }
                maskStrides[a] = dims[a] == 1 ? 0 : s[a]
            }
            maskStrides[3] = 1
            maskLast = dims[3]
            guard maskLast <= total else { throw ctx.fail("attn_mask's last dim \(maskLast) exceeds the total sequence length \(total)") }
            if mask.dtype == .bool {
                maskValues = mask.elements(as: Bool.self).map { $0 ? 0 : -Double.infinity }
            } else {
                maskValues = mask.asDoubles()
            }
        }
        let nonpad = try ctx.optionalTensor(6)?.asInts()
        if let nonpad, nonpad.count != batch { throw ctx.fail("nonpad_kv_seqlen must have \(batch) entries") }

        let wantScores = ctx.wants(3)
        var y = [Double](repeating: 0, count: batch * qHeads * qLen * vHead)
        var scoresOut = wantScores ? [Double](repeating: 0, count: batch * qHeads * qLen * total) : []
        let group = qHeads / kvHeads
        var row = [Double](repeating: 0, count: total)
        for b in 0..<batch {
            for h in 0..<qHeads {
                let kvh = h / group
                let kBase = (b * kvHeads + kvh) * total * headSize
                let vBase = (b * kvHeads + kvh) * total * vHead
                for i in 0..<qLen {
                    let qBase = ((b * qHeads + h) * qLen + i) * headSize
                    let outRow = ((b * qHeads + h) * qLen + i) * total
                    for j in 0..<total {
                        var s = 0.0
                        let kb = kBase + j * headSize
                        for d in 0..<headSize { s += q[qBase + d] * k[kb + d] }
                        row[j] = s * scale
                    }
                    if wantScores && mode == 0 { for j in 0..<total { scoresOut[outRow + j] = row[j] } }
                    if softcap > 0 { for j in 0..<total { row[j] = softcap * tanh(row[j] / softcap) } }
                    if wantScores && mode == 1 { for j in 0..<total { scoresOut[outRow + j] = row[j] } }
                    for j in 0..<total {
                        var bias = 0.0
                        if mask != nil {
                            if j >= maskLast {
                                bias = -.infinity
                            } else {
                                bias = maskValues[b * maskStrides[0] + h * maskStrides[1] + i * maskStrides[2] + j]
                            }
                        }
                        if causal && j > i + pastLength { bias = -.infinity }
                        if let nonpad, j >= nonpad[b] { bias = -.infinity }
                        row[j] += bias
                    }
                    if wantScores && mode == 2 { for j in 0..<total { scoresOut[outRow + j] = row[j] } }
                    if let precision { row = rounded(row, to: precision) }
                    softmax(&row)
                    if wantScores && mode == 3 { for j in 0..<total { scoresOut[outRow + j] = row[j] } }
                    let yBase = ((b * qHeads + h) * qLen + i) * vHead
                    for j in 0..<total where row[j] != 0 {
                        let p = row[j], vb = vBase + j * vHead
                        for d in 0..<vHead { y[yBase + d] += p * v[vb + d] }
                    }
                }
            }
        }
        let dtype = qT.dtype
        let yShape = [batch, qHeads, qLen, vHead]
        let yTensor = is3D
            ? Tensor(dtype: dtype, shape: [batch, qLen, qHeads * vHead], doubles: merge3D(y, yShape))
            : Tensor(dtype: dtype, shape: yShape, doubles: y)
        return [
            .tensor(yTensor),
            ctx.wants(1) ? .tensor(Tensor(dtype: kT.dtype, shape: kShape, doubles: k)) : nil,
            ctx.wants(2) ? .tensor(Tensor(dtype: vT.dtype, shape: vShape, doubles: v)) : nil,
            wantScores ? .tensor(Tensor(dtype: dtype, shape: [batch, qHeads, qLen, total], doubles: scoresOut)) : nil,
        ]
    }

    /// Two `(batch, heads, seq, head)` arrays joined along the sequence axis.
    static func concatSeq(_ a: [Double], _ aShape: [Int], _ b: [Double], _ bShape: [Int]) -> [Double] {
        let outer = aShape[0] * aShape[1]
        let aBlock = aShape[2] * aShape[3], bBlock = bShape[2] * bShape[3]
        var out: [Double] = []
        out.reserveCapacity(a.count + b.count)
        for o in 0..<outer {
            out.append(contentsOf: a[(o * aBlock)..<((o + 1) * aBlock)])
            out.append(contentsOf: b[(o * bBlock)..<((o + 1) * bBlock)])
        }
        return out
    }

    // MARK: RotaryEmbedding

    /// RotaryEmbedding: rotates the first `rotary_embedding_dim` features of every head by the cached
    /// angles (halves or interleaved pairs), for `(batch, heads, seq, head)` or `(batch, seq, hidden)` input.
    static func rotaryEmbedding(_ ctx: KernelContext) throws -> Tensor {
        let input = try ctx.tensor(0)
        let cosT = try ctx.tensor(1), sinT = try ctx.tensor(2)
        let positions = try ctx.optionalTensor(3)?.asInts()
        let interleaved = try ctx.int("interleaved", 0) != 0
        let x = input.asDoubles()
        // Element (b, s, h, d) of the input lives at b*bStride + s*sStride + h*hStride + d.
        let batch: Int, seq: Int, heads: Int, headSize: Int, bStride: Int, sStride: Int, hStride: Int
        if input.rank == 4 {
            (batch, heads, seq, headSize) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
            (bStride, hStride, sStride) = (heads * seq * headSize, seq * headSize, headSize)
        } else if input.rank == 3 {
            let numHeads = try ctx.int("num_heads", 0)
            guard numHeads > 0, numHeads <= max(input.shape[2], 1), input.shape[2] % numHeads == 0 else {
                throw ctx.fail("3-D input needs num_heads dividing the hidden size")
            }
            (batch, seq, heads, headSize) = (input.shape[0], input.shape[1], numHeads, input.shape[2] / numHeads)
            (bStride, sStride, hStride) = (seq * heads * headSize, heads * headSize, headSize)
        } else {
            throw ctx.fail("input must have rank 3 or 4")
        }
        var rotaryDim = try ctx.int("rotary_embedding_dim", 0)
        if rotaryDim == 0 { rotaryDim = headSize }
        let half = rotaryDim / 2
        guard rotaryDim <= headSize, rotaryDim % 2 == 0, cosT.shape.last == half, sinT.shape == cosT.shape else {
            throw ctx.fail("cos/sin caches \(cosT.shape) do not match rotary dim \(rotaryDim)")
        }
        let cosV = cosT.asDoubles(), sinV = sinT.asDoubles()
        if let positions { guard positions.count == batch * seq else { throw ctx.fail("position_ids must be (batch, seq)") } }
        var out = x
        for b in 0..<batch {
            for s in 0..<seq {
                // Row of the caches for this (batch, position).
                let cacheRow: Int
                if let positions {
                    cacheRow = positions[b * seq + s]
                    guard cacheRow >= 0, half == 0 || cacheRow < cosV.count / half else { throw ctx.fail("position id \(cacheRow) is out of range") }
                } else if cosT.rank == 3 {
                    cacheRow = b * seq + s
                } else {
                    cacheRow = s
                }
                guard (cacheRow + 1) * half <= cosV.count else { throw ctx.fail("cos/sin caches are too small") }
                for h in 0..<heads {
                    let base = b * bStride + s * sStride + h * hStride
                    for i in 0..<half {
                        let c = cosV[cacheRow * half + i], sn = sinV[cacheRow * half + i]
                        let i1 = interleaved ? base + 2 * i : base + i
                        let i2 = interleaved ? base + 2 * i + 1 : base + half + i
                        let x1 = x[i1], x2 = x[i2]
                        out[i1] = c * x1 - sn * x2
                        out[i2] = sn * x1 + c * x2
                    }
                }
            }
        }
        return Tensor(dtype: input.dtype, shape: input.shape, doubles: out)
    }

    // MARK: LinearAttention

    /// LinearAttention: a recurrent linear-attention state `S` (per batch and KV head, `d_k × d_v`) updated
    /// per token by the `linear`, `gated`, `delta` or `gated_delta` rule and read by the queries.
    static func linearAttention(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let qT = try ctx.tensor(0), kT = try ctx.tensor(1), vT = try ctx.tensor(2)
        let pastT = try ctx.optionalTensor(3), decayT = try ctx.optionalTensor(4), betaT = try ctx.optionalTensor(5)
        let rule = try ctx.string("update_rule", "gated_delta")
        guard let qHeads = try ctx.int("q_num_heads"), let kvHeads = try ctx.int("kv_num_heads"),
              qHeads > 0, kvHeads > 0, qHeads % kvHeads == 0 else {
            throw ctx.fail("q_num_heads must be a positive multiple of kv_num_heads")
        }
        let gating = rule == "gated" || rule == "gated_delta"
        let delta = rule == "delta" || rule == "gated_delta"
        guard ["linear", "gated", "delta", "gated_delta"].contains(rule) else { throw ctx.fail("unknown update_rule '\(rule)'") }
        guard gating == (decayT != nil) else { throw ctx.fail("update_rule '\(rule)' \(gating ? "needs" : "forbids") decay") }
        guard delta == (betaT != nil) else { throw ctx.fail("update_rule '\(rule)' \(delta ? "needs" : "forbids") beta") }
        guard qT.rank == 3, kT.rank == 3, vT.rank == 3 else { throw ctx.fail("query, key and value must have rank 3") }
        let (batch, steps) = (qT.shape[0], qT.shape[1])
        let dk = qT.shape[2] / qHeads, dv = vT.shape[2] / kvHeads
        guard kT.shape == [batch, steps, kvHeads * dk], vT.shape[0] == batch, vT.shape[1] == steps, qT.shape[2] == qHeads * dk else {
            throw ctx.fail("query \(qT.shape), key \(kT.shape) and value \(vT.shape) do not agree")
        }
        let group = qHeads / kvHeads
        let q = qT.asDoubles(), k = kT.asDoubles(), v = vT.asDoubles()
        var decay: [Double] = [], decayPerKey = false
        if let decayT {
            guard decayT.rank == 3, decayT.shape[0] == batch, decayT.shape[1] == steps,
                  decayT.shape[2] == kvHeads || decayT.shape[2] == kvHeads * dk else { throw ctx.fail("decay has shape \(decayT.shape)") }
            decayPerKey = decayT.shape[2] != kvHeads
            decay = decayT.asDoubles()
        }
        var beta: [Double] = [], betaWidth = 1
        if let betaT {
            guard betaT.rank == 3, betaT.shape[0] == batch, betaT.shape[1] == steps,
                  betaT.shape[2] == kvHeads || betaT.shape[2] == 1 else { throw ctx.fail("beta has shape \(betaT.shape)") }
            betaWidth = betaT.shape[2]
            beta = betaT.asDoubles()
        }
        let stateCount = batch * kvHeads * dk * dv
        var state: [Double]
        if let pastT {
            guard pastT.shape == [batch, kvHeads, dk, dv] else { throw ctx.fail("past_state has shape \(pastT.shape), expected \([batch, kvHeads, dk, dv])") }
            state = pastT.asDoubles().map { Double(Float($0)) }
        } else {
            state = [Double](repeating: 0, count: stateCount)
        }
        var scale = Double(try ctx.float("scale", 0))
        if scale == 0 { scale = 1 / Double(dk).squareRoot() }
        var out = [Double](repeating: 0, count: batch * steps * qHeads * dv)
        var vt = [Double](repeating: 0, count: dv)
        for b in 0..<batch {
            for t in 0..<steps {
                for hk in 0..<kvHeads {
                    let sBase = (b * kvHeads + hk) * dk * dv
                    let kBase = (b * steps + t) * kvHeads * dk + hk * dk
                    let vBase = (b * steps + t) * kvHeads * dv + hk * dv
                    if gating {
                        for d in 0..<dk {
                            let g = decayPerKey ? decay[(b * steps + t) * kvHeads * dk + hk * dk + d] : decay[(b * steps + t) * kvHeads + hk]
                            let factor = exp(g)
                            for m in 0..<dv { state[sBase + d * dv + m] *= factor }
                        }
                    }
                    for m in 0..<dv { vt[m] = v[vBase + m] }
                    if delta {
                        let bt = beta[(b * steps + t) * betaWidth + (betaWidth == 1 ? 0 : hk)]
                        for m in 0..<dv {
                            var retrieved = 0.0
                            for d in 0..<dk { retrieved += state[sBase + d * dv + m] * k[kBase + d] }
                            vt[m] = bt * (vt[m] - retrieved)
                        }
                    }
                    for d in 0..<dk {
                        let kd = k[kBase + d]
                        for m in 0..<dv { state[sBase + d * dv + m] += kd * vt[m] }
                    }
                    for hq in (hk * group)..<((hk + 1) * group) {
                        let qBase = (b * steps + t) * qHeads * dk + hq * dk
                        let oBase = (b * steps + t) * qHeads * dv + hq * dv
                        for m in 0..<dv {
                            var s = 0.0
                            for d in 0..<dk { s += q[qBase + d] * state[sBase + d * dv + m] }
                            out[oBase + m] = scale * s
                        }
                    }
                }
            }
        }
        return [
            .tensor(Tensor(dtype: qT.dtype, shape: [batch, steps, qHeads * dv], doubles: out)),
            ctx.wants(1) ? .tensor(Tensor(dtype: pastT?.dtype ?? qT.dtype, shape: [batch, kvHeads, dk, dv], doubles: state)) : nil,
        ]
    }

    // MARK: CausalConvWithState

    /// CausalConvWithState: a depthwise causal 1-D convolution over `(batch, channels, length)` whose left
    /// context comes from `past_state` (zeros when absent), with optional bias and SiLU; also returns the
    /// last `k - 1` input positions as the new state.
    static func causalConvWithState(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let input = try ctx.tensor(0), weight = try ctx.tensor(1)
        let biasT = try ctx.optionalTensor(2), pastT = try ctx.optionalTensor(3)
        let activation = try ctx.string("activation", "none")
        guard ["none", "silu", "swish"].contains(activation) else { throw ctx.fail("unknown activation '\(activation)'") }
        guard input.rank == 3, weight.rank == 3, weight.shape[0] == input.shape[1], weight.shape[1] == 1 else {
            throw ctx.fail("input \(input.shape) and weight \(weight.shape) must be (batch, channels, length) and (channels, 1, k)")
        }
        let (batch, channels, length, kernel) = (input.shape[0], input.shape[1], input.shape[2], weight.shape[2])
        guard kernel >= 1 else { throw ctx.fail("weight \(weight.shape) needs a kernel of at least 1") }
        let context = kernel - 1
        let x = input.asDoubles(), w = weight.asDoubles()
        let bias = biasT?.asDoubles() ?? [Double](repeating: 0, count: channels)
        guard bias.count == channels else { throw ctx.fail("bias must have \(channels) entries") }
        let past = pastT?.asDoubles() ?? [Double](repeating: 0, count: batch * channels * context)
        guard past.count == batch * channels * context else { throw ctx.fail("past_state must be \([batch, channels, context])") }
        let padded = length + context
        var out = [Double](repeating: 0, count: batch * channels * length)
        var state = [Double](repeating: 0, count: batch * channels * context)
        let silu = activation != "none"
        var row = [Double](repeating: 0, count: padded)
        for b in 0..<batch {
            for c in 0..<channels {
                let bc = b * channels + c
                for i in 0..<context { row[i] = past[bc * context + i] }
                for i in 0..<length { row[context + i] = x[bc * length + i] }
                for t in 0..<length {
                    var s = bias[c]
                    for j in 0..<kernel { s += w[c * kernel + j] * row[t + j] }
                    if silu {
                        // The convolution is rounded to the input type before the activation.
                        s = rounded([s], to: input.dtype)[0]
                        s = s / (1 + exp(-s))
                    }
                    out[bc * length + t] = s
                }
                for i in 0..<context { state[bc * context + i] = row[padded - context + i] }
            }
        }
        return [
            .tensor(Tensor(dtype: input.dtype, shape: input.shape, doubles: out)),
            ctx.wants(1) ? .tensor(Tensor(dtype: pastT?.dtype ?? input.dtype, shape: [batch, channels, context], doubles: state)) : nil,
        ]
    }

    // MARK: FlexAttention

    /// FlexAttention (`ai.onnx.preview`): rank-4 scaled dot-product attention whose scores and
    /// probabilities pass through optional `score_mod` / `prob_mod` subgraphs.
    static func flexAttention(_ ctx: KernelContext) throws -> Tensor {
        let qT = try ctx.tensor(0), kT = try ctx.tensor(1), vT = try ctx.tensor(2)
        guard qT.rank == 4, kT.rank == 4, vT.rank == 4 else { throw ctx.fail("Q, K and V must have rank 4") }
        let (batch, qHeads, qLen, headSize) = (qT.shape[0], qT.shape[1], qT.shape[2], qT.shape[3])
        let (kvHeads, kvLen, vHead) = (kT.shape[1], kT.shape[2], vT.shape[3])
        guard kT.shape[0] == batch, vT.shape[0] == batch, vT.shape[1] == kvHeads, vT.shape[2] == kvLen, kT.shape[3] == headSize,
              kvHeads > 0, qHeads % kvHeads == 0 else {
            throw ctx.fail("shapes Q \(qT.shape), K \(kT.shape), V \(vT.shape) do not agree")
        }
        let computeType = try precisionType(ctx) ?? (qT.dtype == .float64 ? .float64 : .float32)
        let scale = try ctx.float("scale").map(Double.init) ?? 1 / Double(headSize).squareRoot()
        let q = qT.asDoubles(), k = kT.asDoubles(), v = vT.asDoubles()
        let group = qHeads / kvHeads
        let rows = batch * qHeads * qLen
        var scores = [Double](repeating: 0, count: rows * kvLen)
        for b in 0..<batch {
            for h in 0..<qHeads {
                let kBase = (b * kvHeads + h / group) * kvLen * headSize
                for i in 0..<qLen {
                    let qBase = ((b * qHeads + h) * qLen + i) * headSize
                    let r = ((b * qHeads + h) * qLen + i) * kvLen
                    for j in 0..<kvLen {
                        var s = 0.0
                        for d in 0..<headSize { s += q[qBase + d] * k[kBase + j * headSize + d] }
                        scores[r + j] = s * scale
                    }
                }
            }
        }
        let shape = [batch, qHeads, qLen, kvLen]
        scores = rounded(scores, to: qT.dtype)
        scores = rounded(scores, to: computeType)
        if case .graph(let mod)? = ctx.node.attributes["score_mod"] {
            scores = try runMod(ctx, mod, Tensor(dtype: computeType, shape: shape, doubles: scores))
        }
        var row = [Double](repeating: 0, count: kvLen)
        for r in 0..<rows {
            for j in 0..<kvLen { row[j] = scores[r * kvLen + j] }
            softmax(&row)
            for j in 0..<kvLen { scores[r * kvLen + j] = row[j] }
        }
        scores = rounded(scores, to: computeType)
        if case .graph(let mod)? = ctx.node.attributes["prob_mod"] {
            scores = try runMod(ctx, mod, Tensor(dtype: computeType, shape: shape, doubles: scores))
        }
        var y = [Double](repeating: 0, count: rows * vHead)
        for b in 0..<batch {
            for h in 0..<qHeads {
                let vBase = (b * kvHeads + h / group) * kvLen * vHead
                for i in 0..<qLen {
                    let r = (b * qHeads + h) * qLen + i
                    for j in 0..<kvLen where scores[r * kvLen + j] != 0 {
                        let p = scores[r * kvLen + j]
                        for d in 0..<vHead { y[r * vHead + d] += p * v[vBase + j * vHead + d] }
                    }
                }
            }
        }
        return Tensor(dtype: vT.dtype, shape: [batch, qHeads, qLen, vHead], doubles: y)
    }

    /// Runs a one-input, one-output modifier subgraph of FlexAttention and returns its output as doubles.
    static func runMod(_ ctx: KernelContext, _ graph: Graph, _ input: Tensor) throws -> [Double] {
        let results = try ctx.runSubgraph(graph, [.tensor(input)])
        guard results.count == 1, let t = results[0].tensor, t.shape == input.shape else {
            throw ctx.fail("a modifier subgraph must return one tensor of shape \(input.shape)")
        }
        return t.asDoubles()
    }
}
