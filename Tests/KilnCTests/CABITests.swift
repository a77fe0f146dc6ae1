import Foundation
import Kiln
import KilnTooling
import Testing
import KilnTestSupport

/// The C ABI (include/kiln/kiln.h, libKilnC.so) tested from C and C++ programs built and run by these tests.
@Suite(.serialized)
struct CABITests {
    /// A folder with the test model (model.onnx) and its compiled artifact (model.kiln), made once.
    static func fixtures() throws -> (folder: String, model: String, artifact: String) {
        if let made = madeFixtures { return made }
        let folder = try temporaryDirectory("kiln-c-tests")
        let model = folder + "/model.onnx", artifact = folder + "/model.kiln"
        try TestModel.write(to: model)
        try FileSystem.writeAtomically(Kiln.compile(onnxPath: model).bytes, to: artifact)
        madeFixtures = (folder, model, artifact)
        return (folder, model, artifact)
    }
    nonisolated(unsafe) private static var madeFixtures: (folder: String, model: String, artifact: String)?

    /// Compiles one of the repository's test programs once per test run.
    static func program(_ name: String, _ sources: [String], cxx: Bool = false) throws -> String {
        let output = try fixtures().folder + "/" + name
        if !FileManager.default.isExecutableFile(atPath: output) {
            try Toolchain.build(sources, into: output, cxx: cxx)
        }
        return output
    }

    /// Checks that a program's printed `value` lines equal kiln.reference's outputs, exactly (same
    /// backend, and %.9g round-trips a float32).
    static func expectReferenceValues(_ stdout: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = try TestModel.reference(modelPath: fixtures().model)
        let printed = TestModel.printedValues(stdout)
        #expect(Set(printed.keys) == Set(expected.keys), "printed outputs \(printed.keys.sorted())", sourceLocation: sourceLocation)
        for (name, want) in expected {
            guard let got = printed[name] else { continue }
            #expect(got.dims == want.dims, "\(name) dims", sourceLocation: sourceLocation)
            #expect(got.values.map { Float($0) } == want.values.map { Float($0) }, "\(name) values", sourceLocation: sourceLocation)
        }
    }

    @Test
    func libraryExportsEveryFunctionTheHeaderDeclares() throws {
        let header = try String(contentsOfFile: TestPaths.packageRoot + "/include/kiln/kiln.h", encoding: .utf8)
        let pattern = try NSRegularExpression(pattern: #"KILN_API[^;(]*?\b(kiln_[a-z0-9_]+)\s*\("#)
        let names = pattern.matches(in: header, range: NSRange(header.startIndex..., in: header)).map {
            String(header[Range($0.range(at: 1), in: header)!])
        }
        #expect(names.count >= 29, "found \(names.count) declarations")
        // Read the dynamic symbol table with nm: loading the library into this process would register its
        // copy of Kiln's Swift types beside the test bundle's own.
        let directory = try #require(Toolchain.libraryDirectory, "\(Toolchain.missingLibrary ?? "")")
        let nm = try ProcessRunner.run("nm", ["-D", "--defined-only", directory + "/libKilnC.so"])
        #expect(nm.status == 0, "\(nm.stderr)")
        let exported = Set(nm.stdout.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            return fields.count == 3 && fields[1] == "T" ? String(fields[2]) : nil
        })
        let missing = names.filter { !exported.contains($0) }
        #expect(missing.isEmpty, "declared in kiln.h but not exported: \(missing)")
    }

    @Test
    func shippedStructLayoutsMatchTheCommittedExpectation() throws {
        let program = try Self.program("abi_layout", ["bindings/c/tests/abi_layout.c"])
        let result = try ProcessRunner.run(program, [])
        #expect(result.status == 0)
        let expected = try String(contentsOfFile: TestPaths.packageRoot + "/Tests/KilnCTests/abi-layout.txt", encoding: .utf8)
        let expectedLines = expected.split(separator: "\n"), actualLines = result.stdout.split(separator: "\n")
        let changed = zip(expectedLines, actualLines).filter { $0 != $1 }.map { "expected '\($0)', got '\($1)'" }
        #expect(changed.isEmpty && expectedLines.count == actualLines.count,
                "a shipped layout or constant changed (see Documentation/CABI.md, versioning): \(changed.prefix(5)), \(expectedLines.count) vs \(actualLines.count) lines")
    }

    @Test
    func runModelExampleRunsTheModelAndTheArtifact() throws {
        let program = try Self.program("run_model", ["bindings/c/examples/run_model.c"])
        for path in [try Self.fixtures().model, try Self.fixtures().artifact] {
            let result = try ProcessRunner.run(program, [path])
            #expect(result.status == 0, "\(path): \(result.stderr)")
            #expect(result.stdout == "y: f32[1,3]\ns: i64[2]\nxi: f32[1,4]\n", "\(path)")
        }
        let missing = try ProcessRunner.run(program, [try Self.fixtures().folder + "/missing.kiln"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("missing.kiln") && missing.stderr.contains("code 1"), "\(missing.stderr)")
        let corrupt = try Self.fixtures().folder + "/corrupt.kiln"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try Self.fixtures().artifact)))
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes.prefix(bytes.count - 7)).write(to: URL(fileURLWithPath: corrupt))
        let bad = try ProcessRunner.run(program, [corrupt])
        #expect(bad.status == 1 && bad.stderr.contains("corrupt.kiln"), "\(bad.stderr)")
    }

    @Test
    func cProgramExercisesTheWholeAPI() throws {
        let program = try Self.program("c_api_test", ["bindings/c/tests/c_api_test.c"])
        let result = try ProcessRunner.run(program, [try Self.fixtures().model, try Self.fixtures().artifact, try PluginBuild.sample()])
        let failures = result.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(result.status == 0 && failures.isEmpty, "\(failures) \(result.stderr)")
        #expect(result.stdout.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count >= 60)
        for check in ["register_plugin", "plugin_is_per_context", "plugin_results", "plugin_artifact_needs_plugin", "discover_reports_failures", "compile_unknown_key",
                      "abi_check", "abi_check_older_minor", "abi_check_newer_minor", "abi_check_message", "abi_check_other_major"] {
            #expect(result.stdout.contains("ok \(check)\n"), "check \(check) did not pass")
        }
        try Self.expectReferenceValues(result.stdout)
    }

    /// The concurrency contract (Documentation/CABI.md, "Threads"): 8 threads × 500 runs on one kiln_model
    /// give the single-threaded outputs, for the ONNX model and its artifact. `scripts/test --sanitize
    /// thread` runs this under ThreadSanitizer.
    @Test
    func oneModelRunsFromEightThreadsAtOnce() throws {
        let program = try Self.program("threads_test", ["bindings/c/tests/threads_test.c"])
        for path in [try Self.fixtures().model, try Self.fixtures().artifact] {
            let result = try ProcessRunner.run(program, [path, "8", "500"], timeout: 600)
            #expect(result.status == 0, "\(path): \(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("ok threads 8 x 500"), "\(path): \(result.stdout)")
        }
    }

    /// kiln_run's fast path (a run bound to the input signature, Sources/KilnC/BoundRuns.swift) against the
    /// general path (kiln_run_alloc, kiln_run with a timeout): two inputs and two outputs beside an input with
    /// a default, signature changes (batch 1, 3, 1), an Identity written over its input, the same errors for
    /// wrong outputs after fast-path calls, inputs the fast path does not take, 8 threads × 200 runs. For the
    /// ONNX models and their artifacts.
    @Test
    func kilnRunFastPathGivesWhatTheGeneralPathGives() throws {
        let folder = try Self.fixtures().folder
        let two = folder + "/two_inputs.onnx", identity = folder + "/identity.onnx"
        try TestModel.writeTwoInputs(to: two)
        try TestModel.writeIdentity(to: identity)
        for path in [two, identity] {
            try FileSystem.writeAtomically(Kiln.compile(onnxPath: path).bytes, to: path.replacingOccurrences(of: ".onnx", with: ".kiln"))
        }
        let program = try Self.program("bound_run_test", ["bindings/c/tests/bound_run_test.c"])
        for paths in [[two, identity], [two, identity].map { $0.replacingOccurrences(of: ".onnx", with: ".kiln") }] {
            let result = try ProcessRunner.run(program, paths, timeout: 600)
            let lines = result.stdout.split(separator: "\n")
            let failures = lines.filter { $0.hasPrefix("FAIL") }
            #expect(result.status == 0 && failures.isEmpty, "\(paths): \(failures) \(result.stderr)")
            #expect(lines.filter { $0.hasPrefix("ok ") }.count == 17, "\(paths): \(result.stdout)")
        }
    }

    /// An artifact file truncated between load and run: a typed error or a correct result, never a signal
    /// (the program is a child process, so a SIGBUS fails this test instead of killing the runner).
    @Test
    func truncatingTheArtifactAfterLoadIsNotASignal() throws {
        let folder = try Self.fixtures().folder
        // x: f32[batch, 4] · W: f32[4, 16384] (256 KB, so it goes to a weights section, stored uncompressed:
        // the case a memory-mapped artifact used in place, and where truncation raised SIGBUS; kiln.reference
        // reads the weights where they are, kiln.cpu would have packed them into its own memory at load).
        let onnx = folder + "/large_weight.onnx", artifact = folder + "/large_weight.kiln"
        try TestModel.writeLargeWeight(to: onnx)
        try FileSystem.writeAtomically(Kiln.compile(onnxPath: onnx, options: Compiler.Options(compression: .none, backends: ["kiln.reference"])).bytes, to: artifact)
        let program = try Self.program("truncate_test", ["bindings/c/tests/truncate_test.c"])
        let result = try ProcessRunner.run(program, [artifact, folder + "/truncated.kiln"])
        #expect(result.status == 0, "status \(result.status): \(result.stdout) \(result.stderr)")
        #expect(result.stdout.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count == 2, "\(result.stdout)")
    }

    @Test
    func cppWrapperTestPasses() throws {
        let program = try Self.program("test_kiln", ["bindings/cpp/test_kiln.cpp"], cxx: true)
        let result = try ProcessRunner.run(program, [try Self.fixtures().model])
        let failures = result.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(result.status == 0 && failures.isEmpty, "\(failures) \(result.stderr)")
        #expect(result.stdout.contains("ok compiled_artifact"))
        try Self.expectReferenceValues(result.stdout)
    }

    @Test
    func headerCompilesAsStrictC99AndCxx() throws {
        let folder = try Self.fixtures().folder
        let source = folder + "/include_only.c"
        try "#include <kiln/kiln.h>\nint main(void) { return kiln_error_code(0); }\n".write(toFile: source, atomically: true, encoding: .utf8)
        for (compiler, flags) in [(CToolchain.cCompiler, ["-std=c99", "-pedantic-errors"]), (CToolchain.cxxCompiler, ["-x", "c++", "-std=c++11", "-pedantic-errors"])] {
            let result = try ProcessRunner.run(compiler, flags + ["-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I", TestPaths.packageRoot + "/include", source])
            #expect(result.status == 0, "\(compiler) \(flags): \(result.stderr)")
        }
    }
}
