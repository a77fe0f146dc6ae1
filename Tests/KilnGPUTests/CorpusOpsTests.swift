// kiln.gpu's kernels for ops that fragmented the real-model corpus (scripts/real-models --target opencl):
// Pad, Resize, Split, ConvTranspose, 1-D Conv, and Clip with an infinite bound — each against kiln.reference
// on seeded inputs, plus the refusals that keep a claim honest.
import Kiln
import KilnGPU
import KilnReference
import KilnTestSupport
import Testing

@Suite("kiln.gpu corpus ops") struct GPUCorpusOpsTests {
    /// One node over the input x0 of `shape` and the constant inputs `constants` (nil: an absent input).
    func model(_ op: String, _ shape: [Int], constants: [Tensor?] = [], _ attributes: [String: Attribute] = [:]) throws -> Model {
        var b = GraphBuilder()
        let x = b.input("x0", shape)
        b.output(b.node(op, [x] + constants.map { $0.map { b.constant($0) } ?? "" }, attributes))
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        return model
    }

    @Test func padInEveryMode() throws {
        let x = seeded(201, [2, 3, 4, 5], -2, 2)
        let pads = Tensor(int64s: [0, 1, 2, 3, 0, 2, 1, 3])
        for mode in ["constant", "edge", "reflect", "wrap"] {
            let m = try model("Pad", [2, 3, 4, 5], constants: [pads], ["mode": .string(mode)])
            #expect(GPUBackend().rejections(in: m.graph).isEmpty, "Pad \(mode)")
            try expectGPUMatchesReference(m, ["x0": x], "Pad \(mode)")
        }
        // A constant value, negative pads (a crop), and pads on some axes only.
        try expectGPUMatchesReference(try model("Pad", [2, 3, 4, 5], constants: [pads, Tensor(shape: [], [Float(1.5)])]), ["x0": x], "Pad value 1.5")
        try expectGPUMatchesReference(try model("Pad", [2, 3, 4, 5], constants: [Tensor(int64s: [0, -1, 1, 0, 1, 0, -2, 0])]), ["x0": x], "Pad crop")
        try expectGPUMatchesReference(try model("Pad", [2, 3, 4, 5], constants: [Tensor(int64s: [1, 2, 3, 0]), nil, Tensor(int64s: [-1, 1])]),
                                      ["x0": x], "Pad axes")
        // Reflect pads as wide as the axis, negative edge pads and pads that are graph inputs are refused.
        let wide = try model("Pad", [2, 3, 4, 5], constants: [Tensor(int64s: [0, 0, 0, 5, 0, 0, 0, 0])], ["mode": .string("reflect")])
        #expect(GPUBackend().rejections(in: wide.graph).first?.reason.contains("reflect") == true)
        let crop = try model("Pad", [2, 3, 4, 5], constants: [Tensor(int64s: [0, 0, 0, -1, 0, 0, 0, 0])], ["mode": .string("edge")])
        #expect(GPUBackend().rejections(in: crop.graph).count == 1)
    }

    @Test func resizeNearestAndLinear() throws {
        let x = seeded(202, [1, 2, 5, 7], -2, 2)
        let up = Tensor(shape: [4], [Float(1), 1, 2, 2]), odd = Tensor(shape: [4], [Float(1), 1, 1.7, 0.6])
        let cases: [(String, Tensor?, Tensor?, [String: Attribute])] = [
            ("nearest asymmetric floor ×2", up, nil, ["mode": .string("nearest"), "coordinate_transformation_mode": .string("asymmetric"), "nearest_mode": .string("floor")]),
            ("nearest half_pixel ×1.7/×0.6", odd, nil, [:]),
            ("nearest round_prefer_ceil align_corners", odd, nil, ["nearest_mode": .string("round_prefer_ceil"), "coordinate_transformation_mode": .string("align_corners")]),
            ("nearest ceil pytorch_half_pixel", odd, nil, ["nearest_mode": .string("ceil"), "coordinate_transformation_mode": .string("pytorch_half_pixel")]),
            ("linear half_pixel ×2", up, nil, ["mode": .string("linear")]),
            ("linear half_pixel ×1.7/×0.6", odd, nil, ["mode": .string("linear")]),
            ("linear align_corners", odd, nil, ["mode": .string("linear"), "coordinate_transformation_mode": .string("align_corners")]),
            ("linear asymmetric", odd, nil, ["mode": .string("linear"), "coordinate_transformation_mode": .string("asymmetric")]),
            ("linear half_pixel_symmetric", odd, nil, ["mode": .string("linear"), "coordinate_transformation_mode": .string("half_pixel_symmetric")]),
            ("linear sizes 9×4", nil, Tensor(int64s: [1, 2, 9, 4]), ["mode": .string("linear")]),
            ("nearest sizes 3×11", nil, Tensor(int64s: [1, 2, 3, 11]), [:]),
        ]
        for (name, scales, sizes, attributes) in cases {
            let m = try model("Resize", [1, 2, 5, 7], constants: [nil, scales, sizes], attributes)
            #expect(GPUBackend().rejections(in: m.graph).isEmpty, "Resize \(name)")
            try expectGPUMatchesReference(m, ["x0": x], "Resize \(name)")
        }
        // Linear over three axes (a volume), and the refused forms: cubic, antialias, scales that are inputs.
        let volume = try model("Resize", [1, 3, 4, 5], constants: [nil, Tensor(shape: [4], [Float(1), 2, 1.5, 0.8])], ["mode": .string("linear")])
        try expectGPUMatchesReference(volume, ["x0": seeded(203, [1, 3, 4, 5], -2, 2)], "Resize linear on three axes")
        let cubic = try model("Resize", [1, 2, 5, 7], constants: [nil, up], ["mode": .string("cubic")])
        #expect(GPUBackend().rejections(in: cubic.graph).first?.reason.contains("cubic") == true)
        let antialias = try model("Resize", [1, 2, 5, 7], constants: [nil, odd], ["mode": .string("linear"), "antialias": .int(1)])
        #expect(GPUBackend().rejections(in: antialias.graph).count == 1)
    }

    @Test func splitIntoUnequalParts() throws {
        for (axis, sizes) in [(1, [2, 5, 1]), (-1, [3, 3]), (0, [1, 1])] {
            var b = GraphBuilder()
            let x = b.input("x0", [2, 8, 6])
            let outs = sizes.indices.map { "part\($0)" }
            b.graph.nodes.append(Node(name: "split", op: OpID("", "Split"), inputs: [x, b.constant(Tensor(int64s: sizes))], outputs: outs,
                                      attributes: ["axis": .int(axis)]))
            // A Relu after one part: it must not fuse into the Split's launch (which writes every part).
            let relu = b.node("Relu", [outs[0]])
            b.graph.outputs = ([relu] + outs.dropFirst()).map { Value(name: $0) }
            var m = b.model
            _ = try GraphInference.infer(&m.graph)
            #expect(GPUBackend().rejections(in: m.graph).isEmpty, "Split axis \(axis)")
            try expectGPUMatchesReference(m, ["x0": seeded(204, [2, 8, 6], -2, 2)], "Split axis \(axis) into \(sizes)")
        }
    }

    @Test func convTransposeWithStridesPadsGroupsAndBias() throws {
        let cases: [([Int], [Int], [String: Attribute], Bool)] = [
            ([1, 4, 5, 6], [4, 3, 2, 2], ["strides": .ints([2, 2])], true),                                          // PP-OCR det's 2×2 up
            ([1, 4, 5, 6], [4, 3, 3, 3], ["strides": .ints([2, 2]), "pads": .ints([0, 0, 1, 1])], true),             // the Keras U-Net's
            ([2, 6, 4, 5], [6, 2, 3, 2], ["group": .int(3), "strides": .ints([2, 1]), "pads": .ints([1, 0, 1, 1]),
                                          "dilations": .ints([1, 2]), "output_padding": .ints([1, 0])], false),
        ]
        for (i, (xs, ws, attributes, hasBias)) in cases.enumerated() {
            let outChannels = ws[1] * (attributes["group"].flatMap { if case .int(let g) = $0 { return g } else { return nil } } ?? 1)
            let m = try model("ConvTranspose", xs, constants: [seeded(UInt64(210 + i), ws)] + (hasBias ? [seeded(UInt64(220 + i), [outChannels])] : []), attributes)
            #expect(GPUBackend().rejections(in: m.graph).isEmpty, "ConvTranspose case \(i)")
            try expectGPUMatchesReference(m, ["x0": seeded(UInt64(230 + i), xs, -2, 2)], "ConvTranspose case \(i) \(attributes)")
        }
        let sized = try model("ConvTranspose", [1, 4, 5, 6], constants: [seeded(240, [4, 3, 2, 2])], ["output_shape": .ints([10, 12])])
        #expect(GPUBackend().rejections(in: sized.graph).first?.reason.contains("output_shape") == true)
    }

    @Test func oneDimensionalConvAndClipWithAnInfiniteBound() throws {
        // The STFT front end of the speech models: a strided 1-D Conv, then a Clip whose upper bound is +inf.
        let conv = try model("Conv", [2, 1, 40], constants: [seeded(250, [6, 1, 8]), seeded(251, [6])], ["strides": .ints([3]), "pads": .ints([2, 1])])
        #expect(GPUBackend().rejections(in: conv.graph).isEmpty)
        try expectGPUMatchesReference(conv, ["x0": seeded(252, [2, 1, 40], -2, 2)], "Conv 1-D")
        let grouped = try model("Conv", [1, 4, 17], constants: [seeded(253, [4, 2, 3])], ["group": .int(2), "dilations": .ints([2]), "auto_pad": .string("SAME_UPPER")])
        try expectGPUMatchesReference(grouped, ["x0": seeded(254, [1, 4, 17], -2, 2)], "Conv 1-D grouped, dilated, SAME_UPPER")
        let clip = try model("Clip", [3, 7], constants: [Tensor(shape: [], [Float(-0.25)]), Tensor(shape: [], [Float.infinity])])
        try expectGPUMatchesReference(clip, ["x0": seeded(255, [3, 7], -2, 2)], "Clip to [-0.25, inf]")
        let below = try model("Clip", [3, 7], constants: [Tensor(shape: [], [-Float.infinity]), Tensor(shape: [], [Float(0.5)])])
        try expectGPUMatchesReference(below, ["x0": seeded(256, [3, 7], -2, 2)], "Clip to [-inf, 0.5]")
        // Bounds computed at run time (the log-mel front end clips at its maximum less 80): scalar inputs.
        var b = GraphBuilder()
        let x = b.input("x0", [4, 6])
        let top = b.node("Sub", [b.node("ReduceMax", [x], ["keepdims": .int(0)]), b.constant(Tensor(shape: [], [Float(1)]))])
        b.output(b.node("Clip", [x, top]), b.node("Clip", [x, b.input("lo", []), b.input("hi", [])]), b.node("Clip", [x, "", top]))
        var m = b.model
        _ = try GraphInference.infer(&m.graph)
        #expect(GPUBackend().rejections(in: m.graph).isEmpty)
        try expectGPUMatchesReference(m, ["x0": seeded(257, [4, 6], -2, 2), "lo": Tensor(shape: [], [Float(-0.5)]), "hi": Tensor(shape: [], [Float(0.75)])],
                                      "Clip with run-time bounds")
        // A bound with more than one element is refused.
        var v = GraphBuilder()
        let vx = v.input("x0", [4, 6])
        v.output(v.node("Clip", [vx, v.input("lo", [2])]))
        var vm = v.model
        _ = try GraphInference.infer(&vm.graph)
        #expect(GPUBackend().rejections(in: vm.graph).first?.reason.contains("scalar") == true)
    }
}
