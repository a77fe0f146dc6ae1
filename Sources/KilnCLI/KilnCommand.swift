import ArgumentParser
import Kiln
import KilnTooling

#if canImport(Glibc)
import Glibc
#endif

@main
struct KilnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Compile and run machine-learning models.",
        version: Kiln.version,
        subcommands: [Compile.self, Inspect.self, Run.self, Conformance.self, Bench.self, Backends.self, Targets.self, PluginCheck.self,
                      Keygen.self, Sign.self, Verify.self]
    )
}

/// Prints `message` to standard error.
func printError(_ message: String) {
    var stderrStream = StandardError()
    print(message, to: &stderrStream)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// Flushes standard output (every C stream), so a driving process sees each line as it is printed.
func flushOutput() { fflush(nil) }

/// Runs `body`; a `KilnError` (a problem Kiln diagnosed) is printed and exits with status 1.
func diagnosing(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as KilnError {
        flushOutput()
        printError("error: \(error.message)")
        throw ExitCode(1)
    }
}
