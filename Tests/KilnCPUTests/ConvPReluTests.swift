// Convolutions with PRelu, LeakyRelu and Max/Min(·, scalar) fused into their epilogue (the *_prelu kernels of
// conv_blocked.c and blocked.c, and kiln_channel_prelu after the NCHW kernel), against kiln.reference.
import Foundation
import Kiln
@testable import KilnCPU
import KilnReference
import Testing
import KilnTestSupport

@Suite("kiln.cpu convolutions with a fused PReLU / LeakyRelu / Max epilogue")
struct ConvPReluTests {
    /// What follows the convolution.
    enum Tail: CustomStringConvertible {
        /// PRelu with one slope per channel, of rank `rank` ([C, 1, 1] for 3, [1, C, 1, 1] for 4).
        case prelu(rank: Int)
        /// PRelu with a single slope.
        case preluScalar
        /// LeakyRelu(0.2) then Max(·, -0.4) (as Keras exports a clipped leaky ReLU).
        case leakyMax
        /// LeakyRelu(0.1) alone.
        case leaky
        /// PRelu (per channel) then Min(·, 0.3) then Max(-0.2, ·).
        case preluMinMax
        /// Relu then Min(·, 0.5).
        case reluMin

        var description: String {
            switch self {
            case .prelu(let rank): "PRelu(rank \(rank))"
            case .preluScalar: "PRelu(scalar)"
            case .leakyMax: "LeakyRelu+Max"
            case .leaky: "LeakyRelu"
            case .preluMinMax: "PRelu+Min+Max"
            case .reluMin: "Relu+Min"
            }
        }
    }

    /// Conv (3×3 unless `k`) of cin → cout channels with `group` groups on an h × w image, optionally a
    /// residual Add (`residual`: "none", "same" for one of the output's shape, "broadcast" for [1, C, 1, 1]
    /// that is not constant), then `tail`.
    static func graph(cin: Int, cout: Int, h: Int, w: Int, k: [Int] = [3, 3], stride: Int = 1, pads: [Int] = [1, 1, 1, 1],
                      group: Int = 1, residual: String = "none", tail: Tail, _ r: inout SplitMix64) -> (TestGraph, [String: Tensor]) {
        var g = TestGraph()
        let inShape = k.count == 2 ? [1, cin, h, w] : [1, cin, h]
        let x = g.input("x", inShape)
        var feeds = ["x": r.tensor(inShape, -1, 1)]
        let weight = g.constant(r.tensor([cout, cin / group] + k, -0.4, 0.4))
        let bias = g.constant(r.tensor([cout], -0.3, 0.3))
        let spatial = k.count
        var y = g.node("Conv", [x, weight, bias], ["kernel_shape": .ints(k), "strides": .ints(Array(repeating: stride, count: spatial)),
                                                   "pads": .ints(pads), "group": .int(group)])
        let oh = (h + pads[0] + pads[spatial] - k[0]) / stride + 1
        let ow = spatial == 2 ? (w + pads[1] + pads[3] - k[1]) / stride + 1 : 1
        let outShape = spatial == 2 ? [1, cout, oh, ow] : [1, cout, oh]
        switch residual {
        case "same":
            let rShape = outShape
            y = g.node("Add", [y, g.input("res", rShape)])
            feeds["res"] = r.tensor(rShape, -1, 1)
        case "broadcast":
            let rShape = spatial == 2 ? [1, cout, 1, 1] : [1, cout, 1]
            y = g.node("Add", [g.input("res", rShape), y])
            feeds["res"] = r.tensor(rShape, -1, 1)
        default: break
        }
        func slopes(_ rank: Int, _ r: inout SplitMix64) -> String {
            let shape = rank == 4 ? [1, cout, 1, 1] : rank == 3 ? [cout, 1, 1] : [cout, 1]
            return g.constant(r.tensor(spatial == 2 ? shape : [cout, 1], -0.5, 0.9))
        }
        switch tail {
        case .prelu(let rank): y = g.node("PRelu", [y, slopes(rank, &r)])
        case .preluScalar: y = g.node("PRelu", [y, g.constant(Tensor(shape: [1], [Float(0.25)]))])
        case .leakyMax:
            y = g.node("LeakyRelu", [y], ["alpha": .float(0.2)])
            y = g.node("Max", [y, g.constant(Tensor(shape: Array(repeating: 1, count: spatial + 2), [Float(-0.4)]))])
        case .leaky: y = g.node("LeakyRelu", [y], ["alpha": .float(0.1)])
        case .preluMinMax:
            y = g.node("PRelu", [y, slopes(3, &r)])
            y = g.node("Min", [y, g.constant(Tensor(scalar: Float(0.3)))])
            y = g.node("Max", [g.constant(Tensor(scalar: Float(-0.2))), y])
        case .reluMin:
            y = g.node("Min", [g.node("Relu", [y]), g.constant(Tensor(scalar: Float(0.5)))])
        }
        g.output(y)
        return (g, feeds)
    }

    /// Every case: the fused graph matches kiln.reference at 1 and 2 threads, and lowers to one operation.
    static func check(_ context: String, cin: Int, cout: Int, h: Int, w: Int, k: [Int] = [3, 3], stride: Int = 1,
                      pads: [Int] = [1, 1, 1, 1], group: Int = 1, residual: String = "none", tails: [Tail], seed: UInt64) throws {
        var r = SplitMix64(seed: seed)
        for tail in tails {
            let (g, feeds) = graph(cin: cin, cout: cout, h: h, w: w, k: k, stride: stride, pads: pads, group: group,
                                   residual: residual, tail: tail, &r)
            for threads in [1, 2] {
                try expectMatchesReference(g.model, inputs: feeds, threads: threads, "\(context) \(tail) threads \(threads)")
            }
            var lowering = Lowering(graph: g.graph)
            let kinds = try lowering.lower().operations.map(\.kind)
            #expect(kinds.count == 1 && kinds[0].hasPrefix("Conv"), "\(context) \(tail): \(kinds)")
        }
    }

    static let allTails: [Tail] = [.prelu(rank: 3), .prelu(rank: 4), .preluScalar, .leakyMax, .leaky, .preluMinMax, .reluMin]

    @Test("Direct blocked convolution (blocked input): channels with padding lanes, strides, odd sizes")
    func blockedInput() throws {
        try Self.check("blocked 24→40 3×3 s1 9×7", cin: 24, cout: 40, h: 9, w: 7, tails: Self.allTails, seed: 1)
        try Self.check("blocked 16→72 3×3 s2 11×13", cin: 16, cout: 72, h: 11, w: 13, stride: 2, tails: [.prelu(rank: 4), .leakyMax], seed: 2)
        try Self.check("blocked 32→24 1×3 pads 0,1", cin: 32, cout: 24, h: 5, w: 6, k: [1, 3], pads: [0, 1, 0, 1],
                       tails: [.leakyMax, .prelu(rank: 3)], seed: 3)
        try Self.check("blocked 48→48 3×1 unpadded", cin: 48, cout: 48, h: 10, w: 3, k: [3, 1], pads: [0, 0, 0, 0],
                       tails: [.leakyMax, .preluScalar], seed: 4)
        try Self.check("blocked 32→2 1×1", cin: 32, cout: 2, h: 7, w: 5, k: [1, 1], pads: [0, 0, 0, 0], tails: [.prelu(rank: 4)], seed: 5)
    }

    @Test("Direct blocked convolution of an NCHW input (few channels, e.g. an RGB image)")
    func nchwInput() throws {
        try Self.check("image 3→10 3×3 valid 13×17", cin: 3, cout: 10, h: 13, w: 17, pads: [0, 0, 0, 0],
                       tails: [.prelu(rank: 3), .leakyMax, .preluMinMax], seed: 6)
        try Self.check("10→16 3×3 s2 9×9", cin: 10, cout: 16, h: 9, w: 9, stride: 2, tails: [.prelu(rank: 4), .reluMin], seed: 7)
    }

    @Test("Winograd convolution (3×3, stride 1, large plane), with and without a residual")
    func winograd() throws {
        try Self.check("winograd 16→32 26×27", cin: 16, cout: 32, h: 26, w: 27, pads: [0, 0, 0, 0],
                       tails: [.prelu(rank: 3), .leakyMax, .preluMinMax], seed: 8)
        try Self.check("winograd 32→20 residual 25×25", cin: 32, cout: 20, h: 25, w: 25, residual: "same",
                       tails: [.prelu(rank: 4), .leaky], seed: 9)
    }

    @Test("Depthwise 3×3 (stride 1 and 2) and 5×5, padded and not, channels with padding lanes")
    func depthwise() throws {
        try Self.check("dw 40 3×3 s1 9×11", cin: 40, cout: 40, h: 9, w: 11, group: 40, tails: Self.allTails, seed: 10)
        try Self.check("dw 24 3×3 s2 13×10", cin: 24, cout: 24, h: 13, w: 10, stride: 2, group: 24,
                       tails: [.prelu(rank: 3), .leakyMax, .preluMinMax], seed: 11)
        try Self.check("dw 16 3×3 s2 pads 0,0,1,1", cin: 16, cout: 16, h: 8, w: 8, stride: 2, pads: [0, 0, 1, 1], group: 16,
                       tails: [.prelu(rank: 4)], seed: 12)
        try Self.check("dw 20 5×5 s1 residual", cin: 20, cout: 20, h: 7, w: 9, k: [5, 5], pads: [2, 2, 2, 2], group: 20,
                       residual: "same", tails: [.prelu(rank: 3), .leakyMax], seed: 13)
    }

    @Test("Grouped (NCHW) convolution, a broadcast residual and 1-D convolution take the slope after the kernel")
    func otherPaths() throws {
        try Self.check("grouped 12→8 groups 4", cin: 12, cout: 8, h: 6, w: 7, group: 4, tails: [.prelu(rank: 3), .leakyMax, .preluMinMax], seed: 14)
        try Self.check("broadcast residual 16→24", cin: 16, cout: 24, h: 5, w: 5, residual: "broadcast",
                       tails: [.prelu(rank: 4), .leakyMax, .reluMin], seed: 15)
        try Self.check("1-D 8→20 k3", cin: 8, cout: 20, h: 19, w: 1, k: [3], pads: [1, 1], tails: [.prelu(rank: 2), .leakyMax], seed: 16)
    }

    @Test("A zero Pad before a Conv becomes the Conv's pads; a Pad of another value or over channels stays")
    func padFolding() throws {
        var r = SplitMix64(seed: 18)
        // (pads, pad value, Conv pads, groups, stride, folded)
        let cases: [([Int64], Float?, [Int], Int, Int, Bool)] = [
            ([0, 0, 0, 0, 0, 0, 1, 1], nil, [0, 0, 0, 0], 24, 2, true),       // Keras ZeroPadding2D before a strided depthwise
            ([0, 0, 1, 2, 0, 0, 0, 1], 0, [1, 0, 0, 1], 1, 1, true),          // uneven, added to the Conv's own pads
            ([0, 0, 1, 1, 0, 0, 1, 1], 0.5, [0, 0, 0, 0], 1, 2, false),       // not zeros
            ([0, 1, 0, 0, 0, 1, 0, 0], 0, [1, 1, 1, 1], 1, 1, false),         // over channels
        ]
        for (n, (pads, value, convPads, group, stride, folded)) in cases.enumerated() {
            let cin = group == 1 ? 16 : group, cpad = Int(pads[1] + pads[5])
            var g = TestGraph()
            let x = g.input("x", [1, cin, 9, 10])
            var padInputs = [x, g.constant(Tensor(shape: [8], pads))]
            if let value { padInputs.append(g.constant(Tensor(scalar: value))) }
            let p = g.node("Pad", padInputs, ["mode": .string("constant")])
            let w = g.constant(r.tensor([group == 1 ? 20 : group, (cin + cpad) / group, 3, 3], -0.4, 0.4))
            let y = g.node("Conv", [p, w], ["kernel_shape": .ints([3, 3]), "strides": .ints([stride, stride]), "pads": .ints(convPads),
                                           "group": .int(group)])
            g.output(g.node("Clip", [y, g.constant(Tensor(scalar: Float(0))), g.constant(Tensor(scalar: Float(6)))]))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, cin, 9, 10], -1, 1)], "pad case \(n)")
            var lowering = Lowering(graph: g.graph)
            let kinds = try lowering.lower().operations.map(\.kind)
            #expect(kinds.contains("Pad") != folded, "pad case \(n): \(kinds)")
        }
    }

    @Test("Swish written out, x · Sigmoid(x), fuses into Conv (dense, depthwise) and MatMul as SiLU; not when Sigmoid is read elsewhere")
    func swish() throws {
        var r = SplitMix64(seed: 19)
        for (n, (cin, group, sigmoidFirst, extraReader)) in [(24, 1, false, false), (40, 40, true, false), (3, 1, true, false),
                                                             (16, 1, false, true)].enumerated() {
            var g = TestGraph()
            let x = g.input("x", [1, cin, 11, 9])
            let y = g.node("Conv", [x, g.constant(r.tensor([group == 1 ? 20 : group, cin / group, 3, 3], -0.5, 0.5)),
                                    g.constant(r.tensor([group == 1 ? 20 : group], -0.5, 0.5))],
                           ["kernel_shape": .ints([3, 3]), "strides": .ints([n == 1 ? 2 : 1, n == 1 ? 2 : 1]), "pads": .ints([1, 1, 1, 1]),
                            "group": .int(group)])
            let s = g.node("Sigmoid", [y])
            let m = g.node("Mul", sigmoidFirst ? [s, y] : [y, s])
            if extraReader { g.output(m, s) } else { g.output(m) }
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, cin, 11, 9], -2, 2)], "swish conv case \(n)")
            var lowering = Lowering(graph: g.graph)
            let kinds = try lowering.lower().operations.map(\.kind)
            #expect(kinds.contains("Conv+SiLU") != extraReader, "swish case \(n): \(kinds)")
        }
        var g = TestGraph()
        let x = g.input("x", [5, 32])
        let y = g.node("MatMul", [x, g.constant(r.tensor([32, 24], -0.4, 0.4))])
        g.output(g.node("Mul", [y, g.node("Sigmoid", [y])]))
        try expectMatchesReference(g.model, inputs: ["x": r.tensor([5, 32], -2, 2)], "swish matmul")
        var lowering = Lowering(graph: g.graph)
        let kinds = try lowering.lower().operations.map(\.kind)
        #expect(kinds == ["MatMul+SiLU"], "\(kinds)")
    }

    @Test("Hard-swish written out (PaddlePaddle's x · Clip(x + 3, 0, 6) / 6, or · 1/6, or x · HardSigmoid(x)) fuses into Conv and MatMul; not when a gate value is read elsewhere or the constants differ")
    func hardSwish() throws {
        var r = SplitMix64(seed: 23)
        // (form, group, mulFirst, extraReader, gate constant): form 0 Add/Clip/Div, 1 Add/Clip/Mul(1/6), 2 HardSigmoid.
        let cases: [(Int, Int, Bool, Bool, Float)] = [(0, 1, false, false, 3), (1, 24, true, false, 3), (2, 1, false, false, 3),
                                                     (0, 1, false, true, 3), (0, 1, false, false, 2.5)]
        for (n, (form, group, mulFirst, extraReader, three)) in cases.enumerated() {
            var g = TestGraph()
            let cin = 24
            let x = g.input("x", [1, cin, 10, 9])
            let y = g.node("Conv", [x, g.constant(r.tensor([group == 1 ? 16 : group, cin / group, 3, 3], -0.5, 0.5)),
                                    g.constant(r.tensor([group == 1 ? 16 : group], -0.5, 0.5))],
                           ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1]), "group": .int(group)])
            let gate: String
            if form == 2 {
                gate = g.node("HardSigmoid", [y], ["alpha": .float(1 / 6), "beta": .float(0.5)])
            } else {
                let shifted = g.node("Add", [y, g.constant(Tensor(shape: [1], [three]))])
                gate = g.node("Clip", [shifted, g.constant(Tensor(shape: [], [Float(0)])), g.constant(Tensor(shape: [], [Float(6)]))])
            }
            let product = g.node("Mul", mulFirst ? [gate, y] : [y, gate])
            let out = form == 0 ? g.node("Div", [product, g.constant(Tensor(shape: [1], [Float(6)]))])
                : form == 1 ? g.node("Mul", [product, g.constant(Tensor(shape: [1], [Float(1) / 6]))]) : product
            if extraReader { g.output(out, gate) } else { g.output(out) }
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, cin, 10, 9], -4, 4)], "hard-swish case \(n)")
            var lowering = Lowering(graph: g.graph)
            let kinds = try lowering.lower().operations.map(\.kind)
            #expect(kinds.contains("Conv+HardSwish") == (!extraReader && three == 3), "hard-swish case \(n): \(kinds)")
        }
        do {
            // A constant 3 of rank 5 broadcasts the result to rank 5: not fused, and still right.
            var g = TestGraph()
            let x = g.input("x", [1, 8, 6, 6])
            let y = g.node("Conv", [x, g.constant(r.tensor([8, 8, 1, 1], -0.5, 0.5))], ["kernel_shape": .ints([1, 1])])
            let gate = g.node("Clip", [g.node("Add", [y, g.constant(Tensor(shape: [1, 1, 1, 1, 1], [Float(3)]))]),
                                       g.constant(Tensor(shape: [], [Float(0)])), g.constant(Tensor(shape: [], [Float(6)]))])
            g.output(g.node("Div", [g.node("Mul", [y, gate]), g.constant(Tensor(shape: [1], [Float(6)]))]))
            try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, 8, 6, 6], -4, 4)], "hard-swish rank-5 constant")
            var lowering = Lowering(graph: g.graph)
            let kinds = try lowering.lower().operations.map(\.kind)
            #expect(!kinds.contains("Conv+HardSwish"), "\(kinds)")
        }
        var g = TestGraph()
        let x = g.input("x", [5, 32])
        let y = g.node("MatMul", [x, g.constant(r.tensor([32, 24], -0.4, 0.4))])
        let gate = g.node("Clip", [g.node("Add", [g.constant(Tensor(shape: [], [Float(3)])), y]),
                                   g.constant(Tensor(shape: [], [Float(0)])), g.constant(Tensor(shape: [], [Float(6)]))])
        g.output(g.node("Div", [g.node("Mul", [y, gate]), g.constant(Tensor(shape: [], [Float(6)]))]))
        try expectMatchesReference(g.model, inputs: ["x": r.tensor([5, 32], -4, 4)], "hard-swish matmul")
        var lowering = Lowering(graph: g.graph)
        let kinds = try lowering.lower().operations.map(\.kind)
        #expect(kinds == ["MatMul+HardSwish"], "\(kinds)")
    }

    @Test("Squeeze-and-excitation Mul by [N, C, 1, 1] runs blocked between convolutions; other shapes broadcast on NCHW")
    func channelScale() throws {
        var r = SplitMix64(seed: 20)
        for (n, (c, batch, scaleChannels, scaleFirst)) in [(40, 1, 40, false), (24, 2, 24, true), (16, 2, 1, false)].enumerated() {
            var g = TestGraph()
            let x = g.input("x", [.fixed(batch), .fixed(c), .symbol("h"), .symbol("w")])
            let y = g.node("Conv", [x, g.constant(r.tensor([c, 1, 3, 3], -0.5, 0.5))],
                           ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1]), "group": .int(c)])
            var se = g.node("GlobalAveragePool", [y])
            se = g.node("Conv", [se, g.constant(r.tensor([scaleChannels, c, 1, 1], -0.5, 0.5))], ["kernel_shape": .ints([1, 1])])
            se = g.node("Sigmoid", [se])
            let m = g.node("Mul", scaleFirst ? [se, y] : [y, se])
            g.output(g.node("Conv", [m, g.constant(r.tensor([8, c, 1, 1], -0.5, 0.5))], ["kernel_shape": .ints([1, 1])]))
            for (h, w) in [(7, 9), (1, 1)] {
                for threads in [1, 2] {
                    try expectMatchesReference(g.model, inputs: ["x": r.tensor([batch, c, h, w], -1, 1)], threads: threads,
                                               "SE case \(n) \(h)×\(w) threads \(threads)")
                }
            }
            var lowering = Lowering(graph: g.graph)
            let ops = try lowering.lower().operations
            #expect(ops.contains { $0 is ChannelScaleOperation }, "SE case \(n): \(ops.map(\.kind))")
        }
    }

    @Test("Pow(x, 2) runs as x · x (scalar or [1] exponent); other exponents and shapes stay Pow, all match")
    func square() throws {
        var r = SplitMix64(seed: 21)
        for (n, (exponent, shape, fast)) in [(Float(2), [Int](), true), (2, [1], true), (3, [], false), (2, [3], false)].enumerated() {
            var g = TestGraph()
            let x = g.input("x", [2, 7, 3])
            let e = shape == [3] ? Tensor(shape: [3], [Float(2), 2, 2]) : Tensor(shape: shape, [exponent])
            g.output(g.node("Pow", [x, g.constant(e)]))
            var data = r.tensor([2, 7, 3], -3, 3)
            if n == 0 { data = Tensor(shape: [2, 7, 3], data.elements(as: Float.self).enumerated().map { $0.offset < 4 ? [-3, 3, 0, -0.0][$0.offset] : $0.element }) }
            try expectMatchesReference(g.model, inputs: ["x": data], "pow case \(n)")
            var lowering = Lowering(graph: g.graph)
            let ops = try lowering.lower().operations
            #expect((ops.first is BinaryOperation) == fast, "pow case \(n): \(ops.map(\.kind))")
        }
    }

    @Test("A PRelu whose slope does not broadcast per channel is not fused, and still matches")
    func unfusedSlope() throws {
        var r = SplitMix64(seed: 17)
        var g = TestGraph()
        let x = g.input("x", [1, 16, 6, 8])
        let y = g.node("Conv", [x, g.constant(r.tensor([16, 16, 3, 3], -0.4, 0.4))], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])])
        // A slope along the width: not one per channel.
        g.output(g.node("PRelu", [y, g.constant(r.tensor([8], -0.5, 0.5))]))
        try expectMatchesReference(g.model, inputs: ["x": r.tensor([1, 16, 6, 8])], "slope along W")
        var lowering = Lowering(graph: g.graph)
        let kinds = try lowering.lower().operations.map(\.kind)
        #expect(kinds.count == 2 && kinds[0] == "Conv", "\(kinds)")
    }
}
