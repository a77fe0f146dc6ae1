/// The element type of a tensor.
///
/// The cases and their `onnxCode` follow ONNX's `TensorProto.DataType`, so a
/// model's element types map one to one. Sub-byte types (`int4`, `uint4`,
/// `float4e2m1`, `int2`, `uint2`) are held unpacked in memory, one element per
/// byte; the 8-bit float formats are held as their bit patterns, one byte each.
public enum DType: String, Sendable, CaseIterable, Hashable, CustomStringConvertible {
    case float32, float16, bfloat16, float64
    case int8, int16, int32, int64
    case uint8, uint16, uint32, uint64
    case bool, string
    case complex64, complex128
    case float8e4m3fn, float8e4m3fnuz, float8e5m2, float8e5m2fnuz, float8e8m0
    case int4, uint4, float4e2m1, int2, uint2

    /// The ONNX `TensorProto.DataType` number of this type.
    public var onnxCode: Int {
        switch self {
        case .float32: 1
        case .uint8: 2
        case .int8: 3
        case .uint16: 4
        case .int16: 5
        case .int32: 6
        case .int64: 7
        case .string: 8
        case .bool: 9
        case .float16: 10
        case .float64: 11
        case .uint32: 12
        case .uint64: 13
        case .complex64: 14
        case .complex128: 15
        case .bfloat16: 16
        case .float8e4m3fn: 17
        case .float8e4m3fnuz: 18
        case .float8e5m2: 19
        case .float8e5m2fnuz: 20
        case .uint4: 21
        case .int4: 22
        case .float4e2m1: 23
        case .float8e8m0: 24
        case .uint2: 25
        case .int2: 26
        }
    }

    /// The type with ONNX `TensorProto.DataType` number `code`, or nil for UNDEFINED and unknown numbers.
    public init?(onnxCode code: Int) {
        guard let match = DType.allCases.first(where: { $0.onnxCode == code }) else { return nil }
        self = match
    }

    /// Bytes one element occupies in memory; nil for `string`. Sub-byte types take one byte each (unpacked).
    public var byteWidth: Int? {
        switch self {
        case .string: nil
        case .float64, .int64, .uint64, .complex64: 8
        case .complex128: 16
        case .float32, .int32, .uint32: 4
        case .float16, .bfloat16, .int16, .uint16: 2
        default: 1
        }
    }

    /// Bits of one element in ONNX's packed encoding (4 or 2 for sub-byte types).
    public var packedBits: Int {
        switch self {
        case .int4, .uint4, .float4e2m1: 4
        case .int2, .uint2: 2
        case .string: 0
        default: byteWidth! * 8
        }
    }

    /// True for every floating-point format, including the 8- and 4-bit ones.
    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float64, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2,
            .float8e5m2fnuz, .float8e8m0, .float4e2m1:
            true
        default: false
        }
    }

    /// True for signed and unsigned integers of every width (not bool).
    public var isInteger: Bool {
        switch self {
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64, .int4, .uint4, .int2, .uint2: true
        default: false
        }
    }

    /// True for signed integer types.
    public var isSignedInteger: Bool {
        switch self {
        case .int8, .int16, .int32, .int64, .int4, .int2: true
        default: false
        }
    }

    /// The name used in printed IR and error messages (`f32`, `i64`, …).
    public var description: String {
        switch self {
        case .float32: "f32"
        case .float16: "f16"
        case .bfloat16: "bf16"
        case .float64: "f64"
        case .int8: "i8"
        case .int16: "i16"
        case .int32: "i32"
        case .int64: "i64"
        case .uint8: "u8"
        case .uint16: "u16"
        case .uint32: "u32"
        case .uint64: "u64"
        case .bool: "bool"
        case .string: "string"
        case .complex64: "c64"
        case .complex128: "c128"
        case .float8e4m3fn: "f8e4m3fn"
        case .float8e4m3fnuz: "f8e4m3fnuz"
        case .float8e5m2: "f8e5m2"
        case .float8e5m2fnuz: "f8e5m2fnuz"
        case .float8e8m0: "f8e8m0"
        case .int4: "i4"
        case .uint4: "u4"
        case .float4e2m1: "f4e2m1"
        case .int2: "i2"
        case .uint2: "u2"
        }
    }

    /// The type whose printed name is `name` (the inverse of `description`).
    public init?(printedName name: String) {
        guard let match = DType.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}
