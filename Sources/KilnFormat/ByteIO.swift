/// Little-endian field access for the header and section table.
extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        Swift.withUnsafeBytes(of: value.littleEndian) { src in
            for i in 0..<src.count { self[offset + i] = src[i] }
        }
    }
}

extension UnsafeRawBufferPointer {
    /// The little-endian integer at `offset`. - Precondition: the caller checked `offset + size ≤ count`.
    func loadLE<T: FixedWidthInteger>(_ offset: Int, as: T.Type = T.self) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
