/// Conversions between `Float` and the narrow floating-point formats that tensors may hold as
/// bit patterns: IEEE half, bfloat16, the four OCP/ONNX 8-bit formats, E8M0 and FP4 (E2M1).
///
/// Rounding is to nearest, ties to even, except for E8M0, which rounds up (ONNX Cast's default
/// `round_mode`). Overflow follows ONNX's Cast rules: with `saturate` a value too large, infinity
/// included, becomes the largest finite value; without, it becomes infinity where the format has one
/// and NaN where it has not. FP4 (E2M1) always saturates and encodes NaN as 0x8, as ONNX does.
public enum FloatFormats {
    /// IEEE binary16 bits → Float.
    public static func halfToFloat(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }
    /// Float → IEEE binary16 bits (round to nearest even).
    public static func floatToHalf(_ x: Float) -> UInt16 { Float16(x).bitPattern }

    /// bfloat16 bits → Float.
    public static func bfloat16ToFloat(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }
    /// Float → bfloat16 bits (round to nearest even; NaN stays a quiet NaN).
    public static func floatToBFloat16(_ x: Float) -> UInt16 {
        if x.isNaN { return 0x7FC0 }
        let bits = x.bitPattern
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// Decodes one element of an 8- or 4-bit float format.
    public static func decode(_ code: UInt8, _ dtype: DType) -> Float {
        Format.of(dtype).decodeTable[Int(code)]
    }

    /// Encodes `x` in an 8- or 4-bit float format (see the type's overflow rules).
    public static func encode(_ x: Float, _ dtype: DType, saturate: Bool) -> UInt8 {
        Format.of(dtype).encode(x, saturate: saturate)
    }

    struct Format: Sendable {
        let exponentBits: Int
        let mantissaBits: Int
        let bias: Int
        let signed: Bool
        let kind: DType
        /// Float value of every code.
        let decodeTable: [Float]
        /// Non-negative finite codes in increasing order of value.
        let ladder: [(code: UInt8, value: Float)]
        let nanCode: UInt8

        init(_ kind: DType, exponentBits: Int, mantissaBits: Int, bias: Int, signed: Bool = true, nanCode: UInt8) {
            self.kind = kind
            self.exponentBits = exponentBits
            self.mantissaBits = mantissaBits
            self.bias = bias
            self.signed = signed
            self.nanCode = nanCode
            let codes = 1 << (exponentBits + mantissaBits + (signed ? 1 : 0))
            var table = [Float](repeating: 0, count: 256)
            for c in 0..<codes {
                table[c] = Format.value(of: UInt8(c), kind, exponentBits, mantissaBits, bias, signed)
            }
            self.decodeTable = table
            let positive = (0..<(signed ? codes / 2 : codes)).map { UInt8($0) }.filter { table[Int($0)].isFinite }
            self.ladder = positive.map { ($0, table[Int($0)]) }.sorted { $0.value < $1.value }
        }

        static func value(of code: UInt8, _ kind: DType, _ e: Int, _ m: Int, _ bias: Int, _ signed: Bool) -> Float {
            let c = Int(code)
            let negative = signed && (c >> (e + m)) & 1 == 1
            let exponent = (c >> m) & ((1 << e) - 1)
            let mantissa = c & ((1 << m) - 1)
            switch kind {
            case .float8e4m3fnuz, .float8e5m2fnuz:
                if c == 0x80 { return .nan }
            case .float8e4m3fn:
                if exponent == 15 && mantissa == 7 { return .nan }
            case .float8e5m2:
                if exponent == 31 { return mantissa == 0 ? (negative ? -.infinity : .infinity) : .nan }
            case .float8e8m0:
                if c == 0xFF { return .nan }
                return Float(sign: .plus, exponent: exponent - bias, significand: 1)
            default: break
            }
            let magnitude: Float
            if exponent == 0 {
                magnitude = Float(mantissa) * Float(sign: .plus, exponent: 1 - bias - m, significand: 1)
            } else {
                magnitude = (1 + Float(mantissa) / Float(1 << m)) * Float(sign: .plus, exponent: exponent - bias, significand: 1)
            }
            return negative ? -magnitude : magnitude
        }

        var hasInfinity: Bool { kind == .float8e5m2 }
        var isFNUZ: Bool { kind == .float8e4m3fnuz || kind == .float8e5m2fnuz }

        func encode(_ x: Float, saturate: Bool) -> UInt8 {
            let signBit: UInt8 = signed ? UInt8(1 << (exponentBits + mantissaBits)) : 0
            if x.isNaN { return nanCode }
            let negative = x.sign == .minus
            let magnitude = abs(x)
            let maxEntry = ladder.last!
            func withSign(_ code: UInt8) -> UInt8 {
                guard negative, signed else { return code }
                if isFNUZ && code == 0 { return 0 }  // no negative zero
                return code | signBit
            }
            func overflow() -> UInt8 {
                if kind == .float4e2m1 { return withSign(maxEntry.code) }
                if saturate { return withSign(maxEntry.code) }
                if hasInfinity { return withSign(0x7C) }
                return nanCode
            }
            if magnitude.isInfinite { return overflow() }
            // The value one step past the largest finite one: rounding onto it is an overflow.
            let top = maxEntry.value
            let step = top - ladder[ladder.count - 2].value
            if magnitude >= top + step / 2 {
                if magnitude == top + step / 2 && (maxEntry.code & 1) == 0 { return withSign(maxEntry.code) }
                return overflow()
            }
            if kind == .float8e8m0 {
                // E8M0 holds powers of two only; ONNX rounds up to the next one by default.
                return (ladder.first { $0.value >= magnitude } ?? maxEntry).code
            }
            // Binary search for the first ladder entry ≥ magnitude.
            var lo = 0, hi = ladder.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if ladder[mid].value < magnitude { lo = mid + 1 } else { hi = mid }
            }
            let above = ladder[lo]
            if above.value == magnitude || lo == 0 { return withSign(above.code) }
            let below = ladder[lo - 1]
            let dBelow = magnitude - below.value, dAbove = above.value - magnitude
            if dBelow < dAbove { return withSign(below.code) }
            if dAbove < dBelow { return withSign(above.code) }
            return withSign((below.code & 1) == 0 ? below.code : above.code)
        }

        static let e4m3fn = Format(.float8e4m3fn, exponentBits: 4, mantissaBits: 3, bias: 7, nanCode: 0x7F)
        static let e4m3fnuz = Format(.float8e4m3fnuz, exponentBits: 4, mantissaBits: 3, bias: 8, nanCode: 0x80)
        static let e5m2 = Format(.float8e5m2, exponentBits: 5, mantissaBits: 2, bias: 15, nanCode: 0x7F)
        static let e5m2fnuz = Format(.float8e5m2fnuz, exponentBits: 5, mantissaBits: 2, bias: 16, nanCode: 0x80)
        static let e8m0 = Format(.float8e8m0, exponentBits: 8, mantissaBits: 0, bias: 127, signed: false, nanCode: 0xFF)
        static let e2m1 = Format(.float4e2m1, exponentBits: 2, mantissaBits: 1, bias: 1, nanCode: 0x08)

        static func of(_ dtype: DType) -> Format {
            switch dtype {
            case .float8e4m3fn: e4m3fn
            case .float8e4m3fnuz: e4m3fnuz
            case .float8e5m2: e5m2
            case .float8e5m2fnuz: e5m2fnuz
            case .float8e8m0: e8m0
            case .float4e2m1: e2m1
            default: preconditionFailure("\(dtype) is not an 8- or 4-bit float format")
            }
        }
    }
}
