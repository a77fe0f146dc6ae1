#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKilnABI
import Kiln

/// What a `kiln_error *` points to: a code and a message, owned by the C caller until `kiln_error_free`.
final class ErrorRecord {
    /// One of the `KILN_ERROR_*` numbers (`KilnError.Code.rawValue`).
    let code: Int32
    /// The message as a NUL-terminated copy, freed with the record.
    let message: UnsafeMutablePointer<CChar>

    init(code: Int32, message: String) {
        self.code = code
        self.message = strdup(message) ?? strdup("")!
    }

    deinit { free(message) }

    /// A new `kiln_error *` for `error`, retained for the caller.
    static func make(_ error: KilnError) -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(ErrorRecord(code: Int32(error.code.rawValue), message: error.message)).toOpaque())
    }
}

/// Runs `body`, turning every thrown error into a `kiln_error *` (nil on success): nothing unwinds into C.
func guarded(_ body: () throws -> Void) -> OpaquePointer? {
    do {
        try body()
        return nil
    } catch let error as KilnError {
        return ErrorRecord.make(error)
    } catch {
        return ErrorRecord.make(KilnError(.internal, "unexpected error: \(error)"))
    }
}

/// A `.invalidArgument` error for a NULL pointer passed as `parameter` to `function`.
func nullArgument(_ parameter: String, of function: String) -> KilnError {
    KilnError(.invalidArgument, "\(function): \(parameter) is NULL")
}

/// The `kiln_error_code` of `error`: its `KILN_ERROR_*` number, or `KILN_OK` (0) for NULL.
@c @implementation
public func kiln_error_code(_ error: OpaquePointer?) -> Int32 {
    guard let error else { return 0 }
    return Unmanaged<ErrorRecord>.fromOpaque(UnsafeRawPointer(error)).takeUnretainedValue().code
}

/// The message of `error`, owned by it; `""` for NULL.
@c @implementation
public func kiln_error_message(_ error: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let error else { return emptyCString }
    return UnsafePointer(Unmanaged<ErrorRecord>.fromOpaque(UnsafeRawPointer(error)).takeUnretainedValue().message)
}

/// Frees `error` (NULL is allowed).
@c @implementation
public func kiln_error_free(_ error: OpaquePointer?) {
    guard let error else { return }
    Unmanaged<ErrorRecord>.fromOpaque(UnsafeRawPointer(error)).release()
}

/// A static empty C string.
nonisolated(unsafe) let emptyCString: UnsafePointer<CChar> = UnsafePointer(strdup("")!)
