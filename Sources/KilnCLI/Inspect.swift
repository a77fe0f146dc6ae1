import ArgumentParser
import Kiln
import KilnTooling

/// `kiln inspect MODEL`: what a model takes and returns, which operators it uses, how big it is,
/// and whether its IR is well formed.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model or an artifact: inputs, outputs, ops, parameters.",
        discussion: """
            Imports the model, prints its signature, operator histogram and parameter count, and verifies its IR.             For a .kiln artifact (recognized by its contents) it first prints the container: header (format             version, flags), producer, source, targets, opt level, partitions with their backends, versions and             compatibility, the partition report (nodes per backend and the nodes not plainly claimed; every node with --partitions), the signature, and each section's kind, codec, sizes and checksum, and who signed it (each Ed25519 signature's key id and whether it matches; kiln verify checks trust).             With --dot FILE (or --svg FILE) it also draws the graph as kiln run would run it: nodes coloured by backend, partitions and fused steps as clusters, types on the edges.             Exits with status 1 when the file cannot be read or its IR is invalid.
            """
    )

    @Argument(help: "The model file (.onnx) or artifact (.kiln).")
    var model: String

    @Flag(help: "Also print the model's IR in textual form.")
    var ir = false

    @Flag(help: "For an artifact, list every node of the partition report (node → backend: reason), not only the summary per backend.")
    var partitions = false

    @Option(help: ArgumentHelp("Write the graph as Graphviz DOT to FILE ('-': standard output, instead of the summary): nodes coloured by the backend of their partition, partitions and kiln.cpu's fused steps as clusters, value types on the edges.", valueName: "file"))
    var dot: String?

    @Option(help: ArgumentHelp("Draw the graph of --dot as SVG into FILE with Graphviz's 'dot' program (which must be on PATH).", valueName: "file"))
    var svg: String?

    @Flag(inversion: .prefixedNo, help: "For --dot/--svg, find kiln.cpu's fused steps by running the model once on seeded random inputs (symbolic dims 1).")
    var fusion = true

    @OptionGroup(title: "Plugins")
    var plugins: PluginOption

    func run() throws {
        try diagnosing {
            try plugins.register()
            if dot == "-" {
                let text = try picture().dot
                print(text, terminator: "")
                if let svg { try GraphPicture.renderSVG(text, to: svg) }
                return
            }
            let m: Model
            if try Kiln.isArtifact(path: model) {
                let artifact = try Artifact(path: model)
                print(ArtifactSummary(artifact, fullReport: partitions).text, terminator: "")
                m = try artifact.model()
                print("model:")
            } else {
                m = try Kiln.importONNX(path: model)
            }
            print(ModelSummary(m).text, terminator: "")
            if ir {
                print("")
                print(m.printed(), terminator: "")
            }
            flushOutput()
            do {
                try Verifier.verify(m.graph)
                print("verify: ok")
            } catch let error as KilnError {
                print("verify: FAILED")
                flushOutput()
                throw KilnError(error.code, "\(model): \(error.message)")
            }
            if dot != nil || svg != nil {
                let text = try picture().dot
                if let dot {
                    try FileSystem.writeAtomically(Array(text.utf8), to: dot)
                    print("graph written to \(dot) (Graphviz DOT)")
                }
                if let svg {
                    try GraphPicture.renderSVG(text, to: svg)
                    print("graph drawn to \(svg)")
                }
            }
        }
    }

    /// The picture of `--dot`/`--svg`: the model prepared as `kiln run` prepares it (an artifact on its
    /// partitions' backends), and, with `fusion`, the steps of one profiled run of kiln.cpu on random inputs.
    func picture() throws -> GraphPicture {
        let recorder = CPUProfile()
        let options = Kiln.LoadOptions(configuration: BackendConfiguration(threads: nil, profiler: recorder))
        let session = try Kiln.load(path: model, options: options)
        var fused: [(kind: String, nodes: [Int])] = []
        if fusion && session.partitions.contains(where: { ($0.backend as? CPUBackend)?.profile === recorder }) {
            do {
                var generator = SplitMix64(seed: 0)
                var feeds: [String: RuntimeValue] = [:]
                for input in session.requiredInputs {
                    feeds[input.name] = .tensor(try RandomInput.make(for: input, using: &generator))
                }
                _ = try session.run(feeds)
                fused = GraphPicture.fusedGroups(from: recorder, graph: session.model.graph)
            } catch let error as KilnError {
                printError("note: fused steps are not drawn: a run on random inputs failed: \(error.message) (--no-fusion skips the run)")
            }
        }
        // The edge labels need every value's type: run the compiler's first pass (shape and type inference) on a
        // copy; it annotates values and leaves the nodes, which the partitions number, as they are.
        var graph = session.model.graph
        if let inference = Compiler.pipeline(optLevel: 1).first {
            var typed = graph
            if (try? inference.run(&typed, context: .init())) != nil, typed.nodes.count == graph.nodes.count {
                graph = typed
            }
        }
        let title = model.split(separator: "/").last.map(String.init) ?? model
        return GraphPicture(graph: graph, partitions: session.partitions.map { (backend: $0.backend.info.name, nodes: $0.nodes) },
                            fused: fused, title: title)
    }
}

/// The facts `kiln inspect` prints about a model.
struct ModelSummary {
    let model: Model

    init(_ model: Model) { self.model = model }

    /// Every graph of the model: the main graph and, depth first, the subgraphs.
    var allGraphs: [Graph] {
        func collect(_ g: Graph) -> [Graph] { [g] + g.nodes.flatMap { $0.subgraphs.flatMap(collect) } }
        return collect(model.graph)
    }

    /// Node counts per operator (including subgraphs), most used first, then by name.
    var histogram: [(op: String, count: Int)] {
        var counts: [String: Int] = [:]
        for node in model.graph.allNodes { counts[node.op.description, default: 0] += 1 }
        return counts.map { (op: $0.key, count: $0.value) }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.op < $1.op }
    }

    /// Initializers of every graph: how many, their total element count and byte size.
    var parameters: (tensors: Int, elements: Int, bytes: Int) {
        var tensors = 0, elements = 0, bytes = 0
        for graph in allGraphs {
            for tensor in graph.initializers.values {
                tensors += 1
                elements += tensor.count
                if let width = tensor.dtype.byteWidth {
                    bytes += tensor.count * width
                } else {
                    bytes += tensor.strings.reduce(0) { $0 + $1.utf8.count }
                }
            }
        }
        return (tensors, elements, bytes)
    }

    /// The report, one fact per line.
    var text: String {
        var lines: [String] = []
        let graph = model.graph
        lines.append("producer: \(model.producer.isEmpty ? "(none)" : model.producer)")
        lines.append("ir_version: \(model.sourceIRVersion)")
        let opsets = model.opsets.sorted { $0.key < $1.key }.map { "\($0.key.isEmpty ? "ai.onnx" : $0.key) \($0.value)" }
        lines.append("opsets: \(opsets.isEmpty ? "(none)" : opsets.joined(separator: ", "))")
        for (key, value) in model.metadata.sorted(by: { $0.key < $1.key }) {
            lines.append("metadata: \(key) = \(value)")
        }

        let required = graph.inputs.filter { graph.initializers[$0.name] == nil }
        let optional = graph.inputs.filter { graph.initializers[$0.name] != nil }
        lines.append("inputs (\(required.count)):")
        for input in required { lines.append("  \(input.name): \(input.type.map { "\($0)" } ?? "?")") }
        if !optional.isEmpty {
            lines.append("inputs with defaults (\(optional.count)):")
            for input in optional { lines.append("  \(input.name): \(input.type.map { "\($0)" } ?? "?")") }
        }
        lines.append("outputs (\(graph.outputs.count)):")
        for output in graph.outputs {
            lines.append("  \(output.name): \((output.type ?? graph.type(of: output.name)).map { "\($0)" } ?? "?")")
        }

        let p = parameters
        lines.append("parameters: \(grouped(p.elements)) in \(p.tensors) initializer\(p.tensors == 1 ? "" : "s"), \(byteText(p.bytes))")

        let histogram = histogram
        let nodes = histogram.reduce(0) { $0 + $1.count }
        let subgraphs = allGraphs.count - 1
        lines.append("ops (\(nodes) node\(nodes == 1 ? "" : "s"), \(histogram.count) kind\(histogram.count == 1 ? "" : "s")\(subgraphs > 0 ? ", including \(subgraphs) subgraph\(subgraphs == 1 ? "" : "s")" : "")):")
        let width = histogram.first.map { String($0.count).count } ?? 1
        for (op, count) in histogram {
            let number = String(count)
            lines.append("  " + String(repeating: " ", count: width - number.count) + number + "  " + op)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `11,689,512`.
    func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(d)
        }
        return out
    }

    /// `1,024 bytes` or `44.6 MB (46,756,048 bytes)`.
    func byteText(_ bytes: Int) -> String {
        let units: [(String, Double)] = [("GB", 1e9), ("MB", 1e6), ("KB", 1e3)]
        for (unit, size) in units where Double(bytes) >= size {
            let value = (Double(bytes) / size * 10).rounded() / 10
            return "\(value) \(unit) (\(grouped(bytes)) bytes)"
        }
        return "\(grouped(bytes)) bytes"
    }
}
