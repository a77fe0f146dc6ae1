import Foundation
import Kiln
import KilnReference
import Testing
// Every file of this target uses KilnTestSupport (TestRandom, f32, node, PluginBuild, KilnTool).
@_exported import KilnTestSupport

/// Runs `session` on `inputs` and returns the tensor outputs by name.
func run(_ session: Session, _ inputs: [String: Tensor]) throws -> [String: Tensor] {
    try session.run(inputs.mapValues { .tensor($0) }).compactMapValues(\.tensor)
}

/// Records an issue unless `actual` and `expected` hold the same tensors within `tolerance` (relative).
func expectClose(_ actual: [String: Tensor], _ expected: [String: Tensor], tolerance: Double = 1e-5,
                 _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(Set(actual.keys) == Set(expected.keys), "\(what): outputs \(actual.keys.sorted()) vs \(expected.keys.sorted())", sourceLocation: sourceLocation)
    for (name, e) in expected {
        guard let a = actual[name] else { continue }
        #expect(a.dtype == e.dtype && a.shape == e.shape, "\(what): \(name) is \(a.dtype)\(a.shape), expected \(e.dtype)\(e.shape)", sourceLocation: sourceLocation)
        guard a.shape == e.shape else { continue }
        let worst = zip(a.asDoubles(), e.asDoubles()).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst <= tolerance, "\(what): \(name) differs by \(worst)", sourceLocation: sourceLocation)
    }
}

/// A backend with another name that runs graphs like kiln.reference, for compatibility tests.
struct RenamedBackend: Backend {
    let info: BackendInfo
    let compat: String
    let reference = ReferenceBackend()

    init(name: String, version: String, compat: String) {
        info = BackendInfo(name: name, vendor: "tests", version: version)
        self.compat = compat
    }

    func rejections(in graph: Graph) -> [Rejection] { reference.rejections(in: graph) }
    func prepare(_ graph: Graph) throws -> any Executable { try reference.prepare(graph) }
    func compile(_ graph: Graph, options: CompileOptions) throws -> Payload { Payload(bytes: Array("compiled".utf8), compat: compat) }
    func check(compat: String) -> String? { compat == self.compat ? nil : "\(info.name) \(info.version) reads '\(self.compat)' only" }
    func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        guard payload == Array("compiled".utf8) else { throw KilnError(.invalidArtifact, "bad payload") }
        return try reference.prepare(graph)
    }
}
