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

    /// kiln.gpu over the OpenCL library at `libraryPath`, on the device `device` selects (an index, or
    /// part of a device name; nil: the first device).
    public init(libraryPath: String = GPUBackend.defaultLibraryPath, device: String? = nil) {
        self.libraryPath = libraryPath
        self.deviceSelector = device
    }

    private var platforms: OpenCLPlatforms { OpenCLPlatforms.at(libraryPath) }

    /// Every OpenCL device of every platform, or none when the library or a platform is missing.
    public func devices() -> [Device] { platforms.devices.map(\.device) }

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
        return try GPUExecutable(graph: typed, device: selected.device, placement: selected.index, tile: Self.tile(for: selected.device))
    }

    /// Payload format 1: `kiln.gpu payload 1`, the device's name and whether only a GPU may run it. The
    /// graph itself is the one the artifact stores; kernels are built again at load.
    public func compile(_ graph: Graph, options: CompileOptions) throws -> Payload {
        let gpuOnly = options.target == "opencl-gpu"
        guard options.target == "opencl" || gpuOnly || options.target == "host" else {
            throw KilnError(.invalidArgument, "kiln.gpu compiles for targets opencl and opencl-gpu, not '\(options.target)'")
        }
        let selected = try selectedDevice(gpuOnly: gpuOnly)
        _ = try prepare(graph, on: selected)  // builds every kernel now: a failure is a compile error, not a load error
        let text = "kiln.gpu payload 1\ndevice=\(selected.device.device.name)\ngpu_only=\(gpuOnly ? 1 : 0)\n"
        return Payload(bytes: Array(text.utf8), compat: "kiln.gpu/1")
    }

    /// Loadable when `compat` is `kiln.gpu/1`.
    public func check(compat: String) -> String? {
        compat == "kiln.gpu/1" ? nil : "kiln.gpu \(info.version) loads payloads of compatibility 'kiln.gpu/1', not '\(compat)'"
    }

    /// Loads onto the device the payload names when this machine has it, else the selected device.
    public func load(_ payload: [UInt8], graph: Graph) throws -> any Executable {
        let (name, gpuOnly) = try Self.decode(payload)
        if let index = platforms.devices.firstIndex(where: { $0.device.name == name && (!gpuOnly || $0.isGPU) }) {
            return try prepare(graph, on: (index, platforms.devices[index]))
        }
        return try prepare(graph, on: selectedDevice(gpuOnly: gpuOnly))
    }

    /// Loads onto device `deviceIndex` of `devices()`.
    public func load(_ payload: [UInt8], graph: Graph, deviceIndex: Int) throws -> any Executable {
        let (_, gpuOnly) = try Self.decode(payload)
        let all = platforms.devices
        guard deviceIndex >= 0, deviceIndex < all.count else {
            throw KilnError(.invalidArgument, "kiln.gpu: device \(deviceIndex) is out of range (\(all.count) device\(all.count == 1 ? "" : "s"))")
        }
        guard !gpuOnly || all[deviceIndex].isGPU else { throw KilnError(.invalidArgument, "kiln.gpu: this payload needs a GPU; device \(deviceIndex) is not one") }
        return try prepare(graph, on: (deviceIndex, all[deviceIndex]))
    }

    static func decode(_ payload: [UInt8]) throws -> (device: String, gpuOnly: Bool) {
        let lines = String(decoding: payload, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 3, lines[0] == "kiln.gpu payload 1", lines[1].hasPrefix("device="), lines[2] == "gpu_only=0" || lines[2] == "gpu_only=1" else {
            throw KilnError(.invalidArtifact, "kiln.gpu payload is not a payload of format 1 (\(payload.count) bytes)")
        }
        return (String(lines[1].dropFirst("device=".count)), lines[2] == "gpu_only=1")
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
    private let outputs: [(name: String, shape: [Int])]
    private let lock = Lock()
    private var stats = GPUCounters()
    /// The index of the device it runs on, in `GPUBackend.devices()`.
    public let deviceIndex: Int

    init(graph: Graph, device: CLDevice, placement: Int, tile: Int) throws {
        library = device.library
        deviceIndex = placement
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
        used.formUnion(outputs.map { alias[$0.name] ?? $0.name })
        do {
            for name in used.sorted() {
                let bytes = try lowering.shape(name).reduce(4, *)
                guard let buffer = library.createBuffer(context, CL.memReadWrite, bytes, nil, &status), status == CL.success else {
                    throw KilnError(.runtime, "kiln.gpu: allocating \(bytes) bytes for '\(name)' failed with OpenCL error \(status)")
                }
                bufferOf[name] = buffers.count
                buffers.append(buffer)
                if let weight = graph.initializers[name], let raw = weight.rawBytes {
                    try OpenCLLibrary.check(library.enqueueWriteBuffer(queue, buffer, 1, 0, bytes, raw.baseAddress, 0, nil, nil), "uploading '\(name)'")
                    stats.weightBytes += bytes
                }
            }
            for (name, target) in alias { bufferOf[name] = bufferOf[target] }
            for case .launch(let name, let source, let options, let arguments, let global, let local) in plans {
                let program = try device.program(source: source, options: options + " -cl-std=CL1.2")
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
            stats.launchesPerRun = launches.count
            try OpenCLLibrary.check(library.finish(queue), "clFinish")
        } catch {
            release()
            throw error
        }
    }

    private func release() {
        for launch in launches { _ = library.releaseKernel(launch.kernel) }
        for buffer in buffers { _ = library.releaseMemObject(buffer) }
        launches = []
        buffers = []
        _ = library.releaseCommandQueue(queue)
    }

    deinit { release() }

    /// Launches and bytes copied so far.
    public var counters: GPUCounters { lock.withLock { stats } }

    /// Copies the inputs to the device, runs every kernel, copies the outputs back.
    public func run(_ values: [String: RuntimeValue]) throws -> [RuntimeValue] {
        try lock.withLock {
            for input in inputs {
                guard let tensor = values[input.name]?.tensor else { throw KilnError(.invalidArgument, "kiln.gpu: missing input tensor '\(input.name)'") }
                guard tensor.dtype == .float32, tensor.shape == input.shape, let raw = tensor.rawBytes else {
                    throw KilnError(.invalidArgument, "kiln.gpu: input '\(input.name)' is \(tensor.dtype)\(tensor.shape); this graph was prepared for float32\(input.shape)")
                }
                try OpenCLLibrary.check(library.enqueueWriteBuffer(queue, buffers[bufferOf[input.name]!], 1, 0, raw.count, raw.baseAddress, 0, nil, nil),
                                        "copying input '\(input.name)' to the device")
                stats.bytesToDevice += raw.count
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
                var data = [Float](repeating: 0, count: count)
                let status = data.withUnsafeMutableBytes {
                    library.enqueueReadBuffer(queue, buffers[bufferOf[output.name]!], 1, 0, $0.count, $0.baseAddress, 0, nil, nil)
                }
                try OpenCLLibrary.check(status, "copying output '\(output.name)' to the host")
                stats.bytesToHost += count * 4
                results.append(.tensor(Tensor(shape: output.shape, data)))
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
                                help: "the OpenCL device: an index into `kiln backends`' device list, or part of its name")]
    ) { configuration in
        let backend = GPUBackend(device: configuration.options["device"])
        // A device named explicitly must exist: a typo is an error, not a silent fallback to the CPU.
        if configuration.options["device"] != nil { _ = try backend.selectedDevice() }
        return backend
    }
}
