// CKilnKernels entry points called from several threads at once on disjoint ranges, as kiln.cpu's thread
// pool calls them: per-thread scratch buffers and range-confined writes must give the single-call result.
import CKilnKernels
import Dispatch
import Foundation
import Testing
import KilnTestSupport

/// A raw output pointer shared by threads that write disjoint parts of it.
struct SharedOutput: @unchecked Sendable {
    let base: UnsafeMutablePointer<Float>
}

extension KernelTests {
    @Test func packedSgemmAndConvolutionSplitAcrossThreads() {
        var rng = SplitMix64(seed: 30)
        let (m, n, k) = (50, 301, 290)
        let a = rng.floats(m * k), b = rng.floats(k * n), bias = rng.floats(n)
        var packedB = [Float](repeating: 0, count: kiln_sgemm_pack_b_size(k, n))
        kiln_sgemm_pack_b(0, k, n, b, n, &packedB)
        let packed = packedB
        let expected = referenceGemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b,
                                     ldb: n, beta: 0, c: [Float](repeating: 0, count: m * n), ldc: n, bias: bias,
                                     activation: KILN_ACT_SILU)
        let conv = ConvCase(cin: 6, cout: 10, h: 15, w: 17, kh: 3, kw: 3, pt: 1, pl: 1, pb: 1, pr: 1)
        let input = rng.floats(conv.cin * conv.h * conv.w), weight = rng.floats(conv.cout * conv.cin * 9)
        let convExpected = conv.reference(input: input, weight: weight, bias: nil, residual: nil,
                                          activation: KILN_ACT_NONE)
        let params = conv.params
        var convWeights = [Float](repeating: 0, count: withUnsafePointer(to: params) { kiln_conv2d_pack_weight_size($0) })
        withUnsafePointer(to: params) { kiln_conv2d_pack_weight($0, weight, &convWeights) }
        let convPacked = convWeights
        let pixels = conv.oh * conv.ow
        forEachKernelFamily { isa in
            let parts = 4
            var got = [Float](repeating: .nan, count: m * n)
            var convGot = [Float](repeating: .nan, count: conv.cout * pixels)
            got.withUnsafeMutableBufferPointer { out in
                convGot.withUnsafeMutableBufferPointer { convOut in
                    let outBase = SharedOutput(base: out.baseAddress!), convBase = SharedOutput(base: convOut.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: parts) { part in
                        bias.withUnsafeBufferPointer { bp in
                            var ep = kiln_epilogue(bias: bp.baseAddress, bias_per_row: 0, residual: nil, ldr: 0,
                                                   activation: KILN_ACT_SILU, alpha: 0, beta: 0)
                            // Column ranges cut at multiples of 16 except the last, as a pool would split.
                            let step = (n / parts + 15) / 16 * 16
                            kiln_sgemm_packed(m, n, k, a, k, packed, outBase.base, n, part * step,
                                              min(n, (part + 1) * step), &ep)
                        }
                        let p0 = pixels * part / parts, p1 = pixels * (part + 1) / parts
                        withUnsafePointer(to: params) { kiln_conv2d_nchw($0, input, convPacked, convBase.base, p0, p1, nil) }
                    }
                }
            }
            #expect(maxAbsDifference(got, expected) <= 2e-6 * Float(k) + 1e-5, "\(isa) threaded sgemm")
            #expect(maxAbsDifference(convGot, convExpected) <= 1e-4, "\(isa) threaded convolution")
        }
    }
}
