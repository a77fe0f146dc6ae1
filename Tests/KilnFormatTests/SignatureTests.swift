import KilnIR
import Testing
@testable import KilnFormat

/// Signed artifacts: signing, verifying, and refusing tampered, unsigned and untrusted artifacts.
@Suite struct SignatureTests {
    static let model = Model(graph: Graph(name: "g", initializers: ["w": patterned(.float32, shape: [500])]))
    static let key = try! ArtifactSigningKey(seed: Array(0..<32))
    static let other = try! ArtifactSigningKey(seed: Array(repeating: 7, count: 32))
    static let trust = ArtifactTrust(trustedKeys: [key.publicKey])

    /// An artifact with a manifest, a weights section, a payload and a section of a kind from a newer minor.
    static func unsigned(codec: SectionCodec = .zstd) throws -> [UInt8] {
        var writer = ArtifactWriter(model: model)
        writer.codec = codec
        _ = writer.addPayload(Array(repeating: 0x5A, count: 300))
        writer.extraSections = [(kind: 99, bytes: [1, 2, 3, 4, 5])]
        return try writer.serialize()
    }

    /// Recomputes every section's CRC-32C and the header checksum, so only the signature can notice a change.
    static func fixChecksums(_ bytes: inout [UInt8]) {
        let count = bytes.withUnsafeBytes { Int($0.loadLE(16, as: UInt32.self)) }
        let entrySize = bytes.withUnsafeBytes { Int($0.loadLE(20, as: UInt32.self)) }
        for i in 0..<count {
            let at = 32 + i * entrySize
            let (offset, length) = bytes.withUnsafeBytes { (Int($0.loadLE(at + 8, as: UInt64.self)), Int($0.loadLE(at + 16, as: UInt64.self))) }
            bytes.storeLE(CRC32C.checksum(Array(bytes[offset..<(offset + length)])), at: at + 32)
        }
        bytes.storeLE(ArtifactLayout.headerChecksum(bytes), at: ArtifactLayout.headerChecksumOffset)
    }

    static func refusal(_ bytes: [UInt8], trust: ArtifactTrust = trust) -> KilnError? {
        do {
            _ = try Artifact(bytes: bytes, trust: trust)
            return nil
        } catch let error as KilnError {
            return error
        } catch {
            Issue.record("not a KilnError: \(error)")
            return nil
        }
    }

    @Test(arguments: [SectionCodec.zstd, .none])
    func aSignedArtifactVerifiesAndLoads(codec: SectionCodec) throws {
        let unsigned = try Self.unsigned(codec: codec)
        let signed = try ArtifactSigner.sign(unsigned, with: Self.key)
        let artifact = try Artifact(bytes: signed, trust: Self.trust)
        #expect(artifact.formatVersion == (1, 1))
        #expect(artifact.sections.map(\.kindCode) == [1, 2, 3, 99, 4])
        #expect(artifact.trustedSignatures.map(\.publicKey) == [Self.key.publicKey])
        #expect(try artifact.signatures().map(\.isValid) == [true])
        expectSame(Self.model, try artifact.model(), "signed")
        // Every other section is copied as stored.
        let original = try Artifact(bytes: unsigned)
        for i in 0..<4 {
            #expect(artifact.sections[i].checksum == original.sections[i].checksum)
            #expect([UInt8](try artifact.section(i).bytes) == [UInt8](try original.section(i).bytes))
        }
        // Without a requirement the signature is not checked, as by a 1.0 reader, which skips kind 4.
        #expect(try Artifact(bytes: signed).trustedSignatures.isEmpty)
        // Signing is deterministic (Ed25519) and signing twice with one key replaces the signature.
        #expect(try ArtifactSigner.sign(unsigned, with: Self.key) == signed)
        #expect(try ArtifactSigner.sign(signed, with: Self.key) == signed)
    }

    @Test func anUnsignedArtifactIsRefusedOnlyWhenASignatureIsRequired() throws {
        let unsigned = try Self.unsigned()
        _ = try Artifact(bytes: unsigned)
        let error = try #require(Self.refusal(unsigned))
        #expect(error.code == .invalidArtifact)
        #expect(error.message.contains("is not signed") && error.message.contains(Self.key.publicKey.keyIDText))
    }

    @Test func aSignatureByAnUntrustedKeyIsRefusedNamingIt() throws {
        let signed = try ArtifactSigner.sign(try Self.unsigned(), with: Self.other)
        let error = try #require(Self.refusal(signed))
        #expect(error.code == .invalidArtifact)
        #expect(error.message.contains("signed only by untrusted key(s) \(Self.other.publicKey.keyIDText)"))
        #expect(error.message.contains("trusted: \(Self.key.publicKey.keyIDText)"))
        #expect(try Artifact(bytes: signed, trust: ArtifactTrust(trustedKeys: [Self.other.publicKey])).trustedSignatures.count == 1)
    }

    @Test func severalKeysMaySignAndEachIsTrustedAlone() throws {
        let both = try ArtifactSigner.sign(try ArtifactSigner.sign(try Self.unsigned(), with: Self.key), with: Self.other)
        let artifact = try Artifact(bytes: both)
        #expect(try artifact.signatures().map(\.publicKey) == [Self.key.publicKey, Self.other.publicKey])
        #expect(try artifact.signatures().allSatisfy(\.isValid))
        for key in [Self.key, Self.other] {
            #expect(try Artifact(bytes: both, trust: ArtifactTrust(trustedKeys: [key.publicKey])).trustedSignatures.map(\.publicKey) == [key.publicKey])
        }
        // Re-signing with the first key keeps the second one's signature.
        #expect(try Artifact(bytes: ArtifactSigner.sign(both, with: Self.key)).signatures().count == 2)
    }

    /// Changing any byte the signature covers, with every checksum fixed up, is refused as a bad signature.
    @Test func tamperingWithTheHeaderTableOrAnySectionIsRefused() throws {
        let signed = try ArtifactSigner.sign(try Self.unsigned(), with: Self.key)
        let artifact = try Artifact(bytes: signed)
        var places: [(String, Int)] = [("header flags", 12), ("header reserved", 28)]
        let entrySize = 48
        for (i, entry) in artifact.sections.enumerated() where entry.kind != .signature {
            places.append(("section \(i) table entry reserved bytes", 32 + i * entrySize + 40))
            places.append(("section \(i) first stored byte", Int(entry.offset)))
            places.append(("section \(i) last stored byte", Int(entry.offset + entry.storedLength) - 1))
        }
        for (what, at) in places {
            var tampered = signed
            tampered[at] ^= 0x01
            Self.fixChecksums(&tampered)
            let error = try #require(Self.refusal(tampered), "\(what): accepted")
            #expect(error.code == .invalidArtifact)
            #expect(error.message.contains("signature by key \(Self.key.publicKey.keyIDText) does not match"), "\(what): \(error.message)")
            // Without a requirement the change goes unnoticed where it is harmless (reserved bytes), or is
            // caught by the reader's own checks: either way the refusal above came from the signature.
        }
        // Any header byte, even without fixing checksums, is refused (by the checks or by the signature).
        for at in 0..<32 {
            var tampered = signed
            tampered[at] ^= 0x80
            #expect(Self.refusal(tampered) != nil, "header byte \(at)")
        }
        // A corrupted signature is a bad signature too.
        let signature = try #require(artifact.sections.last)
        var tampered = signed
        tampered[Int(signature.offset) + 8 + 32 + 5] ^= 0x01
        Self.fixChecksums(&tampered)
        #expect(Self.refusal(tampered)?.message.contains("does not match") == true)
        // The unsigned bytes in the signature section (its record's key id) are checked against the key.
        tampered = signed
        tampered[Int(signature.offset) + 8] ^= 0x01
        Self.fixChecksums(&tampered)
        #expect(Self.refusal(tampered)?.message.contains("does not match its public key") == true)
    }

    @Test func aTrailingSectionCannotBeAddedOrRemoved() throws {
        let signed = try ArtifactSigner.sign(try Self.unsigned(), with: Self.key)
        // Dropping the unknown section 3 (the count lowered, its entry replaced by the signature's).
        var shorter = Array(signed[0..<(32 + 3 * 48)]) + Array(signed[(32 + 4 * 48)..<(32 + 5 * 48)])
            + [UInt8](repeating: 0, count: 48) + Array(signed[(32 + 5 * 48)...])
        shorter.storeLE(UInt32(4), at: 16)
        // Offsets stay valid: the data area did not move, the table got shorter and its end is padding.
        Self.fixChecksums(&shorter)
        #expect(Self.refusal(shorter) != nil)
    }

    @Test func keysRoundTripThroughTheirFiles() throws {
        let key = ArtifactSigningKey.generate()
        let again = try ArtifactSigningKey(text: key.fileText)
        #expect(again.publicKey == key.publicKey)
        #expect(try ArtifactPublicKey(text: key.publicKey.fileText) == key.publicKey)
        #expect(key.publicKey.keyIDText.count == 16)
        #expect(key.fileText.hasPrefix("kiln-ed25519-private-key-v1\n"))
        #expect(key.publicKey.fileText.hasPrefix("kiln-ed25519-public-key-v1\n"))
        #expect(throws: KilnError.self) { try ArtifactPublicKey(text: key.fileText) }
        #expect(throws: KilnError.self) { try ArtifactSigningKey(text: key.publicKey.fileText) }
        #expect(throws: KilnError.self) { try ArtifactPublicKey(text: "kiln-ed25519-public-key-v1\nabcd\n") }
        #expect(throws: KilnError.self) { try ArtifactPublicKey(rawRepresentation: [1, 2, 3]) }
        // RFC 8032 test 1: the seed 9d61b1…7f60 has the public key d75a98…511a.
        let rfc = try ArtifactSigningKey(seed: KeyFile.unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!)
        #expect(KeyFile.hex(rfc.publicKey.rawRepresentation) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    }

    @Test func aCorruptArtifactIsNotSignedAndVerifyNeedsAKey() throws {
        var corrupt = try Self.unsigned(codec: .none)
        corrupt[Int(try Artifact(bytes: corrupt).sections[2].offset)] ^= 0xFF  // the payload, checksum not fixed
        #expect(throws: KilnError.self) { try ArtifactSigner.sign(corrupt, with: Self.key) }
        let artifact = try Artifact(bytes: ArtifactSigner.sign(try Self.unsigned(), with: Self.key))
        #expect(throws: KilnError.self) { try artifact.verify(trust: ArtifactTrust()) }
        #expect(try artifact.verify(trust: Self.trust).count == 1)
    }
}
