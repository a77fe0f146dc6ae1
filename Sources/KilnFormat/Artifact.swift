#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnIR
import SwiftProtobuf
import Synchronization

/// A `.kiln` artifact opened for reading.
///
/// Opening validates the magic, the format version, the header checksum, every section's offset,
/// lengths and codec against the file size, and decodes the manifest. Weights and payloads are
/// checksum-verified and decompressed lazily, on first use, and cached. Every problem is a
/// `KilnError(.invalidArtifact)` (or `.versionMismatch` for a newer major version) naming the field
/// or section concerned; no input makes it crash.
public final class Artifact: Sendable {
    /// The format version the file was written with.
    public let formatVersion: (major: Int, minor: Int)
    /// The header's flags (none are defined in version 1; unknown ones are ignored).
    public let flags: UInt32
    /// The section table.
    public let sections: [SectionEntry]
    /// The decoded manifest. Its `model` still holds DataRefs: use `model()` for the IR, and `summary()`
    /// for the rest as plain Swift values.
    package let manifest: Kiln_Artifact_Manifest
    /// Where the artifact came from, for messages (`<memory>` for bytes).
    public let origin: String

    private let file: TensorStorage
    private let cache = Mutex<[Int: TensorStorage]>([:])

    /// The valid signatures by trusted keys that opening checked (empty when `trust` required none).
    public let trustedSignatures: [ArtifactSignature]

    /// Reads an artifact held in memory (the bytes are copied once). With trusted keys in `trust`, an
    /// artifact without a valid signature by one of them is refused before anything else is read.
    public convenience init(bytes: [UInt8], origin: String = "<memory>", trust: ArtifactTrust = ArtifactTrust()) throws {
        try self.init(storage: bytes.withUnsafeBytes { TensorStorage(copying: $0) }, origin: origin, trust: trust)
    }

    /// How `init(path:access:trust:)` gets at the file's bytes.
    public enum FileAccess: Sendable {
        /// Read the whole file into memory at load (the default). The artifact never depends on the file
        /// again: truncating, rewriting or deleting it after the load cannot affect a run.
        case read
        /// Memory-map the file; uncompressed sections are then used in place, without a copy. Only for
        /// trusted files that nobody changes while the artifact is in use: a file truncated under the
        /// mapping makes the next access to the lost pages raise SIGBUS, which kills the process.
        case map
    }

    /// Reads the artifact at `path`: into memory by default, memory-mapped with `access: .map`. With trusted
    /// keys in `trust`, an artifact without a valid signature by one of them is refused before its manifest is
    /// decoded or any section is decompressed.
    public convenience init(path: String, access: FileAccess = .read, trust: ArtifactTrust = ArtifactTrust()) throws {
        switch access {
        case .read:
            let contents = try FileContents(path: path)
            try self.init(storage: TensorStorage(borrowing: contents.buffer.base, byteCount: contents.size, owner: contents.buffer),
                          origin: path, trust: trust)
        case .map:
            let mapping = try FileMapping(path: path)
            try self.init(storage: TensorStorage(borrowing: mapping.base, byteCount: mapping.size, owner: mapping), origin: path, trust: trust)
        }
    }

    private init(storage: TensorStorage, origin: String, trust: ArtifactTrust) throws {
        self.file = storage
        self.origin = origin
        let bytes = storage.bytes
        let size = bytes.count
        func fail(_ message: String) -> KilnError { KilnError(.invalidArtifact, "\(origin): \(message)") }

        guard size >= ArtifactFormat.headerSize else {
            throw fail("file of \(size) bytes is shorter than the \(ArtifactFormat.headerSize)-byte header")
        }
        guard bytes.prefix(8).elementsEqual(ArtifactFormat.magic) else { throw fail("header magic: not a .kiln artifact") }
        let major = Int(bytes.loadLE(ArtifactLayout.majorOffset, as: UInt16.self))
        let minor = Int(bytes.loadLE(ArtifactLayout.minorOffset, as: UInt16.self))
        guard major >= 1 else { throw fail("header format version: major version \(major) does not exist") }
        guard major <= ArtifactFormat.version.major else {
            throw KilnError(.versionMismatch, "\(origin): artifact format version \(major).\(minor) needs a newer Kiln runtime "
                + "(this runtime reads format versions up to \(ArtifactFormat.version.major).x)")
        }
        formatVersion = (major, minor)
        flags = bytes.loadLE(ArtifactLayout.flagsOffset)
        let count = UInt64(bytes.loadLE(ArtifactLayout.sectionCountOffset, as: UInt32.self))
        let entrySize = UInt64(bytes.loadLE(ArtifactLayout.entrySizeOffset, as: UInt32.self))
        guard entrySize >= UInt64(ArtifactFormat.sectionEntrySize), entrySize <= 4096 else {
            throw fail("header section entry size \(entrySize) is not between \(ArtifactFormat.sectionEntrySize) and 4096")
        }
        guard count >= 1 else { throw fail("header section count is 0 (the manifest is missing)") }
        // count < 2^32 and entrySize ≤ 4096: no overflow.
        let tableEnd = UInt64(ArtifactFormat.headerSize) + count * entrySize
        guard tableEnd <= UInt64(size) else {
            throw fail("header section count \(count) × \(entrySize) bytes does not fit in the file of \(size) bytes")
        }
        let expected = ArtifactLayout.headerChecksum(bytes)
        let actual: UInt32 = bytes.loadLE(ArtifactLayout.headerChecksumOffset)
        guard expected == actual else { throw fail("header checksum mismatch (header or section table is corrupt)") }

        var sections: [SectionEntry] = []
        for i in 0..<Int(count) {
            let at = ArtifactFormat.headerSize + i * Int(entrySize)
            let entry = SectionEntry(kindCode: bytes.loadLE(at), codecCode: bytes.loadLE(at + 4), offset: bytes.loadLE(at + 8),
                                     storedLength: bytes.loadLE(at + 16), rawLength: bytes.loadLE(at + 24),
                                     checksum: bytes.loadLE(at + 32))
            let what = "section \(i) (\(entry.kind?.description ?? "kind \(entry.kindCode)"))"
            guard entry.offset >= tableEnd, entry.offset <= UInt64(size) else {
                throw fail("\(what) offset \(entry.offset) is outside the file's data area [\(tableEnd), \(size)]")
            }
            guard entry.storedLength <= UInt64(size) - entry.offset else {
                throw fail("\(what) stored length \(entry.storedLength) at offset \(entry.offset) runs past the end of the file (\(size) bytes)")
            }
            switch entry.codec {
            case .none?:
                guard entry.rawLength == entry.storedLength else {
                    throw fail("\(what) raw length \(entry.rawLength) differs from its stored length \(entry.storedLength) without compression")
                }
            case .zstd?:
                guard ArtifactFormat.allowsExpansion(stored: entry.storedLength, raw: entry.rawLength) else {
                    throw fail("\(what) raw length \(entry.rawLength) is refused for \(entry.storedLength) zstd bytes (at most \(ArtifactFormat.maxSectionRawBytes >> 30) GiB per section, and beyond \(ArtifactFormat.sectionExpansionFloor >> 20) MiB at most \(ArtifactFormat.maxLargeSectionRatio)× the stored size)")
                }
            case nil:
                // A section kind this version does not know may use a codec it does not know: it is never read.
                if entry.kind != nil { throw fail("\(what) codec \(entry.codecCode) is unknown") }
            }
            sections.append(entry)
        }
        self.sections = sections
        guard sections[0].kind == .manifest else { throw fail("section 0 is not the manifest") }
        guard sections.dropFirst().allSatisfy({ $0.kind != .manifest }) else { throw fail("section table lists more than one manifest") }
        // Signatures are checked on the stored bytes, before any section is interpreted or decompressed.
        trustedSignatures = trust.requiresSignature
            ? try ArtifactSigning.verify(bytes, sections: sections, entrySize: Int(entrySize), trust: trust, origin: origin) : []

        let manifestStorage = try Self.load(section: 0, sections[0], file: storage, origin: origin)
        var options = BinaryDecodingOptions()
        options.discardUnknownFields = true
        do {
            manifest = try Kiln_Artifact_Manifest(serializedBytes: [UInt8](manifestStorage.bytes), extensions: nil,
                                                  partial: false, options: options)
        } catch {
            throw fail("section 0 (manifest) is not a valid manifest message (\(error))")
        }
        guard manifest.hasModel else { throw fail("manifest has no model") }
        for (i, p) in manifest.partitions.enumerated() where p.hasPayloadSection {
            guard Int(p.payloadSection) < sections.count, sections[Int(p.payloadSection)].kind == .payload else {
                throw fail("manifest partition \(i) (\(p.backend)) payload_section \(p.payloadSection) is not a payload section")
            }
        }
        cache.withLock { $0[0] = manifestStorage }
    }

    /// The bytes of section `index`, checksum-verified and decompressed (once; later calls share them).
    public func section(_ index: Int) throws -> TensorStorage {
        guard index >= 0, index < sections.count else {
            throw KilnError(.invalidArtifact, "\(origin): section \(index) does not exist (the artifact has \(sections.count))")
        }
        if let cached = cache.withLock({ $0[index] }) { return cached }
        let loaded = try Self.load(section: index, sections[index], file: file, origin: origin)
        return cache.withLock { cache in
            if let other = cache[index] { return other }
            cache[index] = loaded
            return loaded
        }
    }

    /// Every signature in the signature section, each with whether it matches the artifact's contents
    /// (empty when the artifact is not signed). Whether a signer is trusted is the caller's question:
    /// `verify(trust:)` answers it.
    public func signatures() throws -> [ArtifactSignature] {
        try ArtifactSigning.signatures(file.bytes, sections: sections, entrySize: entrySize, origin: origin) ?? []
    }

    /// The valid signatures by keys `trust` holds; refuses (`.invalidArtifact`) an artifact that is not
    /// signed, whose signature by a trusted key does not match its contents, or that only untrusted keys signed.
    public func verify(trust: ArtifactTrust) throws -> [ArtifactSignature] {
        try ArtifactSigning.verify(file.bytes, sections: sections, entrySize: entrySize, trust: trust, origin: origin)
    }

    private var entrySize: Int { Int(file.bytes.loadLE(ArtifactLayout.entrySizeOffset, as: UInt32.self)) }

    /// The model, with tensors that live in weights sections borrowed from them (no copy).
    public func model() throws -> Model {
        let decoder = Decoder { ref, what in
            let index = Int(ref.section)
            guard index < self.sections.count, self.sections[index].kind == .weights else {
                throw KilnError(.invalidArtifact, "\(self.origin): \(what): data reference names section \(ref.section), which is not a weights section")
            }
            let storage = try self.section(index)
            guard ref.offset <= UInt64(storage.byteCount), ref.length <= UInt64(storage.byteCount) - ref.offset else {
                throw KilnError(.invalidArtifact, "\(self.origin): \(what): data reference [\(ref.offset), +\(ref.length)) runs past the end of section \(index) (\(storage.byteCount) bytes)")
            }
            return storage
        }
        do {
            return try decoder.decode(manifest.model)
        } catch let error as KilnError where error.code == .invalidArtifact && !error.message.hasPrefix(origin) {
            throw KilnError(.invalidArtifact, "\(origin): manifest model: \(error.message)")
        }
    }

    private static func load(section index: Int, _ entry: SectionEntry, file: TensorStorage, origin: String) throws -> TensorStorage {
        let what = "\(origin): section \(index) (\(entry.kind?.description ?? "kind \(entry.kindCode)"))"
        guard let codec = entry.codec else { throw KilnError(.invalidArtifact, "\(what) codec \(entry.codecCode) is unknown") }
        // The constructor checked offset + storedLength against the file size.
        let stored = UnsafeRawBufferPointer(rebasing: file.bytes[Int(entry.offset)..<Int(entry.offset + entry.storedLength)])
        guard CRC32C.checksum(stored) == entry.checksum else {
            throw KilnError(.invalidArtifact, "\(what) checksum mismatch (the stored bytes are corrupt)")
        }
        switch codec {
        case .none:
            guard entry.rawLength == entry.storedLength else {
                throw KilnError(.invalidArtifact, "\(what) raw length \(entry.rawLength) differs from its stored length \(entry.storedLength)")
            }
            return TensorStorage(borrowing: stored.baseAddress ?? file.base, byteCount: stored.count, owner: file)
        case .zstd:
            guard ArtifactFormat.allowsExpansion(stored: entry.storedLength, raw: entry.rawLength) else {
                throw KilnError(.invalidArtifact, "\(what) raw length \(entry.rawLength) is refused for \(entry.storedLength) zstd bytes")
            }
            try Zstd.checkFrame(stored, rawLength: entry.rawLength, what: what)
            // Not zero-filled first: a frame that fails early leaves the untouched pages unused.
            let buffer = try SectionBuffer(byteCount: Int(entry.rawLength), what: what)
            try Zstd.decompress(stored, into: UnsafeMutableRawBufferPointer(start: buffer.base, count: buffer.byteCount), what: what)
            return TensorStorage(borrowing: buffer.base, byteCount: buffer.byteCount, owner: buffer)
        }
    }
}

/// The memory a decompressed section lives in (64-byte aligned); freed with the last tensor that borrows from it.
final class SectionBuffer: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let byteCount: Int

    /// `byteCount` bytes, or an `.invalidArtifact` error when the memory cannot be had (never an abort).
    init(byteCount: Int, what: String) throws {
        self.byteCount = byteCount
        base = try AlignedMemory.allocate(byteCount: byteCount, alignment: ArtifactFormat.alignment,
                                          what: "decompressing \(what)", code: .invalidArtifact)
    }

    deinit { AlignedMemory.free(base) }
}

/// A whole file read into memory (64-byte aligned) with pread: a file that shrinks while it is read is
/// an `.io` error, never a signal.
struct FileContents {
    let buffer: SectionBuffer
    let size: Int

    init(path: String) throws {
        // Regular files only, opened without blocking and within the size cap (a FIFO or a device is refused).
        let (fd, fileSize) = try RegularFile.open(path)
        defer { close(fd) }
        size = fileSize
        buffer = try SectionBuffer(byteCount: size, what: "'\(path)'")
        var done = 0
        while done < size {
            let n = pread(fd, buffer.base + done, min(size - done, 1 << 30), off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw KilnError(.io, "cannot read '\(path)': \(String(cString: strerror(errno)))")
            }
            guard n > 0 else {
                throw KilnError(.io, "'\(path)' shrank while it was read (\(done) of \(size) bytes were there)")
            }
            done += n
        }
    }
}

/// A read-only memory mapping of a whole file; unmapped when the last tensor borrowing from it is gone.
final class FileMapping: @unchecked Sendable {
    let base: UnsafeRawPointer
    let size: Int
    private let mapped: Bool

    init(path: String) throws {
        let (fd, fileSize) = try RegularFile.open(path)
        defer { close(fd) }
        size = fileSize
        if size == 0 {
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64))
            mapped = false
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw KilnError(.io, "cannot map '\(path)': \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
        mapped = true
    }

    deinit {
        if mapped { munmap(UnsafeMutableRawPointer(mutating: base), size) } else { UnsafeMutableRawPointer(mutating: base).deallocate() }
    }
}
