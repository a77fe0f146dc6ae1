#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnBackend
import KilnIR

// The OpenCL 1.2 entry points kiln.gpu calls, resolved with dlsym from a library opened at run time, so that
// libkiln links no OpenCL library and runs on machines without one. Handles are opaque pointers; the
// integer types follow the OpenCL headers' definitions (cl_int = Int32, cl_uint = UInt32, bitfields and
// cl_device_type = UInt64, size_t = Int).

typealias CLHandle = OpaquePointer

typealias FnGetPlatformIDs = @convention(c) (UInt32, UnsafeMutablePointer<CLHandle?>?, UnsafeMutablePointer<UInt32>?) -> Int32
typealias FnGetPlatformInfo = @convention(c) (CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
typealias FnGetDeviceIDs = @convention(c) (CLHandle?, UInt64, UInt32, UnsafeMutablePointer<CLHandle?>?, UnsafeMutablePointer<UInt32>?) -> Int32
typealias FnGetDeviceInfo = @convention(c) (CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
typealias FnCreateContext = @convention(c) (UnsafePointer<Int>?, UInt32, UnsafePointer<CLHandle?>?, UnsafeRawPointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> CLHandle?
typealias FnCreateCommandQueue = @convention(c) (CLHandle?, CLHandle?, UInt64, UnsafeMutablePointer<Int32>?) -> CLHandle?
typealias FnCreateProgramWithSource = @convention(c) (CLHandle?, UInt32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int>?, UnsafeMutablePointer<Int32>?) -> CLHandle?
typealias FnBuildProgram = @convention(c) (CLHandle?, UInt32, UnsafePointer<CLHandle?>?, UnsafePointer<CChar>?, UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32
typealias FnGetProgramBuildInfo = @convention(c) (CLHandle?, CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
typealias FnCreateKernel = @convention(c) (CLHandle?, UnsafePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> CLHandle?
typealias FnSetKernelArg = @convention(c) (CLHandle?, UInt32, Int, UnsafeRawPointer?) -> Int32
typealias FnCreateBuffer = @convention(c) (CLHandle?, UInt64, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> CLHandle?
typealias FnEnqueueWriteBuffer = @convention(c) (CLHandle?, CLHandle?, UInt32, Int, Int, UnsafeRawPointer?, UInt32, UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32
typealias FnEnqueueReadBuffer = @convention(c) (CLHandle?, CLHandle?, UInt32, Int, Int, UnsafeMutableRawPointer?, UInt32, UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32
typealias FnEnqueueNDRangeKernel = @convention(c) (CLHandle?, CLHandle?, UInt32, UnsafePointer<Int>?, UnsafePointer<Int>?, UnsafePointer<Int>?, UInt32, UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32
typealias FnHandle = @convention(c) (CLHandle?) -> Int32
typealias FnGetProgramInfo = @convention(c) (CLHandle?, UInt32, Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32
typealias FnCreateProgramWithBinary = @convention(c) (CLHandle?, UInt32, UnsafePointer<CLHandle?>?, UnsafePointer<Int>?, UnsafePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?) -> CLHandle?

/// OpenCL constants kiln.gpu uses (values from the OpenCL 1.2 specification).
enum CL {
    static let success: Int32 = 0
    static let deviceNotFound: Int32 = -1
    static let platformNotFoundKHR: Int32 = -1001
    static let deviceTypeCPU: UInt64 = 1 << 1
    static let deviceTypeGPU: UInt64 = 1 << 2
    static let deviceTypeAccelerator: UInt64 = 1 << 3
    static let deviceTypeAll: UInt64 = 0xFFFF_FFFF
    static let platformName: UInt32 = 0x0902
    static let platformVersion: UInt32 = 0x0901
    static let deviceType: UInt32 = 0x1000
    static let deviceMaxComputeUnits: UInt32 = 0x1002
    static let deviceMaxWorkGroupSize: UInt32 = 0x1004
    static let deviceGlobalMemSize: UInt32 = 0x101F
    static let deviceLocalMemSize: UInt32 = 0x1023
    static let deviceName: UInt32 = 0x102B
    static let deviceVersion: UInt32 = 0x102F
    static let programBuildLog: UInt32 = 0x1183
    static let programBinarySizes: UInt32 = 0x1165
    static let programBinaries: UInt32 = 0x1166
    static let deviceVendor: UInt32 = 0x102C
    static let driverVersion: UInt32 = 0x102D
    static let deviceExtensions: UInt32 = 0x1030
    static let memReadWrite: UInt64 = 1 << 0
}

/// The OpenCL library opened with dlopen and the entry points kiln.gpu calls. Opened once per path per
/// process and never closed (OpenCL drivers do not support being unloaded while their objects live).
final class OpenCLLibrary: @unchecked Sendable {
    let path: String
    let getPlatformIDs: FnGetPlatformIDs
    let getPlatformInfo: FnGetPlatformInfo
    let getDeviceIDs: FnGetDeviceIDs
    let getDeviceInfo: FnGetDeviceInfo
    let createContext: FnCreateContext
    let createCommandQueue: FnCreateCommandQueue
    let createProgramWithSource: FnCreateProgramWithSource
    let buildProgram: FnBuildProgram
    let getProgramBuildInfo: FnGetProgramBuildInfo
    let createKernel: FnCreateKernel
    let setKernelArg: FnSetKernelArg
    let createBuffer: FnCreateBuffer
    let enqueueWriteBuffer: FnEnqueueWriteBuffer
    let enqueueReadBuffer: FnEnqueueReadBuffer
    let enqueueNDRangeKernel: FnEnqueueNDRangeKernel
    let finish: FnHandle
    let releaseMemObject: FnHandle
    let releaseKernel: FnHandle
    let releaseProgram: FnHandle
    let releaseCommandQueue: FnHandle
    let releaseContext: FnHandle
    let getProgramInfo: FnGetProgramInfo
    let createProgramWithBinary: FnCreateProgramWithBinary

    /// Opens `path` and resolves every entry point; throws `.unsupported` saying what is missing.
    init(path: String) throws {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw KilnError(.unsupported, "kiln.gpu: cannot open the OpenCL library '\(path)': \(reason)")
        }
        func symbol<F>(_ name: String, _ type: F.Type) throws -> F {
            guard let address = dlsym(handle, name) else {
                throw KilnError(.unsupported, "kiln.gpu: the OpenCL library '\(path)' has no \(name)")
            }
            return unsafeBitCast(address, to: type)
        }
        self.path = path
        getPlatformIDs = try symbol("clGetPlatformIDs", FnGetPlatformIDs.self)
        getPlatformInfo = try symbol("clGetPlatformInfo", FnGetPlatformInfo.self)
        getDeviceIDs = try symbol("clGetDeviceIDs", FnGetDeviceIDs.self)
        getDeviceInfo = try symbol("clGetDeviceInfo", FnGetDeviceInfo.self)
        createContext = try symbol("clCreateContext", FnCreateContext.self)
        createCommandQueue = try symbol("clCreateCommandQueue", FnCreateCommandQueue.self)
        createProgramWithSource = try symbol("clCreateProgramWithSource", FnCreateProgramWithSource.self)
        buildProgram = try symbol("clBuildProgram", FnBuildProgram.self)
        getProgramBuildInfo = try symbol("clGetProgramBuildInfo", FnGetProgramBuildInfo.self)
        createKernel = try symbol("clCreateKernel", FnCreateKernel.self)
        setKernelArg = try symbol("clSetKernelArg", FnSetKernelArg.self)
        createBuffer = try symbol("clCreateBuffer", FnCreateBuffer.self)
        enqueueWriteBuffer = try symbol("clEnqueueWriteBuffer", FnEnqueueWriteBuffer.self)
        enqueueReadBuffer = try symbol("clEnqueueReadBuffer", FnEnqueueReadBuffer.self)
        enqueueNDRangeKernel = try symbol("clEnqueueNDRangeKernel", FnEnqueueNDRangeKernel.self)
        finish = try symbol("clFinish", FnHandle.self)
        releaseMemObject = try symbol("clReleaseMemObject", FnHandle.self)
        releaseKernel = try symbol("clReleaseKernel", FnHandle.self)
        releaseProgram = try symbol("clReleaseProgram", FnHandle.self)
        releaseCommandQueue = try symbol("clReleaseCommandQueue", FnHandle.self)
        releaseContext = try symbol("clReleaseContext", FnHandle.self)
        getProgramInfo = try symbol("clGetProgramInfo", FnGetProgramInfo.self)
        createProgramWithBinary = try symbol("clCreateProgramWithBinary", FnCreateProgramWithBinary.self)
    }

    /// Throws `.runtime` naming `what` when `status` is not CL_SUCCESS.
    static func check(_ status: Int32, _ what: String) throws {
        if status != CL.success { throw KilnError(.runtime, "kiln.gpu: \(what) failed with OpenCL error \(status)") }
    }

    /// A string-valued info query (`clGetDeviceInfo`/`clGetPlatformInfo` shaped).
    static func string(_ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32) -> String {
        var size = 0
        guard query(0, nil, &size) == CL.success, size > 0 else { return "" }
        var bytes = [UInt8](repeating: 0, count: size)
        guard bytes.withUnsafeMutableBytes({ query(size, $0.baseAddress, nil) }) == CL.success else { return "" }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// A fixed-size info value.
    static func value<T: FixedWidthInteger>(_ type: T.Type, _ query: (Int, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?) -> Int32) -> T {
        var v: T = 0
        let status = withUnsafeMutableBytes(of: &v) { query(MemoryLayout<T>.size, $0.baseAddress, nil) }
        return status == CL.success ? v : 0
    }
}
