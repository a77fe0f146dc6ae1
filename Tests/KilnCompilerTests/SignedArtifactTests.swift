import Foundation
import Kiln
import KilnReference
import KilnTooling
import Synchronization
import Testing
import KilnTestSupport

/// A backend that counts the payloads handed to it, to prove that a refused artifact reaches no backend.
final class LoadCounter: Sendable {
    let loads = Mutex(0)
    var count: Int { loads.withLock { $0 } }
}

struct RecordingBackend: Backend {
    let inner = ClaimingBackend("test.recording", claims: ["Add", "Relu"])
    let counter: LoadCounter

    var info: BackendInfo { inner.info }
    func rejections(in graph: Graph) -> [Rejection] { inner.rejections(in: graph) }
    func prepare(_ graph: Graph) throws -> any Executable { try inner.prepare(graph) }
    func compile(_ graph: Graph, options: CompileOptions) throws -> Payload { try inner.compile(graph, options: options) }
    func check(compat: String) -> String? { inner.check(compat: compat) }
    func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        counter.loads.withLock { $0 += 1 }
        return try inner.load(payload, graph: graph)
    }
}

/// Loading with trusted keys: a signed artifact runs; a tampered, unsigned or untrusted one is refused
/// before its payload reaches the backend.
struct SignedArtifactTests {
    static let key = try! ArtifactSigningKey(seed: Array(100..<132))
    static let trusted = Kiln.LoadOptions(trust: ArtifactTrust(trustedKeys: [key.publicKey]))

    static func compiled(_ counter: LoadCounter) throws -> (bytes: [UInt8], registry: BackendRegistry) {
        let backends = registry(RecordingBackend(counter: counter))
        let compiler = Compiler(options: .init(optLevel: 0, backends: ["test.recording"], fallback: .deny), backends: backends)
        return (try compiler.compile(model: TestModels.addRelu().0).bytes, backends)
    }

    @Test func aTamperedPayloadIsRefusedBeforeTheBackendLoadsIt() throws {
        let counter = LoadCounter()
        let (unsigned, backends) = try Self.compiled(counter)
        let signed = try ArtifactSigner.sign(unsigned, with: Self.key)
        let artifact = try Artifact(bytes: signed)
        let payloadIndex = Int(try #require(artifact.manifest.partitions.first?.payloadSection))
        let payload = artifact.sections[payloadIndex]

        // The signed artifact loads and runs on the backend, once.
        let session = try Kiln.load(artifactBytes: signed, options: Self.trusted, registry: backends)
        #expect(counter.count == 1)
        let (_, inputs) = TestModels.addRelu()
        #expect(try run(session, inputs)["relu"] != nil)

        // One payload byte changed, checksums fixed: refused by the signature, the backend never called.
        let tampered = ArtifactTampering.flip(signed, at: Int(payload.offset))
        do {
            _ = try Kiln.load(artifactBytes: tampered, options: Self.trusted, registry: backends)
            Issue.record("a tampered signed artifact loaded")
        } catch let error as KilnError {
            #expect(error.code == .invalidArtifact)
            #expect(error.message.contains("signature by key \(Self.key.publicKey.keyIDText) does not match"), "\(error.message)")
        }
        #expect(counter.count == 1)

        // Without a requirement the same bytes reach the backend: only the signature stopped them above.
        #expect(throws: KilnError.self) { try Kiln.load(artifactBytes: tampered, registry: backends) }
        #expect(counter.count == 2)
    }

    @Test func unsignedAndUntrustedArtifactsReachNoBackend() throws {
        let counter = LoadCounter()
        let (unsigned, backends) = try Self.compiled(counter)
        let untrusted = try ArtifactSigner.sign(unsigned, with: ArtifactSigningKey.generate())
        for (what, bytes, message) in [("unsigned", unsigned, "is not signed"), ("untrusted", untrusted, "signed only by untrusted key(s)")] {
            do {
                _ = try Kiln.load(artifactBytes: bytes, options: Self.trusted, registry: backends)
                Issue.record("\(what) artifact loaded")
            } catch let error as KilnError {
                #expect(error.code == .invalidArtifact && error.message.contains(message), "\(what): \(error.message)")
            }
        }
        #expect(counter.count == 0)
        // Without a requirement both load.
        _ = try Kiln.load(artifactBytes: unsigned, registry: backends)
        _ = try Kiln.load(artifactBytes: untrusted, registry: backends)
        #expect(counter.count == 2)
    }

    @Test func aModelCannotBeLoadedWhenASignatureIsRequired() throws {
        try withTemporaryDirectory { folder in
            let path = "\(folder)/model.kiln.onnx"
            let (unsigned, _) = try Self.compiled(LoadCounter())
            try FileSystem.writeAtomically(unsigned, to: "\(folder)/a.kiln")
            #expect(throws: KilnError.self) { try Kiln.load(path: "\(folder)/a.kiln", options: Self.trusted) }
            try FileSystem.writeAtomically(Array("not a model".utf8), to: path)
            do {
                _ = try Kiln.load(path: path, options: Self.trusted)
                Issue.record("a model loaded although a signature was required")
            } catch let error as KilnError {
                #expect(error.code == .invalidArtifact && error.message.contains("is not a .kiln artifact, so it cannot be signed"))
            }
        }
    }
}

/// The signed golden fixture: format 1.1, add_relu signed by the key in Tests/Fixtures/artifacts/format-1/signed.
struct SignedGoldenFixtureTests {
    static let folder = TestPaths.inPackage("Tests/Fixtures/artifacts/format-1/signed")

    @Test func theSignedFixtureVerifiesLoadsAndRuns() throws {
        let key = try ArtifactPublicKey(path: "\(Self.folder)/fixture-key.pub")
        let session = try Kiln.load(path: "\(Self.folder)/add_relu.kiln", options: Kiln.LoadOptions(trust: ArtifactTrust(trustedKeys: [key])))
        let artifact = try #require(session.artifact)
        #expect(artifact.formatVersion == (1, 1))
        #expect(artifact.trustedSignatures.map(\.publicKey) == [key])
        let (_, inputs) = TestModels.addRelu()
        let expected = try run(Session(model: TestModels.addRelu().0, backend: ReferenceBackend()), inputs)
        expectClose(try run(session, inputs), expected, "signed fixture")
        // Its unsigned original is refused with the same key, and the signed one loads without a key.
        #expect(throws: KilnError.self) {
            try Kiln.load(path: TestPaths.inPackage("Tests/Fixtures/artifacts/format-1/add_relu.kiln"),
                          options: Kiln.LoadOptions(trust: ArtifactTrust(trustedKeys: [key])))
        }
        _ = try Kiln.load(path: "\(Self.folder)/add_relu.kiln")
    }
}
