/// The error every Kiln layer throws: a category that callers (and the C ABI) can branch on,
/// and a message that names what is wrong.
public struct KilnError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of failure this is. Stable: the C ABI exposes these as numbers.
    public enum Code: Int, Sendable {
        /// A file could not be opened, read or written.
        case io = 1
        /// The model file is not a valid model (not protobuf, truncated, inconsistent).
        case invalidModel = 2
        /// The model uses operators or types that no selected backend supports.
        case unsupported = 3
        /// The caller passed something wrong (a missing input, a wrong dtype or shape, a bad option).
        case invalidArgument = 4
        /// An operator failed while running (e.g. an index out of range in the data).
        case runtime = 5
        /// An artifact is corrupt, truncated or otherwise unreadable.
        case invalidArtifact = 6
        /// An artifact or plugin needs a different version of Kiln.
        case versionMismatch = 7
        /// A bug in Kiln: an invariant did not hold.
        case `internal` = 8
    }

    /// The category.
    public var code: Code
    /// What is wrong, naming the file, node, input or field concerned.
    public var message: String

    /// An error of category `code`.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The message.
    public var description: String { message }
}
