/// PNM: PBM, PGM and PPM, ASCII and binary.
extension ImageCodec {
    static func decodePNM(_ b: [UInt8]) throws -> Image {
        let kind = b[1] - 0x30
        var pos = 2
        /// The next whitespace-separated decimal number of the header (comments skipped).
        func number() throws -> Int {
            while pos < b.count {
                if b[pos] == 0x23 { while pos < b.count && b[pos] != 0x0A { pos += 1 } }
                else if b[pos] == 0x20 || (0x09...0x0D).contains(b[pos]) { pos += 1 }
                else { break }
            }
            var v = 0, digits = 0
            while pos < b.count, (0x30...0x39).contains(b[pos]) {
                v = v * 10 + Int(b[pos] - 0x30)
                pos += 1
                digits += 1
            }
            guard digits > 0 else { throw imageError("bad PNM header") }
            return v
        }
        let width = try number(), height = try number()
        let maxValue = kind == 1 || kind == 4 ? 1 : try number()
        let channels = kind == 3 || kind == 6 ? 3 : 1
        let count = width * height * channels
        var samples = [Int](repeating: 0, count: count)
        if kind <= 3 {
            for i in 0..<count { samples[i] = try number() }
        } else {
            pos += 1
            if kind == 4 {
                let rowBytes = (width + 7) / 8
                for y in 0..<height {
                    for x in 0..<width {
                        let o = pos + y * rowBytes + x / 8
                        guard o < b.count else { throw imageError("truncated PNM data") }
                        samples[y * width + x] = Int(b[o] >> UInt8(7 - x % 8)) & 1
                    }
                }
            } else {
                let wide = maxValue > 255
                guard pos + count * (wide ? 2 : 1) <= b.count else { throw imageError("truncated PNM data") }
                for i in 0..<count {
                    samples[i] = wide ? Int(b[pos + 2 * i]) << 8 | Int(b[pos + 2 * i + 1]) : Int(b[pos + i])
                }
            }
        }
        let bilevel = kind == 1 || kind == 4
        let pixels = samples.map { s -> UInt8 in
            if bilevel { return s == 0 ? 255 : 0 }
            return maxValue == 255 ? UInt8(clamping: s) : UInt8(clamping: (s * 255 + maxValue / 2) / max(maxValue, 1))
        }
        return Image(width: width, height: height, channels: channels, pixels: pixels)
    }
}
