import Kiln
import KilnTooling

#if canImport(Glibc)
import Glibc
#endif

/// The graph of `kiln inspect --dot/--svg` as Graphviz DOT: one box per node, filled with the colour of the
/// backend its partition runs on; each partition a dashed cluster; the nodes kiln.cpu fuses into one step a
/// grey cluster inside it, labelled with the step's kind; each edge labelled with the type of its value.
struct GraphPicture {
    /// The graph drawn (for a model: after the passes, as the partitions number its nodes).
    let graph: Graph
    /// The partitions in execution order: backend name and node indices.
    let partitions: [(backend: String, nodes: [Int])]
    /// Groups of two or more node indices run as one step, with the step's kind (`Conv+Relu`).
    let fused: [(kind: String, nodes: [Int])]
    /// The title (the model's file name).
    let title: String

    /// Fill colours for backends, in order of first appearance.
    static let palette = ["#8ecae6", "#ffb703", "#b5e48c", "#f4a3c1", "#cdb4db", "#f9c74f", "#90be6d", "#f28482"]

    /// Each backend's colour, by order of first appearance in the partitions.
    var colours: [(backend: String, colour: String)] {
        var seen: [String] = []
        for p in partitions where !seen.contains(p.backend) { seen.append(p.backend) }
        return seen.enumerated().map { (backend: $1, colour: Self.palette[$0 % Self.palette.count]) }
    }

    /// The DOT text.
    var dot: String {
        let colourOf = Dictionary(colours.map { ($0.backend, $0.colour) }, uniquingKeysWith: { a, _ in a })
        var lines = ["digraph kiln {",
                     "  graph [rankdir=TB, fontname=\"Helvetica\", label=\(Self.quoted(title)), labelloc=t];",
                     "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11];",
                     "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\"];"]
        var backendOfNode: [Int: String] = [:]
        for p in partitions { for n in p.nodes { backendOfNode[n] = p.backend } }
        var fusedOfNode: [Int: Int] = [:]
        for (i, group) in fused.enumerated() { for n in group.nodes { fusedOfNode[n] = i } }

        func nodeLine(_ index: Int, indent: String) -> String {
            let node = graph.nodes[index]
            let name = node.name.isEmpty ? "#\(index)" : node.name
            let backend = backendOfNode[index] ?? "(none)"
            let colour = colourOf[backend] ?? "#dddddd"
            return "\(indent)n\(index) [label=\(Self.quoted("\(name)\n\(node.op.description)")), fillcolor=\"\(colour)\", tooltip=\(Self.quoted(backend))];"
        }

        var drawn = Set<Int>()
        for (p, partition) in partitions.enumerated() {
            let colour = colourOf[partition.backend] ?? "#dddddd"
            lines.append("  subgraph cluster_p\(p) {")
            lines.append("    label=\(Self.quoted("partition \(p): \(partition.backend) (\(partition.nodes.count) node\(partition.nodes.count == 1 ? "" : "s"))"));")
            lines.append("    style=dashed; color=\"\(colour)\"; penwidth=2;")
            let members = Set(partition.nodes)
            for (f, group) in fused.enumerated() where group.nodes.allSatisfy({ members.contains($0) }) {
                lines.append("    subgraph cluster_f\(f) {")
                lines.append("      label=\(Self.quoted("fused: \(group.kind)")); style=\"rounded,filled\"; fillcolor=\"#f2f2f2\"; color=\"#999999\"; penwidth=1;")
                for n in group.nodes.sorted() where !drawn.contains(n) {
                    lines.append(nodeLine(n, indent: "      "))
                    drawn.insert(n)
                }
                lines.append("    }")
            }
            for n in partition.nodes.sorted() where !drawn.contains(n) {
                lines.append(nodeLine(n, indent: "    "))
                drawn.insert(n)
            }
            lines.append("  }")
        }
        for n in graph.nodes.indices where !drawn.contains(n) { lines.append(nodeLine(n, indent: "  ")) }

        // Values: produced by a node or a graph input; weights (initializers) are not drawn.
        var producer: [String: String] = [:]
        for (k, input) in graph.inputs.enumerated() where graph.initializers[input.name] == nil {
            lines.append("  i\(k) [label=\(Self.quoted(input.name)), shape=ellipse, style=filled, fillcolor=\"#ffffff\"];")
            producer[input.name] = "i\(k)"
        }
        for (i, node) in graph.nodes.enumerated() {
            for output in node.outputs where !output.isEmpty { producer[output] = "n\(i)" }
        }
        for (i, node) in graph.nodes.enumerated() {
            var seen = Set<String>()
            for input in node.inputs where !input.isEmpty && seen.insert(input).inserted {
                guard let from = producer[input] else { continue }
                lines.append("  \(from) -> n\(i) [label=\(Self.quoted(typeText(input)))];")
            }
        }
        for (k, output) in graph.outputs.enumerated() {
            lines.append("  o\(k) [label=\(Self.quoted(output.name)), shape=ellipse, style=filled, fillcolor=\"#ffffff\"];")
            if let from = producer[output.name] {
                lines.append("  \(from) -> o\(k) [label=\(Self.quoted(typeText(output.name)))];")
            }
        }
        // The legend: one swatch per backend.
        lines.append("  subgraph cluster_legend {")
        lines.append("    label=\"backends\"; style=solid; color=\"#bbbbbb\";")
        for (k, entry) in colours.enumerated() {
            lines.append("    legend\(k) [label=\(Self.quoted(entry.backend)), shape=box, style=filled, fillcolor=\"\(entry.colour)\"];")
        }
        lines.append("  }")
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The type of value `name` as Kiln prints types (`f32[1,64,56,56]`), or "" when unknown.
    func typeText(_ name: String) -> String {
        graph.type(of: name).map { "\($0)" } ?? ""
    }

    /// A DOT string literal.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for c in text {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out + "\""
    }

    /// The fused groups that `profile` recorded: steps whose label names two or more nodes of `graph`
    /// (kiln.cpu labels a step with its nodes' names joined by `+`). Names that are not unique are skipped.
    static func fusedGroups(from profile: CPUProfile, graph: Graph) -> [(kind: String, nodes: [Int])] {
        var index: [String: Int] = [:]
        var duplicate = Set<String>()
        for (i, node) in graph.nodes.enumerated() where !node.name.isEmpty {
            if index[node.name] != nil { duplicate.insert(node.name) }
            index[node.name] = i
        }
        var groups: [(kind: String, nodes: [Int])] = []
        var used = Set<Int>()
        // Helper steps (a layout Reorder) carry the label of the operation they serve: for each label keep the
        // step of the operation itself, a fused kind (`Conv+Relu`) first, then the one that took longest.
        var chosen: [String: CPUProfile.Entry] = [:]
        var order: [String] = []
        for step in profile.steps {
            guard let current = chosen[step.label] else {
                chosen[step.label] = step
                order.append(step.label)
                continue
            }
            let fusedKind = { (e: CPUProfile.Entry) in e.kind.contains("+") }
            if (fusedKind(step) && !fusedKind(current)) || (fusedKind(step) == fusedKind(current) && step.nanoseconds > current.nanoseconds) {
                chosen[step.label] = step
            }
        }
        for step in order.compactMap({ chosen[$0] }) {
            let names = step.label.split(separator: "+").map(String.init)
            let nodes = names.compactMap { duplicate.contains($0) ? nil : index[$0] }
            guard nodes.count >= 2, nodes.count == names.count, nodes.allSatisfy({ !used.contains($0) }) else { continue }
            used.formUnion(nodes)
            groups.append((kind: step.kind, nodes: nodes))
        }
        return groups
    }

    /// Renders `dot` to an SVG file with Graphviz's `dot` (found on PATH).
    static func renderSVG(_ dot: String, to path: String) throws {
        let source = path + ".kiln-tmp.dot"
        try FileSystem.writeAtomically(Array(dot.utf8), to: source)
        defer { unlink(source) }
        let argv = ["dot", "-Tsvg", source, "-o", path]
        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let status = posix_spawnp(&pid, "dot", nil, nil, &cArguments, environ)
        if status == ENOENT {
            throw KilnError(.unsupported, "--svg needs Graphviz's 'dot' program on PATH, which was not found (Debian: apt-get install graphviz); --dot FILE writes the graph without it")
        }
        guard status == 0 else {
            throw KilnError(.io, "--svg: cannot start Graphviz's 'dot': \(String(cString: strerror(status)))")
        }
        var exit: Int32 = 0
        while waitpid(pid, &exit, 0) < 0 && errno == EINTR {}
        let code = (exit >> 8) & 0xff
        guard exit & 0x7f == 0, code == 0 else {
            throw KilnError(.io, "--svg: Graphviz's 'dot' failed (status \(code)) writing \(path)")
        }
    }
}

/// The self-contained HTML page of `kiln run --profile --html FILE`: the run's steps on a timeline and the
/// time of each operation kind as bars, drawn as inline SVG by an inline script from the profile's data
/// (no network resources). The script sets `data-rendered="ok"` on `<body>` when it has drawn both (or
/// `error: …` when it failed), which the tests check in a headless browser.
enum ProfileHTML {
    /// The page for `profile` of `runs` runs of `model` (the profile counts one run per kiln.cpu partition, so
    /// the number of model runs is the caller's to say); the timeline shows every step recorded.
    static func page(_ profile: CPUProfile, model: String, runs: Int = 1) -> String {
        let runs = max(runs, 1)
        let kinds = profile.byKind.map { k in
            "{\"kind\":\(JSONText.string(k.kind)),\"calls\":\(k.calls / runs),\"ms\":\(Double(k.nanoseconds) / Double(runs) / 1e6)}"
        }
        let data = "{\"model\":\(JSONText.string(model)),\"runs\":\(runs),\"arenaBytes\":\(profile.arena.bytes),"
            + "\"kinds\":[\(kinds.joined(separator: ","))],\"trace\":\(profile.chromeTrace())}"
        // `</` cannot appear inside a script element.
        let embedded = data.replacing("</", with: "<\\/")
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Kiln profile: \(html(model))</title>
            <style>
            body { font: 14px/1.4 -apple-system, Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
            h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
            svg text { font: 11px Helvetica, Arial, sans-serif; }
            .step:hover, .bar:hover { opacity: 0.75; }
            #error { color: #b00020; white-space: pre-wrap; }
            </style></head>
            <body data-rendered="pending">
            <h1>Kiln profile: \(html(model))</h1>
            <p id="summary"></p>
            <h2>Timeline of the run's steps</h2>
            <div id="timeline"></div>
            <h2>Time per operation kind (per run)</h2>
            <div id="kinds"></div>
            <p id="error"></p>
            <script id="profile-data" type="application/json">\(embedded)</script>
            <script>
            (function () {
              "use strict";
              var NS = "http://www.w3.org/2000/svg";
              var palette = ["#219ebc", "#fb8500", "#8ecae6", "#ffb703", "#90be6d", "#f28482", "#cdb4db", "#577590"];
              function el(name, attrs, parent) {
                var e = document.createElementNS(NS, name);
                for (var k in attrs) { e.setAttribute(k, attrs[k]); }
                if (parent) { parent.appendChild(e); }
                return e;
              }
              function text(parent, x, y, s, anchor) {
                var t = el("text", { x: x, y: y, "text-anchor": anchor || "start" }, parent);
                t.textContent = s;
                return t;
              }
              try {
                var data = JSON.parse(document.getElementById("profile-data").textContent);
                var steps = data.trace.traceEvents.filter(function (e) { return e.cat === "step"; });
                var colour = {};
                data.kinds.forEach(function (k, i) { colour[k.kind] = palette[i % palette.length]; });
                var total = data.kinds.reduce(function (s, k) { return s + k.ms; }, 0);
                document.getElementById("summary").textContent = data.runs + " run(s); " + total.toFixed(3) +
                  " ms per run in " + steps.length + " step(s); arena " + Math.round(data.arenaBytes / 1024) + " KiB";

                // Timeline: every step recorded (kiln run records one run of the model), in time order.
                var shown = steps.slice().sort(function (a, b) { return a.ts - b.ts; });
                var t0 = shown.length ? Math.min.apply(null, shown.map(function (e) { return e.ts; })) : 0;
                var t1 = shown.length ? Math.max.apply(null, shown.map(function (e) { return e.ts + e.dur; })) : 1;
                var width = 900, rowH = 18, left = 10;
                var scale = (width - 2 * left) / Math.max(t1 - t0, 1e-3);
                var timeline = el("svg", { id: "timeline-svg", width: width, height: shown.length * rowH + 30 }, document.getElementById("timeline"));
                shown.forEach(function (e, i) {
                  var x = left + (e.ts - t0) * scale, w = Math.max(e.dur * scale, 1.5), y = i * rowH;
                  var r = el("rect", { "class": "step", x: x, y: y, width: w, height: rowH - 3, fill: colour[e.name] || "#999" }, timeline);
                  el("title", {}, r).textContent = e.name + " [" + e.args.nodes + "]: " + (e.dur / 1000).toFixed(3) + " ms";
                  // The label goes right of its bar, or left of it when the bar ends near the right edge.
                  // The label goes right of its bar; when the bar ends near the right edge, left of it, or inside it.
                  var labelX = x + w + 4, anchor = "start", inside = false;
                  if (labelX > width - 200) {
                    if (x > 200) { labelX = x - 4; anchor = "end"; } else { labelX = x + 4; inside = true; }
                  }
                  var label = text(timeline, labelX, y + rowH - 7, e.name + " " + (e.dur / 1000).toFixed(3) + " ms", anchor);
                  if (inside) { label.setAttribute("fill", "#ffffff"); }
                });
                text(timeline, left, shown.length * rowH + 20, "0 ms");
                text(timeline, width - left, shown.length * rowH + 20, ((t1 - t0) / 1000).toFixed(3) + " ms", "end");

                // Bars: time per operation kind, largest first.
                var labelW = 260, barW = 560, barH = 20;
                var most = Math.max.apply(null, data.kinds.map(function (k) { return k.ms; }).concat([1e-9]));
                var bars = el("svg", { id: "kinds-svg", width: labelW + barW + 140, height: data.kinds.length * barH + 10 }, document.getElementById("kinds"));
                data.kinds.forEach(function (k, i) {
                  var y = i * barH;
                  text(bars, labelW - 6, y + barH - 7, k.kind, "end");
                  var b = el("rect", { "class": "bar", x: labelW, y: y + 2, width: Math.max(k.ms / most * barW, 1), height: barH - 5, fill: colour[k.kind] }, bars);
                  el("title", {}, b).textContent = k.kind + ": " + k.ms.toFixed(3) + " ms, " + k.calls + " call(s) per run";
                  text(bars, labelW + Math.max(k.ms / most * barW, 1) + 6, y + barH - 7,
                       k.ms.toFixed(3) + " ms (" + (100 * k.ms / Math.max(total, 1e-9)).toFixed(1) + "%)");
                });
                document.body.dataset.steps = String(shown.length);
                document.body.dataset.kinds = String(data.kinds.length);
                document.body.dataset.rendered = "ok";
              } catch (err) {
                document.body.dataset.rendered = "error: " + err;
                document.getElementById("error").textContent = "could not draw the profile: " + err;
              }
            })();
            </script>
            </body></html>

            """
    }

    /// Text escaped for HTML.
    static func html(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
