import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a finished program left: its exit status and everything it wrote.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Runs programs for the tests: output is collected in files (so neither stream can fill a pipe and block
/// the program), and a program that does not finish in time is killed and reported as an error.
public enum ProcessRunner {
    /// How long a program may run unless told otherwise, in seconds.
    public static let defaultTimeout: Double = 600

    /// The first executable called `name` on `$PATH`.
    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `executable arguments…` (a path, or a name looked up on `$PATH`) with this process's environment
    /// plus `environment`, and waits at most `timeout` seconds for it.
    public static func run(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:],
                           timeout: Double = defaultTimeout) throws -> ProcessResult {
        let path: String
        if executable.contains("/") {
            path = executable
        } else if let found = which(executable) {
            path = found
        } else {
            throw TestSupportError("\(executable) is not on PATH")
        }
        let folder = try temporaryDirectory("kiln-process")
        defer { removeTemporaryDirectory(folder) }
        let outPath = folder + "/stdout", errPath = folder + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer {
            try? out.close()
            try? err.close()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = out
        process.standardError = err
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        try process.run()
        let timedOut = finished.wait(timeout: .now() + timeout) == .timedOut
        if timedOut {
            kill(process.processIdentifier, SIGKILL)
            finished.wait()
        }
        process.waitUntilExit()
        func read(_ file: String) -> String { (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }
        if timedOut {
            throw TestSupportError("""
                \(([path] + arguments).joined(separator: " ")) did not finish within \(timeout) s and was killed
                stdout: \(read(outPath))
                stderr: \(read(errPath))
                """)
        }
        return ProcessResult(status: process.terminationStatus, stdout: read(outPath), stderr: read(errPath))
    }
}

/// The `kiln` executable built with the tests, run as a subprocess.
public enum KilnTool {
    /// Runs `kiln arguments…`; fails when `kiln` is not built beside the tests.
    public static func run(_ arguments: [String], environment: [String: String] = [:],
                           timeout: Double = ProcessRunner.defaultTimeout) throws -> ProcessResult {
        try ProcessRunner.run(TestPaths.kiln(), arguments, environment: environment, timeout: timeout)
    }
}

/// The C and C++ compilers the tests build programs and plugins with.
public enum CToolchain {
    /// `$CC`, else the first of cc, clang, gcc on `$PATH`.
    public static let cCompiler = ProcessInfo.processInfo.environment["CC"] ?? firstOnPath(["cc", "clang", "gcc"])
    /// `$CXX`, else the first of c++, clang++, g++ on `$PATH`.
    public static let cxxCompiler = ProcessInfo.processInfo.environment["CXX"] ?? firstOnPath(["c++", "clang++", "g++"])
    /// `$KILN_TEST_CFLAGS`, split on spaces: extra flags for every C and C++ program and plugin the tests
    /// build. `scripts/test --sanitize MODE` sets `-fsanitize=MODE` here (with `CC`/`CXX` the toolchain's
    /// clang), so that the programs carry the sanitizer runtime the instrumented libKilnC.so needs.
    public static let extraFlags: [String] = (ProcessInfo.processInfo.environment["KILN_TEST_CFLAGS"] ?? "")
        .split(separator: " ").map(String.init)

    private static func firstOnPath(_ names: [String]) -> String {
        names.lazy.compactMap(ProcessRunner.which).first ?? names[0]
    }
}
