#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKilnABI
import Kiln

/// NUL-terminated copies of strings, owned by a handle and freed with it: what the C caller receives as
/// `const char *` "owned by the model/context/outputs".
final class CStringPool {
    private var pointers: [UnsafeMutablePointer<CChar>] = []

    /// A C copy of `string`, valid for as long as this pool lives.
    func add(_ string: String) -> UnsafePointer<CChar> {
        let pointer = strdup(string)!
        pointers.append(pointer)
        return UnsafePointer(pointer)
    }

    deinit { for p in pointers { free(p) } }
}

/// A C array allocated for a handle and freed with it.
final class CArray<Element> {
    /// The first element (never NULL; a 1-element allocation backs an empty array).
    let base: UnsafeMutablePointer<Element>
    /// The number of elements.
    let count: Int

    init(_ elements: [Element]) {
        base = .allocate(capacity: max(elements.count, 1))
        base.initialize(from: elements, count: elements.count)
        count = elements.count
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }
}

/// Converts between handle objects and the opaque pointers C holds.
enum Handle {
    /// A new opaque pointer that owns a reference to `object`.
    static func retain(_ object: AnyObject) -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(object).toOpaque())
    }

    /// The object behind `pointer`, which must be a live handle of type `T`. `parameter` and `function`
    /// name it in the error for NULL or a handle of another kind.
    static func resolve<T: AnyObject>(_ pointer: OpaquePointer?, _ parameter: String, of function: String, as: T.Type = T.self) throws -> T {
        guard let pointer else { throw nullArgument(parameter, of: function) }
        let object = Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
        guard let typed = object as? T else {
            throw KilnError(.invalidArgument, "\(function): \(parameter) is not a \(T.self) handle")
        }
        return typed
    }

    /// Drops the C caller's reference (the `*_free` functions).
    static func release(_ pointer: OpaquePointer?) {
        guard let pointer else { return }
        Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(pointer)).release()
    }

    /// Stores `value` through the caller's out-pointer `out`, or fails naming `parameter` when it is NULL.
    static func store<T>(_ value: T, _ out: UnsafeMutablePointer<T>?, _ parameter: String, of function: String) throws {
        guard let out else { throw nullArgument(parameter, of: function) }
        out.pointee = value
    }

    /// Checks that the caller's out-pointer `out` is not NULL (before doing work whose result would be lost).
    static func require<T>(_ out: UnsafeMutablePointer<T>?, _ parameter: String, of function: String) throws -> UnsafeMutablePointer<T> {
        guard let out else { throw nullArgument(parameter, of: function) }
        return out
    }

    /// `index` as an index into `count` items, or an error naming what is indexed.
    static func index(_ index: Int, count: Int, _ what: String, of function: String) throws -> Int {
        guard index >= 0, index < count else {
            throw KilnError(.invalidArgument, "\(function): index \(index) is out of range: the \(what) has \(count) entr\(count == 1 ? "y" : "ies")")
        }
        return index
    }
}
