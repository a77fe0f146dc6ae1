import Foundation
import Kiln
import KilnReference
import Testing

/// Plugin ABI 1.2: device lists, load-time device selection, device buffers and the hand-off of values
/// between partitions on one device, target names, and the version range (1.0 and 1.1 plugins still load;
/// a plugin newer than the host is refused).
///
/// The sample plugin's two devices are host memory behind their own allocator and count every transfer
/// between host and device memory (device properties `transfers.to_device`, `transfers.to_host`). This
/// suite uses its own build of the sample (its own counters), and reads the counts as differences.
@Suite(.serialized) struct PluginDeviceTests {
    static func sample() throws -> CPluginBackend {
        let path = try PluginBuild.sample("libsample_devices", defines: ["SAMPLE_BACKEND_NAME=\"sample.devices\"", "SAMPLE_PLUGIN_NAME=\"sample-devices\""])
        return try #require(PluginLoader.plugin(path: path).backends.first)
    }

    /// The transfer counters of every device, as (to device, to host, live buffers).
    struct Counts: Equatable, CustomStringConvertible {
        var toDevice: [Int], toHost: [Int], liveBuffers: [Int]
        var description: String { "to device \(toDevice), to host \(toHost), live buffers \(liveBuffers)" }
        static func - (a: Counts, b: Counts) -> Counts {
            Counts(toDevice: zip(a.toDevice, b.toDevice).map { $0 - $1 }, toHost: zip(a.toHost, b.toHost).map { $0 - $1 },
                   liveBuffers: zip(a.liveBuffers, b.liveBuffers).map { $0 - $1 })
        }
    }

    static func counts(_ backend: CPluginBackend) throws -> Counts {
        let devices = try backend.deviceList()
        func numbers(_ key: String) -> [Int] { devices.map { Int($0.properties[key] ?? "") ?? -1 } }
        return Counts(toDevice: numbers("transfers.to_device"), toHost: numbers("transfers.to_host"), liveBuffers: numbers("buffers.live"))
    }

    static let reluGraph = Graph(inputs: [f32("x", [2, 3])], outputs: [f32("y", [2, 3])], nodes: [node("Relu", ["x"], ["y"])])
    static let reluInput = Tensor(shape: [2, 3], [Float](arrayLiteral: -1, 2, -3, 4, -5, 6))

    @Test func aPluginsMinimumGroupSizeMovesSmallerGroupsToTheFallback() throws {
        // ABI 1.5 `min_group_size` 3: Relu → Sigmoid (not claimed) → Relu → Relu gives the sample groups of 1 and 2.
        let path = try PluginBuild.sample("libsample_mingroup", defines: ["SAMPLE_MIN_GROUP_SIZE=3", "SAMPLE_BACKEND_NAME=\"sample.mingroup\""])
        let backend = try #require(PluginLoader.plugin(path: path).backends.first)
        #expect(backend.minimumGroupSize == 3)
        let value = { (name: String) in Value(name: name, type: .tensor(TensorType(.float32, fixed: [4]))) }
        var graph = Graph(inputs: [value("v0")], outputs: [value("v4")],
                          nodes: ["Relu", "Sigmoid", "Relu", "Relu"].enumerated().map { i, op in node(op, ["v\(i)"], ["v\(i + 1)"]) })
        _ = try GraphInference.infer(&graph)
        let plan = try Partitioner(selected: [backend], fallbacks: [ReferenceBackend()], options: PartitionOptions(fallback: .allow)).partition(graph)
        #expect(plan.report.entries.map(\.backend) == Array(repeating: "kiln.reference", count: 4))
        #expect(plan.report.entries[3].reason.contains("group of 2 nodes is below sample.mingroup's minimum group size 3"), "\(plan.report.entries[3].reason)")
        // --min-group-size 1 keeps both groups on the plugin; an older plugin (no field) keeps every group.
        let kept = try Partitioner(selected: [backend], fallbacks: [ReferenceBackend()], options: PartitionOptions(minGroupSize: 1, fallback: .allow)).partition(graph)
        #expect(kept.report.entries.map(\.backend) == ["sample.mingroup", "kiln.reference", "sample.mingroup", "sample.mingroup"])
        #expect(try Self.sample().minimumGroupSize == 1)
    }

    @Test func theSampleReportsItsDevicesTargetsAndBufferSupport() throws {
        let backend = try Self.sample()
        #expect(backend.plugin.abiVersion.major == 1 && backend.plugin.abiVersion.minor == 5)
        let devices = try backend.deviceList()
        #expect(devices.count == 2)
        #expect(devices.map(\.kind) == [.simulator, .simulator])
        #expect(devices.map(\.name) == ["sample device 0 (host memory)", "sample device 1 (host memory)"])
        #expect(devices.allSatisfy { $0.memoryBytes == 256 << 20 })
        #expect(devices.allSatisfy { $0.properties["allocator"] == "sample-arena" && $0.properties["transfers.to_device"] != nil })
        // The Backend requirement answers the same list.
        #expect(backend.devices().map(\.name) == devices.map(\.name))
        #expect(backend.targets == ["sample-ksb1"])
        #expect(backend.supportsDeviceBuffers)
        // A declared target compiles; another is refused by the plugin, naming its targets.
        _ = try backend.compile(Self.reluGraph, options: CompileOptions(target: "sample-ksb1"))
        let error = #expect(throws: KilnError.self) { _ = try backend.compile(Self.reluGraph, options: CompileOptions(target: "npu-nc9")) }
        #expect(error?.message.contains("npu-nc9") == true && error?.message.contains("sample-ksb1") == true)
    }

    @Test func loadTakesADeviceIndexAndTheWorkHappensOnThatDevice() throws {
        let backend = try Self.sample()
        let payload = try backend.compile(Self.reluGraph, options: CompileOptions())
        let before = try Self.counts(backend)
        // Through the generic entry point on `any Backend`.
        let erased: any Backend = backend
        let executable = try erased.load(payload.bytes, graph: Self.reluGraph, device: 1)
        #expect((executable as? CPluginExecutable)?.device == 1)
        #expect((executable as? any DeviceExecutable)?.placement == backend.placement(device: 1))
        let out = try executable.run(["x": .tensor(Self.reluInput)])
        #expect(out.first?.tensor?.elements(as: Float.self) == [0, 2, 0, 4, 0, 6])
        let delta = try Self.counts(backend) - before
        // One input placed on device 1 and one output brought back from it; device 0 untouched.
        #expect(delta.toDevice == [0, 1] && delta.toHost == [0, 1], "\(delta)")

        let error = #expect(throws: KilnError.self) { _ = try erased.load(payload.bytes, graph: Self.reluGraph, device: 2) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("no device 2") == true && error?.message.contains("2 device(s)") == true, "\(error?.message ?? "")")
        #expect(throws: KilnError.self) { _ = try backend.load(payload.bytes, graph: Self.reluGraph, deviceIndex: -1) }
        // prepare(_:device:) compiles and loads onto the device.
        let prepared = try backend.prepare(Self.reluGraph, device: 1)
        #expect((prepared as? CPluginExecutable)?.device == 1)
    }

    @Test func aBackendThatDoesNotSelectDevicesLoadsOnlyOntoDeviceZero() throws {
        let reference: any Backend = ReferenceBackend()
        let executable = try reference.prepare(Self.reluGraph, device: 0)
        #expect(try executable.run(["x": .tensor(Self.reluInput)]).first?.tensor?.elements(as: Float.self) == [0, 2, 0, 4, 0, 6])
        let error = #expect(throws: KilnError.self) { _ = try reference.load([], graph: Self.reluGraph, device: 1) }
        #expect(error?.message.contains("device 1") == true)
    }

    @Test func buffersUploadDownloadAndFeedExecuteWithoutHostCopies() throws {
        let backend = try Self.sample()
        let start = try Self.counts(backend)
        do {
            let buffer = try backend.upload(Self.reluInput, device: 0)
            #expect(buffer.shape == [2, 3] && buffer.dtype == .float32)
            #expect(try Self.counts(backend) - start == Counts(toDevice: [1, 0], toHost: [0, 0], liveBuffers: [1, 0]))
            #expect(try buffer.copyToHost().elements(as: Float.self) == Self.reluInput.elements(as: Float.self))

            let executable = try #require(try backend.prepare(Self.reluGraph, device: 0) as? CPluginExecutable)
            let before = try Self.counts(backend)
            let out = try executable.run(placed: ["x": .device(buffer)], outputsOnDevice: [0])
            guard case .device(let result)? = out.first else { Issue.record("the output is not a device buffer"); return }
            // Neither the input nor the output crossed between host and device.
            #expect(try Self.counts(backend) - before == Counts(toDevice: [0, 0], toHost: [0, 0], liveBuffers: [1, 0]))
            #expect(result.placement == backend.placement(device: 0))
            #expect(try result.copyToHost().elements(as: Float.self) == [0, 2, 0, 4, 0, 6])

            // A buffer of device 0 given to an executable on device 1 is copied through the host.
            let other = try #require(try backend.prepare(Self.reluGraph, device: 1) as? CPluginExecutable)
            let crossing = try Self.counts(backend)
            _ = try other.run(placed: ["x": .device(buffer)], outputsOnDevice: [])
            let delta = try Self.counts(backend) - crossing
            #expect(delta.toHost == [1, 1] && delta.toDevice == [0, 1], "\(delta)")
        }
        // Every buffer went back to its device's allocator.
        #expect(try Self.counts(backend).liveBuffers == start.liveBuffers)
    }

    /// The convolution model with the type of `mm` (where it is split) recorded.
    static func convolutionModel() -> (Model, [String: Tensor]) {
        var (model, inputs) = PluginTests.convolutionModel()
        model.graph.valueTypes["mm"] = .tensor(TensorType(.float32, fixed: [1, 4, 6, 5]))
        return (model, inputs)
    }

    /// The convolution model split by hand into two partitions: Conv → Relu → MatMul, then Gemm → Add → Relu.
    static func twoPartitionPlan(_ model: Model, first: any Backend, second: any Backend) -> PartitionPlan {
        PartitionPlan(partitions: [Partition(backend: first, nodes: [0, 1, 2], inputs: ["x"], outputs: ["mm"]),
                                   Partition(backend: second, nodes: [3, 4, 5], inputs: ["y", "mm"], outputs: ["out"])],
                      report: PartitionReport())
    }

    @Test func consecutivePartitionsOnOneDeviceHandTheValueOverWithoutAHostCopy() throws {
        let backend = try Self.sample()
        let (model, inputs) = Self.convolutionModel()
        let want = try PluginTests.reference(model, inputs)

        let session = try Session(model: model, plan: Self.twoPartitionPlan(model, first: backend, second: backend))
        let before = try Self.counts(backend)
        let got = try session.run(inputs.mapValues { .tensor($0) })
        let delta = try Self.counts(backend) - before
        PluginTests.expectClose(got["out"]?.tensor, want["out"]?.tensor)
        // x placed on the device by the first partition, y by the second; only `out` comes back. Through
        // host memory, `mm` would add one transfer each way (3 and 2).
        #expect(delta.toDevice == [2, 0] && delta.toHost == [1, 0], "\(delta)")
        #expect(delta.liveBuffers == [0, 0], "a device buffer leaked: \(delta)")

        // The same split with the second partition on kiln.reference: `mm` must come back to the host.
        let mixed = try Session(model: model, plan: Self.twoPartitionPlan(model, first: backend, second: ReferenceBackend()))
        let before2 = try Self.counts(backend)
        let got2 = try mixed.run(inputs.mapValues { .tensor($0) })
        let delta2 = try Self.counts(backend) - before2
        PluginTests.expectClose(got2["out"]?.tensor, want["out"]?.tensor)
        #expect(delta2.toDevice == [1, 0] && delta2.toHost == [1, 0], "\(delta2)")
    }

    @Test func aValueTheGraphReturnsComesBackToTheHostEvenBetweenPartitionsOnOneDevice() throws {
        let backend = try Self.sample()
        var (model, inputs) = PluginTests.convolutionModel()
        model.graph.outputs.append(f32("mm", [1, 4, 6, 5]))
        let want = try PluginTests.reference(model, inputs)
        let plan = PartitionPlan(partitions: [Partition(backend: backend, nodes: [0, 1, 2], inputs: ["x"], outputs: ["mm"]),
                                              Partition(backend: backend, nodes: [3, 4, 5], inputs: ["y", "mm"], outputs: ["out"])],
                                 report: PartitionReport())
        let before = try Self.counts(backend)
        let got = try Session(model: model, plan: plan).run(inputs.mapValues { .tensor($0) })
        let delta = try Self.counts(backend) - before
        PluginTests.expectClose(got["mm"]?.tensor, want["mm"]?.tensor)
        PluginTests.expectClose(got["out"]?.tensor, want["out"]?.tensor)
        #expect(delta.toHost == [2, 0] && delta.toDevice == [3, 0], "\(delta)")
    }

    @Test(arguments: [0, 1])
    func aPluginBuiltForAnOlderMinorLoadsAndRuns(minor: Int) throws {
        // The 1.0/1.1 build declares the 1.0 struct sizes and puts poison in the fields 1.2 appended.
        let path = try PluginBuild.sample("libsample_abi1\(minor)", defines: ["SAMPLE_ABI_MINOR=\(minor)", "SAMPLE_BACKEND_NAME=\"sample.old\(minor)\""])
        let plugin = try PluginLoader.plugin(path: path)
        #expect(plugin.abiVersion.major == 1 && plugin.abiVersion.minor == UInt32(minor))
        let backend = try #require(plugin.backends.first)
        #expect(backend.targets.isEmpty)
        #expect(!backend.supportsDeviceBuffers)
        #expect(backend.devices() == [Device.hostCPU])
        let (model, inputs) = Self.convolutionModel()
        let want = try PluginTests.reference(model, inputs)
        let payload = try backend.compile(model.graph, options: CompileOptions())
        let got = try backend.load(payload.bytes, graph: model.graph, device: 0).run(inputs.mapValues { .tensor($0) })
        PluginTests.expectClose(got.first?.tensor, want["out"]?.tensor)
        let error = #expect(throws: KilnError.self) { _ = try backend.load(payload.bytes, graph: model.graph, device: 1) }
        #expect(error?.message.contains("no device 1") == true, "\(error?.message ?? "")")
        // Two partitions on a backend without device buffers pass their value through the host.
        let session = try Session(model: model, plan: Self.twoPartitionPlan(model, first: backend, second: backend))
        PluginTests.expectClose(try session.run(inputs.mapValues { .tensor($0) })["out"]?.tensor, want["out"]?.tensor)
    }

    @Test func aPluginNewerThanTheHostIsRefusedNamingBothVersions() throws {
        // The header claims 1.6 although the host offered at most 1.5: the host refuses it.
        let claims16 = try PluginBuild.sample("libsample_header16", defines: ["SAMPLE_HEADER_ABI_MINOR=6"])
        let error = #expect(throws: KilnError.self) { _ = try PluginLoader.plugin(path: claims16) }
        #expect(error?.code == .versionMismatch)
        #expect(error?.message.contains("1.6") == true && error?.message.contains("1.0 to 1.5") == true && error?.message.contains(claims16) == true,
                "\(error?.message ?? "")")
        // A plugin that needs a 1.6 host refuses itself, and says so naming both ranges.
        let needs16 = try PluginBuild.sample("libsample_needs16", defines: ["SAMPLE_ABI_MINOR=6", "SAMPLE_MIN_HOST_MINOR=6"])
        let error2 = #expect(throws: KilnError.self) { _ = try PluginLoader.plugin(path: needs16) }
        #expect(error2?.code == .versionMismatch)
        #expect(error2?.message.contains("1.6") == true && error2?.message.contains("1.0 to 1.5") == true, "\(error2?.message ?? "")")
    }

    @Test func malformedDeviceAnswersAreCleanErrors() throws {
        let unknownKind = try #require(PluginLoader.plugin(path: PluginBuild.broken(mode: 15)).backends.first)
        let error = #expect(throws: KilnError.self) { _ = try unknownKind.deviceList() }
        #expect(error?.message.contains("unknown kind 42") == true && error?.message.contains("mystery device") == true, "\(error?.message ?? "")")
        #expect(unknownKind.devices().isEmpty)

        let failing = try #require(PluginLoader.plugin(path: PluginBuild.broken(mode: 17)).backends.first)
        let error2 = #expect(throws: KilnError.self) { _ = try failing.deviceList() }
        #expect(error2?.message.contains("devices: the device is unplugged") == true, "\(error2?.message ?? "")")

        let path = try PluginBuild.broken(mode: 16)
        let error3 = #expect(throws: KilnError.self) { _ = try PluginLoader.plugin(path: path) }
        #expect(error3?.message.contains("NULL callbacks: buffer_alloc, buffer_free, buffer_write, buffer_read") == true, "\(error3?.message ?? "")")
        #expect(error3?.message.contains("KILN_PLUGIN_BACKEND_DEVICE_BUFFERS") == true)
    }
}
