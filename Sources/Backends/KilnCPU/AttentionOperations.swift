import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Attention (opset 23/24) over float32, as a `NodePlanner`: Q·Kᵀ scaled, soft-capped, masked (attn_mask,
/// is_causal, nonpad_kv_seqlen), softmax, times V; grouped heads, 3-D or 4-D layouts, a KV cache
/// (past → present) and the qk_matmul_output of each mode. Accumulates in Double.
extension SwiftOps {
    /// Why kiln.cpu does not run an Attention node, or nil.
    @Sendable static func attentionRejection(_ node: Node, _ facts: SupportFacts) -> String? {
        for (i, v) in node.inputs.enumerated() where !v.isEmpty {
            guard let t = facts.types[v] else { continue }
            if i == 3 && (t == .bool || t == .float32) { continue }
            if i == 6 && (t == .int64 || t == .int32) { continue }
            if t != .float32 { return "Attention input '\(v)' is \(t) (float32 expected)" }
        }
        if let code = try? node.int("softmax_precision", 1), code != 1 { return "Attention softmax_precision \(code) is not supported (float32 only)" }
        return nil
    }

    /// The element offset of (b, h, s, d) in a Q/K/V tensor of `shape` (3-D: heads interleaved in the last dim).
    static func attentionLayout(_ b: PlanBuilder, _ shape: [Int], heads: Int?, name: String) throws -> (shape: [Int], strides: [Int]) {
        if shape.count == 4 {
            let s = contiguousStrides(shape)
            return (shape, s)
        }
        guard shape.count == 3, let heads, heads > 0, shape[2] % heads == 0 else {
            throw b.invalid("\(name) \(shape) needs rank 4, or rank 3 with a head count that divides its hidden size")
        }
        let d = shape[2] / heads
        // (batch, heads, seq, head) read from (batch, seq, heads·head).
        return ([shape[0], heads, shape[1], d], [shape[1] * shape[2], d, shape[2], 1])
    }

    static func attention(_ b: PlanBuilder, _ node: Node, _ ins: [Int], _ outs: [Int]) throws {
        func input(_ i: Int) -> Int { i < ins.count ? ins[i] : -1 }
        func output(_ i: Int) -> Int { i < outs.count ? outs[i] : -1 }
        for i in [0, 1, 2, 4, 5] where input(i) >= 0 { try b.requireFloat(input(i)) }
        let qs = try b.shape(input(0)), ks = try b.shape(input(1)), vs = try b.shape(input(2))
        guard qs.count == ks.count, ks.count == vs.count else { throw b.invalid("Q, K and V must have the same rank") }
        let is3D = qs.count == 3
        let qHeadsAttr = try node.ints("q_num_heads")?.first, kvHeadsAttr = try node.ints("kv_num_heads")?.first
        let (q4, qStr) = try attentionLayout(b, qs, heads: qHeadsAttr, name: "Q")
        let (k4, kStr) = try attentionLayout(b, ks, heads: kvHeadsAttr, name: "K")
        let (v4, vStr) = try attentionLayout(b, vs, heads: kvHeadsAttr, name: "V")
        let (batch, qHeads, qLen, headSize) = (q4[0], q4[1], q4[2], q4[3])
        let kvHeads = k4[1], kvLen = k4[2], vHead = v4[3]
        guard k4[0] == batch, v4[0] == batch, v4[1] == kvHeads, k4[3] == headSize, v4[2] == kvLen else {
            throw b.invalid("shapes Q \(qs), K \(ks), V \(vs) do not agree")
        }
        guard kvHeads > 0, qHeads % kvHeads == 0 else { throw b.invalid("q heads \(qHeads) is not a multiple of kv heads \(kvHeads)") }
        var pastLength = 0
        if input(4) >= 0 {
            let p = try b.shape(input(4))
            guard p.count == 4, p[0] == batch, p[1] == kvHeads, p[3] == headSize else { throw b.invalid("past_key \(p) does not match K") }
            pastLength = p[2]
        }
        if input(5) >= 0 {
            let p = try b.shape(input(5))
            guard p.count == 4, p[0] == batch, p[1] == kvHeads, p[3] == vHead, p[2] == pastLength else { throw b.invalid("past_value \(p) does not match V") }
        } else if input(4) >= 0 {
            throw b.invalid("past_key without past_value")
        }
        let total = pastLength + kvLen
        let scaleValue = node.attributes["scale"] == nil ? 1 / Double(headSize).squareRoot() : Double(try node.float("scale", 1))
        let softcap = Double(try node.float("softcap", 0))
        let causal = try node.int("is_causal", 0) != 0
        let mode = try node.int("qk_matmul_output_mode", 0)
        guard (0...3).contains(mode) else { throw b.unsupported("qk_matmul_output_mode \(mode)") }
        var maskDims = [1, 1, 1, total], maskType = DType.float32
        if input(3) >= 0 {
            let m = try b.shape(input(3))
            maskType = try b.dtype(input(3))
            guard m.count >= 1, m.count <= 4 else { throw b.invalid("attn_mask must have rank 1 to 4") }
            maskDims = Array(repeating: 1, count: 4 - m.count) + m
            let target = [batch, qHeads, qLen, total]
            for a in 0..<3 where maskDims[a] != 1 && maskDims[a] != target[a] { throw b.invalid("attn_mask \(m) does not broadcast to \(target)") }
            guard maskDims[3] <= total else { throw b.invalid("attn_mask's last dim exceeds the total sequence length") }
        }
        let maskStrides = contiguousStrides(maskDims).enumerated().map { a, s in a < 3 && maskDims[a] == 1 ? 0 : s }
        let maskLast = maskDims[3]
        let nonpadType: DType? = input(6) >= 0 ? try b.dtype(input(6)) : nil
        if input(6) >= 0, try b.shape(input(6)).reduce(1, *) != batch { throw b.invalid("nonpad_kv_seqlen must have \(batch) entries") }
        let yShape = is3D ? [batch, qLen, qHeads * vHead] : [batch, qHeads, qLen, vHead]
        let presentK = [batch, kvHeads, total, headSize], presentV = [batch, kvHeads, total, vHead]
        let scoresShape = [batch, qHeads, qLen, total]
        let hasMask = input(3) >= 0, hasPast = input(4) >= 0, hasNonpad = input(6) >= 0
        let wantScores = output(3) >= 0
        let group = qHeads / kvHeads
        let inputIDs = (0..<7).map { input($0) }
        try b.compute([(output(0), yShape, .float32), (output(1), presentK, .float32), (output(2), presentV, .float32),
                       (output(3), scoresShape, .float32)], from: inputIDs) { p, o in
            let q = p[0].assumingMemoryBound(to: Float.self), kNew = p[1].assumingMemoryBound(to: Float.self)
            let vNew = p[2].assumingMemoryBound(to: Float.self)
            let pk = p[4].assumingMemoryBound(to: Float.self), pv = p[5].assumingMemoryBound(to: Float.self)
            // present_key/value = concat(past, new) along the sequence, in (batch, heads, seq, head).
            let kAll = o[1].assumingMemoryBound(to: Float.self), vAll = o[2].assumingMemoryBound(to: Float.self)
            for bi in 0..<batch {
                for h in 0..<kvHeads {
                    for s in 0..<total {
                        for d in 0..<headSize {
                            kAll[((bi * kvHeads + h) * total + s) * headSize + d] = s < pastLength && hasPast
                                ? pk[((bi * kvHeads + h) * pastLength + s) * headSize + d]
                                : kNew[bi * kStr[0] + h * kStr[1] + (s - pastLength) * kStr[2] + d * kStr[3]]
                        }
                        for d in 0..<vHead {
                            vAll[((bi * kvHeads + h) * total + s) * vHead + d] = s < pastLength && hasPast
                                ? pv[((bi * kvHeads + h) * pastLength + s) * vHead + d]
                                : vNew[bi * vStr[0] + h * vStr[1] + (s - pastLength) * vStr[2] + d * vStr[3]]
                        }
                    }
                }
            }
            let y = o[0].assumingMemoryBound(to: Float.self), scores = o[3].assumingMemoryBound(to: Float.self)
            var row = [Double](repeating: 0, count: total)
            var acc = [Double](repeating: 0, count: vHead)
            for bi in 0..<batch {
                let limit = hasNonpad ? Int(Element.int(p[6], nonpadType!, bi)) : total
                for h in 0..<qHeads {
                    let kvh = h / group
                    for i in 0..<qLen {
                        let qBase = bi * qStr[0] + h * qStr[1] + i * qStr[2]
                        let outRow = ((bi * qHeads + h) * qLen + i) * total
                        for j in 0..<total {
                            var s = 0.0
                            let kb = ((bi * kvHeads + kvh) * total + j) * headSize
                            for d in 0..<headSize { s += Double(q[qBase + d * qStr[3]]) * Double(kAll[kb + d]) }
                            row[j] = s * scaleValue
                        }
                        if wantScores && mode == 0 { for j in 0..<total { scores[outRow + j] = Float(row[j]) } }
                        if softcap > 0 { for j in 0..<total { row[j] = softcap * tanh(row[j] / softcap) } }
                        if wantScores && mode == 1 { for j in 0..<total { scores[outRow + j] = Float(row[j]) } }
                        for j in 0..<total {
                            var bias = 0.0
                            if hasMask {
                                if j >= maskLast { bias = -.infinity } else {
                                    let m = bi * maskStrides[0] + h * maskStrides[1] + i * maskStrides[2] + j
                                    bias = maskType == .bool ? (p[3].load(fromByteOffset: m, as: UInt8.self) != 0 ? 0 : -.infinity)
                                                             : Double(p[3].load(fromByteOffset: m * 4, as: Float.self))
                                }
                            }
                            if causal && j > i + pastLength { bias = -.infinity }
                            if hasNonpad && j >= limit { bias = -.infinity }
                            row[j] += bias
                        }
                        if wantScores && mode == 2 { for j in 0..<total { scores[outRow + j] = Float(row[j]) } }
                        let peak = row.max() ?? 0
                        if peak == -.infinity {
                            for j in 0..<total { row[j] = .nan }
                        } else {
                            var sum = 0.0
                            for j in 0..<total { row[j] = exp(row[j] - peak); sum += row[j] }
                            for j in 0..<total { row[j] /= sum }
                        }
                        if wantScores && mode == 3 { for j in 0..<total { scores[outRow + j] = Float(row[j]) } }
                        for d in 0..<vHead { acc[d] = 0 }
                        for j in 0..<total where row[j] != 0 {
                            let pj = row[j], vb = ((bi * kvHeads + kvh) * total + j) * vHead
                            for d in 0..<vHead { acc[d] += pj * Double(vAll[vb + d]) }
                        }
                        for d in 0..<vHead {
                            let at = is3D ? (bi * qLen + i) * qHeads * vHead + h * vHead + d : ((bi * qHeads + h) * qLen + i) * vHead + d
                            y[at] = Float(acc[d])
                        }
                    }
                }
            }
        }
    }
}
