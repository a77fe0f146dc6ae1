#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes that back a tensor: owned by this object, or borrowed from an owner that outlives it
/// (a memory-mapped file), so that constants of a large model are never copied.
public final class TensorStorage: @unchecked Sendable {
    /// The first byte. Not necessarily aligned for the element type: read through `loadUnaligned`
    /// or copy out with `Tensor.elements(as:)`.
    public let base: UnsafeRawPointer
    /// Number of bytes.
    public let byteCount: Int
    private let owner: AnyObject?
    private let ownsMemory: Bool

    /// Allocates `byteCount` zeroed bytes.
    public convenience init(byteCount: Int) {
        self.init(byteCount: byteCount) { _ in }
    }

    /// Allocates `byteCount` bytes (zeroed) and lets `initialize` fill them. The process ends if the system
    /// cannot provide them: where the size comes from outside (a bound input, a model's shapes), use
    /// `init(byteCount:what:initialize:)`, which throws instead.
    public convenience init(byteCount: Int, initialize: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        guard let memory = try? AlignedMemory.allocate(byteCount: max(byteCount, 1), what: "a tensor") else {
            fatalError("cannot allocate \(byteCount) bytes for a tensor")
        }
        try self.init(adopting: memory, byteCount: byteCount, initialize: initialize)
    }

    /// Allocates `byteCount` bytes (zeroed) and lets `initialize` fill them; a `.runtime` error naming `what`
    /// when the system cannot provide them (an address-space limit, refused overcommit).
    public convenience init(byteCount: Int, what: @autoclosure () -> String,
                initialize: (UnsafeMutableRawBufferPointer) throws -> Void = { _ in }) throws {
        let memory = try AlignedMemory.allocate(byteCount: max(byteCount, 1), what: what())
        try self.init(adopting: memory, byteCount: byteCount, initialize: initialize)
    }

    /// Zeroes `memory` (from `AlignedMemory.allocate`, at least one byte), lets `initialize` fill it and owns it.
    private init(adopting memory: UnsafeMutableRawPointer, byteCount: Int,
                 initialize: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        do {
            try initialize(UnsafeMutableRawBufferPointer(start: memory, count: byteCount))
        } catch {
            AlignedMemory.free(memory)
            throw error
        }
        self.base = UnsafeRawPointer(memory)
        self.byteCount = byteCount
        self.owner = nil
        self.ownsMemory = true
    }

    /// Copies `bytes` into new storage.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(byteCount: bytes.count) { dst in
            if let src = bytes.baseAddress, bytes.count > 0 { dst.baseAddress!.copyMemory(from: src, byteCount: bytes.count) }
        }
    }

    /// Borrows `byteCount` bytes at `base`, keeping `owner` alive for as long as this storage lives.
    public init(borrowing base: UnsafeRawPointer, byteCount: Int, owner: AnyObject) {
        self.base = base
        self.byteCount = byteCount
        self.owner = owner
        self.ownsMemory = false
    }

    /// The bytes as a buffer.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: byteCount) }

    deinit {
        if ownsMemory { AlignedMemory.free(UnsafeMutableRawPointer(mutating: base)) }
    }
}

/// A Swift type that can be an element of a tensor in memory.
public protocol TensorElement: Sendable {
    /// The tensor element type this Swift type stores.
    static var dtype: DType { get }
}
extension Float: TensorElement { public static var dtype: DType { .float32 } }
extension Double: TensorElement { public static var dtype: DType { .float64 } }
#if arch(x86_64) || arch(arm64) || arch(i386) || arch(arm)
@available(macOS 11.0, *)
extension Float16: TensorElement { public static var dtype: DType { .float16 } }
#endif
extension Int8: TensorElement { public static var dtype: DType { .int8 } }
extension Int16: TensorElement { public static var dtype: DType { .int16 } }
extension Int32: TensorElement { public static var dtype: DType { .int32 } }
extension Int64: TensorElement { public static var dtype: DType { .int64 } }
extension UInt8: TensorElement { public static var dtype: DType { .uint8 } }
extension UInt16: TensorElement { public static var dtype: DType { .uint16 } }
extension UInt32: TensorElement { public static var dtype: DType { .uint32 } }
extension UInt64: TensorElement { public static var dtype: DType { .uint64 } }
extension Bool: TensorElement { public static var dtype: DType { .bool } }

/// A dense tensor: element type, shape and data. Used for constants in the IR and for values at run time.
///
/// The data is immutable and shared between copies. Numeric data lives in a `TensorStorage`
/// (possibly borrowed from a memory-mapped file); strings live in a Swift array.
public struct Tensor: Sendable, CustomStringConvertible {
    /// The element type.
    public let dtype: DType
    /// The dims; `[]` is a scalar.
    public let shape: [Int]

    enum Contents: Sendable {
        case bytes(TensorStorage, offset: Int)
        case strings([String])
    }
    let contents: Contents

    /// Number of elements (the product of the dims; 1 for a scalar).
    public var count: Int { shape.reduce(1, *) }
    /// Number of dims.
    public var rank: Int { shape.count }

    /// A tensor over existing storage, starting `offset` bytes in.
    /// - Precondition: the storage holds at least `count × byteWidth` bytes after `offset`.
    public init(dtype: DType, shape: [Int], storage: TensorStorage, offset: Int = 0) {
        precondition(dtype != .string, "string tensors hold Swift strings, not bytes")
        precondition(offset >= 0 && offset + shape.reduce(1, *) * dtype.byteWidth! <= storage.byteCount,
                     "tensor \(dtype)\(shape) does not fit in its storage")
        self.dtype = dtype
        self.shape = shape
        self.contents = .bytes(storage, offset: offset)
    }

    /// A tensor of `elements` laid out row-major.
    public init<T: TensorElement>(shape: [Int], _ elements: [T]) {
        self.init(dtype: T.dtype, shape: shape, bitPatterns: elements)
    }

    /// A scalar (rank 0) tensor.
    public init<T: TensorElement>(scalar: T) {
        self.init(shape: [], [scalar])
    }

    /// A tensor of type `dtype` whose elements have the bit patterns of `elements`
    /// (e.g. `UInt16` bit patterns for `bfloat16`, `UInt8` for float8 formats).
    /// - Precondition: `T` is as wide as one element of `dtype`, and there are `shape`'s product of elements.
    public init<T: TensorElement>(dtype: DType, shape: [Int], bitPatterns elements: [T]) {
        precondition(MemoryLayout<T>.stride == dtype.byteWidth, "\(T.self) is not as wide as \(dtype)")
        precondition(elements.count == shape.reduce(1, *), "\(elements.count) elements for shape \(shape)")
        let storage = elements.withUnsafeBytes { TensorStorage(copying: $0) }
        self.init(dtype: dtype, shape: shape, storage: storage)
    }

    /// A string tensor.
    public init(shape: [Int], strings: [String]) {
        precondition(strings.count == shape.reduce(1, *), "\(strings.count) strings for shape \(shape)")
        self.dtype = .string
        self.shape = shape
        self.contents = .strings(strings)
    }

    /// A tensor of zeros (empty strings for `string`).
    public init(zeros dtype: DType, shape: [Int]) {
        if dtype == .string {
            self.init(shape: shape, strings: Array(repeating: "", count: shape.reduce(1, *)))
        } else {
            self.init(dtype: dtype, shape: shape, storage: TensorStorage(byteCount: shape.reduce(1, *) * dtype.byteWidth!))
        }
    }

    /// The raw bytes of a numeric tensor (nil for strings). Valid while this tensor is alive.
    public var rawBytes: UnsafeRawBufferPointer? {
        guard case .bytes(let storage, let offset) = contents else { return nil }
        return UnsafeRawBufferPointer(rebasing: storage.bytes[offset..<(offset + count * dtype.byteWidth!)])
    }

    /// The storage and byte offset of a numeric tensor, for zero-copy consumers.
    public var storage: (TensorStorage, offset: Int)? {
        guard case .bytes(let storage, let offset) = contents else { return nil }
        return (storage, offset)
    }

    /// The elements copied out as `T`.
    /// - Precondition: `T` is as wide as the element type (bit patterns are reinterpreted, not converted).
    public func elements<T: TensorElement>(as: T.Type = T.self) -> [T] {
        precondition(MemoryLayout<T>.stride == dtype.byteWidth, "cannot read \(dtype) as \(T.self)")
        guard let raw = rawBytes else { return [] }
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
            initialized = count
        }
    }

    /// The elements of a string tensor.
    public var strings: [String] {
        if case .strings(let s) = contents { return s }
        preconditionFailure("\(dtype) tensor read as strings")
    }

    /// The same data with another shape of the same element count (no copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        switch contents {
        case .bytes(let storage, let offset): return Tensor(dtype: dtype, shape: newShape, storage: storage, offset: offset)
        case .strings(let s): return Tensor(shape: newShape, strings: s)
        }
    }

    /// `f32[2,3]` followed by up to 8 elements.
    public var description: String {
        let head = "\(dtype)\(shape)"
        if dtype == .string { return "\(head) \(strings.prefix(8))" }
        if dtype.isFloatingPoint || dtype.isInteger || dtype == .bool {
            let shown = asDoubles().prefix(8).map { String($0) }.joined(separator: ", ")
            return "\(head) [\(shown)\(count > 8 ? ", …" : "")]"
        }
        return head
    }
}

extension Tensor {
    /// Every element converted to `Double` (bool as 0/1, float formats decoded). Exact for all types
    /// except 64-bit integers beyond 2^53. Not for strings or complex types.
    public func asDoubles() -> [Double] {
        switch dtype {
        case .float32: return elements(as: Float.self).map { Double($0) }
        case .float64: return elements(as: Double.self)
        case .float16: return elements(as: UInt16.self).map { Double(FloatFormats.halfToFloat($0)) }
        case .bfloat16: return elements(as: UInt16.self).map { Double(FloatFormats.bfloat16ToFloat($0)) }
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0, .float4e2m1:
            return elements(as: UInt8.self).map { Double(FloatFormats.decode($0, dtype)) }
        case .int8: return elements(as: Int8.self).map { Double($0) }
        case .int16: return elements(as: Int16.self).map { Double($0) }
        case .int32: return elements(as: Int32.self).map { Double($0) }
        case .int64: return elements(as: Int64.self).map { Double($0) }
        case .uint8: return elements(as: UInt8.self).map { Double($0) }
        case .uint16: return elements(as: UInt16.self).map { Double($0) }
        case .uint32: return elements(as: UInt32.self).map { Double($0) }
        case .uint64: return elements(as: UInt64.self).map { Double($0) }
        case .bool: return elements(as: Bool.self).map { $0 ? 1 : 0 }
        case .int4, .int2: return elements(as: Int8.self).map { Double($0) }
        case .uint4, .uint2: return elements(as: UInt8.self).map { Double($0) }
        case .string, .complex64, .complex128: preconditionFailure("\(dtype) has no Double value")
        }
    }

    /// Every element of an integer or bool tensor as `Int64` (uint64 by bit pattern).
    /// Floating-point elements are truncated toward zero.
    public func asInt64s() -> [Int64] {
        switch dtype {
        case .int64: return elements(as: Int64.self)
        case .int32: return elements(as: Int32.self).map(Int64.init)
        case .int16: return elements(as: Int16.self).map(Int64.init)
        case .int8, .int4, .int2: return elements(as: Int8.self).map(Int64.init)
        case .uint8, .uint4, .uint2: return elements(as: UInt8.self).map(Int64.init)
        case .uint16: return elements(as: UInt16.self).map(Int64.init)
        case .uint32: return elements(as: UInt32.self).map(Int64.init)
        case .uint64: return elements(as: UInt64.self).map { Int64(bitPattern: $0) }
        case .bool: return elements(as: Bool.self).map { $0 ? 1 : 0 }
        default:
            return asDoubles().map { $0.isFinite ? Int64(exactly: $0.rounded(.towardZero)) ?? ($0 < 0 ? .min : .max) : 0 }
        }
    }

    /// Every element as `Int` (see `asInt64s`): convenient for shapes, axes and indices.
    public func asInts() -> [Int] { asInt64s().map { Int($0) } }

    /// A tensor of type `dtype` from `Double` values: floats are rounded to the nearest
    /// representable value, integers are truncated toward zero and wrapped to the type's width,
    /// bool is `value != 0`.
    public init(dtype: DType, shape: [Int], doubles values: [Double]) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        func int64(_ v: Double) -> Int64 {
            guard v.isFinite else { return v.isNaN ? 0 : (v < 0 ? .min : .max) }
            return Int64(exactly: v.rounded(.towardZero)) ?? (v < 0 ? .min : .max)
        }
        switch dtype {
        case .float32: self.init(shape: shape, values.map { Float($0) })
        case .float64: self.init(shape: shape, values)
        case .float16: self.init(dtype: .float16, shape: shape, bitPatterns: values.map { FloatFormats.floatToHalf(Float($0)) })
        case .bfloat16: self.init(dtype: .bfloat16, shape: shape, bitPatterns: values.map { FloatFormats.floatToBFloat16(Float($0)) })
        case .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0, .float4e2m1:
            self.init(dtype: dtype, shape: shape, bitPatterns: values.map { FloatFormats.encode(Float($0), dtype, saturate: true) })
        case .uint64:
            self.init(shape: shape, values.map { v -> UInt64 in
                guard v.isFinite, v >= 0 else { return UInt64(bitPattern: int64(v)) }
                return UInt64(exactly: v.rounded(.towardZero)) ?? .max
            })
        case .bool: self.init(shape: shape, values.map { $0 != 0 })
        default:
            precondition(dtype.isInteger, "a \(dtype) tensor cannot be made from numbers")
            self.init(dtype: dtype, shape: shape, int64s: values.map(int64))
        }
    }

    /// A tensor of integer (or bool) type `dtype` from `Int64` values, wrapped to the type's width
    /// (sub-byte types wrap to their 4 or 2 bits, sign-extended for signed ones).
    public init(dtype: DType, shape: [Int], int64s values: [Int64]) {
        switch dtype {
        case .int64: self.init(shape: shape, values)
        case .int32: self.init(shape: shape, values.map { Int32(truncatingIfNeeded: $0) })
        case .int16: self.init(shape: shape, values.map { Int16(truncatingIfNeeded: $0) })
        case .int8: self.init(shape: shape, values.map { Int8(truncatingIfNeeded: $0) })
        case .uint64: self.init(shape: shape, values.map { UInt64(bitPattern: $0) })
        case .uint32: self.init(shape: shape, values.map { UInt32(truncatingIfNeeded: $0) })
        case .uint16: self.init(shape: shape, values.map { UInt16(truncatingIfNeeded: $0) })
        case .uint8: self.init(shape: shape, values.map { UInt8(truncatingIfNeeded: $0) })
        case .bool: self.init(shape: shape, values.map { $0 != 0 })
        case .int4, .int2:
            let bits = Int64(dtype.packedBits)
            self.init(dtype: dtype, shape: shape, bitPatterns: values.map { v -> Int8 in
                let shifted = (v << (64 - bits)) >> (64 - bits)
                return Int8(truncatingIfNeeded: shifted)
            })
        case .uint4, .uint2:
            let mask = (Int64(1) << Int64(dtype.packedBits)) - 1
            self.init(dtype: dtype, shape: shape, bitPatterns: values.map { UInt8(truncatingIfNeeded: $0 & mask) })
        default:
            // The floating-point formats; string and complex tensors have no integer values (and the doubles
            // initializer would hand them back here).
            precondition(dtype.isFloatingPoint, "a \(dtype) tensor cannot be made from integers")
            self.init(dtype: dtype, shape: shape, doubles: values.map { Double($0) })
        }
    }

    /// A one-dimensional int64 tensor (the usual type of shape, axes and index inputs).
    public init(int64s values: [Int]) {
        self.init(shape: [values.count], values.map { Int64($0) })
    }
}
