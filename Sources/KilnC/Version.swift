#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKilnABI
import Kiln

/// `Kiln.version` as a C string that lives for the whole process.
nonisolated(unsafe) let versionCString: UnsafePointer<CChar> = UnsafePointer(strdup(Kiln.version)!)

/// The ABI version this library implements (`KILN_ABI_VERSION_MAJOR/MINOR` of the kiln.h it was built with).
let abiVersion: (major: UInt32, minor: UInt32) = (UInt32(KILN_ABI_VERSION_MAJOR), UInt32(KILN_ABI_VERSION_MINOR))

/// Kiln's release version (static storage).
@c @implementation
public func kiln_version() -> UnsafePointer<CChar>? {
    versionCString
}

/// The library's ABI version as `(major << 16) | minor`.
@c @implementation
public func kiln_abi_version() -> UInt32 {
    abiVersion.major << 16 | abiVersion.minor
}
