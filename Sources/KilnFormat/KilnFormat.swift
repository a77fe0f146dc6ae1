import KilnIR

/// The `.kiln` artifact container (work in progress: see Documentation/ArtifactFormat.md).
public enum ArtifactFormat {
    /// The newest container format version this build writes and reads, as (major, minor).
    public static let version = (major: 1, minor: 0)
}
