import CKilnABI
import Kiln

/// Reading and writing the caller's versioned structs (those that start with `size_t struct_size`).
///
/// A struct from an older header is shorter: the fields it lacks read as zero, which every field
/// defines as "the default". A struct from a newer header is longer: its extra bytes must be zero
/// (a field this library does not know about must not be silently ignored).
enum VersionedStruct {
    /// The largest `struct_size` accepted (a guard against garbage).
    static let maximumSize = 4096

    /// The caller's `struct_size` at `raw`, checked to be plausible.
    static func declaredSize(_ raw: UnsafeRawPointer, _ name: String) throws -> Int {
        let declared = raw.loadUnaligned(as: Int.self)
        guard declared >= MemoryLayout<Int>.size, declared <= maximumSize else {
            throw KilnError(.invalidArgument, "\(name).struct_size is \(declared); set it to sizeof(\(name))")
        }
        return declared
    }

    /// The options the caller passed at `pointer` (nil when it passed NULL), with fields beyond its
    /// `struct_size` zero.
    static func read<T>(_ pointer: UnsafePointer<T>?, _ name: String) throws -> T? {
        guard let pointer else { return nil }
        let raw = UnsafeRawPointer(pointer)
        let declared = try declaredSize(raw, name)
        let known = MemoryLayout<T>.size
        if declared > known {
            let extra = UnsafeRawBufferPointer(start: raw + known, count: declared - known)
            if let index = extra.firstIndex(where: { $0 != 0 }) {
                throw KilnError(.invalidArgument, "\(name): byte \(known + index) is set, but this libkiln (ABI \(abiVersion.major).\(abiVersion.minor)) "
                    + "knows only the first \(known) bytes of the struct; update libkiln or leave newer fields zero")
            }
        }
        let value = UnsafeMutablePointer<T>.allocate(capacity: 1)
        defer { value.deallocate() }
        UnsafeMutableRawPointer(value).initializeMemory(as: UInt8.self, repeating: 0, count: known)
        UnsafeMutableRawPointer(value).copyMemory(from: raw, byteCount: min(declared, known))
        return value.move()
    }

    /// Writes `value` into the caller's struct at `pointer`, whose `struct_size` must cover the ABI 1.0
    /// fields (`minimumSize`); `struct_size` itself and any newer trailing fields are left as they are.
    static func write<T>(_ value: T, to pointer: UnsafeMutablePointer<T>, _ name: String, minimumSize: Int = MemoryLayout<T>.size) throws {
        let raw = UnsafeMutableRawPointer(pointer)
        let declared = try declaredSize(UnsafeRawPointer(raw), name)
        guard declared >= minimumSize else {
            throw KilnError(.invalidArgument, "\(name).struct_size is \(declared), smaller than sizeof(\(name)) in ABI 1.0 (\(minimumSize))")
        }
        let header = MemoryLayout<Int>.size
        let count = min(declared, MemoryLayout<T>.size) - header
        withUnsafeBytes(of: value) { source in
            (raw + header).copyMemory(from: source.baseAddress! + header, byteCount: count)
        }
    }
}
