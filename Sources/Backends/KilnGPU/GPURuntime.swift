import KilnBackend
import KilnIR

/// One OpenCL device found on this machine: its handle, and what kiln.gpu reports about it.
final class CLDevice: @unchecked Sendable {
    let library: OpenCLLibrary
    let id: CLHandle
    let device: Device
    let isGPU: Bool
    let maxWorkGroupSize: Int
    private let lock = Lock()
    private var contextHandle: CLHandle?
    private var programs: [String: CLHandle] = [:]
    /// Programs built on this device so far (a repeated source and option string is built once).
    private(set) var programBuilds = 0

    init(library: OpenCLLibrary, id: CLHandle, platformName: String) {
        self.library = library
        self.id = id
        let info = { (param: UInt32) in { (size: Int, out: UnsafeMutableRawPointer?, sizeOut: UnsafeMutablePointer<Int>?) in
            library.getDeviceInfo(id, param, size, out, sizeOut) } }
        let type = OpenCLLibrary.value(UInt64.self, info(CL.deviceType))
        isGPU = type & CL.deviceTypeGPU != 0
        let kind: DeviceKind = isGPU ? .gpu : type & CL.deviceTypeCPU != 0 ? .cpu : .npu
        maxWorkGroupSize = max(1, Int(OpenCLLibrary.value(UInt.self, info(CL.deviceMaxWorkGroupSize))))
        let name = OpenCLLibrary.string(info(CL.deviceName))
        device = Device(kind: kind, name: name.isEmpty ? "OpenCL device" : name,
                        memoryBytes: kind == .gpu ? OpenCLLibrary.value(UInt64.self, info(CL.deviceGlobalMemSize)) : 0,
                        properties: ["platform": platformName,
                                     "opencl": OpenCLLibrary.string(info(CL.deviceVersion)),
                                     "compute_units": String(OpenCLLibrary.value(UInt32.self, info(CL.deviceMaxComputeUnits))),
                                     "max_work_group_size": String(maxWorkGroupSize)])
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

    /// The program built from `source` with `options` (cached: the same text is built once per device).
    func program(source: String, options: String) throws -> CLHandle {
        let key = options + "\u{0}" + source
        if let cached = lock.withLock({ programs[key] }) { return cached }
        let context = try context()
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
        return lock.withLock {
            if let cached = programs[key] { _ = library.releaseProgram(program); return cached }
            programs[key] = program
            programBuilds += 1
            return program
        }
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
            var n: UInt32 = 0
            guard library.getDeviceIDs(platform, CL.deviceTypeAll, 0, nil, &n) == CL.success, n > 0 else { continue }
            var ids = [CLHandle?](repeating: nil, count: Int(n))
            guard library.getDeviceIDs(platform, CL.deviceTypeAll, n, &ids, nil) == CL.success else { continue }
            devices += ids.compactMap { $0 }.map { CLDevice(library: library, id: $0, platformName: name) }
        }
        return OpenCLPlatforms(devices: devices, problem: devices.isEmpty ? "kiln.gpu: the OpenCL platforms of '\(path)' have no device" : nil)
    }
}
