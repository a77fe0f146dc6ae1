import Foundation
import Kiln
import KilnTooling
import Testing
@testable import KilnTestSupport

/// `kiln compile`, and `kiln inspect`/`kiln run` on artifacts, run as a subprocess (the `kiln` built with the tests).
@Suite final class CompileCLITests {
    let folder: String
    let model: String

    init() throws {
        folder = try temporaryDirectory()
        model = folder + "/add_relu.onnx"
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: model)
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    func writeInputs() throws -> [String] { try TestModels.writeAddReluInputs(in: folder) }

    @Test func compileReportsProgressAndASummary() throws {
        let result = try KilnTool.run(["compile", model, "-o", folder + "/m.kiln", "--metadata", "owner=tests"])
        #expect(result.status == 0, "\(result.stderr)")
        for phase in ["import", "optimize", "partition", "compile", "write", "done: wrote"] {
            #expect(result.stderr.contains("] \(phase)"), "no progress line for \(phase): \(result.stderr)")
        }
        for line in ["nodes: 2 -> 2", "bytes: model", "artifact", "time per phase:", "time per pass", "partition: 2 nodes on kiln.cpu"] {
            #expect(result.stdout.contains(line), "no '\(line)' in: \(result.stdout)")
        }
        #expect(try Kiln.isArtifact(path: folder + "/m.kiln"))
        #expect(try Artifact(path: folder + "/m.kiln").manifest.userMetadata == ["owner": "tests"])
    }

    @Test func runOnTheArtifactWritesTheSameFilesAsOnTheModel() throws {
        let compiled = try KilnTool.run(["compile", model, "-o", folder + "/m.kiln"])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        let inputs = try writeInputs()
        let direct = try KilnTool.run(["run", model] + inputs + ["--output-dir", folder + "/direct"])
        let viaArtifact = try KilnTool.run(["run", folder + "/m.kiln"] + inputs + ["--output-dir", folder + "/artifact"])
        #expect(direct.status == 0 && viaArtifact.status == 0, "\(direct.stderr)\(viaArtifact.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder + "/direct").sorted()
        #expect(files == ["out_sum_0.npy", "relu.npy"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder + "/artifact").sorted() == files)
        for file in files {
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(folder)/direct/\(file)")) == Data(contentsOf: URL(fileURLWithPath: "\(folder)/artifact/\(file)")))
        }
        // The printed outputs are the same; only the timing line differs.
        func outputs(_ s: String) -> [String] { s.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("time:") && !$0.contains("written to") } }
        #expect(outputs(direct.stdout) == outputs(viaArtifact.stdout))
        // Same input checking.
        try NPY.write(Tensor(shape: [3, 2], [Float](repeating: 0, count: 6)), to: folder + "/bad.npy")
        let bad = try KilnTool.run(["run", folder + "/m.kiln", "--input", "x=\(folder)/bad.npy", "--input", "y=\(folder)/y.npy"])
        #expect(bad.status == 1 && bad.stderr.contains("input 'x'"), "\(bad.stderr)")
    }

    @Test func inspectShowsTheContainer() throws {
        #expect(try KilnTool.run(["compile", model, "-o", folder + "/m.kiln", "--opt-level", "1", "--backend", "kiln.reference"]).status == 0)
        let result = try KilnTool.run(["inspect", folder + "/m.kiln"])
        #expect(result.status == 0, "\(result.stderr)")
        let digest = SHA256.hex(SHA256.hash([UInt8](try Data(contentsOf: URL(fileURLWithPath: model)))))
        for line in ["artifact: format 1.0, flags 0x00000000", "producer: kiln \(Kiln.version)",
                     "source: onnx add_relu.onnx, sha256 \(digest)", "targets: host", "opt level: 1",
                     "0: kiln.reference 0.1.0, compat kiln.reference/1, 2 nodes, no payload",
                     "partition report (2 nodes):", "nodes 0–1: kiln.reference: claimed",
                     "input x: f32[2,3]", "output relu: f32[2,3]", "sections (2):", "0: manifest, zstd, stored",
                     "1: weights, none, stored 0 bytes", "crc32c ", "ops (2 nodes, 2 kinds):", "verify: ok"] {
            #expect(result.stdout.contains(line), "no '\(line)' in:\n\(result.stdout)")
        }
    }

    @Test func aFailedCompileLeavesTheExistingArtifactUntouched() throws {
        let out = folder + "/out.kiln"
        #expect(try KilnTool.run(["compile", model, "-o", out]).status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: out))
        let unsupported = folder + "/unsupported.onnx"
        try ONNXBuilder.write(ONNXBuilder.unsupported(), toFile: unsupported)
        let failed = try KilnTool.run(["compile", unsupported, "-o", out])
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("(acme, Frobnicate, 1) at nodes: frob"), "\(failed.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == before, "the old artifact changed")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".tmp") }.isEmpty)
        // And a failed compile to a new path creates nothing.
        #expect(try KilnTool.run(["compile", unsupported, "-o", folder + "/new.kiln"]).status == 1)
        #expect(!FileManager.default.fileExists(atPath: folder + "/new.kiln"))
    }

    @Test func badArgumentsAreClearErrors() throws {
        let level = try KilnTool.run(["compile", model, "-o", folder + "/m.kiln", "--opt-level", "7"])
        #expect(level.status == 1 && level.stderr.contains("optimization level 7"))
        let pass = try KilnTool.run(["compile", model, "-o", folder + "/m.kiln", "--print-ir-after", "nope"])
        #expect(pass.status == 1 && pass.stderr.contains("passes: shape-inference, simplify"), "\(pass.stderr)")
        let metadata = try KilnTool.run(["compile", model, "-o", folder + "/m.kiln", "--metadata", "novalue"])
        #expect(metadata.status == 1 && metadata.stderr.contains("KEY=VALUE"))
        #expect(!FileManager.default.fileExists(atPath: folder + "/m.kiln"))
    }

    @Test func printIRAfterDumpsTheGraph() throws {
        let result = try KilnTool.run(["compile", model, "-o", folder + "/m.kiln", "--print-ir-after", "dce"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("== IR after dce"))
        #expect(result.stdout.contains("Relu"))
    }
}
