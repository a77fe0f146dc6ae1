import KilnIR

/// The backends a target resolves to: those that claim nodes (highest priority first) and those that take
/// what they leave (the host's backends, the reference backend last).
public struct BackendSelection: Sendable {
    /// The target (`host`, `x86_64-avx2`, a plugin's `npu-nc2`).
    public var target: String
    /// The backends that claim nodes, highest priority first.
    public var selected: [any Backend]
    /// The backends that run what no selected backend takes, in order of preference.
    public var fallbacks: [any Backend]

    /// A selection for `target`.
    public init(target: String, selected: [any Backend], fallbacks: [any Backend]) {
        self.target = target
        self.selected = selected
        self.fallbacks = fallbacks
    }
}

/// The backends known to a process (or a C context): each registered once, with its descriptor.
///
/// The registry is the one place that knows which backends exist, which targets they compile for and how
/// to configure them. Everything that picks a backend — the compiler, the runtime, the partitioner's
/// fallback, the Swift API, the C ABI, the CLI — asks it: `selection(target:backends:)` turns a target
/// (`host` by default) into the backends that claim nodes and those that take the rest, and
/// `configured(_:)` gives a registry whose backends use other option values (`threads`).
public final class BackendRegistry: @unchecked Sendable {
    private var descriptorsByName: [String: BackendDescriptor] = [:]
    private var instances: [String: any Backend] = [:]
    private var order: [String] = []
    private let configuration: BackendConfiguration
    private let lock = Lock()

    /// An empty registry whose backends are made with their default options.
    public init() { configuration = BackendConfiguration() }

    private init(configuration: BackendConfiguration) { self.configuration = configuration }

    /// The target every API compiles for and loads with when none is named: this machine.
    public static let hostTarget = "host"

    /// Registers the backend `descriptor` describes and makes it now (with this registry's configuration),
    /// so that a backend that cannot be made fails here rather than at first use. A backend with the same
    /// name is replaced.
    public func register(_ descriptor: BackendDescriptor) throws {
        let backend = try descriptor.make(descriptor.restrict(configuration))
        lock.withLock {
            if descriptorsByName[descriptor.info.name] == nil { order.append(descriptor.info.name) }
            descriptorsByName[descriptor.info.name] = descriptor
            instances[descriptor.info.name] = backend
        }
    }

    /// Registers an already-made backend (a plugin's), of `kind`, compiling for `targets` with their
    /// priorities. It takes no options: every configuration of the registry shares this instance.
    public func register(_ backend: any Backend, kind: BackendKind = .accelerator, summary: String = "", targets: [String: Int] = [:]) {
        let descriptor = BackendDescriptor(info: backend.info, kind: kind, summary: summary, targets: targets) { _ in backend }
        lock.withLock {
            if descriptorsByName[backend.info.name] == nil { order.append(backend.info.name) }
            descriptorsByName[backend.info.name] = descriptor
            instances[backend.info.name] = backend
        }
    }

    /// Every descriptor, in registration order.
    public var descriptors: [BackendDescriptor] {
        lock.withLock { order.compactMap { descriptorsByName[$0] } }
    }

    /// The descriptor of the backend called `name`, or nil.
    public func descriptor(named name: String) -> BackendDescriptor? {
        lock.withLock { descriptorsByName[name] }
    }

    /// The backend called `name`, or nil.
    public func backend(named name: String) -> (any Backend)? {
        lock.withLock { instances[name] }
    }

    /// The backend called `name`, or an `.invalidArgument` error listing the known ones.
    public func require(_ name: String) throws -> any Backend {
        guard let backend = backend(named: name) else {
            throw KilnError(.invalidArgument, "no backend named '\(name)' (known: \(names.joined(separator: ", ")))")
        }
        return backend
    }

    /// All registered backends, in registration order.
    public var all: [any Backend] {
        lock.withLock { order.compactMap { instances[$0] } }
    }

    /// The registered backends' names, in registration order.
    public var names: [String] { lock.withLock { order } }

    /// The first backend of `kind` (the oracle for `.reference`), or nil.
    public func first(ofKind kind: BackendKind) -> (any Backend)? {
        lock.withLock { order.first { descriptorsByName[$0]?.kind == kind }.flatMap { instances[$0] } }
    }

    /// A registry with the same backends, made with `configuration`: each backend receives the options it
    /// declares. An option that no backend takes, or a value a backend refuses, is `.invalidArgument`.
    /// An empty configuration returns this registry itself.
    public func configured(_ configuration: BackendConfiguration) throws -> BackendRegistry {
        if configuration.isEmpty { return self }
        let descriptors = self.descriptors
        let declared = Set(descriptors.flatMap { $0.options.map(\.name) })
        if let unknown = configuration.options.keys.sorted().first(where: { !declared.contains($0) }) {
            let known = descriptors.flatMap { d in d.options.map { "\($0.name) (\(d.info.name))" } }
            throw KilnError(.invalidArgument, "no backend takes option '\(unknown)' (options: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        let result = BackendRegistry(configuration: configuration)
        for descriptor in descriptors { try result.register(descriptor) }
        return result
    }

    /// Every target some backend compiles for, `host` first, then by name.
    public var targets: [String] {
        let named = Set(descriptors.flatMap(\.targets.keys)).subtracting([Self.hostTarget])
        return [Self.hostTarget] + named.sorted()
    }

    /// The backends that claim nodes for `target`: those listing it, highest priority first (registration
    /// order on ties), never a reference backend.
    public func claimants(of target: String) -> [BackendDescriptor] {
        descriptors.enumerated()
            .filter { $0.element.kind != .reference && $0.element.targets[target] != nil }
            .sorted { ($0.element.targets[target]!, -$0.offset) > ($1.element.targets[target]!, -$1.offset) }
            .map(\.element)
    }

    /// The backends of `target` — or the ones named in `backends`, in that priority order — with the
    /// fallbacks for what they leave: the host's backends, then the reference backends. An unknown
    /// target or backend, or a backend named twice, is `.invalidArgument`.
    public func selection(target: String = BackendRegistry.hostTarget, backends: [String] = []) throws -> BackendSelection {
        guard targets.contains(target) else {
            throw KilnError(.invalidArgument, "unknown target '\(target)' (known: \(targets.joined(separator: ", ")); see `kiln targets`)")
        }
        var selected: [any Backend] = []
        for name in backends {
            let backend = try require(name)
            guard !selected.contains(where: { $0.info.name == name }) else {
                throw KilnError(.invalidArgument, "backend '\(name)' is selected twice")
            }
            selected.append(backend)
        }
        if backends.isEmpty { selected = try claimants(of: target).map { try require($0.info.name) } }
        let chain = claimants(of: Self.hostTarget).map(\.info.name) + descriptors.filter { $0.kind == .reference }.map(\.info.name)
        let chosen = Set(selected.map(\.info.name))
        let fallbacks = try chain.filter { !chosen.contains($0) }.map(require)
        return BackendSelection(target: target, selected: selected, fallbacks: fallbacks)
    }

    /// The target a partition on `backend` is compiled for when the artifact targets `target`: `target`
    /// itself when the backend compiles for it, else `host` (a fallback runs on this machine's CPU).
    public func compileTarget(for backend: String, in target: String) -> String {
        descriptor(named: backend)?.targets[target] != nil ? target : Self.hostTarget
    }
}
