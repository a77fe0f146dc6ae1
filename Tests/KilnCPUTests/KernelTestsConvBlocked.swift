// Tests of the dense blocked-layout (NCHW16c) convolution, kiln_conv2d_blocked, against direct Swift loops.
import CKilnKernels
import Testing
import KilnTestSupport

/// NCHW → blocked by plain loops (independent of the kernels' reorder).
private func blockedCopy(_ x: [Float], channels: Int, pixels: Int) -> [Float] {
    let blocks = (channels + 15) / 16
    var out = [Float](repeating: 0, count: blocks * 16 * pixels)
    for c in 0..<channels { for i in 0..<pixels { out[((c / 16) * pixels + i) * 16 + c % 16] = x[c * pixels + i] } }
    return out
}

/// Blocked → NCHW by plain loops.
private func plainCopy(_ x: [Float], channels: Int, pixels: Int) -> [Float] {
    var out = [Float](repeating: 0, count: channels * pixels)
    for c in 0..<channels { for i in 0..<pixels { out[c * pixels + i] = x[((c / 16) * pixels + i) * 16 + c % 16] } }
    return out
}

extension KernelTests {
    static let blockedConvCases: [ConvCase] = [
        ConvCase(cin: 3, cout: 64, h: 17, w: 19, kh: 7, kw: 7, sh: 2, sw: 2, pt: 3, pl: 3, pb: 3, pr: 3), // a stem
        ConvCase(cin: 16, cout: 16, h: 8, w: 8, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1),
        ConvCase(cin: 33, cout: 70, h: 7, w: 7, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1), // partial blocks, 2 groups
        ConvCase(cin: 24, cout: 40, h: 9, w: 6, kh: 1, kw: 1), // unpadded 1×1: reads the input directly
        ConvCase(cin: 20, cout: 5, h: 9, w: 9, kh: 1, kw: 1, sh: 2, sw: 2), // strided 1×1, also direct
        ConvCase(cin: 17, cout: 130, h: 6, w: 5, kh: 3, kw: 2, sh: 2, sw: 1, pt: 2, pl: 0, pb: 1, pr: 2, dh: 2, dw: 1),
        ConvCase(cin: 48, cout: 8, h: 1, w: 31, kh: 1, kw: 5, pt: 0, pl: 2, pb: 0, pr: 2), // 1-D, 31 pixels
        ConvCase(cin: 5, cout: 9, h: 4, w: 4, kh: 4, kw: 4, pt: 0, pl: 0, pb: 3, pr: 3), // only end padding
        ConvCase(cin: 160, cout: 96, h: 3, w: 3, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1), // several input passes
        ConvCase(cin: 2, cout: 3, h: 23, w: 29, kh: 3, kw: 3), // many pixel chunks, one partial output block
    ]

    @Test func blockedConvolutionMatchesDirectLoops() {
        var rng = SplitMix64(seed: 21)
        let epilogues: [(name: String, act: kiln_activation, alpha: Float, beta: Float, bias: Bool, residual: Bool)] = [
            ("none", KILN_ACT_NONE, 0, 0, false, false),
            ("bias+residual+relu", KILN_ACT_RELU, 0, 0, true, true),
            ("bias+clip", KILN_ACT_CLIP, -0.25, 0.5, true, false),
            ("residual+sigmoid", KILN_ACT_SIGMOID, 0, 0, false, true),
        ]
        forEachKernelFamily { isa in
            for c in Self.blockedConvCases {
                var p = c.params
                let pixels = c.oh * c.ow, inPixels = c.h * c.w
                let input = rng.floats(c.cin * inPixels)
                let weight = rng.floats(c.cout * c.cin * c.kh * c.kw)
                let bias = rng.floats(c.cout), residual = rng.floats(c.cout * pixels)
                let outBlocked = (c.cout + 15) / 16 * 16 * pixels
                for blockedInput in [Int32(1), 0] {
                    var packed = [Float](repeating: .nan, count: kiln_conv2d_blocked_pack_weight_size(&p, blockedInput))
                    kiln_conv2d_blocked_pack_weight(&p, blockedInput, weight, &packed)
                    let source = blockedInput == 1 ? blockedCopy(input, channels: c.cin, pixels: inPixels) : input
                    var padded = [Float](repeating: .nan, count: kiln_conv2d_blocked_padded_size(&p, blockedInput))
                    let direct = kiln_conv2d_blocked_reads_input_directly(&p) != 0
                    // Direct exactly when no window reaches outside the input.
                    let reachH = (c.oh - 1) * c.sh + (c.kh - 1) * c.dh + 1, reachW = (c.ow - 1) * c.sw + (c.kw - 1) * c.dw + 1
                    #expect(direct == (c.pt == 0 && c.pl == 0 && reachH <= c.h && reachW <= c.w), "\(c)")
                    if !direct {
                        // Two halves of the pad units, as two threads would do them.
                        let units = kiln_conv2d_blocked_pad_units(&p, blockedInput)
                        kiln_conv2d_blocked_pad_input(&p, blockedInput, source, &padded, units / 2, units)
                        kiln_conv2d_blocked_pad_input(&p, blockedInput, source, &padded, 0, units / 2)
                    }
                    let work = kiln_conv2d_blocked_work(&p)
                    for e in epilogues {
                        let expected = c.reference(input: input, weight: weight, bias: e.bias ? bias : nil,
                                                   residual: e.residual ? residual : nil, activation: e.act,
                                                   alpha: e.alpha, beta: e.beta)
                        let residualBlocked = blockedCopy(residual, channels: c.cout, pixels: pixels)
                        var out = [Float](repeating: .nan, count: outBlocked)
                        bias.withUnsafeBufferPointer { bp in
                            residualBlocked.withUnsafeBufferPointer { rp in
                                var ep = kiln_epilogue(bias: e.bias ? bp.baseAddress : nil, bias_per_row: 0,
                                                       residual: e.residual ? rp.baseAddress : nil, ldr: 0,
                                                       activation: e.act, alpha: e.alpha, beta: e.beta)
                                let src = direct ? source : padded
                                // Work items in two ranges, the later first: each item owns its outputs.
                                kiln_conv2d_blocked(&p, blockedInput, src, packed, &out, work / 3, work, &ep)
                                kiln_conv2d_blocked(&p, blockedInput, src, packed, &out, 0, work / 3, &ep)
                            }
                        }
                        let got = plainCopy(out, channels: c.cout, pixels: pixels)
                        let scale = max(1, expected.map(abs).max() ?? 1)
                        let err = maxAbsDifference(got, expected)
                        let tolerance = 1e-5 * scale * Float(c.cin * c.kh * c.kw).squareRoot()
                        let close = err <= tolerance
                        #expect(close, "\(isa) \(c) blockedInput=\(blockedInput) \(e.name): error \(err)")
                        // Padding lanes of the last output block hold finite values.
                        #expect(out.allSatisfy { $0.isFinite }, "\(isa) \(c) \(e.name): non-finite padding lanes")
                    }
                }
            }
        }
    }

    @Test func blockedConvolutionWithoutWorkWritesNothing() {
        var c = ConvCase(cin: 16, cout: 16, h: 4, w: 4, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1)
        var p = c.params
        var out = [Float](repeating: 7, count: 16 * 16)
        let packed = [Float](repeating: 1, count: kiln_conv2d_blocked_pack_weight_size(&p, 1))
        let padded = [Float](repeating: 1, count: kiln_conv2d_blocked_padded_size(&p, 1))
        let work = kiln_conv2d_blocked_work(&p)
        kiln_conv2d_blocked(&p, 1, padded, packed, &out, work, work + 5, nil)
        #expect(out.allSatisfy { $0 == 7 })
        // Grouped convolutions are not this kernel's: nothing to do and nothing written.
        c.groups = 2
        p = c.params
        #expect(kiln_conv2d_blocked_work(&p) == 0)
        #expect(kiln_conv2d_blocked_pack_weight_size(&p, 1) == 0)
    }

    @Test func winogradConvolutionMatchesDirectLoops() {
        var rng = SplitMix64(seed: 22)
        let cases: [ConvCase] = [
            ConvCase(cin: 16, cout: 16, h: 8, w: 8, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1),
            ConvCase(cin: 33, cout: 70, h: 13, w: 11, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1), // partial tiles and blocks
            ConvCase(cin: 20, cout: 9, h: 9, w: 14, kh: 3, kw: 3), // no padding
            ConvCase(cin: 48, cout: 24, h: 10, w: 7, kh: 3, kw: 3, pt: 2, pl: 0, pb: 0, pr: 2), // asymmetric pads
            ConvCase(cin: 24, cout: 40, h: 26, w: 25, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1), // many work items
        ]
        forEachKernelFamily { isa in
            for c in cases {
                var p = c.params
                #expect(kiln_conv2d_winograd_supported(&p) == 1)
                let pixels = c.oh * c.ow
                let input = rng.floats(c.cin * c.h * c.w), weight = rng.floats(c.cout * c.cin * 9)
                let bias = rng.floats(c.cout), residual = rng.floats(c.cout * pixels)
                var blockedWeight = [Float](repeating: 0, count: kiln_conv2d_blocked_pack_weight_size(&p, 1))
                kiln_conv2d_blocked_pack_weight(&p, 1, weight, &blockedWeight)
                var packed = [Float](repeating: .nan, count: kiln_conv2d_winograd_pack_weight_size(&p))
                kiln_conv2d_winograd_pack_weight(&p, blockedWeight, &packed)
                let source = blockedCopy(input, channels: c.cin, pixels: c.h * c.w)
                let residualBlocked = blockedCopy(residual, channels: c.cout, pixels: pixels)
                let work = kiln_conv2d_winograd_work(&p)
                for (act, withResidual) in [(KILN_ACT_NONE, false), (KILN_ACT_RELU, true), (KILN_ACT_SIGMOID, true)] {
                    let expected = c.reference(input: input, weight: weight, bias: bias,
                                               residual: withResidual ? residual : nil, activation: act)
                    var out = [Float](repeating: .nan, count: (c.cout + 15) / 16 * 16 * pixels)
                    bias.withUnsafeBufferPointer { bp in
                        residualBlocked.withUnsafeBufferPointer { rp in
                            var ep = kiln_epilogue(bias: bp.baseAddress, bias_per_row: 0,
                                                   residual: withResidual ? rp.baseAddress : nil, ldr: 0,
                                                   activation: act, alpha: 0, beta: 0)
                            kiln_conv2d_winograd(&p, source, packed, &out, work / 2, work, &ep)
                            kiln_conv2d_winograd(&p, source, packed, &out, 0, work / 2, &ep)
                        }
                    }
                    let got = plainCopy(out, channels: c.cout, pixels: pixels)
                    let scale = max(1, expected.map(abs).max() ?? 1)
                    let err = maxAbsDifference(got, expected)
                    // Winograd rounds differently from the direct sum: allow a few ulps of the scale per term.
                    let close = err <= 2e-6 * scale * Float(c.cin * 9).squareRoot()
                    #expect(close, "\(isa) \(c) act=\(act.rawValue): error \(err)")
                }
            }
        }
    }

    @Test func winogradRefusesOtherShapes() {
        for c in [ConvCase(cin: 16, cout: 16, h: 8, w: 8, kh: 3, kw: 3, sh: 2, sw: 2),
                  ConvCase(cin: 16, cout: 16, h: 8, w: 8, kh: 5, kw: 5),
                  ConvCase(cin: 16, cout: 16, h: 8, w: 8, kh: 3, kw: 3, dh: 2, dw: 2),
                  ConvCase(cin: 16, cout: 16, h: 8, w: 8, kh: 3, kw: 3, groups: 2)] {
            var p = c.params
            #expect(kiln_conv2d_winograd_supported(&p) == 0, "\(c)")
            #expect(kiln_conv2d_winograd_work(&p) == 0)
            #expect(kiln_conv2d_winograd_pack_weight_size(&p) == 0)
        }
    }
}
