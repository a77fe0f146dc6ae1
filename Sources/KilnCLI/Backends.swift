import ArgumentParser
import Kiln
import KilnTooling

/// `kiln backends`: the registered backends with their kinds, versions, vendors, targets, options and devices.
struct Backends: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the registered backends with their targets, options and devices.",
        discussion: """
            One line per backend in registration order (name, kind, version, vendor), then what it is, the \
            targets it compiles for (with its priority), the options it takes and one line per device it can \
            run on here. A backend with no device can still compile ahead of time. The names are what \
            --backend and --backends take; `kiln targets` shows which backends each target uses.
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
        let descriptors = registry.descriptors
        var lines = ["backends (\(descriptors.count)):"]
        let width = descriptors.map(\.info.name.count).max() ?? 0
        for descriptor in descriptors {
            let info = descriptor.info
            lines.append("  \(info.name)\(String(repeating: " ", count: width - info.name.count))  \(descriptor.kind)  \(info.version)  vendor \(info.vendor)")
            if !descriptor.summary.isEmpty { lines.append("    \(descriptor.summary)") }
            let hostFirst = { (t: String) in t == BackendRegistry.hostTarget ? 0 : 1 }
            let targets = descriptor.targets.sorted { (hostFirst($0.key), -$0.value, $0.key) < (hostFirst($1.key), -$1.value, $1.key) }.map { "\($0.key) (priority \($0.value))" }
            lines.append("    targets: " + (targets.isEmpty ? (descriptor.kind == .reference ? "every target, as the last fallback" : "none (only when named)") : targets.joined(separator: ", ")))
            for option in descriptor.options { lines.append("    option \(option.summary): \(option.help)") }
            let devices = registry.backend(named: info.name)?.devices() ?? []
            if devices.isEmpty { lines.append("    (no device here: compiles ahead of time only)") }
            for device in devices { lines.append("    device \(device)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// `kiln targets`: every target with the backends that serve it, in order, and their devices.
struct Targets: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the targets, each with its backends in priority order and their devices.",
        discussion: """
            A target is what --target names (default host: this machine). Its backends claim nodes in \
            priority order; what none of them runs falls back to the host's backends and, last, to the \
            reference interpreter.
            """
    )

    @OptionGroup(title: "Plugins")
    var plugins: PluginOption

    func run() throws {
        try diagnosing {
            try plugins.register()
            defer { flushOutput() }
            print(try Self.listing(Kiln.backends), terminator: "")
        }
    }

    /// The listing of `registry`'s targets.
    static func listing(_ registry: BackendRegistry) throws -> String {
        var lines = ["targets (\(registry.targets.count)):"]
        for target in registry.targets {
            let selection = try registry.selection(target: target)
            lines.append("  \(target)\(target == BackendRegistry.hostTarget ? " (the default: this machine)" : "")")
            lines.append("    backends: " + (selection.selected.isEmpty ? "none" : selection.selected.map(\.info.name).joined(separator: ", ")))
            lines.append("    fallback: " + (selection.fallbacks.isEmpty ? "none" : selection.fallbacks.map(\.info.name).joined(separator: ", ")))
            for backend in selection.selected {
                for device in backend.devices() { lines.append("    device of \(backend.info.name): \(device)") }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The flags that choose backends, shared by `kiln compile`, `kiln run` and `kiln bench`.
struct BackendFlags: ParsableArguments {
    @Option(help: ArgumentHelp("The target (default host: this machine's best backends, with kiln.reference only for what they cannot run; see `kiln targets`).", valueName: "name"))
    var target = BackendRegistry.hostTarget

    @Option(help: ArgumentHelp("Run the whole model on this one backend, with no fallback (kiln.reference: the oracle).", valueName: "name"))
    var backend: String?

    @Option(help: ArgumentHelp("Backends that may claim nodes, highest priority first, instead of the target's; the rest falls back to the host's backends (see `kiln backends`).", valueName: "name[,name…]"))
    var backends: String?

    @Option(help: ArgumentHelp("What happens to nodes no selected backend takes: allow (run on the fallback), warn (run there and say so), deny (fail, listing them).", valueName: "allow|warn|deny"))
    var fallback = "warn"

    @Option(help: ArgumentHelp("Groups of a selected backend with fewer nodes than this run on the fallback instead (default: each backend's own, 1 for the CPU backends; kiln.gpu's is measured against its copies).", valueName: "n"))
    var minGroupSize: Int?

    @Option(help: ArgumentHelp("Ops never given to the selected backends (Softmax, com.microsoft.Gelu).", valueName: "op[,op…]"))
    var deny: [String] = []

    @Option(help: ArgumentHelp("Threads for the backends that take a thread count (kiln.cpu; default: the physical cores).", valueName: "n"))
    var threads: Int?

    @Option(name: .customLong("backend-option"), help: ArgumentHelp("A backend option (repeatable; `kiln backends` lists each backend's options).", valueName: "key=value"))
    var backendOptions: [String] = []

    @Option(help: ArgumentHelp("Storage precision for the backends that take one (kiln.gpu: fp16 halves device memory and transfers; arithmetic stays fp32). The same as --backend-option precision=VALUE.", valueName: "fp32|fp16"))
    var precision: String?

    /// The names given to `--backends`, or [] when it was not given.
    func selectedBackends() throws -> [String] {
        guard let backends else { return [] }
        let names = CommaList.items(backends)
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
    var deniedOps: [String] { deny.flatMap(CommaList.items) }

    /// The partition options these flags give.
    func partitionOptions() throws -> PartitionOptions {
        if let minGroupSize, minGroupSize < 1 { throw KilnError(.invalidArgument, "--min-group-size \(minGroupSize): expected at least 1") }
        return PartitionOptions(minGroupSize: minGroupSize, deny: deniedOps, fallback: try policy())
    }

    /// Whether any flag asks for partitioning choices (which an artifact fixed when it was compiled).
    var partitioningRequested: Bool {
        target != BackendRegistry.hostTarget || backends != nil || fallback != "warn" || minGroupSize != nil || !deny.isEmpty
    }

    /// The backend configuration of `--threads`, `--backend-option` and `--precision`, with `profiler`.
    func configuration(profiler: (any ExecutionProfiler)? = nil) throws -> BackendConfiguration {
        var configuration = BackendConfiguration(threads: threads, profiler: profiler)
        for entry in backendOptions {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                throw KilnError(.invalidArgument, "--backend-option '\(entry)': expected KEY=VALUE")
            }
            let key = String(entry[..<equals])
            guard configuration.options[key] == nil else { throw KilnError(.invalidArgument, "backend option '\(key)' is given twice") }
            configuration.options[key] = String(entry[entry.index(after: equals)...])
        }
        if let precision {
            guard configuration.options["precision"] == nil else {
                throw KilnError(.invalidArgument, "--precision and --backend-option precision=… cannot both be given")
            }
            configuration.options["precision"] = precision
        }
        return configuration
    }

    /// How `Kiln.load` should load a model with these flags.
    func loadOptions(profiler: (any ExecutionProfiler)? = nil) throws -> Kiln.LoadOptions {
        if backend != nil && backends != nil {
            throw KilnError(.invalidArgument, "--backend and --backends cannot be combined (give the one backend as --backends NAME to let the rest fall back)")
        }
        return Kiln.LoadOptions(target: target, backend: backend, backends: try selectedBackends(),
                                partition: try partitionOptions(), configuration: try configuration(profiler: profiler))
    }

    /// `compiler` options with these flags' target and backends: `--backend NAME` compiles the whole
    /// model for that backend alone (as `--backends NAME --fallback deny`).
    func apply(to options: inout Compiler.Options) throws {
        let load = try loadOptions()
        options.target = target
        options.backends = load.backend.map { [$0] } ?? load.backends
        options.fallback = load.backend == nil ? load.partition.fallback : .deny
        options.minGroupSize = load.partition.minGroupSize
        options.deny = load.partition.deny
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
            let fallbacks = entries.filter { $0.backend == backend && $0.isFallback }.count
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
