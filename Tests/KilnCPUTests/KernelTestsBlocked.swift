// Tests of the CKilnKernels blocked-layout (NCHW16c) kernels: reorders, depthwise convolution, max/average
// pooling and global pooling, against Swift loops on the NCHW data and the NCHW kernels.
import CKilnKernels
import Foundation
import Testing
import KilnTestSupport

/// Channels per block of the blocked layout.
private let block = 16

/// Index of channel c of pixel `pixel` in a blocked image of `hw` pixels.
private func blockedIndex(_ c: Int, _ pixel: Int, hw: Int) -> Int {
    ((c / block) * hw + pixel) * block + c % block
}

/// A blocked copy of an NCHW image written in Swift; padding lanes hold `padding` (finite garbage).
private func toBlocked(_ x: [Float], channels: Int, hw: Int, padding: Float = 0) -> [Float] {
    let padded = (channels + block - 1) / block * block
    var out = [Float](repeating: padding, count: padded * hw)
    for c in 0..<channels { for p in 0..<hw { out[blockedIndex(c, p, hw: hw)] = x[c * hw + p] } }
    return out
}

/// The NCHW image of the real channels of a blocked image, read in Swift.
private func fromBlocked(_ x: [Float], channels: Int, hw: Int) -> [Float] {
    var out = [Float](repeating: 0, count: channels * hw)
    for c in 0..<channels { for p in 0..<hw { out[c * hw + p] = x[blockedIndex(c, p, hw: hw)] } }
    return out
}

/// The padding lanes (channels >= `channels` in the last block) of a blocked image of `hw` pixels.
private func paddingLanes(_ x: [Float], channels: Int, hw: Int) -> [Float] {
    let padded = (channels + block - 1) / block * block
    var out = [Float]()
    for c in channels..<padded { for p in 0..<hw { out.append(x[blockedIndex(c, p, hw: hw)]) } }
    return out
}

/// A random window shape (depthwise convolution or pooling) with out_height, out_width >= 1.
private func randomWindowCase(_ rng: inout SplitMix64, channels: Int) -> ConvCase {
    while true {
        var c = ConvCase(cin: channels, cout: channels, h: rng.int(1...13), w: rng.int(1...13), kh: rng.int(1...5),
                         kw: rng.int(1...5), groups: channels)
        c.sh = rng.int(1...3); c.sw = rng.int(1...3)
        c.dh = rng.int(0...3) == 0 ? 2 : 1; c.dw = rng.int(0...3) == 0 ? 2 : 1
        c.pt = rng.int(0...2); c.pl = rng.int(0...2); c.pb = rng.int(0...2); c.pr = rng.int(0...2)
        if rng.int(0...2) == 0 { // the 3×3 stride-1/2 fast shapes
            c.kh = 3; c.kw = 3; c.dh = 1; c.dw = 1; c.sw = rng.int(1...2)
        }
        let effH = (c.kh - 1) * c.dh + 1, effW = (c.kw - 1) * c.dw + 1
        if c.h + c.pt + c.pb >= effH && c.w + c.pl + c.pr >= effW { return c }
    }
}

/// Fixed window cases: tiny planes, channel counts that are not multiples of 16, wide rows (several interior
/// groups), asymmetric pads, dilation and every stride from 1 to 3.
private let fixedWindowCases: [ConvCase] = [
    ConvCase(cin: 3, cout: 3, h: 1, w: 1, kh: 1, kw: 1, groups: 3),
    ConvCase(cin: 17, cout: 17, h: 2, w: 3, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, groups: 17),
    ConvCase(cin: 24, cout: 24, h: 14, w: 14, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1, groups: 24),
    ConvCase(cin: 33, cout: 33, h: 15, w: 29, kh: 3, kw: 3, sh: 2, sw: 2, pt: 1, pl: 1, pb: 1, pr: 1, groups: 33),
    ConvCase(cin: 16, cout: 16, h: 9, w: 31, kh: 3, kw: 3, sh: 2, sw: 2, pt: 0, pl: 0, pb: 1, pr: 1, groups: 16),
    ConvCase(cin: 5, cout: 5, h: 11, w: 23, kh: 5, kw: 5, pt: 2, pl: 2, pb: 2, pr: 2, groups: 5),
    ConvCase(cin: 20, cout: 20, h: 12, w: 19, kh: 3, kw: 3, pt: 2, pl: 2, pb: 2, pr: 2, dh: 2, dw: 2, groups: 20),
    ConvCase(cin: 7, cout: 7, h: 10, w: 26, kh: 3, kw: 2, sh: 3, sw: 3, pt: 1, pl: 0, pb: 2, pr: 1, groups: 7),
    ConvCase(cin: 2, cout: 2, h: 2, w: 2, kh: 3, kw: 3, pt: 2, pl: 2, pb: 2, pr: 2, groups: 2), // all border
    ConvCase(cin: 48, cout: 48, h: 7, w: 7, kh: 1, kw: 1, groups: 48),
]

extension KernelTests {
    @Test func blockedReordersRoundTripAndZeroPaddingLanes() {
        var rng = SplitMix64(seed: 30)
        for (channels, hw) in [(1, 1), (3, 5), (16, 7), (17, 64), (24, 65), (40, 3), (5, 130), (32, 1)] {
            let x = rng.floats(channels * hw)
            let padded = (channels + block - 1) / block * block
            #expect(kiln_blocked_channels(channels) == padded)
            var blocked = [Float](repeating: .nan, count: padded * hw)
            kiln_reorder_to_blocked(channels, hw, x, &blocked)
            #expect(blocked == toBlocked(x, channels: channels, hw: hw, padding: 0), "to blocked \(channels)x\(hw)")
            // Padding lanes are never read back: NaN there must not reach the NCHW result.
            let withNaNPadding = toBlocked(x, channels: channels, hw: hw, padding: .nan)
            var back = [Float](repeating: .infinity, count: channels * hw)
            kiln_reorder_from_blocked(channels, hw, withNaNPadding, &back)
            #expect(back == x, "round trip \(channels)x\(hw)")
        }
        #expect(kiln_blocked_channels(0) == 0)
        #expect(kiln_blocked_channels(16) == 16)
        #expect(kiln_blocked_channels(384) == 384)
    }

    @Test func blockedDepthwiseMatchesDirectLoopsWithEpilogues() {
        var rng = SplitMix64(seed: 31)
        var cases = fixedWindowCases
        for _ in 0..<40 { cases.append(randomWindowCase(&rng, channels: [1, 3, 9, 16, 17, 24, 31, 40][rng.int(0...7)])) }
        // Epilogue variants: none, bias only, and bias + residual with an inline or a row activation.
        let variants: [(bias: Bool, residual: Bool, act: kiln_activation, alpha: Float, beta: Float)] = [
            (false, false, KILN_ACT_NONE, 0, 0), (true, false, KILN_ACT_NONE, 0, 0),
            (true, true, KILN_ACT_RELU, 0, 0), (true, true, KILN_ACT_CLIP, -0.4, 0.6),
            (false, true, KILN_ACT_SIGMOID, 0, 0), (true, false, KILN_ACT_HARDSWISH, 0, 0),
        ]
        forEachKernelFamily { isa in
            for (n, c) in cases.enumerated() {
                let v = variants[n % variants.count]
                let channels = c.cin, inHW = c.h * c.w, outHW = c.oh * c.ow, blocks = (channels + block - 1) / block
                let input = rng.floats(channels * inHW), weight = rng.floats(channels * c.kh * c.kw)
                let bias = rng.floats(channels), residual = rng.floats(channels * outHW)
                let expected = c.reference(input: input, weight: weight, bias: v.bias ? bias : nil,
                                           residual: v.residual ? residual : nil, activation: v.act,
                                           alpha: v.alpha, beta: v.beta)
                // Finite garbage in the padding lanes of the input and residual must not leak.
                let inputBlocked = toBlocked(input, channels: channels, hw: inHW, padding: 3.5)
                let residualBlocked = toBlocked(residual, channels: channels, hw: outHW, padding: -2.25)
                let p = c.params
                var packed = [Float](repeating: .nan,
                                     count: withUnsafePointer(to: p) { kiln_depthwise_blocked_pack_weight_size($0) })
                #expect(packed.count == blocks * c.kh * c.kw * block)
                withUnsafePointer(to: p) { kiln_depthwise_blocked_pack_weight($0, weight, &packed) }
                let sentinel: Float = 777
                var got = [Float](repeating: sentinel, count: blocks * block * outHW)
                func run(_ cb0: Int, _ cb1: Int) {
                    bias.withUnsafeBufferPointer { bp in
                        residualBlocked.withUnsafeBufferPointer { rp in
                            var ep = kiln_epilogue(bias: v.bias ? bp.baseAddress : nil, bias_per_row: 0,
                                                   residual: v.residual ? rp.baseAddress : nil, ldr: 0,
                                                   activation: v.act, alpha: v.alpha, beta: v.beta)
                            withUnsafePointer(to: p) { kiln_depthwise_conv2d_blocked($0, inputBlocked, packed, &got, cb0, cb1, &ep) }
                        }
                    }
                }
                // One call on a sub-range of blocks first: nothing outside it may be written.
                let cb0 = rng.int(0...blocks), cb1 = rng.int(cb0...blocks)
                run(cb0, cb1)
                let outside = Array(got[..<(cb0 * outHW * block)]) + Array(got[(cb1 * outHW * block)...])
                #expect(outside.allSatisfy { $0 == sentinel }, "\(isa) depthwise \(c) wrote outside [\(cb0), \(cb1))")
                run(0, cb0)
                run(cb1, blocks)
                let tolerance: Float = v.act == KILN_ACT_NONE || v.act == KILN_ACT_RELU || v.act == KILN_ACT_CLIP ? 1e-5 : 2e-4
                let err = maxAbsDifference(fromBlocked(got, channels: channels, hw: outHW), expected)
                #expect(err <= tolerance, "\(isa) depthwise \(c) act \(v.act.rawValue): \(err)")
                #expect(got.allSatisfy { $0.isFinite }, "\(isa) depthwise \(c): padding lanes must stay finite")
                // The NCHW kernel agrees on the same data (both fast paths, same epilogue).
                if v.bias && v.residual {
                    var nchw = [Float](repeating: .nan, count: channels * outHW)
                    bias.withUnsafeBufferPointer { bp in
                        residual.withUnsafeBufferPointer { rp in
                            var ep = kiln_epilogue(bias: bp.baseAddress, bias_per_row: 0, residual: rp.baseAddress,
                                                   ldr: outHW, activation: v.act, alpha: v.alpha, beta: v.beta)
                            withUnsafePointer(to: p) { kiln_depthwise_conv2d_nchw($0, input, weight, &nchw, 0, channels, &ep) }
                        }
                    }
                    let diff = maxAbsDifference(fromBlocked(got, channels: channels, hw: outHW), nchw)
                    #expect(diff <= tolerance, "\(isa) depthwise \(c) vs NCHW kernel: \(diff)")
                }
            }
        }
    }

    @Test func blockedPackedDepthwiseWeightsAreZeroInPaddingChannels() {
        let c = ConvCase(cin: 19, cout: 19, h: 4, w: 4, kh: 3, kw: 2, groups: 19)
        var rng = SplitMix64(seed: 32)
        let weight = rng.floats(19 * 6)
        var packed = [Float](repeating: .nan, count: 2 * 6 * block)
        withUnsafePointer(to: c.params) { kiln_depthwise_blocked_pack_weight($0, weight, &packed) }
        var expected = [Float](repeating: 0, count: packed.count)
        for ch in 0..<19 { for k in 0..<6 { expected[((ch / block) * 6 + k) * block + ch % block] = weight[ch * 6 + k] } }
        #expect(packed == expected)
    }

    /// Max, average (count_include_pad 0 and 1) of one window case, in Swift.
    private static func referencePools(_ c: ConvCase, _ input: [Float]) -> (max: [Float], avg: [Float], avgPad: [Float]) {
        var expMax = [Float](), expAvg = [Float](), expAvgPad = [Float]()
        for ch in 0..<c.cin { for y in 0..<c.oh { for x in 0..<c.ow {
            var m = -Float.infinity, s: Float = 0, n = 0, npad = 0, sawNaN = false
            for ky in 0..<c.kh { for kx in 0..<c.kw {
                let iy = y * c.sh + ky * c.dh - c.pt, ix = x * c.sw + kx * c.dw - c.pl
                if iy >= -c.pt && iy < c.h + c.pb && ix >= -c.pl && ix < c.w + c.pr { npad += 1 }
                if iy < 0 || iy >= c.h || ix < 0 || ix >= c.w { continue }
                let v = input[(ch * c.h + iy) * c.w + ix]
                if v.isNaN { sawNaN = true }
                m = max(m, v); s += v; n += 1
            } }
            expMax.append(sawNaN ? .nan : m)
            expAvg.append(n > 0 ? s / Float(n) : 0)
            expAvgPad.append(npad > 0 ? s / Float(npad) : 0)
        } } }
        return (expMax, expAvg, expAvgPad)
    }

    @Test func blockedPoolingMatchesDirectLoops() {
        var rng = SplitMix64(seed: 33)
        var cases = fixedWindowCases
        for _ in 0..<40 { cases.append(randomWindowCase(&rng, channels: [1, 3, 16, 17, 24, 35][rng.int(0...5)])) }
        forEachKernelFamily { isa in
            for c in cases {
                let channels = c.cin, inHW = c.h * c.w, outHW = c.oh * c.ow, blocks = (channels + block - 1) / block
                let input = rng.floats(channels * inHW, -5, 5)
                let inputBlocked = toBlocked(input, channels: channels, hw: inHW, padding: 1e6)
                let ref = Self.referencePools(c, input)
                let p = c.params
                let cb0 = rng.int(0...blocks), cb1 = rng.int(cb0...blocks)
                let sentinel: Float = 777
                for kind in 0..<3 { // max, average, average counting pads
                    var got = [Float](repeating: sentinel, count: blocks * block * outHW)
                    func run(_ b0: Int, _ b1: Int) {
                        withUnsafePointer(to: p) { pp in
                            if kind == 0 { kiln_maxpool2d_blocked(pp, inputBlocked, &got, b0, b1) }
                            else { kiln_avgpool2d_blocked(pp, Int32(kind - 1), c.pb, c.pr, inputBlocked, &got, b0, b1) }
                        }
                    }
                    run(cb0, cb1)
                    let outside = Array(got[..<(cb0 * outHW * block)]) + Array(got[(cb1 * outHW * block)...])
                    #expect(outside.allSatisfy { $0 == sentinel }, "\(isa) pool \(kind) \(c) wrote outside [\(cb0), \(cb1))")
                    run(0, cb0)
                    run(cb1, blocks)
                    let result = fromBlocked(got, channels: channels, hw: outHW)
                    switch kind {
                    case 0: #expect(result == ref.max, "\(isa) blocked maxpool \(c)")
                    case 1: #expect(maxAbsDifference(result, ref.avg) <= 1e-5, "\(isa) blocked avgpool \(c)")
                    default: #expect(maxAbsDifference(result, ref.avgPad) <= 1e-5, "\(isa) blocked avgpool pads \(c)")
                    }
                    // Padding lanes stay finite, even where a window holds no input pixel (max: -inf).
                    #expect(paddingLanes(got, channels: channels, hw: outHW).allSatisfy { $0.isFinite },
                            "\(isa) pool \(kind) \(c) padding lanes")
                }
                // Same as the NCHW kernels on the same data.
                var nchwMax = [Float](repeating: .nan, count: channels * outHW), nchwAvg = nchwMax
                var blockedMax = [Float](repeating: .nan, count: blocks * block * outHW), blockedAvg = blockedMax
                withUnsafePointer(to: p) { pp in
                    kiln_maxpool2d_nchw(pp, input, &nchwMax)
                    kiln_avgpool2d_nchw_padded(pp, 1, c.pb, c.pr, input, &nchwAvg)
                    kiln_maxpool2d_blocked(pp, inputBlocked, &blockedMax, 0, blocks)
                    kiln_avgpool2d_blocked(pp, 1, c.pb, c.pr, inputBlocked, &blockedAvg, 0, blocks)
                }
                #expect(fromBlocked(blockedMax, channels: channels, hw: outHW) == nchwMax, "\(isa) maxpool vs NCHW \(c)")
                #expect(maxAbsDifference(fromBlocked(blockedAvg, channels: channels, hw: outHW), nchwAvg) <= 1e-6,
                        "\(isa) avgpool vs NCHW \(c)")
            }
        }
    }

    @Test func blockedMaxPoolPropagatesNaN() {
        var rng = SplitMix64(seed: 34)
        let cases = [
            ConvCase(cin: 20, cout: 20, h: 9, w: 21, kh: 3, kw: 3, sh: 2, sw: 2, pt: 1, pl: 1, pb: 1, pr: 1),
            ConvCase(cin: 3, cout: 3, h: 6, w: 7, kh: 2, kw: 3, sh: 1, sw: 1, pt: 0, pl: 1, pb: 1, pr: 1),
            ConvCase(cin: 17, cout: 17, h: 5, w: 18, kh: 3, kw: 3, sh: 1, sw: 1, pt: 1, pl: 1, pb: 1, pr: 1),
        ]
        forEachKernelFamily { isa in
            for c in cases {
                let channels = c.cin, inHW = c.h * c.w, outHW = c.oh * c.ow, blocks = (channels + block - 1) / block
                var input = rng.floats(channels * inHW, -5, 5)
                // NaN early and late in windows, and next to +inf, so both "NaN first" and "NaN last" occur.
                for i in input.indices where i % 13 == 0 { input[i] = .nan }
                for i in input.indices where i % 17 == 5 { input[i] = .infinity }
                let expected = Self.referencePools(c, input).max
                #expect(expected.contains { $0.isNaN } && expected.contains { !$0.isNaN })
                let inputBlocked = toBlocked(input, channels: channels, hw: inHW)
                var got = [Float](repeating: 0, count: blocks * block * outHW)
                var nchw = [Float](repeating: 0, count: channels * outHW)
                withUnsafePointer(to: c.params) { pp in
                    kiln_maxpool2d_blocked(pp, inputBlocked, &got, 0, blocks)
                    kiln_maxpool2d_nchw(pp, input, &nchw)
                }
                let result = fromBlocked(got, channels: channels, hw: outHW)
                #expect(maxAbsDifference(result, expected) == 0, "\(isa) maxpool NaN \(c)")
                #expect(zip(result, nchw).allSatisfy { $0.isNaN == $1.isNaN && ($0.isNaN || $0 == $1) },
                        "\(isa) maxpool NaN vs NCHW \(c)")
            }
        }
    }

    @Test func blockedGlobalPoolingWritesOnlyRealChannels() {
        var rng = SplitMix64(seed: 35)
        forEachKernelFamily { isa in
            for (channels, hw) in [(3, 49), (17, 1), (16, 13), (24, 3136), (40, 7), (1, 0)] {
                let input = rng.floats(channels * hw, -3, 3)
                let blocked = toBlocked(input, channels: channels, hw: hw, padding: 9)
                let sentinel: Float = 777
                for isMax in [0, 1] {
                    var got = [Float](repeating: sentinel, count: channels + 5)
                    kiln_global_pool_blocked(channels, hw, Int32(isMax), blocked, &got)
                    let expected = (0..<channels).map { ch -> Float in
                        let values = (0..<hw).map { input[ch * hw + $0] }
                        if isMax == 1 { return values.max() ?? -.infinity }
                        return hw == 0 ? 0 : Float(values.reduce(0.0) { $0 + Double($1) } / Double(hw))
                    }
                    #expect(maxAbsDifference(Array(got[..<channels]), expected) <= 1e-5,
                            "\(isa) global pool max=\(isMax) \(channels)x\(hw)")
                    #expect(got[channels...].allSatisfy { $0 == sentinel }, "\(isa) global pool wrote past the channels")
                }
                if hw > 0 {
                    var nchw = [Float](repeating: .nan, count: channels), got = nchw
                    kiln_global_avgpool_nchw(channels, hw, input, &nchw)
                    kiln_global_pool_blocked(channels, hw, 0, blocked, &got)
                    #expect(maxAbsDifference(got, nchw) <= 1e-5, "\(isa) global average vs NCHW \(channels)x\(hw)")
                }
            }
            // A NaN anywhere in a channel makes its global maximum NaN.
            var input = rng.floats(20 * 30)
            input[3 * 30 + 29] = .nan
            input[18 * 30] = .nan
            var got = [Float](repeating: 0, count: 20)
            kiln_global_pool_blocked(20, 30, 1, toBlocked(input, channels: 20, hw: 30), &got)
            #expect(got.enumerated().allSatisfy { ($0.offset == 3 || $0.offset == 18) == $0.element.isNaN },
                    "\(isa) global max NaN")
        }
    }
}
