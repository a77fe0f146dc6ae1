import Kiln

/// The checks of plugin ABI 1.2: devices, load-time device selection and device buffers.
extension PluginCheck {
    func checkDevices(_ backend: CPluginBackend, record: (String, () throws -> String) -> Void) {
        let name = backend.info.name
        var devices: [Device] = []
        record("\(name): devices") {
            devices = try backend.deviceList()
            guard !devices.isEmpty else { throw Skip(reason: "no devices here (the backend compiles ahead of time only)") }
            return "\(devices.count) device(s): " + devices.enumerated().map { "#\($0.offset) \($0.element)" }.joined(separator: "; ")
        }
        record("\(name): targets") {
            backend.targets.isEmpty ? "none besides host" : backend.targets.joined(separator: ", ")
        }
        guard !devices.isEmpty else { return }
        // The first probe the backend claims entirely, compiled once (inside a check: the plugin may crash).
        var probe: Probe?
        var payload: Payload?
        record("\(name): devices: a probe op to run on them") {
            for candidate in Self.probes() where try backend.claim(candidate.graph).allSatisfy({ $0 == nil }) {
                payload = try backend.compile(candidate.graph, options: CompileOptions())
                probe = candidate
                return candidate.name
            }
            throw Skip(reason: "the backend claims no probe op")
        }
        guard let probe, let payload else { return }
        let reference = Kiln.reference
        let want: [RuntimeValue]
        do { want = try reference.prepare(probe.graph).run(probe.inputs) } catch { return }

        record("\(name): \(probe.name): load and execute on each device") {
            for index in devices.indices {
                let executable = try backend.load(payload.bytes, graph: probe.graph, deviceIndex: index)
                do { _ = try compare(try executable.run(probe.inputs), want) } catch let error as KilnError {
                    throw KilnError(error.code, "device \(index): \(error.message)")
                }
            }
            return "matches \(reference.info.name) on \(devices.count) device(s)"
        }
        record("\(name): \(probe.name): a device index out of range is refused") {
            do {
                _ = try backend.load(payload.bytes, graph: probe.graph, deviceIndex: devices.count)
            } catch let error as KilnError where error.code != .internal {
                return "device \(devices.count): \(error.code)"
            }
            throw KilnError(.invalidArgument, "loading onto device \(devices.count) of \(devices.count) succeeded")
        }
        guard backend.supportsDeviceBuffers else {
            record("\(name): device buffers") { throw Skip(reason: "the backend does not set KILN_PLUGIN_BACKEND_DEVICE_BUFFERS") }
            return
        }
        let inputs = probe.graph.inputs.compactMap { probe.inputs[$0.name]?.tensor.map { (name: $0, tensor: $0) } }
        record("\(name): device buffers: upload and download on each device") {
            for index in devices.indices {
                for (_, tensor) in inputs {
                    let back = try backend.upload(tensor, device: index).copyToHost()
                    guard back.shape == tensor.shape, back.rawBytes.map(Array.init) == tensor.rawBytes.map(Array.init) else {
                        throw KilnError(.invalidArgument, "device \(index): a \(tensor.shape) tensor came back different")
                    }
                }
            }
            return "\(inputs.count) tensor(s) round-tripped on \(devices.count) device(s)"
        }
        record("\(name): \(probe.name): execute on buffers, outputs left on the device") {
            for index in devices.indices {
                guard let executable = try backend.load(payload.bytes, graph: probe.graph, deviceIndex: index) as? CPluginExecutable else {
                    throw Skip(reason: "not a plugin executable")
                }
                var placed: [String: PlacedValue] = [:]
                for input in probe.graph.inputs {
                    guard let tensor = probe.inputs[input.name]?.tensor else { continue }
                    placed[input.name] = .device(try backend.upload(tensor, device: index))
                }
                let outputs = try executable.run(placed: placed, outputsOnDevice: Set(probe.graph.outputs.indices))
                for (position, output) in outputs.enumerated() {
                    guard case .device(let buffer) = output, buffer.placement == backend.placement(device: index) else {
                        throw KilnError(.invalidArgument, "device \(index): output \(position) is not a buffer of device \(index)")
                    }
                }
                do { _ = try compare(try outputs.map { try $0.onHost() }, want) } catch let error as KilnError {
                    throw KilnError(error.code, "device \(index): \(error.message)")
                }
            }
            return "matches \(reference.info.name) on \(devices.count) device(s)"
        }
        record("\(name): device buffers: reads and writes out of range are refused") {
            guard let (_, tensor) = inputs.first, let width = tensor.dtype.byteWidth else { throw Skip(reason: "the probe has no input") }
            let buffer = try backend.upload(tensor, device: 0)
            let size = tensor.count * width
            for (offset, count) in [(size, 1), (0, size + 1), (Int.max / 2, 8)] {
                do {
                    _ = try buffer.read(byteOffset: offset, byteCount: count)
                } catch let error as KilnError where error.code != .internal {
                    continue
                }
                throw KilnError(.invalidArgument, "buffer_read of bytes \(offset)..<\(offset &+ count) of a \(size)-byte buffer succeeded")
            }
            do {
                try buffer.write([UInt8](repeating: 0, count: 4), byteOffset: size)
            } catch let error as KilnError where error.code != .internal {
                return "3 reads and 1 write refused"
            }
            throw KilnError(.invalidArgument, "buffer_write past the end of a \(size)-byte buffer succeeded")
        }
    }
}
