import KilnIR
import CKilnKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A CPU instruction-set target of `kiln.cpu`: what a compiled payload requires of the machine that loads it.
public enum CPUTarget: String, Sendable, CaseIterable {
    /// Portable C kernels only: runs on every machine.
    case generic
    /// x86-64 with AVX2 and FMA.
    case x86_64_avx2 = "x86_64-avx2"
    /// x86-64 with AVX-512F (and AVX2 + FMA).
    case x86_64_avx512 = "x86_64-avx512"
    /// 64-bit Arm with NEON.
    case aarch64_neon = "aarch64-neon"

    /// The names `--target` accepts: `host` plus every concrete target.
    public static var names: [String] { ["host"] + allCases.map(\.rawValue) }

    /// The target called `name`; `host` is the best target of this machine. An unknown name is an
    /// `.invalidArgument` error listing the known ones.
    public static func named(_ name: String) throws -> CPUTarget {
        if name == "host" { return host }
        guard let target = CPUTarget(rawValue: name) else {
            throw KilnError(.invalidArgument, "unknown kiln.cpu target '\(name)' (known: \(names.joined(separator: ", ")))")
        }
        return target
    }

    /// The best target this machine supports.
    public static var host: CPUTarget {
        let f = CPUFeatures.host
        if f.avx512f && f.avx2 && f.fma { return .x86_64_avx512 }
        if f.avx2 && f.fma { return .x86_64_avx2 }
        if f.neon { return .aarch64_neon }
        return .generic
    }

    /// nil when `features` has everything this target needs, else what is missing.
    public func missing(on features: CPUFeatures) -> String? {
        var lacking: [String] = []
        switch self {
        case .generic: break
        case .x86_64_avx2:
            if !features.avx2 { lacking.append("AVX2") }
            if !features.fma { lacking.append("FMA") }
        case .x86_64_avx512:
            if !features.avx2 { lacking.append("AVX2") }
            if !features.fma { lacking.append("FMA") }
            if !features.avx512f { lacking.append("AVX-512F") }
        case .aarch64_neon:
            if !features.neon { lacking.append("NEON") }
        }
        return lacking.isEmpty ? nil : lacking.joined(separator: ", ")
    }
}

/// The CPU features that select `kiln.cpu`'s kernels.
public struct CPUFeatures: Sendable, Hashable, CustomStringConvertible {
    /// AVX2 present.
    public var avx2: Bool
    /// FMA3 present.
    public var fma: Bool
    /// AVX-512 Foundation present.
    public var avx512f: Bool
    /// Arm NEON (Advanced SIMD) present.
    public var neon: Bool

    /// A feature set.
    public init(avx2: Bool = false, fma: Bool = false, avx512f: Bool = false, neon: Bool = false) {
        self.avx2 = avx2
        self.fma = fma
        self.avx512f = avx512f
        self.neon = neon
    }

    /// The features of the CPU this process runs on (from `kiln_cpu_detect`).
    public static var host: CPUFeatures {
        let f = kiln_cpu_detect()
        return CPUFeatures(avx2: f.avx2 != 0, fma: f.fma != 0, avx512f: f.avx512f != 0, neon: f.neon != 0)
    }

    /// `avx2 fma avx512f` (or `none`).
    public var description: String {
        let names = [(avx2, "avx2"), (fma, "fma"), (avx512f, "avx512f"), (neon, "neon")].filter(\.0).map(\.1)
        return names.isEmpty ? "none" : names.joined(separator: " ")
    }
}

/// Facts about the host's processors.
public enum HostCPU {
    /// Number of physical cores (hyper-threads of one core count once); at least 1.
    public static let physicalCores: Int = {
        let logical = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        var siblingSets = Set<String>()
        for cpu in 0..<logical {
            if let text = readSmallFile("/sys/devices/system/cpu/cpu\(cpu)/topology/thread_siblings_list") {
                siblingSets.insert(text)
            }
        }
        return siblingSets.isEmpty ? logical : min(logical, siblingSets.count)
    }()

    /// The first line of a small text file, or nil.
    static func readSmallFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let bytes = buffer.prefix(while: { $0 != 0 && $0 != 10 }).map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
