#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Kiln
import KilnTooling
import Testing
@testable import KilnTestSupport

/// Issue 16 through the command line: where files are written, what is read, size and time limits.
@Suite final class CLIReliabilityTests {
    let folder: String
    let model: String

    init() throws {
        folder = try temporaryDirectory("kiln-cli-reliability")
        model = folder + "/add_relu.onnx"
        try ONNXBuilder.write(ONNXBuilder.addRelu(), toFile: model)
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    @Test func anEmptyOutputDirIsRefused() throws {
        let result = try KilnTool.run(["run", model, "--random", "--output-dir", ""])
        #expect(result.status == 1)
        #expect(result.stderr.contains("--output-dir is empty"), "\(result.stderr)")
        #expect(!FileSystem.exists("/relu.npy"))
    }

    @Test func compileRefusesAFIFOOrALinkAsItsOutput() throws {
        let fifo = folder + "/null.kiln"
        #expect(mkfifo(fifo, 0o600) == 0)
        let toFIFO = try KilnTool.run(["compile", model, "-o", fifo], timeout: 120)
        #expect(toFIFO.status == 1)
        #expect(toFIFO.stderr.contains("not a regular file"), "\(toFIFO.stderr)")
        let victim = folder + "/victim.txt"
        try FileSystem.writeAtomically(Array("keep".utf8), to: victim)
        #expect(symlink(victim, folder + "/link.kiln") == 0)
        let toLink = try KilnTool.run(["compile", model, "-o", folder + "/link.kiln"], timeout: 120)
        #expect(toLink.status == 1)
        #expect(toLink.stderr.contains("symbolic link"), "\(toLink.stderr)")
        #expect(try FileSystem.read(victim) == Array("keep".utf8))
    }

    /// A FIFO as the model and /dev/zero as an input: errors at once, never a hang or an endless read.
    @Test func fifosAndDevicesAreNotRead() throws {
        let fifo = folder + "/fifo.onnx"
        #expect(mkfifo(fifo, 0o600) == 0)
        let asModel = try KilnTool.run(["run", fifo, "--random"], timeout: 60)
        #expect(asModel.status == 1)
        #expect(asModel.stderr.contains("not a regular file"), "\(asModel.stderr)")
        let asInput = try KilnTool.run(["run", model, "--random", "--input", "x=/dev/zero"], timeout: 60)
        #expect(asInput.status == 1)
        #expect(asInput.stderr.contains("not a regular file"), "\(asInput.stderr)")
    }

    /// Dims whose product overflows Int used to overflow `--random`'s buffer size.
    @Test func randomInputsWithOverflowingShapesAreRefused() throws {
        let path = folder + "/huge.onnx"
        try ONNXBuilder.write(to: path, inputs: [ONNXBuilder.value("x", .float32, [.fixed(1 << 31), .fixed(1 << 31), .fixed(1 << 31)])],
                              outputs: [ONNXBuilder.value("y")], nodes: [ONNXBuilder.node("Relu", ["x"], ["y"])])
        let result = try KilnTool.run(["run", path, "--random", "--backend", "kiln.reference"], timeout: 120)
        #expect(result.status == 1)
        // Refused where the model is read (the declared type is one no tensor can have), before --random.
        #expect(result.stderr.contains("input 'x' has dims") && result.stderr.contains("too large"), "\(result.stderr)")
    }

    @Test func randomInputsOverTheCapAreRefused() throws {
        let path = folder + "/large.onnx"
        try ONNXBuilder.write(to: path, inputs: [ONNXBuilder.value("x", .float32, [1, .fixed(1 << 31), 5, 4])],
                              outputs: [ONNXBuilder.value("y")], nodes: [ONNXBuilder.node("Relu", ["x"], ["y"])])
        let result = try KilnTool.run(["run", path, "--random", "--backend", "kiln.reference"], timeout: 120)
        #expect(result.status == 1)
        #expect(result.stderr.contains("--random makes at most 268435456"), "\(result.stderr)")
    }

    /// kiln.cpu's arena for a model whose values need 8 GiB (a ConstantOfShape of 2^31 floats, then an Add),
    /// in a process limited to 4 GB of address space (as the fuzzers run): a typed error naming the arena,
    /// not a trap in Swift's allocator (a fuzz finding, through the C ABI's model loading).
    @Test func anArenaTheSystemCannotProvideIsATypedError() throws {
        let path = folder + "/arena.onnx"
        try ONNXBuilder.write(to: path, inputs: [ONNXBuilder.value("x", .float32, [1])], outputs: [ONNXBuilder.value("y")],
                              nodes: [ONNXBuilder.node("ConstantOfShape", ["s"], ["c"]), ONNXBuilder.node("Add", ["c", "x"], ["y"])],
                              initializers: [ONNXBuilder.int64Tensor("s", [1], [1 << 31])])
        // ASan and TSan reserve terabytes of shadow address space, so a sanitized build (scripts/test
        // --sanitize address|thread) cannot run under `ulimit -v`; there the sanitizer allocator's own
        // max_allocation_size_mb sets the same 4 GB limit.
        let flags = ProcessInfo.processInfo.environment["KILN_TEST_CFLAGS"] ?? ""
        let capped = "max_allocation_size_mb=4096:allocator_may_return_null=1"
        let limit = flags.contains("-fsanitize=address") ? "export ASAN_OPTIONS=\(capped)"
            : flags.contains("-fsanitize=thread") ? "export TSAN_OPTIONS=\(capped)" : "ulimit -v 4194304"
        let result = try ProcessRunner.run("/bin/bash", ["-c", limit + "; exec \"$0\" run \"$1\" --random", try TestPaths.kiln(), path],
                                           timeout: 120)
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("cannot allocate ") && result.stderr.contains("kiln.cpu's value arena"), "\(result.stderr)")
    }

    @Test func runTimeoutStopsTheRun() throws {
        let result = try KilnTool.run(["run", model, "--random", "--timeout", "0.000000001"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("run exceeded its deadline"), "\(result.stderr)")
        let bad = try KilnTool.run(["run", model, "--random", "--timeout", "0"])
        #expect(bad.status == 1)
    }

    @Test func theMemoryBudgetOptionReachesKilnCPU() throws {
        let path = folder + "/big.onnx"
        try ONNXBuilder.write(to: path, inputs: [ONNXBuilder.value("x", .float32, [1024, 1024])],
                              outputs: [ONNXBuilder.value("z")],
                              nodes: [ONNXBuilder.node("Exp", ["x"], ["y"]), ONNXBuilder.node("Transpose", ["y"], ["z"])])
        let result = try KilnTool.run(["run", path, "--random", "--backend", "kiln.cpu", "--backend-option", "memory_budget_mb=1"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("memory budget of 1.00 MiB"), "\(result.stderr)")
    }
}
