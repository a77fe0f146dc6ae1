import Foundation
import Kiln
import KilnTooling
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
        let compiled = try KilnTool.run(["compile", model, "-o", out, "--backends", "kiln.cpu", "--deny", "Relu", "--fallback", "deny"])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        for line in ["partition: 1 nodes on kiln.cpu", "partition: 1 nodes on kiln.reference",
                     "node 1: kiln.reference: denied by --deny Relu; fallback kiln.reference"] {
            #expect(compiled.stdout.contains(line), "no '\(line)' in:\n\(compiled.stdout)")
        }

        let inspected = try KilnTool.run(["inspect", out])
        #expect(inspected.status == 0, "\(inspected.stderr)")
        for line in ["partitions (2):", "in: x, y; out: out/sum:0", "partition report (2 nodes):",
                     "kiln.cpu: 1 node; kiln.reference: 1 node (1 by fallback)", "node 0: kiln.cpu: claimed by kiln.cpu"] {
            #expect(inspected.stdout.contains(line), "no '\(line)' in:\n\(inspected.stdout)")
        }
        let full = try KilnTool.run(["inspect", out, "--partitions"])
        #expect(full.stdout.contains("node 1 'relu' (Relu) → kiln.reference: denied by --deny Relu; fallback kiln.reference"), "\(full.stdout)")

        let ran = try KilnTool.run(["run", out] + inputs)
        #expect(ran.status == 0 && ran.stdout.contains("relu: f32[2,3]  min=0 max=5.5"), "\(ran.stdout)\(ran.stderr)")
        let inMemory = try KilnTool.run(["run", model, "--backends", "kiln.cpu", "--deny", "Relu"] + inputs)
        #expect(inMemory.status == 0, "\(inMemory.stderr)")
        #expect(inMemory.stdout.contains("partitions: kiln.cpu (1 node) → kiln.reference (1 node)"), "\(inMemory.stdout)")
        #expect(inMemory.stdout.contains("relu: f32[2,3]  min=0 max=5.5"), "\(inMemory.stdout)")
    }

    @Test func badPartitionFlagsAreClearErrorsAndSmallGroupsFallBack() throws {
        let out = folder + "/w.kiln"
        let unknown = try KilnTool.run(["compile", model, "-o", out, "--backends", "acme.npu"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no backend named 'acme.npu' (known: kiln.cpu, kiln.gpu, kiln.reference)"), "\(unknown.stderr)")
        let policy = try KilnTool.run(["compile", model, "-o", out, "--fallback", "sometimes"])
        #expect(policy.status == 1 && policy.stderr.contains("--fallback sometimes: expected allow, warn or deny"), "\(policy.stderr)")
        let size = try KilnTool.run(["compile", model, "-o", out, "--backends", "kiln.cpu", "--min-group-size", "0"])
        #expect(size.status == 1 && size.stderr.contains("--min-group-size 0"), "\(size.stderr)")
        let small = try KilnTool.run(["compile", model, "-o", out, "--backends", "kiln.cpu", "--min-group-size", "3"])
        #expect(small.status == 0 && small.stdout.contains("below --min-group-size 3; fallback kiln.reference"), "\(small.stdout)\(small.stderr)")
        let artifactRun = try KilnTool.run(["run", out, "--backends", "kiln.cpu"] + inputs)
        #expect(artifactRun.status == 1 && artifactRun.stderr.contains("is an artifact"), "\(artifactRun.stderr)")
    }

    @Test func backendsListsNamesKindsTargetsOptionsAndDevices() throws {
        let listed = try KilnTool.run(["backends"])
        #expect(listed.status == 0, "\(listed.stderr)")
        for line in ["backends (3):", "kiln.gpu        accelerator  0.1.0  vendor kiln", "    targets: opencl (priority 100), opencl-gpu (priority 100)", "kiln.cpu        optimized  0.1.0  vendor kiln", "kiln.reference  reference  0.1.0  vendor kiln",
                     "    targets: host (priority 100), ", "    option threads (integer ≥ 1, default: the physical cores)",
                     "    targets: every target, as the last fallback", "    device cpu: "] {
            #expect(listed.stdout.contains(line), "no '\(line)' in:\n\(listed.stdout)")
        }
    }

    @Test func targetsListTheirBackendsInOrderWithDevices() throws {
        let listed = try KilnTool.run(["targets"])
        #expect(listed.status == 0, "\(listed.stderr)")
        for line in ["  host (the default: this machine)\n    backends: kiln.cpu\n    fallback: kiln.reference\n    device of kiln.cpu: cpu: ",
                     "  x86_64-avx2\n    backends: kiln.cpu\n    fallback: kiln.reference", "  generic\n"] {
            #expect(listed.stdout.contains(line), "no '\(line)' in:\n\(listed.stdout)")
        }
        let unknown = try KilnTool.run(["compile", model, "-o", folder + "/t.kiln", "--target", "mars"])
        #expect(unknown.status == 1 && unknown.stderr.contains("unknown target 'mars' (known: host, aarch64-neon, generic, opencl, opencl-gpu, x86_64-avx2, x86_64-avx512"), "\(unknown.stderr)")
    }

    @Test func aCompileWithNoFlagsIsForKilnCPUAndSaysNothingFellBack() throws {
        let out = folder + "/default.kiln"
        let compiled = try KilnTool.run(["compile", model, "-o", out])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        #expect(compiled.stdout.contains("partition: 2 nodes on kiln.cpu"), "\(compiled.stdout)")
        #expect(compiled.stderr.contains("fallback: none (all 2 nodes on kiln.cpu)"), "\(compiled.stderr)")
        // A denied op falls back, and the one line says how many nodes and why.
        let denied = try KilnTool.run(["compile", model, "-o", out, "--deny", "Relu"])
        #expect(denied.status == 0, "\(denied.stderr)")
        #expect(denied.stderr.contains("fallback: 1 of 2 nodes on kiln.reference: Relu (denied by --deny Relu)"), "\(denied.stderr)")
        // Running the ONNX model with no flags runs it on kiln.cpu too.
        let ran = try KilnTool.run(["run", model, "--profile"] + inputs)
        #expect(ran.status == 0 && ran.stdout.contains("relu: f32[2,3]  min=0 max=5.5"), "\(ran.stdout)\(ran.stderr)")
    }
}
