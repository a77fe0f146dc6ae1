#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Built OpenCL programs kept on disk, so that the second load of a model does not compile its kernels
/// again. One file per (device identity, build options, source): its name is a hash of the three, and its
/// content repeats all three in full, so that a hash collision, another device or driver, or a file that was
/// cut short or flipped is noticed (the content ends with a checksum) and the program is built from source
/// instead. Writes go to a temporary file renamed into place, so a reader never sees half an entry.
struct ProgramCache: Sendable {
    /// The directory holding the entries.
    let directory: String

    /// What reading an entry found.
    enum Lookup {
        /// No entry for this key.
        case missing
        /// An entry exists but is corrupt or belongs to another device, driver, source or option string.
        case invalid
        /// The binary stored for exactly this key.
        case binary([UInt8])
    }

    private static let magic = "kiln.gpu program cache 1\n"
    /// Entries larger than this are not read (a binary of a few kernels is kilobytes to a few megabytes).
    static let maximumEntryBytes = 256 << 20

    /// The default directory: `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `$HOME/.cache/kiln`, each
    /// followed by `/opencl`; nil when `KILN_GPU_PROGRAM_CACHE` is `off` (or `0`) or no base is known.
    static func defaultDirectory() -> String? {
        func env(_ name: String) -> String? {
            guard let value = getenv(name) else { return nil }
            let text = String(cString: value)
            return text.isEmpty ? nil : text
        }
        if let setting = env("KILN_GPU_PROGRAM_CACHE"), ["off", "0", "no", "false"].contains(setting.lowercased()) { return nil }
        if let base = env("KILN_CACHE_DIR") { return base + "/opencl" }
        if let base = env("XDG_CACHE_HOME") { return base + "/kiln/opencl" }
        if let home = env("HOME") { return home + "/.cache/kiln/opencl" }
        return nil
    }

    /// FNV-1a, 64 bits, over `bytes` continuing from `hash`.
    static func fnv1a<S: Sequence>(_ bytes: S, _ hash: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where S.Element == UInt8 {
        var h = hash
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    private static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// The fields an entry stores before its binary.
    private static func fields(identity: String, source: String, options: String) -> [[UInt8]] {
        [Array(identity.utf8), Array(options.utf8), Array(source.utf8)]
    }

    /// The path of the entry for this key.
    func path(identity: String, source: String, options: String) -> String {
        var h = Self.fnv1a(identity.utf8)
        h = Self.fnv1a([0], h)
        h = Self.fnv1a(options.utf8, h)
        h = Self.fnv1a([0], h)
        h = Self.fnv1a(source.utf8, h)
        return directory + "/" + Self.hex(h) + ".clbin"
    }

    /// The entry's bytes: magic, then each field as `<decimal length>\n<bytes>`, the binary last, then
    /// `fnv=<16 hex digits>\n` over everything before it.
    static func encode(identity: String, source: String, options: String, binary: [UInt8]) -> [UInt8] {
        var bytes = Array(magic.utf8)
        for field in fields(identity: identity, source: source, options: options) + [binary] {
            bytes += Array("\(field.count)\n".utf8) + field
        }
        bytes += Array("fnv=\(hex(fnv1a(bytes)))\n".utf8)
        return bytes
    }

    /// The binary `bytes` stores for exactly this key, or nil when they are malformed, fail their checksum,
    /// or were written for another key.
    static func decode(_ bytes: [UInt8], identity: String, source: String, options: String) -> [UInt8]? {
        let magicBytes = Array(magic.utf8)
        let trailer = 4 + 16 + 1
        guard bytes.count >= magicBytes.count + trailer, Array(bytes.prefix(magicBytes.count)) == magicBytes else { return nil }
        let body = bytes.count - trailer
        guard Array(bytes[body..<(body + 4)]) == Array("fnv=".utf8), bytes[bytes.count - 1] == 10,
              UInt64(String(decoding: bytes[(body + 4)..<(bytes.count - 1)], as: UTF8.self), radix: 16) == fnv1a(bytes[..<body]) else { return nil }
        var at = magicBytes.count
        var read: [[UInt8]] = []
        for _ in 0..<4 {
            guard let newline = bytes[at..<body].firstIndex(of: 10), newline > at, newline - at <= 12,
                  let length = Int(String(decoding: bytes[at..<newline], as: UTF8.self)), length >= 0,
                  length <= body - (newline + 1) else { return nil }
            read.append(Array(bytes[(newline + 1)..<(newline + 1 + length)]))
            at = newline + 1 + length
        }
        guard at == body, Array(read.prefix(3)) == fields(identity: identity, source: source, options: options), !read[3].isEmpty else { return nil }
        return read[3]
    }

    /// Reads the entry for this key.
    func read(identity: String, source: String, options: String) -> Lookup {
        let path = path(identity: identity, source: source, options: options)
        guard let file = fopen(path, "rb") else { return .missing }
        defer { fclose(file) }
        guard fseek(file, 0, SEEK_END) == 0 else { return .invalid }
        let size = ftell(file)
        guard size > 0, size <= Self.maximumEntryBytes, fseek(file, 0, SEEK_SET) == 0 else { return .invalid }
        var bytes = [UInt8](repeating: 0, count: size)
        let got = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, size, file) }
        guard got == size else { return .invalid }
        return Self.decode(bytes, identity: identity, source: source, options: options).map { .binary($0) } ?? .invalid
    }

    /// Stores `binary` for this key (best effort: a cache that cannot be written is no error). Writes a
    /// temporary file in the same directory and renames it over the entry.
    func write(identity: String, source: String, options: String, binary: [UInt8]) {
        guard !binary.isEmpty, Self.makeDirectories(directory) else { return }
        let path = path(identity: identity, source: source, options: options)
        let temporary = path + ".tmp.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        guard let file = fopen(temporary, "wb") else { return }
        let bytes = Self.encode(identity: identity, source: source, options: options, binary: binary)
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        let closed = fclose(file) == 0
        if written != bytes.count || !closed || rename(temporary, path) != 0 { unlink(temporary) }
    }

    /// `mkdir -p`: true when `path` is a directory afterwards.
    static func makeDirectories(_ path: String) -> Bool {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return false }
        }
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}
