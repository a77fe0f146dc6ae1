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
        // posix_spawn and a polling waitpid rather than Foundation's Process: under AddressSanitizer its
        // SIGCHLD-driven termination handler sometimes never ran, leaving the test waiting forever on a
        // child that had already exited (a zombie).
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard spawned == 0 else { throw TestSupportError("cannot start \(path): \(String(cString: strerror(spawned)))") }

        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        var status: Int32 = 0
        var timedOut = false
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped == -1 && errno != EINTR { throw TestSupportError("waitpid(\(pid)): \(String(cString: strerror(errno)))") }
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                timedOut = true
                break
            }
            usleep(2_000)
        }
        func read(_ file: String) -> String { (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }
        if timedOut {
            throw TestSupportError("""
                \(([path] + arguments).joined(separator: " ")) did not finish within \(timeout) s and was killed
                stdout: \(read(outPath))
                stderr: \(read(errPath))
                """)
        }
        // As Foundation's Process reports it: the exit code, or the number of the signal that ended it.
        let signal = status & 0x7f
        return ProcessResult(status: signal == 0 ? (status >> 8) & 0xff : signal, stdout: read(outPath), stderr: read(errPath))
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
