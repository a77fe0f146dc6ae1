#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnFormat
import KilnIR

/// Small file-system helpers over libc (Foundation stays out of the runtime path).
public enum FileSystem {
    /// The whole regular file at `path` (`RegularFile.read`).
    public static func read(_ path: String) throws -> [UInt8] {
        // A regular file only, at most RegularFile.maxBytes: a FIFO or /dev/zero would block or never end.
        try RegularFile.read(path)
    }

    /// Writes `bytes` to `path` atomically (`AtomicFile.write`): a failure never leaves a partial file.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        try AtomicFile.write(bytes, to: path)
    }

    /// The names in the folder at `path` (not `.` or `..`), sorted.
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw KilnError(.io, "cannot list '\(path)': \(String(cString: strerror(errno)))") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            // Read the name in place: copying `d_name` reads all 256 bytes, past a short record (ASan).
            let name = String(cString: UnsafeRawPointer(entry).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
                .assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Whether something exists at `path`.
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Whether `path` is a folder.
    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates the folder at `path` and its parents, if missing.
    public static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/\(part)"
            if !isDirectory(current) && mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw KilnError(.io, "cannot create folder '\(current)': \(String(cString: strerror(errno)))")
            }
        }
    }
}
