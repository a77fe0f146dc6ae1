#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKilnABI
import KilnBackend
import KilnIR

/// The plugin ABI versions this host speaks (`kiln_plugin.h`): a range, so that a later host can keep
/// loading plugins built for an earlier minor, and a plugin built against a later minor still loads here.
package enum PluginABI {
    /// The oldest ABI version this host loads, as (major, minor).
    public static let oldest = (major: UInt32(1), minor: UInt32(0))
    /// The newest ABI version this host speaks.
    public static let newest = (major: UInt32(KILN_PLUGIN_ABI_MAJOR), minor: UInt32(KILN_PLUGIN_ABI_MINOR))
    /// The majors this host has an entry symbol for, newest first.
    public static let majors: [UInt32] = [1]
    /// The entry symbol of ABI major `major` (`kiln_plugin_query_v1`).
    public static func entrySymbol(major: UInt32) -> String { "kiln_plugin_query_v\(major)" }
    /// `1.0 to 1.2`: the supported range, for messages.
    public static var rangeDescription: String { "\(oldest.major).\(oldest.minor) to \(newest.major).\(newest.minor)" }

    /// Whether this host speaks ABI `major.minor` (it lies in `oldest...newest`).
    public static func contains(major: UInt32, minor: UInt32) -> Bool {
        let tooOld = major < oldest.major || (major == oldest.major && minor < oldest.minor)
        let tooNew = major > newest.major || (major == newest.major && minor > newest.minor)
        return !tooOld && !tooNew
    }

    /// `sizeof(kiln_plugin_backend)` in ABI 1.0 and 1.1: up to and including `release`.
    static let backendSize10 = MemoryLayout<kiln_plugin_backend>.offset(of: \kiln_plugin_backend.release)! + MemoryLayout<UnsafeRawPointer>.size
    /// `sizeof(kiln_plugin_backend)` in ABI 1.2: up to and including `buffer_read`.
    static let backendSize12 = MemoryLayout<kiln_plugin_backend>.offset(of: \kiln_plugin_backend.option_count)!
    /// `sizeof(kiln_plugin_backend)` in ABI 1.3: up to and including `options`.
    static let backendSize13 = MemoryLayout<kiln_plugin_backend>.offset(of: \kiln_plugin_backend.profile)!
    /// `sizeof(kiln_plugin_backend)` in ABI 1.4: up to and including `profile`.
    static let backendSize14 = MemoryLayout<kiln_plugin_backend>.offset(of: \kiln_plugin_backend.min_group_size)!
}

/// An error a plugin made through `host->error_create`: the host owns it until it is turned into a
/// `KilnError` (exactly once).
final class CPluginErrorRecord {
    let code: Int32
    let message: String

    init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }
}

/// Every error pointer the host handed out and has not taken back, so that a pointer a plugin invents
/// (or returns twice) is reported instead of dereferenced.
final class CPluginErrorRegistry: @unchecked Sendable {
    static let shared = CPluginErrorRegistry()
    private var live: Set<UnsafeMutableRawPointer> = []
    private let lock = Lock()

    /// A new error pointer for `record` (retained until `take`).
    func make(_ record: CPluginErrorRecord) -> OpaquePointer {
        let pointer = Unmanaged.passRetained(record).toOpaque()
        lock.withLock { _ = live.insert(pointer) }
        return OpaquePointer(pointer)
    }

    /// The record behind `pointer`, released; nil when the host did not make it (or already took it).
    func take(_ pointer: OpaquePointer) -> CPluginErrorRecord? {
        let raw = UnsafeMutableRawPointer(pointer)
        let known = lock.withLock { live.remove(raw) != nil }
        guard known else { return nil }
        return Unmanaged<CPluginErrorRecord>.fromOpaque(raw).takeRetainedValue()
    }
}

/// Where plugins' log lines go.
package enum PluginLog {
    /// One log line from a plugin.
    public struct Entry: Sendable {
        /// `KILN_PLUGIN_LOG_*` (0 debug … 3 error).
        public var level: Int32
        /// The plugin's file.
        public var path: String
        /// The message.
        public var message: String
    }

    /// The sink for plugin log lines; by default warnings and errors go to standard error.
    public static var sink: @Sendable (Entry) -> Void {
        get { sinkBox.withLock { $0.value } }
        set { sinkBox.withLock { $0.value = newValue } }
    }

    private final class Box: @unchecked Sendable {
        var value: @Sendable (Entry) -> Void = { entry in
            guard entry.level >= 2 else { return }
            let line = "kiln: plugin \(entry.path): \(entry.level >= 3 ? "error" : "warning"): \(entry.message)\n"
            var bytes = Array(line.utf8)
            _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        }
        let lock = Lock()
        func withLock<T>(_ body: (Box) -> T) -> T { lock.withLock { body(self) } }
    }

    private static let sinkBox = Box()
}

/// The host-services table one plugin receives, and what its services need (the plugin's path for logs).
final class CPluginHostServices: @unchecked Sendable {
    /// Handed to the plugin as `host_context`.
    final class Context: @unchecked Sendable {
        let path: String
        /// Live blocks from `alloc`, so that an output pointer the plugin did not get from `alloc` is
        /// reported rather than freed.
        private var allocations: [UnsafeMutableRawPointer: Int] = [:]
        private let lock = Lock()
        init(path: String) { self.path = path }

        func allocated(_ pointer: UnsafeMutableRawPointer, size: Int) { lock.withLock { allocations[pointer] = size } }
        /// The size of `pointer` when it is a live block from `alloc` (which is then forgotten), else nil.
        func adopt(_ pointer: UnsafeMutableRawPointer) -> Int? { lock.withLock { allocations.removeValue(forKey: pointer) } }
    }

    /// The context object behind `table.host_context`.
    var hostContext: Context { context.takeUnretainedValue() }

    let table: UnsafeMutablePointer<kiln_plugin_host>
    private let context: Unmanaged<Context>
    private let version: UnsafeMutablePointer<CChar>

    init(path: String, hostVersion: String) {
        context = Unmanaged.passRetained(Context(path: path))
        version = strdup(hostVersion)
        table = .allocate(capacity: 1)
        table.initialize(to: kiln_plugin_host())
        table.pointee.struct_size = MemoryLayout<kiln_plugin_host>.size
        table.pointee.abi_min_major = PluginABI.oldest.major
        table.pointee.abi_min_minor = PluginABI.oldest.minor
        table.pointee.abi_max_major = PluginABI.newest.major
        table.pointee.abi_max_minor = PluginABI.newest.minor
        table.pointee.host_version = UnsafePointer(version)
        table.pointee.host_context = context.toOpaque()
        table.pointee.error_create = { _, code, message in
            let text = message.map { String(cString: $0) } ?? ""
            return CPluginErrorRegistry.shared.make(CPluginErrorRecord(code: code, message: text))
        }
        table.pointee.log = { context, level, message in
            guard let context else { return }
            let path = Unmanaged<Context>.fromOpaque(context).takeUnretainedValue().path
            PluginLog.sink(PluginLog.Entry(level: level, path: path, message: message.map { String(cString: $0) } ?? ""))
        }
        table.pointee.alloc = { context, size, alignment in
            let align = alignment == 0 ? 64 : alignment
            guard let context, align & (align - 1) == 0, align <= 4096 else { return nil }
            var memory: UnsafeMutableRawPointer?
            let status = posix_memalign(&memory, max(align, MemoryLayout<UnsafeRawPointer>.size), max(size, 1))
            guard status == 0, let memory else { return nil }
            Unmanaged<Context>.fromOpaque(context).takeUnretainedValue().allocated(memory, size: size)
            return memory
        }
        table.pointee.free = { context, pointer in
            guard let context, let pointer else { return }
            // A pointer that alloc did not hand out (or that was freed already) is ignored, not freed.
            if Unmanaged<Context>.fromOpaque(context).takeUnretainedValue().adopt(pointer) != nil { free(pointer) }
        }
    }

    deinit {
        table.deinitialize(count: 1)
        table.deallocate()
        free(version)
        context.release()
    }
}

/// Memory from `host->alloc` that the host adopted (an output of `execute`): freed when the last tensor
/// viewing it goes away.
final class CPluginHostMemory: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let size: Int
    /// Whether the memory came from Swift's allocate (else from posix_memalign, through host->alloc).
    private let deallocate: Bool
    init(_ pointer: UnsafeMutableRawPointer, size: Int, deallocate: Bool = false) {
        self.pointer = pointer
        self.size = size
        self.deallocate = deallocate
    }
    deinit { if deallocate { pointer.deallocate() } else { free(pointer) } }
}

/// Element types as they cross the plugin ABI: `kiln_dtype` (DLPack's DLDataType).
enum CPluginDType {
    /// The DLPack code and bits of `dtype`; nil for strings (which do not cross the ABI).
    static func cType(_ dtype: DType) -> kiln_dtype? {
        let code: Int32
        switch dtype {
        case .float16, .float32, .float64: code = Int32(KILN_DTYPE_FLOAT)
        case .bfloat16: code = Int32(KILN_DTYPE_BFLOAT)
        case .int8, .int16, .int32, .int64, .int4, .int2: code = Int32(KILN_DTYPE_INT)
        case .uint8, .uint16, .uint32, .uint64, .uint4, .uint2: code = Int32(KILN_DTYPE_UINT)
        case .bool: code = Int32(KILN_DTYPE_BOOL)
        case .complex64, .complex128: code = Int32(KILN_DTYPE_COMPLEX)
        case .float8e4m3fn: code = Int32(KILN_DTYPE_FLOAT8_E4M3FN)
        case .float8e4m3fnuz: code = Int32(KILN_DTYPE_FLOAT8_E4M3FNUZ)
        case .float8e5m2: code = Int32(KILN_DTYPE_FLOAT8_E5M2)
        case .float8e5m2fnuz: code = Int32(KILN_DTYPE_FLOAT8_E5M2FNUZ)
        case .float8e8m0: code = Int32(KILN_DTYPE_FLOAT8_E8M0FNU)
        case .float4e2m1: code = Int32(KILN_DTYPE_FLOAT4_E2M1FN)
        case .string: return nil
        }
        let bits = dtype == .bool ? 8 : dtype.packedBits
        return kiln_dtype(code: UInt8(code), bits: UInt8(bits), lanes: 1)
    }

    /// The Kiln element type of `t`, or nil.
    static func dtype(_ t: kiln_dtype) -> DType? {
        guard t.lanes == 1 else { return nil }
        return DType.allCases.first { d in cType(d).map { $0.code == t.code && $0.bits == t.bits } ?? false }
    }
}
