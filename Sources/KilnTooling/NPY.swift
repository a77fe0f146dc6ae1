import KilnIR

/// Reads and writes NumPy `.npy` files (format versions 1.0, 2.0 and 3.0) as Kiln tensors.
///
/// Supported element types are the little-endian numeric ones NumPy writes: `<f2 <f4 <f8`,
/// `<i1 … <i8`, `<u1 … <u8`, `|b1`, and the complex types `<c8 <c16`. Only C (row-major) order is
/// supported: a Fortran-order file is an error. Every problem with a file (a bad magic string, a
/// malformed header, an unsupported type, too little or too much data) is a `.invalidArgument`
/// error that names the file; no input makes this code crash.
public enum NPY {
    /// The magic string every `.npy` file starts with.
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// The tensor stored in the `.npy` file at `path`.
    public static func read(path: String) throws -> Tensor {
        try decode(FileSystem.read(path), source: path)
    }

    /// Writes `tensor` to `path` as a `.npy` file (atomically: a failure leaves no partial file).
    public static func write(_ tensor: Tensor, to path: String) throws {
        try FileSystem.writeAtomically(encode(tensor, source: path), to: path)
    }

    /// The NumPy type string (`<f4`) for `dtype`, or nil when `.npy` cannot hold it.
    public static func typeString(for dtype: DType) -> String? {
        switch dtype {
        case .float16: "<f2"
        case .float32: "<f4"
        case .float64: "<f8"
        case .int8: "|i1"
        case .int16: "<i2"
        case .int32: "<i4"
        case .int64: "<i8"
        case .uint8: "|u1"
        case .uint16: "<u2"
        case .uint32: "<u4"
        case .uint64: "<u8"
        case .bool: "|b1"
        case .complex64: "<c8"
        case .complex128: "<c16"
        default: nil
        }
    }

    /// The element type for NumPy type string `descr`, or nil when it is not supported.
    /// One-byte types may carry any byte-order mark (`|`, `<`, `=`); wider ones must be little-endian.
    public static func dtype(forTypeString descr: String) -> DType? {
        guard let order = descr.first, "<|=".contains(order) else { return nil }
        let code = descr.dropFirst()
        let oneByte: [Substring: DType] = ["i1": .int8, "u1": .uint8, "b1": .bool]
        if let t = oneByte[code] { return t }
        guard order == "<" else { return nil }
        let wide: [Substring: DType] = [
            "f2": .float16, "f4": .float32, "f8": .float64,
            "i2": .int16, "i4": .int32, "i8": .int64,
            "u2": .uint16, "u4": .uint32, "u8": .uint64,
            "c8": .complex64, "c16": .complex128,
        ]
        return wide[code]
    }

    // MARK: - Decoding

    /// The tensor in `bytes`, the contents of a `.npy` file; `source` names the file in errors.
    public static func decode(_ bytes: [UInt8], source: String = "<memory>") throws -> Tensor {
        func fail(_ problem: String) -> KilnError { KilnError(.invalidArgument, "'\(source)': \(problem)") }

        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw fail("not a NumPy .npy file (no \\x93NUMPY magic string)")
        }
        let major = Int(bytes[6]), minor = Int(bytes[7])
        let headerStart: Int
        let headerLength: Int
        switch major {
        case 1:
            headerStart = 10
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        case 2, 3:
            guard bytes.count >= 12 else { throw fail("truncated header (file has \(bytes.count) bytes)") }
            headerStart = 12
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        default:
            throw fail("unsupported .npy format version \(major).\(minor) (supported: 1.0, 2.0, 3.0)")
        }
        guard headerLength <= bytes.count - headerStart else {
            throw fail("truncated header: it claims \(headerLength) bytes, the file has \(bytes.count - headerStart) after the preamble")
        }
        let headerBytes = bytes[headerStart..<(headerStart + headerLength)]
        let headerText: String
        if major == 3 {
            guard let text = String(validating: headerBytes, as: UTF8.self) else { throw fail("header is not valid UTF-8") }
            headerText = text
        } else {
            // Latin-1: every byte is the code point of the same number.
            headerText = String(String.UnicodeScalarView(headerBytes.map { Unicode.Scalar($0) }))
        }
        let header = try parseHeader(headerText, fail: fail)

        guard let dtype = dtype(forTypeString: header.descr) else {
            throw fail("unsupported element type '\(header.descr)' (supported: little-endian <f2 <f4 <f8 <i1..<i8 <u1..<u8 |b1 <c8 <c16)")
        }
        if header.fortranOrder {
            throw fail("Fortran-order arrays are not supported; save the array in C order (np.ascontiguousarray)")
        }
        var count = 1
        for dim in header.shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw fail("shape \(header.shape) has too many elements") }
            count = product
        }
        let width = dtype.byteWidth!
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: width)
        guard !overflow else { throw fail("shape \(header.shape) has too many elements") }
        let dataStart = headerStart + headerLength
        let available = bytes.count - dataStart
        guard available >= byteCount else {
            throw fail("truncated data: shape \(header.shape) of '\(header.descr)' needs \(byteCount) bytes, the file has \(available)")
        }
        guard available == byteCount else {
            throw fail("\(available - byteCount) unexpected bytes after the data of shape \(header.shape) of '\(header.descr)'")
        }
        let storage = try TensorStorage(byteCount: byteCount, what: "the data of \(source)") { destination in
            guard byteCount > 0 else { return }
            bytes.withUnsafeBytes { source in
                destination.baseAddress!.copyMemory(from: source.baseAddress! + dataStart, byteCount: byteCount)
            }
            if dtype == .bool {
                // NumPy writes 0/1, but any non-zero byte means true; a Swift Bool must be exactly 0 or 1.
                for i in 0..<byteCount where destination[i] > 1 { destination[i] = 1 }
            }
        }
        return Tensor(dtype: dtype, shape: header.shape, storage: storage)
    }

    /// The fields of a `.npy` header.
    struct Header {
        var descr: String
        var fortranOrder: Bool
        var shape: [Int]
    }

    /// Parses the header, a Python dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
    static func parseHeader(_ text: String, fail: (String) -> KilnError) throws -> Header {
        var scanner = LiteralScanner(Array(text.unicodeScalars))
        var descr: String?
        var fortranOrder: Bool?
        var shape: [Int]?
        func malformed(_ what: String) -> KilnError {
            fail("malformed header (\(what)): \(text.trimmingTrailingWhitespace().prefix(200))")
        }

        scanner.skipSpace()
        guard scanner.take("{") else { throw malformed("expected '{'") }
        while true {
            scanner.skipSpace()
            if scanner.take("}") { break }
            guard let key = scanner.string() else { throw malformed("expected a quoted key") }
            scanner.skipSpace()
            guard scanner.take(":") else { throw malformed("expected ':' after '\(key)'") }
            scanner.skipSpace()
            switch key {
            case "descr":
                guard let value = scanner.string() else {
                    throw fail("unsupported element type: 'descr' is not a simple type string (structured arrays are not supported)")
                }
                descr = value
            case "fortran_order":
                if scanner.take("True") { fortranOrder = true } else if scanner.take("False") { fortranOrder = false } else {
                    throw malformed("'fortran_order' is not True or False")
                }
            case "shape":
                guard let dims = scanner.tuple() else { throw malformed("'shape' is not a tuple of non-negative integers") }
                shape = dims
            default:
                throw malformed("unexpected key '\(key)'")
            }
            scanner.skipSpace()
            if scanner.take(",") { continue }
            scanner.skipSpace()
            guard scanner.take("}") else { throw malformed("expected ',' or '}'") }
            break
        }
        scanner.skipSpace()
        guard scanner.atEnd else { throw malformed("unexpected text after '}'") }
        guard let descr else { throw malformed("no 'descr'") }
        guard let fortranOrder else { throw malformed("no 'fortran_order'") }
        guard let shape else { throw malformed("no 'shape'") }
        return Header(descr: descr, fortranOrder: fortranOrder, shape: shape)
    }

    /// A cursor over the header text that reads the few Python literals a header holds.
    struct LiteralScanner {
        let scalars: [Unicode.Scalar]
        var position = 0

        init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

        var atEnd: Bool { position >= scalars.count }

        mutating func skipSpace() {
            while position < scalars.count, scalars[position].properties.isWhitespace { position += 1 }
        }

        /// Consumes `word` if the text continues with it.
        mutating func take(_ word: String) -> Bool {
            let w = Array(word.unicodeScalars)
            guard position + w.count <= scalars.count, Array(scalars[position..<(position + w.count)]) == w else { return false }
            position += w.count
            return true
        }

        /// A single- or double-quoted string without escapes.
        mutating func string() -> String? {
            guard position < scalars.count, scalars[position] == "'" || scalars[position] == "\"" else { return nil }
            let quote = scalars[position]
            var end = position + 1
            while end < scalars.count, scalars[end] != quote {
                if scalars[end] == "\\" { return nil }
                end += 1
            }
            guard end < scalars.count else { return nil }
            let value = String(String.UnicodeScalarView(scalars[(position + 1)..<end]))
            position = end + 1
            return value
        }

        /// A tuple of non-negative integers: `()`, `(3,)`, `(2, 3)` (a Python 2 `L` suffix is accepted).
        mutating func tuple() -> [Int]? {
            guard take("(") else { return nil }
            var values: [Int] = []
            while true {
                skipSpace()
                if take(")") { return values }
                var digits = ""
                while position < scalars.count, let d = scalars[position].properties.numericType, d == .decimal,
                      scalars[position].isASCII {
                    digits.unicodeScalars.append(scalars[position])
                    position += 1
                }
                guard let value = Int(digits) else { return nil }
                _ = take("L")
                values.append(value)
                skipSpace()
                if take(",") { continue }
                skipSpace()
                return take(")") ? values : nil
            }
        }
    }

    // MARK: - Encoding

    /// The bytes of a `.npy` file holding `tensor`; `source` names the destination in errors.
    /// Fails with `.invalidArgument` for element types `.npy` cannot hold (bfloat16, float8, int4, strings, …).
    public static func encode(_ tensor: Tensor, source: String = "<memory>") throws -> [UInt8] {
        guard let descr = typeString(for: tensor.dtype), let data = tensor.rawBytes else {
            throw KilnError(.invalidArgument, "'\(source)': a .npy file cannot hold element type \(tensor.dtype)")
        }
        let shape: String
        switch tensor.shape.count {
        case 0: shape = "()"
        case 1: shape = "(\(tensor.shape[0]),)"
        default: shape = "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        }
        var header = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }".utf8)
        // Pad with spaces and end with a newline so that the data starts at a multiple of 64 bytes.
        func paddedEnd(_ preamble: Int) -> Int { (preamble + header.count + 1 + 63) / 64 * 64 }
        // Version 1.0 has a 16-bit header length; a longer header (a tensor of very high rank) needs 2.0.
        let preamble = paddedEnd(10) - 10 <= Int(UInt16.max) ? 10 : 12
        let total = paddedEnd(preamble)
        header += Array(repeating: UInt8(ascii: " "), count: total - preamble - header.count - 1)
        header.append(UInt8(ascii: "\n"))

        var bytes = magic
        bytes.reserveCapacity(total + data.count)
        if preamble == 10 {
            bytes += [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)]
        } else {
            bytes += [2, 0] + (0..<4).map { UInt8(truncatingIfNeeded: header.count >> (8 * $0)) }
        }
        bytes += header
        bytes += data
        return bytes
    }
}

extension String {
    /// The string without trailing whitespace (for quoting headers in messages).
    fileprivate func trimmingTrailingWhitespace() -> Substring {
        var end = endIndex
        while end > startIndex, self[index(before: end)].isWhitespace { end = index(before: end) }
        return self[startIndex..<end]
    }
}
