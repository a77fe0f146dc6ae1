@_exported import KilnBackend
@_exported import KilnIR
@_exported import KilnRuntime
import KilnFrontends
import KilnReference

/// The Kiln SDK's entry points: import a model, choose a backend, run it.
public enum Kiln {
    /// Kiln's version.
    public static let version = "0.1.0"

    /// Imports the ONNX model at `path` into Kiln IR.
    public static func importONNX(path: String) throws -> Model {
        try ONNXImporter().importModel(path: path)
    }

    /// The backend called `name`, or a `.invalidArgument` error listing the known ones.
    public static func backend(named name: String) throws -> any Backend {
        guard let b = backends.backend(named: name) else {
            throw KilnError(.invalidArgument, "no backend named '\(name)' (known: \(backends.all.map(\.info.name).joined(separator: ", ")))")
        }
        return b
    }

    /// Imports the ONNX model at `path` and prepares it on `backend` (default `kiln.reference`).
    public static func load(path: String, backend: String = "kiln.reference") throws -> Session {
        try Session(model: importONNX(path: path), backend: Self.backend(named: backend))
    }
}
