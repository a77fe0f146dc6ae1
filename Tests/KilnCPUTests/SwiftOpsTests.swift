// kiln.cpu's Swift-only ops (elementwise of any type, indexing, reductions, Resize, ConvTranspose) and the
// staged plans of values computed at run time, on randomized shapes and attributes against kiln.reference.
import Kiln
import KilnCPU
import KilnReference
import Testing
import KilnTestSupport

@Suite("kiln.cpu Swift ops against kiln.reference")
struct SwiftOpsTests {
    static func randomShape(_ r: inout SplitMix64, rank: Int, _ range: ClosedRange<Int> = 1...5) -> [Int] {
        (0..<rank).map { _ in r.int(range) }
    }

    static func ints(_ r: inout SplitMix64, _ shape: [Int], _ range: ClosedRange<Int>, _ dtype: DType = .int64) -> Tensor {
        Tensor(dtype: dtype, shape: shape, int64s: (0..<shape.reduce(1, *)).map { _ in Int64(r.int(range)) })
    }

    @Test("Elementwise: comparisons, logic, Where, Pow, integer arithmetic and activations, with broadcasting")
    func elementwise() throws {
        var r = SplitMix64(seed: 101)
        for caseIndex in 0..<24 {
            let rank = r.int(1...4)
            let a = Self.randomShape(&r, rank: rank)
            var bShape = a.map { r.int(0...2) == 0 ? 1 : $0 }
            if r.bool() { bShape = Array(bShape.dropFirst(r.int(0...(rank - 1)))) }
            var g = TestGraph()
            let x = g.input("x", a), y = g.input("y", bShape)
            let cmp = g.node(r.pick(["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]), [x, y])
            let other = g.node(r.pick(["Less", "Greater"]), [x, g.constant(Tensor(scalar: Float(0)))])
            let logic = g.node(r.pick(["And", "Or", "Xor"]), [cmp, other])
            let w = g.node("Where", [g.node("Not", [logic]), x, y])
            let p = g.node("Pow", [g.node("Abs", [w]), g.constant(Tensor(scalar: Float(r.pick([0.5, 2, 3]))))])
            let act = r.pick(["Softplus", "Softsign", "Elu", "Selu", "Celu", "Mish", "Gelu", "Floor", "Ceil", "Round", "Sin",
                              "Cos", "Atan", "Sign", "ThresholdedRelu", "Shrink"])
            let z = g.node(act, [g.node("Mul", [p, g.constant(Tensor(scalar: Float(3)))])])
            let m = g.node(r.pick(["Mean", "PRelu"]), [z, y])
            g.output(m, cmp)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor(a, -2, 2), "y": r.tensor(bShape, -2, 2)],
                                       "case \(caseIndex): \(a) vs \(bShape) \(act)")
        }
        // Integer arithmetic of every kind.
        for op in ["Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "BitwiseAnd", "Equal", "Greater"] {
            for dtype in [DType.int64, .int32, .int16, .int8] {
                var g = TestGraph()
                let x = g.input("x", [.fixed(3), .fixed(4)], dtype), y = g.input("y", [.fixed(4)], dtype)
                g.output(g.node(op, [x, y]), g.node("Neg", [x]), g.node("Abs", [y]))
                try expectMatchesReference(g.model, inputs: ["x": Self.ints(&r, [3, 4], -20...20, dtype),
                                                             "y": Self.ints(&r, [4], 1...7, dtype)], "\(op) \(dtype)")
            }
        }
    }

    @Test("Unsigned arithmetic, comparisons and BitShift")
    func unsigned() throws {
        var r = SplitMix64(seed: 111)
        for dtype in [DType.uint8, .uint16, .uint32] {
            for op in ["Add", "Sub", "Mul", "Div", "Mod", "Max", "BitwiseXor", "Less", "Equal"] {
                var g = TestGraph()
                let x = g.input("x", [.fixed(2), .fixed(5)], dtype), y = g.input("y", [.fixed(5)], dtype)
                let shift = g.node("BitShift", [x, g.constant(Tensor(dtype: dtype, shape: [1], int64s: [Int64(r.int(0...3))]))],
                                   ["direction": .string(r.pick(["LEFT", "RIGHT"]))])
                g.output(g.node(op, [x, y]), shift)
                try expectMatchesReference(g.model, inputs: ["x": Self.ints(&r, [2, 5], 0...250, dtype), "y": Self.ints(&r, [5], 1...9, dtype)],
                                           "\(op) \(dtype)")
            }
        }
    }

    @Test("Slice, Split, Pad (every mode), Expand, Tile, Concat and Transpose of random shapes")
    func dataMovement() throws {
        var r = SplitMix64(seed: 102)
        for caseIndex in 0..<30 {
            let rank = r.int(1...4)
            let shape = Self.randomShape(&r, rank: rank, 1...6)
            var g = TestGraph()
            let x = g.input("x", shape)
            // Slice with random starts/ends/steps (negative too) on a random subset of axes.
            let axes = (0..<rank).filter { _ in r.bool() }
            let starts = axes.map { _ in Int64(r.int(-7...7)) }, ends = axes.map { _ in Int64(r.pick([-100, -2, 0, 2, 5, 100])) }
            let steps = axes.map { _ in Int64(r.pick([1, 1, 2, -1, -2])) }
            let s = g.node("Slice", [x, g.constant(Tensor(shape: [axes.count], starts)), g.constant(Tensor(shape: [axes.count], ends)),
                                     g.constant(Tensor(shape: [axes.count], axes.map { Int64($0) })), g.constant(Tensor(shape: [axes.count], steps))])
            let mode = r.pick(["constant", "edge", "reflect", "wrap"])
            let pads = (0..<(2 * rank)).map { k in Int64(r.int(0...(mode == "reflect" ? shape[k % rank] - 1 : 3))) }
            let padded = g.node("Pad", [x, g.constant(Tensor(shape: [2 * rank], pads)), g.constant(Tensor(scalar: Float(1.5)))], ["mode": .string(mode)])
            let tile = g.node("Tile", [x, g.constant(Tensor(shape: [rank], (0..<rank).map { _ in Int64(r.int(1...3)) }))])
            let target = [Int64(r.int(1...3))] + shape.map { d in Int64(d == 1 ? r.int(1...3) : (r.bool() ? d : 1)) }
            let expanded = g.node("Expand", [x, g.constant(Tensor(shape: [target.count], target))])
            let axis = r.int(0...(rank - 1))
            let parts = g.node("Split", [x], ["axis": .int(axis), "num_outputs": .int(min(2, shape[axis]))], outputs: min(2, shape[axis]))
            g.output(s, padded, tile, expanded, parts)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor(shape)], "case \(caseIndex): \(shape) axes \(axes) \(mode)")
        }
    }

    @Test("Every Reduce*, ArgMax/ArgMin, CumSum and TopK over random axes")
    func reductions() throws {
        var r = SplitMix64(seed: 103)
        let reductions = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
        for (caseIndex, op) in (reductions + reductions).enumerated() {
            let rank = r.int(1...4)
            let shape = Self.randomShape(&r, rank: rank)
            var g = TestGraph()
            let x = g.input("x", shape)
            let axes = (0..<rank).filter { _ in r.bool() }.map { Int64(r.bool() ? $0 : $0 - rank) }
            let keep = r.int(0...1)
            var ins = [x]
            if !axes.isEmpty { ins.append(g.constant(Tensor(shape: [axes.count], axes))) }
            let y = g.node(op, ins, ["keepdims": .int(keep)])
            let axis = r.int(0...(rank - 1))
            let am = g.node(r.pick(["ArgMax", "ArgMin"]), [x], ["axis": .int(axis), "keepdims": .int(r.int(0...1))])
            let cs = g.node("CumSum", [x, g.constant(Tensor(scalar: Int64(axis)))], ["exclusive": .int(r.int(0...1)), "reverse": .int(r.int(0...1))])
            let top = g.node("TopK", [x, g.constant(Tensor(shape: [1], [Int64(r.int(0...shape[axis]))]))],
                             ["axis": .int(axis), "largest": .int(r.int(0...1))], outputs: 2)
            g.output(y, am, cs, top, String(top.dropLast()) + "1")
            let input = op == "ReduceLogSum" || op == "ReduceProd" ? r.tensor(shape, 0.5, 1.5) : r.tensor(shape)
            try expectMatchesReference(g.model, inputs: ["x": input], "case \(caseIndex): \(op) \(shape) axes \(axes) keep \(keep)")
        }
    }

    @Test("Resize nearest and linear with each coordinate transform; ConvTranspose; gathers and scatters")
    func imagesAndIndexing() throws {
        var r = SplitMix64(seed: 104)
        for caseIndex in 0..<20 {
            let shape = [1, r.int(1...3), r.int(1...6), r.int(1...6)]
            var g = TestGraph()
            let x = g.input("x", shape)
            let mode = r.pick(["nearest", "linear"])
            var attrs: [String: Attribute] = ["mode": .string(mode),
                "coordinate_transformation_mode": .string(r.pick(["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]))]
            if mode == "nearest" { attrs["nearest_mode"] = .string(r.pick(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])) }
            let y: String
            if r.bool() {
                let scales: [Float] = [1, 1, r.pick([0.5, 1.5, 2, 3]), r.pick([0.6, 1, 2, 2.5])]
                y = g.node("Resize", [x, "", g.constant(Tensor(shape: [4], scales))], attrs)
            } else {
                let sizes: [Int64] = [1, Int64(shape[1]), Int64(r.int(1...9)), Int64(r.int(1...9))]
                y = g.node("Resize", [x, "", "", g.constant(Tensor(shape: [4], sizes))], attrs)
            }
            let cout = r.int(1...3), k = r.int(1...3), stride = r.int(1...2)
            let ct = g.node("ConvTranspose", [x, g.constant(r.tensor([shape[1], cout, k, k])), g.constant(r.tensor([cout]))],
                            ["strides": .ints([stride, stride]), "pads": .ints([0, r.int(0...1), 0, 0]),
                             "output_padding": .ints([stride - 1, 0])])
            let idx = Self.ints(&r, [1, shape[1], 2, shape[3]], -shape[2]...(shape[2] - 1))
            let ge = g.node("GatherElements", [x, g.constant(idx)], ["axis": .int(2)])
            let nd = g.node("ScatterND", [x, g.constant(Tensor(shape: [1, 2], [Int64(0), Int64(r.int(0...(shape[1] - 1)))])),
                                          g.constant(r.tensor([1, shape[2], shape[3]]))], ["reduction": .string(r.pick(["none", "add", "mul"]))])
            let inorm = g.node("InstanceNormalization", [x, g.constant(r.tensor([shape[1]])), g.constant(r.tensor([shape[1]]))])
            g.output(y, ct, ge, nd, inorm)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor(shape)], "case \(caseIndex): \(shape) \(attrs)")
        }
    }

    @Test("ConvTranspose split over threads: grouped, two images, GEMM rows in several slices, at 1, 2 and 3 threads")
    func convTransposeThreads() throws {
        var r = SplitMix64(seed: 107)
        var g = TestGraph()
        let x = g.input("x", [2, 8, 9, 7])
        g.output(g.node("ConvTranspose", [x, g.constant(r.tensor([8, 8, 3, 3])), g.constant(r.tensor([16]))],
                        ["group": .int(2), "strides": .ints([2, 2]), "pads": .ints([1, 0, 0, 1]), "output_padding": .ints([1, 0])]))
        for threads in [1, 2, 3] {
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 8, 9, 7])], threads: threads, "threads \(threads)")
        }
    }

    @Test("Einsum (matrix products, transposes, traces, batch contractions), Dropout at inference, Trilu, DepthToSpace")
    func einsumAndMore() throws {
        var r = SplitMix64(seed: 106)
        let equations: [(String, [[Int]])] = [("ij,jk->ik", [[3, 4], [4, 5]]), ("bij,bjk->bik", [[2, 3, 4], [2, 4, 2]]),
                                              ("ij->ji", [[3, 5]]), ("ii", [[4, 4]]), ("i,i", [[6], [6]]), ("ij,kj", [[2, 3], [4, 3]]),
                                              ("bhqd,bhkd->bhqk", [[1, 2, 3, 4], [1, 2, 5, 4]])]
        for (equation, shapes) in equations {
            var g = TestGraph()
            let ins = shapes.enumerated().map { g.input("x\($0.offset)", $0.element) }
            g.output(g.node("Einsum", ins, ["equation": .string(equation)]))
            var feeds: [String: Tensor] = [:]
            for (k, s) in shapes.enumerated() { feeds["x\(k)"] = r.tensor(s) }
            try expectMatchesReference(g.model, inputs: feeds, "Einsum \(equation)")
        }
        var g = TestGraph()
        let x = g.input("x", [2, 8, 3, 3])
        let d = g.node("Dropout", [x], outputs: 2)
        g.output(d, String(d.dropLast()) + "1", g.node("Trilu", [x, g.constant(Tensor(scalar: Int64(1)))], ["upper": .int(0)]),
                 g.node("DepthToSpace", [x], ["blocksize": .int(2), "mode": .string("CRD")]),
                 g.node("SpaceToDepth", [g.node("DepthToSpace", [x], ["blocksize": .int(2)])], ["blocksize": .int(2)]))
        try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 8, 3, 3])], "Dropout, Trilu, DepthToSpace")
    }

    @Test("RMSNormalization, Hardmax, Clip with run-time and integer bounds, CastLike, CumProd")
    func normalizationsAndClip() throws {
        var r = SplitMix64(seed: 107)
        for caseIndex in 0..<8 {
            let shape = Self.randomShape(&r, rank: r.int(2...4))
            let axis = r.int(-shape.count...(shape.count - 1))
            let a = axis < 0 ? axis + shape.count : axis
            var g = TestGraph()
            let x = g.input("x", shape), lo = g.input("lo", [Int]()), k = g.input("k", [.fixed(shape[0])], .int64)
            let rms = g.node("RMSNormalization", [x, g.constant(r.tensor(Array(shape[a...])))], ["axis": .int(axis)])
            let hm = g.node("Hardmax", [x], ["axis": .int(axis)])
            let clipped = g.node("Clip", [x, lo, ""])
            let ki = g.node("Clip", [k, g.constant(Tensor(scalar: Int64(-2))), g.constant(Tensor(scalar: Int64(3)))])
            let cl = g.node("CastLike", [ki, x])
            let cp = g.node("CumProd", [x, g.constant(Tensor(scalar: Int64(a)))], ["exclusive": .int(r.int(0...1)), "reverse": .int(r.int(0...1))])
            g.output(rms, hm, clipped, cl, cp)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor(shape), "lo": Tensor(scalar: r.float()),
                                                         "k": Self.ints(&r, [shape[0]], -5...5)], "case \(caseIndex) \(shape) axis \(axis)")
        }
    }

    @Test("Attention: 3-D and 4-D, grouped heads, masks, causal, soft cap, KV cache, qk outputs")
    func attention() throws {
        var r = SplitMix64(seed: 108)
        for caseIndex in 0..<12 {
            let batch = r.int(1...2), kvHeads = r.int(1...2), qHeads = kvHeads * r.int(1...2), qLen = r.int(1...4), kvLen = r.int(1...5)
            let head = r.int(1...4), vHead = r.int(1...4), past = r.bool() ? r.int(1...3) : 0
            let is3D = caseIndex % 3 == 0
            var g = TestGraph()
            var feeds: [String: Tensor] = [:]
            func add(_ name: String, _ shape: [Int]) -> String {
                feeds[name] = r.tensor(shape)
                return g.input(name, shape)
            }
            let q = is3D ? add("q", [batch, qLen, qHeads * head]) : add("q", [batch, qHeads, qLen, head])
            let k = is3D ? add("k", [batch, kvLen, kvHeads * head]) : add("k", [batch, kvHeads, kvLen, head])
            let v = is3D ? add("v", [batch, kvLen, kvHeads * vHead]) : add("v", [batch, kvHeads, kvLen, vHead])
            var ins = [q, k, v]
            ins.append(r.bool() ? add("mask", [qLen, past + kvLen]) : "")
            if past > 0 { ins += [add("pk", [batch, kvHeads, past, head]), add("pv", [batch, kvHeads, past, vHead])] }
            var attrs: [String: Attribute] = ["is_causal": .int(r.int(0...1)), "qk_matmul_output_mode": .int(r.int(0...3))]
            if is3D { attrs["q_num_heads"] = .int(qHeads); attrs["kv_num_heads"] = .int(kvHeads) }
            if r.bool() { attrs["softcap"] = .float(2) }
            if r.bool() { attrs["scale"] = .float(0.3) }
            let y = g.node("Attention", ins, attrs, outputs: 4)
            let base = String(y.dropLast())
            g.output(y, base + "1", base + "2", base + "3")
            try expectMatchesReference(g.model, inputs: feeds, "case \(caseIndex): \(attrs) past \(past) 3D \(is3D)")
        }
    }

    @Test("NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: weights, ignore_index, reductions")
    func losses() throws {
        var r = SplitMix64(seed: 109)
        for caseIndex in 0..<12 {
            let n = r.int(1...3), c = r.int(2...5), extra = r.bool() ? [r.int(1...3)] : []
            var g = TestGraph()
            let x = g.input("x", [n, c] + extra), t = g.input("t", [.fixed(n)] + extra.map { .fixed($0) }, .int64)
            var ins = [x, t]
            if r.bool() { ins.append(g.constant(r.tensor([c], 0.2, 2))) }
            var attrs: [String: Attribute] = ["reduction": .string(r.pick(["none", "sum", "mean"]))]
            if r.bool() { attrs["ignore_index"] = .int(r.int(0...(c - 1))) }
            let op = r.pick(["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
            let y = g.node(op, ins, attrs, outputs: op == "SoftmaxCrossEntropyLoss" ? 2 : 1)
            if op == "SoftmaxCrossEntropyLoss" { g.output(y, String(y.dropLast()) + "1") } else { g.output(y) }
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([n, c] + extra), "t": Self.ints(&r, [n] + extra, 0...(c - 1))],
                                       "case \(caseIndex): \(op) \(attrs)")
        }
    }

    @Test("Cast and CastLike between float64/float16/bfloat16/8- and 16-bit integers and kiln.cpu's own types")
    func conversions() throws {
        var r = SplitMix64(seed: 110)
        let types: [DType] = [.float64, .float16, .bfloat16, .int8, .int16, .uint8, .uint16, .uint32, .uint64, .int32, .int64, .bool, .float32]
        for from in types {
            var g = TestGraph()
            let x = g.input("x", [.fixed(3), .fixed(5)], from)
            var outs: [String] = []
            for to in types { outs.append(g.node("Cast", [x], ["to": .int(to.onnxCode)])) }
            outs.append(g.node("CastLike", [x, g.constant(Tensor(zeros: .float16, shape: [1]))]))
            g.graph.outputs = outs.map { Value(name: $0) }
            let values = (0..<15).map { _ in Double(r.int(-300...300)) + (from.isInteger ? 0 : Double(r.float())) }
            try expectMatchesReference(g.model, inputs: ["x": Tensor(dtype: from, shape: [3, 5], doubles: values)], "Cast from \(from)")
        }
    }

    @Test("Cast and CastLike to and from the 8- and 4-bit float formats and 4-/2-bit integers, saturating or not: bit-exact with kiln.reference")
    func lowPrecisionConversions() throws {
        var r = SplitMix64(seed: 113)
        let narrow: [DType] = [.float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float4e2m1, .int4, .uint4, .int2, .uint2]
        // Values in and far beyond each format's range, infinities and NaN, so saturation and overflow show.
        var values: [Double] = [0, -0.0, 0.3, -1.75, 7, 300, -1e5, 1e9, .infinity, -.infinity, .nan]
        while values.count < 24 { values.append(Double(r.int(-600...600)) * Double(r.float())) }
        for wide in [DType.float32, .float16] {
            for saturate in [1, 0] {
                var g = TestGraph()
                let x = g.input("x", [.fixed(values.count)], wide)
                var outs: [String] = []
                for to in narrow {
                    let cast = g.node("Cast", [x], ["to": .int(to.onnxCode), "saturate": .int(saturate)])
                    outs.append(cast)
                    // And back: decoding every code the forward cast produced.
                    outs.append(g.node("Cast", [cast], ["to": .int(wide.onnxCode)]))
                    outs.append(g.node("CastLike", [x, g.constant(Tensor(zeros: to, shape: [1]))], ["saturate": .int(saturate)]))
                }
                g.graph.outputs = outs.map { Value(name: $0) }
                #expect(CPUBackend().rejections(in: g.graph).isEmpty)
                let feeds: [String: RuntimeValue] = ["x": .tensor(Tensor(dtype: wide, shape: [values.count], doubles: values))]
                let want = try Session(model: g.model, backend: ReferenceBackend()).runOrdered(feeds).map { $0.tensor! }
                let got = try Session(model: g.model, backend: CPUBackend(threads: 1)).runOrdered(feeds).map { $0.tensor! }
                for (i, (a, b)) in zip(got, want).enumerated() {
                    #expect(a.dtype == b.dtype && a.shape == b.shape, "output \(i) from \(wide), saturate \(saturate)")
                    #expect(a.rawBytes.map(Array.init) == b.rawBytes.map(Array.init),
                            "output \(i) (\(b.dtype)) from \(wide), saturate \(saturate): \(a.asDoubles()) vs \(b.asDoubles())")
                }
            }
        }
    }

    @Test("QuantizeLinear then DequantizeLinear: per-tensor, per-axis and blocked, integer and float8/float4 types")
    func quantizeDequantize() throws {
        var r = SplitMix64(seed: 114)
        let x = Tensor(shape: [2, 6], (0..<12).map { _ in Float(r.float(-40, 40)) })
        // (zero point type, scale/zero-point shape, axis, block_size)
        let cases: [(DType, [Int], Int, Int)] = [
            (.uint8, [], 1, 0), (.int8, [6], 1, 0), (.int8, [2], 0, 0), (.int4, [2, 2], 1, 3), (.uint16, [1, 6], 0, 2),
            (.int2, [], 1, 0), (.float8e4m3fn, [], 1, 0), (.float8e5m2, [6], 1, 0), (.float4e2m1, [], 1, 0),
        ]
        for (t, shape, axis, block) in cases {
            var g = TestGraph()
            let input = g.input("x", [2, 6])
            let count = shape.reduce(1, *)
            let scale = g.constant(Tensor(shape: shape, (0..<count).map { _ in Float(r.float(0.05, 3)) }))
            let zeroValues: [Double] = (0..<count).map { _ in t.isFloatingPoint ? 0 : Double(r.int(0...1)) }
            let zero = g.constant(Tensor(dtype: t, shape: shape, doubles: zeroValues))
            let attributes: [String: Attribute] = ["axis": .int(axis), "block_size": .int(block)]
            let q = g.node("QuantizeLinear", [input, scale, zero], attributes)
            g.output(q, g.node("DequantizeLinear", [q, scale, zero], attributes))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty, "\(t)")
            let feeds: [String: RuntimeValue] = ["x": .tensor(x)]
            let want = try Session(model: g.model, backend: ReferenceBackend()).runOrdered(feeds).map { $0.tensor! }
            let got = try Session(model: g.model, backend: CPUBackend(threads: 1)).runOrdered(feeds).map { $0.tensor! }
            #expect(got.map(\.dtype) == [t, .float32] && got.map(\.shape) == [[2, 6], [2, 6]], "\(t) \(shape)")
            for (a, b) in zip(got, want) {
                #expect(a.rawBytes.map(Array.init) == b.rawBytes.map(Array.init), "\(t) \(shape): \(a.asDoubles()) vs \(b.asDoubles())")
            }
        }
    }

    @Test("Elementwise arithmetic over float64 runs in Double, with broadcasting")
    func float64Elementwise() throws {
        var r = SplitMix64(seed: 118)
        let a = Tensor(shape: [2, 3], (0..<6).map { _ in 1 + Double(r.int(1...1000)) * 1e-9 })
        let b = Tensor(shape: [3], (0..<3).map { _ in 0.5 + Double(r.int(1...1000)) * 1e-9 })
        var g = TestGraph()
        let x = g.input("a", [.fixed(2), .fixed(3)], .float64), y = g.input("b", [.fixed(3)], .float64)
        var outs: [String] = []
        for op in ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"] { outs.append(g.node(op, [x, y])) }
        outs.append(g.node("Mod", [x, y], ["fmod": .int(1)]))
        for op in ["Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal"] { outs.append(g.node(op, [x])) }
        g.graph.outputs = outs.map { Value(name: $0) }
        #expect(CPUBackend().rejections(in: g.graph).isEmpty)
        let got = try expectMatchesReference(g.model, inputs: ["a": a, "b": b], tolerance: 1e-15, "float64 elementwise")
        #expect(got.allSatisfy { $0.dtype == .float64 })
    }

    @Test("uint64 arithmetic, comparisons and BitShift are unsigned and wrap, beyond Int64's range")
    func uint64Elementwise() throws {
        let big: [UInt64] = [UInt64.max, 1 << 63, 12_345_678_901_234_567_890, 7, 0, 3]
        let small: [UInt64] = [2, 3, 1 << 62, 5, 9, 1]
        var g = TestGraph()
        let x = g.input("a", [.fixed(6)], .uint64), y = g.input("b", [.fixed(6)], .uint64)
        var outs: [String] = []
        for op in ["Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Equal", "Less", "Greater"] { outs.append(g.node(op, [x, y])) }
        let shift = g.constant(Tensor(shape: [6], [UInt64](arrayLiteral: 1, 63, 64, 2, 0, 70)))
        outs.append(g.node("BitShift", [x, shift], ["direction": .string("RIGHT")]))
        outs.append(g.node("BitShift", [x, shift], ["direction": .string("LEFT")]))
        g.graph.outputs = outs.map { Value(name: $0) }
        #expect(CPUBackend().rejections(in: g.graph).isEmpty)
        let feeds: [String: RuntimeValue] = ["a": .tensor(Tensor(shape: [6], big)), "b": .tensor(Tensor(shape: [6], small))]
        let want = try Session(model: g.model, backend: ReferenceBackend()).runOrdered(feeds).map { $0.tensor! }
        let got = try Session(model: g.model, backend: CPUBackend(threads: 1)).runOrdered(feeds).map { $0.tensor! }
        for (i, (a, b)) in zip(got, want).enumerated() {
            #expect(a.dtype == b.dtype && a.rawBytes.map(Array.init) == b.rawBytes.map(Array.init), "output \(i)")
        }
        // Spot checks that do not lean on the reference: unsigned order and wrapping.
        #expect(got[0].elements(as: UInt64.self)[0] == 1)
        #expect(got[8].elements(as: Bool.self)[0] == false && got[9].elements(as: Bool.self)[1] == true)
    }

    @Test("Reductions, CumSum and CumProd over float64 keep float64 precision")
    func float64Reductions() throws {
        var r = SplitMix64(seed: 115)
        // Values whose float32 rounding would show: 1 + 1e-9 steps.
        let values = (0..<24).map { _ in 1 + Double(r.int(-1000...1000)) * 1e-9 }
        let x64 = Tensor(shape: [2, 3, 4], values)
        for op in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
                   "ReduceLogSumExp", "ReduceSumSquare"] {
            var g = TestGraph()
            let x = g.input("x", [.fixed(2), .fixed(3), .fixed(4)], .float64)
            g.output(g.node(op, [x, g.constant(Tensor(int64s: [1, -1]))], ["keepdims": .int(0)]))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty, "\(op)")
            try expectMatchesReference(g.model, inputs: ["x": x64], tolerance: 1e-14, "\(op) over float64")
        }
        for op in ["CumSum", "CumProd"] {
            for (exclusive, reverse) in [(0, 0), (1, 1)] {
                var g = TestGraph()
                let x = g.input("x", [.fixed(2), .fixed(3), .fixed(4)], .float64)
                g.output(g.node(op, [x, g.constant(Tensor(scalar: Int64(2)))], ["exclusive": .int(exclusive), "reverse": .int(reverse)]))
                let got = try expectMatchesReference(g.model, inputs: ["x": x64], tolerance: 1e-14, "\(op) over float64")
                #expect(got.first?.dtype == .float64)
            }
        }
        for equation in ["ijk,ikl->ijl", "ijk->", "ijk,ijk->ik"] {
            var g = TestGraph()
            let a = g.input("a", [.fixed(2), .fixed(3), .fixed(4)], .float64)
            let b = equation.contains(",") ? g.input("b", [.fixed(2), .fixed(equation == "ijk,ikl->ijl" ? 4 : 3), .fixed(4)], .float64) : nil
            g.output(g.node("Einsum", [a] + (b.map { [$0] } ?? []), ["equation": .string(equation)]))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty, "\(equation)")
            var feeds = ["a": x64]
            if b != nil { feeds["b"] = Tensor(shape: equation == "ijk,ikl->ijl" ? [2, 4, 4] : [2, 3, 4], (0..<(equation == "ijk,ikl->ijl" ? 32 : 24)).map { _ in 1 + Double(r.int(-1000...1000)) * 1e-9 }) }
            let got = try expectMatchesReference(g.model, inputs: feeds, tolerance: 1e-14, "Einsum \(equation) over float64")
            #expect(got.first?.dtype == .float64)
        }
    }

    @Test("Resize cubic: each coordinate transform, cubic_coeff_a, exclude_outside, scales and sizes")
    func cubicResize() throws {
        var r = SplitMix64(seed: 116)
        for caseIndex in 0..<16 {
            let shape = [1, r.int(1...2), r.int(1...7), r.int(1...7)]
            var g = TestGraph()
            let x = g.input("x", shape)
            let attrs: [String: Attribute] = [
                "mode": .string("cubic"),
                "coordinate_transformation_mode": .string(r.pick(["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"])),
                "cubic_coeff_a": .float(r.pick([-0.75, -0.5])), "exclude_outside": .int(r.int(0...1)),
            ]
            if r.bool() {
                let scales: [Float] = [1, 1, r.pick([0.5, 0.8, 1.5, 2, 3]), r.pick([0.6, 1, 2, 2.5])]
                g.output(g.node("Resize", [x, "", g.constant(Tensor(shape: [4], scales))], attrs))
            } else {
                let sizes: [Int64] = [1, Int64(shape[1]), Int64(r.int(1...9)), Int64(r.int(1...9))]
                g.output(g.node("Resize", [x, "", "", g.constant(Tensor(shape: [4], sizes))], attrs))
            }
            #expect(CPUBackend().rejections(in: g.graph).isEmpty)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor(shape)], "case \(caseIndex): cubic Resize \(shape) \(attrs)")
        }
    }

    @Test("BitCast between types of one width keeps the bytes; across widths or to 4-bit types it is refused")
    func bitCasts() throws {
        var r = SplitMix64(seed: 117)
        for (from, to) in [(DType.float32, DType.int32), (.int64, .float64), (.uint16, .int16), (.bool, .uint8), (.int8, .uint8)] {
            var g = TestGraph()
            let x = g.input("x", [.fixed(2), .fixed(3)], from)
            g.output(g.node("BitCast", [x], ["to": .int(to.onnxCode)]))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty, "\(from) to \(to)")
            let values = (0..<6).map { _ in from == .bool ? Double(r.int(0...1)) : Double(r.int(-100...100)) + (from.isInteger ? 0 : 0.25) }
            let input = Tensor(dtype: from, shape: [2, 3], doubles: values.map { from.isInteger && !from.isSignedInteger ? abs($0) : $0 })
            let got = try Session(model: g.model, backend: CPUBackend(threads: 1)).runOrdered(["x": .tensor(input)]).map { $0.tensor! }
            #expect(got.first?.dtype == to && got.first?.shape == [2, 3])
            #expect(got.first?.rawBytes.map(Array.init) == input.rawBytes.map(Array.init), "\(from) to \(to)")
        }
        for (from, to) in [(DType.float32, DType.int64), (.int8, .int4)] {
            var g = TestGraph()
            let x = g.input("x", [.fixed(2)], from)
            g.output(g.node("BitCast", [x], ["to": .int(to.onnxCode)]))
            #expect(CPUBackend().rejections(in: g.graph).count == 1, "\(from) to \(to)")
        }
    }

    @Test("DynamicQuantizeLinear: y, y_scale and y_zero_point bit-exact with kiln.reference, all-negative, mixed and all-zero inputs")
    func dynamicQuantize() throws {
        var r = SplitMix64(seed: 119)
        for (lo, hi) in [(Float(-3), Float(5)), (-7, -1), (0, 0)] {
            var g = TestGraph()
            let x = g.input("x", [3, 4])
            let y = g.node("DynamicQuantizeLinear", [x], outputs: 3)
            let stem = String(y.dropLast())
            g.output(y, stem + "1", stem + "2")
            #expect(CPUBackend().rejections(in: g.graph).isEmpty)
            let feeds: [String: RuntimeValue] = ["x": .tensor(Tensor(shape: [3, 4], (0..<12).map { _ in lo == hi ? lo : r.float(lo, hi) }))]
            let want = try Session(model: g.model, backend: ReferenceBackend()).runOrdered(feeds).map { $0.tensor! }
            let got = try Session(model: g.model, backend: CPUBackend(threads: 1)).runOrdered(feeds).map { $0.tensor! }
            #expect(got.map(\.dtype) == [.uint8, .float32, .uint8] && got.map(\.shape) == [[3, 4], [], []])
            for (a, b) in zip(got, want) { #expect(a.rawBytes.map(Array.init) == b.rawBytes.map(Array.init), "range \(lo)...\(hi)") }
        }
    }

    @Test("MaxPool and AveragePool over 3-D windows and LpPool of each rank: pads, strides, dilations, ceil_mode, auto_pad, count_include_pad")
    func poolingOfAnyRank() throws {
        var r = SplitMix64(seed: 120)
        for caseIndex in 0..<24 {
            let op = r.pick(["MaxPool", "AveragePool", "LpPool"])
            let rank = op == "LpPool" ? r.int(1...3) : 3
            let spatial = (0..<rank).map { _ in r.int(3...7) }
            let kernel = (0..<rank).map { _ in r.int(1...3) }
            var attrs: [String: Attribute] = ["kernel_shape": .ints(kernel), "strides": .ints((0..<rank).map { _ in r.int(1...2) })]
            if r.bool() {
                attrs["auto_pad"] = .string(r.pick(["SAME_UPPER", "SAME_LOWER", "VALID"]))
            } else {
                attrs["pads"] = .ints((0..<(2 * rank)).map { k in r.int(0...(kernel[k % rank] - 1)) })
                attrs["ceil_mode"] = .int(r.int(0...1))
            }
            if op != "AveragePool" || r.bool() { attrs["dilations"] = .ints((0..<rank).map { _ in r.int(1...2) }) }
            if op == "AveragePool" { attrs["count_include_pad"] = .int(r.int(0...1)) }
            if op == "LpPool" { attrs["p"] = .int(r.int(1...3)) }
            var g = TestGraph()
            let x = g.input("x", [2, 3] + spatial)
            g.output(g.node(op, [x], attrs))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty, "\(op) \(attrs)")
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 3] + spatial)], "case \(caseIndex): \(op) over \(spatial) \(attrs)")
        }
    }

    @Test("Conv over 3-D windows: groups, strides, dilations, pads, auto_pad, with and without bias")
    func conv3d() throws {
        var r = SplitMix64(seed: 121)
        for caseIndex in 0..<12 {
            let group = r.pick([1, 2]), cin = group * r.int(1...2), cout = group * r.int(1...2)
            let spatial = (0..<3).map { _ in r.int(3...6) }, kernel = (0..<3).map { _ in r.int(1...3) }
            var attrs: [String: Attribute] = ["group": .int(group), "strides": .ints((0..<3).map { _ in r.int(1...2) }),
                                              "dilations": .ints((0..<3).map { _ in r.int(1...2) })]
            if r.bool() { attrs["auto_pad"] = .string(r.pick(["SAME_UPPER", "SAME_LOWER", "VALID"])) } else {
                attrs["pads"] = .ints((0..<6).map { _ in r.int(0...1) })
            }
            if r.bool() { attrs["kernel_shape"] = .ints(kernel) }
            var g = TestGraph()
            let x = g.input("x", [1, cin] + spatial)
            let w = g.constant(r.tensor([cout, cin / group] + kernel))
            g.output(g.node("Conv", r.bool() ? [x, w, g.constant(r.tensor([cout]))] : [x, w], attrs))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, cin] + spatial)], "case \(caseIndex): Conv3d \(spatial) \(kernel) \(attrs)")
        }
    }

    @Test("GridSample: nearest, linear and cubic; zeros, border and reflection padding; align_corners; 2-D and 3-D")
    func gridSample() throws {
        var r = SplitMix64(seed: 122)
        for caseIndex in 0..<24 {
            let volumetric = caseIndex % 3 == 0
            let mode = volumetric ? r.pick(["nearest", "linear"]) : r.pick(["nearest", "linear", "cubic"])
            let attrs: [String: Attribute] = ["mode": .string(mode), "padding_mode": .string(r.pick(["zeros", "border", "reflection"])),
                                              "align_corners": .int(r.int(0...1))]
            let spatial = (0..<(volumetric ? 3 : 2)).map { _ in r.int(1...5) }
            let out = (0..<spatial.count).map { _ in r.int(1...4) }
            var g = TestGraph()
            let x = g.input("x", [2, 2] + spatial), grid = g.input("grid", [2] + out + [spatial.count])
            g.output(g.node("GridSample", [x, grid], attrs))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([2, 2] + spatial), "grid": r.tensor([2] + out + [spatial.count], -1.4, 1.4)],
                                       "case \(caseIndex): GridSample \(spatial) \(attrs)")
        }
    }

    @Test("HannWindow, HammingWindow and BlackmanWindow: periodic and symmetric, float32 and float64, a size given at run time")
    func windows() throws {
        for op in ["HannWindow", "HammingWindow", "BlackmanWindow"] {
            for (periodic, type) in [(1, DType.float32), (0, .float64)] {
                var g = TestGraph()
                let size = g.input("n", [], .int64)
                g.output(g.node(op, [size], ["periodic": .int(periodic), "output_datatype": .int(type.onnxCode)]))
                #expect(CPUBackend().rejections(in: g.graph).isEmpty)
                for n in [1, 7, 16] {
                    let got = try expectMatchesReference(g.model, inputs: ["n": Tensor(scalar: Int64(n))], tolerance: 1e-6, "\(op) periodic \(periodic) size \(n)")
                    #expect(got.first?.dtype == type && got.first?.shape == [n])
                }
            }
        }
    }

    @Test("AffineGrid, 2-D and 3-D, with and without align_corners, feeding GridSample")
    func affineGrid() throws {
        var r = SplitMix64(seed: 123)
        for (caseIndex, size) in [[2, 1, 3, 4], [1, 2, 1, 5], [2, 1, 2, 3, 4]].enumerated() {
            let rank = size.count - 2
            for align in [0, 1] {
                var g = TestGraph()
                let theta = g.input("theta", [size[0], rank, rank + 1])
                let grid = g.node("AffineGrid", [theta, g.constant(Tensor(int64s: size))], ["align_corners": .int(align)])
                let x = g.input("x", size)
                g.output(grid, g.node("GridSample", [x, grid], ["align_corners": .int(align)]))
                #expect(CPUBackend().rejections(in: g.graph).isEmpty)
                try expectMatchesReference(g.model, inputs: ["theta": r.tensor([size[0], rank, rank + 1]), "x": r.tensor(size)],
                                           "case \(caseIndex): AffineGrid \(size) align_corners \(align)")
            }
        }
    }

    @Test("CenterCropPad: crops and pads, odd and even differences, chosen axes, float32 and int64")
    func centerCropPad() throws {
        var r = SplitMix64(seed: 124)
        for caseIndex in 0..<12 {
            let shape = [r.int(1...5), r.int(1...6), r.int(1...4)]
            let axes = r.bool() ? [0, 1, 2] : r.pick([[1], [2, 0], [-1]])
            let target = axes.map { _ in r.int(0...7) }
            var g = TestGraph()
            let integer = r.bool()
            let x = g.input("x", shape.map { .fixed($0) }, integer ? .int64 : .float32)
            var attrs: [String: Attribute] = [:]
            if axes != [0, 1, 2] || r.bool() { attrs["axes"] = .ints(axes) }
            g.output(g.node("CenterCropPad", [x, g.constant(Tensor(int64s: target))], attrs))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty)
            let input = integer ? Self.ints(&r, shape, -50...50) : r.tensor(shape)
            try expectMatchesReference(g.model, inputs: ["x": input], "case \(caseIndex): CenterCropPad \(shape) to \(target) on \(axes)")
        }
    }

    @Test("Col2Im, 2-D and 3-D, with strides, dilations and pads, against kiln.reference")
    func col2Im() throws {
        var r = SplitMix64(seed: 125)
        for caseIndex in 0..<10 {
            let rank = r.int(1...3) == 3 ? 3 : 2
            let image = (0..<rank).map { _ in r.int(3...6) }, block = (0..<rank).map { _ in r.int(1...2) }
            let strides = (0..<rank).map { _ in r.int(1...2) }, dilations = (0..<rank).map { _ in r.int(1...2) }
            let pads = (0..<(2 * rank)).map { _ in r.int(0...1) }
            var positions: [Int] = []
            for d in 0..<rank {
                let span: Int = dilations[d] * (block[d] - 1) + 1
                let room: Int = image[d] + pads[d] + pads[d + rank] - span
                positions.append(room / strides[d] + 1)
            }
            let channels = r.int(1...2), rows = channels * block.reduce(1, *), count = positions.reduce(1, *)
            var g = TestGraph()
            let x = g.input("x", [1, rows, count])
            g.output(g.node("Col2Im", [x, g.constant(Tensor(int64s: image)), g.constant(Tensor(int64s: block))],
                            ["strides": .ints(strides), "dilations": .ints(dilations), "pads": .ints(pads)]))
            #expect(CPUBackend().rejections(in: g.graph).isEmpty)
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, rows, count])], "case \(caseIndex): Col2Im \(image) block \(block)")
        }
    }

    @Test("Hostile sizes (a crop target, a grid size, a resize scale, pads) are typed errors, not traps")
    func hostileSizes() throws {
        let huge = Int64(1) << 60
        var graphs: [(String, TestGraph, [String: Tensor])] = []
        var crop = TestGraph()
        crop.output(crop.node("CenterCropPad", [crop.input("x", [2, 3]), crop.constant(Tensor(int64s: [Int(huge), 3]))]))
        graphs.append(("CenterCropPad", crop, ["x": Tensor(zeros: .float32, shape: [2, 3])]))
        var grid = TestGraph()
        grid.output(grid.node("AffineGrid", [grid.input("t", [1, 2, 3]), grid.constant(Tensor(int64s: [1, 1, Int(huge), Int(huge)]))]))
        graphs.append(("AffineGrid", grid, ["t": Tensor(zeros: .float32, shape: [1, 2, 3])]))
        var resize = TestGraph()
        resize.output(resize.node("Resize", [resize.input("x", [1, 1, 2, 2]), "", resize.constant(Tensor(shape: [4], [Float](arrayLiteral: 1, 1, 1e30, 1)))]))
        graphs.append(("Resize", resize, ["x": Tensor(zeros: .float32, shape: [1, 1, 2, 2])]))
        var pool = TestGraph()
        pool.output(pool.node("MaxPool", [pool.input("x", [1, 1, 1, 1, 1, 1])],
                              ["kernel_shape": .ints([1, 1, 1, 1]), "pads": .ints(Array(repeating: 1 << 20, count: 8))]))
        graphs.append(("MaxPool", pool, ["x": Tensor(zeros: .float32, shape: [1, 1, 1, 1, 1, 1])]))
        for (name, g, inputs) in graphs {
            var failure: KilnError?
            do {
                let executable = try CPUBackend(threads: 1).prepare(g.graph)
                _ = try executable.run(inputs.mapValues { RuntimeValue.tensor($0) })
            } catch let e as KilnError { failure = e } catch { failure = KilnError(.internal, "\(error)") }
            #expect(failure != nil && failure?.code != .internal, "\(name): \(String(describing: failure))")
        }
    }

    @Test("LpNormalization, OneHot, EyeLike, Compress")
    func smallOps() throws {
        var r = SplitMix64(seed: 112)
        for caseIndex in 0..<6 {
            let shape = Self.randomShape(&r, rank: r.int(2...3))
            var g = TestGraph()
            let x = g.input("x", shape), c = g.input("c", [.fixed(shape[0])], .bool)
            let idx = g.input("i", [.fixed(shape[0])], .int64)
            g.output(g.node("LpNormalization", [x], ["axis": .int(r.int(0...(shape.count - 1))), "p": .int(r.int(1...2))]),
                     g.node("OneHot", [idx, g.constant(Tensor(scalar: Float(5))), g.constant(Tensor(shape: [2], [Float(-1), 3]))],
                            ["axis": .int(r.int(-2...1))]),
                     g.node("EyeLike", [g.node("Shape", [x]).isEmpty ? x : g.constant(Tensor(zeros: .int32, shape: [3, 4]))], ["k": .int(r.int(-2...2))]),
                     g.node("Compress", [x, c], ["axis": .int(0)]), g.node("Compress", [x, c]))
            let cond = Tensor(dtype: .bool, shape: [shape[0]], int64s: (0..<shape[0]).map { _ in Int64(r.int(0...1)) })
            try expectMatchesReference(g.model, inputs: ["x": r.tensor(shape), "c": cond, "i": Self.ints(&r, [shape[0]], -5...6)],
                                       "case \(caseIndex) \(shape)")
        }
    }

    @Test("Data-dependent shapes: Reshape from Shape→Gather→Concat, from runtime data, NonZero; plans per shape")
    func dataDependentShapes() throws {
        var r = SplitMix64(seed: 105)
        // What exporters write: the batch dim read from the input's shape, joined with constants.
        do {
            var g = TestGraph()
            let x = g.input("x", [.symbol("n"), .fixed(6), .fixed(4)])
            let n = g.node("Gather", [g.node("Shape", [x]), g.constant(Tensor(scalar: Int64(0)))], ["axis": .int(0)])
            let n1 = g.node("Unsqueeze", [n, g.constant(Tensor(int64s: [0]))])
            let dims = g.node("Mul", [g.constant(Tensor(int64s: [3])), g.constant(Tensor(int64s: [8]))])
            let shape = g.node("Concat", [n1, dims], ["axis": .int(0)])
            g.output(g.node("Relu", [g.node("Reshape", [g.node("Tanh", [x]), shape])]))
            for batch in [1, 3, 2, 3] {
                try expectMatchesReference(g.model, inputs: ["x": r.tensor([batch, 6, 4])], "exporter reshape, batch \(batch)")
            }
        }
        // A shape computed from data at run time (an int input through arithmetic).
        do {
            var g = TestGraph()
            let x = g.input("x", [4, 6]), s = g.input("s", [.fixed(2)], .int64)
            let shape = g.node("Mul", [s, g.constant(Tensor(int64s: [1, 2]))])
            g.output(g.node("Reshape", [g.node("Exp", [x]), shape]))
            for spec in [[12, 1], [2, 6], [12, 1], [-1, 4]] {
                try expectMatchesReference(g.model, inputs: ["x": r.tensor([4, 6]), "s": Tensor(int64s: spec)], "runtime reshape \(spec)")
            }
        }
        // NonZero, then a Gather of its indices and more work after.
        do {
            var g = TestGraph()
            let x = g.input("x", [5, 7])
            let mask = g.node("Greater", [g.node("Sigmoid", [x]), g.constant(Tensor(scalar: Float(0.6)))])
            let nz = g.node("NonZero", [mask])
            let cols = g.node("Gather", [nz, g.constant(Tensor(scalar: Int64(1)))], ["axis": .int(0)])
            let picked = g.node("Gather", [g.node("Relu", [x]), cols], ["axis": .int(1)])
            g.output(nz, g.node("ReduceSum", [picked], ["keepdims": .int(0)]), g.node("Neg", [x]))
            for _ in 0..<4 { try expectMatchesReference(g.model, inputs: ["x": r.tensor([5, 7], -2, 2)], "NonZero") }
        }
        // ConstantOfShape and Range from a shape, and Expand to it.
        do {
            var g = TestGraph()
            let x = g.input("x", [.symbol("a"), .fixed(3)])
            let shape = g.node("Shape", [x])
            let ones = g.node("ConstantOfShape", [shape], ["value": .tensor(Tensor(shape: [1], [Float(2)]))])
            let n = g.node("Cast", [g.node("Gather", [shape, g.constant(Tensor(scalar: Int64(0)))])], ["to": .int(1)])
            let range = g.node("Range", [g.constant(Tensor(scalar: Float(0))), n, g.constant(Tensor(scalar: Float(1)))])
            let col = g.node("Unsqueeze", [range, g.constant(Tensor(int64s: [1]))])
            g.output(g.node("Add", [g.node("Mul", [x, ones]), g.node("Expand", [col, shape])]))
            for a in [2, 5] { try expectMatchesReference(g.model, inputs: ["x": r.tensor([a, 3])], "ConstantOfShape/Range a=\(a)") }
        }
    }
}
