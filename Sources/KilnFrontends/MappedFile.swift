#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// A read-only file mapped into memory. Tensors borrow from it without copying; the mapping lives
/// as long as any of them.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer?
    let size: Int
    let path: String

    /// Maps `path`; a typed error if it cannot be opened or mapped.
    init(path: String) throws {
        self.path = path
        let (fd, fileSize) = try RegularFile.open(path)
        defer { close(fd) }
        size = fileSize
        if size == 0 {
            base = nil
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw KilnError(.io, "cannot map '\(path)': \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    /// The whole file.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }
}
