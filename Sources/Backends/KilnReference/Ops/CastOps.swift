import KilnIR

/// Cast, CastLike and BitCast: conversions between element types.
enum CastOps {
    /// Registers Cast, CastLike and BitCast.
    static func register(into table: inout KernelTable) {
        table.add("Cast") { ctx in
            guard let code = try ctx.int("to"), let to = DType(onnxCode: code) else { throw ctx.fail("attribute 'to' is missing or unknown") }
            let options = try Options(ctx)
            return [.tensor(try cast(try ctx.tensor(0), to: to, options, ctx))]
        }
        table.add("CastLike") { ctx in
            let to = try ctx.tensor(1).dtype
            let options = try Options(ctx)
            return [.tensor(try cast(try ctx.tensor(0), to: to, options, ctx))]
        }
        table.add("BitCast") { ctx in
            guard let code = try ctx.int("to"), let to = DType(onnxCode: code) else { throw ctx.fail("attribute 'to' is missing or unknown") }
            let x = try ctx.tensor(0)
            guard x.dtype != .string, to != .string else { throw ctx.fail("BitCast to or from string is not allowed") }
            guard x.dtype.packedBits == to.packedBits else {
                throw ctx.fail("BitCast needs types of one bit width, not \(x.dtype) and \(to)")
            }
            guard let (storage, offset) = x.storage else { throw ctx.fail("input has no bytes") }
            return [.tensor(Tensor(dtype: to, shape: x.shape, storage: storage, offset: offset))]
        }
    }

    /// The rounding attributes of Cast and CastLike.
    struct Options {
        /// Whether out-of-range values become the largest finite value (float8 targets).
        var saturate: Bool
        /// `up`, `down` or `nearest`: how float8e8m0 rounds values that are not powers of two.
        var roundMode: String

        init(_ ctx: KernelContext) throws {
            saturate = try ctx.int("saturate", 1) != 0
            roundMode = try ctx.string("round_mode", "up")
        }
    }

    /// `x` converted to `to`.
    static func cast(_ x: Tensor, to: DType, _ options: Options, _ ctx: KernelContext) throws -> Tensor {
        if x.dtype == to { return x }
        for t in [x.dtype, to] where t == .complex64 || t == .complex128 {
            throw ctx.unsupported("Cast involving \(t)")
        }
        if x.dtype == .string { return try fromStrings(x, to: to, options, ctx) }
        if to == .string { return Tensor(shape: x.shape, strings: toStrings(x)) }
        if to.isInteger || to == .bool {
            if x.dtype.isInteger || x.dtype == .bool {
                // Integer to integer: two's complement wrap (uint64 by bit pattern).
                return Tensor(dtype: to, shape: x.shape, int64s: x.asInt64s())
            }
            // Floating point: truncate toward zero, then wrap; NaN → true for bool.
            return Tensor(dtype: to, shape: x.shape, doubles: x.asDoubles())
        }
        // Floating-point targets.
        if to == .float32 && (x.dtype == .int64 || x.dtype == .uint64) {
            // Round once, straight from the 64-bit integer.
            let values: [Float] = x.dtype == .int64 ? x.elements(as: Int64.self).map { Float($0) }
                : x.elements(as: UInt64.self).map { Float($0) }
            return Tensor(shape: x.shape, values)
        }
        let values: [Double] = x.dtype == .uint64 ? x.elements(as: UInt64.self).map { Double($0) } : x.asDoubles()
        return encode(values, to: to, shape: x.shape, options)
    }

    /// Floating-point `values` rounded to the floating-point type `to`.
    static func encode(_ values: [Double], to: DType, shape: [Int], _ options: Options) -> Tensor {
        switch to {
        case .float64:
            return Tensor(shape: shape, values)
        case .float32:
            return Tensor(shape: shape, values.map { Float($0) })
        case .float16:
            // Straight from Double, so a float64 input is rounded only once.
            return Tensor(dtype: .float16, shape: shape, bitPatterns: values.map { Float16($0).bitPattern })
        case .bfloat16:
            return Tensor(dtype: .bfloat16, shape: shape, bitPatterns: values.map { FloatFormats.floatToBFloat16(Float($0)) })
        case .float8e8m0:
            return Tensor(dtype: to, shape: shape, bitPatterns: values.map {
                encodeE8M0(Float($0), saturate: options.saturate, roundMode: options.roundMode)
            })
        case .float4e2m1:
            // FP4 has no NaN: NaN becomes the negative-zero code, as ONNX's reference does.
            return Tensor(dtype: to, shape: shape, bitPatterns: values.map { v -> UInt8 in
                v.isNaN ? 0x08 : FloatFormats.encode(Float(v), to, saturate: true)
            })
        default:
            // 8-bit formats. Saturating clamps infinities too (to ± the largest finite value).
            return Tensor(dtype: to, shape: shape, bitPatterns: values.map { v -> UInt8 in
                var f = Float(v)
                if options.saturate && f.isInfinite { f = f < 0 ? -.greatestFiniteMagnitude : .greatestFiniteMagnitude }
                return FloatFormats.encode(f, to, saturate: options.saturate)
            })
        }
    }

    /// E8M0 (a power-of-two scale, unsigned, 0xFF is NaN) of `x`'s float32 exponent, rounded by `roundMode`.
    static func encodeE8M0(_ x: Float, saturate: Bool, roundMode: String) -> UInt8 {
        let bits = x.bitPattern
        var exponent = (bits >> 23) & 0xFF
        if exponent == 0xFF { return 0xFF }  // NaN and infinity
        let fraction = bits & 0x7F_FFFF
        var roundUp = false
        switch roundMode {
        case "nearest":
            let guardBit = bits & 0x40_0000 != 0
            let roundBit = bits & 0x20_0000 != 0
            let sticky = bits & 0x1F_FFFF != 0
            roundUp = guardBit && (roundBit || sticky || exponent > 0)
        case "down":
            roundUp = false
        default:  // "up"
            roundUp = fraction != 0
        }
        if roundUp && saturate && exponent == 0xFE { roundUp = false }
        if roundUp { exponent += 1 }
        return UInt8(truncatingIfNeeded: exponent)
    }

    /// Each element formatted the way ONNX's reference (NumPy's `astype(str)`) writes numbers as text.
    static func toStrings(_ x: Tensor) -> [String] {
        switch x.dtype {
        case .bool: return x.elements(as: Bool.self).map { $0 ? "True" : "False" }
        case .uint64: return x.elements(as: UInt64.self).map { String($0) }
        case let t where t.isInteger: return x.asInt64s().map { String($0) }
        case .float64: return x.elements(as: Double.self).map { formatFloat($0, scientificFrom: 1e16) }
        case .float16: return x.asDoubles().map { formatFloat(Float16($0), scientificFrom: 1e3) }
        default: return x.asDoubles().map { formatFloat(Float($0), scientificFrom: 1e6) }
        }
    }

    /// The shortest digits that read back as `v`, laid out like NumPy: positional (`100.0`, `0.00012`)
    /// unless |v| < 1e-4 or |v| ≥ `scientificFrom` (`1e-05`, `1.6777216e+07`); `inf`, `-inf`, `nan`.
    static func formatFloat<F: BinaryFloatingPoint & CustomStringConvertible>(_ v: F, scientificFrom cutoff: Double) -> String {
        if v.isNaN { return "nan" }
        if v.isInfinite { return v < 0 ? "-inf" : "inf" }
        // Swift's description has the shortest round-trip digits; pull out digits and decimal exponent.
        var text = Substring(v.description)
        let negative = text.first == "-"
        if negative { text = text.dropFirst() }
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = text[..<e]
        }
        let point = text.firstIndex(of: ".") ?? text.endIndex
        let integerPart = text[..<point]
        let fractionPart = point == text.endIndex ? "" : text[text.index(after: point)...]
        var digits = Array(integerPart + fractionPart)
        // Value = 0.d1d2d3… × 10^pointPosition.
        var pointPosition = integerPart.count + exponent
        while digits.count > 1 && digits.first == "0" { digits.removeFirst(); pointPosition -= 1 }
        while digits.count > 1 && digits.last == "0" { digits.removeLast() }
        if F.self == Float16.self {
            // Float16's description may carry more digits than it needs: keep the fewest that read back.
            for n in 1..<max(digits.count, 1) {
                let candidate = roundDigits(digits, to: n)
                let position = pointPosition + candidate.count - n  // a carry adds a leading digit
                let text = "0.\(String(candidate))e\(position)"
                if let back = Double(text), F(back) == (v < 0 ? -v : v) {
                    digits = candidate
                    pointPosition = position
                    while digits.count > 1 && digits.last == "0" { digits.removeLast() }
                    break
                }
            }
        }
        let sign = negative ? "-" : ""
        if digits == ["0"] { return sign + "0.0" }
        // Compared in Double, so float32's nearest value to 1e-4 (just below it) counts as below.
        let magnitude = Double(v < 0 ? -v : v)
        if magnitude < 1e-4 || magnitude >= cutoff {
            let e = pointPosition - 1
            let mantissa = digits.count > 1 ? "\(digits[0]).\(String(digits.dropFirst()))" : "\(digits[0])"
            let exponentText = abs(e) < 10 ? "0\(abs(e))" : "\(abs(e))"
            return "\(sign)\(mantissa)e\(e < 0 ? "-" : "+")\(exponentText)"
        }
        if pointPosition <= 0 {
            return sign + "0." + String(repeating: "0", count: -pointPosition) + String(digits)
        }
        if pointPosition >= digits.count {
            return sign + String(digits) + String(repeating: "0", count: pointPosition - digits.count) + ".0"
        }
        return sign + String(digits[..<pointPosition]) + "." + String(digits[pointPosition...])
    }

    /// Decimal `digits` rounded half-up to their first `n`; one longer when the rounding carries out (99 → 100).
    static func roundDigits(_ digits: [Character], to n: Int) -> [Character] {
        var kept = digits.prefix(n).map { Int($0.asciiValue! - 48) }
        if digits.count > n, digits[n].asciiValue! >= 53 {
            var i = kept.count - 1
            while i >= 0 {
                kept[i] += 1
                if kept[i] < 10 { break }
                kept[i] = 0
                i -= 1
            }
            if i < 0 { kept.insert(1, at: 0) }
        }
        return kept.map { Character(String($0)) }
    }

    /// String elements parsed as numbers of type `to` (`NaN`, `INF`, `-inf` and scientific notation accepted).
    static func fromStrings(_ x: Tensor, to: DType, _ options: Options, _ ctx: KernelContext) throws -> Tensor {
        let strings = x.strings
        if to == .bool {
            return Tensor(shape: x.shape, try strings.map { s -> Bool in
                switch s.lowercased() {
                case "true": return true
                case "false": return false
                default: return try parseDouble(s, ctx) != 0
                }
            })
        }
        if to.isInteger {
            if to == .uint64 {
                return Tensor(shape: x.shape, try strings.map { s -> UInt64 in
                    if let v = UInt64(trim(s)) { return v }
                    let d = try parseDouble(s, ctx)
                    return d < 0 ? UInt64(bitPattern: Int64(d)) : UInt64(d)
                })
            }
            return Tensor(dtype: to, shape: x.shape, int64s: try strings.map { s -> Int64 in
                if let v = Int64(trim(s)) { return v }
                let d = try parseDouble(s, ctx)
                return d.isFinite ? Int64(exactly: d.rounded(.towardZero)) ?? 0 : 0
            })
        }
        if to == .float32 {
            return Tensor(shape: x.shape, try strings.map { s -> Float in
                if let v = Float(trim(s)) { return v }
                return Float(try parseDouble(s, ctx))
            })
        }
        return encode(try strings.map { try parseDouble($0, ctx) }, to: to, shape: x.shape, options)
    }

    /// `s` as a `Double`, accepting any capitalisation of `nan`, `inf` and `infinity`.
    static func parseDouble(_ s: String, _ ctx: KernelContext) throws -> Double {
        let t = trim(s)
        if let v = Double(t) { return v }
        var body = Substring(t.lowercased())
        var negative = false
        if let first = body.first, first == "+" || first == "-" {
            negative = first == "-"
            body = body.dropFirst()
        }
        switch body {
        case "nan": return .nan
        case "inf", "infinity": return negative ? -.infinity : .infinity
        default: throw ctx.fail("cannot read \"\(s)\" as a number")
        }
    }

    /// `s` without leading and trailing blanks.
    static func trim(_ s: String) -> String {
        var t = Substring(s)
        while let c = t.first, c == " " || c == "\t" || c == "\n" { t = t.dropFirst() }
        while let c = t.last, c == " " || c == "\t" || c == "\n" { t = t.dropLast() }
        return String(t)
    }
}
