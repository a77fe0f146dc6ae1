import Kiln

/// Editing artifact bytes the way an attacker would: change a byte, then make every checksum match again,
/// so that only a signature can tell.
public enum ArtifactTampering {
    /// `bytes` with byte `index` XOR-ed with `mask` and every checksum fixed up.
    public static func flip(_ bytes: [UInt8], at index: Int, mask: UInt8 = 0x01) -> [UInt8] {
        var out = bytes
        out[index] ^= mask
        fixChecksums(&out)
        return out
    }

    /// Recomputes every section's CRC-32C and the header checksum (Documentation/ArtifactFormat.md).
    public static func fixChecksums(_ bytes: inout [UInt8]) {
        func load<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: T.self)) }
        }
        func store(_ value: UInt32, at: Int) {
            withUnsafeBytes(of: value.littleEndian) { for i in 0..<4 { bytes[at + i] = $0[i] } }
        }
        let count = Int(load(16, UInt32.self))
        let entrySize = Int(load(20, UInt32.self))
        for i in 0..<count {
            let at = 32 + i * entrySize
            let offset = Int(load(at + 8, UInt64.self))
            let length = Int(load(at + 16, UInt64.self))
            store(CRC32C.checksum(Array(bytes[offset..<(offset + length)])), at: at + 32)
        }
        let end = 32 + count * entrySize
        var crc = bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<24])) }
        withUnsafeBytes(of: UInt32(0)) { crc = CRC32C.update(crc, $0) }
        crc = bytes.withUnsafeBytes { CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: $0[28..<end])) }
        store(crc, at: 24)
    }
}
