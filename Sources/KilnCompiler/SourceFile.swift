#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// What the compiler records about the model it compiled (the manifest's `source`).
public struct SourceInfo: Sendable, Hashable {
    /// `onnx`.
    public var format: String
    /// SHA-256 of the source file (empty when the model did not come from a file).
    public var sha256: [UInt8]
    /// The file's name without folders.
    public var fileName: String
    /// The file's size in bytes.
    public var byteCount: Int

    /// A description of a source model.
    public init(format: String, sha256: [UInt8] = [], fileName: String = "", byteCount: Int = 0) {
        self.format = format
        self.sha256 = sha256
        self.fileName = fileName
        self.byteCount = byteCount
    }

    /// Hashes the file at `path` (memory-mapped, so a large model is not copied) and describes it as `format`.
    public static func file(_ path: String, format: String) throws -> SourceInfo {
        let (fd, fileSize) = try RegularFile.open(path)
        defer { close(fd) }
        let size = fileSize
        let name = String(path.split(separator: "/").last ?? Substring(path))
        guard size > 0 else { return SourceInfo(format: format, sha256: SHA256.hash([]), fileName: name, byteCount: 0) }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw KilnError(.io, "cannot map '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { munmap(base, size) }
        let digest = SHA256.hash(UnsafeRawBufferPointer(start: base, count: size))
        return SourceInfo(format: format, sha256: digest, fileName: name, byteCount: size)
    }
}
