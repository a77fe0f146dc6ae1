// The int8 kernels (kiln_qgemm on every int8 ISA this CPU has, against the portable tile and a plain Swift
// sum) and the ops on them (QLinearMatMul, MatMulInteger, QLinearConv, ConvInteger, fused QDQ patterns)
// against kiln.reference.
import CKilnKernels
import Foundation
import Kiln
@testable import KilnCPU
import KilnReference
import Testing
import KilnTestSupport

/// A tensor of `t` (uint8, int8 or int32) of `shape` with values drawn uniformly from `range`
/// (the whole type by default).
private func randomTensor(_ t: DType, _ shape: [Int], _ r: inout SplitMix64, _ range: ClosedRange<Int64>? = nil) -> Tensor {
    let full: ClosedRange<Int64> = t == .uint8 ? 0...255 : (t == .int8 ? -128...127 : -5000...5000)
    let range = range ?? full
    return Tensor(dtype: t, shape: shape, int64s: (0..<shape.reduce(1, *)).map { _ in Int64.random(in: range, using: &r) })
}

private func floats(_ shape: [Int], _ values: [Float]) -> Tensor { Tensor(shape: shape, values) }

/// Runs `model` on kiln.cpu and kiln.reference and returns (cpu, reference) outputs.
private func runBoth(_ model: Model, _ inputs: [String: Tensor], threads: Int = 2) throws -> ([Tensor], [Tensor]) {
    let feeds = inputs.mapValues { RuntimeValue.tensor($0) }
    let want = try Session(model: model, backend: ReferenceBackend()).runOrdered(feeds).map { $0.tensor! }
    let got = try Session(model: model, backend: CPUBackend(threads: threads)).runOrdered(feeds).map { $0.tensor! }
    return (got, want)
}

@Suite("int8 kernels", .serialized)
struct QuantizedKernelTests {
    /// Every int8 family this CPU has, the portable one last.
    static var families: [String] {
        ["avx512vnni", "avx2", "neon", "generic"].filter { kiln_qkernels_select_isa($0) == 0 }
    }

    @Test("kiln_qgemm_pack_b: B stored K × N, N × K or at other strides packs to the same panels and column sums, whole tiles and edges")
    func qgemmPackLayouts() {
        var r = SplitMix64(seed: 31)
        for (k, n) in [(1, 1), (3, 15), (4, 16), (5, 17), (64, 48), (130, 33), (257, 100)] {
            for unsigned in [false, true] {
                let b = (0..<(k * n)).map { _ in UInt8(truncatingIfNeeded: r.below(256)) } // b[kk][j] at kk·n + j
                let bt = (0..<(k * n)).map { i in b[(i % k) * n + i / k] }                  // the same B stored N × K
                let stride = n + 3                                                           // rows n + 3 apart
                let padded = (0..<(k * stride)).map { i in i % stride < n ? b[(i / stride) * n + i % stride] : 0xEE }
                var panels: [[Int8]] = [], sums: [[Int32]] = []
                for (source, ks, ns) in [(b, n, 1), (bt, 1, k), (padded, stride, 1)] {
                    var packed = [Int8](repeating: 0x55, count: kiln_qgemm_pack_b_size(k, n)), s = [Int32](repeating: -1, count: n)
                    kiln_qgemm_pack_b(k, n, source, ks, ns, unsigned ? 1 : 0, &packed, &s)
                    panels.append(packed)
                    sums.append(s)
                }
                // Column j's value at kk is in byte 4j + kk % 4 of group kk / 4 of panel j / 16.
                let kq = (k + 3) / 4
                for j in 0..<n {
                    var sum: Int32 = 0
                    for kk in 0..<k {
                        let want = Int8(bitPattern: unsigned ? b[kk * n + j] ^ 0x80 : b[kk * n + j])
                        sum += Int32(want)
                        let at = (j / 16) * kq * 64 + (kk / 4) * 64 + (j % 16) * 4 + kk % 4
                        #expect(panels[0][at] == want, "k \(k) n \(n) [\(kk)][\(j)]")
                    }
                    #expect(sums[0][j] == sum, "k \(k) n \(n) column \(j)")
                }
                #expect(panels[1] == panels[0] && panels[2] == panels[0], "k \(k) n \(n) unsigned \(unsigned)")
                #expect(sums[1] == sums[0] && sums[2] == sums[0], "k \(k) n \(n) unsigned \(unsigned)")
                // Padding (columns past n, k values past k) is zero.
                let used = Set((0..<n).flatMap { j in (0..<k).map { kk in (j / 16) * kq * 64 + (kk / 4) * 64 + (j % 16) * 4 + kk % 4 } })
                #expect(panels[0].indices.allSatisfy { used.contains($0) || panels[0][$0] == 0 }, "k \(k) n \(n)")
            }
        }
    }

    @Test("kiln_qgemm: each int8 ISA is bit-exact with the portable tile and with a plain sum, across signedness, zero points, per-column scales, saturation and odd sizes")
    func qgemmFamilies() throws {
        defer { _ = kiln_qkernels_select_isa("host") }
        let families = Self.families
        #expect(families.contains("generic"))
        if kiln_cpu_detect().avx512vnni != 0 { #expect(families.first == "avx512vnni") }
        var r = SplitMix64(seed: 12)
        let shapes = [(1, 1, 1), (7, 13, 5), (6, 16, 64), (13, 47, 27), (33, 35, 259), (5, 70, 3), (19, 96, 576)]
        for (m, n, k) in shapes {
            for (aSigned, bUnsigned) in [(false, false), (true, false), (false, true), (true, true)] {
                let at: DType = aSigned ? .int8 : .uint8, bt: DType = bUnsigned ? .uint8 : .int8
                let a = randomTensor(at, [m, k], &r).asInt64s(), b = randomTensor(bt, [k, n], &r).asInt64s()
                let aBytes = a.map { UInt8(truncatingIfNeeded: $0) }, bBytes = b.map { UInt8(truncatingIfNeeded: $0) }
                let za = Int32(aSigned ? Int64.random(in: -128...127, using: &r) : Int64.random(in: 0...255, using: &r))
                let zb = (0..<n).map { _ in Int32(bUnsigned ? Int64.random(in: 0...255, using: &r) : Int64.random(in: -128...127, using: &r)) }
                let bias = (0..<n).map { _ in Int32.random(in: -20000...20000, using: &r) }
                // Multipliers around 1/(K·64) keep most outputs in range; every fifth column saturates.
                let mult = (0..<n).map { j in (j % 5 == 4 ? 0.5 : 1.0 / Double(64 * k)) * Double.random(in: 0.5...2, using: &r) }
                var packed = [Int8](repeating: 0, count: kiln_qgemm_pack_b_size(k, n)), sums = [Int32](repeating: 0, count: n)
                kiln_qgemm_pack_b(k, n, bBytes, n, 1, bUnsigned ? 1 : 0, &packed, &sums)
                // The exact sums, in Int64.
                var exact = [Int64](repeating: 0, count: m * n)
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Int64 = 0
                        for kk in 0..<k { s += (a[i * k + kk] - Int64(za)) * (b[kk * n + j] - Int64(zb[j])) }
                        exact[i * n + j] = s
                    }
                }
                for (mode, out) in [(KILN_QROUND_DOUBLE, KILN_QOUT_INT32), (KILN_QROUND_DOUBLE, KILN_QOUT_UINT8),
                                    (KILN_QROUND_DOUBLE_ZERO_IN, KILN_QOUT_INT8), (KILN_QROUND_FLOAT, KILN_QOUT_UINT8)] {
                    var results: [String: [Int32]] = [:]
                    for family in families {
                        #expect(kiln_qkernels_select_isa(family) == 0)
                        #expect(String(cString: kiln_qkernels_isa()) == family)
                        var c32 = [Int32](repeating: -1, count: m * n), c8 = [UInt8](repeating: 0xAA, count: m * n)
                        aBytes.withUnsafeBufferPointer { ap in packed.withUnsafeBufferPointer { pp in sums.withUnsafeBufferPointer { sp in
                        zb.withUnsafeBufferPointer { zp in bias.withUnsafeBufferPointer { bp in mult.withUnsafeBufferPointer { mp in
                        c32.withUnsafeMutableBufferPointer { c32p in c8.withUnsafeMutableBufferPointer { c8p in
                            var p = kiln_qgemm_params()
                            p.m = m; p.n = n; p.k = k; p.a = ap.baseAddress; p.lda = k; p.a_signed = aSigned ? 1 : 0; p.a_zero = za
                            p.packed_b = pp.baseAddress; p.col_sums = sp.baseAddress; p.b_unsigned = bUnsigned ? 1 : 0
                            p.b_zero = zp.baseAddress; p.b_zero_stride = 1
                            p.out = out; p.rs = n; p.cs = 1; p.round = mode
                            if out == KILN_QOUT_INT32 {
                                p.c = UnsafeMutableRawPointer(c32p.baseAddress!)
                            } else {
                                p.c = UnsafeMutableRawPointer(c8p.baseAddress!); p.bias = bp.baseAddress
                                p.multiplier = mp.baseAddress; p.multiplier_stride = 1
                                p.y_zero = out == KILN_QOUT_UINT8 ? 100 : -3
                                (p.qmin, p.qmax) = out == KILN_QOUT_UINT8 ? (mode == KILN_QROUND_FLOAT ? 100 : 0, 255) : (-128, 127)
                            }
                            // Two row ranges and two column ranges, as threads split the work.
                            let rc = m / 2, nc = n > 16 ? 16 : n
                            kiln_qgemm(&p, 0, rc, 0, nc); kiln_qgemm(&p, rc, m, 0, nc)
                            kiln_qgemm(&p, 0, m, nc, n)
                        } } } } } } } }
                        results[family] = out == KILN_QOUT_INT32 ? c32 : c8.map { out == KILN_QOUT_INT8 ? Int32(Int8(bitPattern: $0)) : Int32($0) }
                    }
                    let generic = results["generic"]!
                    for family in families {
                        #expect(results[family]! == generic, "\(family) vs generic, \(m)×\(n)×\(k) a_signed=\(aSigned) b_unsigned=\(bUnsigned) mode \(mode.rawValue)")
                    }
                    // The portable result against the plain sum and the rounding rule.
                    var wrong = 0
                    for i in 0..<m {
                        for j in 0..<n {
                            let e = exact[i * n + j]
                            let want: Int64
                            switch (mode, out) {
                            case (_, KILN_QOUT_INT32): want = e
                            case (KILN_QROUND_FLOAT, _):
                                want = min(max(Int64((Float(e + Int64(bias[j])) * Float(mult[j])).rounded(.toNearestOrEven)) + 100, 100), 255)
                            case (KILN_QROUND_DOUBLE_ZERO_IN, _):
                                want = min(max(Int64((Double(e + Int64(bias[j])) * mult[j] - 3).rounded(.toNearestOrEven)), -128), 127)
                            default:
                                want = min(max(Int64((Double(e + Int64(bias[j])) * mult[j]).rounded(.toNearestOrEven)) + 100, 0), 255)
                            }
                            if Int64(generic[i * n + j]) != want { wrong += 1 }
                        }
                    }
                    #expect(wrong == 0, "\(m)×\(n)×\(k) a_signed=\(aSigned) b_unsigned=\(bUnsigned) mode \(mode.rawValue) out \(out.rawValue): \(wrong) wrong")
                }
            }
        }
    }

    @Test("kiln_qgemm's fused-QDQ stage on a segmented A (a convolution read from kiln_qpad_hwc) and [channel][pixel] output: every ISA bit-exact with the portable path on im2row rows and with a plain float32 sum")
    func segmentedConvolutionRows() throws {
        defer { _ = kiln_qkernels_select_isa("host") }
        var r = SplitMix64(seed: 13)
        // (channels, filters, height, width, kernel, stride, pad)
        let cases = [(32, 32, 9, 21, 3, 1, 1), (8, 70, 7, 6, 3, 2, 1), (4, 17, 6, 5, 5, 1, 2), (16, 40, 5, 37, 1, 1, 0), (12, 9, 8, 8, 3, 1, 0)]
        for (ci, (c, m, h, w, kk, s, pad)) in cases.enumerated() {
            let aSigned = ci % 2 == 1, outSigned = ci % 3 == 2
            let oh = (h + 2 * pad - kk) / s + 1, ow = (w + 2 * pad - kk) / s + 1, pixels = oh * ow, k = c * kk * kk
            let hp = (oh - 1) * s + kk, wp = (ow - 1) * s + kk
            let x = (0..<(c * h * w)).map { _ in UInt8.random(in: 0...255, using: &r) }
            let wt = (0..<(m * k)).map { _ in UInt8.random(in: 0...255, using: &r) } // [filter][ky][kx][c], int8 bytes
            let za = Int32(aSigned ? Int.random(in: -128...127, using: &r) : Int.random(in: 0...255, using: &r))
            let zb = (0..<m).map { j in Int32(j % 4 == 0 ? Int.random(in: -5...5, using: &r) : 0) }
            let bias = (0..<m).map { _ in Int32.random(in: -3000...3000, using: &r) }
            let fbias: [Float] = (0..<m).map { _ in Float.random(in: -20...20, using: &r) }
            let mult = (0..<m).map { j in Double(Float((j % 7 == 6 ? 0.3 : 1.0 / Float(40 * k)) * Float.random(in: 0.5...2, using: &r))) }
            let (yz, qmin, qmax): (Int32, Int32, Int32) = outSigned ? (-7, -7, 127) : (90, 0, 255)
            var packed = [Int8](repeating: 0, count: kiln_qgemm_pack_b_size(k, m)), sums = [Int32](repeating: 0, count: m)
            kiln_qgemm_pack_b(k, m, wt, 1, k, 0, &packed, &sums)
            var geometry = kiln_conv2d_params()
            geometry.in_channels = c; geometry.in_height = h; geometry.in_width = w
            geometry.out_channels = m; geometry.out_height = oh; geometry.out_width = ow
            geometry.kernel_h = kk; geometry.kernel_w = kk; geometry.stride_h = s; geometry.stride_w = s
            geometry.pad_top = pad; geometry.pad_left = pad; geometry.dilation_h = 1; geometry.dilation_w = 1; geometry.groups = 1
            let padByte = UInt8(truncatingIfNeeded: za)
            // im2row rows (the reference layout) and the padded channels-last image.
            var hwc = [UInt8](repeating: 0, count: c * h * w), rows = [UInt8](repeating: 0, count: pixels * k)
            kiln_qtranspose_hwc(x, c, h * w, &hwc, 0, h * w)
            withUnsafePointer(to: geometry) { g in kiln_qim2row_hwc(g, hwc, 0, padByte, &rows, k, 0, pixels) }
            var padded = [UInt8](repeating: 0xEE, count: hp * wp * c)
            #expect(kiln_qkernels_select_isa("generic") == 0)
            kiln_qpad_hwc(x, c, h, w, pad, pad, wp, padByte, &padded, 0, hp / 2)
            kiln_qpad_hwc(x, c, h, w, pad, pad, wp, padByte, &padded, hp / 2, hp)
            for family in Self.families {
                #expect(kiln_qkernels_select_isa(family) == 0)
                var again = [UInt8](repeating: 0x11, count: hp * wp * c)
                kiln_qpad_hwc(x, c, h, w, pad, pad, wp, padByte, &again, 0, hp)
                #expect(again == padded, "kiln_qpad_hwc on \(family), case \(ci)")
            }
            for py in 0..<hp {
                for px in 0..<wp {
                    for ch in 0..<c {
                        let iy = py - pad, ix = px - pad
                        let want = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[ch * h * w + iy * w + ix] : padByte
                        if padded[(py * wp + px) * c + ch] != want { Issue.record("kiln_qpad_hwc case \(ci) at \(py),\(px),\(ch)"); return }
                    }
                }
            }
            func run(_ segmented: Bool) -> [UInt8] {
                var out = [UInt8](repeating: 0xAA, count: m * pixels)
                rows.withUnsafeBufferPointer { rp in padded.withUnsafeBufferPointer { pp in packed.withUnsafeBufferPointer { kp in
                sums.withUnsafeBufferPointer { sp in zb.withUnsafeBufferPointer { zp in bias.withUnsafeBufferPointer { bp in
                mult.withUnsafeBufferPointer { mp in fbias.withUnsafeBufferPointer { fp in out.withUnsafeMutableBytes { op in
                    var q = kiln_qgemm_params()
                    q.n = m; q.k = k; q.a_signed = aSigned ? 1 : 0; q.a_zero = za
                    q.packed_b = kp.baseAddress; q.col_sums = sp.baseAddress; q.b_zero = zp.baseAddress; q.b_zero_stride = 1
                    q.bias = bp.baseAddress; q.out = outSigned ? KILN_QOUT_INT8 : KILN_QOUT_UINT8; q.rs = 1; q.cs = pixels
                    q.multiplier = mp.baseAddress; q.multiplier_stride = 1; q.fbias = fp.baseAddress
                    q.y_zero = yz; q.qmin = qmin; q.qmax = qmax; q.round = KILN_QROUND_FLOAT
                    if segmented {
                        for oy in 0..<oh {
                            var row = q
                            row.m = ow; row.a = pp.baseAddress! + oy * s * wp * c; row.lda = s * c
                            row.a_segments = kk; row.a_segment_stride = wp * c
                            row.c = op.baseAddress! + oy * ow
                            kiln_qgemm(&row, 0, ow, 0, m)
                        }
                    } else {
                        q.m = pixels; q.a = rp.baseAddress; q.lda = k; q.c = op.baseAddress
                        kiln_qgemm(&q, 0, pixels, 0, m)
                    }
                } } } } } } } } }
                return out
            }
            #expect(kiln_qkernels_select_isa("generic") == 0)
            let reference = run(false)
            // The portable result against a plain float32 evaluation of the rounding rule.
            var wrong = 0
            for px in 0..<pixels {
                for j in 0..<m {
                    var e: Int64 = 0
                    for t in 0..<k {
                        let a = aSigned ? Int64(Int8(bitPattern: rows[px * k + t])) : Int64(rows[px * k + t])
                        e += (a - Int64(za)) * (Int64(Int8(bitPattern: wt[j * k + t])) - Int64(zb[j]))
                    }
                    var f = Float(e + Int64(bias[j])) * Float(mult[j])
                    f += fbias[j]
                    let y = min(max(Int64(f.rounded(.toNearestOrEven)) + Int64(yz), Int64(qmin)), Int64(qmax))
                    let got = outSigned ? Int64(Int8(bitPattern: reference[j * pixels + px])) : Int64(reference[j * pixels + px])
                    if got != y { wrong += 1 }
                }
            }
            #expect(wrong == 0, "case \(ci): \(wrong) of \(m * pixels) wrong")
            for family in Self.families {
                #expect(kiln_qkernels_select_isa(family) == 0)
                #expect(run(true) == reference, "\(family), segmented, case \(ci)")
                #expect(run(false) == reference, "\(family), im2row rows, case \(ci)")
            }
        }
    }

    @Test("kiln_qwinograd_conv (3×3, F(2×2, 3×3)): every ISA bit-exact with a plain int64 sum and each output stage, across channel counts, odd sizes, pads, signedness and uint8 weights")
    func winogradFamilies() throws {
        defer { _ = kiln_qkernels_select_isa("host") }
        var r = SplitMix64(seed: 15)
        // (channels, filters, height, width, pad)
        let cases = [(32, 32, 9, 11, 1), (5, 9, 7, 6, 1), (19, 17, 8, 13, 0), (48, 24, 5, 5, 2), (16, 8, 3, 3, 1), (130, 40, 4, 7, 1), (130, 24, 17, 21, 1)]
        for (ci, (c, m, h, w, pad)) in cases.enumerated() {
            let aSigned = ci % 2 == 1, wUnsigned = ci % 3 == 1, outSigned = ci % 3 == 2
            let oh = h + 2 * pad - 2, ow = w + 2 * pad - 2, pixels = oh * ow, k = c * 9
            let rowsPadded = 2 * ((oh + 1) / 2) + 2, wp = 2 * ((ow + 1) / 2) + 2
            let x = (0..<(c * h * w)).map { _ in UInt8.random(in: 0...255, using: &r) }
            let wt = (0..<(m * k)).map { _ in UInt8.random(in: 0...255, using: &r) } // [filter][c][3][3]
            let za = Int32(aSigned ? Int.random(in: -128...127, using: &r) : Int.random(in: 0...255, using: &r))
            let bias = (0..<m).map { _ in Int32.random(in: -3000...3000, using: &r) }
            let fbias: [Float] = (0..<m).map { _ in Float.random(in: -20...20, using: &r) }
            let mult = (0..<m).map { j in Double(Float((j % 7 == 6 ? 0.3 : 1.0 / Float(40 * k)) * Float.random(in: 0.5...2, using: &r))) }
            let (yz, qmin, qmax): (Int32, Int32, Int32) = outSigned ? (-7, -7, 127) : (90, 0, 255)
            // The fused-QDQ stage; case 0 also QLinearConv's (int8 out), case 1 ConvInteger's int32.
            let (mode, out): (kiln_qround, kiln_qout) = ci == 0 ? (KILN_QROUND_DOUBLE_ZERO_IN, KILN_QOUT_INT8)
                : ci == 1 ? (KILN_QROUND_DOUBLE, KILN_QOUT_INT32) : (KILN_QROUND_FLOAT, outSigned ? KILN_QOUT_INT8 : KILN_QOUT_UINT8)
            let (lo, hi): (Int64, Int64) = out == KILN_QOUT_INT8 ? (mode == KILN_QROUND_FLOAT ? Int64(qmin) : -128, 127) : (Int64(qmin), Int64(qmax))
            // Each filter's zero point: none (case 2), the middle of uint8 (as the int8 product stores it), or a
            // filter's own, as per-tensor uint8 weights quantized like activations have (ORT's, for computed weights).
            let wz: [Int32]? = ci == 2 ? nil : (0..<m).map { j in wUnsigned ? (ci % 2 == 0 ? 128 : Int32(110 + j % 37)) : Int32(j % 5) - 2 }
            var packed = [Int16](repeating: 0, count: kiln_qwinograd_pack_size(c, m)), sums = [Int32](repeating: 0, count: m)
            #expect(kiln_qwinograd_pack(c, m, wt, wUnsigned ? 1 : 0, wz, &packed, &sums) == 1)
            var geometry = kiln_conv2d_params()
            geometry.in_channels = c; geometry.in_height = h; geometry.in_width = w
            geometry.out_channels = m; geometry.out_height = oh; geometry.out_width = ow
            geometry.kernel_h = 3; geometry.kernel_w = 3; geometry.stride_h = 1; geometry.stride_w = 1
            geometry.pad_top = pad; geometry.pad_left = pad; geometry.dilation_h = 1; geometry.dilation_w = 1; geometry.groups = 1
            var padded = [UInt8](repeating: 0, count: rowsPadded * wp * c)
            kiln_qpad_hwc(x, c, h, w, pad, pad, wp, UInt8(truncatingIfNeeded: za), &padded, 0, rowsPadded)
            // The plain sum and the rounding rule.
            var want = [Int32](repeating: 0, count: m * pixels)
            for j in 0..<m {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var e: Int64 = 0
                        for ch in 0..<c {
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let iy = oy + ky - pad, ix = ox + kx - pad
                                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                    let xb = x[ch * h * w + iy * w + ix], wb = wt[(j * c + ch) * 9 + ky * 3 + kx]
                                    let a = aSigned ? Int64(Int8(bitPattern: xb)) : Int64(xb)
                                    e += (a - Int64(za)) * ((wUnsigned ? Int64(wb) : Int64(Int8(bitPattern: wb))) - Int64(wz?[j] ?? 0))
                                }
                            }
                        }
                        let v = e + Int64(bias[j])
                        var y: Int64
                        if mode == KILN_QROUND_FLOAT {
                            var f = Float(v) * Float(mult[j])
                            f += fbias[j]
                            y = Int64(f.rounded(.toNearestOrEven)) + Int64(yz)
                        } else {
                            y = Int64((Double(v) * mult[j] + Double(mode == KILN_QROUND_DOUBLE_ZERO_IN ? -3 : 0)).rounded(.toNearestOrEven))
                        }
                        want[j * pixels + oy * ow + ox] = out == KILN_QOUT_INT32 ? Int32(truncatingIfNeeded: v) : Int32(min(max(y, lo), hi))
                    }
                }
            }
            for family in Self.families {
                #expect(kiln_qkernels_select_isa(family) == 0)
                #expect((kiln_qwinograd_preferred() != 0) == (family == "avx2"), "\(family)")
                var bytes = [UInt8](repeating: 0xAA, count: m * pixels), words = [Int32](repeating: -1, count: m * pixels)
                packed.withUnsafeBufferPointer { kp in sums.withUnsafeBufferPointer { sp in bias.withUnsafeBufferPointer { bp in
                mult.withUnsafeBufferPointer { mp in fbias.withUnsafeBufferPointer { fp in bytes.withUnsafeMutableBytes { op in
                words.withUnsafeMutableBytes { wp32 in
                    var q = kiln_qgemm_params()
                    q.n = m; q.k = c; q.a_signed = aSigned ? 1 : 0; q.a_zero = za; q.col_sums = sp.baseAddress
                    q.b_unsigned = wUnsigned ? 1 : 0
                    q.bias = bp.baseAddress; q.out = out; q.rs = 1; q.cs = pixels
                    q.multiplier = mp.baseAddress; q.multiplier_stride = 1; q.fbias = mode == KILN_QROUND_FLOAT ? fp.baseAddress : nil
                    q.y_zero = mode == KILN_QROUND_FLOAT ? yz : -3; (q.qmin, q.qmax) = (Int32(lo), Int32(hi)); q.round = mode
                    q.c = out == KILN_QOUT_INT32 ? wp32.baseAddress : op.baseAddress
                    // Two ranges of tile rows, as threads split the work.
                    let tiles = (oh + 1) / 2
                    withUnsafePointer(to: geometry) { g in
                        kiln_qwinograd_conv(g, padded, wp, kp.baseAddress, &q, 0, tiles / 2)
                        kiln_qwinograd_conv(g, padded, wp, kp.baseAddress, &q, tiles / 2, tiles)
                    }
                } } } } } } }
                let got = out == KILN_QOUT_INT32 ? words : bytes.map { out == KILN_QOUT_INT8 ? Int32(Int8(bitPattern: $0)) : Int32($0) }
                let wrong = zip(got, want).filter { $0 != $1 }.count
                #expect(wrong == 0, "\(family), case \(ci): \(wrong) of \(m * pixels) wrong")
            }
        }
        // Refused where the sums could leave int32: 1000 channels of uint8 weights 255 with no zero point, but not
        // with the zero point 128.
        let big = [UInt8](repeating: 255, count: 1000 * 9)
        var packed = [Int16](repeating: 0, count: kiln_qwinograd_pack_size(1000, 1)), sums: [Int32] = [0]
        #expect(kiln_qwinograd_pack(1000, 1, big, 1, nil, &packed, &sums) == 0)
        #expect(kiln_qwinograd_pack(1000, 1, big, 1, [128], &packed, &sums) == 1)
    }

    @Test("kiln_qdepthwise (fused-QDQ stage), kiln_quantize_u8, kiln_qadd and kiln_dequantize_u8: every ISA bit-exact with the portable loops, across pads, strides, kernel sizes, signedness, NaN and infinities")
    func depthwiseAndQuantizeFamilies() throws {
        defer { _ = kiln_qkernels_select_isa("host") }
        var r = SplitMix64(seed: 14)
        // (channels, height, width, kernel, stride, pad)
        let cases = [(5, 7, 9, 3, 1, 1), (3, 20, 33, 5, 1, 2), (4, 17, 18, 3, 2, 1), (6, 9, 40, 7, 1, 3), (2, 4, 3, 3, 1, 2), (16, 19, 19, 3, 1, 0),
                     (7, 12, 37, 5, 2, 2), (3, 9, 70, 3, 2, 0), (2, 6, 5, 3, 2, 1)]
        for (ci, (c, h, w, kk, s, pad)) in cases.enumerated() {
            let oh = (h + 2 * pad - kk) / s + 1, ow = (w + 2 * pad - kk) / s + 1
            let xSigned = ci % 2 == 1
            let x = (0..<(c * h * w)).map { _ in UInt8.random(in: 0...255, using: &r) }
            let wt = (0..<(c * kk * kk)).map { _ in UInt8.random(in: 0...255, using: &r) }
            let wz = (0..<c).map { j in Int32(j % 3 - 1) }, bias = (0..<c).map { _ in Int32.random(in: -2000...2000, using: &r) }
            let mult = (0..<c).map { j in Double(Float(0.0002 * Double(1 + j % 4))) }, fbias = (0..<c).map { j in Float(j % 5) - 2 }
            var geometry = kiln_conv2d_params()
            geometry.in_channels = c; geometry.in_height = h; geometry.in_width = w
            geometry.out_channels = c; geometry.out_height = oh; geometry.out_width = ow
            geometry.kernel_h = kk; geometry.kernel_w = kk; geometry.stride_h = s; geometry.stride_w = s
            geometry.pad_top = pad; geometry.pad_left = pad; geometry.dilation_h = 1; geometry.dilation_w = 1; geometry.groups = c
            func run() -> [UInt8] {
                var out = [UInt8](repeating: 0xAA, count: c * oh * ow)
                wz.withUnsafeBufferPointer { zp in bias.withUnsafeBufferPointer { bp in mult.withUnsafeBufferPointer { mp in
                fbias.withUnsafeBufferPointer { fp in out.withUnsafeMutableBytes { op in
                    var q = kiln_qgemm_params()
                    q.out = KILN_QOUT_UINT8; q.c = op.baseAddress; q.rs = oh * ow; q.cs = 1; q.bias = bp.baseAddress
                    q.multiplier = mp.baseAddress; q.multiplier_stride = 1; q.fbias = fp.baseAddress
                    q.y_zero = 100; q.qmin = 100; q.qmax = 255; q.round = KILN_QROUND_FLOAT
                    withUnsafePointer(to: geometry) { g in
                        kiln_qdepthwise(g, x, xSigned ? 1 : 0, xSigned ? -5 : 7, wt, xSigned ? 0 : 1, zp.baseAddress, 1, &q, 0, c / 2)
                        kiln_qdepthwise(g, x, xSigned ? 1 : 0, xSigned ? -5 : 7, wt, xSigned ? 0 : 1, zp.baseAddress, 1, &q, c / 2, c)
                    }
                } } } } }
                return out
            }
            #expect(kiln_qkernels_select_isa("generic") == 0)
            let reference = run()
            #expect(Set(reference).count > 3, "case \(ci): the outputs should not all saturate")
            for family in Self.families {
                #expect(kiln_qkernels_select_isa(family) == 0)
                #expect(run() == reference, "kiln_qdepthwise on \(family), case \(ci)")
            }
        }
        var values = (0..<1003).map { _ in Float.random(in: -300...300, using: &r) }
        values[3] = .nan; values[4] = .infinity; values[5] = -.infinity; values[6] = -0.0; values[7] = 0.5 * 0.02; values[8] = 1.5 * 0.02
        for (scale, zero, signed) in [(Float(0.02), Int32(128), false), (0.0031, 0, false), (1e-30, 3, false), (3, -3, true), (0.02, 127, true)] {
            for n in [1003, 17, 16, 1] {
                var want = [UInt8](repeating: 0, count: n)
                #expect(kiln_qkernels_select_isa("generic") == 0)
                kiln_quantize_u8(values, n, scale, zero, signed ? 1 : 0, &want)
                for family in Self.families {
                    #expect(kiln_qkernels_select_isa(family) == 0)
                    var got = [UInt8](repeating: 0x5A, count: n)
                    kiln_quantize_u8(values, n, scale, zero, signed ? 1 : 0, &got)
                    #expect(got == want, "kiln_quantize_u8 on \(family): scale \(scale) zero \(zero) n \(n)")
                }
            }
        }
        // kiln_qadd against the unfused nodes' float32 operations, written out here, then quantized.
        let qa = (0..<1003).map { _ in UInt8.random(in: 0...255, using: &r) }, qb = (0..<1003).map { _ in UInt8.random(in: 0...255, using: &r) }
        for (sa, sb, sy, xa, xb, oa, ob, zy, signed) in [(Float(0.02), Float(0.03), Float(0.05), UInt8(0), UInt8(0), Int32(3), Int32(130), Int32(7), false),
                                                          (0.1, 0.007, 0.1, 0x80, 0, 128 - 4, 0, -20, true), (0.5, 0.5, 0.4, 0x80, 0x80, 128, 125, 0, false)] {
            for n in [1003, 16, 7] {
                let sums = (0..<n).map { i -> Float in
                    let da = Float(Int32(qa[i] ^ xa) - oa) * sa
                    let db = Float(Int32(qb[i] ^ xb) - ob) * sb
                    return da + db
                }
                var want = [UInt8](repeating: 0, count: n)
                #expect(kiln_qkernels_select_isa("generic") == 0)
                kiln_quantize_u8(sums, n, sy, zy, signed ? 1 : 0, &want)
                if n == 1003 { #expect(Set(want).count > 100, "the sums should not all saturate") }
                for family in Self.families {
                    #expect(kiln_qkernels_select_isa(family) == 0)
                    var got = [UInt8](repeating: 0x5A, count: n)
                    kiln_qadd(qa, xa, oa, sa, qb, xb, ob, sb, n, sy, zy, signed ? 1 : 0, &got)
                    #expect(got == want, "kiln_qadd on \(family): n \(n) y_scale \(sy)")
                }
            }
        }
        // kiln_dequantize_u8 against DequantizeLinear's float32 arithmetic, written out.
        for (signed, zero, scale) in [(false, Int32(131), Float(0.0173)), (true, Int32(-7), 3.5e-5), (true, 0, 1e30)] {
            for n in [1003, 33, 5] {
                let want = (0..<n).map { i in (Float(signed ? Int32(Int8(bitPattern: qa[i])) : Int32(qa[i])) - Float(zero)) * scale }
                for family in Self.families {
                    #expect(kiln_qkernels_select_isa(family) == 0)
                    var got = [Float](repeating: .nan, count: n)
                    kiln_dequantize_u8(qa, n, signed ? 1 : 0, zero, scale, &got)
                    #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "kiln_dequantize_u8 on \(family): n \(n) scale \(scale)")
                }
            }
        }
    }

    @Test("Forcing the generic float kernels forces the generic int8 tile too; unknown ISAs are refused")
    func dispatch() {
        defer { _ = kiln_qkernels_select_isa("host"); _ = kiln_kernels_force_generic(0) }
        _ = kiln_kernels_force_generic(1)
        #expect(String(cString: kiln_qkernels_isa()) == "generic")
        _ = kiln_kernels_force_generic(0)
        #expect(kiln_qkernels_select_isa("not-an-isa") == -1)
        #expect(kiln_qkernels_select_isa("host") == 0)
        #if arch(x86_64)
        #expect(kiln_qkernels_select_isa("neon") == -1)
        let f = kiln_cpu_detect()
        #expect(String(cString: kiln_qkernels_isa()) == (f.avx512vnni != 0 ? "avx512vnni" : (f.avx2 != 0 ? "avx2" : "generic")))
        #endif
    }
}

@Suite("int8 ops against kiln.reference")
struct QuantizedOpTests {
    @Test("QLinearMatMul: bit-exact with kiln.reference for uint8/int8 mixes, per-column b scales and zero points, constant and run-time B, batches")
    func qlinearMatMul() throws {
        var r = SplitMix64(seed: 21)
        let cases: [(a: [Int], b: [Int], constantB: Bool)] = [
            ([1, 1], [1, 1], true), ([7, 13], [13, 5], true), ([33, 70], [70, 35], false), ([5, 3, 27], [27, 47], true),
            ([2, 3, 9], [2, 9, 4], false), ([17], [17, 18], true),
        ]
        for c in cases {
            for (at, bt, yt) in [(DType.uint8, DType.uint8, DType.uint8), (.int8, .int8, .int8), (.uint8, .int8, .uint8), (.int8, .uint8, .int8)] {
                let n = c.b.last!, k = c.a.last!
                for perColumn in [false, true] where !(perColumn && c.b.count > 2) {
                    var g = TestGraph()
                    let a = g.input("a", c.a.map { .fixed($0) }, at)
                    let bTensor = randomTensor(bt, c.b, &r)
                    let b = c.constantB ? g.constant(bTensor, "b") : g.input("b", c.b.map { .fixed($0) }, bt)
                    let count = perColumn ? n : 1, shape = perColumn ? [n] : []
                    let aScale = g.constant(floats([], [Float.random(in: 0.01...0.1, using: &r)]))
                    let bScale = g.constant(floats(shape, (0..<count).map { _ in Float.random(in: 0.01...0.1, using: &r) }))
                    // y_scale small enough that some outputs saturate.
                    let yScale = g.constant(floats([], [Float(k) * 0.02]))
                    let aZero = g.constant(randomTensor(at, [], &r)), bZero = g.constant(randomTensor(bt, shape, &r))
                    let yZero = g.constant(randomTensor(yt, [], &r, yt == .uint8 ? 100...150 : -20...20))
                    let y = g.node("QLinearMatMul", [a, aScale, aZero, b, bScale, bZero, yScale, yZero])
                    g.output(y)
                    var inputs = ["a": randomTensor(at, c.a, &r)]
                    if !c.constantB { inputs["b"] = bTensor }
                    try expectMatchesReference(g.model, inputs: inputs, tolerance: 0, "QLinearMatMul \(c) \(at)×\(bt)→\(yt) perColumn=\(perColumn)")
                }
            }
        }
    }

    @Test("MatMulInteger: exact int32 with per-row a zero points, per-column b zero points, batches")
    func matMulInteger() throws {
        var r = SplitMix64(seed: 22)
        for (aShape, bShape, perRow) in [([4, 9], [9, 21], true), ([3, 5, 40], [40, 17], false), ([2, 6, 7], [2, 7, 3], false), ([1, 300], [300, 2], true)] {
            var g = TestGraph()
            let a = g.input("a", aShape.map { .fixed($0) }, .uint8)
            let b = g.constant(randomTensor(.int8, bShape, &r))
            let aZero = g.constant(randomTensor(.uint8, perRow ? [aShape[0]] : [], &r))
            let bZero = g.constant(randomTensor(.int8, bShape.count == 2 ? [bShape[1]] : [], &r))
            g.output(g.node("MatMulInteger", [a, b, aZero, bZero]))
            try expectMatchesReference(g.model, inputs: ["a": randomTensor(.uint8, aShape, &r)], tolerance: 0, "MatMulInteger \(aShape)×\(bShape)")
        }
    }

    /// cin, cout, h, w (0: a 1-D input of width w), kernel, stride, pad, dilation, group.
    static let convCases: [[Int]] = [
        [3, 8, 9, 11, 3, 1, 1, 1, 1], [5, 7, 6, 6, 1, 1, 0, 1, 1], [3, 10, 17, 19, 7, 2, 3, 1, 1], [8, 12, 7, 8, 3, 1, 1, 1, 4],
        [4, 6, 10, 9, 3, 1, 2, 2, 1], [40, 5, 4, 4, 3, 1, 1, 1, 1], [6, 6, 13, 37, 3, 1, 1, 1, 6], [6, 6, 13, 41, 3, 2, 1, 1, 6],
        [16, 16, 5, 5, 5, 1, 2, 2, 16], [4, 8, 0, 29, 3, 2, 1, 1, 1], [3, 35, 12, 12, 3, 2, 0, 1, 1],
        // Read straight from the padded channels-last image (one group, no dilation, kernel width × channels a multiple of 4).
        [8, 20, 9, 7, 3, 2, 1, 1, 1], [16, 33, 6, 6, 1, 1, 0, 1, 1], [4, 9, 8, 8, 5, 1, 2, 1, 1], [12, 16, 7, 7, 3, 1, 0, 1, 1],
    ]

    @Test("QLinearConv: bit-exact with kiln.reference: groups, depthwise, pads, strides, dilations, 1-D, per-channel scales and zero points, bias, saturation")
    func qlinearConv() throws {
        var r = SplitMix64(seed: 23)
        for (t, cs) in Self.convCases.enumerated() {
            let (cin, cout, h, w, k, s, pad, d, group) = (cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6], cs[7], cs[8])
            let oneD = h == 0
            let xShape = oneD ? [1, cin, w] : [2, cin, h, w], wShape = oneD ? [cout, cin / group, k] : [cout, cin / group, k, k]
            let rank = oneD ? 1 : 2
            let (xt, wt, yt): (DType, DType, DType) = [(.uint8, .int8, .uint8), (.int8, .int8, .int8), (.uint8, .uint8, .uint8)][t % 3]
            let perChannel = t % 2 == 0
            var g = TestGraph()
            let x = g.input("x", xShape.map { .fixed($0) }, xt)
            let weight = g.constant(randomTensor(wt, wShape, &r), "w")
            let cshape = perChannel ? [cout] : [], count = perChannel ? cout : 1
            let xScale = g.constant(floats([], [0.05])), yScale = g.constant(floats([], [Float(cin / group * k * k) * 0.01]))
            let wScale = g.constant(floats(cshape, (0..<count).map { _ in Float.random(in: 0.005...0.05, using: &r) }))
            let xZero = g.constant(randomTensor(xt, [], &r)), wZero = g.constant(randomTensor(wt, cshape, &r))
            let yZero = g.constant(randomTensor(yt, [], &r, yt == .uint8 ? 90...160 : -10...10))
            let bias = g.constant(randomTensor(.int32, [cout], &r))
            let attributes: [String: Attribute] = [
                "strides": .ints(Array(repeating: s, count: rank)), "pads": .ints(Array(repeating: pad, count: 2 * rank)),
                "dilations": .ints(Array(repeating: d, count: rank)), "group": .int(group),
            ]
            g.output(g.node("QLinearConv", [x, xScale, xZero, weight, wScale, wZero, yScale, yZero, bias], attributes))
            try expectMatchesReference(g.model, inputs: ["x": randomTensor(xt, xShape, &r)], tolerance: 0, "QLinearConv case \(t) \(cs)")
        }
    }

    @Test("QLinearConv with every input computed at run time, and ConvInteger: exact")
    func runTimeParametersAndConvInteger() throws {
        var r = SplitMix64(seed: 24)
        var g = TestGraph()
        let names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
        let shapes: [[Int]] = [[1, 4, 7, 7], [], [], [6, 2, 3, 3], [6], [6], [], []]
        let dtypes: [DType] = [.uint8, .float32, .uint8, .int8, .float32, .int8, .float32, .int8]
        for i in 0..<8 { _ = g.input(names[i], shapes[i].map { .fixed($0) }, dtypes[i]) }
        g.output(g.node("QLinearConv", names, ["group": .int(2), "auto_pad": .string("SAME_UPPER"), "strides": .ints([2, 2])]))
        let feeds: [String: Tensor] = [
            "x": randomTensor(.uint8, shapes[0], &r), "xs": floats([], [0.02]), "xz": randomTensor(.uint8, [], &r),
            "w": randomTensor(.int8, shapes[3], &r), "ws": floats([6], [0.01, 0.02, 0.03, 0.015, 0.025, 0.005]),
            "wz": randomTensor(.int8, [6], &r, -5...5), "ys": floats([], [0.05]), "yz": randomTensor(.int8, [], &r),
        ]
        try expectMatchesReference(g.model, inputs: feeds, tolerance: 0, "QLinearConv, run-time parameters")

        for cs in Self.convCases.prefix(9) {
            let (cin, cout, h, w, k, s, pad, d, group) = (cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6], cs[7], cs[8])
            var g = TestGraph()
            let x = g.input("x", [1, cin, h, w].map { .fixed($0) }, .int8)
            let weight = g.constant(randomTensor(.uint8, [cout, cin / group, k, k], &r))
            let xZero = g.constant(randomTensor(.int8, [], &r)), wZero = g.constant(randomTensor(.uint8, [], &r))
            g.output(g.node("ConvInteger", [x, weight, xZero, wZero], ["strides": .ints([s, s]), "pads": .ints([pad, pad, pad, pad]),
                                                                      "dilations": .ints([d, d]), "group": .int(group)]))
            try expectMatchesReference(g.model, inputs: ["x": randomTensor(.int8, [1, cin, h, w], &r)], tolerance: 0, "ConvInteger \(cs)")
        }
    }

    @Test("Bad int8 inputs give typed errors: a zero point of the wrong type or shape")
    func badInputs() throws {
        var r = SplitMix64(seed: 25)
        for (zeroType, zeroShape) in [(DType.int8, [Int]()), (.uint8, [3])] {
            var g = TestGraph()
            let a = g.input("a", [.fixed(2), .fixed(4)], .uint8)
            let b = g.constant(randomTensor(.uint8, [4, 3], &r))
            let one = g.constant(floats([], [0.1]))
            let az = g.constant(randomTensor(zeroType, zeroShape, &r)), bz = g.constant(randomTensor(.uint8, [], &r))
            let yz = g.constant(randomTensor(.uint8, [], &r))
            g.output(g.node("QLinearMatMul", [a, one, az, b, one, bz, one, yz]))
            let session = try Session(model: g.model, backend: CPUBackend(threads: 1))
            #expect(throws: KilnError.self) { try session.runOrdered(["a": .tensor(randomTensor(.uint8, [2, 4], &r))]) }
        }
    }
}

@Suite("QDQ fusion on kiln.cpu")
struct QDQFusionTests {
    /// DequantizeLinear(x) and DequantizeLinear(w) → Conv/MatMul/Gemm (+ bias) (→ Relu) → QuantizeLinear, as
    /// onnxruntime's quantize_static writes it (int8 weights, symmetric per channel; uint8 activations).
    static func qdqGraph(_ op: String, relu: Bool, intBias: Bool, perChannel: Bool, _ r: inout SplitMix64) -> (Model, [Int]) {
        var g = TestGraph()
        // "DepthwiseConv": a Conv with group = channels (kiln_qdepthwise's path).
        let depthwise = op == "DepthwiseConv", isConv = op == "Conv" || depthwise
        let xShape = isConv ? [1, 8, 9, 10] : [5, 40]
        let cout = depthwise ? 8 : (isConv ? 12 : 19)
        let wShape = isConv ? [cout, depthwise ? 1 : 8, 3, 3] : (op == "Gemm" ? [cout, 40] : [40, cout])
        let x = g.input("x", xShape.map { .fixed($0) }, .uint8)
        let xs: Float = 0.03, xz = g.constant(Tensor(shape: [], [UInt8(120)]))
        let xScale = g.constant(floats([], [xs]))
        let dx = g.node("DequantizeLinear", [x, xScale, xz])
        let wsv = (0..<(perChannel ? cout : 1)).map { _ in Float.random(in: 0.002...0.02, using: &r) }
        let wScale = g.constant(floats(perChannel ? [cout] : [], wsv))
        let wq = g.constant(randomTensor(.int8, wShape, &r, -127...127))
        let wz = g.constant(Tensor(dtype: .int8, shape: perChannel ? [cout] : [], int64s: Array(repeating: 0, count: perChannel ? cout : 1)))
        let dw = g.node("DequantizeLinear", [wq, wScale, wz], ["axis": .int(op == "MatMul" ? 1 : 0)])
        var inputs = [dx, dw]
        if op != "MatMul" {
            if intBias {
                let bq = g.constant(randomTensor(.int32, [cout], &r, -3000...3000))
                let bs = g.constant(floats(perChannel ? [cout] : [], wsv.map { xs * $0 }))
                inputs.append(g.node("DequantizeLinear", [bq, bs], ["axis": .int(0)]))
            } else {
                inputs.append(g.constant(floats([cout], (0..<cout).map { _ in Float.random(in: -1...1, using: &r) })))
            }
        }
        let convAttributes: [String: Attribute] = ["pads": .ints([1, 1, 1, 1]), "strides": .ints([1, 2]), "group": .int(depthwise ? 8 : 1)]
        var y = g.node(isConv ? "Conv" : op, inputs, isConv ? convAttributes : (op == "Gemm" ? ["transB": .int(1)] : [:]))
        if relu { y = g.node("Relu", [y]) }
        let ys = g.constant(floats([], [isConv ? 0.05 : 0.04])), yz = g.constant(Tensor(shape: [], [UInt8(relu ? 0 : 128)]))
        g.output(g.node("QuantizeLinear", [y, ys, yz]))
        return (g.model, xShape)
    }

    @Test("QDQ 3×3 Conv whose weight is per-tensor uint8 with its zero point off 128 (onnxruntime's form for a computed weight): prepared for Winograd where the CPU prefers it, bytes equal to the direct product's")
    func winogradWithWeightZeroPoint() throws {
        defer { _ = kiln_qkernels_select_isa("host") }
        var r = SplitMix64(seed: 37)
        for wzValue in [UInt8(126), 137] {
            var g = TestGraph()
            let x = g.input("x", [1, 16, 13, 14].map { .fixed($0) }, .uint8)
            let dx = g.node("DequantizeLinear", [x, g.constant(floats([], [0.03])), g.constant(Tensor(shape: [], [UInt8(120)]))])
            let wq = g.constant(randomTensor(.uint8, [20, 16, 3, 3], &r))
            let dw = g.node("DequantizeLinear", [wq, g.constant(floats([], [0.004])), g.constant(Tensor(shape: [], [wzValue]))])
            let bias = g.constant(floats([20], (0..<20).map { _ in Float.random(in: -1...1, using: &r) }))
            let y = g.node("Conv", [dx, dw, bias], ["pads": .ints([1, 1, 1, 1])])
            g.output(g.node("QuantizeLinear", [y, g.constant(floats([], [0.1])), g.constant(Tensor(shape: [], [UInt8(128)]))]))
            let model = g.model
            let input = ["x": randomTensor(.uint8, [1, 16, 13, 14], &r)]
            _ = kiln_qkernels_select_isa("host")
            var lowering = Lowering(graph: model.graph)
            let operations = try lowering.lower().operations
            #expect(operations.map(\.kind) == ["QDQ(Conv)"])
            #expect((operations.first as? QuantizedLinearOperation)?.preparedForWinograd == (kiln_qwinograd_preferred() != 0))
            let (host, want) = try runBoth(model, input)
            let h = host[0].asInt64s(), w = want[0].asInt64s()
            #expect(Set(h).count > 20, "the outputs should not all saturate")
            #expect(zip(h, w).allSatisfy { abs($0 - $1) <= 1 }, "within one quantum of kiln.reference")
            // The portable family has no Winograd: the direct product, exact, as the reference for the bytes.
            #expect(kiln_qkernels_select_isa("generic") == 0)
            let (direct, _) = try runBoth(model, input)
            #expect(h == direct[0].asInt64s(), "zero point \(wzValue): Winograd and the direct product differ")
        }
    }

    @Test("QDQ Conv/depthwise Conv/MatMul/Gemm (+bias, +Relu) → one int8 operation, within one quantum of kiln.reference's float path")
    func fusedQDQ() throws {
        var r = SplitMix64(seed: 31)
        for op in ["Conv", "DepthwiseConv", "MatMul", "Gemm"] {
            for (relu, intBias, perChannel) in [(false, true, true), (true, true, false), (true, false, true)] {
                let (model, xShape) = Self.qdqGraph(op, relu: relu, intBias: intBias, perChannel: perChannel, &r)
                var lowering = Lowering(graph: model.graph)
                let kinds = try lowering.lower().operations.map(\.kind)
                #expect(kinds == ["QDQ(\(op == "DepthwiseConv" ? "Conv" : op)\(relu ? "+Relu" : ""))"], "\(op): \(kinds)")
                let x = randomTensor(.uint8, xShape, &r)
                let (got, want) = try runBoth(model, ["x": x])
                let g = got[0].asInt64s(), w = want[0].asInt64s()
                #expect(got[0].dtype == .uint8 && g.count == w.count)
                let worst = zip(g, w).map { abs($0 - $1) }.max() ?? 0
                let off = zip(g, w).filter { $0 != $1 }.count
                // The float path rounds each product and sum in float32, the int8 path is exact: they can
                // disagree only where y/y_scale lands within float rounding of a .5 boundary.
                #expect(worst <= 1, "\(op) relu=\(relu) intBias=\(intBias): max difference \(worst)")
                #expect(off * 50 <= g.count, "\(op): \(off) of \(g.count) differ")
                if relu { #expect(g.allSatisfy { $0 >= 0 }) }
            }
        }
    }

    @Test("QDQ Add (a residual sum) → one pass, bit-identical with kiln.reference's float path; a dequantized input that only fused nodes read is not computed; different shapes stay unfused")
    func fusedQDQAdd() throws {
        var r = SplitMix64(seed: 33)
        func scalar(_ g: inout TestGraph, _ v: Float) -> String { g.constant(floats([], [v])) }
        // uint8 + int8 → uint8, and a + a → int8.
        var g = TestGraph()
        let shape: [Dim] = [.fixed(2), .fixed(5), .fixed(7)]
        let a = g.input("a", shape, .uint8), s = g.input("s", shape, .int8)
        let da = g.node("DequantizeLinear", [a, scalar(&g, 0.031), g.constant(Tensor(shape: [], [UInt8(117)]))])
        let ds = g.node("DequantizeLinear", [s, scalar(&g, 0.0173), g.constant(Tensor(dtype: .int8, shape: [], int64s: [-5]))])
        g.output(g.node("QuantizeLinear", [g.node("Add", [da, ds]), scalar(&g, 0.05), g.constant(Tensor(shape: [], [UInt8(128)]))]),
                 g.node("QuantizeLinear", [g.node("Add", [da, da]), scalar(&g, 0.041), g.constant(Tensor(dtype: .int8, shape: [], int64s: [3]))]))
        var graph = g.graph
        _ = try GraphInference.infer(&graph)
        var lowering = Lowering(graph: graph)
        #expect(try lowering.lower().operations.map(\.kind) == ["QDQ(Add)", "QDQ(Add)"])
        for _ in 0..<3 {
            let feeds = ["a": randomTensor(.uint8, [2, 5, 7], &r), "s": randomTensor(.int8, [2, 5, 7], &r)]
            let (got, want) = try runBoth(Model(graph: graph), feeds)
            #expect(got[0].dtype == .uint8 && got[1].dtype == .int8)
            #expect(got[0].asInt64s() == want[0].asInt64s() && got[1].asInt64s() == want[1].asInt64s())
        }

        // x feeds a fused Conv and the residual Add: its DequantizeLinear is not computed.
        var h = TestGraph()
        let x = h.input("x", [.fixed(1), .fixed(8), .fixed(6), .fixed(6)], .uint8)
        let dx = h.node("DequantizeLinear", [x, scalar(&h, 0.03), h.constant(Tensor(shape: [], [UInt8(120)]))])
        let dw = h.node("DequantizeLinear", [h.constant(randomTensor(.int8, [8, 8, 3, 3], &r, -127...127)), scalar(&h, 0.01)])
        let conv = h.node("Conv", [dx, dw], ["pads": .ints([1, 1, 1, 1])])
        let yq = h.node("QuantizeLinear", [conv, scalar(&h, 0.05), h.constant(Tensor(shape: [], [UInt8(128)]))])
        let dy = h.node("DequantizeLinear", [yq, scalar(&h, 0.05), h.constant(Tensor(shape: [], [UInt8(128)]))])
        h.output(h.node("QuantizeLinear", [h.node("Add", [dx, dy]), scalar(&h, 0.1), h.constant(Tensor(shape: [], [UInt8(128)]))]))
        var hg = h.graph
        _ = try GraphInference.infer(&hg)
        var l2 = Lowering(graph: hg)
        #expect(try l2.lower().operations.map(\.kind) == ["QDQ(Conv)", "QDQ(Add)"])
        let (got, want) = try runBoth(Model(graph: hg), ["x": randomTensor(.uint8, [1, 8, 6, 6], &r)])
        // The Conv is exact where the reference rounds in float32 (one quantum of 0.05 at most): half a quantum here.
        #expect(zip(got[0].asInt64s(), want[0].asInt64s()).allSatisfy { abs($0 - $1) <= 1 })

        // Shapes that broadcast: left to the unfused nodes.
        var k = TestGraph()
        let p = k.input("p", [.fixed(2), .fixed(3)], .uint8), q = k.input("q", [.fixed(3)], .uint8)
        let dp = k.node("DequantizeLinear", [p, scalar(&k, 0.1)]), dq = k.node("DequantizeLinear", [q, scalar(&k, 0.2)])
        k.output(k.node("QuantizeLinear", [k.node("Add", [dp, dq]), scalar(&k, 0.3)]))
        var kg = k.graph
        _ = try GraphInference.infer(&kg)
        var l3 = Lowering(graph: kg)
        #expect(try !l3.lower().operations.map(\.kind).contains("QDQ(Add)"))
    }

    @Test("A dequantized activation read by another node stays computed; a non-constant weight is not fused")
    func partialPatterns() throws {
        var r = SplitMix64(seed: 32)
        var g = TestGraph()
        let x = g.input("x", [.fixed(3), .fixed(8)], .uint8)
        let dx = g.node("DequantizeLinear", [x, g.constant(floats([], [0.1])), g.constant(Tensor(shape: [], [UInt8(10)]))])
        let dw = g.node("DequantizeLinear", [g.constant(randomTensor(.int8, [8, 4], &r)), g.constant(floats([], [0.05]))])
        let mm = g.node("MatMul", [dx, dw])
        let q = g.node("QuantizeLinear", [mm, g.constant(floats([], [0.2])), g.constant(Tensor(shape: [], [UInt8(128)]))])
        let other = g.node("Relu", [dx])
        g.output(q, other)
        var lowering = Lowering(graph: g.graph)
        let kinds = try lowering.lower().operations.map(\.kind)
        #expect(kinds.contains("QDQ(MatMul)") && kinds.contains("DequantizeLinear"), "\(kinds)")
        let (got, want) = try runBoth(g.model, ["x": randomTensor(.uint8, [3, 8], &r)])
        #expect(zip(got[0].asInt64s(), want[0].asInt64s()).allSatisfy { abs($0 - $1) <= 1 })
        #expect(difference(got[1], want[1]).error == 0)

        var h = TestGraph()
        let a = h.input("a", [.fixed(2), .fixed(3)], .uint8), wIn = h.input("w", [.fixed(3), .fixed(2)], .int8)
        let da = h.node("DequantizeLinear", [a, h.constant(floats([], [0.1]))])
        let dw2 = h.node("DequantizeLinear", [wIn, h.constant(floats([], [0.1]))])
        h.output(h.node("QuantizeLinear", [h.node("MatMul", [da, dw2]), h.constant(floats([], [0.1]))]))
        var l2 = Lowering(graph: h.graph)
        #expect(try !l2.lower().operations.map(\.kind).contains { $0.hasPrefix("QDQ") })
    }
}
