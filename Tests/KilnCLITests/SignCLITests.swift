import Foundation
import Kiln
import KilnTooling
import Testing
@testable import KilnTestSupport

/// `kiln keygen`, `kiln sign`, `kiln verify` and `kiln run --trusted-key`, run as a subprocess.
@Suite final class SignCLITests {
    let folder: String

    init() throws {
        folder = try temporaryDirectory("kiln-sign-tests")
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    /// Compiles add_relu to `folder`/a.kiln and makes a key pair `folder`/`name`(.pub).
    func prepare(key name: String = "key") throws -> (artifact: String, key: String) {
        let model = folder + "/add_relu.onnx"
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: model)
        let compiled = try KilnTool.run(["compile", model, "-o", folder + "/a.kiln"])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        let keygen = try KilnTool.run(["keygen", "-o", "\(folder)/\(name)"])
        #expect(keygen.status == 0, "\(keygen.stderr)")
        return (folder + "/a.kiln", "\(folder)/\(name)")
    }

    @Test func keygenWritesAPrivateKeyOnlyItsOwnerReadsAndNeverOverwrites() throws {
        let (_, key) = try prepare()
        let attributes = try FileManager.default.attributesOfItem(atPath: key)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try String(contentsOfFile: key, encoding: .utf8).hasPrefix("kiln-ed25519-private-key-v1\n"))
        #expect(try String(contentsOfFile: key + ".pub", encoding: .utf8).hasPrefix("kiln-ed25519-public-key-v1\n"))
        let before = try String(contentsOfFile: key, encoding: .utf8)
        let again = try KilnTool.run(["keygen", "-o", key])
        #expect(again.status == 1 && again.stderr.contains("exists; kiln keygen does not overwrite keys"))
        #expect(try String(contentsOfFile: key, encoding: .utf8) == before)
    }

    @Test func signVerifyAndRunWithATrustedKey() throws {
        let (artifact, key) = try prepare()
        let signed = folder + "/signed.kiln"
        let sign = try KilnTool.run(["sign", artifact, "--key", key, "-o", signed])
        #expect(sign.status == 0, "\(sign.stderr)")
        let id = try ArtifactPublicKey(path: key + ".pub").keyIDText
        #expect(sign.stdout.contains("with key \(id)"))

        let verify = try KilnTool.run(["verify", signed, "--trusted-key", key + ".pub"])
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(verify.stdout.contains("signature by key \(id): valid, trusted"))

        let inspect = try KilnTool.run(["inspect", signed])
        #expect(inspect.stdout.contains("signed: by key \(id), valid"), "\(inspect.stdout)")
        #expect(try KilnTool.run(["inspect", artifact]).stdout.contains("signed: no"))

        let inputs = try TestModels.writeAddReluInputs(in: folder)
        let run = try KilnTool.run(["run", signed, "--trusted-key", key + ".pub"] + inputs)
        #expect(run.status == 0, "\(run.stderr)")
        let viaEnvironment = try KilnTool.run(["run", signed] + inputs, environment: ["KILN_TRUSTED_KEYS": key + ".pub"])
        #expect(viaEnvironment.status == 0, "\(viaEnvironment.stderr)")

        // The unsigned original is refused when a key is required, and runs when none is.
        let unsigned = try KilnTool.run(["run", artifact, "--trusted-key", key + ".pub"] + inputs)
        #expect(unsigned.status == 1 && unsigned.stderr.contains("is not signed"), "\(unsigned.stderr)")
        let unverified = try KilnTool.run(["verify", artifact, "--trusted-key", key + ".pub"])
        #expect(unverified.status == 1 && unverified.stderr.contains("is not signed"))
        #expect(try KilnTool.run(["run", artifact] + inputs).status == 0)
    }

    @Test func aTamperedOrUntrustedArtifactIsRefused() throws {
        let (artifact, key) = try prepare()
        let other = folder + "/other"
        #expect(try KilnTool.run(["keygen", "-o", other]).status == 0)
        #expect(try KilnTool.run(["sign", artifact, "--key", key]).status == 0)  // in place

        let untrusted = try KilnTool.run(["verify", artifact, "--trusted-key", other + ".pub"])
        #expect(untrusted.status == 1)
        #expect(untrusted.stderr.contains("signed only by untrusted key(s) \(try ArtifactPublicKey(path: key + ".pub").keyIDText)"), "\(untrusted.stderr)")

        let bytes = try FileSystem.read(artifact)
        let opened = try Artifact(bytes: bytes)
        let tamperedPath = folder + "/tampered.kiln"
        try FileSystem.writeAtomically(ArtifactTampering.flip(bytes, at: Int(opened.sections[0].offset) + 3), to: tamperedPath)
        let inputs = try TestModels.writeAddReluInputs(in: folder)
        let run = try KilnTool.run(["run", tamperedPath, "--trusted-key", key + ".pub"] + inputs)
        #expect(run.status == 1)
        #expect(run.stderr.contains("does not match the artifact's contents"), "\(run.stderr)")
        let verify = try KilnTool.run(["verify", tamperedPath, "--trusted-key", key + ".pub"])
        #expect(verify.status == 1 && verify.stderr.contains("does not match"))

        // Verify needs a key; sign refuses a public key.
        #expect(try KilnTool.run(["verify", artifact]).status == 1)
        let wrongKey = try KilnTool.run(["sign", artifact, "--key", key + ".pub"])
        #expect(wrongKey.status == 1 && wrongKey.stderr.contains("is a public key file"))
    }
}
