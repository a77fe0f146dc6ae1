import KilnIR
import KilnTestSupport
import Testing
@testable import KilnFormat

/// Corrupted artifacts must end in a `KilnError`, or in a read that is still consistent; never a crash or a hang.
@Suite struct MutationTests {
    /// Small valid artifacts: zstd and uncompressed, with a payload and an unknown section.
    static func bases() throws -> [[UInt8]] {
        let small = Model(graph: Graph(
            name: "g", inputs: [Value(name: "x", type: .tensor(TensorType(.float32, [.symbol("n"), .fixed(4)])))],
            outputs: [Value(name: "y", type: .tensor(TensorType(.float32, [.symbol("n"), .fixed(4)])))],
            initializers: ["w": patterned(.float32, shape: [300]), "b": patterned(.bool, shape: [4]), "s": patterned(.string, shape: [2])],
            nodes: [Node(name: "add", op: OpID("", "Add"), inputs: ["x", "w"], outputs: ["y"],
                         attributes: ["t": .tensor(patterned(.int64, shape: [3])), "f": .floats([1, 2]),
                                      "g": .graph(Graph(name: "sub", outputs: [Value(name: "o", type: .sequence(.tensor(TensorType(.int8, nil))))]))])]))
        var out: [[UInt8]] = []
        for codec in [SectionCodec.zstd, .none] {
            var writer = ArtifactWriter(model: small)
            writer.codec = codec
            _ = writer.addPayload(Array(0..<200))
            out.append(try writer.serialize())
        }
        return out
    }

    /// Reads `bytes` as an artifact and everything in it. Returns true when the read succeeded.
    @discardableResult
    static func readFully(_ bytes: [UInt8]) -> Bool {
        do {
            let artifact = try Artifact(bytes: bytes)
            let model = try artifact.model()
            for i in artifact.sections.indices where artifact.sections[i].kind != nil { _ = try artifact.section(i) }
            // Consistent: printable, every tensor's data readable.
            _ = model.printed()
            for (_, t) in allTensors(model.graph) where t.dtype != .string { _ = t.rawBytes!.reduce(0, &+) }
            return true
        } catch let error as KilnError {
            #expect(error.code == .invalidArtifact || error.code == .versionMismatch, "\(error)")
            #expect(!error.message.isEmpty)
            return false
        } catch {
            Issue.record("not a KilnError: \(error)")
            return false
        }
    }

    /// Offsets of every header field, table field and section boundary of `bytes`.
    static func boundaries(_ bytes: [UInt8]) -> [Int] {
        var out = [0, 8, 10, 12, 16, 20, 24, 28, 32]
        let artifact = try! Artifact(bytes: bytes)
        for (i, s) in artifact.sections.enumerated() {
            let at = 32 + i * 48
            out += [at, at + 4, at + 8, at + 16, at + 24, at + 32, at + 36, at + 40, at + 48]
            out += [Int(s.offset), Int(s.offset + s.storedLength)]
        }
        return out
    }

    @Test func tenThousandMutationsNeverCrash() throws {
        let start = now()
        var random = SplitMix64(seed: 42)
        var mutations = 0, survived = 0
        for base in try Self.bases() {
            #expect(Self.readFully(base))
            let marks = Self.boundaries(base)
            // Truncation at and around every boundary.
            for mark in marks {
                for delta in -3...3 where mark + delta >= 0 && mark + delta < base.count {
                    if Self.readFully(Array(base[..<(mark + delta)])) { survived += 1 }
                    mutations += 1
                }
            }
            // Huge and edge values in every header and table field, with and without fixed-up checksums.
            let values: [UInt64] = [0, 1, 47, 48, 49, 63, 64, UInt64(base.count) - 1, UInt64(base.count), UInt64(base.count) + 1,
                                    0x7FFF_FFFF, 0xFFFF_FFFF, 0x1_0000_0000, UInt64(Int.max), UInt64.max - 1, UInt64.max]
            var fields: [(offset: Int, width: Int)] = [(8, 2), (10, 2), (12, 4), (16, 4), (20, 4), (24, 4)]
            let sectionCount = Int(base.withUnsafeBytes { $0.loadLE(16, as: UInt32.self) })
            for i in 0..<sectionCount {
                let at = 32 + i * 48
                fields += [(at, 4), (at + 4, 4), (at + 8, 8), (at + 16, 8), (at + 24, 8), (at + 32, 4), (at + 36, 4)]
            }
            for field in fields {
                for value in values {
                    for resealed in [false, true] {
                        var bytes = base
                        if field.width == 2 { bytes.storeLE(UInt16(truncatingIfNeeded: value), at: field.offset) }
                        if field.width == 4 { bytes.storeLE(UInt32(truncatingIfNeeded: value), at: field.offset) }
                        if field.width == 8 { bytes.storeLE(value, at: field.offset) }
                        if resealed { reseal(&bytes) }
                        if Self.readFully(bytes) { survived += 1 }
                        mutations += 1
                    }
                }
            }
            // Random bit flips anywhere, some resealed so that the decoders behind the checksums see them.
            for round in 0..<5000 {
                var bytes = base
                for _ in 0..<(1 + random.below(4)) {
                    let at = random.below(bytes.count)
                    bytes[at] ^= UInt8(1) << UInt8(random.below(8))
                }
                if round % 2 == 1 { reseal(&bytes) }
                if Self.readFully(bytes) { survived += 1 }
                mutations += 1
            }
            // Random bytes written over the manifest (uncompressed bases reach the protobuf and IR decoders).
            let manifest = try Artifact(bytes: base).sections[0]
            for _ in 0..<1500 {
                var bytes = base
                for _ in 0..<(1 + random.below(3)) {
                    let at = Int(manifest.offset) + random.below(Int(manifest.storedLength))
                    bytes[at] = UInt8(truncatingIfNeeded: random.next())
                }
                reseal(&bytes)
                if Self.readFully(bytes) { survived += 1 }
                mutations += 1
            }
        }
        let seconds = now() - start
        print("KilnFormatTests: \(mutations) mutations, \(survived) read consistently, in \(seconds) s")
        #expect(mutations >= 10_000)
    }

    @Test func aTruncatedWeightsSectionNamesTheSection() throws {
        let base = try Self.bases()[1]
        let artifact = try Artifact(bytes: base)
        var bytes = base
        bytes[Int(artifact.sections[1].offset) + 5] ^= 0xFF
        let damaged = try Artifact(bytes: bytes)  // weights are checked lazily
        #expect(throws: KilnError(.invalidArtifact, "<memory>: section 1 (weights) checksum mismatch (the stored bytes are corrupt)")) {
            try damaged.model()
        }
        #expect(throws: KilnError.self) { try Artifact(bytes: Array(base.prefix(base.count - 1))) }
    }
}
