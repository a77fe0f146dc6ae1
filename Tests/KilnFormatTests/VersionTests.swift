import KilnIR
import Testing
@testable import KilnFormat

@Suite struct VersionTests {
    static let model = Model(graph: Graph(name: "g", initializers: ["w": patterned(.float32, shape: [500])]))

    @Test func aNewerMajorVersionIsRefusedNamingTheVersion() throws {
        var writer = ArtifactWriter(model: Self.model)
        writer.formatVersion = (2, 3)
        let bytes = try writer.serialize()
        do {
            _ = try Artifact(bytes: bytes)
            Issue.record("a newer major version was accepted")
        } catch let error as KilnError {
            #expect(error.code == .versionMismatch)
            #expect(error.message.contains("format version 2.3"))
            #expect(error.message.contains("newer Kiln runtime"))
        }
    }

    @Test func aNewerMinorVersionLoadsIgnoringWhatItAdds() throws {
        var writer = ArtifactWriter(model: Self.model)
        writer.formatVersion = (1, 7)
        writer.extraEntryBytes = 16
        writer.extraSections = [(kind: 99, bytes: Array(repeating: 1, count: 100))]
        // Unknown manifest field 1000 (length-delimited) and 1001 (varint).
        writer.extraManifestBytes = [0xC2, 0x3E, 0x03, 0x61, 0x62, 0x63, 0xC8, 0x3E, 0x05]
        let artifact = try Artifact(bytes: writer.serialize())
        #expect(artifact.formatVersion == (1, 7))
        #expect(artifact.sections.count == 3 && artifact.sections[2].kind == nil)
        expectSame(Self.model, try artifact.model(), "newer minor")
    }

    @Test func majorVersionZeroIsInvalid() throws {
        var writer = ArtifactWriter(model: Self.model)
        writer.formatVersion = (0, 1)
        #expect(throws: KilnError.self) { try Artifact(bytes: writer.serialize()) }
    }
}

@Suite struct ReferenceCheckTests {
    static let model = Model(graph: Graph(name: "g", initializers: ["w": patterned(.float32, shape: [500])]))

    func read(_ edit: @escaping @Sendable (inout Kiln_Ir_Model) -> Void) throws -> Model {
        var writer = ArtifactWriter(model: Self.model)
        _ = writer.addPayload(Array(repeating: 0, count: 4000))
        writer.editModelMessage = edit
        return try Artifact(bytes: writer.serialize()).model()
    }

    @Test func dataReferencesAreChecked() throws {
        #expect(throws: KilnError(.invalidArtifact, "<memory>: graph 'g' initializer 'w': data reference names section 2, which is not a weights section")) {
            try read { $0.graph.initializers[0].ref.section = 2 }
        }
        #expect(throws: KilnError(.invalidArtifact, "<memory>: graph 'g' initializer 'w': data reference [64, +2000) runs past the end of section 1 (2000 bytes)")) {
            try read { $0.graph.initializers[0].ref.offset = 64 }
        }
        #expect(throws: KilnError(.invalidArtifact, "<memory>: manifest model: graph 'g' initializer 'w': reference of 1996 bytes for f32[500], which needs 2000")) {
            try read { $0.graph.initializers[0].ref.length = 1996 }
        }
        #expect(throws: KilnError(.invalidArtifact, "<memory>: manifest model: graph 'g' initializer 'w': unknown element type 99")) {
            try read { $0.graph.initializers[0].dtype = .UNRECOGNIZED(99) }
        }
        #expect(throws: KilnError(.invalidArtifact, "<memory>: manifest model: graph 'g' initializer 'w': negative dim -500 in shape [-500]")) {
            try read { $0.graph.initializers[0].shape = [-500] }
        }
        #expect(throws: KilnError.self) { try read { $0.graph.initializers.append($0.graph.initializers[0]) } }
        #expect(throws: KilnError.self) { try read { $0.graph.initializers[0].shape = [1 << 40, 1 << 40] } }
    }
}
