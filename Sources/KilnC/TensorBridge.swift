import CKilnABI
import Kiln

/// Conversions between Kiln's `DType`/`Tensor` and the DLPack-layout `kiln_dtype`/`kiln_tensor`.
enum TensorBridge {
    /// The DLPack type code and bit width of `dtype` (strings have no DLPack code: `KILN_DTYPE_OPAQUE`, 0 bits).
    static func cType(_ dtype: DType) -> kiln_dtype {
        let (code, bits): (Int32, Int)
        switch dtype {
        case .float16, .float32, .float64: (code, bits) = (Int32(KILN_DTYPE_FLOAT), dtype.byteWidth! * 8)
        case .bfloat16: (code, bits) = (Int32(KILN_DTYPE_BFLOAT), 16)
        case .int8, .int16, .int32, .int64, .int4, .int2: (code, bits) = (Int32(KILN_DTYPE_INT), dtype.packedBits)
        case .uint8, .uint16, .uint32, .uint64, .uint4, .uint2: (code, bits) = (Int32(KILN_DTYPE_UINT), dtype.packedBits)
        case .bool: (code, bits) = (Int32(KILN_DTYPE_BOOL), 8)
        case .complex64: (code, bits) = (Int32(KILN_DTYPE_COMPLEX), 64)
        case .complex128: (code, bits) = (Int32(KILN_DTYPE_COMPLEX), 128)
        case .float8e4m3fn: (code, bits) = (Int32(KILN_DTYPE_FLOAT8_E4M3FN), 8)
        case .float8e4m3fnuz: (code, bits) = (Int32(KILN_DTYPE_FLOAT8_E4M3FNUZ), 8)
        case .float8e5m2: (code, bits) = (Int32(KILN_DTYPE_FLOAT8_E5M2), 8)
        case .float8e5m2fnuz: (code, bits) = (Int32(KILN_DTYPE_FLOAT8_E5M2FNUZ), 8)
        case .float8e8m0: (code, bits) = (Int32(KILN_DTYPE_FLOAT8_E8M0FNU), 8)
        case .float4e2m1: (code, bits) = (Int32(KILN_DTYPE_FLOAT4_E2M1FN), 4)
        case .string: (code, bits) = (Int32(KILN_DTYPE_OPAQUE), 0)
        }
        return kiln_dtype(code: UInt8(code), bits: UInt8(bits), lanes: 1)
    }

    /// The Kiln element type of a `kiln_dtype`, or nil when Kiln has none.
    static func dtype(_ t: kiln_dtype) -> DType? {
        guard t.lanes == 1 else { return nil }
        return DType.allCases.first { $0 != .string && cType($0).code == t.code && cType($0).bits == t.bits }
    }

    /// `f32`, or `dtype(code=…, bits=…, lanes=…)` for a type Kiln does not know.
    static func describe(_ t: kiln_dtype) -> String {
        dtype(t).map(\.description) ?? "dtype(code=\(t.code), bits=\(t.bits), lanes=\(t.lanes))"
    }

    /// The most dims a tensor crossing the ABI may have.
    static let maximumRank = 64

    /// The shape of the caller's tensor, checked (rank, non-NULL shape, non-negative dims, no overflow).
    /// `what` names the tensor in messages (`input 'x' (inputs[0])`).
    static func shape(of t: kiln_tensor, _ what: @autoclosure () -> String) throws -> [Int] {
        guard t.ndim >= 0, t.ndim <= maximumRank else {
            throw KilnError(.invalidArgument, "\(what()): ndim is \(t.ndim); expected 0…\(maximumRank)")
        }
        if t.ndim == 0 { return [] }
        guard let shape = t.shape else { throw KilnError(.invalidArgument, "\(what()): shape is NULL but ndim is \(t.ndim)") }
        let dims = (0..<Int(t.ndim)).map { Int(shape[$0]) }
        if let bad = dims.firstIndex(where: { $0 < 0 }) {
            throw KilnError(.invalidArgument, "\(what()): shape[\(bad)] is \(dims[bad]); dims must be >= 0")
        }
        _ = try ElementCount.of(dims, what: what(), code: .invalidArgument)
        return dims
    }

    /// `f32[2,3]` for a caller's tensor (its shape must already be checked).
    static func describe(_ t: kiln_tensor, shape: [Int]) -> String {
        "\(describe(t.dtype))[\(shape.map(String.init).joined(separator: ","))]"
    }

    /// Checks the device and the data pointer of a caller's tensor of `byteCount` bytes.
    static func checkMemory(of t: kiln_tensor, byteCount: Int, _ what: @autoclosure () -> String) throws {
        guard t.device.device_type == Int32(KILN_DEVICE_CPU), t.device.device_id == 0 else {
            throw KilnError(.invalidArgument, "\(what()): device is (type \(t.device.device_type), id \(t.device.device_id)); "
                + "this libkiln reads and writes host memory only (KILN_DEVICE_CPU, id 0)")
        }
        guard t.byte_offset <= UInt64(Int.max / 2) else { throw KilnError(.invalidArgument, "\(what()): byte_offset \(t.byte_offset) is too large") }
        if byteCount > 0 && t.data == nil { throw KilnError(.invalidArgument, "\(what()): data is NULL") }
    }

    /// Calls `body(i, offset)` for every element of a strided tensor in row-major order: `i` is the element's
    /// row-major index, `offset` its byte offset from the first element.
    static func forEachElement(shape: [Int], strides: UnsafeMutablePointer<Int64>, width: Int, _ body: (Int, Int) -> Void) {
        let count = shape.reduce(1, *)
        guard count > 0 else { return }
        let steps = (0..<shape.count).map { Int(strides[$0]) * width }
        var index = [Int](repeating: 0, count: shape.count)
        var offset = 0
        for i in 0..<count {
            body(i, offset)
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                offset += steps[axis]
                if index[axis] < shape[axis] { break }
                offset -= steps[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }

    /// Whether `strides` (NULL or not) describes the compact row-major layout of `shape`.
    static func isCompact(shape: [Int], strides: UnsafeMutablePointer<Int64>?) -> Bool {
        isCompact(rank: shape.count, dim: { shape[$0] }, strides: strides)
    }

    /// Whether `strides` (NULL or not) describes the compact row-major layout of a shape of `rank` dims,
    /// dim `axis` being `dim(axis)`.
    @inline(__always)
    static func isCompact(rank: Int, dim: (Int) -> Int, strides: UnsafeMutablePointer<Int64>?) -> Bool {
        guard let strides else { return true }
        var expected = 1
        for axis in stride(from: rank - 1, through: 0, by: -1) {
            let size = dim(axis)
            if size != 1 && Int(strides[axis]) != expected { return false }
            expected *= size
        }
        return true
    }

    /// A Kiln tensor over the caller's input tensor `t`. Compact row-major data is borrowed without a copy
    /// (`owner` marks it, so results that share it can be copied out); strided data is gathered into new storage.
    static func input(_ t: kiln_tensor, _ what: @autoclosure () -> String, owner: AnyObject) throws -> Tensor {
        let shape = try shape(of: t, what())
        guard let dtype = dtype(t.dtype) else {
            throw KilnError(.invalidArgument, "\(what()): element type \(describe(t.dtype)) is not one Kiln supports")
        }
        let width = dtype.byteWidth!
        let count = shape.reduce(1, *)
        try checkMemory(of: t, byteCount: count * width, what())
        if count == 0 { return Tensor(zeros: dtype, shape: shape) }
        let base = UnsafeRawPointer(t.data!) + Int(t.byte_offset)
        if isCompact(shape: shape, strides: t.strides) {
            let storage = TensorStorage(borrowing: base, byteCount: count * width, owner: owner)
            return Tensor(dtype: dtype, shape: shape, storage: storage)
        }
        let storage = try TensorStorage(byteCount: count * width, what: "a copy of \(what())") { destination in
            forEachElement(shape: shape, strides: t.strides!, width: width) { i, offset in
                (destination.baseAddress! + i * width).copyMemory(from: base + offset, byteCount: width)
            }
        }
        return Tensor(dtype: dtype, shape: shape, storage: storage)
    }

    /// Copies `tensor` into the caller's output tensor `t`, whose dtype and shape must already match.
    static func copy(_ tensor: Tensor, into t: kiln_tensor) {
        guard let bytes = tensor.rawBytes, bytes.count > 0 else { return }
        let width = tensor.dtype.byteWidth!
        let base = t.data! + Int(t.byte_offset)
        if isCompact(shape: tensor.shape, strides: t.strides) {
            base.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            return
        }
        forEachElement(shape: tensor.shape, strides: t.strides!, width: width) { i, offset in
            (base + offset).copyMemory(from: bytes.baseAddress! + i * width, byteCount: width)
        }
    }
}
