import Foundation

/// Where the package and the built products are, found from this file and from the running test
/// executable: never an absolute path, never a guessed `.build/…` folder.
public enum TestPaths {
    /// The package root: this file is `<root>/Tests/KilnTestSupport/Paths.swift`.
    public static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// `<root>/<relative>`.
    public static func inPackage(_ relative: String) -> String { packageRoot + "/" + relative }

    /// The folder the running test executable was built into (`.build/<triple>/debug` under `swift test`),
    /// where SwiftPM also puts the package's other products (`kiln`, `libKilnC.so`).
    public static let buildProducts: String = {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: executable).standardizedFileURL.deletingLastPathComponent().path
    }()

    /// The build product `name` beside the test executable, or an error saying it is missing and how to build it.
    public static func product(_ name: String) throws -> String {
        let path = buildProducts + "/" + name
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestSupportError("\(name) is not in \(buildProducts), beside the test executable: build it with `swift build --build-tests`")
        }
        return path
    }

    /// The `kiln` executable the tests run.
    public static func kiln() throws -> String { try product("kiln") }
}

/// A problem of the test environment (a missing build product, a program that did not finish), reported
/// as the failure of the test that met it.
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
