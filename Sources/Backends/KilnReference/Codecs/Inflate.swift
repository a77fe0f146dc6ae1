/// zlib/deflate decompression (RFC 1950/1951), for PNG.
extension ImageCodec {
    /// A bit reader over a deflate stream (least significant bit first).
    struct BitReader {
        let bytes: [UInt8]
        var pos: Int
        var bit = 0

        /// The next `n` bits as an integer.
        mutating func bits(_ n: Int) throws -> Int {
            var v = 0
            for i in 0..<n {
                guard pos < bytes.count else { throw ImageCodec.imageError("truncated compressed data") }
                v |= Int((bytes[pos] >> UInt8(bit)) & 1) << i
                bit += 1
                if bit == 8 { bit = 0; pos += 1 }
            }
            return v
        }
    }

    /// A canonical Huffman code: symbol counts per length and symbols in code order.
    struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols = [Int]()

        init(lengths: [Int]) {
            for l in lengths { counts[l] += 1 }
            counts[0] = 0
            var offsets = [Int](repeating: 0, count: 16)
            for l in 1..<16 { offsets[l] = offsets[l - 1] + counts[l - 1] }
            symbols = [Int](repeating: 0, count: lengths.count)
            for (s, l) in lengths.enumerated() where l != 0 {
                symbols[offsets[l]] = s
                offsets[l] += 1
            }
        }

        /// Decodes one symbol.
        func decode(_ r: inout BitReader) throws -> Int {
            var code = 0, first = 0, index = 0
            for l in 1..<16 {
                code |= try r.bits(1)
                let count = counts[l]
                if code - count < first { return symbols[index + (code - first)] }
                index += count
                first += count
                first <<= 1
                code <<= 1
            }
            throw ImageCodec.imageError("bad Huffman code")
        }
    }

    /// Decompresses a zlib stream (RFC 1950/1951).
    static func inflate(_ data: [UInt8]) throws -> [UInt8] {
        guard data.count >= 2, data[0] & 0x0F == 8 else { throw imageError("not a zlib stream") }
        var r = BitReader(bytes: data, pos: 2)
        var out = [UInt8]()
        let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
        let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
        let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                        4097, 6145, 8193, 12289, 16385, 24577]
        let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
        var last = 0
        repeat {
            last = try r.bits(1)
            let type = try r.bits(2)
            if type == 0 {
                if r.bit != 0 { r.bit = 0; r.pos += 1 }
                let len = try readUInt(data, r.pos, 2)
                r.pos += 4
                guard r.pos + len <= data.count else { throw imageError("truncated stored block") }
                out += data[r.pos..<(r.pos + len)]
                r.pos += len
                continue
            }
            let lit: Huffman, dist: Huffman
            if type == 1 {
                lit = Huffman(lengths: (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 })
                dist = Huffman(lengths: Array(repeating: 5, count: 30))
            } else if type == 2 {
                let hlit = try r.bits(5) + 257, hdist = try r.bits(5) + 1, hclen = try r.bits(4) + 4
                let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
                var codeLengths = [Int](repeating: 0, count: 19)
                for i in 0..<hclen { codeLengths[order[i]] = try r.bits(3) }
                let lengthCode = Huffman(lengths: codeLengths)
                var lengths = [Int]()
                while lengths.count < hlit + hdist {
                    let sym = try lengthCode.decode(&r)
                    switch sym {
                    case 0..<16: lengths.append(sym)
                    case 16:
                        guard let prev = lengths.last else { throw imageError("bad code lengths") }
                        lengths += Array(repeating: prev, count: 3 + (try r.bits(2)))
                    case 17: lengths += Array(repeating: 0, count: 3 + (try r.bits(3)))
                    default: lengths += Array(repeating: 0, count: 11 + (try r.bits(7)))
                    }
                }
                lit = Huffman(lengths: Array(lengths[0..<hlit]))
                dist = Huffman(lengths: Array(lengths[hlit..<(hlit + hdist)]))
            } else {
                throw imageError("bad deflate block type")
            }
            while true {
                let sym = try lit.decode(&r)
                if sym < 256 {
                    out.append(UInt8(sym))
                } else if sym == 256 {
                    break
                } else {
                    let li = sym - 257
                    guard li < lengthBase.count else { throw imageError("bad length code") }
                    let length = lengthBase[li] + (try r.bits(lengthExtra[li]))
                    let di = try dist.decode(&r)
                    guard di < distBase.count else { throw imageError("bad distance code") }
                    let distance = distBase[di] + (try r.bits(distExtra[di]))
                    guard distance <= out.count else { throw imageError("distance too far back") }
                    let start = out.count - distance
                    for k in 0..<length { out.append(out[start + k]) }
                }
            }
        } while last == 0
        return out
    }
}
