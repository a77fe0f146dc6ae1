#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR
import SwiftProtobuf

/// Writes a `.kiln` artifact: the manifest (section 0), the weights (section 1) and any payloads (sections 2…).
///
/// ```swift
/// var writer = ArtifactWriter(model: model)
/// let section = writer.addPayload(bytes)          // reference it from a Partition
/// writer.manifest.partitions = [partition]
/// let bytes = try writer.serialize()             // or try writer.write(to: path)
/// ```
/// The output is deterministic: equal inputs give equal bytes.
package struct ArtifactWriter: Sendable {
    /// The model the artifact carries; written into `manifest.model` by `serialize()`.
    public var model: Model
    /// Everything else the manifest says (producer, source, targets, partitions, metadata).
    /// Its `model` field is replaced by the encoding of `model`.
    public var manifest: Kiln_Artifact_Manifest
    /// The codec sections are stored with; a zstd section that would not shrink is stored as is.
    public var codec: SectionCodec = .zstd
    /// Tensors with more data bytes than this go to the weights section; smaller ones stay inline.
    public var inlineLimit = 1024
    /// The format version written into the header (tests write newer versions with it). An unsigned
    /// artifact uses only 1.0 features, so it is written as 1.0; `ArtifactSigner` marks signed ones 1.1.
    var formatVersion = (major: 1, minor: 0)
    /// Extra sections appended after the payloads, unknown to this version (tests of forward compatibility).
    var extraSections: [(kind: UInt32, bytes: [UInt8])] = []
    /// Bytes appended to every section-table entry (a newer minor's larger entries).
    var extraEntryBytes = 0
    /// Bytes appended to the serialized manifest (unknown fields of a newer minor).
    var extraManifestBytes: [UInt8] = []
    /// Edits the encoded model before it is written (tests of the reader's reference checks).
    var editModelMessage: (@Sendable (inout Kiln_Ir_Model) -> Void)?

    private var payloads: [[UInt8]] = []

    /// A writer for `model` with an otherwise empty manifest.
    public init(model: Model, manifest: Kiln_Artifact_Manifest = Kiln_Artifact_Manifest()) {
        self.model = model
        self.manifest = manifest
    }

    /// Adds a payload section and returns its index in the section table (for `Partition.payload_section`).
    public mutating func addPayload(_ bytes: [UInt8]) -> UInt32 {
        payloads.append(bytes)
        return UInt32(2 + payloads.count - 1)
    }

    /// The artifact's bytes.
    public func serialize() throws -> [UInt8] {
        var encoder = Encoder(inlineLimit: inlineLimit, weightsSection: 1)
        var manifest = self.manifest
        manifest.model = encoder.encode(model)
        editModelMessage?(&manifest.model)
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        let manifestBytes: [UInt8]
        do {
            manifestBytes = try manifest.serializedBytes(partial: false, options: options) + extraManifestBytes
        } catch {
            throw KilnError(.internal, "cannot encode the artifact manifest: \(error)")
        }
        var raws: [(kind: UInt32, bytes: [UInt8])] = [(SectionKind.manifest.rawValue, manifestBytes),
                                                       (SectionKind.weights.rawValue, encoder.weights)]
        raws += payloads.map { (SectionKind.payload.rawValue, $0) }
        raws += extraSections

        // Encode each section.
        var stored: [(kind: UInt32, codec: SectionCodec, bytes: [UInt8], rawLength: Int)] = []
        for (kind, raw) in raws {
            if codec == .zstd, !raw.isEmpty {
                let packed = try raw.withUnsafeBytes { try Zstd.compress($0) }
                if packed.count < raw.count, ArtifactFormat.allowsExpansion(stored: UInt64(packed.count), raw: UInt64(raw.count)) {
                    stored.append((kind, .zstd, packed, raw.count))
                    continue
                }
            }
            stored.append((kind, .none, raw, raw.count))
        }

        let entrySize = ArtifactFormat.sectionEntrySize + extraEntryBytes
        let tableEnd = ArtifactFormat.headerSize + stored.count * entrySize
        var out: [UInt8] = ArtifactFormat.magic
        out.appendLE(UInt16(formatVersion.major))
        out.appendLE(UInt16(formatVersion.minor))
        out.appendLE(UInt32(0))  // flags
        out.appendLE(UInt32(stored.count))
        out.appendLE(UInt32(entrySize))
        out.appendLE(UInt32(0))  // header checksum, filled below
        out.appendLE(UInt32(0))  // reserved
        var offset = align(tableEnd)
        for section in stored {
            out.appendLE(section.kind)
            out.appendLE(section.codec.rawValue)
            out.appendLE(UInt64(offset))
            out.appendLE(UInt64(section.bytes.count))
            out.appendLE(UInt64(section.rawLength))
            out.appendLE(CRC32C.checksum(section.bytes))
            out.appendLE(UInt32(0))  // entry flags
            out.appendLE(UInt64(0))  // reserved
            out.append(contentsOf: repeatElement(0, count: extraEntryBytes))
            offset = align(offset + section.bytes.count)
        }
        out.storeLE(ArtifactLayout.headerChecksum(out), at: ArtifactLayout.headerChecksumOffset)
        for section in stored {
            out.append(contentsOf: repeatElement(0, count: align(out.count) - out.count))
            out.append(contentsOf: section.bytes)
        }
        return out
    }

    /// Writes the artifact to `path` atomically, by `AtomicFile.write` (its rules on links, devices and
    /// temporary files apply).
    public func write(to path: String) throws {
        try AtomicFile.write(try serialize(), to: path)
    }

    private func align(_ n: Int) -> Int {
        (n + ArtifactFormat.alignment - 1) / ArtifactFormat.alignment * ArtifactFormat.alignment
    }
}

/// Positions of the fixed header's fields and the header checksum rule.
enum ArtifactLayout {
    static let majorOffset = 8
    static let minorOffset = 10
    static let flagsOffset = 12
    static let sectionCountOffset = 16
    static let entrySizeOffset = 20
    static let headerChecksumOffset = 24

    /// CRC-32C of the header (with its checksum field read as zero) followed by the section table.
    /// - Precondition: `bytes` holds the header and the whole table.
    static func headerChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        let count = Int(bytes.loadLE(sectionCountOffset, as: UInt32.self))
        let entrySize = Int(bytes.loadLE(entrySizeOffset, as: UInt32.self))
        let end = ArtifactFormat.headerSize + count * entrySize
        var crc = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: bytes[0..<headerChecksumOffset]))
        withUnsafeBytes(of: UInt32(0)) { crc = CRC32C.update(crc, $0) }
        crc = CRC32C.update(crc, UnsafeRawBufferPointer(rebasing: bytes[(headerChecksumOffset + 4)..<end]))
        return crc
    }

    static func headerChecksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { headerChecksum($0) }
    }
}
