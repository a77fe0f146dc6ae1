import KilnIR

/// The image formats ImageDecoder reads, each decoded in a file of its own (`BMP.swift`, `PNM.swift`,
/// `TIFF.swift`, `PNG.swift` with `Inflate.swift`, `JPEG.swift`) as an extension of this namespace.
enum ImageCodec {
    /// A decoded image: `height × width` pixels of `channels` (1 or 3) bytes each, row-major.
    struct Image {
        var width: Int
        var height: Int
        var channels: Int
        var pixels: [UInt8]
    }

    /// An error for a malformed or unsupported encoded image.
    static func imageError(_ message: String) -> KilnError {
        KilnError(.invalidArgument, "ImageDecoder: \(message)")
    }

    /// Reads a little-endian (or big-endian) unsigned integer of `size` bytes at `offset`.
    static func readUInt(_ b: [UInt8], _ offset: Int, _ size: Int, bigEndian: Bool = false) throws -> Int {
        guard offset >= 0, offset + size <= b.count else { throw imageError("truncated data") }
        var v = 0
        for i in 0..<size { v |= Int(b[offset + (bigEndian ? size - 1 - i : i)]) << (8 * i) }
        return v
    }

    /// Decodes `bytes`, choosing the format by its signature; nil when no codec here knows the format.
    static func decode(_ bytes: [UInt8]) throws -> Image? {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return try decodePNG(bytes) }
        if bytes.starts(with: [0x42, 0x4D]) { return try decodeBMP(bytes) }
        if bytes.count > 2, bytes[0] == 0x50, (0x31...0x36).contains(bytes[1]) { return try decodePNM(bytes) }
        if bytes.starts(with: [0x49, 0x49, 0x2A, 0x00]) || bytes.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) {
            return try decodeTIFF(bytes)
        }
        if bytes.starts(with: [0xFF, 0xD8]) { return try decodeJPEG(bytes) }
        return nil
    }
}
