#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR

/// A JSON value as the tree importers read it, from text JSON or from Universal Binary JSON (UBJSON,
/// XGBoost's `.ubj`). Typed numeric arrays of UBJSON stay packed (`numbers`).
indirect enum TreeJSON {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([TreeJSON])
    /// A packed array of numbers (UBJSON typed arrays; JSON arrays of numbers).
    case numbers([Double])
    case object([String: TreeJSON])

    /// Member `key` of an object.
    subscript(key: String) -> TreeJSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The value as a number (numbers, booleans, and strings that hold a number, as XGBoost writes parameters).
    var double: Double? {
        switch self {
        case .number(let d): return d
        case .bool(let b): return b ? 1 : 0
        case .string(let s): return Double(s.trimmingWhitespace)
        default: return nil
        }
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The value as an array of numbers (booleans count as 0 and 1).
    var doubles: [Double]? {
        switch self {
        case .numbers(let n): return n
        case .array(let items):
            var out: [Double] = []
            out.reserveCapacity(items.count)
            for item in items {
                switch item {
                case .number(let d): out.append(d)
                case .bool(let b): out.append(b ? 1 : 0)
                default: return nil
                }
            }
            return out
        default: return nil
        }
    }

    var array: [TreeJSON]? {
        switch self {
        case .array(let a): return a
        case .numbers(let n): return n.map { .number($0) }
        default: return nil
        }
    }
}

extension String {
    var trimmingWhitespace: Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\n" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" || c == "\r" { s.removeLast() }
        return s
    }
}

/// Reads text JSON or UBJSON from bytes, with a depth limit; errors name the source and the byte offset.
struct TreeJSONReader {
    let bytes: UnsafeRawBufferPointer
    let source: String
    var position = 0
    var depth = 0
    static let maxDepth = 64

    init(bytes: UnsafeRawBufferPointer, source: String) {
        self.bytes = bytes
        self.source = source
    }

    func fail(_ message: String) -> KilnError {
        KilnError(.invalidModel, "\(source): \(message) at byte \(position)")
    }

    // MARK: text JSON

    /// Parses the whole buffer as text JSON.
    mutating func parseJSON() throws -> TreeJSON {
        let value = try jsonValue()
        skipSpace()
        guard position == bytes.count else { throw fail("unexpected data after the JSON value") }
        return value
    }

    mutating func skipSpace() {
        while position < bytes.count {
            let c = bytes[position]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { position += 1 } else { break }
        }
    }

    mutating func expect(_ c: UInt8) throws {
        skipSpace()
        guard position < bytes.count, bytes[position] == c else { throw fail("expected '\(Character(Unicode.Scalar(c)))'") }
        position += 1
    }

    mutating func jsonValue() throws -> TreeJSON {
        skipSpace()
        guard position < bytes.count else { throw fail("unexpected end of JSON") }
        switch bytes[position] {
        case UInt8(ascii: "{"):
            depth += 1
            defer { depth -= 1 }
            guard depth <= Self.maxDepth else { throw fail("JSON nested deeper than \(Self.maxDepth)") }
            position += 1
            var object: [String: TreeJSON] = [:]
            skipSpace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "}") { position += 1; return .object(object) }
            while true {
                skipSpace()
                let key = try jsonString()
                try expect(UInt8(ascii: ":"))
                object[key] = try jsonValue()
                skipSpace()
                guard position < bytes.count else { throw fail("unterminated object") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(object) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            depth += 1
            defer { depth -= 1 }
            guard depth <= Self.maxDepth else { throw fail("JSON nested deeper than \(Self.maxDepth)") }
            position += 1
            var items: [TreeJSON] = []
            var numbers: [Double] = []
            var allNumbers = true
            skipSpace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "]") { position += 1; return .array([]) }
            while true {
                let item = try jsonValue()
                if allNumbers, case .number(let d) = item { numbers.append(d) } else {
                    if allNumbers { items = numbers.map { .number($0) }; allNumbers = false }
                    items.append(item)
                }
                skipSpace()
                guard position < bytes.count else { throw fail("unterminated array") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return allNumbers ? .numbers(numbers) : .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try jsonString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            return .number(try jsonNumber())
        }
    }

    mutating func literal(_ word: String) throws {
        for c in word.utf8 {
            guard position < bytes.count, bytes[position] == c else { throw fail("invalid literal") }
            position += 1
        }
    }

    mutating func jsonNumber() throws -> Double {
        let start = position
        while position < bytes.count {
            let c = bytes[position]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".")
                || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || c == UInt8(ascii: "I") || c == UInt8(ascii: "n")
                || c == UInt8(ascii: "f") || c == UInt8(ascii: "i") || c == UInt8(ascii: "t") || c == UInt8(ascii: "y")
                || c == UInt8(ascii: "N") || c == UInt8(ascii: "a") {
                position += 1
            } else { break }
        }
        let length = position - start
        guard length > 0, length < 64 else { position = start; throw fail("invalid JSON value") }
        return try withUnsafeTemporaryAllocation(of: CChar.self, capacity: 65) { buffer -> Double in
            for k in 0..<length { buffer[k] = CChar(bitPattern: bytes[start + k]) }
            buffer[length] = 0
            var end: UnsafeMutablePointer<CChar>? = nil
            let value = strtod(buffer.baseAddress!, &end)
            guard let end, end - buffer.baseAddress! == length else { position = start; throw fail("invalid number") }
            return value
        }
    }

    mutating func jsonString() throws -> String {
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw fail("expected a string") }
        position += 1
        var out: [UInt8] = []
        while true {
            guard position < bytes.count else { throw fail("unterminated string") }
            let c = bytes[position]
            position += 1
            if c == UInt8(ascii: "\"") { break }
            if c == UInt8(ascii: "\\") {
                guard position < bytes.count else { throw fail("unterminated string") }
                let e = bytes[position]
                position += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    guard position + 4 <= bytes.count, let code = UInt32(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<(position + 4)]), as: UTF8.self), radix: 16) else {
                        throw fail("invalid \\u escape")
                    }
                    position += 4
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(code) ?? "?")).utf8))
                default: out.append(e)
                }
            } else {
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: UBJSON

    /// Parses the whole buffer as UBJSON (draft 12, with XGBoost's optimized typed containers).
    mutating func parseUBJSON() throws -> TreeJSON {
        let value = try ubValue(marker: try byte())
        return value
    }

    mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw fail("unexpected end of UBJSON") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func bigEndian(_ count: Int) throws -> UInt64 {
        guard position + count <= bytes.count else { throw fail("unexpected end of UBJSON") }
        var v: UInt64 = 0
        for k in 0..<count { v = v << 8 | UInt64(bytes[position + k]) }
        position += count
        return v
    }

    /// A UBJSON number of type `marker`, or nil when `marker` is not a numeric type.
    mutating func ubNumber(_ marker: UInt8) throws -> Double? {
        switch marker {
        case UInt8(ascii: "i"): return Double(Int8(bitPattern: UInt8(try bigEndian(1))))
        case UInt8(ascii: "U"): return Double(try bigEndian(1))
        case UInt8(ascii: "I"): return Double(Int16(bitPattern: UInt16(try bigEndian(2))))
        case UInt8(ascii: "l"): return Double(Int32(bitPattern: UInt32(try bigEndian(4))))
        case UInt8(ascii: "L"): return Double(Int64(bitPattern: try bigEndian(8)))
        case UInt8(ascii: "d"): return Double(Float(bitPattern: UInt32(try bigEndian(4))))
        case UInt8(ascii: "D"): return Double(bitPattern: try bigEndian(8))
        default: return nil
        }
    }

    mutating func ubCount() throws -> Int {
        let marker = try byte()
        guard let n = try ubNumber(marker), n >= 0, n == n.rounded(), n <= Double(bytes.count - position) * 8 + 64 else {
            throw fail("invalid UBJSON length")
        }
        return Int(n)
    }

    mutating func ubString() throws -> String {
        let n = try ubCount()
        guard position + n <= bytes.count else { throw fail("UBJSON string runs past the end") }
        defer { position += n }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)]), as: UTF8.self)
    }

    mutating func ubValue(marker: UInt8) throws -> TreeJSON {
        if let n = try ubNumber(marker) { return .number(n) }
        switch marker {
        case UInt8(ascii: "Z"): return .null
        case UInt8(ascii: "T"): return .bool(true)
        case UInt8(ascii: "F"): return .bool(false)
        case UInt8(ascii: "C"): return .string(String(Character(Unicode.Scalar(try byte()))))
        case UInt8(ascii: "S"), UInt8(ascii: "H"): return .string(try ubString())
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            depth += 1
            defer { depth -= 1 }
            guard depth <= Self.maxDepth else { throw fail("UBJSON nested deeper than \(Self.maxDepth)") }
            let isObject = marker == UInt8(ascii: "{")
            var type: UInt8? = nil
            var count: Int? = nil
            if position < bytes.count, bytes[position] == UInt8(ascii: "$") { position += 1; type = try byte() }
            if position < bytes.count, bytes[position] == UInt8(ascii: "#") { position += 1; count = try ubCount() }
            if type != nil && count == nil { throw fail("UBJSON typed container without a count") }
            if isObject {
                var object: [String: TreeJSON] = [:]
                var k = 0
                while true {
                    if let count { if k == count { break } } else if try peekEnd(UInt8(ascii: "}")) { break }
                    let key = try ubString()
                    object[key] = try ubValue(marker: type ?? (try byte()))
                    k += 1
                }
                return .object(object)
            }
            if let type, let count, try isNumericType(type) {
                var numbers: [Double] = []
                numbers.reserveCapacity(count)
                for _ in 0..<count { numbers.append(try ubNumber(type)!) }
                return .numbers(numbers)
            }
            var items: [TreeJSON] = []
            var k = 0
            while true {
                if let count { if k == count { break } } else if try peekEnd(UInt8(ascii: "]")) { break }
                items.append(try ubValue(marker: type ?? (try byte())))
                k += 1
            }
            return .array(items)
        default:
            position -= 1
            throw fail("unknown UBJSON marker \(marker)")
        }
    }

    func isNumericType(_ t: UInt8) throws -> Bool {
        [UInt8(ascii: "i"), UInt8(ascii: "U"), UInt8(ascii: "I"), UInt8(ascii: "l"), UInt8(ascii: "L"),
         UInt8(ascii: "d"), UInt8(ascii: "D")].contains(t)
    }

    mutating func peekEnd(_ end: UInt8) throws -> Bool {
        guard position < bytes.count else { throw fail("unterminated UBJSON container") }
        if bytes[position] == end { position += 1; return true }
        return false
    }
}
