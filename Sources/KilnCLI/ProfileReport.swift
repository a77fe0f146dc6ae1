import Kiln
import KilnTooling

/// The per-step profile that `kiln run --profile` and `kiln bench --profile` print, and the Chrome-trace
/// JSON that their `--trace FILE` writes.
enum ProfileReport {
    /// The profile as text: a header (runs, time per run spent in steps, arena size), the time of each
    /// operation kind (largest first) and the time of each step (in execution order), per run.
    static func lines(_ profile: CPUProfile) -> [String] {
        let runs = max(profile.runCount, 1)
        let steps = profile.steps
        let total = steps.reduce(UInt64(0)) { $0 + $1.nanoseconds }
        let perRun = Double(total) / Double(runs) / 1e6
        var lines = ["profile (\(profile.runCount) run\(profile.runCount == 1 ? "" : "s"), \(text(perRun)) ms per run in steps; "
            + "arena \(profile.arena.bytes / 1024) KiB, \(profile.arena.unshared / 1024) KiB without reuse):"]
        lines.append("  by operation kind:")
        for k in profile.byKind {
            let ms = Double(k.nanoseconds) / Double(runs) / 1e6
            let share = 100 * Double(k.nanoseconds) / Double(max(total, 1))
            lines.append("    \(pad(text(ms), 9)) ms  \(pad(text(share), 6))%  \(k.calls / runs)×  \(k.kind)")
        }
        lines.append("  by step:")
        for s in steps {
            let ms = Double(s.nanoseconds) / Double(max(s.calls, 1)) / 1e6
            let label = s.label.count > 60 ? String(s.label.prefix(57)) + "…" : s.label
            lines.append("    \(pad(text(ms), 9)) ms  \(s.kind)  [\(label)]")
        }
        return lines
    }

    /// Prints `lines(profile)`, then, when `trace` names a file, writes the profile there as Chrome-trace
    /// JSON (atomically: a failed write leaves an existing file untouched) and says so.
    static func report(_ profile: CPUProfile, trace: String?) throws {
        for line in lines(profile) { print(line) }
        if let trace {
            try FileSystem.writeAtomically(Array(profile.chromeTrace().utf8), to: trace)
            print("trace written to \(trace)")
        }
    }

    /// A number with 4 significant digits.
    static func text(_ v: Double) -> String { OutputSummary.number(v, digits: 4) }

    /// `s` right-aligned in `width` characters.
    static func pad(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
}
