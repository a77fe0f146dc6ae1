/// BMP: uncompressed 1-, 4-, 8-, 24- and 32-bit images (palettes included).
extension ImageCodec {
    static func decodeBMP(_ b: [UInt8]) throws -> Image {
        let dataOffset = try readUInt(b, 10, 4)
        let headerSize = try readUInt(b, 14, 4)
        guard headerSize >= 40 else { throw imageError("unsupported BMP header") }
        let width = try readUInt(b, 18, 4)
        var height = Int(Int32(truncatingIfNeeded: try readUInt(b, 22, 4)))
        let bpp = try readUInt(b, 28, 2)
        let compression = try readUInt(b, 30, 4)
        guard compression == 0 || compression == 3 && bpp == 32 else { throw imageError("compressed BMP is not supported") }
        let topDown = height < 0
        height = abs(height)
        var palette = [[UInt8]]()
        if bpp <= 8 {
            let colors = try readUInt(b, 46, 4)
            let n = colors == 0 ? 1 << bpp : colors
            for i in 0..<n {
                let o = 14 + headerSize + 4 * i
                guard o + 3 <= b.count else { throw imageError("truncated palette") }
                palette.append([b[o + 2], b[o + 1], b[o]])
            }
        }
        guard [1, 4, 8, 24, 32].contains(bpp) else { throw imageError("\(bpp)-bit BMP is not supported") }
        let rowSize = (width * bpp + 31) / 32 * 4
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            let row = dataOffset + (topDown ? y : height - 1 - y) * rowSize
            guard row + rowSize <= b.count else { throw imageError("truncated pixel data") }
            for x in 0..<width {
                let o = (y * width + x) * 3
                if bpp >= 24 {
                    let p = row + x * bpp / 8
                    pixels[o] = b[p + 2]
                    pixels[o + 1] = b[p + 1]
                    pixels[o + 2] = b[p]
                } else {
                    let bit = x * bpp
                    let index = Int(b[row + bit / 8] >> UInt8(8 - bpp - bit % 8)) & ((1 << bpp) - 1)
                    guard index < palette.count else { throw imageError("palette index out of range") }
                    pixels[o] = palette[index][0]
                    pixels[o + 1] = palette[index][1]
                    pixels[o + 2] = palette[index][2]
                }
            }
        }
        return Image(width: width, height: height, channels: 3, pixels: pixels)
    }
}
