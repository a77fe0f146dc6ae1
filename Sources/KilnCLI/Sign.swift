import ArgumentParser
import Kiln
import KilnTooling

#if canImport(Glibc)
import Glibc
#endif

/// `kiln keygen -o KEY`: a new Ed25519 key pair for signing artifacts, KEY (private, mode 0600) and KEY.pub.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make an Ed25519 key pair for signing artifacts.",
        discussion: """
            Writes the private key to KEY (readable by its owner only) and the public key to KEY.pub. Neither \
            file may exist already. Keep KEY secret; give KEY.pub to those who load the artifacts \
            (kiln run --trusted-key KEY.pub, kiln verify --trusted-key KEY.pub).
            """
    )

    @Option(name: .shortAndLong, help: ArgumentHelp("The private key file to write (the public key goes to FILE.pub).", valueName: "file"))
    var output: String

    func run() throws {
        try diagnosing {
            let publicPath = output + ".pub"
            for path in [output, publicPath] where FileSystem.exists(path) {
                throw KilnError(.io, "'\(path)' exists; kiln keygen does not overwrite keys")
            }
            let key = ArtifactSigningKey.generate()
            try Self.create(output, key.fileText, mode: 0o600)
            do {
                try Self.create(publicPath, key.publicKey.fileText, mode: 0o644)
            } catch {
                unlink(output)
                throw error
            }
            print("private key: \(output)")
            print("public key: \(publicPath)")
            print("key id: \(key.publicKey.keyIDText)")
        }
    }

    /// Creates `path` with `text`, failing if it exists (O_EXCL), with permissions `mode`.
    static func create(_ path: String, _ text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else { throw KilnError(.io, "cannot create '\(path)': \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let closed = close(fd) == 0
        guard written == bytes.count, closed else {
            unlink(path)
            throw KilnError(.io, "cannot write '\(path)'")
        }
    }
}

/// `kiln sign ARTIFACT --key KEY [-o OUT]`: adds an Ed25519 signature over the header and every section.
struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sign an artifact with a private key (kiln keygen).",
        discussion: """
            The signature covers the header and every section as stored (see Documentation/ArtifactFormat.md). \
            A signature by another key is kept, so an artifact may carry several (key rotation); signing again \
            with the same key replaces its signature. The artifact is checked first: a corrupt one is not signed. \
            The output (by default the artifact itself) is written atomically.
            """
    )

    @Argument(help: "The artifact (.kiln) to sign.")
    var artifact: String

    @Option(help: ArgumentHelp("The private key file (kiln keygen).", valueName: "file"))
    var key: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the signed artifact (default: over ARTIFACT).", valueName: "file"))
    var output: String?

    func run() throws {
        try diagnosing {
            let signingKey = try ArtifactSigningKey(path: key)
            let signed = try ArtifactSigner.sign(FileSystem.read(artifact), with: signingKey, origin: artifact)
            let destination = output ?? artifact
            try AtomicFile.write(signed, to: destination)
            print("signed \(destination) with key \(signingKey.publicKey.keyIDText)")
        }
    }
}

/// `kiln verify ARTIFACT --trusted-key PUB…`: checks an artifact's signatures against trusted keys.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that an artifact is signed by a trusted key.",
        discussion: """
            Prints each signature the artifact carries (key id, valid or not, trusted or not). Exits with \
            status 1 when the artifact is not signed, when a trusted key's signature does not match its \
            contents, or when only untrusted keys signed it.
            """
    )

    @Argument(help: "The artifact (.kiln) to verify.")
    var artifact: String

    @OptionGroup(title: "Trust")
    var trust: TrustOption

    func run() throws {
        try diagnosing {
            let trust = try trust.trust()
            guard trust.requiresSignature else {
                throw KilnError(.invalidArgument, "give the public keys to trust with --trusted-key FILE.pub (or \(TrustOption.environmentVariable))")
            }
            let opened = try Artifact(path: artifact, trust: trust)
            for signature in try opened.signatures() {
                let trusted = trust.trustedKeys.contains(signature.publicKey)
                print("signature by key \(signature.publicKey.keyIDText): \(signature.isValid ? "valid" : "INVALID"), \(trusted ? "trusted" : "not trusted")")
            }
            print("\(artifact): verified (signed by trusted key \(opened.trustedSignatures.map(\.publicKey.keyIDText).joined(separator: ", ")))")
        }
    }
}

/// `--trusted-key FILE.pub` (repeatable) and `KILN_TRUSTED_KEYS`: the keys an artifact must be signed by.
struct TrustOption: ParsableArguments {
    /// Public key files (':'-separated) trusted in addition to `--trusted-key`.
    static let environmentVariable = "KILN_TRUSTED_KEYS"

    @Option(name: .customLong("trusted-key"),
            help: ArgumentHelp("Require an artifact signed by this public key (kiln keygen's KEY.pub; repeatable: any one of them). Keys in KILN_TRUSTED_KEYS (':'-separated files) are trusted as well.",
                               valueName: "file.pub"))
    var paths: [String] = []

    /// The trusted keys of `--trusted-key` and `KILN_TRUSTED_KEYS` (none: no signature is required).
    func trust() throws -> ArtifactTrust {
        var all = paths
        if let value = getenv(Self.environmentVariable) {
            all += String(cString: value).split(separator: ":").map(String.init).filter { !$0.isEmpty }
        }
        return try ArtifactTrust(keyPaths: all)
    }
}
