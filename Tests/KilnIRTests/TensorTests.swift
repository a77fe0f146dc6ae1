import Testing
@testable import KilnIR

@Suite struct TensorTests {
    /// Memory the system cannot provide is a typed error naming what it was for, where Swift's allocator
    /// would end the process (found by fuzzing under a 4 GB address-space limit: kiln.cpu's arena).
    @Test func allocationsTheSystemRefusesAreTypedErrors() throws {
        let error = #expect(throws: KilnError.self) { try AlignedMemory.allocate(byteCount: 1 << 62, what: "the test's arena") }
        #expect(error?.code == .runtime)
        #expect(error?.message.contains("cannot allocate 4611686018427387904 bytes") == true && error?.message.contains("the test's arena") == true,
                "\(error?.message ?? "")")
        let storage = #expect(throws: KilnError.self) { try TensorStorage(byteCount: 1 << 62, what: "an input") }
        #expect(storage?.message.contains("an input") == true)
        // What the system can provide comes back zeroed and filled.
        let small = try TensorStorage(byteCount: 16, what: "a small tensor") { $0[3] = 7 }
        #expect(Array(small.bytes) == [0, 0, 0, 7] + [UInt8](repeating: 0, count: 12))
    }

    @Test func elementsRoundTripAndShareStorageOnReshape() {
        let t = Tensor(shape: [2, 3], [Float](arrayLiteral: 1, 2, 3, 4, 5, 6))
        #expect(t.count == 6 && t.rank == 2 && t.dtype == .float32)
        let r = t.reshaped([3, 2])
        #expect(r.elements(as: Float.self) == [1, 2, 3, 4, 5, 6])
        #expect(r.storage?.0 === t.storage?.0)
    }

    @Test func int64sWrapToTheTypeWidth() {
        let t = Tensor(dtype: .int8, shape: [3], int64s: [127, 128, -129])
        #expect(t.elements(as: Int8.self) == [127, -128, 127])
        let u4 = Tensor(dtype: .uint4, shape: [2], int64s: [15, 16])
        #expect(u4.asInt64s() == [15, 0])
        let i4 = Tensor(dtype: .int4, shape: [3], int64s: [7, 8, -9])
        #expect(i4.asInt64s() == [7, -8, 7])
    }

    @Test func doublesRoundToTheType() {
        let t = Tensor(dtype: .int32, shape: [3], doubles: [1.9, -1.9, .nan])
        #expect(t.asInt64s() == [1, -1, 0])
        let h = Tensor(dtype: .float16, shape: [1], doubles: [1.0 / 3.0])
        #expect(abs(h.asDoubles()[0] - 0.333251953125) < 1e-12)
        let u = Tensor(shape: [2], [UInt64](arrayLiteral: 4, UInt64.max))
        #expect(u.asDoubles() == [4, 18446744073709551615.0])
        let b = Tensor(dtype: .bool, shape: [2], doubles: [0, 0.5])
        #expect(b.elements(as: Bool.self) == [false, true])
    }

    @Test func bfloat16RoundsToNearestEven() {
        // 1 + 2^-8 lies halfway between two bfloat16 values; ties go to the even one (1.0).
        #expect(FloatFormats.floatToBFloat16(1 + 1.0 / 256) == 0x3F80)
        #expect(FloatFormats.floatToBFloat16(1 + 3.0 / 256) == 0x3F82)
        #expect(FloatFormats.bfloat16ToFloat(0x3F80) == 1)
        #expect(FloatFormats.bfloat16ToFloat(FloatFormats.floatToBFloat16(.nan)).isNaN)
    }

    @Test func float8FormatsDecodeTheirLimits() {
        #expect(FloatFormats.decode(0x7E, .float8e4m3fn) == 448)
        #expect(FloatFormats.decode(0x7F, .float8e4m3fn).isNaN)
        #expect(FloatFormats.decode(0x7F, .float8e4m3fnuz) == 240)
        #expect(FloatFormats.decode(0x80, .float8e4m3fnuz).isNaN)
        #expect(FloatFormats.decode(0x7B, .float8e5m2) == 57344)
        #expect(FloatFormats.decode(0x7C, .float8e5m2) == .infinity)
        #expect(FloatFormats.decode(0x01, .float8e4m3fn) == Float(sign: .plus, exponent: -9, significand: 1))
        #expect(FloatFormats.decode(0x07, .float4e2m1) == 6)
    }

    @Test func float8EncodingSaturatesOrOverflowsAsONNXSays() {
        #expect(FloatFormats.encode(1000, .float8e4m3fn, saturate: true) == 0x7E)
        #expect(FloatFormats.encode(1000, .float8e4m3fn, saturate: false) == 0x7F)
        #expect(FloatFormats.encode(-.infinity, .float8e5m2, saturate: false) == 0xFC)
        #expect(FloatFormats.encode(.infinity, .float8e5m2, saturate: true) == 0x7B)
        #expect(FloatFormats.encode(.infinity, .float8e4m3fnuz, saturate: true) == 0x7F)
        #expect(FloatFormats.encode(.infinity, .float8e4m3fnuz, saturate: false) == 0x80)
        #expect(FloatFormats.encode(1.1, .float8e8m0, saturate: true) == 128)
        #expect(FloatFormats.encode(.nan, .float4e2m1, saturate: true) == 0x08)
        #expect(FloatFormats.encode(-0.0, .float8e4m3fnuz, saturate: true) == 0x00)
        // 464 is halfway between 448 and the first overflow value; ties go to even (448).
        #expect(FloatFormats.encode(464, .float8e4m3fn, saturate: false) == 0x7E)
        #expect(FloatFormats.encode(465, .float8e4m3fn, saturate: false) == 0x7F)
        // Every finite code survives decode → encode.
        for dtype in [DType.float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz] {
            for code in 0...255 {
                let value = FloatFormats.decode(UInt8(code), dtype)
                guard value.isFinite, !(value == 0 && code != 0) else { continue }
                #expect(FloatFormats.encode(value, dtype, saturate: false) == UInt8(code), "\(dtype) code \(code)")
            }
        }
    }

    @Test func dtypeCodesMatchONNX() {
        #expect(DType(onnxCode: 1) == .float32)
        #expect(DType(onnxCode: 7) == .int64)
        #expect(DType(onnxCode: 16) == .bfloat16)
        #expect(DType(onnxCode: 0) == nil)
        for d in DType.allCases { #expect(DType(onnxCode: d.onnxCode) == d) }
        for d in DType.allCases { #expect(DType(printedName: d.description) == d) }
    }
}
