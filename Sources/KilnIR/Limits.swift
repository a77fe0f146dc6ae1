#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one checked size computation: element and byte counts of shapes taken from untrusted places (model
/// files, artifacts, bound inputs, command lines), multiplied with overflow detection and a cap.
public enum ElementCount {
    /// The largest tensor, in bytes, any shape may describe: 2^40 (1 TiB), far above any real model and far
    /// below where `Int` arithmetic on byte offsets could overflow.
    public static let maxBytes = 1 << 40

    /// The number of elements of `shape` — a typed `.invalidModel` error (naming `what`) when a dim is
    /// negative, the product overflows, or the tensor would exceed `maxBytes` (with `dtype`'s width, 1 byte
    /// per element when it has none, e.g. strings). `what` is built only for an error.
    public static func of(_ shape: [Int], dtype: DType? = nil, what: @autoclosure () -> String, code: KilnError.Code = .invalidModel) throws -> Int {
        // The product of the nonzero dims is checked even when another dim is 0: kernels multiply parts of a
        // shape (the dims before an axis, say), and [0, 2^40, 2^40] must not overflow there either.
        var count = 1
        var empty = false
        for d in shape {
            guard d >= 0 else { throw KilnError(code, "\(what()) has a negative dim \(d) (shape \(shape))") }
            if d == 0 { empty = true; continue }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw KilnError(code, "\(what()) has dims \(shape) whose product is too large (it overflows)") }
            count = p
        }
        let width = dtype?.byteWidth ?? 1
        let (bytes, overflow) = count.multipliedReportingOverflow(by: max(width, 1))
        guard !overflow, bytes <= maxBytes else {
            throw KilnError(code, "\(what()) has dims \(shape) whose product is too large (more than the \(maxBytes >> 30) GiB cap for one tensor)")
        }
        return empty ? 0 : count
    }

    /// Checks a declared type's fixed dims with `of` (symbolic and unknown dims are left out), so that a type
    /// no tensor can have is refused where it is read rather than overflowing in the code that plans for it.
    public static func checkDeclared(_ dims: [Dim], dtype: DType, what: String, code: KilnError.Code = .invalidModel) throws {
        _ = try of(dims.compactMap(\.value), dtype: dtype, what: what, code: code)
    }

    /// `a * b`, or a typed error naming `what` when it overflows or is negative.
    public static func product(_ a: Int, _ b: Int, what: String, code: KilnError.Code = .invalidModel) throws -> Int {
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow, a >= 0, b >= 0 else { throw KilnError(code, "\(what): \(a) × \(b) is out of range") }
        return p
    }

    /// `a + b`, or a typed error naming `what` when it overflows or is negative.
    public static func sum(_ a: Int, _ b: Int, what: String, code: KilnError.Code = .invalidModel) throws -> Int {
        let (s, overflow) = a.addingReportingOverflow(b)
        guard !overflow, a >= 0, b >= 0 else { throw KilnError(code, "\(what): \(a) + \(b) is out of range") }
        return s
    }

    /// `f` as an `Int` when it is integral and representable; nil for NaN, infinities, fractions and
    /// magnitudes of 2^63 or more (where `Int(f)` would trap).
    public static func exactInt<F: BinaryFloatingPoint>(_ f: F) -> Int? { Int(exactly: f) }
}

/// Opening files Kiln reads (models, external data, `.npy` inputs, artifacts, plugins) so that a FIFO, a
/// device or an endless file can neither block nor exhaust memory: opened with `O_NONBLOCK` (a FIFO does not
/// block the open), checked with `fstat` to be a regular file, and refused above a size cap.
public enum RegularFile {
    /// The cap on a model, artifact or `.npy` file: 4 GiB (external data files have the same cap each).
    public static let maxBytes = 4 << 30

    /// An open, read-only descriptor of the regular file at `path` and its size; the caller closes it.
    public static func open(_ path: String, limit: Int = maxBytes) throws -> (fd: Int32, size: Int) {
        guard !path.isEmpty else { throw KilnError(.io, "cannot open a file with an empty path") }
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw KilnError(.io, "cannot open '\(path)': \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw KilnError(.io, "cannot stat '\(path)': \(reason)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw KilnError(.io, "'\(path)' is not a regular file (a folder, device, FIFO or socket cannot be read)")
        }
        let size = Int(info.st_size)
        guard size <= limit else {
            close(fd)
            throw KilnError(.io, "'\(path)' is \(size) bytes, more than the \(limit) byte cap")
        }
        // Reads block normally again (a regular file never blocks anyway).
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, size)
    }

    /// Throws unless `path` is a regular file (for paths handed to something else to open, like `dlopen`).
    public static func check(_ path: String, limit: Int = maxBytes) throws {
        let (fd, _) = try open(path, limit: limit)
        close(fd)
    }

    /// The whole regular file at `path` (at most `limit` bytes and its size when opened).
    public static func read(_ path: String, limit: Int = maxBytes) throws -> [UInt8] {
        let (fd, size) = try open(path, limit: limit)
        defer { close(fd) }
        var result = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = result.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw KilnError(.io, "cannot read '\(path)': \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            done += n
        }
        if done < size { result.removeLast(size - done) }
        return result
    }
}

/// Memory for large buffers whose size comes from a model (an executable's arena, a decompressed section):
/// allocation failure is a typed error here, where Swift's `UnsafeMutableRawPointer.allocate` would end the
/// process. Free it with `AlignedMemory.free`.
public enum AlignedMemory {
    /// `byteCount` bytes (at least `alignment`) aligned to `alignment`, uninitialized; a `code` error naming
    /// `what` and the size when the system cannot provide them (an address-space limit, overcommit refused).
    ///
    /// Buffers of `hugePageThreshold` bytes and more are aligned to 2 MiB and, on Linux, offered to the kernel
    /// for transparent huge pages (`madvise(MADV_HUGEPAGE)`): filling one then takes a page fault per 2 MiB
    /// instead of per 4 KiB. Reading a 90 MB artifact into fresh memory spent most of its time in those faults.
    public static func allocate(byteCount: Int, alignment: Int = 64, what: @autoclosure () -> String,
                                code: KilnError.Code = .runtime) throws -> UnsafeMutableRawPointer {
        var memory: UnsafeMutableRawPointer?
        let huge = byteCount >= hugePageThreshold
        let aligned = huge ? max(alignment, hugePageSize) : alignment
        guard byteCount >= 0, posix_memalign(&memory, aligned, max(byteCount, aligned)) == 0, let memory else {
            let mib = (Double(byteCount) / 1_048_576 * 10).rounded() / 10
            throw KilnError(code, "cannot allocate \(byteCount) bytes (\(mib) MiB) for \(what())")
        }
        #if os(Linux)
        // Advice only: where huge pages are off or unavailable the kernel ignores it.
        if huge { _ = madvise(memory, byteCount / hugePageSize * hugePageSize, MADV_HUGEPAGE) }
        #endif
        return memory
    }

    /// The size from which `allocate` asks for huge pages (4 MiB).
    public static let hugePageThreshold = 4 << 20
    /// x86-64's and AArch64's (4 KiB granule) transparent huge page size.
    static let hugePageSize = 2 << 20

    /// Releases memory from `allocate`.
    public static func free(_ memory: UnsafeMutableRawPointer) {
        #if canImport(Glibc)
        Glibc.free(memory)
        #else
        Darwin.free(memory)
        #endif
    }
}
