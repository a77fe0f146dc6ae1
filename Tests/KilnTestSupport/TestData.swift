import Foundation
import Testing

/// Inputs that come from outside the Swift test suite: tests that need them are skipped, with the reason,
/// when they are absent, and fail when they were asked for (an environment variable) but are not there.
public enum TestData {
    private static let environment = ProcessInfo.processInfo.environment

    /// The ONNX backend test data shipped in the `onnx` wheel (`onnx/backend/test/data`, with `node`,
    /// `pytorch-converted`, …): `$KILN_ONNX_TEST_DATA`, else the package's `.venv` (scripts/setup makes it).
    public static let onnxBackendTests: String? = {
        if let path = environment["KILN_ONNX_TEST_DATA"] { return path }
        let lib = TestPaths.inPackage(".venv/lib")
        let pythons = (try? FileManager.default.contentsOfDirectory(atPath: lib)) ?? []
        return pythons.sorted().map { "\(lib)/\($0)/site-packages/onnx/backend/test/data" }
            .first { FileManager.default.fileExists(atPath: $0) }
    }()

    /// Why the tests on the ONNX backend test data are skipped.
    public static let onnxBackendTestsMissing: Comment =
        "needs the ONNX backend test data: a .venv with onnx (scripts/setup), or KILN_ONNX_TEST_DATA=<…/onnx/backend/test/data>"

    /// The whole-model test models `scripts/make-models` writes: `$KILN_MODELS`, else `<root>/out/models`;
    /// nil when that folder does not exist.
    public static let models: String? = {
        if let path = environment["KILN_MODELS"] { return path }
        let folder = TestPaths.inPackage("out/models")
        return FileManager.default.fileExists(atPath: folder) ? folder : nil
    }()

    /// Why the tests on the whole-model test models are skipped.
    public static let modelsMissing: Comment =
        "needs the whole-model test models: run scripts/make-models (writes out/models), or set KILN_MODELS=<folder>"

    /// The model `name`.onnx of `models`, or an error saying it is missing (the folder is there, so it should be).
    public static func model(_ name: String) throws -> String {
        guard let folder = models else { throw TestSupportError("\(modelsMissing)") }
        let path = "\(folder)/\(name).onnx"
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestSupportError("\(path) is missing: run scripts/make-models \(folder)")
        }
        return path
    }
}
