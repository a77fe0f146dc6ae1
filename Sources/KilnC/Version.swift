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

/// The `kiln_abi_check` verdict for a program built against kiln.h version `header` (`(major << 16) | minor`):
/// nil when this library serves it, else the `.versionMismatch` error naming both versions.
func abiCheckError(header: UInt32) -> KilnError? {
    let major = header >> 16, minor = header & 0xFFFF
    let built = "this program was built against kiln.h ABI \(major).\(minor)"
    let loaded = "the loaded libkiln \(Kiln.version) implements ABI \(abiVersion.major).\(abiVersion.minor)"
    if major != abiVersion.major {
        return KilnError(.versionMismatch, "\(built), but \(loaded): a program needs a libkiln of the same ABI major (\(major))")
    }
    if minor > abiVersion.minor {
        return KilnError(.versionMismatch, "\(built), but \(loaded): use libkiln ABI \(major).\(minor) or newer, or rebuild the program against this kiln.h")
    }
    return nil
}

/// NULL when this library serves a program built against kiln.h ABI `header_version`, else an error
/// naming both versions (the other direction of `kiln_abi_version`: a newer header than the library).
@c @implementation
public func kiln_abi_check(_ header_version: UInt32) -> OpaquePointer? {
    abiCheckError(header: header_version).map(ErrorRecord.make)
}
