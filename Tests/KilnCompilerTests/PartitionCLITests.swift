import Foundation
import Kiln
import Testing
@testable import KilnTestSupport

/// `kiln compile --backends …`, `kiln inspect --partitions`, `kiln run --backends …` and `kiln backends`.
@Suite final class PartitionCLITests {
    let folder: String
    let model: String
    let inputs: [String]

    init() throws {
        folder = try temporaryDirectory()
        model = folder + "/add_relu.onnx"
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: model)
        inputs = try TestModels.writeAddReluInputs(in: folder)
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    @Test func compileSplitsInspectReportsAndRunMatches() throws {
        let out = folder + "/split.kiln"
        // kiln.cpu takes Add; Relu is denied to it and falls back to kiln.reference.
        let compiled = try KilnCLI.run(["compile", model, "-o", out, "--backends", "kiln.cpu", "--deny", "Relu", "--fallback", "deny"])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        for line in ["partition: 1 nodes on kiln.cpu", "partition: 1 nodes on kiln.reference",
                     "node 1: kiln.reference: denied by --deny Relu; fallback kiln.reference"] {
            #expect(compiled.stdout.contains(line), "no '\(line)' in:\n\(compiled.stdout)")
        }

        let inspected = try KilnCLI.run(["inspect", out])
        #expect(inspected.status == 0, "\(inspected.stderr)")
        for line in ["partitions (2):", "in: x, y; out: out/sum:0", "partition report (2 nodes):",
                     "kiln.cpu: 1 node; kiln.reference: 1 node (1 by fallback)", "node 0: kiln.cpu: claimed by kiln.cpu"] {
            #expect(inspected.stdout.contains(line), "no '\(line)' in:\n\(inspected.stdout)")
        }
        let full = try KilnCLI.run(["inspect", out, "--partitions"])
        #expect(full.stdout.contains("node 1 'relu' (Relu) → kiln.reference: denied by --deny Relu; fallback kiln.reference"), "\(full.stdout)")

        let ran = try KilnCLI.run(["run", out] + inputs)
        #expect(ran.status == 0 && ran.stdout.contains("relu: f32[2,3]  min=0 max=5.5"), "\(ran.stdout)\(ran.stderr)")
        let inMemory = try KilnCLI.run(["run", model, "--backends", "kiln.cpu", "--deny", "Relu"] + inputs)
        #expect(inMemory.status == 0, "\(inMemory.stderr)")
        #expect(inMemory.stdout.contains("partitions: kiln.cpu (1 node) → kiln.reference (1 node)"), "\(inMemory.stdout)")
        #expect(inMemory.stdout.contains("relu: f32[2,3]  min=0 max=5.5"), "\(inMemory.stdout)")
    }

    @Test func badPartitionFlagsAreClearErrorsAndSmallGroupsFallBack() throws {
        let out = folder + "/w.kiln"
        let unknown = try KilnCLI.run(["compile", model, "-o", out, "--backends", "acme.npu"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no backend named 'acme.npu' (known: kiln.reference, kiln.cpu)"), "\(unknown.stderr)")
        let policy = try KilnCLI.run(["compile", model, "-o", out, "--fallback", "sometimes"])
        #expect(policy.status == 1 && policy.stderr.contains("--fallback sometimes: expected allow, warn or deny"), "\(policy.stderr)")
        let size = try KilnCLI.run(["compile", model, "-o", out, "--backends", "kiln.cpu", "--min-group-size", "0"])
        #expect(size.status == 1 && size.stderr.contains("--min-group-size 0"), "\(size.stderr)")
        let small = try KilnCLI.run(["compile", model, "-o", out, "--backends", "kiln.cpu", "--min-group-size", "3"])
        #expect(small.status == 0 && small.stdout.contains("below --min-group-size 3; fallback kiln.reference"), "\(small.stdout)\(small.stderr)")
        let artifactRun = try KilnCLI.run(["run", out, "--backends", "kiln.cpu"] + inputs)
        #expect(artifactRun.status == 1 && artifactRun.stderr.contains("is an artifact"), "\(artifactRun.stderr)")
    }

    @Test func backendsListsNamesVersionsVendorsAndDevices() throws {
        let listed = try KilnCLI.run(["backends"])
        #expect(listed.status == 0, "\(listed.stderr)")
        for line in ["backends (", "kiln.reference  0.1.0  vendor kiln", "kiln.cpu ", " 0.1.0  vendor kiln\n    device cpu: "] {
            #expect(listed.stdout.contains(line), "no '\(line)' in:\n\(listed.stdout)")
        }
    }
}
