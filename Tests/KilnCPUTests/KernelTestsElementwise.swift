// Tests of the CKilnKernels elementwise, activation, softmax, layer-norm and transpose kernels.
import CKilnKernels
import Foundation
import Testing
import KilnTestSupport

extension KernelTests {
    @Test func binaryOperationsBroadcastAndSwap() {
        let ops: [(kiln_binary_op, (Float, Float) -> Float)] = [
            (KILN_BINARY_ADD, { $0 + $1 }), (KILN_BINARY_SUB, { $0 - $1 }), (KILN_BINARY_MUL, { $0 * $1 }),
            (KILN_BINARY_DIV, { $0 / $1 }), (KILN_BINARY_MAX, { max($0, $1) }), (KILN_BINARY_MIN, { min($0, $1) }),
        ]
        var rng = SplitMix64(seed: 20)
        forEachKernelFamily { isa in
            for (rows, cols) in [(1, 1), (3, 7), (4, 8), (5, 19), (2, 64)] {
                let a = rng.floats(rows * cols, 0.5, 2)
                let bFull = rng.floats(rows * cols, 0.5, 2), bRow = rng.floats(cols, 0.5, 2)
                let bLen = rows > 2 ? rows - 1 : rows
                let bCol = rng.floats(bLen, 0.5, 2), bScalar = [rng.float(0.5, 2)]
                for (op, f) in ops {
                    for swap in [false, true] {
                        let forms: [(kiln_broadcast, [Float], (Int, Int) -> Float)] = [
                            (KILN_BROADCAST_NONE, bFull, { r, c in bFull[r * cols + c] }),
                            (KILN_BROADCAST_SCALAR, bScalar, { _, _ in bScalar[0] }),
                            (KILN_BROADCAST_ROW, bRow, { _, c in bRow[c] }),
                            (KILN_BROADCAST_COLUMN, bCol, { r, _ in bCol[r % bLen] }),
                        ]
                        for (form, b, bAt) in forms {
                            var expected = [Float]()
                            for r in 0..<rows { for c in 0..<cols {
                                let x = a[r * cols + c], y = bAt(r, c)
                                expected.append(swap ? f(y, x) : f(x, y))
                            } }
                            var got = [Float](repeating: .nan, count: rows * cols)
                            kiln_binary(op, form, rows, cols, a, b, bLen, swap ? 1 : 0, &got)
                            #expect(maxAbsDifference(got, expected) <= 1e-6,
                                    "\(isa) op \(op.rawValue) form \(form.rawValue) swap \(swap) \(rows)x\(cols)")
                            var inPlace = a // out == a
                            inPlace.withUnsafeMutableBufferPointer { p in
                                kiln_binary(op, form, rows, cols, p.baseAddress, b, bLen, swap ? 1 : 0, p.baseAddress)
                            }
                            #expect(maxAbsDifference(inPlace, expected) <= 1e-6, "\(isa) in place op \(op.rawValue)")
                        }
                    }
                }
            }
        }
    }

    @Test func activationsMatchTheirDefinitions() {
        var rng = SplitMix64(seed: 21)
        // Wide and narrow ranges, plus exact edges; 203 elements exercise the vector tail.
        var x = rng.floats(150, -12, 12) + rng.floats(40, -1e-3, 1e-3)
        x += [0, -0, 1, -1, 3, -3, 6, -6, 0.625, -0.625, 20, -20, 88]
        forEachKernelFamily { isa in
            for act in allActivations {
                let (alpha, beta): (Float, Float) = act == KILN_ACT_CLIP ? (-1, 6) :
                    (act == KILN_ACT_HARDSIGMOID ? (0.2, 0.5) : (0.01, 0))
                var y = [Float](repeating: .nan, count: x.count)
                kiln_activation_apply(act, alpha, beta, x.count, x, &y)
                var worst: Float = 0
                for i in x.indices {
                    let r = referenceActivation(act, alpha, beta, x[i])
                    worst = max(worst, abs(y[i] - r) / max(1, abs(r)))
                }
                #expect(worst <= 2e-6, "\(isa) activation \(act.rawValue): \(worst)")
                var inPlace = x
                inPlace.withUnsafeMutableBufferPointer { p in
                    kiln_activation_apply(act, alpha, beta, p.count, p.baseAddress, p.baseAddress)
                }
                #expect(inPlace == y, "\(isa) activation \(act.rawValue) in place")
            }
        }
    }

    @Test func erfIsAccurateToOnePartPerMillion() {
        // Relative error <= 1e-6 over [-6, 6] including tiny arguments; the brief's accuracy bar.
        var x: [Float] = (0..<4001).map { Float($0 - 2000) * 0.003 }
        x += [1e-30, -1e-20, 1e-7, 0.999999, 1.000001, 3.9, 4.1, 10, -10]
        forEachKernelFamily { isa in
            var y = [Float](repeating: .nan, count: x.count)
            kiln_unary(KILN_UNARY_ERF, x.count, x, &y)
            var worst = 0.0
            for i in x.indices where x[i] != 0 {
                let r = erf(Double(x[i]))
                worst = max(worst, abs(Double(y[i]) - r) / abs(r))
            }
            #expect(worst <= 1e-6, "\(isa) erf relative error \(worst)")
        }
    }

    @Test func unaryOperationsMatchFoundation() {
        var rng = SplitMix64(seed: 22)
        let x = rng.floats(77, 0.01, 9) + rng.floats(20, -80, 80)
        let ops: [(kiln_unary_op, (Double) -> Double, Bool)] = [
            (KILN_UNARY_EXP, { exp($0) }, true), (KILN_UNARY_LOG, { log($0) }, false),
            (KILN_UNARY_SQRT, { $0.squareRoot() }, false), (KILN_UNARY_ABS, { abs($0) }, true),
            (KILN_UNARY_NEG, { -$0 }, true), (KILN_UNARY_RECIPROCAL, { 1 / $0 }, true),
        ]
        forEachKernelFamily { isa in
            for (op, f, negativeOK) in ops {
                let input = negativeOK ? x : x.map { abs($0) }
                var y = [Float](repeating: .nan, count: input.count)
                kiln_unary(op, input.count, input, &y)
                var worst = 0.0
                for i in input.indices {
                    let r = f(Double(input[i]))
                    worst = max(worst, abs(Double(y[i]) - r) / max(1e-30, abs(r)))
                }
                #expect(worst <= 1e-6, "\(isa) unary \(op.rawValue): \(worst)")
            }
        }
    }

    @Test func softmaxRowsWithScaleAndAdditiveMask() {
        var rng = SplitMix64(seed: 23)
        forEachKernelFamily { isa in
            for cols in [1, 7, 8, 33, 128] {
                let rows = 3, ld = cols + 2
                let x = rng.floats(rows * ld, -8, 8)
                var add = rng.floats(cols, -1, 1)
                add[0] = -10000 // masked position
                for (scale, mask) in [(Float(1), false), (Float(0.125), true)] {
                    var expected = [Float](repeating: 0, count: rows * ld)
                    for r in 0..<rows {
                        let v = (0..<cols).map { Double(scale) * Double(x[r * ld + $0]) + (mask ? Double(add[$0]) : 0) }
                        let m = v.max()!
                        let e = v.map { exp($0 - m) }
                        let s = e.reduce(0, +)
                        for c in 0..<cols { expected[r * ld + c] = Float(e[c] / s) }
                    }
                    var got = [Float](repeating: 0, count: rows * ld)
                    add.withUnsafeBufferPointer { ap in
                        kiln_softmax_rows(rows, cols, x, ld, &got, ld, scale, mask ? ap.baseAddress : nil)
                    }
                    #expect(maxAbsDifference(got, expected) <= 1e-6, "\(isa) softmax cols \(cols) mask \(mask)")
                    var inPlace = x
                    inPlace.withUnsafeMutableBufferPointer { p in
                        add.withUnsafeBufferPointer { ap in
                            kiln_softmax_rows(rows, cols, p.baseAddress, ld, p.baseAddress, ld, scale,
                                              mask ? ap.baseAddress : nil)
                        }
                    }
                    for r in 0..<rows { for c in 0..<cols { #expect(inPlace[r * ld + c] == got[r * ld + c]) } }
                }
            }
        }
    }

    @Test func layerNormalizationRowsWithResidualAndStatistics() {
        var rng = SplitMix64(seed: 24)
        forEachKernelFamily { isa in
            for cols in [1, 5, 16, 256, 259] {
                let rows = 4, ld = cols + 1
                let x = rng.floats(rows * ld, -3, 5), residual = rng.floats(rows * ld)
                let gamma = rng.floats(cols, 0.5, 1.5), beta = rng.floats(cols)
                for (useResidual, useAffine) in [(false, false), (true, true), (true, false)] {
                    var expected = [Float](repeating: 0, count: rows * ld)
                    var expMean = [Float](), expInv = [Float]()
                    for r in 0..<rows {
                        let v = (0..<cols).map { Double(x[r * ld + $0]) + (useResidual ? Double(residual[r * ld + $0]) : 0) }
                        let mean = v.reduce(0, +) / Double(cols)
                        let variance = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)
                        let inv = 1 / (variance + 1e-5).squareRoot()
                        for c in 0..<cols {
                            let n = (v[c] - mean) * inv
                            expected[r * ld + c] = Float(useAffine ? n * Double(gamma[c]) + Double(beta[c]) : n)
                        }
                        expMean.append(Float(mean)); expInv.append(Float(inv))
                    }
                    var got = [Float](repeating: 0, count: rows * ld)
                    var mean = [Float](repeating: .nan, count: rows), inv = mean
                    residual.withUnsafeBufferPointer { rp in
                        gamma.withUnsafeBufferPointer { gp in
                            beta.withUnsafeBufferPointer { bp in
                                kiln_layer_norm_rows(rows, cols, x, ld, useResidual ? rp.baseAddress : nil, &got, ld,
                                                     useAffine ? gp.baseAddress : nil, useAffine ? bp.baseAddress : nil,
                                                     1e-5, &mean, &inv)
                            }
                        }
                    }
                    #expect(maxAbsDifference(got, expected) <= 2e-5, "\(isa) layer norm cols \(cols)")
                    #expect(maxAbsDifference(mean, expMean) <= 1e-5, "\(isa) layer norm mean cols \(cols)")
                    for r in 0..<rows { #expect(abs(inv[r] - expInv[r]) <= 1e-4 * max(1, expInv[r]), "\(isa) inv std") }
                }
            }
        }
    }

    @Test func transposesMoveEveryElementOnce() {
        var rng = SplitMix64(seed: 25)
        for (rows, cols) in [(1, 1), (3, 70), (33, 65)] {
            let lds = cols + 3, ldd = rows + 1
            let src = rng.floats(rows * lds)
            var dst = [Float](repeating: .nan, count: cols * ldd)
            kiln_transpose_2d(rows, cols, src, lds, &dst, ldd)
            var ok = true
            for r in 0..<rows { for c in 0..<cols where dst[c * ldd + r] != src[r * lds + c] { ok = false } }
            #expect(ok, "transpose 2d \(rows)x\(cols)")
        }
        let shape = [2, 3, 5, 7]
        let src = (0..<210).map { Float($0) }
        func permutations(_ a: [Int]) -> [[Int]] {
            a.count <= 1 ? [a] : a.indices.flatMap { i in
                permutations(Array(a[..<i] + a[(i + 1)...])).map { [a[i]] + $0 }
            }
        }
        for perm in permutations([0, 1, 2, 3]) {
            var dst = [Float](repeating: .nan, count: 210)
            let s = shape.map { $0 }, p = perm.map { $0 }
            s.withUnsafeBufferPointer { sp in
                p.withUnsafeBufferPointer { pp in kiln_transpose_4d(sp.baseAddress, pp.baseAddress, src, &dst) }
            }
            let os = perm.map { shape[$0] }
            var expected = [Float]()
            for i0 in 0..<os[0] { for i1 in 0..<os[1] { for i2 in 0..<os[2] { for i3 in 0..<os[3] {
                var idx = [0, 0, 0, 0]
                idx[perm[0]] = i0; idx[perm[1]] = i1; idx[perm[2]] = i2; idx[perm[3]] = i3
                expected.append(src[((idx[0] * 3 + idx[1]) * 5 + idx[2]) * 7 + idx[3]])
            } } } }
            #expect(dst == expected, "transpose 4d perm \(perm)")
        }
    }
}
