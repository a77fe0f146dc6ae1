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
    private var deviceRuns: [DeviceProfile] = []
    private var deviceSteps = 0, dropped = 0
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

    /// Keeps `profile`, one run of a plugin's device program as the device timed it (`kiln run --profile`
    /// prints it beside kiln.cpu's steps). At most `traceLimit` steps are kept over all device runs: a run
    /// that would cross the limit is dropped whole (and counted in `droppedDeviceRuns`), never cut, so that
    /// every kept run's per-unit and per-layer cycles still add up to its total.
    public func record(_ profile: DeviceProfile) {
        lock.withLock {
            guard deviceSteps + profile.steps.count <= traceLimit else {
                dropped += 1
                return
            }
            deviceSteps += profile.steps.count
            deviceRuns.append(profile)
        }
    }

    /// Device runs not kept because they would have taken the device steps past `traceLimit`.
    public var droppedDeviceRuns: Int { lock.withLock { dropped } }

    /// The device runs recorded (`record(_:)`), in order.
    public var devices: [DeviceProfile] { lock.withLock { deviceRuns } }

    /// Forgets everything recorded.
    public func reset() {
        lock.withLock {
            entries = []
            index = [:]
            events = []
            runs = []
            deviceRuns = []
            deviceSteps = 0
            dropped = 0
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
            // Device runs: one process per backend, one row per unit, on the device's own clock (cycles as
            // microseconds when the clock is known, else one microsecond per cycle), runs laid end to end.
            var backends: [String] = [], units: [String: [String]] = [:], offsets: [String: UInt64] = [:]
            for run in deviceRuns {
                if units[run.backend] == nil { backends.append(run.backend); units[run.backend] = [] }
                let pid = 2 + backends.firstIndex(of: run.backend)!
                let scale = run.clockHz > 0 ? 1e6 / run.clockHz : 1
                let offset = offsets[run.backend] ?? 0
                for step in run.steps {
                    if !units[run.backend]!.contains(step.unit) { units[run.backend]!.append(step.unit) }
                    let tid = 1 + units[run.backend]!.firstIndex(of: step.unit)!
                    let ts = Double(offset + step.startCycle) * scale, dur = Double(step.cycles) * scale
                    parts.append("{\"name\":\(JSONText.string(step.name)),\"cat\":\"device\",\"ph\":\"X\",\"pid\":\(pid),\"tid\":\(tid),\"ts\":\(ts),\"dur\":\(dur),\"args\":{\"cycles\":\(step.cycles)}}")
                }
                offsets[run.backend] = offset + max(run.totalCycles, run.steps.map { $0.startCycle + $0.cycles }.max() ?? 0)
            }
            for (k, backend) in backends.enumerated() {
                parts.append("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":\(2 + k),\"args\":{\"name\":\(JSONText.string(backend + " (device cycles)"))}}")
                for (t, unit) in units[backend]!.enumerated() {
                    parts.append("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":\(2 + k),\"tid\":\(1 + t),\"args\":{\"name\":\(JSONText.string(unit))}}")
                }
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
