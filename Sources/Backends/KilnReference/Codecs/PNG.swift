/// PNG: every colour type and bit depth, not interlaced.
extension ImageCodec {
    static func decodePNG(_ b: [UInt8]) throws -> Image {
        var pos = 8
        var width = 0, height = 0, depth = 0, colorType = 0, interlace = 0
        var palette = [UInt8]()
        var idat = [UInt8]()
        while pos + 8 <= b.count {
            let length = try readUInt(b, pos, 4, bigEndian: true)
            let type = String(decoding: b[(pos + 4)..<(pos + 8)], as: UTF8.self)
            let body = pos + 8
            guard body + length <= b.count else { throw imageError("truncated PNG chunk") }
            switch type {
            case "IHDR":
                width = try readUInt(b, body, 4, bigEndian: true)
                height = try readUInt(b, body + 4, 4, bigEndian: true)
                depth = Int(b[body + 8])
                colorType = Int(b[body + 9])
                interlace = Int(b[body + 12])
            case "PLTE": palette = Array(b[body..<(body + length)])
            case "IDAT": idat += b[body..<(body + length)]
            default: break
            }
            pos = body + length + 4
            if type == "IEND" { break }
        }
        guard interlace == 0 else { throw imageError("interlaced PNG is not supported") }
        let samplesPerPixel: Int
        switch colorType {
        case 0, 3: samplesPerPixel = 1
        case 2: samplesPerPixel = 3
        case 4: samplesPerPixel = 2
        case 6: samplesPerPixel = 4
        default: throw imageError("bad PNG color type \(colorType)")
        }
        guard [1, 2, 4, 8, 16].contains(depth) else { throw imageError("bad PNG bit depth \(depth)") }
        let raw = try inflate(idat)
        let bitsPerPixel = samplesPerPixel * depth
        let stride = (width * bitsPerPixel + 7) / 8
        let bpp = max(1, bitsPerPixel / 8)
        guard raw.count >= height * (stride + 1) else { throw imageError("truncated PNG data") }
        var data = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            for x in 0..<stride {
                let v = raw[y * (stride + 1) + 1 + x]
                let a = x >= bpp ? Int(data[y * stride + x - bpp]) : 0
                let up = y > 0 ? Int(data[(y - 1) * stride + x]) : 0
                let c = x >= bpp && y > 0 ? Int(data[(y - 1) * stride + x - bpp]) : 0
                let predicted: Int
                switch filter {
                case 0: predicted = 0
                case 1: predicted = a
                case 2: predicted = up
                case 3: predicted = (a + up) / 2
                case 4:
                    let p = a + up - c
                    let pa = abs(p - a), pb = abs(p - up), pc = abs(p - c)
                    predicted = pa <= pb && pa <= pc ? a : pb <= pc ? up : c
                default: throw imageError("bad PNG filter \(filter)")
                }
                data[y * stride + x] = v &+ UInt8(truncatingIfNeeded: predicted)
            }
        }
        /// Sample `s` of pixel `x` in row `y`, scaled to 8 bits (palette indices unscaled).
        func sample(_ y: Int, _ x: Int, _ s: Int) -> Int {
            let row = y * stride
            if depth == 8 { return Int(data[row + x * samplesPerPixel + s]) }
            if depth == 16 { return Int(data[row + (x * samplesPerPixel + s) * 2]) }
            let bit = (x * samplesPerPixel + s) * depth
            let v = Int(data[row + bit / 8] >> UInt8(8 - depth - bit % 8)) & ((1 << depth) - 1)
            return colorType == 3 ? v : v * 255 / ((1 << depth) - 1)
        }
        let channels = colorType == 0 || colorType == 4 ? 1 : 3
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        for y in 0..<height {
            for x in 0..<width {
                let o = (y * width + x) * channels
                if colorType == 3 {
                    let i = sample(y, x, 0)
                    guard 3 * i + 2 < palette.count else { throw imageError("palette index out of range") }
                    for k in 0..<3 { pixels[o + k] = palette[3 * i + k] }
                } else {
                    for k in 0..<channels { pixels[o + k] = UInt8(sample(y, x, k)) }
                }
            }
        }
        return Image(width: width, height: height, channels: channels, pixels: pixels)
    }
}
