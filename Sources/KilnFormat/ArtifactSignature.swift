#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import KilnIR

/// An Ed25519 public key that artifacts may be signed with (`kiln keygen` writes one as `KEY.pub`).
///
/// A key is named by its key id: the first 8 bytes of the SHA-256 of its 32 raw bytes, printed as 16
/// lowercase hex digits. Trust compares whole keys, never ids alone.
public struct ArtifactPublicKey: Sendable, Hashable, CustomStringConvertible {
    /// The 32 raw bytes of the Ed25519 public key.
    public let rawRepresentation: [UInt8]

    /// The key whose 32 raw bytes are `rawRepresentation`.
    public init(rawRepresentation: [UInt8]) throws {
        guard rawRepresentation.count == 32, (try? Curve25519.Signing.PublicKey(rawRepresentation: rawRepresentation)) != nil else {
            throw KilnError(.invalidArgument, "an Ed25519 public key is 32 bytes, not \(rawRepresentation.count)")
        }
        self.rawRepresentation = rawRepresentation
    }

    /// Reads a public key file (`KeyFile.publicHeader`, then the key as 64 hex digits).
    public init(text: String, origin: String = "<text>") throws {
        try self.init(rawRepresentation: KeyFile.decode(text, header: KeyFile.publicHeader, origin: origin))
    }

    /// Reads the public key file at `path`.
    public init(path: String) throws {
        try self.init(text: KeyFile.read(path), origin: path)
    }

    /// The first 8 bytes of SHA-256 of the key.
    public var keyID: [UInt8] { Array(SHA256.hash(data: rawRepresentation).prefix(8)) }

    /// The key id as 16 lowercase hex digits.
    public var keyIDText: String { KeyFile.hex(keyID) }

    /// The key id as hex.
    public var description: String { keyIDText }

    /// The contents of a `.pub` file for this key.
    public var fileText: String {
        "\(KeyFile.publicHeader)\n# key id \(keyIDText)\n\(KeyFile.hex(rawRepresentation))\n"
    }

    func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: rawRepresentation) else { return false }
        return key.isValidSignature(signature, for: message)
    }
}

/// An Ed25519 private key that signs artifacts (`kiln keygen` writes one; keep it secret).
public struct ArtifactSigningKey: Sendable {
    private let key: Curve25519.Signing.PrivateKey

    /// A new random key.
    public static func generate() -> ArtifactSigningKey { ArtifactSigningKey(key: Curve25519.Signing.PrivateKey()) }

    private init(key: Curve25519.Signing.PrivateKey) { self.key = key }

    /// The key whose 32-byte seed is `seed` (RFC 8032's private key).
    public init(seed: [UInt8]) throws {
        guard seed.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else {
            throw KilnError(.invalidArgument, "an Ed25519 private key seed is 32 bytes, not \(seed.count)")
        }
        self.key = key
    }

    /// Reads a private key file (`KeyFile.privateHeader`, then the seed as 64 hex digits).
    public init(text: String, origin: String = "<text>") throws {
        try self.init(seed: KeyFile.decode(text, header: KeyFile.privateHeader, origin: origin))
    }

    /// Reads the private key file at `path`.
    public init(path: String) throws {
        try self.init(text: KeyFile.read(path), origin: path)
    }

    /// The matching public key.
    public var publicKey: ArtifactPublicKey {
        // A valid private key always has a valid 32-byte public key.
        try! ArtifactPublicKey(rawRepresentation: [UInt8](key.publicKey.rawRepresentation))
    }

    /// The contents of a private key file for this key.
    public var fileText: String {
        "\(KeyFile.privateHeader)\n# key id \(publicKey.keyIDText); keep this file secret\n\(KeyFile.hex([UInt8](key.rawRepresentation)))\n"
    }

    /// The Ed25519 signature of `message`.
    func signature(for message: [UInt8]) throws -> [UInt8] {
        do {
            return [UInt8](try key.signature(for: message))
        } catch {
            throw KilnError(.internal, "Ed25519 signing failed: \(error)")
        }
    }
}

/// Which signatures an artifact must carry to be loaded. With no trusted keys (the default) nothing is
/// required and signatures are not checked; with some, the artifact must hold a valid signature by one of
/// them, checked before its manifest is decoded or any section is decompressed.
public struct ArtifactTrust: Sendable, Hashable {
    /// The keys whose signature is accepted.
    public var trustedKeys: [ArtifactPublicKey]

    /// Trust in `trustedKeys` (empty: no signature is required).
    public init(trustedKeys: [ArtifactPublicKey] = []) {
        self.trustedKeys = trustedKeys
    }

    /// Whether a signature is required.
    public var requiresSignature: Bool { !trustedKeys.isEmpty }

    /// Reads the public key files at `paths`.
    public init(keyPaths paths: [String]) throws {
        self.init(trustedKeys: try paths.map { try ArtifactPublicKey(path: $0) })
    }
}

/// One signature found in an artifact's signature section.
public struct ArtifactSignature: Sendable, Hashable {
    /// The key that made it (as recorded in the artifact; whether it is trusted is the caller's question).
    public var publicKey: ArtifactPublicKey
    /// The 64-byte Ed25519 signature.
    public var signature: [UInt8]
    /// Whether the signature matches the artifact's current contents.
    public var isValid: Bool
}

/// The signature section and the signed digest (Documentation/ArtifactFormat.md, "Signatures").
enum ArtifactSigning {
    /// The signature section's first four bytes.
    static let magic: [UInt8] = Array("KSIG".utf8)
    /// Version of the signature section's layout.
    static let version: UInt16 = 1
    /// Bytes before the first record: magic, version, record count.
    static let prefixSize = 8
    /// Bytes per record: key id (8), public key (32), signature (64).
    static let recordSize = 104
    /// What is signed is this context string followed by the 64-byte SHA-512 digest.
    static let context: [UInt8] = Array("kiln.artifact.signature.v1".utf8) + [0]

    /// The SHA-512 digest the signatures cover: the header with its checksum field zero, the section table
    /// with every signature entry zero, then the stored bytes of every other section in table order.
    /// - Precondition: `bytes` holds the header and table of `sections` (already bounds-checked).
    static func digest(_ bytes: UnsafeRawBufferPointer, sections: [SectionEntry], entrySize: Int) -> [UInt8] {
        var hash = SHA512()
        hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[0..<ArtifactLayout.headerChecksumOffset]))
        let zeros = [UInt8](repeating: 0, count: max(entrySize, 4))
        zeros.withUnsafeBytes { zero in
            hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: zero[0..<4]))
            hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[(ArtifactLayout.headerChecksumOffset + 4)..<ArtifactFormat.headerSize]))
            for (i, entry) in sections.enumerated() {
                if entry.kind == .signature {
                    hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: zero[0..<entrySize]))
                } else {
                    let at = ArtifactFormat.headerSize + i * entrySize
                    hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + entrySize)]))
                }
            }
        }
        for entry in sections where entry.kind != .signature {
            hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[Int(entry.offset)..<Int(entry.offset + entry.storedLength)]))
        }
        return Array(hash.finalize())
    }

    /// The message an Ed25519 signature signs.
    static func message(digest: [UInt8]) -> [UInt8] { context + digest }

    /// The records of a signature section's stored bytes.
    static func parse(_ stored: UnsafeRawBufferPointer, what: String) throws -> [(publicKey: ArtifactPublicKey, signature: [UInt8])] {
        func fail(_ message: String) -> KilnError { KilnError(.invalidArtifact, "\(what): \(message)") }
        guard stored.count >= prefixSize, stored.prefix(4).elementsEqual(magic) else { throw fail("does not start with 'KSIG'") }
        let version = stored.loadLE(4, as: UInt16.self)
        guard version == Self.version else { throw fail("layout version \(version) is unknown (this runtime reads version \(Self.version))") }
        let count = Int(stored.loadLE(6, as: UInt16.self))
        guard count >= 1, stored.count == prefixSize + count * recordSize else {
            throw fail("\(stored.count) bytes do not hold \(count) signature record(s) of \(recordSize) bytes")
        }
        return try (0..<count).map { i in
            let at = prefixSize + i * recordSize
            let id = [UInt8](stored[at..<(at + 8)])
            guard let key = try? ArtifactPublicKey(rawRepresentation: [UInt8](stored[(at + 8)..<(at + 40)])) else {
                throw fail("record \(i) holds an invalid Ed25519 public key")
            }
            guard key.keyID == id else { throw fail("record \(i) key id \(KeyFile.hex(id)) does not match its public key (\(key.keyIDText))") }
            return (key, [UInt8](stored[(at + 40)..<(at + recordSize)]))
        }
    }

    /// A signature section's bytes for `records`.
    static func encode(_ records: [(publicKey: ArtifactPublicKey, signature: [UInt8])]) -> [UInt8] {
        var out = magic
        out.appendLE(version)
        out.appendLE(UInt16(records.count))
        for record in records {
            out += record.publicKey.keyID + record.publicKey.rawRepresentation + record.signature
        }
        return out
    }

    /// Checks the signatures of an artifact whose header and table were validated, as `trust` requires:
    /// refuses a missing, malformed or bad signature and one made only by keys `trust` does not hold.
    /// Returns the valid signatures by trusted keys.
    static func verify(_ bytes: UnsafeRawBufferPointer, sections: [SectionEntry], entrySize: Int, trust: ArtifactTrust,
                       origin: String) throws -> [ArtifactSignature] {
        guard trust.requiresSignature else { throw KilnError(.invalidArgument, "no trusted key was given to verify \(origin) against") }
        let trusted = trust.trustedKeys.map(\.keyIDText).joined(separator: ", ")
        let found = try signatures(bytes, sections: sections, entrySize: entrySize, origin: origin)
        guard let found else {
            throw KilnError(.invalidArtifact, "\(origin): the artifact is not signed, and a signature by a trusted key (\(trusted)) is required")
        }
        let byTrusted = found.filter { trust.trustedKeys.contains($0.publicKey) }
        let valid = byTrusted.filter(\.isValid)
        if !valid.isEmpty { return valid }
        if let bad = byTrusted.first {
            throw KilnError(.invalidArtifact, "\(origin): the signature by key \(bad.publicKey.keyIDText) does not match the artifact's contents (the artifact was modified after it was signed, or the signature is corrupt)")
        }
        let signers = found.map(\.publicKey.keyIDText).joined(separator: ", ")
        throw KilnError(.invalidArtifact, "\(origin): the artifact is signed only by untrusted key(s) \(signers); trusted: \(trusted)")
    }

    /// Every signature in the artifact with whether it matches its contents; nil when it has no signature section.
    static func signatures(_ bytes: UnsafeRawBufferPointer, sections: [SectionEntry], entrySize: Int,
                           origin: String) throws -> [ArtifactSignature]? {
        let indices = sections.indices.filter { sections[$0].kind == .signature }
        guard let index = indices.first else { return nil }
        let what = "\(origin): section \(index) (signature)"
        guard indices.count == 1 else { throw KilnError(.invalidArtifact, "\(origin): section table lists more than one signature section") }
        let entry = sections[index]
        guard entry.codec == SectionCodec.none, entry.rawLength == entry.storedLength else {
            throw KilnError(.invalidArtifact, "\(what) codec \(entry.codecCode) is not 0 (a signature section is stored as is)")
        }
        let stored = UnsafeRawBufferPointer(rebasing: bytes[Int(entry.offset)..<Int(entry.offset + entry.storedLength)])
        guard CRC32C.checksum(stored) == entry.checksum else { throw KilnError(.invalidArtifact, "\(what) checksum mismatch (the stored bytes are corrupt)") }
        let records = try parse(stored, what: what)
        let signed = message(digest: digest(bytes, sections: sections, entrySize: entrySize))
        return records.map { ArtifactSignature(publicKey: $0.publicKey, signature: $0.signature, isValid: $0.publicKey.isValidSignature($0.signature, for: signed)) }
    }
}

/// Signs artifacts: `kiln sign`.
public enum ArtifactSigner {
    /// `artifact`'s bytes with a signature by `key` added (replacing an earlier one by the same key).
    ///
    /// The sections are copied as stored (nothing is decompressed or re-encoded) and laid out in table
    /// order, each at a multiple of 64, with the signature section last; earlier signatures by other keys
    /// are kept when they still match (they do when the artifact was written by Kiln). The artifact is
    /// validated first: a corrupt artifact is refused, not signed.
    public static func sign(_ artifact: [UInt8], with key: ArtifactSigningKey, origin: String = "<memory>") throws -> [UInt8] {
        let reader = try Artifact(bytes: artifact, origin: origin)
        for index in reader.sections.indices where reader.sections[index].kind != .signature && reader.sections[index].kind != nil {
            _ = try reader.section(index)  // every known section's checksum and encoding
        }
        let old = reader.sections
        let entrySize = artifact.withUnsafeBytes { Int($0.loadLE(ArtifactLayout.entrySizeOffset, as: UInt32.self)) }
        let previous = try artifact.withUnsafeBytes { bytes in
            try ArtifactSigning.signatures(bytes, sections: old, entrySize: entrySize, origin: origin) ?? []
        }
        var table = old
        if !table.contains(where: { $0.kind == .signature }) {
            table.append(SectionEntry(kindCode: SectionKind.signature.rawValue, codecCode: SectionCodec.none.rawValue,
                                      offset: 0, storedLength: 0, rawLength: 0, checksum: 0))
        }
        let signatureIndex = table.firstIndex { $0.kind == .signature }!

        // Lay out: header, table, then each section's stored bytes; the signature section last.
        let tableEnd = ArtifactFormat.headerSize + table.count * entrySize
        var out = [UInt8](artifact[0..<ArtifactFormat.headerSize])
        let minor = max(reader.formatVersion.minor, 1)
        out.storeLE(UInt16(minor), at: ArtifactLayout.minorOffset)
        out.storeLE(UInt32(table.count), at: ArtifactLayout.sectionCountOffset)
        out.storeLE(UInt32(0), at: ArtifactLayout.headerChecksumOffset)
        for (i, entry) in table.enumerated() {
            if i < old.count {
                let at = ArtifactFormat.headerSize + i * entrySize
                out += artifact[at..<(at + entrySize)]
            } else {
                out += [UInt8](repeating: 0, count: entrySize)
                out.storeLE(entry.kindCode, at: ArtifactFormat.headerSize + i * entrySize)
            }
        }
        out += [UInt8](repeating: 0, count: align(tableEnd) - tableEnd)
        for (i, entry) in table.enumerated() where i != signatureIndex {
            out += [UInt8](repeating: 0, count: align(out.count) - out.count)
            table[i].offset = UInt64(out.count)
            out.storeLE(table[i].offset, at: ArtifactFormat.headerSize + i * entrySize + 8)
            out += artifact[Int(entry.offset)..<Int(entry.offset + entry.storedLength)]
        }
        out += [UInt8](repeating: 0, count: align(out.count) - out.count)
        let signatureOffset = out.count

        let signed = ArtifactSigning.message(digest: out.withUnsafeBytes { ArtifactSigning.digest($0, sections: table, entrySize: entrySize) })
        var records = previous.filter { $0.publicKey != key.publicKey && $0.publicKey.isValidSignature($0.signature, for: signed) }
            .map { (publicKey: $0.publicKey, signature: $0.signature) }
        records.append((key.publicKey, try key.signature(for: signed)))
        guard records.count <= Int(UInt16.max) else { throw KilnError(.invalidArgument, "\(origin) already holds \(records.count - 1) signatures") }
        let section = ArtifactSigning.encode(records)
        out += section

        let at = ArtifactFormat.headerSize + signatureIndex * entrySize
        out.storeLE(SectionKind.signature.rawValue, at: at)
        out.storeLE(SectionCodec.none.rawValue, at: at + 4)
        out.storeLE(UInt64(signatureOffset), at: at + 8)
        out.storeLE(UInt64(section.count), at: at + 16)
        out.storeLE(UInt64(section.count), at: at + 24)
        out.storeLE(CRC32C.checksum(section), at: at + 32)
        out.storeLE(ArtifactLayout.headerChecksum(out), at: ArtifactLayout.headerChecksumOffset)
        return out
    }

    private static func align(_ n: Int) -> Int {
        (n + ArtifactFormat.alignment - 1) / ArtifactFormat.alignment * ArtifactFormat.alignment
    }
}

/// The text files keys are kept in: a header line, comment lines starting with `#`, and the 32 key bytes
/// as 64 hex digits.
public enum KeyFile {
    /// The first line of a private key file.
    public static let privateHeader = "kiln-ed25519-private-key-v1"
    /// The first line of a public key file.
    public static let publicHeader = "kiln-ed25519-public-key-v1"

    static func read(_ path: String) throws -> String {
        guard let f = fopen(path, "rb") else { throw KilnError(.io, "cannot open key file '\(path)': \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= 65_536 else { throw KilnError(.invalidArgument, "'\(path)' is too large to be a key file") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func decode(_ text: String, header: String, origin: String) throws -> [UInt8] {
        let lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map { $0.trimmingSpaces }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        let other = header == privateHeader ? publicHeader : privateHeader
        guard let first = lines.first, first == header else {
            if lines.first == other {
                throw KilnError(.invalidArgument, "'\(origin)' is a \(other == publicHeader ? "public" : "private") key file; expected a \(header == publicHeader ? "public" : "private") key (\(header))")
            }
            throw KilnError(.invalidArgument, "'\(origin)' is not a Kiln key file (its first line is not '\(header)')")
        }
        guard lines.count == 2, let bytes = unhex(lines[1]), bytes.count == 32 else {
            throw KilnError(.invalidArgument, "'\(origin)': expected one line of 64 hex digits after '\(header)'")
        }
        return bytes
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        for i in stride(from: 0, to: utf8.count, by: 2) {
            guard let hi = value(utf8[i]), let lo = value(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }
}

private extension Substring {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}
