import ArgumentParser
import Kiln
import KilnTooling

/// `kiln plugin-check PATH.so`: the conformance kit a vendor runs before shipping a plugin. It loads the
/// plugin and exercises every callback of every backend with ordinary and edge-case inputs, compares
/// what it runs with `kiln.reference`, and prints a pass/fail table; any failure exits with status 1.
struct PluginCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin-check",
        abstract: "Check that a backend plugin follows kiln_plugin.h.",
        discussion: """
            Loads the plugin (entry symbol, version negotiation, header and backend tables), then for each \
            backend: claim on an empty graph, on probe graphs of common float32 ops, on an unknown op and a \
            string tensor, and on bytes that are not a graph; for every probe op it claims: compile, check of \
            its own and of a foreign compatibility string, load, execute compared with kiln.reference, \
            zero-size tensors, 100 load/unload cycles, a wrong input count, a wrong dtype, and garbage and \
            truncated payloads; then (plugin ABI 1.2) the device list, loading and running on every device, \
            an out-of-range device index, and for a backend with device buffers: upload and download on every \
            device, execute on buffers with outputs left on the device, and out-of-range buffer reads. \
            By default the checks run in a child process: a plugin that crashes (SIGSEGV, abort) or hangs fails \
            the check it was in, and the remaining checks run in a fresh child. Exit status 1 when any check fails.
            """
    )

    @Argument(help: "The plugin (a shared library).")
    var path: String

    @Option(help: "Relative tolerance when comparing results with kiln.reference.")
    var tolerance = 1e-4

    @Flag(inversion: .prefixedNo,
          help: "Run the checks in a child process, so that a crash or hang in the plugin fails one check instead of stopping plugin-check.")
    var isolated = true

    @Option(help: "In isolated mode, the seconds a single check may run before it is failed as hung.")
    var timeout = 120

    /// Child mode (internal): the file descriptor to report each check on, instead of printing a table.
    @Option(name: .customLong("child-report-fd"), help: .hidden)
    var childReportFD: Int32?

    /// Child mode (internal): checks not to run again (they crashed or hung in an earlier child).
    @Option(name: .customLong("skip-check"), help: .hidden)
    var skippedChecks: [String] = []

    /// One row of the table.
    struct Row {
        enum Result: String { case pass, fail, skip }
        var check: String
        var result: Result
        var detail: String
    }

    func run() throws {
        if let fd = childReportFD {
            let report = ChildReport(fd: fd)
            let skipped = Set(skippedChecks)
            runChecks { check, body in
                guard !skipped.contains(check) else { return }
                report.begin(check)
                report.end(Self.evaluate(body))
            }
            report.done()
            return
        }
        print("plugin-check \(path)\(isolated ? "" : " (in process)")")
        let rows: [Row]
        if isolated {
            rows = try IsolatedRun(arguments: childArguments, timeout: timeout).rows()
        } else {
            var collected: [Row] = []
            runChecks { check, body in
                let (result, detail) = Self.evaluate(body)
                collected.append(Row(check: check, result: result, detail: detail))
            }
            rows = collected
        }
        printTable(rows)
        flushOutput()
        if rows.contains(where: { $0.result == .fail }) { throw ExitCode(1) }
    }

    /// The arguments of a child that runs the checks (`--child-report-fd` and `--skip-check` are added).
    var childArguments: [String] {
        ["plugin-check", path, "--tolerance", "\(tolerance)"]
    }

    /// Runs `body`: pass with its detail, skip when it throws `Skip`, else fail with the error.
    static func evaluate(_ body: () throws -> String) -> (Row.Result, String) {
        do {
            return (.pass, try body())
        } catch let skip as Skip {
            return (.skip, skip.reason)
        } catch let error as KilnError {
            return (.fail, error.message)
        } catch {
            return (.fail, "\(error)")
        }
    }

    /// Runs every check in order, each through `record(name, body)`.
    func runChecks(_ record: (String, () throws -> String) -> Void) {
        var loaded: CPlugin?
        record("load: entry symbol, ABI version, header, tables") {
            let plugin = try PluginLoader.plugin(path: path, hostVersion: Kiln.version)
            loaded = plugin
            return "\(plugin.name) \(plugin.version) by \(plugin.vendor.isEmpty ? "?" : plugin.vendor), ABI \(plugin.abiVersion.major).\(plugin.abiVersion.minor), \(plugin.backends.count) backend(s)"
        }
        if let plugin = loaded {
            record("exports: generated kiln.ir code stays private") {
                guard !plugin.exports("kiln__ir__graph__unpack") else {
                    throw KilnError(.invalidArgument, "the plugin exports kiln__ir__graph__unpack: build with -fvisibility=hidden so plugins' copies do not clash")
                }
                return "no kiln__ir__* symbols exported"
            }
            for backend in plugin.backends {
                checkBackend(backend, record: record)
                checkDevices(backend, record: record)
            }
        }
    }

    /// A check that does not apply (e.g. the backend claims none of the probe ops).
    struct Skip: Error { var reason: String }

    func checkBackend(_ backend: CPluginBackend, record: (String, () throws -> String) -> Void) {
        let name = backend.info.name
        record("\(name): info") {
            let info = backend.info
            guard info.name.contains("."), !info.name.hasPrefix("kiln.") else {
                throw KilnError(.invalidArgument, "backend name '\(info.name)' should be 'vendor.target' and not use the kiln. prefix")
            }
            let parts = info.version.split(separator: ".")
            guard parts.count >= 2, parts.allSatisfy({ !$0.isEmpty && $0.first!.isNumber }) else {
                throw KilnError(.invalidArgument, "version '\(info.version)' is not a semantic version")
            }
            return "\(info.name) \(info.version) (\(info.vendor))"
        }
        record("\(name): claim on an empty graph") {
            let answer = try backend.claim(Graph(name: "empty"))
            guard answer.isEmpty else { throw KilnError(.invalidArgument, "answered \(answer.count) nodes for 0") }
            return "0 nodes"
        }
        record("\(name): claim rejects an unknown op and a string tensor") {
            let graph = Graph(name: "unsupported",
                              inputs: [Value(name: "s", type: .tensor(TensorType(.string, fixed: [2]))), Value(name: "x", type: .tensor(TensorType(.float32, fixed: [2])))],
                              outputs: [Value(name: "t"), Value(name: "u")],
                              nodes: [Node(name: "unknown", op: OpID("kiln.plugin_check", "NoSuchOp"), inputs: ["x"], outputs: ["t"]),
                                      Node(name: "strings", op: OpID("kiln.plugin_check", "StringOp"), inputs: ["s"], outputs: ["u"])])
            let answer = try backend.claim(graph)
            guard answer.allSatisfy({ $0 != nil }) else { throw KilnError(.invalidArgument, "claimed an op of domain kiln.plugin_check") }
            return "rejected: \(answer[0]!)"
        }
        record("\(name): claim refuses bytes that are not a graph") {
            let garbage: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x2A, 0x80]
            let answer: [String?]
            do {
                answer = try backend.claim(graphBytes: garbage, nodes: [])
            } catch let error as KilnError where error.code != .internal {
                return "error (\(error.code))"
            }
            throw KilnError(.invalidArgument, "claim accepted malformed graph bytes (answered \(answer.count) nodes)")
        }
        let probes = Self.probes()
        var claimed: [Probe] = []
        record("\(name): claim on probe graphs") {
            var names: [String] = []
            for probe in probes {
                let answer = try backend.claim(probe.graph)
                if answer.allSatisfy({ $0 == nil }) { claimed.append(probe); names.append(probe.name) }
            }
            return names.isEmpty ? "claims none of \(probes.map(\.name).joined(separator: ", "))" : "claims \(names.joined(separator: ", ")) of \(probes.count) probes"
        }
        guard !claimed.isEmpty else {
            record("\(name): compile, load, execute") { throw Skip(reason: "the backend claims no probe op") }
            return
        }
        let reference = Kiln.reference
        for probe in claimed {
            var payload: Payload?
            record("\(name): \(probe.name): compile") {
                let p = try backend.compile(probe.graph, options: CompileOptions())
                payload = p
                return "\(p.bytes.count) bytes, compat '\(p.compat)'"
            }
            guard let payload else { continue }
            record("\(name): \(probe.name): check own and foreign compat") {
                if let problem = backend.check(compat: payload.compat) {
                    throw KilnError(.invalidArgument, "refuses its own compatibility string: \(problem)")
                }
                guard backend.check(compat: "kiln.plugin_check/0-not-a-real-compat") != nil else {
                    throw KilnError(.invalidArgument, "accepts a foreign compatibility string")
                }
                return "own accepted, foreign refused"
            }
            record("\(name): \(probe.name): load and execute vs \(Kiln.reference.info.name)") {
                let got = try backend.load(payload.bytes, graph: probe.graph).run(probe.inputs)
                let want = try reference.prepare(probe.graph).run(probe.inputs)
                return try compare(got, want)
            }
            if let zero = probe.zeroSizeInputs {
                record("\(name): \(probe.name): zero-size tensors") {
                    let got = try backend.load(payload.bytes, graph: probe.graph).run(zero)
                    let want = try reference.prepare(probe.graph).run(zero)
                    return try compare(got, want)
                }
            }
            record("\(name): \(probe.name): 100 load/unload cycles") {
                for _ in 0..<100 { _ = try backend.load(payload.bytes, graph: probe.graph) }
                let executable = try backend.load(payload.bytes, graph: probe.graph)
                for _ in 0..<3 { _ = try executable.run(probe.inputs) }
                return "ok"
            }
            record("\(name): \(probe.name): execute refuses a wrong input count") {
                guard let executable = try backend.load(payload.bytes, graph: probe.graph) as? CPluginExecutable else { throw Skip(reason: "not a plugin executable") }
                do {
                    _ = try executable.run(tensors: [], outputCount: probe.graph.outputs.count)
                } catch let error as KilnError where error.code != .internal {
                    return "error: \(error.code)"
                }
                throw KilnError(.invalidArgument, "execute ran with no inputs (expected \(probe.graph.inputs.count))")
            }
            record("\(name): \(probe.name): execute refuses a wrong dtype") {
                guard let executable = try backend.load(payload.bytes, graph: probe.graph) as? CPluginExecutable else { throw Skip(reason: "not a plugin executable") }
                let wrong = probe.graph.inputs.map { input -> Tensor in
                    let shape = probe.inputs[input.name]?.tensor?.shape ?? []
                    return Tensor(zeros: .int32, shape: shape)
                }
                do {
                    _ = try executable.run(tensors: wrong, outputCount: probe.graph.outputs.count)
                } catch let error as KilnError where error.code != .internal {
                    return "error: \(error.code)"
                }
                throw KilnError(.invalidArgument, "execute ran float32 code on int32 inputs")
            }
            record("\(name): \(probe.name): garbage and truncated payloads") {
                guard !payload.bytes.isEmpty else { throw Skip(reason: "the payload is empty (a graph-only backend)") }
                var refused = 0
                var candidates: [[UInt8]] = [[UInt8](repeating: 0xA5, count: 64), [], Array(payload.bytes.prefix(payload.bytes.count / 2)),
                                             Array(payload.bytes.dropLast())]
                var flipped = payload.bytes
                flipped[0] ^= 0xFF
                candidates.append(flipped)
                for candidate in candidates where candidate != payload.bytes {
                    do { _ = try backend.load(candidate, graph: probe.graph) } catch let error as KilnError where error.code != .internal { refused += 1; continue }
                    throw KilnError(.invalidArgument, "load accepted a \(candidate.count)-byte corrupt payload")
                }
                return "\(refused) corrupt payloads refused"
            }
        }
    }

    /// Compares results with kiln.reference within `tolerance`.
    func compare(_ got: [RuntimeValue], _ want: [RuntimeValue]) throws -> String {
        guard got.count == want.count else { throw KilnError(.invalidArgument, "\(got.count) outputs, expected \(want.count)") }
        var worst = 0.0
        for (index, (g, w)) in zip(got, want).enumerated() {
            guard let a = g.tensor, let b = w.tensor else { throw KilnError(.invalidArgument, "output \(index) is not a tensor") }
            guard a.dtype == b.dtype, a.shape == b.shape else {
                throw KilnError(.invalidArgument, "output \(index) is \(a.dtype)\(a.shape), expected \(b.dtype)\(b.shape)")
            }
            for (x, y) in zip(a.asDoubles(), b.asDoubles()) {
                let difference = abs(x - y) / max(1, abs(y))
                if !(difference <= tolerance) {
                    throw KilnError(.invalidArgument, "output \(index) differs from \(Kiln.reference.info.name): \(x) vs \(y)")
                }
                worst = max(worst, difference)
            }
        }
        return "matches (largest relative difference \(worst))"
    }

    /// A one-op graph to probe a backend with, and inputs for it.
    struct Probe {
        var name: String
        var graph: Graph
        var inputs: [String: RuntimeValue]
        var zeroSizeInputs: [String: RuntimeValue]?
    }

    static func probes() -> [Probe] {
        var seed: UInt64 = 12345
        func tensor(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape, (0..<shape.reduce(1, *)).map { _ -> Float in
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                return Float(seed >> 40) / Float(1 << 24) * 2 - 1
            })
        }
        func value(_ name: String, _ dims: [Dim]) -> Value { Value(name: name, type: .tensor(TensorType(.float32, dims))) }
        func op(_ name: String, _ inputs: [String], _ attributes: [String: Attribute] = [:]) -> Node {
            Node(name: name.lowercased(), op: OpID("", name), inputs: inputs, outputs: ["y"], attributes: attributes)
        }
        let n = Dim.symbol("n")
        return [
            Probe(name: "Relu", graph: Graph(name: "relu", inputs: [value("x", [n, .fixed(3), .fixed(4)])], outputs: [Value(name: "y")], nodes: [op("Relu", ["x"])]),
                  inputs: ["x": .tensor(tensor([2, 3, 4]))], zeroSizeInputs: ["x": .tensor(tensor([0, 3, 4]))]),
            Probe(name: "Add", graph: Graph(name: "add", inputs: [value("a", [n, .fixed(3)]), value("b", [.fixed(3)])], outputs: [Value(name: "y")], nodes: [op("Add", ["a", "b"])]),
                  inputs: ["a": .tensor(tensor([2, 3])), "b": .tensor(tensor([3]))], zeroSizeInputs: ["a": .tensor(tensor([0, 3])), "b": .tensor(tensor([3]))]),
            Probe(name: "MatMul", graph: Graph(name: "matmul", inputs: [value("a", [n, .fixed(5)]), value("b", [.fixed(5), .fixed(3)])], outputs: [Value(name: "y")], nodes: [op("MatMul", ["a", "b"])]),
                  inputs: ["a": .tensor(tensor([4, 5])), "b": .tensor(tensor([5, 3]))], zeroSizeInputs: ["a": .tensor(tensor([0, 5])), "b": .tensor(tensor([5, 3]))]),
            Probe(name: "Gemm", graph: Graph(name: "gemm", inputs: [value("a", [.fixed(4), .fixed(5)])], outputs: [Value(name: "y")],
                                             initializers: ["w": tensor([3, 5]), "c": tensor([3])],
                                             nodes: [op("Gemm", ["a", "w", "c"], ["transB": .int(1), "alpha": .float(0.5), "beta": .float(2)])]),
                  inputs: ["a": .tensor(tensor([4, 5]))], zeroSizeInputs: nil),
            Probe(name: "Conv", graph: Graph(name: "conv", inputs: [value("x", [.fixed(1), .fixed(2), .fixed(5), .fixed(5)])], outputs: [Value(name: "y")],
                                             initializers: ["w": tensor([3, 2, 3, 3]), "b": tensor([3])],
                                             nodes: [op("Conv", ["x", "w", "b"], ["pads": .ints([1, 0, 1, 0]), "strides": .ints([1, 2]), "kernel_shape": .ints([3, 3])])]),
                  inputs: ["x": .tensor(tensor([1, 2, 5, 5]))], zeroSizeInputs: nil),
            Probe(name: "Sigmoid", graph: Graph(name: "sigmoid", inputs: [value("x", [n, .fixed(3)])], outputs: [Value(name: "y")], nodes: [op("Sigmoid", ["x"])]),
                  inputs: ["x": .tensor(tensor([2, 3]))], zeroSizeInputs: ["x": .tensor(tensor([0, 3]))]),
            Probe(name: "Softmax", graph: Graph(name: "softmax", inputs: [value("x", [n, .fixed(3)])], outputs: [Value(name: "y")], nodes: [op("Softmax", ["x"])]),
                  inputs: ["x": .tensor(tensor([2, 3]))], zeroSizeInputs: nil),
        ]
    }

    func printTable(_ rows: [Row]) {
        let width = min(max(rows.map(\.check.count).max() ?? 10, 10), 64)
        print("  " + "CHECK".padding(width) + "  RESULT  DETAIL")
        for row in rows {
            print("  " + row.check.padding(width) + "  " + row.result.rawValue.uppercased().padding(6) + "  " + row.detail)
        }
        let failed = rows.filter { $0.result == .fail }.count, skipped = rows.filter { $0.result == .skip }.count
        print("\(rows.count) checks: \(rows.count - failed - skipped) passed, \(failed) failed, \(skipped) skipped")
    }
}

extension String {
    /// Padded with spaces to at least `width` characters.
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
