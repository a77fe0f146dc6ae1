import KilnBackend
import KilnIR

/// One OpenCL device found on this machine: its handle, and what kiln.gpu reports about it.
final class CLDevice: @unchecked Sendable {
    let library: OpenCLLibrary
    let id: CLHandle
    let device: Device
    let isGPU: Bool
    let maxWorkGroupSize: Int
    /// What a built program depends on besides its source and options: device name, vendor, driver
    /// version and platform version (the program cache's key).
    let identity: String
    /// Whether the device reports `cl_khr_fp16` (half arithmetic).
    let hasFP16: Bool
    private let lock = Lock()
    private var contextHandle: CLHandle?
    private var programs: [String: CLHandle] = [:]
    /// Programs built on this device so far (a repeated source and option string is built once).
    private(set) var programBuilds = 0

    init(library: OpenCLLibrary, id: CLHandle, platformName: String, platformVersion: String) {
        self.library = library
        self.id = id
        let info = { (param: UInt32) in { (size: Int, out: UnsafeMutableRawPointer?, sizeOut: UnsafeMutablePointer<Int>?) in
            library.getDeviceInfo(id, param, size, out, sizeOut) } }
        let type = OpenCLLibrary.value(UInt64.self, info(CL.deviceType))
        isGPU = type & CL.deviceTypeGPU != 0
        let kind: DeviceKind = isGPU ? .gpu : type & CL.deviceTypeCPU != 0 ? .cpu : .npu
        maxWorkGroupSize = max(1, Int(OpenCLLibrary.value(UInt.self, info(CL.deviceMaxWorkGroupSize))))
        let name = OpenCLLibrary.string(info(CL.deviceName))
        let extensions = OpenCLLibrary.string(info(CL.deviceExtensions)).split(separator: " ")
        hasFP16 = extensions.contains("cl_khr_fp16")
        let clean = { (text: String) in String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 }) }
        identity = ["device=" + clean(name), "vendor=" + clean(OpenCLLibrary.string(info(CL.deviceVendor))),
                    "driver=" + clean(OpenCLLibrary.string(info(CL.driverVersion))), "platform=" + clean(platformVersion)].joined(separator: "\n")
        device = Device(kind: kind, name: name.isEmpty ? "OpenCL device" : name,
                        memoryBytes: kind == .gpu ? OpenCLLibrary.value(UInt64.self, info(CL.deviceGlobalMemSize)) : 0,
                        properties: ["platform": platformName,
                                     "opencl": OpenCLLibrary.string(info(CL.deviceVersion)),
                                     "compute_units": String(OpenCLLibrary.value(UInt32.self, info(CL.deviceMaxComputeUnits))),
                                     "max_work_group_size": String(maxWorkGroupSize),
                                     "fp16": hasFP16 ? "yes" : "no"])
    }

    /// The device's context, made at first use and shared by every executable on it.
    func context() throws -> CLHandle {
        try lock.withLock {
            if let contextHandle { return contextHandle }
            var status: Int32 = 0
            var ids: [CLHandle?] = [id]
            guard let made = library.createContext(nil, 1, &ids, nil, nil, &status), status == CL.success else {
                throw KilnError(.runtime, "kiln.gpu: clCreateContext on '\(device.name)' failed with OpenCL error \(status)")
            }
            contextHandle = made
            return made
        }
    }

    /// Where a program came from.
    enum ProgramOrigin: Sendable {
        /// Built earlier in this process for this device.
        case memory
        /// Loaded from the on-disk cache.
        case disk
        /// Built from source; `rejectedEntry` when a cache entry existed but was corrupt, mismatched or
        /// did not build.
        case built(rejectedEntry: Bool)
    }

    /// The program built from `source` with `options`: from this process's programs, else from `cache`'s
    /// entry when there is a valid one that builds, else built from source (and stored in `cache`).
    func program(source: String, options: String, cache: ProgramCache?) throws -> (CLHandle, ProgramOrigin) {
        let key = options + "\u{0}" + source
        if let cached = lock.withLock({ programs[key] }) { return (cached, .memory) }
        let context = try context()
        var made: CLHandle?
        var origin = ProgramOrigin.built(rejectedEntry: false)
        if let cache {
            switch cache.read(identity: identity, source: source, options: options) {
            case .missing: break
            case .invalid: origin = .built(rejectedEntry: true)
            case .binary(let binary):
                if let program = programFromBinary(binary, context: context, options: options) {
                    made = program
                    origin = .disk
                } else {
                    origin = .built(rejectedEntry: true)
                }
            }
        }
        if made == nil {
            let program = try programFromSource(source, context: context, options: options)
            if let cache, let binary = binary(of: program) {
                cache.write(identity: identity, source: source, options: options, binary: binary)
            }
            made = program
        }
        let program = made!
        return lock.withLock {
            if let cached = programs[key] { _ = library.releaseProgram(program); return (cached, .memory) }
            programs[key] = program
            if case .built = origin { programBuilds += 1 }
            return (program, origin)
        }
    }

    /// Forgets the programs built in this process (executables keep the ones they use).
    func forgetPrograms() {
        let dropped = lock.withLock { () -> [CLHandle] in
            let all = Array(programs.values)
            programs = [:]
            return all
        }
        for program in dropped { _ = library.releaseProgram(program) }
    }

    private func programFromSource(_ source: String, context: CLHandle, options: String) throws -> CLHandle {
        var status: Int32 = 0
        let program: CLHandle? = source.withCString { text in
            var pointer: UnsafePointer<CChar>? = text
            var length = source.utf8.count
            return library.createProgramWithSource(context, 1, &pointer, &length, &status)
        }
        guard let program, status == CL.success else { throw KilnError(.runtime, "kiln.gpu: clCreateProgramWithSource failed with OpenCL error \(status)") }
        var ids: [CLHandle?] = [id]
        let built = options.withCString { library.buildProgram(program, 1, &ids, $0, nil, nil) }
        if built != CL.success {
            let log = OpenCLLibrary.string { library.getProgramBuildInfo(program, id, CL.programBuildLog, $0, $1, $2) }
            _ = library.releaseProgram(program)
            throw KilnError(.internal, "kiln.gpu: building a kernel for '\(device.name)' failed (OpenCL error \(built)): \(log.prefix(2000))")
        }
        return program
    }

    /// A program made from a cached binary and built, or nil when the driver refuses the binary.
    private func programFromBinary(_ binary: [UInt8], context: CLHandle, options: String) -> CLHandle? {
        var status: Int32 = 0, binaryStatus: Int32 = 0
        var ids: [CLHandle?] = [id]
        let program: CLHandle? = binary.withUnsafeBufferPointer { bytes in
            var pointer: UnsafePointer<UInt8>? = bytes.baseAddress
            var length = bytes.count
            return library.createProgramWithBinary(context, 1, &ids, &length, &pointer, &binaryStatus, &status)
        }
        guard let program else { return nil }
        guard status == CL.success, binaryStatus == CL.success,
              options.withCString({ library.buildProgram(program, 1, &ids, $0, nil, nil) }) == CL.success else {
            _ = library.releaseProgram(program)
            return nil
        }
        return program
    }

    /// The binary of a program built for this device alone, or nil when the driver gives none.
    private func binary(of program: CLHandle) -> [UInt8]? {
        var size = 0
        guard library.getProgramInfo(program, CL.programBinarySizes, MemoryLayout<Int>.size, &size, nil) == CL.success,
              size > 0, size <= ProgramCache.maximumEntryBytes else { return nil }
        var bytes = [UInt8](repeating: 0, count: size)
        let status = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var pointer: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            return library.getProgramInfo(program, CL.programBinaries, MemoryLayout<UnsafeMutablePointer<UInt8>?>.size, &pointer, nil)
        }
        return status == CL.success ? bytes : nil
    }
}

/// What one OpenCL library path offers: its devices, or why there are none.
struct OpenCLPlatforms: Sendable {
    /// Every device of every platform, in platform then device order.
    var devices: [CLDevice]
    /// Why there is no device (no library, no platform), when `devices` is empty.
    var problem: String?

    private static let lock = Lock()
    nonisolated(unsafe) private static var cache: [String: OpenCLPlatforms] = [:]

    /// The platforms of the library at `path`, opened and enumerated once per process.
    static func at(_ path: String) -> OpenCLPlatforms {
        lock.withLock {
            if let known = cache[path] { return known }
            let found = enumerate(path)
            cache[path] = found
            return found
        }
    }

    private static func enumerate(_ path: String) -> OpenCLPlatforms {
        let library: OpenCLLibrary
        do { library = try OpenCLLibrary(path: path) } catch let error as KilnError {
            return OpenCLPlatforms(devices: [], problem: error.message)
        } catch { return OpenCLPlatforms(devices: [], problem: "\(error)") }
        var count: UInt32 = 0
        let status = library.getPlatformIDs(0, nil, &count)
        guard status == CL.success, count > 0 else {
            return OpenCLPlatforms(devices: [], problem: "kiln.gpu: the OpenCL library '\(path)' reports no platform (status \(status)); install an ICD such as pocl-opencl-icd")
        }
        var platforms = [CLHandle?](repeating: nil, count: Int(count))
        guard library.getPlatformIDs(count, &platforms, nil) == CL.success else {
            return OpenCLPlatforms(devices: [], problem: "kiln.gpu: clGetPlatformIDs failed")
        }
        var devices: [CLDevice] = []
        for platform in platforms {
            let name = OpenCLLibrary.string { library.getPlatformInfo(platform, CL.platformName, $0, $1, $2) }
            let version = OpenCLLibrary.string { library.getPlatformInfo(platform, CL.platformVersion, $0, $1, $2) }
            var n: UInt32 = 0
            guard library.getDeviceIDs(platform, CL.deviceTypeAll, 0, nil, &n) == CL.success, n > 0 else { continue }
            var ids = [CLHandle?](repeating: nil, count: Int(n))
            guard library.getDeviceIDs(platform, CL.deviceTypeAll, n, &ids, nil) == CL.success else { continue }
            devices += ids.compactMap { $0 }.map { CLDevice(library: library, id: $0, platformName: name, platformVersion: version) }
        }
        return OpenCLPlatforms(devices: devices, problem: devices.isEmpty ? "kiln.gpu: the OpenCL platforms of '\(path)' have no device" : nil)
    }
}
