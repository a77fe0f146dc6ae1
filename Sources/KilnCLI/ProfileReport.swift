import Kiln
import KilnTooling

/// The per-step profile that `kiln run --profile` and `kiln bench --profile` print, and the Chrome-trace
/// JSON that their `--trace FILE` writes.
enum ProfileReport {
    /// The profile as text: a header (runs, time per run spent in steps, arena size), the time of each
    /// operation kind (largest first) and the time of each step (in execution order), per run.
    static func lines(_ profile: CPUProfile) -> [String] {
        var devices = deviceLines(profile.devices)
        if profile.droppedDeviceRuns > 0 {
            devices.append("(\(profile.droppedDeviceRuns) more device run(s) not kept: over the profile's limit of \(profile.traceLimit) device steps)")
        }
        guard profile.runCount > 0 || devices.isEmpty else { return devices }
        return cpuLines(profile) + devices
    }

    /// kiln.cpu's steps: the time of each operation kind and of each step, per run.
    static func cpuLines(_ profile: CPUProfile) -> [String] {
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

    /// What plugin devices reported (plugin ABI 1.4 `profile`), per backend and program: cycles per run, busy cycles and
    /// utilization of each unit, and the cycles of each layer (step name), averaged over the runs.
    static func deviceLines(_ runs: [DeviceProfile]) -> [String] {
        var lines: [String] = []
        var programs: [(backend: String, program: String)] = []
        for run in runs where !programs.contains(where: { $0 == (run.backend, run.program) }) { programs.append((run.backend, run.program)) }
        for (backend, program) in programs {
            let mine = runs.filter { $0.backend == backend && $0.program == program }
            let count = UInt64(mine.count)
            let total = mine.reduce(UInt64(0)) { $0 &+ $1.totalCycles } / count
            let clock = mine[0].clockHz
            let time = mine[0].microseconds(total).map { " (\(text($0)) µs at \(text(clock / 1e9)) GHz)" } ?? ""
            lines.append("device \(backend), program \(program) (\(mine.count) run\(mine.count == 1 ? "" : "s")): \(total) cycles per run\(time)")
            var units: [String] = [], busy: [String: UInt64] = [:]
            var layers: [String] = [], layerCycles: [String: UInt64] = [:], layerUnits: [String: [String]] = [:]
            for step in mine.flatMap(\.steps) {
                if busy[step.unit] == nil { units.append(step.unit) }
                busy[step.unit, default: 0] &+= step.cycles
                if layerCycles[step.name] == nil { layers.append(step.name) }
                layerCycles[step.name, default: 0] &+= step.cycles
                if !(layerUnits[step.name] ?? []).contains(step.unit) { layerUnits[step.name, default: []].append(step.unit) }
            }
            lines.append("  by unit (busy cycles per run, share of the run):")
            for unit in units {
                let cycles = busy[unit]! / count
                lines.append("    \(pad(String(cycles), 12))  \(pad(text(100 * Double(cycles) / Double(max(total, 1))), 6))%  \(unit)")
            }
            lines.append("  by layer (cycles per run, summed over units):")
            for layer in layers {
                let label = layer.count > 60 ? String(layer.prefix(57)) + "…" : layer
                lines.append("    \(pad(String(layerCycles[layer]! / count), 12))  [\(label)]  \(layerUnits[layer]!.joined(separator: ", "))")
            }
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
