#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// Writing a whole file so that readers see the old contents or the new, never a partial file.
public enum AtomicFile {
    /// Writes `bytes` to `path`: into a temporary file beside it, then renamed over it, so a failure never
    /// leaves a partial file and an existing file is replaced only by a complete one.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = "\(path).tmp-\(getpid())"
        guard let f = fopen(temporary, "wb") else { throw KilnError(.io, "cannot create '\(temporary)': \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        let flushed = fflush(f) == 0
        fclose(f)
        guard written == bytes.count, flushed else {
            unlink(temporary)
            throw KilnError(.io, "cannot write '\(path)'")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw KilnError(.io, "cannot move '\(temporary)' to '\(path)': \(reason)")
        }
    }
}
