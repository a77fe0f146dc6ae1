import Foundation

/// A new, empty folder under the system's temporary directory (`$TMPDIR`), named `prefix-<uuid>`.
/// The caller removes it (`removeTemporaryDirectory`), usually in a suite's `deinit`.
public func temporaryDirectory(_ prefix: String = "kiln-tests") throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

/// Removes a folder made by `temporaryDirectory` and everything in it; a folder already gone is fine.
public func removeTemporaryDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// Runs `body` with a new temporary folder, removed afterwards whatever `body` does.
public func withTemporaryDirectory<T>(_ prefix: String = "kiln-tests", _ body: (String) throws -> T) throws -> T {
    let folder = try temporaryDirectory(prefix)
    defer { removeTemporaryDirectory(folder) }
    return try body(folder)
}
