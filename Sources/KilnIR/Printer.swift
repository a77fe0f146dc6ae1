/// The textual form of Kiln IR, for `kiln inspect --ir`, debugging and tests.
///
/// The output is deterministic: graph inputs and outputs and nodes keep their order, initializers,
/// attributes, opsets and metadata are sorted by name. Constant data is not printed, except the
/// elements of small tensor attributes. A graph looks like this:
///
///     graph main {
///       input %x: f32[1,3,8,8]
///       init %w: f32[4,3,3,3]
///       %y = Conv(%x, %w, _) {pads=[1,1,1,1], strides=[1,1]}  # conv1
///       %z = If(%c) {}  # branch
///         else_branch: graph else_body {
///           …
///         }
///       output %y: f32[1,4,8,8]
///     }
public enum Printer {
    /// The text of `model`: a header with producer, versions, opsets and metadata, then the main graph.
    public static func print(_ model: Model) -> String {
        var lines: [String] = []
        var header = "model"
        if !model.producer.isEmpty { header += " producer=\(quoted(model.producer))" }
        header += " ir_version=\(model.sourceIRVersion)"
        lines.append(header)
        let opsets = model.opsets.sorted { $0.key < $1.key }
            .map { "\($0.key.isEmpty ? "ai.onnx" : $0.key)=\($0.value)" }
        lines.append("opsets " + opsets.joined(separator: ", "))
        for (key, value) in model.metadata.sorted(by: { $0.key < $1.key }) {
            lines.append("metadata \(quoted(key))=\(quoted(value))")
        }
        append(model.graph, indent: "", header: "graph", to: &lines)
        return lines.joined(separator: "\n") + "\n"
    }

    /// The text of `graph` and, indented, of its subgraphs.
    public static func print(_ graph: Graph) -> String {
        var lines: [String] = []
        append(graph, indent: "", header: "graph", to: &lines)
        return lines.joined(separator: "\n") + "\n"
    }

    /// Appends the lines of `graph`, each prefixed by `indent`; the first line is `header name {`.
    static func append(_ graph: Graph, indent: String, header: String, to lines: inout [String]) {
        let inner = indent + "  "
        lines.append("\(indent)\(header) \(valueName(graph.name, sigil: "")) {")
        let inputNames = Set(graph.inputs.map(\.name))
        for input in graph.inputs {
            lines.append("\(inner)input \(typed(input.name, input.type))")
        }
        for (name, tensor) in graph.initializers.sorted(by: { $0.key < $1.key }) {
            let note = inputNames.contains(name) ? "  # default of an input" : ""
            lines.append("\(inner)init \(valueName(name)): \(tensor.dtype)\(shapeText(tensor.shape))\(note)")
        }
        for node in graph.nodes {
            append(node, indent: inner, to: &lines)
        }
        for output in graph.outputs {
            lines.append("\(inner)output \(typed(output.name, output.type ?? graph.type(of: output.name)))")
        }
        lines.append("\(indent)}")
    }

    /// Appends the line of `node`, followed by its subgraphs indented below it.
    static func append(_ node: Node, indent: String, to lines: inout [String]) {
        var line = indent
        if !node.outputs.isEmpty {
            line += node.outputs.map { $0.isEmpty ? "_" : valueName($0) }.joined(separator: ", ") + " = "
        }
        line += "\(node.op)(" + node.inputs.map { $0.isEmpty ? "_" : valueName($0) }.joined(separator: ", ") + ")"
        let sorted = node.attributes.sorted { $0.key < $1.key }
        var plain: [String] = []
        var graphs: [(String, Graph)] = []
        for (name, attribute) in sorted {
            switch attribute {
            case .graph(let g): graphs.append((name, g))
            case .graphs(let gs): graphs += gs.enumerated().map { ("\(name)[\($0.offset)]", $0.element) }
            default: plain.append("\(name)=\(text(attribute))")
            }
        }
        if !plain.isEmpty || !graphs.isEmpty { line += " {" + plain.joined(separator: ", ") + "}" }
        if !node.name.isEmpty { line += "  # \(node.name)" }
        lines.append(line)
        for (name, graph) in graphs {
            append(graph, indent: indent + "  ", header: "\(name): graph", to: &lines)
        }
    }

    /// The text of an attribute value (not a graph).
    public static func text(_ attribute: Attribute) -> String {
        switch attribute {
        case .float(let v): return floatText(v)
        case .int(let v): return String(v)
        case .string(let s): return quoted(s)
        case .tensor(let t): return tensorText(t)
        case .graph(let g): return "graph \(valueName(g.name, sigil: ""))"
        case .type(let t): return t.description
        case .floats(let vs): return "[" + vs.map(floatText).joined(separator: ", ") + "]"
        case .ints(let vs): return "[" + vs.map(String.init).joined(separator: ", ") + "]"
        case .strings(let vs): return "[" + vs.map(quoted).joined(separator: ", ") + "]"
        case .tensors(let ts): return "[" + ts.map(tensorText).joined(separator: ", ") + "]"
        case .graphs(let gs): return "[" + gs.map { "graph \(valueName($0.name, sigil: ""))" }.joined(separator: ", ") + "]"
        case .types(let ts): return "[" + ts.map(\.description).joined(separator: ", ") + "]"
        }
    }

    /// `%name`, or `%"name"` with escapes when the name has characters other than letters, digits and `_.:/-`.
    public static func valueName(_ name: String, sigil: String = "%") -> String {
        let plain = !name.isEmpty && name.unicodeScalars.allSatisfy { c in
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || "_.:/-".unicodeScalars.contains(c))
        }
        return sigil + (plain ? name : quoted(name))
    }

    /// `name: type`, or just the name when the type is unknown.
    static func typed(_ name: String, _ type: ValueType?) -> String {
        type.map { "\(valueName(name)): \($0)" } ?? valueName(name)
    }

    /// `[2,3]` (`[]` for a scalar).
    static func shapeText(_ shape: [Int]) -> String {
        "[" + shape.map(String.init).joined(separator: ",") + "]"
    }

    /// `tensor<f32[2]>`, followed by the elements when there are at most 8 of them.
    static func tensorText(_ t: Tensor) -> String {
        let head = "tensor<\(t.dtype)\(shapeText(t.shape))>"
        guard t.count <= 8 else { return head }
        if t.dtype == .string { return head + "{" + t.strings.map(quoted).joined(separator: ", ") + "}" }
        if t.dtype == .complex64 || t.dtype == .complex128 { return head }
        if t.dtype.isFloatingPoint { return head + "{" + t.asDoubles().map(doubleText).joined(separator: ", ") + "}" }
        return head + "{" + t.asInt64s().map(String.init).joined(separator: ", ") + "}"
    }

    /// A float as Swift prints it (`1.0`, `1e-05`, `nan`, `inf`).
    static func floatText(_ v: Float) -> String { v.description }

    /// A double: as a `Float` when it is one exactly (so float32 constants print short), else in full.
    static func doubleText(_ v: Double) -> String {
        if v.isNaN { return "nan" }
        if let f = Float(exactly: v) { return f.description }
        return v.description
    }

    /// A double-quoted string with `\"`, `\\`, `\n`, `\t` and other control characters escaped.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if c.value < 0x20 || c.value == 0x7F {
                    let hex = String(c.value, radix: 16)
                    out += "\\u{" + hex + "}"
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        return out + "\""
    }
}

extension Graph {
    /// The textual form of this graph (see `Printer`).
    public func printed() -> String { Printer.print(self) }
}

extension Model {
    /// The textual form of this model (see `Printer`).
    public func printed() -> String { Printer.print(self) }
}
