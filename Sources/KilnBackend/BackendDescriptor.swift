import KilnIR

/// What role a backend plays. The registry uses it to build every target's backend order: `reference`
/// backends are the last fallback of every target and run only when nothing else can, or when asked for.
public enum BackendKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// A plain interpreter of every supported op: the correctness oracle (`kiln.reference`).
    case reference
    /// An optimized backend for a general-purpose processor (`kiln.cpu`).
    case optimized
    /// A backend for a GPU, NPU, DSP or FPGA.
    case accelerator
    /// A backend that runs a simulated device on the host.
    case simulator

    /// The raw value.
    public var description: String { rawValue }
}

/// One option a backend takes (`threads`), with its type and what the default is.
public struct BackendOption: Sendable, Hashable {
    /// The value's type.
    public enum ValueType: Sendable, Hashable {
        /// An integer of at least `minimum`.
        case integer(minimum: Int)
        /// `true` or `false`.
        case boolean
        /// One of `choices` (any string when empty).
        case text(choices: [String])
    }

    /// The option's name (`threads`); the same name in every API (CLI, C ABI, Python).
    public var name: String
    /// The value's type.
    public var type: ValueType
    /// What the backend uses when the option is not given, for people (`the physical cores`).
    public var defaultValue: String
    /// What the option does.
    public var help: String

    /// An option called `name` of `type`.
    public init(name: String, type: ValueType, defaultValue: String, help: String) {
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.help = help
    }

    /// nil when `value` is a valid value of this option, else why not.
    public func problem(with value: String) -> String? {
        switch type {
        case .integer(let minimum):
            guard let v = Int(value) else { return "option \(name)='\(value)': expected an integer" }
            return v >= minimum ? nil : "option \(name)=\(v): expected at least \(minimum)"
        case .boolean:
            return value == "true" || value == "false" ? nil : "option \(name)='\(value)': expected true or false"
        case .text(let choices):
            return choices.isEmpty || choices.contains(value) ? nil : "option \(name)='\(value)': expected one of \(choices.joined(separator: ", "))"
        }
    }

    /// `threads (integer ≥ 1, default: the physical cores)`.
    public var summary: String {
        let kind: String
        switch type {
        case .integer(let minimum): kind = "integer ≥ \(minimum)"
        case .boolean: kind = "true|false"
        case .text(let choices): kind = choices.isEmpty ? "text" : choices.joined(separator: "|")
        }
        return "\(name) (\(kind), default: \(defaultValue))"
    }
}

/// Something that records what a backend's runs did (per-step times). A backend that can be profiled
/// says so in its descriptor and accepts its own recorder type through `BackendConfiguration.profiler`.
/// Backends that run on a device (a plugin's accelerator or its simulator) hand every recorder the
/// device's own account of each run through `record(_:)`.
public protocol ExecutionProfiler: AnyObject, Sendable {
    /// Records one run of a device program, as the device timed it. The default ignores it.
    func record(_ profile: DeviceProfile)
}

extension ExecutionProfiler {
    /// Ignores `profile`: a recorder that keeps only its own backend's steps.
    public func record(_ profile: DeviceProfile) {}
}

/// One run of a device program as the device (or its simulator) timed it, in device cycles: what each
/// step ran, on which unit, when and for how long. Plugins report it through the plugin ABI's `profile`
/// callback (1.4); `kiln run --profile` prints it per layer and per unit.
public struct DeviceProfile: Sendable, Equatable {
    /// One step: a layer, a transfer, a launch.
    public struct Step: Sendable, Equatable {
        /// What ran: the graph node(s).
        public var name: String
        /// Where it ran: an engine, queue or module.
        public var unit: String
        /// When it started, in cycles from the start of the run.
        public var startCycle: UInt64
        /// How long it ran, in cycles.
        public var cycles: UInt64

        /// A step of `cycles` cycles from `startCycle`, running `name` on `unit`.
        public init(name: String, unit: String, startCycle: UInt64, cycles: UInt64) {
            self.name = name
            self.unit = unit
            self.startCycle = startCycle
            self.cycles = cycles
        }
    }

    /// The backend whose device ran it.
    public var backend: String
    /// Which of the backend's programs ran: the name of the graph it was compiled from (a partition's).
    public var program: String
    /// The clock the cycles count, in Hz; 0 when unknown.
    public var clockHz: Double
    /// The run from start to end, in cycles.
    public var totalCycles: UInt64
    /// The steps, in the order the device reported them.
    public var steps: [Step]

    /// A run of `program` taking `totalCycles` cycles on `backend`'s device, clocked at `clockHz` (0: unknown).
    public init(backend: String, program: String, clockHz: Double, totalCycles: UInt64, steps: [Step]) {
        self.backend = backend
        self.program = program
        self.clockHz = clockHz
        self.totalCycles = totalCycles
        self.steps = steps
    }

    /// Cycles as microseconds at `clockHz` (nil when the clock is unknown).
    public func microseconds(_ cycles: UInt64) -> Double? { clockHz > 0 ? Double(cycles) / clockHz * 1e6 : nil }
}

/// How to configure backends when they are made: option values by name, and an optional profiler.
/// Each backend receives only the options it declares.
public struct BackendConfiguration: Sendable {
    /// Option values by option name (`["threads": "2"]`).
    public var options: [String: String]
    /// A recorder that backends which can be profiled write into.
    public var profiler: (any ExecutionProfiler)?

    /// A configuration of `options`, with `profiler`.
    public init(options: [String: String] = [:], profiler: (any ExecutionProfiler)? = nil) {
        self.options = options
        self.profiler = profiler
    }

    /// The configuration giving `threads` (nil: each backend's default).
    public init(threads: Int?, profiler: (any ExecutionProfiler)? = nil) {
        self.init(options: threads.map { ["threads": String($0)] } ?? [:], profiler: profiler)
    }

    /// Whether nothing is configured.
    public var isEmpty: Bool { options.isEmpty && profiler == nil }

    /// The integer value of option `name`, or nil when it is not given.
    public func integer(_ name: String) -> Int? { options[name].flatMap { Int($0) } }
}

/// A backend as the registry knows it: who it is, what role it plays, which targets it compiles for and
/// with which priority, which options it takes, and the factory that makes it.
public struct BackendDescriptor: Sendable {
    /// Who the backend is (`kiln.cpu`, vendor, version).
    public var info: BackendInfo
    /// Its role.
    public var kind: BackendKind
    /// One line saying what it is, for `kiln backends`.
    public var summary: String
    /// The targets it compiles for, with its priority for each (higher first). A target's backends are
    /// those listing it, by priority; `host` is this machine.
    public var targets: [String: Int]
    /// The options it takes.
    public var options: [BackendOption]
    /// Whether it records into `BackendConfiguration.profiler`.
    public var profiles: Bool
    /// Makes the backend with a configuration holding only its own options (already validated).
    public var make: @Sendable (BackendConfiguration) throws -> any Backend

    /// A descriptor; see the properties.
    public init(info: BackendInfo, kind: BackendKind, summary: String, targets: [String: Int] = [:], options: [BackendOption] = [],
                profiles: Bool = false, make: @escaping @Sendable (BackendConfiguration) throws -> any Backend) {
        self.info = info
        self.kind = kind
        self.summary = summary
        self.targets = targets
        self.options = options
        self.profiles = profiles
        self.make = make
    }

    /// `configuration` reduced to this backend's options (each value checked) and, when it profiles, the profiler.
    func restrict(_ configuration: BackendConfiguration) throws -> BackendConfiguration {
        var own = BackendConfiguration(profiler: profiles ? configuration.profiler : nil)
        for option in options {
            guard let value = configuration.options[option.name] else { continue }
            if let problem = option.problem(with: value) { throw KilnError(.invalidArgument, "\(info.name): \(problem)") }
            own.options[option.name] = value
        }
        return own
    }
}
