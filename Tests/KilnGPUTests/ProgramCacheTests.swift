// kiln.gpu's on-disk program cache (a second load takes its programs from disk, counted, not timed; corrupt
// and foreign entries are rebuilt, never trusted) and fp16 buffers (within half precision of kiln.reference).
#if canImport(Glibc)
import Glibc
#endif
import Kiln
@testable import KilnGPU
import KilnReference
import KilnTestSupport
import Testing

/// A fresh directory name under /tmp for one test's cache.
private func scratchDirectory(_ tag: String) -> String {
    "/tmp/kiln-gpu-cache-test-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max))"
}

/// The `.clbin` entries in `directory`.
private func entries(_ directory: String) -> [String] {
    guard let dir = opendir(directory) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name.hasSuffix(".clbin") { names.append(directory + "/" + name) }
    }
    return names.sorted()
}

private func readBytes(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, 65536, f) }
        if n == 0 { break }
        bytes += chunk.prefix(n)
    }
    return bytes
}

private func writeBytes(_ path: String, _ bytes: [UInt8]) {
    guard let f = fopen(path, "wb") else { return }
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
}

/// x(3×37) · W(37×29) + b → Relu → Softmax: three programs (gemm, binary with the Relu fused, softmax),
/// with sizes no other test uses, so that no other test builds the same programs.
private func cacheModel(rows: Int = 3) throws -> (Model, [String: Tensor]) {
    var b = GraphBuilder()
    let x = b.input("x", [rows, 37])
    let w = b.constant(seeded(41, [37, 29]))
    let bias = b.constant(seeded(42, [29]))
    let y = b.node("Softmax", [b.node("Relu", [b.node("Add", [b.node("MatMul", [x, w]), bias])])])
    b.output(y)
    var model = b.model
    _ = try GraphInference.infer(&model.graph)
    return (model, ["x": seeded(43, [rows, 37])])
}

/// Runs `executable` and expects kiln.reference's answer on `model` within `tolerance` (relative to the
/// largest reference magnitude, at least 1).
private func expectMatches(_ executable: any Executable, _ model: Model, _ inputs: [String: Tensor], tolerance: Double = 1e-4,
                           _ context: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let feeds = inputs.mapValues { RuntimeValue.tensor($0) }
    let want = try Session(model: model, backend: ReferenceBackend()).runOrdered(feeds).map { $0.tensor!.asDoubles() }
    let got = try executable.run(feeds).map { $0.tensor!.asDoubles() }
    #expect(got.count == want.count, "\(context): output count", sourceLocation: sourceLocation)
    for (g, w) in zip(got, want) {
        var error = 0.0, scale = 1.0
        for i in 0..<min(g.count, w.count) { error = max(error, abs(g[i] - w[i])); scale = max(scale, abs(w[i])) }
        #expect(g.count == w.count && error <= tolerance * scale, "\(context): max error \(error) (scale \(scale))", sourceLocation: sourceLocation)
    }
}

@Suite("kiln.gpu program cache", .serialized) struct GPUProgramCacheTests {
    @Test func theSecondLoadTakesEveryProgramFromTheDiskCache() throws {
        let directory = scratchDirectory("hit")
        let (model, inputs) = try cacheModel()
        let backend = GPUBackend(programCacheDirectory: directory)
        backend.forgetBuiltPrograms()
        let first = try #require(try backend.prepare(model.graph) as? GPUExecutable)
        #expect(first.counters.programsBuilt == 3 && first.counters.programCacheMisses == 3 && first.counters.programCacheHits == 0,
                "\(first.counters)")
        #expect(entries(directory).count == 3)
        try expectMatches(first, model, inputs, "built from source")
        // Within the process the programs are reused without touching the disk.
        let again = try #require(try backend.prepare(model.graph) as? GPUExecutable)
        #expect(again.counters.programsReused == 3 && again.counters.programCacheHits == 0 && again.counters.programsBuilt == 0)
        // A new process (here: the process's programs forgotten) loads them from the cache.
        backend.forgetBuiltPrograms()
        let second = try #require(try backend.prepare(model.graph) as? GPUExecutable)
        #expect(second.counters.programCacheHits == 3 && second.counters.programsBuilt == 0 && second.counters.programCacheMisses == 0,
                "\(second.counters)")
        try expectMatches(second, model, inputs, "loaded from the cache")
    }

    @Test func corruptAndForeignEntriesAreRebuiltAndStillGiveTheRightAnswer() throws {
        let directory = scratchDirectory("corrupt")
        let (model, inputs) = try cacheModel(rows: 5)
        let backend = GPUBackend(programCacheDirectory: directory)
        backend.forgetBuiltPrograms()
        _ = try backend.prepare(model.graph)
        let files = entries(directory)
        #expect(files.count == 3)
        // One entry with a flipped byte in its binary, one cut short; the third is left intact.
        var flipped = readBytes(files[0])
        flipped[flipped.count - 40] ^= 0x5A
        writeBytes(files[0], flipped)
        let whole = readBytes(files[1])
        writeBytes(files[1], Array(whole.prefix(whole.count / 2)))
        backend.forgetBuiltPrograms()
        let rebuilt = try #require(try backend.prepare(model.graph) as? GPUExecutable)
        #expect(rebuilt.counters.programCacheHits == 1 && rebuilt.counters.programCacheRejected == 2 && rebuilt.counters.programsBuilt == 2,
                "\(rebuilt.counters)")
        try expectMatches(rebuilt, model, inputs, "after corrupt entries")
        // The rebuilt programs replaced the bad entries.
        backend.forgetBuiltPrograms()
        let healed = try #require(try backend.prepare(model.graph) as? GPUExecutable)
        #expect(healed.counters.programCacheHits == 3, "\(healed.counters)")
    }

    @Test func anEntryWhoseBinaryTheDriverRefusesIsRebuiltFromSource() throws {
        let directory = scratchDirectory("garbage")
        let (model, inputs) = try cacheModel(rows: 6)
        let backend = GPUBackend(programCacheDirectory: directory)
        backend.forgetBuiltPrograms()
        _ = try backend.prepare(model.graph)
        // Re-encode every entry with the same key and a valid checksum but a binary of noise.
        let device = try #require(OpenCLPlatforms.at(GPUBackend.defaultLibraryPath).devices.first)
        let cache = ProgramCache(directory: directory)
        var replaced = 0
        for file in entries(directory) {
            let bytes = readBytes(file)
            for (source, options) in try keys(model, device: device) where cache.path(identity: device.identity, source: source, options: options) == file {
                #expect(ProgramCache.decode(bytes, identity: device.identity, source: source, options: options) != nil)
                var rng = SplitMix64(seed: 7)
                let noise = (0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                writeBytes(file, ProgramCache.encode(identity: device.identity, source: source, options: options, binary: noise))
                replaced += 1
            }
        }
        #expect(replaced == 3)
        backend.forgetBuiltPrograms()
        let rebuilt = try #require(try backend.prepare(model.graph) as? GPUExecutable)
        #expect(rebuilt.counters.programCacheHits == 0 && rebuilt.counters.programCacheRejected == 3 && rebuilt.counters.programsBuilt == 3,
                "\(rebuilt.counters)")
        try expectMatches(rebuilt, model, inputs, "after entries the driver refuses")
    }

    /// The (source, options) pairs kiln.gpu builds for `model` in fp32, as GPUExecutable makes them.
    private func keys(_ model: Model, device: CLDevice) throws -> [(String, String)] {
        let lowering = Lowering(graph: model.graph, tile: GPUBackend.tile(for: device))
        let plans = Lowering.fuseActivations(try model.graph.nodes.map { try lowering.lower($0) }, graph: model.graph).compactMap { $0 }
        return plans.compactMap { plan in
            guard case .launch(_, let source, let options, _, _, _) = plan else { return nil }
            return (Kernels.storage + source, options + " -cl-std=CL1.2")
        }
    }

    @Test func noCacheDirectoryMeansNoDiskTraffic() throws {
        let (model, inputs) = try cacheModel(rows: 7)
        let backend = GPUBackend(programCacheDirectory: nil)
        backend.forgetBuiltPrograms()
        let executable = try #require(try backend.prepare(model.graph) as? GPUExecutable)
        #expect(executable.counters.programsBuilt == 3 && executable.counters.programCacheMisses == 0 && executable.counters.programCacheHits == 0)
        try expectMatches(executable, model, inputs, "no cache")
    }

    @Test func theCacheFormatRejectsEveryTruncationAndAnotherKey() throws {
        let binary: [UInt8] = Array("a binary".utf8)
        let bytes = ProgramCache.encode(identity: "device=d\nvendor=v\ndriver=1\nplatform=p", source: "kernel", options: "-DX=1", binary: binary)
        #expect(ProgramCache.decode(bytes, identity: "device=d\nvendor=v\ndriver=1\nplatform=p", source: "kernel", options: "-DX=1") == binary)
        for n in 0..<bytes.count {
            #expect(ProgramCache.decode(Array(bytes.prefix(n)), identity: "device=d\nvendor=v\ndriver=1\nplatform=p", source: "kernel", options: "-DX=1") == nil)
        }
        #expect(ProgramCache.decode(bytes, identity: "device=d\nvendor=v\ndriver=2\nplatform=p", source: "kernel", options: "-DX=1") == nil)
        #expect(ProgramCache.decode(bytes, identity: "device=d\nvendor=v\ndriver=1\nplatform=p", source: "kernel", options: "-DX=2") == nil)
        #expect(ProgramCache.decode(bytes, identity: "device=d\nvendor=v\ndriver=1\nplatform=p", source: "kernel ", options: "-DX=1") == nil)
    }

    @Test func theOptionsConfigureTheCacheAndPrecision() throws {
        let registry = Kiln.makeRegistry()
        let off = try registry.configured(BackendConfiguration(options: ["program_cache": "off", "precision": "fp16"]))
        let gpu = try #require(off.backend(named: "kiln.gpu") as? GPUBackend)
        #expect(gpu.programCacheDirectory == nil && gpu.precision == .fp16)
        let there = try registry.configured(BackendConfiguration(options: ["program_cache": "/tmp/somewhere"]))
        #expect((there.backend(named: "kiln.gpu") as? GPUBackend)?.programCacheDirectory == "/tmp/somewhere")
        #expect(throws: KilnError.self) { _ = try registry.configured(BackendConfiguration(options: ["precision": "fp8"])) }
    }
}

@Suite("kiln.gpu fp16") struct GPUHalfPrecisionTests {
    /// A small CNN and head: Conv → Relu → MaxPool → GlobalAveragePool → Flatten → Gemm → Softmax.
    private func cnn() throws -> (Model, [String: Tensor]) {
        var b = GraphBuilder()
        let x = b.input("image", [2, 3, 12, 12])
        let c = b.node("Conv", [x, b.constant(seeded(51, [8, 3, 3, 3], -0.5, 0.5)), b.constant(seeded(52, [8]))], ["pads": .ints([1, 1, 1, 1])])
        let p = b.node("MaxPool", [b.node("Relu", [c])], ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])])
        let g = b.node("Flatten", [b.node("GlobalAveragePool", [p])])
        let y = b.node("Softmax", [b.node("Gemm", [g, b.constant(seeded(53, [5, 8])), b.constant(seeded(54, [5]))], ["transB": .int(1)])])
        b.output(y, p)
        var model = b.model
        _ = try GraphInference.infer(&model.graph)
        return (model, ["image": seeded(55, [2, 3, 12, 12])])
    }

    @Test func halfBuffersAgreeWithTheReferenceWithinHalfPrecisionAndHalveTheTraffic() throws {
        let (model, inputs) = try cnn()
        let half = try #require(try GPUBackend(precision: .fp16).prepare(model.graph) as? GPUExecutable)
        let single = try #require(try GPUBackend().prepare(model.graph) as? GPUExecutable)
        #expect(half.precision == .fp16)
        // Half has an 11-bit significand: inputs, weights and every intermediate are rounded to it.
        try expectMatches(half, model, inputs, tolerance: 1e-2, "fp16")
        try expectMatches(single, model, inputs, "fp32")
        #expect(half.counters.bytesToDevicePerRun * 2 == single.counters.bytesToDevicePerRun)
        #expect(half.counters.bytesToHostPerRun * 2 == single.counters.bytesToHostPerRun)
        #expect(half.counters.weightBytes * 2 == single.counters.weightBytes)
        #expect(half.counters.bytesToDevice == half.counters.bytesToDevicePerRun && half.counters.runs == 1)
        // fp16 is not fp32: the answers differ (rounded), so the half path really ran.
        let feeds = inputs.mapValues { RuntimeValue.tensor($0) }
        #expect(try half.run(feeds)[1].tensor!.asDoubles() != single.run(feeds)[1].tensor!.asDoubles())
    }

    @Test func aPayloadCompiledForFP16LoadsAsFP16() throws {
        let (model, inputs) = try cnn()
        let payload = try GPUBackend(precision: .fp16).compile(model.graph, options: CompileOptions(target: "opencl"))
        #expect(String(decoding: payload.bytes, as: UTF8.self).contains("precision=fp16"))
        let loaded = try #require(try GPUBackend().load(payload.bytes, graph: model.graph) as? GPUExecutable)
        #expect(loaded.precision == .fp16)
        try expectMatches(loaded, model, inputs, tolerance: 1e-2, "fp16 payload")
        let plain = try GPUBackend().compile(model.graph, options: CompileOptions(target: "opencl"))
        #expect(try (GPUBackend().load(plain.bytes, graph: model.graph) as? GPUExecutable)?.precision == .fp32)
    }

    @Test func everyDeviceReportsWhetherItHasHalfArithmetic() {
        #expect(GPUBackend().devices().allSatisfy { ["yes", "no"].contains($0.properties["fp16"] ?? "") })
    }
}
