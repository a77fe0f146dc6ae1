/// Neural-network ops: matrix products, convolutions, pools, normalizations, recurrent layers, attention, image ops, losses and quantization.
extension OpCatalog {
    static func registerNeuralNetwork(into catalog: inout OpCatalog) {
        catalog.define([
            "Softmax", "LogSoftmax", "Hardmax", "LpNormalization", "MeanVarianceNormalization", "InstanceNormalization",
            "LRN", "GroupNormalization", "RMSNormalization", "RotaryEmbedding",
        ], rule: NodeInference.likeFirstInput)
        catalog.define(["Dropout"]) { inference in
            inference.set(0, inference.dtype(0), inference.shape(0))
            inference.set(1, .bool, inference.shape(0))
        }
        catalog.define(["BatchNormalization"]) { inference in
            inference.set(0, inference.dtype(0), inference.shape(0))
            inference.set(1, inference.dtype(3), inference.shape(3))
            inference.set(2, inference.dtype(4), inference.shape(4))
        }
        catalog.define(["LayerNormalization"]) { try $0.layerNormalization() }
        catalog.define(["MatMul"]) { try $0.matMul(dtype: $0.dtype(0)) }
        catalog.define(["MatMulInteger"]) { try $0.matMul(dtype: .int32) }
        catalog.define(["QLinearMatMul"]) { try $0.matMul(b: 3, dtype: $0.dtype(7)) }
        catalog.define(["Gemm"]) { try $0.gemm() }
        catalog.define(["Einsum"]) { $0.einsum() }
        catalog.define(["Det"]) { inference in
            inference.set(0, inference.dtype(0), inference.shape(0).flatMap { $0.count >= 2 ? Array($0.dropLast(2)) : nil })
        }
        catalog.define(["Conv", "DeformConv"]) { try $0.conv(dtype: $0.dtype(0)) }
        catalog.define(["ConvInteger"]) { try $0.conv(dtype: .int32) }
        catalog.define(["QLinearConv"]) { try $0.conv(weight: 3, dtype: $0.dtype(7)) }
        catalog.define(["ConvTranspose"]) { try $0.convTranspose() }
        catalog.define(["MaxPool", "AveragePool", "LpPool"]) { try $0.pool() }
        catalog.define(["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"]) { inference in
            let s = inference.shape(0).map { s in s.count < 2 ? s : Array(s[..<2]) + Array(repeating: Dim.fixed(1), count: s.count - 2) }
            inference.set(0, inference.dtype(0), s)
        }
        catalog.define(["MaxUnpool"]) { $0.maxUnpool() }
        catalog.define(["Resize"]) { try $0.resize() }
        catalog.define(["GridSample"]) { inference in
            if let x = inference.shape(0), let g = inference.shape(1), x.count >= 3, g.count == x.count {
                inference.set(0, inference.dtype(0), [x[0], x[1]] + g[1..<(g.count - 1)])
            } else {
                inference.set(0, inference.dtype(0), inference.shape(0).map { Array(repeating: Dim.unknown, count: $0.count) })
            }
        }
        catalog.define(["RoiAlign"]) { inference in
            let rois = inference.shape(1).flatMap { $0.count == 2 ? $0[0] : nil } ?? .unknown
            let channels = inference.shape(0).flatMap { $0.count == 4 ? $0[1] : nil } ?? .unknown
            inference.set(0, inference.dtype(0), [rois, channels, .fixed(inference.int("output_height", 1)),
                                                  .fixed(inference.int("output_width", 1))])
        }
        catalog.define(["NonMaxSuppression"]) { $0.set(0, .int64, [.unknown, .fixed(3)]) }
        catalog.define(["RNN", "GRU", "LSTM"]) { $0.recurrent() }
        // ONNX Runtime's dynamically quantized LSTM: the LSTM's outputs; R is [directions, hidden, 4·hidden].
        catalog.define(["DynamicQuantizeLSTM"], domain: "com.microsoft") { $0.recurrent(hiddenAxisOfR: 1) }
        catalog.define(["Attention"]) { $0.attention() }
        catalog.define(["NegativeLogLikelihoodLoss"]) { inference in
            inference.set(0, inference.dtype(0), inference.string("reduction", "mean") == "none" ? inference.shape(1) : [])
        }
        catalog.define(["SoftmaxCrossEntropyLoss"]) { inference in
            inference.set(0, inference.dtype(0), inference.string("reduction", "mean") == "none" ? inference.shape(1) : [])
            inference.set(1, inference.dtype(0), inference.shape(0))
        }
        catalog.define(["QuantizeLinear"]) { inference in
            inference.set(0, inference.dtypeAttribute("output_dtype", nil) ?? (inference.present(2) ? inference.dtype(2) : .uint8),
                          inference.shape(0))
        }
        catalog.define(["DequantizeLinear"]) { inference in
            inference.set(0, inference.dtypeAttribute("output_dtype", nil) ?? inference.dtype(1), inference.shape(0))
        }
        catalog.define(["DynamicQuantizeLinear"]) { inference in
            inference.set(0, .uint8, inference.shape(0))
            inference.set(1, .float32, [])
            inference.set(2, .uint8, [])
        }
    }
}

extension NodeInference {
    /// MatMul (numpy semantics, batched) of inputs 0 and `bi`, producing `dtype` (MatMulInteger: int32;
    /// QLinearMatMul: B is input 3, the result has the type of its zero point, input 7).
    mutating func matMul(b bi: Int = 1, dtype: DType?) throws {
        let ai = 0
        guard var a = shape(ai), var b = shape(bi), !a.isEmpty, !b.isEmpty else { return set(0, dtype, nil) }
        let (aVector, bVector) = (a.count == 1, b.count == 1)
        if aVector { a.insert(.fixed(1), at: 0) }
        if bVector { b.append(.fixed(1)) }
        let k1 = a[a.count - 1], k2 = b[b.count - 2]
        guard DimMath.unify(k1, k2) != nil else {
            throw failure("inner dims differ: \(describe(shape(ai)!)) × \(describe(shape(bi)!))")
        }
        guard let batch = DimMath.broadcast(Array(a.dropLast(2)), Array(b.dropLast(2))) else {
            throw failure("batch dims of \(describe(shape(ai)!)) and \(describe(shape(bi)!)) do not broadcast")
        }
        var out = batch
        if !aVector { out.append(a[a.count - 2]) }
        if !bVector { out.append(b[b.count - 1]) }
        set(0, dtype, out)
    }

    /// Gemm: `[M, N]` from A and B after their transposes.
    mutating func gemm() throws {
        guard let a = shape(0), let b = shape(1), a.count == 2, b.count == 2 else { return set(0, dtype(0), [.unknown, .unknown]) }
        let (m, k1) = int("transA", 0) != 0 ? (a[1], a[0]) : (a[0], a[1])
        let (k2, n) = int("transB", 0) != 0 ? (b[1], b[0]) : (b[0], b[1])
        guard DimMath.unify(k1, k2) != nil else { throw failure("inner dims differ: \(k1) and \(k2)") }
        if let c = shape(2), DimMath.broadcast(c, [m, n]).map({ $0.count == 2 }) != true {
            throw failure("C of shape \(describe(c)) does not broadcast to [\(m),\(n)]")
        }
        set(0, dtype(0), [m, n])
    }

    /// The output size of a sliding window over `input`.
    func windowOutput(_ input: Dim, kernel: Int, stride: Int, dilation: Int, begin: Int, end: Int,
                      autoPad: String, ceilMode: Bool) -> Dim {
        let span = (kernel &- 1) &* dilation &+ 1
        if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            if stride == 1 { return input }
            guard let d = input.value, Self.isSane(d) else { return .unknown }
            return .fixed((d + stride - 1) / stride)
        }
        let (b, e) = autoPad == "VALID" ? (0, 0) : (begin, end)
        guard let d = input.value, Self.isSane(d) else {
            return span == 1 && stride == 1 && b == 0 && e == 0 ? input : .unknown
        }
        let room = d &+ b &+ e &- span
        if room < 0 { return .unknown }
        if ceilMode {
            var out = (room + stride - 1) / stride + 1
            if (out &- 1) &* stride >= d &+ b { out -= 1 }
            return .fixed(out)
        }
        return .fixed(room / stride + 1)
    }

    /// The spatial window settings of a conv or pool over `spatial` dims.
    func window(spatial: Int, kernel: [Int]) -> (strides: [Int], dilations: [Int], begin: [Int], end: [Int], autoPad: String)? {
        let strides = ints("strides") ?? Array(repeating: 1, count: spatial)
        let dilations = ints("dilations") ?? Array(repeating: 1, count: spatial)
        let pads = ints("pads") ?? Array(repeating: 0, count: 2 * spatial)
        guard kernel.count == spatial, strides.count == spatial, dilations.count == spatial, pads.count == 2 * spatial,
              strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }), kernel.allSatisfy({ $0 > 0 }),
              (kernel + strides + dilations + pads).allSatisfy(Self.isSane) else { return nil }
        return (strides, dilations, Array(pads[..<spatial]), Array(pads[spatial...]), string("auto_pad", "NOTSET"))
    }

    /// Conv, ConvInteger, QLinearConv and DeformConv: a convolution of input 0 by input `wi` producing `dtype`
    /// (ConvInteger: int32; QLinearConv: W is input 3, the result has the type of its zero point, input 7).
    mutating func conv(weight wi: Int = 1, dtype: DType?) throws {
        let xi = 0
        var x = shape(xi), w = shape(wi)
        guard let rank = x?.count ?? w?.count, rank >= 3 else { return set(0, dtype, nil) }
        if x?.count != rank { x = nil }
        if w?.count != rank { w = nil }
        let spatial = rank - 2
        var out = Array(repeating: Dim.unknown, count: rank)
        out[0] = x?[0] ?? .unknown
        out[1] = w?[0] ?? .unknown
        let group = int("group", 1)
        if let c = x?[1].value, let wc = w?[1].value, c != wc &* group {
            throw failure("input has \(c) channels but the weights expect \(wc) × group \(group)")
        }
        let kernel = ints("kernel_shape") ?? w.flatMap { w in w.count == rank ? w[2...].map(\.value) : nil }
            .flatMap { $0.allSatisfy { $0 != nil } ? $0.map { $0! } : nil }
        if let x, let kernel, let settings = window(spatial: spatial, kernel: kernel) {
            for j in 0..<spatial {
                out[j + 2] = windowOutput(x[j + 2], kernel: kernel[j], stride: settings.strides[j],
                                          dilation: settings.dilations[j], begin: settings.begin[j],
                                          end: settings.end[j], autoPad: settings.autoPad, ceilMode: false)
            }
        }
        set(0, dtype, out)
    }

    /// ConvTranspose: `output_shape`, or the stride/pad arithmetic.
    mutating func convTranspose() throws {
        var x = shape(0), w = shape(1)
        guard let rank = x?.count ?? w?.count, rank >= 3 else { return set(0, dtype(0), nil) }
        if x?.count != rank { x = nil }
        if w?.count != rank { w = nil }
        let spatial = rank - 2
        let group = int("group", 1)
        var out = Array(repeating: Dim.unknown, count: rank)
        out[0] = x?[0] ?? .unknown
        if let w { out[1] = DimMath.multiply(w[1], .fixed(group)) }
        let kernel = ints("kernel_shape") ?? w.flatMap { w in w.count == rank ? w[2...].map(\.value) : nil }
            .flatMap { $0.allSatisfy { $0 != nil } ? $0.map { $0! } : nil }
        if let given = ints("output_shape"), given.count >= spatial {
            for j in 0..<spatial { out[j + 2] = .fixed(given[given.count - spatial + j]) }
        } else if let x, let kernel, let settings = window(spatial: spatial, kernel: kernel) {
            let outputPadding = ints("output_padding") ?? Array(repeating: 0, count: spatial)
            for j in 0..<spatial {
                guard let d = x[j + 2].value, j < outputPadding.count else { continue }
                let s = settings.strides[j]
                if settings.autoPad == "SAME_UPPER" || settings.autoPad == "SAME_LOWER" {
                    out[j + 2] = .fixed(d * s)
                } else {
                    let (b, e) = settings.autoPad == "VALID" ? (0, 0) : (settings.begin[j], settings.end[j])
                    let span = (kernel[j] &- 1) &* settings.dilations[j] &+ 1
                    out[j + 2] = .fixed(s &* (d &- 1) &+ outputPadding[j] &+ span &- b &- e)
                }
            }
        }
        set(0, dtype(0), out)
    }

    /// MaxPool (values and int64 indices), AveragePool and LpPool.
    mutating func pool() throws {
        guard let x = shape(0), x.count >= 3 else {
            set(0, dtype(0), nil)
            set(1, .int64, nil)
            return
        }
        let spatial = x.count - 2
        var out = Array(x[..<2]) + Array(repeating: Dim.unknown, count: spatial)
        if let kernel = ints("kernel_shape"), let settings = window(spatial: spatial, kernel: kernel) {
            let ceilMode = int("ceil_mode", 0) != 0
            for j in 0..<spatial {
                out[j + 2] = windowOutput(x[j + 2], kernel: kernel[j], stride: settings.strides[j],
                                          dilation: settings.dilations[j], begin: settings.begin[j],
                                          end: settings.end[j], autoPad: settings.autoPad, ceilMode: ceilMode)
            }
        }
        set(0, dtype(0), out)
        set(1, .int64, out)
    }

    /// MaxUnpool: `output_shape` (input 2) or the inverse pooling arithmetic.
    mutating func maxUnpool() {
        guard let x = shape(0), x.count >= 3 else { return set(0, dtype(0), nil) }
        if let given = known(2), given.count == x.count { return set(0, dtype(0), given.elements) }
        let spatial = x.count - 2
        var out = Array(x[..<2]) + Array(repeating: Dim.unknown, count: spatial)
        if !present(2), let kernel = ints("kernel_shape"), let settings = window(spatial: spatial, kernel: kernel) {
            for j in 0..<spatial {
                guard let d = x[j + 2].value else { continue }
                out[j + 2] = .fixed((d &- 1) &* settings.strides[j] &+ kernel[j] &- settings.begin[j] &- settings.end[j])
            }
        }
        set(0, dtype(0), out)
    }

    /// Resize from constant `sizes` (input 3) or `scales` (input 2), on `axes`.
    mutating func resize() throws {
        guard let s = shape(0) else { return set(0, dtype(0), nil) }
        var out = s
        let axes = try (ints("axes") ?? Array(s.indices)).map { try axis($0, rank: s.count) }
        let policy = string("keep_aspect_ratio_policy", "stretch")
        if present(3), known(3)?.count != 0 || (constant(3)?.count ?? 1) != 0 {
            guard let sizes = knownInts(3), sizes.count == axes.count else {
                return set(0, dtype(0), Array(repeating: .unknown, count: s.count))
            }
            if policy == "stretch" {
                for (j, a) in axes.enumerated() { out[a] = .fixed(sizes[j]) }
            } else {
                let inputs = axes.map { s[$0].value }
                guard inputs.allSatisfy({ ($0 ?? 0) > 0 }) else {
                    return set(0, dtype(0), Array(repeating: .unknown, count: s.count))
                }
                let ratios = zip(sizes, inputs).map { Double($0) / Double($1!) }
                let scale = policy == "not_larger" ? ratios.min()! : ratios.max()!
                for (j, a) in axes.enumerated() { out[a] = Self.exactDim(scale * Double(inputs[j]!) + 0.5) }
            }
        } else if let scales = constant(2), scales.count > 0, scales.dtype.isFloatingPoint {
            let values = scales.asDoubles()
            guard values.count == axes.count else { throw failure("scales has \(values.count) entries for \(axes.count) axes") }
            for (j, a) in axes.enumerated() {
                if let d = s[a].value {
                    out[a] = Self.exactDim(values[j] * Double(d))
                } else {
                    out[a] = values[j] == 1 ? s[a] : .unknown
                }
            }
        } else {
            out = Array(repeating: .unknown, count: s.count)
        }
        set(0, dtype(0), out)
    }

    /// LayerNormalization: Y like X; Mean and InvStdDev (in the stash type) with the normalized dims as 1.
    mutating func layerNormalization() throws {
        set(0, dtype(0), shape(0))
        let stash = dtypeAttribute("stash_type", .float32)
        guard let s = shape(0) else {
            set(1, stash, nil)
            set(2, stash, nil)
            return
        }
        let a = try axis(int("axis", -1), rank: s.count)
        let stats = Array(s[..<a]) + Array(repeating: Dim.fixed(1), count: s.count - a)
        set(1, stash, stats)
        set(2, stash, stats)
    }

    /// RNN, GRU and LSTM: Y, Y_h (and LSTM's Y_c) from `hidden_size`, `direction` and `layout`; without
    /// `hidden_size`, the hidden size is dim `hiddenAxisOfR` of R.
    mutating func recurrent(hiddenAxisOfR: Int = 2) {
        let dtype = dtype(0)
        let directions: Dim = string("direction", "forward") == "bidirectional" ? .fixed(2) : .fixed(1)
        let hidden: Dim = node.attributes["hidden_size"] != nil ? .fixed(int("hidden_size", 0))
                                                                : (shape(2).flatMap { $0.count == 3 ? $0[hiddenAxisOfR] : nil } ?? .unknown)
        let layout = int("layout", 0)
        guard let x = shape(0), x.count == 3 else {
            for i in 0..<outputCount { set(i, dtype, Array(repeating: .unknown, count: i == 0 ? 4 : 3)) }
            return
        }
        let (sequence, batch) = layout == 0 ? (x[0], x[1]) : (x[1], x[0])
        set(0, dtype, layout == 0 ? [sequence, directions, batch, hidden] : [batch, sequence, directions, hidden])
        let state: [Dim] = layout == 0 ? [directions, batch, hidden] : [batch, directions, hidden]
        set(1, dtype, state)
        set(2, dtype, state)
    }

    /// Attention (opset 23): Y, present key and value, and the QK product, from 3-D or 4-D inputs.
    mutating func attention() {
        let dtype = dtype(0)
        guard let q = shape(0), let k = shape(1), let v = shape(2), q.count == k.count, k.count == v.count,
              q.count == 3 || q.count == 4 else { return set(0, dtype, nil) }
        let batch = q[0]
        let qHeads, kvHeads, qSeq, kvSeq, vHead, kHead: Dim
        if q.count == 4 {
            (qHeads, qSeq, kvHeads, kvSeq, kHead, vHead) = (q[1], q[2], k[1], k[2], k[3], v[3])
        } else {
            guard node.attributes["q_num_heads"] != nil, node.attributes["kv_num_heads"] != nil else { return set(0, dtype, nil) }
            qHeads = .fixed(int("q_num_heads", 1))
            kvHeads = .fixed(int("kv_num_heads", 1))
            (qSeq, kvSeq) = (q[1], k[1])
            kHead = DimMath.divide(k[2], kvHeads)
            vHead = DimMath.divide(v[2], kvHeads)
        }
        var total = kvSeq
        if present(4) {
            if let past = shape(4), past.count == 4 { total = DimMath.add(past[2], kvSeq) } else { total = .unknown }
        }
        set(0, dtype, q.count == 4 ? [batch, qHeads, qSeq, vHead] : [batch, qSeq, DimMath.multiply(qHeads, vHead)])
        set(1, self.dtype(1), [batch, kvHeads, total, kHead])
        set(2, self.dtype(2), [batch, kvHeads, total, vHead])
        set(3, dtype, [batch, qHeads, qSeq, total])
    }

    /// Einsum: dims of the output letters (explicit or implicit output), ellipsis dims broadcast.
    mutating func einsum() {
        let dtype = dtype(0)
        let equation = string("equation", "").filter { $0 != " " }
        let sides = equation.split(separator: "-", omittingEmptySubsequences: false)
        guard sides.count <= 2, sides.count == 1 || sides[1].hasPrefix(">") else { return set(0, dtype, nil) }
        let lhs = String(sides[0])
        let terms = lhs.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard terms.count == node.inputs.count else { return set(0, dtype, nil) }
        var letters: [Character: Dim] = [:]
        var counts: [Character: Int] = [:]
        var ellipsis: [Dim] = []
        for (i, term) in terms.enumerated() {
            guard let s = shape(i) else { return set(0, dtype, nil) }
            let hasEllipsis = term.contains("...")
            let labels = Array(removingEllipsis(term))
            guard labels.allSatisfy(\.isLetter), term.count - labels.count == (hasEllipsis ? 3 : 0) else {
                return set(0, dtype, nil)
            }
            let ellipsisRank = s.count - labels.count
            guard ellipsisRank >= 0, hasEllipsis || ellipsisRank == 0 else { return set(0, dtype, nil) }
            var position = 0
            var index = term.startIndex
            while index < term.endIndex {
                if term[index...].hasPrefix("...") {
                    let dims = Array(s[position..<(position + ellipsisRank)])
                    guard let b = DimMath.broadcast(ellipsis, dims) else { return set(0, dtype, nil) }
                    ellipsis = b
                    position += ellipsisRank
                    index = term.index(index, offsetBy: 3)
                    continue
                }
                let c = term[index]
                let d = s[position]
                if let existing = letters[c] {
                    letters[c] = DimMath.unify(existing, d) ?? (existing == .fixed(1) ? d : (d == .fixed(1) ? existing : .unknown))
                } else {
                    letters[c] = d
                }
                counts[c, default: 0] += 1
                position += 1
                index = term.index(after: index)
            }
        }
        var out: [Dim] = []
        if sides.count == 2 {
            let rhs = String(sides[1].dropFirst())  // drop the '>'
            var index = rhs.startIndex
            while index < rhs.endIndex {
                if rhs[index...].hasPrefix("...") {
                    out += ellipsis
                    index = rhs.index(index, offsetBy: 3)
                    continue
                }
                guard let d = letters[rhs[index]] else { return set(0, dtype, nil) }
                out.append(d)
                index = rhs.index(after: index)
            }
        } else {
            out = ellipsis + counts.filter { $0.value == 1 }.keys.sorted().map { letters[$0]! }
        }
        set(0, dtype, out)
    }
}

/// `term` without its ellipsis (`...`).
private func removingEllipsis(_ term: String) -> String {
    var result = ""
    var index = term.startIndex
    while index < term.endIndex {
        if term[index...].hasPrefix("...") {
            index = term.index(index, offsetBy: 3)
        } else {
            result.append(term[index])
            index = term.index(after: index)
        }
    }
    return result
}
