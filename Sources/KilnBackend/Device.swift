#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What kind of processor a device is. The raw values are the names `kiln backends`, the C ABI and the
/// plugin ABI use.
public enum DeviceKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// A general-purpose CPU.
    case cpu
    /// A GPU (OpenCL, Vulkan, CUDA, …).
    case gpu
    /// A neural-network accelerator.
    case npu
    /// An FPGA design.
    case fpga
    /// A digital signal processor.
    case dsp
    /// A simulated device: a model of hardware that runs on the host.
    case simulator

    /// The raw value.
    public var description: String { rawValue }
}

/// A device a backend runs on: what `Backend.devices()` reports, and what load-time device selection names.
public struct Device: Sendable, Hashable, CustomStringConvertible {
    /// What it is.
    public var kind: DeviceKind
    /// Which one, for people (`x86_64, 2 logical cores`, `PoCL cpu-haswell`).
    public var name: String
    /// Memory the device owns, in bytes; 0 when it shares the host's memory or does not say.
    public var memoryBytes: UInt64
    /// Further facts as key–value pairs (`cores`, `isa`, `clock_mhz`), sorted by key when printed.
    public var properties: [String: String]

    /// A device of `kind` called `name`.
    public init(kind: DeviceKind, name: String, memoryBytes: UInt64 = 0, properties: [String: String] = [:]) {
        self.kind = kind
        self.name = name
        self.memoryBytes = memoryBytes
        self.properties = properties
    }

    /// `cpu: x86_64, 2 logical cores`, then the memory and properties when there are any.
    public var description: String {
        var text = "\(kind): \(name)"
        if memoryBytes > 0 { text += ", \(Self.memoryText(memoryBytes))" }
        if !properties.isEmpty { text += " (" + properties.keys.sorted().map { "\($0)=\(properties[$0]!)" }.joined(separator: ", ") + ")" }
        return text
    }

    /// `24 GiB`, `1.5 MiB`, `1536 B`.
    static func memoryText(_ bytes: UInt64) -> String {
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] where bytes >= UInt64(1) << shift {
            let tenths = (Double(bytes) / Double(UInt64(1) << shift) * 10).rounded()
            return (tenths.truncatingRemainder(dividingBy: 10) == 0 ? "\(Int(tenths / 10))" : "\(tenths / 10)") + " \(unit)"
        }
        return "\(bytes) B"
    }

    /// This machine's CPU: its architecture and the number of logical cores online.
    public static var hostCPU: Device {
        #if arch(x86_64)
        let arch = "x86_64"
        #elseif arch(arm64)
        let arch = "aarch64"
        #else
        let arch = "unknown architecture"
        #endif
        let cores = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return Device(kind: .cpu, name: cores > 0 ? "\(arch), \(cores) logical core\(cores == 1 ? "" : "s")" : arch)
    }
}
