import CKilnChecksum
import KilnIR
import KilnTestSupport
import Testing
@testable import KilnFormat

@Suite struct RoundTripTests {
    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
        // Incremental equals one-shot, across the 8-byte fast path.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let split = data.withUnsafeBytes { b in
            CRC32C.update(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<333])), UnsafeRawBufferPointer(rebasing: b[333...]))
        }
        #expect(split == CRC32C.checksum(data))
    }

    @Test func crc32cInstructionAndTableWalkAgree() {
        // Every length 0...70 at every start offset 0...7, then a large buffer: the CPU's crc32 instruction
        // (where there is one) and the portable table walk give the same value, and the known check value.
        var r = SplitMix64(seed: 5)
        let data = (0..<70_000).map { _ in UInt8(truncatingIfNeeded: r.below(256)) }
        data.withUnsafeBytes { b in
            #expect(kiln_crc32c_portable(0, Array("123456789".utf8), 9) == 0xE306_9283)
            for start in 0..<8 {
                for length in 0...70 {
                    let p = b.baseAddress! + start
                    #expect(kiln_crc32c(7, p, length) == kiln_crc32c_portable(7, p, length), "start \(start) length \(length)")
                }
            }
            #expect(kiln_crc32c(0, b.baseAddress!, b.count) == kiln_crc32c_portable(0, b.baseAddress!, b.count))
            // Around the instruction path's blocks of three 4 KiB lanes, joined by a shift table.
            for start in 0..<3 {
                for length in [12_287, 12_288, 12_289, 24_576, 24_583, 36_871] {
                    let p = b.baseAddress! + start
                    #expect(kiln_crc32c(9, p, length) == kiln_crc32c_portable(9, p, length), "start \(start) length \(length)")
                }
            }
        }
    }

    @Test(arguments: [SectionCodec.zstd, .none])
    func showcaseModelRoundTrips(codec: SectionCodec) throws {
        let model = showcaseModel()
        var writer = ArtifactWriter(model: model)
        writer.codec = codec
        let bytes = try writer.serialize()
        let artifact = try Artifact(bytes: bytes)
        #expect(artifact.formatVersion == (1, 0))
        #expect(artifact.sections.map(\.kind) == [.manifest, .weights])
        if codec == .zstd { #expect(artifact.sections.allSatisfy { $0.codec == .zstd }) }
        expectSame(model, try artifact.model(), "bytes/\(codec)")
        // Deterministic: the same model gives the same bytes, and so does the decoded model.
        #expect(try writer.serialize() == bytes)
        #expect(try ArtifactWriter(model: artifact.model()).withCodec(codec).serialize() == bytes)
    }

    @Test func largeTensorsGoToWeightsAlignedAndSmallOnesStayInline() throws {
        let model = showcaseModel()
        let artifact = try Artifact(bytes: ArtifactWriter(model: model).serialize())
        let initializers = artifact.manifest.model.graph.initializers
        #expect(initializers.map(\.name) == initializers.map(\.name).sorted())
        for t in initializers {
            if t.name.hasPrefix("large_") {
                guard case .ref(let ref)? = t.data else { Issue.record("\(t.name) is not a reference"); continue }
                #expect(ref.section == 1 && ref.offset % 64 == 0)
            } else if t.name.hasPrefix("small_") {
                if t.dtype == .string { #expect(t.strings.values.count == 6) } else { #expect(t.raw.count > 0) }
            }
        }
        let nodeAttributes = artifact.manifest.model.graph.nodes[0].attributes.map(\.name)
        #expect(nodeAttributes == nodeAttributes.sorted())
        // Weights come out 64-byte aligned in memory.
        let decoded = try artifact.model()
        let large = decoded.graph.initializers["large_f32"]!
        #expect(Int(bitPattern: large.rawBytes!.baseAddress!) % 64 == 0)
    }

    @Test func fileRoundTripMapsTheArtifact() throws {
        let model = showcaseModel()
        let folder = try temporaryDirectory("kiln-format-tests")
        defer { removeTemporaryDirectory(folder) }
        let path = folder + "/showcase.kiln"
        for codec in [SectionCodec.none, .zstd] {
            var writer = ArtifactWriter(model: model)
            writer.codec = codec
            var p = Kiln_Artifact_Partition()
            p.backend = "kiln.reference"
            let payload = writer.addPayload(Array(repeating: 7, count: 5000))
            p.payloadSection = payload
            writer.manifest.partitions = [p]
            writer.manifest.producer = .with { $0.name = "kiln"; $0.version = "0.1.0" }
            try writer.write(to: path)
            for access in [Artifact.FileAccess.read, .map] {
                let artifact = try Artifact(path: path, access: access)
                expectSame(model, try artifact.model(), "file/\(codec)/\(access)")
                #expect(Array(try artifact.section(Int(payload)).bytes) == Array(repeating: 7, count: 5000))
            }
            let artifact = try Artifact(path: path)
            #expect(payload == 2)
            #expect(Array(try artifact.section(Int(payload)).bytes) == Array(repeating: 7, count: 5000))
            #expect(artifact.manifest.producer.version == "0.1.0")
        }
    }

    @Test func inlineProtobufFormRoundTrips() throws {
        let model = showcaseModel()
        let message = IRProto.message(from: model)
        expectSame(model, try IRProto.model(from: message), "inline")
        let graph = try IRProto.graph(from: IRProto.message(from: model.graph))
        #expect(graph.printed() == model.graph.printed())
    }

    @Test func notAnArtifactIsRefused() {
        for bytes in [[UInt8](), Array("KILN".utf8), Array(repeating: 0, count: 100), Array("PK\u{3}\u{4} not a kiln file at all, sorry".utf8)] {
            #expect(throws: KilnError.self) { try Artifact(bytes: bytes) }
            do { _ = try Artifact(bytes: bytes) } catch let e as KilnError { #expect(e.code == .invalidArtifact) } catch {}
        }
        #expect(throws: KilnError(.io, "cannot open '/nonexistent/x.kiln': No such file or directory")) {
            try Artifact(path: "/nonexistent/x.kiln")
        }
    }
}

extension ArtifactWriter {
    /// A copy with `codec` set.
    func withCodec(_ codec: SectionCodec) -> ArtifactWriter {
        var w = self
        w.codec = codec
        return w
    }
}
