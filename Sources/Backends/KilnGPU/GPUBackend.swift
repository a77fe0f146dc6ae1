#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnBackend
import KilnIR

/// `kiln.gpu`: runs float32 convolutional and dense networks on an OpenCL device. The OpenCL library is
/// opened with dlopen at first use, so libkiln runs (and this backend reports no device and claims
/// nothing) on machines without one.
public struct GPUBackend: Backend, DeviceSelectingBackend {
    /// The library opened when none is named: the ICD loader.
    public static let defaultLibraryPath = "libOpenCL.so.1"
    /// Who kiln.gpu is.
    public var info: BackendInfo { Self.descriptor.info }
    /// The OpenCL library this backend opens.
    public let libraryPath: String
    /// The device this backend prepares for: an index into `devices()`, or text a device name contains;
    /// nil means the first device.
    public let deviceSelector: String?
    /// The element type of device buffers.
    public let precision: GPUPrecision
    /// Where built programs are cached on disk, or nil for no disk cache.
    public let programCacheDirectory: String?
    /// A file to which each prepare appends one JSON line of its counters (`GPUCounters`), or nil.
    public let countersPath: String?

    /// kiln.gpu over the OpenCL library at `libraryPath`, on the device `device` selects (an index, or
    /// part of a device name; nil: the first device), with buffers of `precision`, caching built programs
    /// in `programCacheDirectory` (nil: no disk cache; the default is `defaultProgramCacheDirectory()`),
    /// appending each prepare's counters to `countersPath` when given.
    public init(libraryPath: String = GPUBackend.defaultLibraryPath, device: String? = nil, precision: GPUPrecision = .fp32,
                programCacheDirectory: String? = GPUBackend.defaultProgramCacheDirectory(), countersPath: String? = nil) {
        self.libraryPath = libraryPath
        self.deviceSelector = device
        self.precision = precision
        self.programCacheDirectory = programCacheDirectory
        self.countersPath = countersPath
    }

    /// The program cache directory used when none is given: `$KILN_CACHE_DIR/opencl`, else
    /// `$XDG_CACHE_HOME/kiln/opencl`, else `~/.cache/kiln/opencl`; nil (no disk cache) when the environment
    /// variable `KILN_GPU_PROGRAM_CACHE` is `off`.
    public static func defaultProgramCacheDirectory() -> String? { ProgramCache.defaultDirectory() }

    /// Forgets the programs this process built or loaded for every device (executables keep those they
    /// use), so that the next prepare takes them from the disk cache or builds them again.
    public func forgetBuiltPrograms() {
        for device in platforms.devices { device.forgetPrograms() }
    }

    private var platforms: OpenCLPlatforms { OpenCLPlatforms.at(libraryPath) }

    /// Every OpenCL device of every platform, or none when the library or a platform is missing.
    public func devices() -> [Device] { platforms.devices.map(\.device) }

    /// Groups of fewer nodes than this run on kiln.cpu (unless `--min-group-size` says otherwise): every
    /// partition boundary costs an upload, a download and a wait for the queue, which a few small kernels do
    /// not repay. Measured as in Documentation/targets/GPU.md, "Minimum group size".
    public var minimumGroupSize: Int { 6 }

    /// Why this backend has no device, or nil when it has some.
    public var unavailableReason: String? { platforms.problem }

    /// The device `deviceSelector` names, or `.unsupported`/`.invalidArgument` saying why there is none.
    func selectedDevice(gpuOnly: Bool = false) throws -> (index: Int, device: CLDevice) {
        let all = platforms.devices
        guard !all.isEmpty else { throw KilnError(.unsupported, platforms.problem ?? "kiln.gpu: no OpenCL device") }
        let candidates = all.enumerated().filter { !gpuOnly || $0.element.isGPU }
        guard !candidates.isEmpty else {
            throw KilnError(.unsupported, "kiln.gpu: target opencl-gpu needs an OpenCL GPU device; this machine has none (devices: \(all.map(\.device.name).joined(separator: "; ")))")
        }
        guard let selector = deviceSelector, !selector.isEmpty else { return (candidates[0].offset, candidates[0].element) }
        if let index = Int(selector) {
            guard let found = candidates.first(where: { $0.offset == index }) else {
                throw KilnError(.invalidArgument, "kiln.gpu: option device=\(index) names no \(gpuOnly ? "GPU " : "")device (\(all.count) device\(all.count == 1 ? "" : "s"): 0–\(all.count - 1))")
            }
            return (found.offset, found.element)
        }
        guard let found = candidates.first(where: { $0.element.device.name.lowercased().contains(selector.lowercased()) }) else {
            throw KilnError(.invalidArgument, "kiln.gpu: option device='\(selector)' matches no \(gpuOnly ? "GPU " : "")device (devices: \(all.map(\.device.name).joined(separator: "; ")))")
        }
        return (found.offset, found.element)
    }

    /// Every node when there is no device (with the reason); else the nodes kiln.gpu has no kernel for.
    public func rejections(in graph: Graph) -> [Rejection] {
        let device: CLDevice
        do { device = try selectedDevice().device } catch let error as KilnError {
            return graph.nodes.indices.map { Rejection(node: $0, reason: error.message) }
        } catch { return graph.nodes.indices.map { Rejection(node: $0, reason: "\(error)") } }
        var typed = graph
        do { _ = try GraphInference.infer(&typed) } catch let error as KilnError {
            return graph.nodes.indices.map { Rejection(node: $0, reason: "kiln.gpu needs the graph's shapes: \(error.message)") }
        } catch { return graph.nodes.indices.map { Rejection(node: $0, reason: "\(error)") } }
        let lowering = Lowering(graph: typed, tile: Self.tile(for: device))
        return typed.nodes.enumerated().compactMap { index, node in
            do { _ = try lowering.lower(node); return nil } catch let error as KilnError {
                return Rejection(node: index, reason: error.message)
            } catch { return Rejection(node: index, reason: "\(error)") }
        }
    }

    static func tile(for device: CLDevice) -> Int { device.maxWorkGroupSize >= 256 ? 16 : device.maxWorkGroupSize >= 64 ? 8 : 1 }

    /// Builds every kernel of `graph` and uploads its weights to the selected device.
    public func prepare(_ graph: Graph) throws -> any Executable {
        try prepare(graph, on: selectedDevice())
    }

    private func prepare(_ graph: Graph, on selected: (index: Int, device: CLDevice)) throws -> GPUExecutable {
        if let bad = graph.outputs.firstIndex(where: { $0.name.isEmpty }) {
            throw KilnError(.invalidModel, "kiln.gpu: graph output #\(bad) has an empty name")
        }
        let rejected = rejections(in: graph)
        if !rejected.isEmpty { throw CompileRefusal(backend: info.name, rejections: rejected, in: graph) }
        var typed = graph
        _ = try GraphInference.infer(&typed)
        return try GPUExecutable(graph: typed, device: selected.device, placement: selected.index, tile: Self.tile(for: selected.device),
                                 precision: precision, cache: programCacheDirectory.map { ProgramCache(directory: $0) }, countersPath: countersPath)
    }

    /// Payload format 1: `kiln.gpu payload 1`, the device's name, whether only a GPU may run it, and (when
    /// fp16) `precision=fp16`. The graph itself is the one the artifact stores; kernels are built again at
    /// load (from the program cache when it has them).
    public func compile(_ graph: Graph, options: CompileOptions) throws -> Payload {
        let gpuOnly = options.target == "opencl-gpu"
        guard options.target == "opencl" || gpuOnly || options.target == "host" else {
            throw KilnError(.invalidArgument, "kiln.gpu compiles for targets opencl and opencl-gpu, not '\(options.target)'")
        }
        let selected = try selectedDevice(gpuOnly: gpuOnly)
        _ = try prepare(graph, on: selected)  // builds every kernel now: a failure is a compile error, not a load error
        let text = "kiln.gpu payload 1\ndevice=\(selected.device.device.name)\ngpu_only=\(gpuOnly ? 1 : 0)\n" + (precision == .fp16 ? "precision=fp16\n" : "")
        return Payload(bytes: Array(text.utf8), compat: "kiln.gpu/1")
    }

    /// Loadable when `compat` is `kiln.gpu/1`.
    public func check(compat: String) -> String? {
        compat == "kiln.gpu/1" ? nil : "kiln.gpu \(info.version) loads payloads of compatibility 'kiln.gpu/1', not '\(compat)'"
    }

    /// Loads onto the device the payload names when this machine has it, else the selected device, in the
    /// precision the payload was compiled for.
    public func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        let (name, gpuOnly, precision) = try Self.decode(payload)
        let backend = withPrecision(precision)
        if let index = platforms.devices.firstIndex(where: { $0.device.name == name && (!gpuOnly || $0.isGPU) }) {
            return try backend.prepare(graph, on: (index, platforms.devices[index]))
        }
        return try backend.prepare(graph, on: selectedDevice(gpuOnly: gpuOnly))
    }

    private func withPrecision(_ precision: GPUPrecision) -> GPUBackend {
        GPUBackend(libraryPath: libraryPath, device: deviceSelector, precision: precision, programCacheDirectory: programCacheDirectory, countersPath: countersPath)
    }

    /// Loads onto device `deviceIndex` of `devices()`.
    public func load(_ payload: [UInt8], graph: Graph, deviceIndex: Int) throws -> any Executable {
        let (_, gpuOnly, precision) = try Self.decode(payload)
        let all = platforms.devices
        guard deviceIndex >= 0, deviceIndex < all.count else {
            throw KilnError(.invalidArgument, "kiln.gpu: device \(deviceIndex) is out of range (\(all.count) device\(all.count == 1 ? "" : "s"))")
        }
        guard !gpuOnly || all[deviceIndex].isGPU else { throw KilnError(.invalidArgument, "kiln.gpu: this payload needs a GPU; device \(deviceIndex) is not one") }
        return try withPrecision(precision).prepare(graph, on: (deviceIndex, all[deviceIndex]))
    }

    static func decode(_ payload: [UInt8]) throws -> (device: String, gpuOnly: Bool, precision: GPUPrecision) {
        let lines = String(decoding: payload, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 3, lines[0] == "kiln.gpu payload 1", lines[1].hasPrefix("device="), lines[2] == "gpu_only=0" || lines[2] == "gpu_only=1" else {
            throw KilnError(.invalidArtifact, "kiln.gpu payload is not a payload of format 1 (\(payload.count) bytes)")
        }
        let precision: GPUPrecision = lines.count > 3 && lines[3] == "precision=fp16" ? .fp16 : .fp32
        return (String(lines[1].dropFirst("device=".count)), lines[2] == "gpu_only=1", precision)
    }
}

/// What a kiln.gpu executable did: kernel launches and bytes copied between host and device.
public struct GPUCounters: Sendable, Hashable {
    /// Kernels enqueued by runs.
    public var launches = 0
    /// Bytes copied host → device by runs (graph inputs).
    public var bytesToDevice = 0
    /// Bytes copied device → host by runs (graph outputs).
    public var bytesToHost = 0
    /// Runs so far.
    public var runs = 0
    /// Bytes of weights uploaded once, at prepare.
    public var weightBytes = 0
    /// Kernel launches one run makes.
    public var launchesPerRun = 0
    /// Bytes one run copies host → device (its inputs, in the buffers' precision).
    public var bytesToDevicePerRun = 0
    /// Bytes one run copies device → host (its outputs, in the buffers' precision).
    public var bytesToHostPerRun = 0
    /// Programs prepare built from source.
    public var programsBuilt = 0
    /// Programs prepare loaded from the on-disk program cache (cache hits).
    public var programCacheHits = 0
    /// Programs prepare looked up in the on-disk cache and did not find there (cache misses, built instead).
    public var programCacheMisses = 0
    /// Cache entries prepare found but did not use (corrupt, for another key, or refused by the driver);
    /// each is also a miss.
    public var programCacheRejected = 0
    /// Programs prepare reused from this process (built or loaded earlier for the same device).
    public var programsReused = 0
    /// Seconds prepare spent obtaining programs (building, or loading from the cache).
    public var programSeconds = 0.0
}

/// The element type of kiln.gpu's device buffers.
public enum GPUPrecision: String, Sendable, Hashable, CaseIterable {
    /// float32 buffers and arithmetic.
    case fp32
    /// half (IEEE binary16) buffers — weights, inputs, outputs and intermediates — with float32 arithmetic
    /// inside each kernel (`vload_half`/`vstore_half`, core OpenCL C, so every device supports it).
    case fp16

    /// Bytes per element.
    var elementSize: Int { self == .fp16 ? 2 : 4 }
}

/// A graph prepared on one OpenCL device: every value has a device buffer (a view shares its input's),
/// weights were uploaded once, and a run copies only the graph's inputs in and its outputs out.
public final class GPUExecutable: Executable, @unchecked Sendable {
    private struct Launch {
        let kernel: CLHandle
        let global: [Int]
        let local: [Int]?
    }

    private let library: OpenCLLibrary
    private let queue: CLHandle
    private var buffers: [CLHandle] = []
    private var launches: [Launch] = []
    private var bufferOf: [String: Int] = [:]
    private let inputs: [(name: String, shape: [Int])]
    /// Inputs that are also initializers: their default values (uploaded at prepare).
    private var defaults: [String: Tensor] = [:]
    /// Such inputs whose buffer holds a fed value instead of the default.
    private var overridden = Set<String>()
    private let outputs: [(name: String, shape: [Int])]
    private let lock = Lock()
    private var stats = GPUCounters()
    /// The index of the device it runs on, in `GPUBackend.devices()`.
    public let deviceIndex: Int
    /// The element type of its buffers.
    public let precision: GPUPrecision

    init(graph: Graph, device: CLDevice, placement: Int, tile: Int, precision: GPUPrecision, cache: ProgramCache?, countersPath: String?) throws {
        library = device.library
        deviceIndex = placement
        self.precision = precision
        let size = precision.elementSize
        let context = try device.context()
        var status: Int32 = 0
        guard let queue = library.createCommandQueue(context, device.id, 0, &status), status == CL.success else {
            throw KilnError(.runtime, "kiln.gpu: clCreateCommandQueue failed with OpenCL error \(status)")
        }
        self.queue = queue
        let lowering = Lowering(graph: graph, tile: tile)
        let plans = Lowering.fuseActivations(try graph.nodes.map { try lowering.lower($0) }, graph: graph).compactMap { $0 }
        // Views first resolve to the buffer of the value they alias.
        var alias: [String: String] = [:]
        for case .view(let input, let output) in plans { alias[output] = alias[input] ?? input }
        var used = Set<String>()
        for plan in plans {
            if case .launch(_, _, _, let arguments, _, _) = plan {
                for case .value(let name) in arguments { used.insert(alias[name] ?? name) }
            }
        }
        inputs = try graph.inputs.filter { input in used.contains(input.name) || graph.outputs.contains(where: { (alias[$0.name] ?? $0.name) == input.name }) }
            .map { ($0.name, try lowering.shape($0.name)) }
        outputs = try graph.outputs.map { ($0.name, try lowering.shape($0.name)) }
        for input in inputs { if let initial = graph.initializers[input.name] { defaults[input.name] = initial } }
        used.formUnion(outputs.map { alias[$0.name] ?? $0.name })
        do {
            for name in used.sorted() {
                let bytes = try lowering.shape(name).reduce(size, *)
                guard let buffer = library.createBuffer(context, CL.memReadWrite, bytes, nil, &status), status == CL.success else {
                    throw KilnError(.runtime, "kiln.gpu: allocating \(bytes) bytes for '\(name)' failed with OpenCL error \(status)")
                }
                bufferOf[name] = buffers.count
                buffers.append(buffer)
                if let weight = graph.initializers[name], let raw = weight.rawBytes {
                    let status = Self.withDeviceBytes(raw, precision) { library.enqueueWriteBuffer(queue, buffer, 1, 0, bytes, $0.baseAddress, 0, nil, nil) }
                    try OpenCLLibrary.check(status, "uploading '\(name)'")
                    stats.weightBytes += bytes
                }
            }
            for (name, target) in alias { bufferOf[name] = bufferOf[target] }
            let started = Self.now()
            for case .launch(let name, let source, let options, let arguments, let global, let local) in plans {
                let (program, origin) = try device.program(source: Kernels.storage + source,
                                                           options: options + (precision == .fp16 ? " -DKILN_FP16=1" : "") + " -cl-std=CL1.2", cache: cache)
                switch origin {
                case .memory: stats.programsReused += 1
                case .disk: stats.programCacheHits += 1
                case .built(let rejected):
                    stats.programsBuilt += 1
                    if cache != nil { stats.programCacheMisses += 1 }
                    if rejected { stats.programCacheRejected += 1 }
                }
                guard let kernel = name.withCString({ library.createKernel(program, $0, &status) }), status == CL.success else {
                    throw KilnError(.internal, "kiln.gpu: clCreateKernel(\(name)) failed with OpenCL error \(status)")
                }
                launches.append(Launch(kernel: kernel, global: global, local: local))
                for (i, argument) in arguments.enumerated() {
                    switch argument {
                    case .value(let value):
                        guard let index = bufferOf[value] else { throw KilnError(.internal, "kiln.gpu: value '\(value)' has no buffer") }
                        var handle: CLHandle? = buffers[index]
                        try OpenCLLibrary.check(library.setKernelArg(kernel, UInt32(i), MemoryLayout<CLHandle?>.size, &handle), "clSetKernelArg")
                    case .float(var scalar):
                        try OpenCLLibrary.check(library.setKernelArg(kernel, UInt32(i), 4, &scalar), "clSetKernelArg")
                    }
                }
            }
            stats.programSeconds = Self.now() - started
            stats.launchesPerRun = launches.count
            stats.bytesToDevicePerRun = inputs.filter { defaults[$0.name] == nil }.reduce(0) { $0 + $1.shape.reduce(size, *) }
            stats.bytesToHostPerRun = outputs.reduce(0) { $0 + $1.shape.reduce(size, *) }
            try OpenCLLibrary.check(library.finish(queue), "clFinish")
            if let countersPath { Self.append(stats, device: device.device.name, to: countersPath) }
        } catch {
            release()
            throw error
        }
    }

    /// Whether `release` has run: an init that fails releases at once, and deinit (which Swift still runs
    /// for a fully initialized object whose init throws) must not release the queue a second time.
    private var released = false

    private func release() {
        guard !released else { return }
        released = true
        for launch in launches { _ = library.releaseKernel(launch.kernel) }
        for buffer in buffers { _ = library.releaseMemObject(buffer) }
        launches = []
        buffers = []
        _ = library.releaseCommandQueue(queue)
    }

    deinit { release() }

    /// Seconds on a monotonic clock.
    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Calls `body` with float32 `raw` as the device stores it: as is, or converted to half.
    static func withDeviceBytes<R>(_ raw: UnsafeRawBufferPointer, _ precision: GPUPrecision, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard precision == .fp16 else { return try body(raw) }
        let halves = raw.bindMemory(to: Float.self).map { Float16($0).bitPattern }
        return try halves.withUnsafeBytes(body)
    }

    /// Appends one JSON line of `counters` to the file at `path` (best effort: counters are diagnostics).
    static func append(_ c: GPUCounters, device: String, to path: String) {
        let name = device.unicodeScalars.map { $0 == "\\" || $0 == "\"" ? "\\\($0)" : $0.value < 0x20 ? " " : String($0) }.joined()
        let line = "{\"device\": \"\(name)\", \"launches_per_run\": \(c.launchesPerRun), \"bytes_to_device_per_run\": \(c.bytesToDevicePerRun), "
            + "\"bytes_to_host_per_run\": \(c.bytesToHostPerRun), \"weight_bytes\": \(c.weightBytes), \"programs_built\": \(c.programsBuilt), "
            + "\"program_cache_hits\": \(c.programCacheHits), \"program_cache_misses\": \(c.programCacheMisses), "
            + "\"program_cache_rejected\": \(c.programCacheRejected), \"programs_reused\": \(c.programsReused), \"program_seconds\": \(c.programSeconds)}\n"
        guard let file = fopen(path, "a") else { return }
        _ = line.withCString { fputs($0, file) }
        fclose(file)
    }

    /// Launches and bytes copied so far.
    public var counters: GPUCounters { lock.withLock { stats } }

    /// Copies the inputs to the device, runs every kernel, copies the outputs back.
    public func run(_ values: [String: RuntimeValue]) throws -> [RuntimeValue] {
        try lock.withLock {
            for input in inputs {
                // An input that is also an initializer (older exporters list weights as inputs) defaults to the
                // initializer, uploaded at prepare; a fed value overrides it for that run only.
                let fed = values[input.name]?.tensor
                if fed == nil, let initial = defaults[input.name] {
                    if overridden.remove(input.name) == nil { continue }
                    guard let raw = initial.rawBytes else { continue }
                    let status = Self.withDeviceBytes(raw, precision) {
                        library.enqueueWriteBuffer(queue, buffers[bufferOf[input.name]!], 1, 0, raw.count / 4 * precision.elementSize, $0.baseAddress, 0, nil, nil)
                    }
                    try OpenCLLibrary.check(status, "restoring input '\(input.name)' to its initializer")
                    stats.bytesToDevice += raw.count / 4 * precision.elementSize
                    continue
                }
                guard let tensor = fed else { throw KilnError(.invalidArgument, "kiln.gpu: missing input tensor '\(input.name)'") }
                if defaults[input.name] != nil { overridden.insert(input.name) }
                guard tensor.dtype == .float32, tensor.shape == input.shape, let raw = tensor.rawBytes else {
                    throw KilnError(.invalidArgument, "kiln.gpu: input '\(input.name)' is \(tensor.dtype)\(tensor.shape); this graph was prepared for float32\(input.shape)")
                }
                let bytes = raw.count / 4 * precision.elementSize
                let status = Self.withDeviceBytes(raw, precision) {
                    library.enqueueWriteBuffer(queue, buffers[bufferOf[input.name]!], 1, 0, bytes, $0.baseAddress, 0, nil, nil)
                }
                try OpenCLLibrary.check(status, "copying input '\(input.name)' to the device")
                stats.bytesToDevice += bytes
            }
            for launch in launches {
                let status = launch.global.withUnsafeBufferPointer { global -> Int32 in
                    if let local = launch.local {
                        return local.withUnsafeBufferPointer { library.enqueueNDRangeKernel(queue, launch.kernel, UInt32(global.count), nil, global.baseAddress, $0.baseAddress, 0, nil, nil) }
                    }
                    return library.enqueueNDRangeKernel(queue, launch.kernel, UInt32(global.count), nil, global.baseAddress, nil, 0, nil, nil)
                }
                try OpenCLLibrary.check(status, "clEnqueueNDRangeKernel")
                stats.launches += 1
            }
            var results: [RuntimeValue] = []
            for output in outputs {
                let count = output.shape.reduce(1, *)
                let buffer = buffers[bufferOf[output.name]!]
                if precision == .fp16 {
                    var halves = [UInt16](repeating: 0, count: count)
                    let status = halves.withUnsafeMutableBytes { library.enqueueReadBuffer(queue, buffer, 1, 0, $0.count, $0.baseAddress, 0, nil, nil) }
                    try OpenCLLibrary.check(status, "copying output '\(output.name)' to the host")
                    results.append(.tensor(Tensor(shape: output.shape, halves.map { Float(Float16(bitPattern: $0)) })))
                } else {
                    var data = [Float](repeating: 0, count: count)
                    let status = data.withUnsafeMutableBytes { library.enqueueReadBuffer(queue, buffer, 1, 0, $0.count, $0.baseAddress, 0, nil, nil) }
                    try OpenCLLibrary.check(status, "copying output '\(output.name)' to the host")
                    results.append(.tensor(Tensor(shape: output.shape, data)))
                }
                stats.bytesToHost += count * precision.elementSize
            }
            stats.runs += 1
            return results
        }
    }
}

extension GPUBackend {
    /// How the registry knows kiln.gpu: an accelerator for the targets `opencl` (any OpenCL device) and
    /// `opencl-gpu` (GPU devices only), with the option `device`.
    public static let descriptor = BackendDescriptor(
        info: BackendInfo(name: "kiln.gpu", vendor: "kiln", version: "0.1.0"),
        kind: .accelerator,
        summary: "OpenCL backend (libOpenCL.so.1 opened at run time): tiled SGEMM, implicit-GEMM Conv, pools, elementwise, Softmax",
        targets: ["opencl": 100, "opencl-gpu": 100],
        options: [BackendOption(name: "device", type: .text(choices: []), defaultValue: "the first OpenCL device",
                                help: "the OpenCL device: an index into `kiln backends`' device list, or part of its name"),
                  BackendOption(name: "precision", type: .text(choices: GPUPrecision.allCases.map(\.rawValue)), defaultValue: "fp32",
                                help: "the element type of device buffers: fp32, or fp16 (half storage, float arithmetic)"),
                  BackendOption(name: "program_cache", type: .text(choices: []), defaultValue: "$KILN_CACHE_DIR/opencl, $XDG_CACHE_HOME/kiln/opencl or ~/.cache/kiln/opencl",
                                help: "where built OpenCL programs are cached: a directory, or off (also KILN_GPU_PROGRAM_CACHE=off)"),
                  BackendOption(name: "counters", type: .text(choices: []), defaultValue: "none",
                                help: "a file to which each prepare appends one JSON line: launches, bytes per run, program builds and cache hits")]
    ) { configuration in
        let text = configuration.options["precision"] ?? "fp32"
        guard let precision = GPUPrecision(rawValue: text) else {
            throw KilnError(.invalidArgument, "kiln.gpu: option precision=\(text): expected fp32 or fp16")
        }
        var cache = GPUBackend.defaultProgramCacheDirectory()
        if let setting = configuration.options["program_cache"] {
            guard !setting.isEmpty else { throw KilnError(.invalidArgument, "kiln.gpu: option program_cache is empty: expected a directory or off") }
            cache = ["off", "0", "no", "false"].contains(setting.lowercased()) ? nil : setting
        }
        let backend = GPUBackend(device: configuration.options["device"], precision: precision, programCacheDirectory: cache,
                                 countersPath: configuration.options["counters"])
        // A device named explicitly must exist: a typo is an error, not a silent fallback to the CPU.
        if configuration.options["device"] != nil { _ = try backend.selectedDevice() }
        return backend
    }
}
