#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// Writing a whole file so that readers see the old contents or the new, never a partial file.
///
/// Every file Kiln writes (artifacts, `.npy` outputs, traces, the C ABI's `kiln_compile_file`) goes through
/// `AtomicFile.write`, which:
/// - refuses an empty path, a path ending in `/`, and a destination that exists and is not a regular file
///   (a folder, a device such as `/dev/null`, a FIFO, a socket) — `.io` errors, nothing written;
/// - refuses a destination that is a symbolic link: it neither writes through the link nor replaces it,
///   so a planted link can never redirect a write (`.io` error naming the link);
/// - writes into a fresh temporary file in the destination's folder whose name carries random bytes,
///   created with `O_CREAT | O_EXCL | O_NOFOLLOW` (mode 0644 minus the umask), so a file or link planted
///   at a guessed name makes the creation fail instead of being written through;
/// - `fsync`s it and renames it over the destination (atomic within one file system); on any failure the
///   temporary file is removed.
public enum AtomicFile {
    /// Writes `bytes` to `path` atomically (see the type's rules).
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try checkDestination(path)
        let (fd, temporary) = try createTemporary(beside: path)
        var failure: String?
        bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                done += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0, failure == nil { failure = String(cString: strerror(errno)) }
        if failure == nil {
            // The destination may have changed since it was checked: check again just before the rename.
            // (rename never follows a link at the destination; it replaces the name itself.)
            do { try checkDestination(path) } catch {
                unlink(temporary)
                throw error
            }
            if rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        }
        if let failure {
            unlink(temporary)
            throw KilnError(.io, "cannot write '\(path)': \(failure)")
        }
    }

    /// Throws unless `path` names a file that may be created or replaced: not empty, not ending in `/`,
    /// and either absent or a regular file (not a link, folder, device, FIFO or socket).
    public static func checkDestination(_ path: String) throws {
        guard !path.isEmpty else { throw KilnError(.io, "cannot write a file with an empty path") }
        guard !path.hasSuffix("/") else { throw KilnError(.io, "cannot write '\(path)': the path ends in '/' (a folder, not a file)") }
        var info = stat()
        if lstat(path, &info) != 0 {
            guard errno == ENOENT else { throw KilnError(.io, "cannot write '\(path)': \(String(cString: strerror(errno)))") }
            return
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFLNK: throw KilnError(.io, "cannot write '\(path)': it is a symbolic link (Kiln never writes through or replaces a link)")
        case S_IFDIR: throw KilnError(.io, "cannot write '\(path)': it is a folder")
        default: throw KilnError(.io, "cannot write '\(path)': it is not a regular file (a device, FIFO or socket)")
        }
    }

    /// Creates a new, empty temporary file with an unpredictable name in `path`'s folder.
    static func createTemporary(beside path: String) throws -> (Int32, String) {
        var lastError: Int32 = 0
        for _ in 0..<16 {
            var random = SystemRandomNumberGenerator()
            let suffix = String(random.next() as UInt64, radix: 36)
            let temporary = "\(path).tmp-\(suffix)"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            if fd >= 0 { return (fd, temporary) }
            lastError = errno
            guard lastError == EEXIST || lastError == ELOOP else { break }
        }
        throw KilnError(.io, "cannot create a temporary file beside '\(path)': \(String(cString: strerror(lastError)))")
    }
}
