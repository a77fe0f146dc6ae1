import CZstd
import KilnIR

/// zstd compression of section bytes (libzstd through `CZstd`). Every libzstd return is checked with `ZSTD_isError`.
enum Zstd {
    /// `ZSTD_CONTENTSIZE_UNKNOWN` (a macro Swift does not import).
    static let contentSizeUnknown = UInt64.max
    /// `ZSTD_CONTENTSIZE_ERROR`.
    static let contentSizeError = UInt64.max - 1

    /// `bytes` compressed as one zstd frame at `level` (the frame records the content size).
    static func compress(_ bytes: UnsafeRawBufferPointer, level: Int32 = ArtifactFormat.zstdLevel) throws -> [UInt8] {
        let bound = ZSTD_compressBound(bytes.count)
        guard ZSTD_isError(bound) == 0 else { throw KilnError(.internal, "zstd: cannot bound \(bytes.count) bytes") }
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { dst in
            ZSTD_compress(dst.baseAddress, dst.count, bytes.baseAddress, bytes.count, level)
        }
        guard ZSTD_isError(written) == 0 else {
            throw KilnError(.internal, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        out.removeSubrange(written...)
        return out
    }

    /// Checks that `bytes` (section `what`) is one zstd frame that records a content size equal to
    /// `rawLength`, before anything is allocated for it.
    static func checkFrame(_ bytes: UnsafeRawBufferPointer, rawLength: UInt64, what: String) throws {
        guard bytes.count > 0 else { throw KilnError(.invalidArtifact, "\(what): empty zstd data") }
        let frameSize = ZSTD_getFrameContentSize(bytes.baseAddress, bytes.count)
        if frameSize == contentSizeError { throw KilnError(.invalidArtifact, "\(what): not a zstd frame") }
        if frameSize == contentSizeUnknown { throw KilnError(.invalidArtifact, "\(what): zstd frame does not record its size") }
        guard frameSize == rawLength else {
            throw KilnError(.invalidArtifact, "\(what): zstd frame holds \(frameSize) bytes but the section table declares \(rawLength)")
        }
    }

    /// Decompresses `bytes` (section `what`) into `destination`, which is exactly the declared raw length;
    /// anything but exactly that many bytes is an error.
    static func decompress(_ bytes: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, what: String) throws {
        let produced = ZSTD_decompress(destination.baseAddress, destination.count, bytes.baseAddress, bytes.count)
        guard ZSTD_isError(produced) == 0 else {
            throw KilnError(.invalidArtifact, "\(what): zstd data is corrupt (\(String(cString: ZSTD_getErrorName(produced))))")
        }
        guard produced == destination.count else {
            throw KilnError(.invalidArtifact, "\(what): decompressed to \(produced) bytes but the section table declares \(destination.count)")
        }
    }
}
