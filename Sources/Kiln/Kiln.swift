#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_exported import KilnBackend
@_exported import KilnCompiler
@_exported import KilnFormat
@_exported import KilnPluginHost
@_exported import KilnIR
@_exported import KilnRuntime
import KilnFrontends
import KilnReference

/// The Kiln SDK's entry points: import or compile a model, load a model or an artifact, run it.
public enum Kiln {
    /// Kiln's version (also the producer version written into artifacts).
    public static let version = Compiler.version

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

    /// Loads the model at `path` and prepares it to run.
    ///
    /// A `.kiln` artifact (recognized by its magic bytes, whatever the file is called) is loaded
    /// memory-mapped, its partitions on the backends they were compiled for; `backend`, when given, must
    /// be that backend. Anything else is imported as ONNX and prepared on `backend` (default `kiln.reference`).
    public static func load(path: String, backend: String? = nil) throws -> Session {
        if try isArtifact(path: path) {
            let session = try Session(artifactPath: path, backends: backends)
            try check(session, runsOn: backend, origin: path)
            return session
        }
        return try Session(model: importONNX(path: path), backend: Self.backend(named: backend ?? "kiln.reference"))
    }

    /// Loads a `.kiln` artifact held in memory (see `load(path:backend:)`).
    public static func load(artifactBytes bytes: [UInt8], backend: String? = nil) throws -> Session {
        let session = try Session(artifactBytes: bytes, backends: backends)
        try check(session, runsOn: backend, origin: "<memory>")
        return session
    }

    /// Whether the file at `path` starts with the `.kiln` magic bytes.
    public static func isArtifact(path: String) throws -> Bool {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw KilnError(.io, "cannot open '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: ArtifactFormat.magic.count)
        var done = 0
        while done < head.count {
            let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        return done == head.count && head == ArtifactFormat.magic
    }

    /// A compiler over the built-in backends (`Kiln.backends`).
    public static func compiler(options: Compiler.Options = Compiler.Options(),
                                progress: (@Sendable (Compiler.Progress) -> Void)? = nil,
                                irPrinter: (@Sendable (String, String) -> Void)? = nil) -> Compiler {
        Compiler(options: options, backends: backends, progress: progress, irPrinter: irPrinter)
    }

    /// Compiles the ONNX model at `path` into `.kiln` artifact bytes.
    public static func compile(onnxPath path: String, options: Compiler.Options = Compiler.Options()) throws -> Compiler.Output {
        try compiler(options: options).compile(onnxPath: path)
    }

    /// Refuses a backend request an artifact cannot honour: its partitions chose their backends at compile time.
    private static func check(_ session: Session, runsOn backend: String?, origin: String) throws {
        guard let backend, backend != session.backend.info.name else { return }
        throw KilnError(.invalidArgument, "\(origin) was compiled for backend \(session.backend.info.name); to run it on \(backend), compile the model again with --backend \(backend)")
    }
}
