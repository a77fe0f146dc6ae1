// Tests of the CKilnKernels convolution, im2col, depthwise and pooling kernels against direct Swift loops.
import CKilnKernels
import Foundation
import Testing
import KilnTestSupport

/// A convolution case: channels, spatial size, kernel, stride, pads (top, left, bottom, right), dilation, groups.
struct ConvCase: CustomStringConvertible {
    var cin: Int, cout: Int, h: Int, w: Int, kh: Int, kw: Int
    var sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0, dh = 1, dw = 1, groups = 1

    var oh: Int { (h + pt + pb - ((kh - 1) * dh + 1)) / sh + 1 }
    var ow: Int { (w + pl + pr - ((kw - 1) * dw + 1)) / sw + 1 }
    var params: kiln_conv2d_params {
        kiln_conv2d_params(in_channels: cin, in_height: h, in_width: w, out_channels: cout, out_height: oh,
                           out_width: ow, kernel_h: kh, kernel_w: kw, stride_h: sh, stride_w: sw, pad_top: pt,
                           pad_left: pl, dilation_h: dh, dilation_w: dw, groups: groups)
    }
    var description: String {
        "cin=\(cin) cout=\(cout) \(h)x\(w) k=\(kh)x\(kw) s=\(sh),\(sw) pads=\(pt),\(pl),\(pb),\(pr) d=\(dh),\(dw) g=\(groups)"
    }

    /// Direct convolution in Double with bias per output channel, residual and activation.
    func reference(input: [Float], weight: [Float], bias: [Float]?, residual: [Float]?,
                   activation: kiln_activation, alpha: Float = 0, beta: Float = 0) -> [Float] {
        let cinG = cin / groups, coutG = cout / groups
        var out = [Float](repeating: 0, count: cout * oh * ow)
        for co in 0..<cout {
            let g = co / coutG
            for y in 0..<oh {
                for x in 0..<ow {
                    var s = 0.0
                    for ci in 0..<cinG {
                        for ky in 0..<kh {
                            let iy = y * sh + ky * dh - pt
                            if iy < 0 || iy >= h { continue }
                            for kx in 0..<kw {
                                let ix = x * sw + kx * dw - pl
                                if ix < 0 || ix >= w { continue }
                                s += Double(input[((g * cinG + ci) * h + iy) * w + ix])
                                    * Double(weight[((co * cinG + ci) * kh + ky) * kw + kx])
                            }
                        }
                    }
                    let o = (co * oh + y) * ow + x
                    if let bias { s += Double(bias[co]) }
                    if let residual { s += Double(residual[o]) }
                    out[o] = referenceActivation(activation, alpha, beta, Float(s))
                }
            }
        }
        return out
    }
}

extension KernelTests {
    static let convCases: [ConvCase] = [
        ConvCase(cin: 3, cout: 8, h: 9, w: 11, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1),
        ConvCase(cin: 5, cout: 7, h: 6, w: 6, kh: 1, kw: 1), // direct 1×1 path
        ConvCase(cin: 16, cout: 13, h: 5, w: 7, kh: 1, kw: 1, sh: 2, sw: 2), // strided 1×1
        ConvCase(cin: 3, cout: 10, h: 17, w: 19, kh: 7, kw: 7, sh: 2, sw: 2, pt: 3, pl: 3, pb: 3, pr: 3),
        ConvCase(cin: 4, cout: 6, h: 10, w: 9, kh: 3, kw: 2, sh: 1, sw: 3, pt: 2, pl: 0, pb: 1, pr: 2, dh: 2, dw: 1),
        ConvCase(cin: 8, cout: 12, h: 7, w: 8, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, groups: 4),
        ConvCase(cin: 6, cout: 6, h: 8, w: 5, kh: 3, kw: 3, sh: 2, sw: 1, pt: 1, pl: 1, pb: 1, pr: 1, groups: 6),
        ConvCase(cin: 40, cout: 5, h: 4, w: 4, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1), // K = 360 > one K block
        ConvCase(cin: 2, cout: 3, h: 23, w: 29, kh: 3, kw: 3, pt: 0, pl: 0), // 567 pixels > one pixel block
    ]

    @Test func convolutionMatchesDirectLoopsWithEpilogues() {
        var rng = SplitMix64(seed: 10)
        forEachKernelFamily { isa in
            for c in Self.convCases {
                let p = c.params
                let input = rng.floats(c.cin * c.h * c.w)
                let weight = rng.floats(c.cout * (c.cin / c.groups) * c.kh * c.kw)
                let bias = rng.floats(c.cout), residual = rng.floats(c.cout * c.oh * c.ow)
                var packed = [Float](repeating: .nan, count: withUnsafePointer(to: p) { kiln_conv2d_pack_weight_size($0) })
                withUnsafePointer(to: p) { kiln_conv2d_pack_weight($0, weight, &packed) }
                let pixels = c.oh * c.ow
                for withEpilogue in [false, true] {
                    let expected = c.reference(input: input, weight: weight, bias: withEpilogue ? bias : nil,
                                               residual: withEpilogue ? residual : nil,
                                               activation: withEpilogue ? KILN_ACT_RELU : KILN_ACT_NONE)
                    var got = [Float](repeating: .nan, count: c.cout * pixels)
                    // Two calls over a split of the pixel range, as two threads would make them.
                    let split = pixels / 2 + 1
                    for (p0, p1) in [(0, split), (split, pixels)] {
                        bias.withUnsafeBufferPointer { bp in
                            residual.withUnsafeBufferPointer { rp in
                                var ep = kiln_epilogue(bias: bp.baseAddress, bias_per_row: 0, residual: rp.baseAddress,
                                                       ldr: pixels, activation: KILN_ACT_RELU, alpha: 0, beta: 0)
                                withUnsafePointer(to: p) { pp in
                                    if withEpilogue { kiln_conv2d_nchw(pp, input, packed, &got, p0, p1, &ep) }
                                    else { kiln_conv2d_nchw(pp, input, packed, &got, p0, p1, nil) }
                                }
                            }
                        }
                    }
                    let k = c.cin / c.groups * c.kh * c.kw
                    let err = maxAbsDifference(got, expected)
                    #expect(err <= 2e-6 * Float(k) + 1e-5, "\(isa) \(c) epilogue=\(withEpilogue): \(err)")
                }
            }
        }
    }

    @Test func im2colLaysOutWindowsRowByTap() {
        var rng = SplitMix64(seed: 11)
        for c in Self.convCases {
            let p = c.params
            let input = rng.floats(c.cin * c.h * c.w)
            let cinG = c.cin / c.groups, pixels = c.oh * c.ow
            let group = c.groups - 1
            var col = [Float](repeating: .nan, count: cinG * c.kh * c.kw * pixels)
            withUnsafePointer(to: p) { kiln_im2col_nchw($0, input, group, &col) }
            var ok = true
            for ci in 0..<cinG { for ky in 0..<c.kh { for kx in 0..<c.kw { for y in 0..<c.oh { for x in 0..<c.ow {
                let row = (ci * c.kh + ky) * c.kw + kx
                let iy = y * c.sh + ky * c.dh - c.pt, ix = x * c.sw + kx * c.dw - c.pl
                let v: Float = (iy >= 0 && iy < c.h && ix >= 0 && ix < c.w)
                    ? input[((group * cinG + ci) * c.h + iy) * c.w + ix] : 0
                if col[row * pixels + y * c.ow + x] != v { ok = false }
            } } } } }
            #expect(ok, "\(c)")
        }
    }

    @Test func depthwiseConvolutionMatchesDirectLoops() {
        let cases: [ConvCase] = [
            ConvCase(cin: 3, cout: 3, h: 12, w: 37, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, groups: 3),
            ConvCase(cin: 4, cout: 4, h: 13, w: 41, kh: 3, kw: 3, sh: 2, sw: 2, pt: 1, pl: 1, pb: 1, pr: 1, groups: 4),
            ConvCase(cin: 2, cout: 2, h: 9, w: 30, kh: 3, kw: 3, sh: 2, sw: 2, pt: 0, pl: 0, pb: 1, pr: 1, groups: 2),
            ConvCase(cin: 2, cout: 2, h: 5, w: 5, kh: 3, kw: 3, groups: 2), // no padding
            ConvCase(cin: 2, cout: 2, h: 2, w: 2, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, groups: 2), // all border
            ConvCase(cin: 3, cout: 3, h: 11, w: 10, kh: 5, kw: 5, pt: 2, pl: 2, pb: 2, pr: 2, groups: 3),
            ConvCase(cin: 2, cout: 2, h: 12, w: 14, kh: 3, kw: 3, pt: 2, pl: 2, pb: 2, pr: 2, dh: 2, dw: 2, groups: 2),
            ConvCase(cin: 2, cout: 2, h: 10, w: 26, kh: 3, kw: 3, sh: 3, sw: 3, pt: 1, pl: 1, pb: 1, pr: 1, groups: 2),
        ]
        var rng = SplitMix64(seed: 12)
        forEachKernelFamily { isa in
            for c in cases {
                let p = c.params
                let input = rng.floats(c.cin * c.h * c.w), weight = rng.floats(c.cin * c.kh * c.kw)
                let bias = rng.floats(c.cin), residual = rng.floats(c.cout * c.oh * c.ow)
                let expected = c.reference(input: input, weight: weight, bias: bias, residual: residual,
                                           activation: KILN_ACT_CLIP, alpha: 0, beta: 0.9)
                var got = [Float](repeating: .nan, count: c.cout * c.oh * c.ow)
                for (c0, c1) in [(0, 1), (1, c.cin)] {
                    bias.withUnsafeBufferPointer { bp in
                        residual.withUnsafeBufferPointer { rp in
                            var ep = kiln_epilogue(bias: bp.baseAddress, bias_per_row: 0, residual: rp.baseAddress,
                                                   ldr: c.oh * c.ow, activation: KILN_ACT_CLIP, alpha: 0, beta: 0.9)
                            withUnsafePointer(to: p) { kiln_depthwise_conv2d_nchw($0, input, weight, &got, c0, c1, &ep) }
                        }
                    }
                }
                let err = maxAbsDifference(got, expected)
                #expect(err <= 1e-5, "\(isa) depthwise \(c): \(err)")
            }
        }
    }

    @Test func poolingMatchesDirectLoops() {
        let cases: [ConvCase] = [
            ConvCase(cin: 3, cout: 3, h: 12, w: 13, kh: 3, kw: 3, sh: 2, sw: 2, pt: 1, pl: 1, pb: 1, pr: 1),
            ConvCase(cin: 2, cout: 2, h: 7, w: 9, kh: 2, kw: 3, sh: 1, sw: 2, pt: 0, pl: 1, pb: 1, pr: 0),
            ConvCase(cin: 2, cout: 2, h: 8, w: 8, kh: 3, kw: 3, sh: 1, sw: 1, pt: 2, pl: 2, pb: 2, pr: 2, dh: 2, dw: 2),
            ConvCase(cin: 1, cout: 1, h: 5, w: 5, kh: 5, kw: 5),
        ]
        var rng = SplitMix64(seed: 13)
        forEachKernelFamily { isa in
            for c in cases {
                let p = c.params
                let input = rng.floats(c.cin * c.h * c.w, -5, 5)
                var expMax = [Float](), expAvg = [Float](), expAvgPad = [Float]()
                for ch in 0..<c.cin { for y in 0..<c.oh { for x in 0..<c.ow {
                    var m = -Float.infinity, s: Float = 0, n = 0, npad = 0
                    for ky in 0..<c.kh { for kx in 0..<c.kw {
                        let iy = y * c.sh + ky * c.dh - c.pt, ix = x * c.sw + kx * c.dw - c.pl
                        if iy >= -c.pt && iy < c.h + c.pb && ix >= -c.pl && ix < c.w + c.pr { npad += 1 }
                        if iy < 0 || iy >= c.h || ix < 0 || ix >= c.w { continue }
                        let v = input[(ch * c.h + iy) * c.w + ix]
                        m = max(m, v); s += v; n += 1
                    } }
                    expMax.append(m); expAvg.append(n > 0 ? s / Float(n) : 0); expAvgPad.append(s / Float(npad))
                } } }
                let count = c.cin * c.oh * c.ow
                var gotMax = [Float](repeating: .nan, count: count), gotAvg = gotMax, gotAvgPad = gotMax
                var gotAvgPadExplicit = gotMax
                withUnsafePointer(to: p) { pp in
                    kiln_maxpool2d_nchw(pp, input, &gotMax)
                    kiln_avgpool2d_nchw(pp, 0, input, &gotAvg)
                    kiln_avgpool2d_nchw(pp, 1, input, &gotAvgPad)
                    kiln_avgpool2d_nchw_padded(pp, 1, c.pb, c.pr, input, &gotAvgPadExplicit)
                }
                #expect(gotMax == expMax, "\(isa) maxpool \(c)")
                #expect(maxAbsDifference(gotAvg, expAvg) <= 1e-5, "\(isa) avgpool \(c)")
                #expect(maxAbsDifference(gotAvgPad, expAvgPad) <= 1e-5, "\(isa) avgpool pads \(c)")
                #expect(maxAbsDifference(gotAvgPadExplicit, expAvgPad) <= 1e-5, "\(isa) avgpool explicit pads \(c)")
            }
            for (channels, hw) in [(3, 49), (5, 1), (2, 13), (1, 3136)] {
                let input = rng.floats(channels * hw)
                var got = [Float](repeating: .nan, count: channels)
                kiln_global_avgpool_nchw(channels, hw, input, &got)
                let expected = (0..<channels).map { ch in
                    Float((0..<hw).reduce(0.0) { $0 + Double(input[ch * hw + $1]) } / Double(hw))
                }
                #expect(maxAbsDifference(got, expected) <= 1e-5, "\(isa) global average pool \(channels)x\(hw)")
            }
        }
    }
}
