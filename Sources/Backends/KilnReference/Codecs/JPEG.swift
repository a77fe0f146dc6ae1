/// Baseline JPEG, decoded as libjpeg's islow path does.
extension ImageCodec {
    /// Natural (row-major) position of the k-th coefficient in zig-zag order.
    static let zigzag: [Int] = [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ]

    /// A JPEG Huffman table in canonical form.
    struct JPEGHuffman {
        var minCode = [Int](repeating: 0, count: 17)
        var maxCode = [Int](repeating: -1, count: 17)
        var firstIndex = [Int](repeating: 0, count: 17)
        var symbols = [Int]()

        init(counts: [Int], symbols: [Int]) {
            self.symbols = symbols
            var code = 0, index = 0
            for l in 1...16 {
                firstIndex[l] = index
                minCode[l] = code
                code += counts[l - 1]
                index += counts[l - 1]
                maxCode[l] = counts[l - 1] > 0 ? code - 1 : -1
                code <<= 1
            }
        }
    }

    /// Reads the entropy-coded bits of a JPEG scan (most significant bit first, 0xFF00 unstuffed).
    struct JPEGBits {
        let bytes: [UInt8]
        var pos: Int
        var buffer = 0
        var count = 0

        /// The next bit; zeros once a marker is reached.
        mutating func bit() -> Int {
            if count == 0 {
                var byte = 0
                if pos < bytes.count {
                    if bytes[pos] == 0xFF {
                        let next = pos + 1 < bytes.count ? bytes[pos + 1] : 0xD9
                        if next == 0 {
                            byte = 0xFF
                            pos += 2
                        }
                        // Any other marker: feed zeros and stay put.
                    } else {
                        byte = Int(bytes[pos])
                        pos += 1
                    }
                }
                buffer = byte
                count = 8
            }
            count -= 1
            return (buffer >> count) & 1
        }

        /// The next `n` bits as an unsigned integer.
        mutating func bits(_ n: Int) -> Int {
            var v = 0
            for _ in 0..<n { v = v << 1 | bit() }
            return v
        }

        /// Decodes one Huffman symbol.
        mutating func decode(_ h: JPEGHuffman) throws -> Int {
            var code = 0
            for l in 1...16 {
                code = code << 1 | bit()
                if h.maxCode[l] >= 0 && code <= h.maxCode[l] && code >= h.minCode[l] {
                    return h.symbols[h.firstIndex[l] + code - h.minCode[l]]
                }
            }
            throw ImageCodec.imageError("bad JPEG Huffman code")
        }

        /// Skips to the byte after the next restart marker.
        mutating func restart() {
            count = 0
            while pos + 1 < bytes.count && !(bytes[pos] == 0xFF && (0xD0...0xD7).contains(bytes[pos + 1])) { pos += 1 }
            pos += 2
        }
    }

    /// A colour component of a JPEG frame.
    struct JPEGComponent {
        var id: Int
        var h: Int
        var v: Int
        var quant: Int
        var dcTable = 0
        var acTable = 0
        var prediction = 0
        /// Samples of the whole MCU-aligned plane.
        var plane: [UInt8] = []
        var planeWidth = 0
    }

    /// The islow integer inverse DCT of libjpeg: dequantized coefficients (natural order) to 8×8 samples.
    static func inverseDCT(_ c: [Int], into out: inout [UInt8], at offset: Int, stride: Int) {
        let constBits = 13, pass1 = 2
        func descale(_ x: Int, _ n: Int) -> Int { (x + (1 << (n - 1))) >> n }
        func limit(_ x: Int) -> UInt8 {
            let m = x & 1023
            if m < 128 { return UInt8(m + 128) }
            if m < 512 { return 255 }
            if m < 896 { return 0 }
            return UInt8(m - 896)
        }
        /// One 1-D 8-point pass; returns the 8 outputs before the final descale.
        func pass(_ i0: Int, _ i1: Int, _ i2: Int, _ i3: Int, _ i4: Int, _ i5: Int, _ i6: Int, _ i7: Int) -> [Int] {
            var z2 = i2, z3 = i6
            var z1 = (z2 + z3) * 4433
            let t2e = z1 + z3 * -15137
            let t3e = z1 + z2 * 6270
            z2 = i0
            z3 = i4
            let t0e = (z2 + z3) << constBits, t1e = (z2 - z3) << constBits
            let t10 = t0e + t3e, t13 = t0e - t3e, t11 = t1e + t2e, t12 = t1e - t2e
            var t0 = i7, t1 = i5, t2 = i3, t3 = i1
            z1 = t0 + t3
            z2 = t1 + t2
            z3 = t0 + t2
            var z4 = t1 + t3
            let z5 = (z3 + z4) * 9633
            t0 *= 2446
            t1 *= 16819
            t2 *= 25172
            t3 *= 12299
            z1 *= -7373
            z2 *= -20995
            z3 *= -16069
            z4 *= -3196
            z3 += z5
            z4 += z5
            t0 += z1 + z3
            t1 += z2 + z4
            t2 += z2 + z3
            t3 += z1 + z4
            return [t10 + t3, t11 + t2, t12 + t1, t13 + t0, t13 - t0, t12 - t1, t11 - t2, t10 - t3]
        }
        var ws = [Int](repeating: 0, count: 64)
        for col in 0..<8 {
            let r = pass(c[col], c[8 + col], c[16 + col], c[24 + col], c[32 + col], c[40 + col], c[48 + col], c[56 + col])
            for row in 0..<8 { ws[row * 8 + col] = descale(r[row], constBits - pass1) }
        }
        for row in 0..<8 {
            let w = row * 8
            let r = pass(ws[w], ws[w + 1], ws[w + 2], ws[w + 3], ws[w + 4], ws[w + 5], ws[w + 6], ws[w + 7])
            for col in 0..<8 { out[offset + row * stride + col] = limit(descale(r[col], constBits + pass1 + 3)) }
        }
    }

    /// Upsamples a component plane (`w × h` valid samples) by (`fh`, `fv`) to `outW × outH` as libjpeg's
    /// fancy upsampling does (triangle filter for 2×1 and 2×2, replication otherwise).
    static func upsample(_ p: [UInt8], stride: Int, w: Int, h: Int, fh: Int, fv: Int, outW: Int, outH: Int) -> [Int] {
        var out = [Int](repeating: 0, count: outW * outH)
        func at(_ y: Int, _ x: Int) -> Int { Int(p[min(max(y, 0), h - 1) * stride + min(max(x, 0), w - 1)]) }
        if fh == 1 && fv == 1 {
            for y in 0..<outH { for x in 0..<outW { out[y * outW + x] = at(y, x) } }
        } else if fh == 2 && (fv == 1 || fv == 2) && w >= 2 {
            for oy in 0..<outH {
                let y = oy / fv
                // Column sums for 2×2: 3 × the nearer row + the further row.
                func colsum(_ x: Int) -> Int {
                    let other = oy % 2 == 0 ? y - 1 : y + 1
                    return at(y, x) * 3 + at(other, x)
                }
                for x in 0..<w {
                    let even: Int, odd: Int
                    if fv == 2 {
                        let this = colsum(x)
                        even = x == 0 ? (this * 4 + 8) >> 4 : (this * 3 + colsum(x - 1) + 8) >> 4
                        odd = x == w - 1 ? (this * 4 + 7) >> 4 : (this * 3 + colsum(x + 1) + 7) >> 4
                    } else {
                        let v = at(y, x)
                        even = x == 0 ? v : (v * 3 + at(y, x - 1) + 1) >> 2
                        odd = x == w - 1 ? v : (v * 3 + at(y, x + 1) + 2) >> 2
                    }
                    if 2 * x < outW { out[oy * outW + 2 * x] = even }
                    if 2 * x + 1 < outW { out[oy * outW + 2 * x + 1] = odd }
                }
            }
        } else {
            for y in 0..<outH { for x in 0..<outW { out[y * outW + x] = at(y / fv, x / fh) } }
        }
        return out
    }

    static func decodeJPEG(_ b: [UInt8]) throws -> Image {
        var quant = [[Int]](repeating: [Int](repeating: 1, count: 64), count: 4)
        var dcTables = [JPEGHuffman?](repeating: nil, count: 4), acTables = [JPEGHuffman?](repeating: nil, count: 4)
        var components = [JPEGComponent]()
        var width = 0, height = 0, restartInterval = 0
        var pos = 2
        var adobeTransform = -1
        var scanned = false
        while pos + 4 <= b.count {
            guard b[pos] == 0xFF else { pos += 1; continue }
            let marker = b[pos + 1]
            if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0xFF { pos += marker == 0xFF ? 1 : 2; continue }
            if marker == 0xD9 { break }
            let length = try readUInt(b, pos + 2, 2, bigEndian: true)
            let body = pos + 4, end = pos + 2 + length
            guard end <= b.count, length >= 2 else { throw imageError("truncated JPEG segment") }
            switch marker {
            case 0xDB:
                var p = body
                while p < end {
                    let precision = Int(b[p] >> 4), id = Int(b[p] & 15)
                    guard id < 4 else { throw imageError("bad quantization table id") }
                    p += 1
                    for k in 0..<64 {
                        quant[id][zigzag[k]] = precision == 0 ? Int(b[p + k]) : try readUInt(b, p + 2 * k, 2, bigEndian: true)
                    }
                    p += precision == 0 ? 64 : 128
                }
            case 0xC4:
                var p = body
                while p < end {
                    let cls = Int(b[p] >> 4), id = Int(b[p] & 15)
                    guard id < 4, p + 17 <= end else { throw imageError("bad Huffman table") }
                    let counts = (0..<16).map { Int(b[p + 1 + $0]) }
                    let total = counts.reduce(0, +)
                    guard p + 17 + total <= end else { throw imageError("truncated Huffman table") }
                    let symbols = (0..<total).map { Int(b[p + 17 + $0]) }
                    let table = JPEGHuffman(counts: counts, symbols: symbols)
                    if cls == 0 { dcTables[id] = table } else { acTables[id] = table }
                    p += 17 + total
                }
            case 0xC0, 0xC1:
                guard b[body] == 8 else { throw imageError("only 8-bit JPEG is supported") }
                height = try readUInt(b, body + 1, 2, bigEndian: true)
                width = try readUInt(b, body + 3, 2, bigEndian: true)
                let n = Int(b[body + 5])
                for i in 0..<n {
                    let o = body + 6 + 3 * i
                    guard o + 3 <= end else { throw imageError("truncated frame header") }
                    components.append(JPEGComponent(id: Int(b[o]), h: Int(b[o + 1] >> 4), v: Int(b[o + 1] & 15), quant: Int(b[o + 2] & 3)))
                }
            case 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF:
                throw imageError("progressive, lossless and arithmetic-coded JPEG are not supported")
            case 0xDD:
                restartInterval = try readUInt(b, body, 2, bigEndian: true)
            case 0xEE:
                if length >= 12 { adobeTransform = Int(b[body + 11]) }
            case 0xDA:
                guard !scanned else { throw imageError("multi-scan JPEG is not supported") }
                guard !components.isEmpty, width > 0, height > 0 else { throw imageError("scan before frame header") }
                let n = Int(b[body])
                guard n == components.count else { throw imageError("non-interleaved JPEG scans are not supported") }
                for i in 0..<n {
                    let id = Int(b[body + 1 + 2 * i]), tables = b[body + 2 + 2 * i]
                    guard let c = components.firstIndex(where: { $0.id == id }) else { throw imageError("scan names an unknown component") }
                    components[c].dcTable = Int(tables >> 4) & 3
                    components[c].acTable = Int(tables & 15) & 3
                }
                pos = end
                try decodeScan(b, &pos, &components, width: width, height: height, quant: quant,
                               dc: dcTables, ac: acTables, restartInterval: restartInterval)
                scanned = true
                continue
            default:
                break
            }
            pos = end
        }
        guard scanned else { throw imageError("JPEG has no image data") }
        let hmax = components.map(\.h).max()!, vmax = components.map(\.v).max()!
        let planes = components.map { c -> [Int] in
            let w = (width * c.h + hmax - 1) / hmax, h = (height * c.v + vmax - 1) / vmax
            return upsample(c.plane, stride: c.planeWidth, w: w, h: h, fh: hmax / c.h, fv: vmax / c.v, outW: width, outH: height)
        }
        let count = width * height
        if components.count == 1 {
            return Image(width: width, height: height, channels: 1, pixels: planes[0].map { UInt8(clamping: $0) })
        }
        guard components.count == 3 else { throw imageError("\(components.count)-component JPEG is not supported") }
        var pixels = [UInt8](repeating: 0, count: count * 3)
        let convert = adobeTransform != 0
        for p in 0..<count {
            let y = planes[0][p], cb = planes[1][p] - 128, cr = planes[2][p] - 128
            if convert {
                // libjpeg's fixed-point YCbCr → RGB (16 fractional bits).
                let half = 1 << 15
                pixels[p * 3] = UInt8(clamping: y + ((91881 * cr + half) >> 16))
                pixels[p * 3 + 1] = UInt8(clamping: y + ((-22554 * cb + half - 46802 * cr) >> 16))
                pixels[p * 3 + 2] = UInt8(clamping: y + ((116130 * cb + half) >> 16))
            } else {
                pixels[p * 3] = UInt8(clamping: planes[0][p])
                pixels[p * 3 + 1] = UInt8(clamping: planes[1][p])
                pixels[p * 3 + 2] = UInt8(clamping: planes[2][p])
            }
        }
        return Image(width: width, height: height, channels: 3, pixels: pixels)
    }

    /// Decodes the interleaved baseline scan starting at `pos` into each component's plane.
    static func decodeScan(_ b: [UInt8], _ pos: inout Int, _ components: inout [JPEGComponent], width: Int, height: Int,
                           quant: [[Int]], dc: [JPEGHuffman?], ac: [JPEGHuffman?], restartInterval: Int) throws {
        let hmax = components.map(\.h).max()!, vmax = components.map(\.v).max()!
        let single = components.count == 1
        let mcusX = single ? (width + 7) / 8 : (width + 8 * hmax - 1) / (8 * hmax)
        let mcusY = single ? (height + 7) / 8 : (height + 8 * vmax - 1) / (8 * vmax)
        for i in components.indices {
            let c = components[i]
            let bw = single ? mcusX : mcusX * c.h, bh = single ? mcusY : mcusY * c.v
            components[i].planeWidth = bw * 8
            components[i].plane = [UInt8](repeating: 0, count: bw * 8 * bh * 8)
            components[i].prediction = 0
        }
        var bits = JPEGBits(bytes: b, pos: pos)
        var coefficients = [Int](repeating: 0, count: 64)
        var mcu = 0
        for my in 0..<mcusY {
            for mx in 0..<mcusX {
                if restartInterval > 0 && mcu > 0 && mcu % restartInterval == 0 {
                    bits.restart()
                    for i in components.indices { components[i].prediction = 0 }
                }
                mcu += 1
                for i in components.indices {
                    let c = components[i]
                    guard let dcTable = dc[c.dcTable], let acTable = ac[c.acTable] else { throw imageError("missing Huffman table") }
                    let blocksV = single ? 1 : c.v, blocksH = single ? 1 : c.h
                    for v in 0..<blocksV {
                        for h in 0..<blocksH {
                            for k in 0..<64 { coefficients[k] = 0 }
                            let s = try bits.decode(dcTable)
                            var diff = 0
                            if s > 0 {
                                diff = bits.bits(s)
                                if diff < 1 << (s - 1) { diff -= (1 << s) - 1 }
                            }
                            components[i].prediction += diff
                            let q = quant[c.quant]
                            coefficients[0] = components[i].prediction * q[0]
                            var k = 1
                            while k < 64 {
                                let rs = try bits.decode(acTable)
                                let run = rs >> 4, size = rs & 15
                                if size == 0 {
                                    if run == 15 { k += 16; continue }
                                    break
                                }
                                k += run
                                guard k < 64 else { throw imageError("bad AC run") }
                                var value = bits.bits(size)
                                if value < 1 << (size - 1) { value -= (1 << size) - 1 }
                                coefficients[zigzag[k]] = value * q[zigzag[k]]
                                k += 1
                            }
                            let by = single ? my : my * c.v + v, bx = single ? mx : mx * c.h + h
                            inverseDCT(coefficients, into: &components[i].plane, at: by * 8 * c.planeWidth + bx * 8, stride: c.planeWidth)
                        }
                    }
                }
            }
        }
        pos = bits.pos
    }
}
