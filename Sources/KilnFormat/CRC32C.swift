import CKilnChecksum

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the artifact header and sections;
/// `CRC32C.checksum("123456789")` is 0xE3069283.
package enum CRC32C {
    /// The CRC-32C of `bytes`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        update(0, bytes)
    }

    /// The CRC-32C of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// Continues the CRC-32C `crc` (of earlier bytes) over `bytes`: `update(checksum(a), b) == checksum(a + b)`.
    /// CKilnChecksum computes it, with the CPU's CRC-32C instruction where there is one.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return kiln_crc32c(crc, base, bytes.count)
    }
}
