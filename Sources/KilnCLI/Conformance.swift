import ArgumentParser
import Kiln
import KilnTooling

#if canImport(Glibc)
import Glibc
#endif

/// Runs ONNX backend test cases; driven by `scripts/conformance`, which reads its line protocol.
struct Conformance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run ONNX backend test cases (folders with model.onnx and test_data_set_*).",
        discussion: "Prints 'START name' before a case and 'PASS name' or 'FAIL name<TAB>reason' after it."
    )

    @Argument(help: "Case folders.")
    var cases: [String]

    @Option(help: "The backend to run every case on, alone (kiln.reference for the oracle's own conformance).")
    var backend: String

    @Flag(help: "Compile each case to a .kiln artifact in memory, load it back and run that.")
    var viaArtifact = false

    @Option(help: "The optimization level of --via-artifact.")
    var optLevel = 2

    func run() throws {
        for directory in cases {
            let name = String(directory.split(separator: "/").last ?? "")
            print("START \(name)")
            flushOutput()
            if let failure = ConformanceCase(directory: directory).run(backend: backend, viaArtifact: viaArtifact ? optLevel : nil) {
                let oneLine = failure.split(whereSeparator: \.isNewline).joined(separator: " | ")
                print("FAIL \(name)\t\(oneLine.prefix(400))")
            } else {
                print("PASS \(name)")
            }
            flushOutput()
        }
    }
}
