import KilnIR

/// The `.kiln` artifact container: constants shared by `ArtifactWriter` and `Artifact`.
/// The layout is described in Documentation/ArtifactFormat.md.
public enum ArtifactFormat {
    /// The newest container format version this build writes and reads, as (major, minor). 1.1 added the
    /// signature section; an artifact without one is written as 1.0, which every 1.x reader loads.
    public static let version = (major: 1, minor: 1)
    /// The eight bytes every artifact starts with: `KILN`, NUL, CR, LF, SUB (catches text-mode transfers).
    public static let magic: [UInt8] = [0x4B, 0x49, 0x4C, 0x4E, 0x00, 0x0D, 0x0A, 0x1A]
    /// Size of the fixed header in bytes.
    public static let headerSize = 32
    /// Size of one section-table entry written by this version (a newer minor may write larger entries).
    public static let sectionEntrySize = 48
    /// Alignment of every section in the file, and of every tensor inside a weights section.
    public static let alignment = 64
    /// The largest ratio of raw to stored size a zstd frame can reach (one 128 KiB RLE block per 4 bytes);
    /// a declared raw length above `stored × maxCompressionRatio` is refused before anything is allocated.
    public static let maxCompressionRatio: UInt64 = 32_768
    /// The largest raw size any section may declare: 16 GiB. Refused before anything is allocated.
    public static let maxSectionRawBytes: UInt64 = 16 << 30
    /// A zstd section may declare up to this many raw bytes at any ratio (up to `maxCompressionRatio`)…
    public static let sectionExpansionFloor: UInt64 = 256 << 20
    /// …and beyond it at most this ratio of raw to stored bytes, so a small file cannot make the reader
    /// allocate gigabytes (a decompression bomb). The writer stores a section uncompressed when its ratio
    /// exceeds this, so every artifact Kiln writes loads.
    public static let maxLargeSectionRatio: UInt64 = 1024

    /// Whether a zstd section of `stored` bytes may declare `raw` bytes (the bomb rule above).
    public static func allowsExpansion(stored: UInt64, raw: UInt64) -> Bool {
        guard raw <= maxSectionRawBytes else { return false }
        let (limit, overflow) = stored.multipliedReportingOverflow(by: maxCompressionRatio)
        guard !overflow, raw <= limit else { return false }
        return raw <= sectionExpansionFloor || raw / maxLargeSectionRatio <= stored
    }
    /// The zstd level sections are compressed at.
    public static let zstdLevel: Int32 = 3
}

/// What a section holds.
public enum SectionKind: UInt32, Sendable, CustomStringConvertible {
    /// The manifest (protobuf `kiln.artifact.Manifest`); always section 0.
    case manifest = 1
    /// Constant tensor data referenced by `kiln.ir.DataRef`s.
    case weights = 2
    /// A backend's compiled payload, referenced by `Partition.payload_section`.
    case payload = 3
    /// Ed25519 signatures over the header and every other section (format 1.1; `ArtifactSigner`).
    case signature = 4

    /// `manifest`, `weights`, `payload` or `signature`.
    public var description: String {
        switch self {
        case .manifest: "manifest"
        case .weights: "weights"
        case .payload: "payload"
        case .signature: "signature"
        }
    }
}

/// How a section's bytes are stored.
public enum SectionCodec: UInt32, Sendable, CustomStringConvertible {
    /// Stored as is.
    case none = 0
    /// One or more zstd frames.
    case zstd = 1

    /// `none` or `zstd`.
    public var description: String {
        switch self {
        case .none: "none"
        case .zstd: "zstd"
        }
    }
}

/// One entry of an artifact's section table, as read from the file (already bounds-checked).
public struct SectionEntry: Sendable, Hashable {
    /// The kind's number (see `SectionKind`); a kind this build does not know is kept and ignored.
    public var kindCode: UInt32
    /// The codec's number (see `SectionCodec`).
    public var codecCode: UInt32
    /// Byte offset of the stored bytes in the file.
    public var offset: UInt64
    /// Number of stored (possibly compressed) bytes.
    public var storedLength: UInt64
    /// Number of bytes after decompression.
    public var rawLength: UInt64
    /// CRC-32C of the stored bytes.
    public var checksum: UInt32

    /// The kind, when this build knows it.
    public var kind: SectionKind? { SectionKind(rawValue: kindCode) }
    /// The codec, when this build knows it.
    public var codec: SectionCodec? { SectionCodec(rawValue: codecCode) }
}
