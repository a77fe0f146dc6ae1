#if canImport(Glibc)
import Glibc
#endif
import KilnIR
@testable import KilnTestSupport
import Testing
@testable import KilnFormat

/// Issue 16: writes outside the intended place, unbounded reads, decompression bombs, negative dims.
@Suite final class ReliabilityTests {
    let folder: String

    init() throws { folder = try temporaryDirectory("kiln-reliability") }
    deinit { removeTemporaryDirectory(folder) }

    func contents(_ path: String) -> [UInt8]? { try? RegularFile.read(path) }

    /// A file named as the old writer named its temporary file, planted as a link to a victim: the write
    /// must neither follow it nor touch the victim.
    @Test func aLinkPlantedAtThePredictableTemporaryNameIsNotFollowed() throws {
        let victim = folder + "/victim"
        try AtomicFile.write(Array("victim".utf8), to: victim)
        let target = folder + "/out.kiln"
        #expect(symlink(victim, "\(target).tmp-\(getpid())") == 0)
        try AtomicFile.write(Array("new".utf8), to: target)
        #expect(contents(victim) == Array("victim".utf8))
        #expect(contents(target) == Array("new".utf8))
    }

    @Test func aLinkAtTheDestinationIsRefusedAndNotWrittenThrough() throws {
        let victim = folder + "/victim"
        try AtomicFile.write(Array("victim".utf8), to: victim)
        let link = folder + "/link.kiln"
        #expect(symlink(victim, link) == 0)
        let error = ONNXBuilder.kilnError { try AtomicFile.write(Array("new".utf8), to: link) }
        #expect(error?.code == .io && error?.message.contains("symbolic link") == true, "\(String(describing: error))")
        #expect(contents(victim) == Array("victim".utf8))
        var info = stat()
        #expect(lstat(link, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK)
    }

    /// A FIFO stands in for /dev/null: a device or FIFO is never replaced.
    @Test func aFIFOOrFolderDestinationIsRefused() throws {
        let fifo = folder + "/null"
        #expect(mkfifo(fifo, 0o600) == 0)
        let error = ONNXBuilder.kilnError { try AtomicFile.write([1, 2, 3], to: fifo) }
        #expect(error?.code == .io && error?.message.contains("not a regular file") == true, "\(String(describing: error))")
        var info = stat()
        #expect(lstat(fifo, &info) == 0 && (info.st_mode & S_IFMT) == S_IFIFO)
        #expect(ONNXBuilder.kilnError { try AtomicFile.write([1], to: self.folder) }?.code == .io)
        #expect(ONNXBuilder.kilnError { try AtomicFile.write([1], to: "") }?.code == .io)
        #expect(ONNXBuilder.kilnError { try AtomicFile.write([1], to: self.folder + "/new/") }?.code == .io)
        // Nothing else was left in the folder (no temporary files).
        let names = try listFolder(folder)
        #expect(names == ["null"], "\(names)")
    }

    @Test func theArtifactWriterGoesThroughTheSameRules() throws {
        let fifo = folder + "/artifact.kiln"
        #expect(mkfifo(fifo, 0o600) == 0)
        let writer = ArtifactWriter(model: Model(graph: Graph(name: "g")))
        #expect(ONNXBuilder.kilnError { try writer.write(to: fifo) }?.code == .io)
    }

    /// Reading a FIFO must not block, and a device must not be read forever.
    @Test func readersRefuseFIFOsAndDevices() throws {
        let fifo = folder + "/model.kiln"
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(ONNXBuilder.kilnError { try Artifact(path: fifo) }?.code == .io)
        #expect(ONNXBuilder.kilnError { try RegularFile.read("/dev/zero") }?.code == .io)
        let small = folder + "/small"
        try AtomicFile.write(Array(repeating: 7, count: 100), to: small)
        #expect(ONNXBuilder.kilnError { try RegularFile.read(small, limit: 99) }?.message.contains("cap") == true)
    }

    /// An artifact whose payload section is a real zstd frame of RLE blocks declaring 4 GiB from ~128 KiB:
    /// refused when the artifact is opened, before anything is allocated.
    @Test func aDecompressionBombIsRefusedBeforeAllocating() throws {
        var writer = ArtifactWriter(model: Model(graph: Graph(name: "g")))
        writer.codec = .none
        let payload = writer.addPayload(Array(repeating: 1, count: 64))
        var bytes = try writer.serialize()
        let artifact = try Artifact(bytes: bytes)
        let index = Int(payload)
        #expect(artifact.sections.indices.contains(index))
        // The bomb: a single-segment frame with an 8-byte content size and RLE blocks of 128 KiB.
        let raw: UInt64 = 4 << 30
        var frame: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0xE0]
        for i in 0..<8 { frame.append(UInt8(truncatingIfNeeded: raw >> (8 * UInt64(i)))) }
        let blocks = Int(raw / (128 << 10))
        for b in 0..<blocks {
            let header = (128 << 10) << 3 | 1 << 1 | (b == blocks - 1 ? 1 : 0)
            frame += [UInt8(header & 0xFF), UInt8((header >> 8) & 0xFF), UInt8(header >> 16), 0]
        }
        while bytes.count % ArtifactFormat.alignment != 0 { bytes.append(0) }
        let offset = bytes.count
        bytes += frame
        let at = ArtifactFormat.headerSize + index * ArtifactFormat.sectionEntrySize
        bytes.storeLE(UInt32(SectionCodec.zstd.rawValue), at: at + 4)
        bytes.storeLE(UInt64(offset), at: at + 8)
        bytes.storeLE(UInt64(frame.count), at: at + 16)
        bytes.storeLE(raw, at: at + 24)
        bytes.storeLE(CRC32C.checksum(frame), at: at + 32)
        bytes.storeLE(ArtifactLayout.headerChecksum(bytes), at: ArtifactLayout.headerChecksumOffset)
        let error = ONNXBuilder.kilnError { try Artifact(bytes: bytes) }
        #expect(error?.code == .invalidArtifact && error?.message.contains("refused") == true, "\(String(describing: error))")
    }

    @Test func theDecoderRefusesNegativeDims() throws {
        var type = Kiln_Ir_TensorType()
        type.dtype = IRProto.dataType(.float32)
        type.hasShape_p = true
        var dim = Kiln_Ir_Dim()
        dim.fixed = -3
        type.dims = [dim]
        var value = Kiln_Ir_Value()
        value.name = "x"
        value.type.tensor = type
        var graph = Kiln_Ir_Graph()
        graph.name = "g"
        graph.inputs = [value]
        let error = ONNXBuilder.kilnError { try IRProto.graph(from: graph) }
        #expect(error?.code == .invalidArtifact, "\(String(describing: error))")
    }
}

/// The names in `path`.
func listFolder(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: entry.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
