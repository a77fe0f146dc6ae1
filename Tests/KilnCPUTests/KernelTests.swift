// Tests of CKilnKernels against plain Swift references: CPU detection, dispatch and SGEMM.
// Every kernel test runs once per kernel family this CPU has (avx512, avx2, generic), serialized because
// the family is a process-wide setting.
import CKilnKernels
import Foundation
import Testing
import KilnTestSupport

/// Runs `body` once per kernel family available here, restoring the host choice afterwards.
func forEachKernelFamily(_ body: (String) throws -> Void) rethrows {
    _ = kiln_kernels_force_generic(0)
    defer { _ = kiln_kernels_select_isa("host") }
    for isa in ["avx512", "avx2", "generic"] where kiln_kernels_select_isa(isa) == 0 {
        #expect(String(cString: kiln_kernels_isa()) == isa)
        try body(isa)
    }
}

/// Largest |a[i] - b[i]| (infinity when the lengths differ or a NaN appears on one side only).
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    var m: Float = 0
    for i in a.indices {
        if a[i].isNaN != b[i].isNaN { return .infinity }
        if a[i].isNaN { continue }
        if a[i] == b[i] { continue }
        m = max(m, abs(a[i] - b[i]))
    }
    return m
}

/// Scalar definitions of the fused activations, in Double.
func referenceActivation(_ act: kiln_activation, _ alpha: Float, _ beta: Float, _ x: Float) -> Float {
    let v = Double(x)
    let r: Double
    switch act {
    case KILN_ACT_RELU: r = max(v, 0)
    case KILN_ACT_CLIP: r = min(max(v, Double(alpha)), Double(beta))
    case KILN_ACT_SIGMOID: r = 1 / (1 + exp(-v))
    case KILN_ACT_SILU: r = v / (1 + exp(-v))
    case KILN_ACT_HARDSIGMOID: r = max(0, min(1, Double(alpha) * v + Double(beta)))
    case KILN_ACT_HARDSWISH: r = v * max(0, min(1, v / 6 + 0.5))
    case KILN_ACT_GELU_ERF: r = 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
    case KILN_ACT_GELU_TANH: r = 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
    case KILN_ACT_TANH: r = tanh(v)
    case KILN_ACT_LEAKY_RELU: r = v < 0 ? Double(alpha) * v : v
    default: r = v
    }
    return Float(r)
}

let allActivations: [kiln_activation] = [
    KILN_ACT_NONE, KILN_ACT_RELU, KILN_ACT_CLIP, KILN_ACT_SIGMOID, KILN_ACT_SILU, KILN_ACT_HARDSIGMOID,
    KILN_ACT_HARDSWISH, KILN_ACT_GELU_ERF, KILN_ACT_GELU_TANH, KILN_ACT_TANH, KILN_ACT_LEAKY_RELU,
]

/// C = alpha·op(A)·op(B) + beta·C then act(· + bias + residual), in Double.
func referenceGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int,
                   b: [Float], ldb: Int, beta: Float, c: [Float], ldc: Int, bias: [Float]? = nil,
                   biasPerRow: Bool = false, residual: [Float]? = nil, ldr: Int = 0,
                   activation: kiln_activation = KILN_ACT_NONE, actAlpha: Float = 0, actBeta: Float = 0) -> [Float] {
    var out = c
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                s += Double(av) * Double(bv)
            }
            var v = Double(alpha) * s + (beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j]))
            if let bias { v += Double(biasPerRow ? bias[i] : bias[j]) }
            if let residual { v += Double(residual[i * ldr + j]) }
            out[i * ldc + j] = referenceActivation(activation, actAlpha, actBeta, Float(v))
        }
    }
    return out
}

@Suite(.serialized) struct KernelTests {
    @Test func detectsTheFeaturesTheKernelListsAdvertise() throws {
        let f = kiln_cpu_detect()
        #if arch(x86_64)
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flagsLine = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        let flags = Set(flagsLine.split(separator: ":").last?.split(separator: " ").map(String.init) ?? [])
        #expect((f.avx2 != 0) == flags.contains("avx2"))
        #expect((f.fma != 0) == flags.contains("fma"))
        #expect((f.avx512f != 0) == flags.contains("avx512f"))
        #expect(f.neon == 0)
        #elseif arch(arm64)
        #expect(f.neon == 1)
        #endif
    }

    @Test func forcingGenericOverridesTheSelectionAndRestores() {
        _ = kiln_kernels_select_isa("host")
        let host = String(cString: kiln_kernels_isa())
        let previous = kiln_kernels_force_generic(1)
        #expect(previous == 0)
        #expect(String(cString: kiln_kernels_isa()) == "generic")
        #expect(kiln_kernels_force_generic(0) == 1)
        #expect(String(cString: kiln_kernels_isa()) == host)
        #expect(kiln_kernels_select_isa("not-an-isa") == -1)
        #expect(String(cString: kiln_kernels_isa()) == host)
        #if arch(x86_64)
        let f = kiln_cpu_detect()
        if f.avx2 != 0 && f.fma != 0 {
            #expect(host == (f.avx512f != 0 ? "avx512" : "avx2"))
        }
        #expect(kiln_kernels_select_isa("neon") == -1)
        #endif
    }

    @Test func sgemmMatchesTheReferenceOnOddShapesAndTransposes() {
        // (M, N, K): ones, primes, sizes just past the tile (6×16), the K block (256), the M block (144)
        // and the N block (512).
        let shapes = [(1, 1, 1), (1, 17, 3), (7, 13, 5), (6, 16, 256), (6, 32, 8), (13, 47, 257), (37, 53, 300),
                      (145, 33, 17), (5, 523, 9), (29, 64, 1), (2, 3, 0)]
        var rng = SplitMix64(seed: 1)
        forEachKernelFamily { isa in
            for (m, n, k) in shapes {
                for transA in [false, true] {
                    for transB in [false, true] {
                        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 2, ldc = n + 5
                        let a = rng.floats((transA ? k : m) * lda), b = rng.floats((transB ? n : k) * ldb)
                        let beta: Float = [0, 1, 0.5][(m + n) % 3]
                        let alpha: Float = transA ? 1.5 : 1
                        var c = rng.floats(m * ldc)
                        if beta == 0 { for i in c.indices where i % 7 == 0 { c[i] = .nan } }
                        let expected = referenceGemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                                                     a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
                        var got = c
                        kiln_sgemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, &got, ldc, nil)
                        // Padding columns of C (j >= n) must be untouched.
                        var compareGot = got, compareExpected = expected
                        for i in 0..<m { for j in n..<ldc { compareGot[i * ldc + j] = 0; compareExpected[i * ldc + j] = 0 } }
                        let err = maxAbsDifference(compareGot, compareExpected)
                        #expect(err <= 2e-6 * Float(k + 1) + 1e-5, "\(isa) M=\(m) N=\(n) K=\(k) tA=\(transA) tB=\(transB): \(err)")
                        for i in 0..<m { for j in n..<ldc where !c[i * ldc + j].isNaN {
                            #expect(got[i * ldc + j] == c[i * ldc + j])
                        } }
                    }
                }
            }
        }
    }

    @Test func sgemmEpiloguesMatchTheReference() {
        var rng = SplitMix64(seed: 2)
        let (m, n, k) = (11, 37, 70)
        let a = rng.floats(m * k), b = rng.floats(k * n)
        let biasCol = rng.floats(n), biasRow = rng.floats(m), residual = rng.floats(m * (n + 1))
        forEachKernelFamily { isa in
            for act in allActivations {
                for perRow in [false, true] {
                    let (alpha, beta): (Float, Float) = act == KILN_ACT_CLIP ? (-0.5, 0.7) :
                        (act == KILN_ACT_HARDSIGMOID ? (0.2, 0.5) : (0.1, 0))
                    let bias = perRow ? biasRow : biasCol
                    let expected = referenceGemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a,
                                                 lda: k, b: b, ldb: n, beta: 0, c: [Float](repeating: 0, count: m * n),
                                                 ldc: n, bias: bias, biasPerRow: perRow, residual: residual,
                                                 ldr: n + 1, activation: act, actAlpha: alpha, actBeta: beta)
                    var got = [Float](repeating: 0, count: m * n)
                    bias.withUnsafeBufferPointer { bp in
                        residual.withUnsafeBufferPointer { rp in
                            var ep = kiln_epilogue(bias: bp.baseAddress, bias_per_row: perRow ? 1 : 0,
                                                   residual: rp.baseAddress, ldr: n + 1, activation: act,
                                                   alpha: alpha, beta: beta)
                            kiln_sgemm(0, 0, m, n, k, 1, a, k, b, n, 0, &got, n, &ep)
                        }
                    }
                    let err = maxAbsDifference(got, expected)
                    #expect(err <= 3e-4, "\(isa) activation \(act.rawValue) perRow=\(perRow): \(err)")
                }
            }
        }
    }

    @Test func packedSgemmComputesOnlyItsColumnRange() {
        var rng = SplitMix64(seed: 3)
        // M of 7, 14 and 38 ends in 1 or 2 rows past a multiple of 6, which AVX-512 runs with its short tiles.
        let shapes = [(1, 1000, 512), (3, 45, 20), (4, 130, 7), (9, 70, 300), (64, 100, 27), (7, 33, 1), (14, 70, 9), (38, 96, 41)]
        forEachKernelFamily { isa in
            for (m, n, k) in shapes {
                for transB in [false, true] {
                    let ldb = transB ? k : n
                    let a = rng.floats(m * k), b = rng.floats((transB ? n : k) * ldb), bias = rng.floats(n)
                    var packed = [Float](repeating: .nan, count: kiln_sgemm_pack_b_size(k, n))
                    kiln_sgemm_pack_b(transB ? 1 : 0, k, n, b, ldb, &packed)
                    let expected = referenceGemm(transA: false, transB: transB, m: m, n: n, k: k, alpha: 1, a: a,
                                                 lda: k, b: b, ldb: ldb, beta: 0,
                                                 c: [Float](repeating: 0, count: m * n), ldc: n, bias: bias,
                                                 activation: KILN_ACT_RELU)
                    // Three ranges with unaligned boundaries cover [0, n); the sentinel checks the rest.
                    let cuts = [0, min(n, 5), min(n, max(5, n / 2 + 3)), n]
                    var got = [Float](repeating: -7, count: m * n)
                    for r in 0..<3 where cuts[r] < cuts[r + 1] {
                        bias.withUnsafeBufferPointer { bp in
                            var ep = kiln_epilogue(bias: bp.baseAddress, bias_per_row: 0, residual: nil, ldr: 0,
                                                   activation: KILN_ACT_RELU, alpha: 0, beta: 0)
                            kiln_sgemm_packed(m, n, k, a, k, packed, &got, n, cuts[r], cuts[r + 1], &ep)
                        }
                        for i in 0..<m { for j in cuts[r + 1]..<n { #expect(got[i * n + j] == -7) } }
                    }
                    let err = maxAbsDifference(got, expected)
                    #expect(err <= 2e-6 * Float(k + 1) + 1e-5, "\(isa) packed M=\(m) N=\(n) K=\(k) tB=\(transB): \(err)")
                }
            }
        }
    }
}
