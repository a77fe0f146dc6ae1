// Writes the golden artifact fixtures: each model of `TestModels` compiled (opt level 2, kiln.reference)
// to `<folder>/format-<major>/<name>.kiln`, with its inputs and kiln.reference's outputs as
// `<name>/input.<x>.npy` and `<name>/output.<y>.npy`. Run it through scripts/make-fixtures, once, when a
// new artifact format version is released; files that exist are history and are never rewritten.
import Foundation
import Kiln
import KilnTooling
import KilnTestSupport

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count <= 1, arguments.first.map({ !$0.hasPrefix("-") }) ?? true else {
    FileHandle.standardError.write(Data("usage: make-fixtures [ARTIFACTS_FOLDER]   (default: Tests/Fixtures/artifacts)\n".utf8))
    exit(2)
}
let base = arguments.first ?? TestPaths.inPackage("Tests/Fixtures/artifacts")
let folder = "\(base)/format-\(ArtifactFormat.version.major)"

do {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    for (name, make) in TestModels.all {
        let artifact = "\(folder)/\(name).kiln"
        guard !FileManager.default.fileExists(atPath: artifact) else {
            print("kept \(artifact) (fixtures are never rewritten)")
            continue
        }
        let (model, inputs) = make()
        let output = try Kiln.compiler(options: .init(metadata: ["fixture": name]))
            .compile(model: model, source: SourceInfo(format: "kiln-ir", fileName: "\(name) (Tests/KilnTestSupport/TestModels.swift)"))
        try Data(output.bytes).write(to: URL(fileURLWithPath: artifact))
        let data = "\(folder)/\(name)"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        for (input, tensor) in inputs { try NPY.write(tensor, to: "\(data)/input.\(input).npy") }
        let session = try Session(model: model, backend: Kiln.backend(named: "kiln.reference"))
        let outputs = try session.run(inputs.mapValues { .tensor($0) }).compactMapValues(\.tensor)
        for (out, tensor) in outputs { try NPY.write(tensor, to: "\(data)/output.\(out).npy") }
        print("wrote \(artifact) and \(data)/")
    }
} catch {
    FileHandle.standardError.write(Data("make-fixtures: \(error)\n".utf8))
    exit(1)
}
