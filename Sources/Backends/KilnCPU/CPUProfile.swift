import KilnBackend
import KilnIR

/// Timings of `kiln.cpu` runs: per step (fused operation) totals, and a trace of every step of every
/// run that can be written as Chrome-trace JSON (chrome://tracing, Perfetto).
public final class CPUProfile: @unchecked Sendable {
    /// Totals of one step over the recorded runs.
    public struct Entry: Sendable {
        /// The fused operation kind (`Conv+BatchNormalization+Relu`).
        public var kind: String
        /// The node name(s) it comes from.
        public var label: String
        /// Times it ran.
        public var calls: Int
        /// Total nanoseconds.
        public var nanoseconds: UInt64
    }

    private let lock = Lock()
    private var entries: [Entry] = []
    private var index: [String: Int] = [:]
    private var events: [(name: String, kind: String, start: UInt64, duration: UInt64)] = []
    private var runs: [(start: UInt64, duration: UInt64)] = []
    /// Arena bytes of the last plan run, and what the same buffers take without reuse.
    public private(set) var arena: (bytes: Int, unshared: Int) = (0, 0)
    /// Keep at most this many trace events (the totals are always kept).
    public var traceLimit = 200_000

    /// An empty profile.
    public init() {}

    func record(_ step: Step, start: UInt64, duration: UInt64) {
        lock.withLock {
            let key = step.kind + "\u{1}" + step.label
            if let i = index[key] {
                entries[i].calls += 1
                entries[i].nanoseconds += duration
            } else {
                index[key] = entries.count
                entries.append(Entry(kind: step.kind, label: step.label, calls: 1, nanoseconds: duration))
            }
            if events.count < traceLimit { events.append((step.label, step.kind, start, duration)) }
        }
    }

    func recordRun(start: UInt64, duration: UInt64, arenaBytes: Int, unsharedBytes: Int) {
        lock.withLock {
            runs.append((start, duration))
            arena = (arenaBytes, unsharedBytes)
        }
    }

    /// Forgets everything recorded.
    public func reset() {
        lock.withLock {
            entries = []
            index = [:]
            events = []
            runs = []
        }
    }

    /// Per-step totals, in execution order of first appearance.
    public var steps: [Entry] { lock.withLock { entries } }

    /// Number of runs recorded.
    public var runCount: Int { lock.withLock { runs.count } }

    /// Totals per operation kind, largest first.
    public var byKind: [(kind: String, calls: Int, nanoseconds: UInt64)] {
        var totals: [String: (Int, UInt64)] = [:]
        for e in steps {
            let t = totals[e.kind] ?? (0, 0)
            totals[e.kind] = (t.0 + e.calls, t.1 + e.nanoseconds)
        }
        return totals.map { ($0.key, $0.value.0, $0.value.1) }.sorted { $0.nanoseconds > $1.nanoseconds }
    }

    /// The recorded steps as Chrome-trace JSON (complete events, microseconds).
    public func chromeTrace() -> String {
        lock.withLock {
            let origin = min(runs.first?.start ?? 0, events.first?.start ?? 0)
            var parts: [String] = []
            for r in runs {
                parts.append("{\"name\":\"run\",\"cat\":\"run\",\"ph\":\"X\",\"pid\":1,\"tid\":0,\"ts\":\(micro(r.start - origin)),\"dur\":\(micro(r.duration))}")
            }
            for e in events {
                parts.append("{\"name\":\(JSONText.string(e.kind)),\"cat\":\"step\",\"ph\":\"X\",\"pid\":1,\"tid\":1,\"ts\":\(micro(e.start - origin)),\"dur\":\(micro(e.duration)),\"args\":{\"nodes\":\(JSONText.string(e.name))}}")
            }
            return "{\"traceEvents\":[\n" + parts.joined(separator: ",\n") + "\n],\"displayTimeUnit\":\"ms\"}\n"
        }
    }

    private func micro(_ ns: UInt64) -> String {
        let whole = ns / 1000, frac = ns % 1000
        let f = String(frac)
        return "\(whole).\(String(repeating: "0", count: 3 - f.count))\(f)"
    }
}
