/// When a run must end. `Session.run(_:options:)` binds one for the duration of a run (a task-local value,
/// so it reaches the backends without changing the `Executable` protocol); the built-in backends check it
/// between steps — kiln.reference before every node and every Loop/Scan iteration (bodies of If, Loop and
/// Scan included), kiln.cpu before every step and every Loop/Scan iteration (bodies included) — and throw
/// `.runtime` "run exceeded its deadline of N s".
/// A plugin backend's own execution is not interrupted; the check runs again once it returns.
public struct RunDeadline: Sendable {
    /// How long the run may take.
    public let timeout: Duration
    /// When it must be over.
    public let end: ContinuousClock.Instant

    /// A deadline `timeout` from now.
    public init(timeout: Duration) {
        self.timeout = timeout
        end = ContinuousClock.now.advanced(by: timeout)
    }

    /// The deadline of the run on this thread or task, if any.
    @TaskLocal public static var current: RunDeadline?

    /// Throws `.runtime` when the deadline has passed.
    public func check() throws {
        if ContinuousClock.now >= end {
            throw KilnError(.runtime, "run exceeded its deadline of \(Self.describe(timeout)) s")
        }
    }

    /// Throws `.runtime` when the current run's deadline (if any) has passed.
    public static func check() throws { try current?.check() }

    /// `timeout` in seconds, without trailing zeros (`2`, `0.25`).
    static func describe(_ timeout: Duration) -> String {
        let (s, atto) = timeout.components
        let millis = atto / 1_000_000_000_000_000
        guard millis != 0 else { return "\(s)" }
        var fraction = String(millis)
        fraction = String(repeating: "0", count: 3 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(s).\(fraction)"
    }
}
