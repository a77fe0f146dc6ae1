import ArgumentParser
import Kiln

/// `kiln backends`: the registered backends with their versions, vendors and devices.
struct Backends: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the registered backends with versions, vendors and devices.",
        discussion: """
            One line per backend in registration order (name, version, vendor), then one indented line per \
            device it can run on here. A backend with no device can still compile ahead of time. The names \
            are what --backends takes; nodes that no selected backend takes fall back to kiln.cpu, or to \
            kiln.reference when kiln.cpu cannot run them.
            """
    )

    @OptionGroup(title: "Plugins")
    var plugins: PluginOption

    func run() throws {
        try diagnosing {
            try plugins.register()
            defer { flushOutput() }
            print(Self.listing(Kiln.backends), terminator: "")
        }
    }

    /// The listing of `registry`.
    static func listing(_ registry: BackendRegistry) -> String {
        let all = registry.all
        var lines = ["backends (\(all.count)):"]
        let width = all.map(\.info.name.count).max() ?? 0
        for backend in all {
            let info = backend.info
            lines.append("  \(info.name)\(String(repeating: " ", count: width - info.name.count))  \(info.version)  vendor \(info.vendor)")
            let devices = backend.devices()
            if devices.isEmpty { lines.append("    (no device here: compiles ahead of time only)") }
            for device in devices { lines.append("    device \(device)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The partitioning flags shared by `kiln compile` and `kiln run`.
struct PartitionFlags: ParsableArguments {
    @Option(help: ArgumentHelp("Backends that may claim nodes, highest priority first; the rest falls back to kiln.cpu or kiln.reference (see `kiln backends`).", valueName: "name[,name…]"))
    var backends: String?

    @Option(help: ArgumentHelp("What happens to nodes no selected backend takes: allow (run on the fallback), warn (run there and say so), deny (fail, listing them).", valueName: "allow|warn|deny"))
    var fallback = "warn"

    @Option(help: ArgumentHelp("Groups of a selected backend with fewer nodes than this run on the fallback instead.", valueName: "n"))
    var minGroupSize = 1

    @Option(help: ArgumentHelp("Ops never given to the selected backends (Softmax, com.microsoft.Gelu).", valueName: "op[,op…]"))
    var deny: [String] = []

    /// The names given to `--backends`, or nil when it was not given.
    func selectedBackends() throws -> [String]? {
        guard let backends else { return nil }
        let names = Self.list(backends)
        guard !names.isEmpty else { throw KilnError(.invalidArgument, "--backends '\(backends)': expected NAME[,NAME…]") }
        return names
    }

    /// The fallback policy of `--fallback`.
    func policy() throws -> FallbackPolicy {
        guard let policy = FallbackPolicy(rawValue: fallback) else {
            throw KilnError(.invalidArgument, "--fallback \(fallback): expected allow, warn or deny")
        }
        return policy
    }

    /// The ops of every `--deny` (each may be a comma-separated list).
    var deniedOps: [String] { deny.flatMap(Self.list) }

    /// The partition options these flags give.
    func options() throws -> PartitionOptions {
        guard minGroupSize >= 1 else { throw KilnError(.invalidArgument, "--min-group-size \(minGroupSize): expected at least 1") }
        return PartitionOptions(minGroupSize: minGroupSize, deny: deniedOps, fallback: try policy())
    }

    /// Whether any flag asks for partitioning (so that a model run is split among backends).
    var requested: Bool { backends != nil || fallback != "warn" || minGroupSize != 1 || !deny.isEmpty }

    /// `a, b,c` → `[a, b, c]` (empty items dropped).
    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed()) }.filter { !$0.isEmpty }
    }
}

/// The partition report as `kiln inspect` prints it: nodes per backend, and with `full` one line per node.
enum PartitionReportText {
    /// The lines for `report`: nodes per backend; then runs of consecutive nodes with the same backend and
    /// reason, or with `full` every node with its name and op.
    static func lines(_ report: PartitionReport, full: Bool) -> [String] {
        let entries = report.entries
        var lines = ["partition report (\(entries.count) node\(entries.count == 1 ? "" : "s")):"]
        let perBackend = report.nodesPerBackend.map { backend, count in
            let fallbacks = entries.filter { $0.backend == backend && $0.reason.contains("fallback ") }.count
            return "\(backend): \(count) node\(count == 1 ? "" : "s")\(fallbacks > 0 ? " (\(fallbacks) by fallback)" : "")"
        }
        if !perBackend.isEmpty { lines.append("  " + perBackend.joined(separator: "; ")) }
        if full {
            for e in entries {
                let name = e.name.isEmpty ? "" : " '\(e.name)'"
                let op = e.op.isEmpty ? "" : " (\(e.op))"
                lines.append("  node \(e.node)\(name)\(op) → \(e.backend): \(e.reason)")
            }
            return lines
        }
        var start = 0
        while start < entries.count {
            var end = start
            while end + 1 < entries.count, entries[end + 1].backend == entries[start].backend, entries[end + 1].reason == entries[start].reason { end += 1 }
            let range = end == start ? "node \(entries[start].node)" : "nodes \(entries[start].node)–\(entries[end].node)"
            lines.append("  \(range): \(entries[start].backend): \(entries[start].reason)")
            start = end + 1
        }
        return lines
    }
}
