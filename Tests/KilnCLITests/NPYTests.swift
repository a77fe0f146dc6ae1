import Foundation
import Kiln
import KilnTooling
import Testing
import KilnTestSupport

/// Reading and writing NumPy `.npy` files.
@Suite struct NPYTests {
    /// The bytes of a hex string.
    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8)
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16)! }
    }

    /// A header padded NumPy-style, preceded by the magic string and a 1.0 preamble, followed by `data`.
    static func file(header: String, data: [UInt8] = [], version: UInt8 = 1) -> [UInt8] {
        var h = Array(header.utf8)
        let preamble = version == 1 ? 10 : 12
        while (preamble + h.count + 1) % 64 != 0 { h.append(UInt8(ascii: " ")) }
        h.append(UInt8(ascii: "\n"))
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
        if version == 1 {
            out += [UInt8(h.count & 0xFF), UInt8(h.count >> 8)]
        } else {
            out += [UInt8(h.count & 0xFF), UInt8(h.count >> 8), 0, 0]
        }
        return out + h + data
    }

    /// One tensor of every dtype `.npy` holds, for round trips.
    static let samples: [Tensor] = [
        Tensor(dtype: .float16, shape: [2, 2], doubles: [1, -0.5, 65504, 0]),
        Tensor(shape: [2, 3], [Float](arrayLiteral: 1, -2.5, .infinity, -.infinity, 0, 3e-38)),
        Tensor(shape: [3], [Double](arrayLiteral: 1e300, -0.0, .pi)),
        Tensor(shape: [4], [Int8](arrayLiteral: -128, 127, 0, -1)),
        Tensor(shape: [2], [Int16](arrayLiteral: .min, .max)),
        Tensor(shape: [2, 1], [Int32](arrayLiteral: .min, .max)),
        Tensor(shape: [1, 2, 1], [Int64](arrayLiteral: .min, .max)),
        Tensor(shape: [3], [UInt8](arrayLiteral: 0, 128, 255)),
        Tensor(shape: [2], [UInt16](arrayLiteral: 0, .max)),
        Tensor(shape: [2], [UInt32](arrayLiteral: 1, .max)),
        Tensor(shape: [2], [UInt64](arrayLiteral: 1, .max)),
        Tensor(shape: [2, 2], [Bool](arrayLiteral: true, false, false, true)),
        Tensor(dtype: .complex64, shape: [2], bitPatterns: [UInt64](arrayLiteral: 0x3F80_0000_4000_0000, 7)),
        Tensor(scalar: Float(3.5)),
        Tensor(shape: [0, 3], [Float]()),
    ]

    @Test(arguments: samples)
    func roundTrip(_ tensor: Tensor) throws {
        let encoded = try NPY.encode(tensor)
        #expect(encoded.count % 64 == tensor.rawBytes!.count % 64, "the data starts at a multiple of 64 bytes")
        let decoded = try NPY.decode(encoded)
        #expect(decoded.dtype == tensor.dtype)
        #expect(decoded.shape == tensor.shape)
        #expect(Array(decoded.rawBytes!) == Array(tensor.rawBytes!))
    }

    @Test func roundTripThroughFiles() throws {
        try withTemporaryDirectory("kiln-npy-tests") { folder in
            let path = folder + "/tensor.npy"
            let tensor = Tensor(shape: [2, 2], [Double](arrayLiteral: 1, 2, 3, 4))
            try NPY.write(tensor, to: path)
            #expect(try NPY.read(path: path).elements(as: Double.self) == [1, 2, 3, 4])
        }
    }

    @Test func readsFilesNumPyWrote() throws {
        // np.save of np.array([[1,-2,3],[4,5,-6]], dtype='<i2') (format 1.0).
        let v1 = try NPY.decode(Self.bytes("934e554d5059010076007b276465736372273a20273c6932272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2033292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a0100feff030004000500faff"))
        #expect(v1.dtype == .int16 && v1.shape == [2, 3])
        #expect(v1.elements(as: Int16.self) == [1, -2, 3, 4, 5, -6])
        // Format 2.0: np.array([1.5, -2.25]).
        let v2 = try NPY.decode(Self.bytes("934e554d50590200740000007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000000000000f83f00000000000002c0"))
        #expect(v2.elements(as: Double.self) == [1.5, -2.25])
        // Format 3.0: np.array([7, 8, 9], dtype='u1').
        let v3 = try NPY.decode(Self.bytes("934e554d50590300740000007b276465736372273a20277c7531272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028332c292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a070809"))
        #expect(v3.dtype == .uint8 && v3.elements(as: UInt8.self) == [7, 8, 9])
        // A float32 scalar and a bool vector.
        let scalar = try NPY.decode(Self.bytes("934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a00006040"))
        #expect(scalar.shape == [] && scalar.elements(as: Float.self) == [3.5])
        let flags = try NPY.decode(Self.bytes("934e554d5059010076007b276465736372273a20277c6231272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028332c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a010001"))
        #expect(flags.elements(as: Bool.self) == [true, false, true])
    }

    @Test func writesTheHeaderNumPyExpects() throws {
        let encoded = try NPY.encode(Tensor(shape: [2, 3], [Float](repeating: 0, count: 6)))
        let headerLength = Int(encoded[8]) | Int(encoded[9]) << 8
        let header = String(decoding: encoded[10..<(10 + headerLength)], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"))
        #expect(header.hasSuffix("\n"))
        #expect(Array(encoded[0..<8]) == [0x93] + Array("NUMPY".utf8) + [1, 0])
        let vector = try NPY.encode(Tensor(shape: [5], [Int64](repeating: 0, count: 5)))
        #expect(String(decoding: vector[10..<70], as: UTF8.self).contains("'shape': (5,)"))
    }

    @Test func toleratesHeaderVariants() throws {
        // Keys in another order, double quotes, no trailing comma, a Python 2 long suffix.
        let t = try NPY.decode(Self.file(header: "{\"shape\": (2L,), \"fortran_order\": False, \"descr\": \"<u2\"}", data: [1, 0, 2, 0]))
        #expect(t.elements(as: UInt16.self) == [1, 2])
    }

    @Test func boolBytesOtherThanOneAreTrue() throws {
        let t = try NPY.decode(Self.file(header: "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", data: [0, 2, 255]))
        #expect(t.elements(as: Bool.self) == [false, true, true])
    }

    /// Headers and files that must be rejected, with a word the message must contain.
    static let malformed: [(String, [UInt8], String)] = [
        ("empty", [], "not a NumPy"),
        ("bad magic", Array("PK\u{3}\u{4}0123456789".utf8), "not a NumPy"),
        ("version 4", [0x93] + Array("NUMPY".utf8) + [4, 0, 0, 0], "version 4.0"),
        ("header longer than file", [0x93] + Array("NUMPY".utf8) + [1, 0, 0xFF, 0x00] + Array("{'descr'".utf8), "truncated header"),
        ("v2 preamble cut", [0x93] + Array("NUMPY".utf8) + [2, 0, 1, 0], "truncated header"),
        ("not a dict", file(header: "['<f4', False, (1,)]", data: [0, 0, 0, 0]), "malformed header"),
        ("missing shape", file(header: "{'descr': '<f4', 'fortran_order': False}"), "no 'shape'"),
        ("missing descr", file(header: "{'fortran_order': False, 'shape': ()}"), "no 'descr'"),
        ("unknown key", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}"), "unexpected key"),
        ("fortran order", file(header: "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", data: Array(repeating: 0, count: 16)), "Fortran"),
        ("big endian", file(header: "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", data: [0, 0, 0, 0]), "unsupported element type '>f4'"),
        ("unicode strings", file(header: "{'descr': '<U5', 'fortran_order': False, 'shape': (1,), }", data: Array(repeating: 0, count: 20)), "unsupported element type '<U5'"),
        ("object", file(header: "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", data: Array(repeating: 0, count: 8)), "unsupported element type"),
        ("structured", file(header: "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", data: [0, 0, 0, 0]), "structured"),
        ("negative dim", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"), "shape"),
        ("non-integer dim", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }"), "shape"),
        ("unterminated string", file(header: "{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }"), "malformed header"),
        ("bad bool", file(header: "{'descr': '<f4', 'fortran_order': false, 'shape': (1,), }"), "fortran_order"),
        ("huge shape", file(header: "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }"), "too many elements"),
        ("truncated data", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", data: Array(repeating: 0, count: 15)), "truncated data"),
        ("extra data", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", data: Array(repeating: 0, count: 5)), "unexpected bytes"),
        ("trailing text", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } junk", data: [0, 0, 0, 0]), "after '}'"),
        ("invalid UTF-8 in 3.0", file(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\u{0}", data: [0, 0, 0, 0], version: 3)
            .enumerated().map { $0.offset == 70 ? 0xFF : $0.element }, "UTF-8"),
    ]

    @Test(arguments: malformed.indices)
    func rejectsMalformedFiles(_ index: Int) {
        let (label, bytes, expected) = Self.malformed[index]
        do {
            let t = try NPY.decode(bytes, source: "bad.npy")
            Issue.record("\(label): decoded as \(t)")
        } catch let error as KilnError {
            #expect(error.code == .invalidArgument, "\(label)")
            #expect(error.message.contains("'bad.npy'"), "\(label): \(error.message)")
            #expect(error.message.contains(expected), "\(label): \(error.message)")
        } catch {
            Issue.record("\(label): unexpected error \(error)")
        }
    }

    @Test func truncationsAndMutationsNeverCrash() throws {
        let valid = try NPY.encode(Tensor(shape: [2, 3], [Int32](arrayLiteral: 1, 2, 3, 4, 5, 6)))
        for length in 0..<valid.count {
            #expect(throws: KilnError.self) { try NPY.decode(Array(valid[0..<length])) }
        }
        var generator = SystemRandomNumberGenerator()
        for position in 0..<min(valid.count, 80) {
            for value: UInt8 in [0, 0x20, 0x27, 0x28, 0x29, 0x2C, 0x30, 0x39, 0x7B, 0x7D, 0xFF, UInt8.random(in: 0...255, using: &generator)] {
                var mutated = valid
                mutated[position] = value
                do { _ = try NPY.decode(mutated) } catch is KilnError {} catch { Issue.record("unexpected error \(error)") }
            }
        }
    }

    @Test func unsupportedDTypesCannotBeWritten() {
        for tensor in [Tensor(dtype: .bfloat16, shape: [1], doubles: [1]), Tensor(shape: [1], strings: ["a"]),
                       Tensor(dtype: .int4, shape: [1], int64s: [1])] {
            #expect(throws: KilnError.self) { try NPY.encode(tensor, source: "out.npy") }
        }
    }

    @Test func readingAMissingFileIsAnIOError() {
        do {
            _ = try NPY.read(path: "/nonexistent/kiln/x.npy")
            Issue.record("read a missing file")
        } catch let error as KilnError {
            #expect(error.code == .io)
            #expect(error.message.contains("/nonexistent/kiln/x.npy"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
