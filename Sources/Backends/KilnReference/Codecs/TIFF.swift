/// TIFF: uncompressed, chunky 8-bit samples in strips.
extension ImageCodec {
    static func decodeTIFF(_ b: [UInt8]) throws -> Image {
        let big = b[0] == 0x4D
        let ifd = try readUInt(b, 4, 4, bigEndian: big)
        let entries = try readUInt(b, ifd, 2, bigEndian: big)
        var tags = [Int: [Int]]()
        for i in 0..<entries {
            let e = ifd + 2 + 12 * i
            let tag = try readUInt(b, e, 2, bigEndian: big), type = try readUInt(b, e + 2, 2, bigEndian: big)
            let count = try readUInt(b, e + 4, 4, bigEndian: big)
            let size = type == 3 ? 2 : type == 4 ? 4 : 1
            let base = count * size <= 4 ? e + 8 : try readUInt(b, e + 8, 4, bigEndian: big)
            var values = [Int]()
            for k in 0..<min(count, 1 << 20) { values.append(try readUInt(b, base + k * size, size, bigEndian: big)) }
            tags[tag] = values
        }
        guard let width = tags[256]?.first, let height = tags[257]?.first, let offsets = tags[273] else {
            throw imageError("TIFF lacks size or strips")
        }
        guard (tags[259]?.first ?? 1) == 1 else { throw imageError("compressed TIFF is not supported") }
        guard (tags[284]?.first ?? 1) == 1 else { throw imageError("planar TIFF is not supported") }
        let spp = tags[277]?.first ?? 1
        guard (tags[258] ?? [8]).allSatisfy({ $0 == 8 }) else { throw imageError("only 8-bit TIFF samples are supported") }
        let photometric = tags[262]?.first ?? 1
        let counts = tags[279] ?? []
        var data = [UInt8]()
        for (i, o) in offsets.enumerated() {
            let n = i < counts.count ? counts[i] : width * height * spp - data.count
            guard o + n <= b.count else { throw imageError("truncated TIFF strip") }
            data += b[o..<(o + n)]
        }
        guard data.count >= width * height * spp else { throw imageError("truncated TIFF data") }
        let channels = spp >= 3 ? 3 : 1
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        for p in 0..<(width * height) {
            for k in 0..<channels {
                var v = data[p * spp + k]
                if channels == 1 && photometric == 0 { v = 255 - v }
                pixels[p * channels + k] = v
            }
        }
        return Image(width: width, height: height, channels: channels, pixels: pixels)
    }
}
