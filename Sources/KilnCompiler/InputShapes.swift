import KilnIR

/// Fixing a model's input shapes at compile time (`kiln compile --input-shape NAME=D,D,…`,
/// `Compiler.Options.inputShapes`, compile option `input_shape.NAME`), as a user does before deploying to a
/// target that specializes kernels for shapes (`kiln.gpu`, accelerator plugins): symbolic and unknown dims
/// of the named inputs become the given sizes, every other input and output dim with the same symbol takes
/// the same size, and shape inference then makes the rest of the graph static. The artifact then accepts
/// exactly those shapes.
public enum InputShapes {
    /// `shapes` (input name → dims) applied to `graph`'s inputs (and to its outputs' dims of the same
    /// symbols). Errors, `.invalidArgument`, name the input and the dim: a name that is not an input, a rank
    /// that differs from the model's, a fixed dim given another size, a size below 0, or one symbol given
    /// two sizes.
    public static func apply(_ shapes: [String: [Int]], to graph: inout Graph) throws {
        guard !shapes.isEmpty else { return }
        var bindings: [String: (size: Int, input: String)] = [:]
        for (name, dims) in shapes.sorted(by: { $0.key < $1.key }) {
            guard let input = graph.inputs.first(where: { $0.name == name }) else {
                throw KilnError(.invalidArgument, "input shape for '\(name)': the model has no input of that name (inputs: \(graph.inputs.map(\.name).joined(separator: ", ")))")
            }
            guard case .tensor(let type)? = input.type else {
                throw KilnError(.invalidArgument, "input shape for '\(name)': the input is not a tensor")
            }
            if let d = dims.first(where: { $0 < 0 }) { throw KilnError(.invalidArgument, "input shape for '\(name)': size \(d) is negative") }
            guard let declared = type.shape else { continue }
            guard declared.count == dims.count else {
                throw KilnError(.invalidArgument, "input shape for '\(name)': \(dims.count) dims given, the model's input has \(declared.count) (\(declared.map(\.description).joined(separator: ", ")))")
            }
            for (axis, (dim, size)) in zip(declared, dims).enumerated() {
                switch dim {
                case .fixed(let v) where v != size:
                    throw KilnError(.invalidArgument, "input shape for '\(name)': dim \(axis) is \(v) in the model, not \(size)")
                case .symbol(let s):
                    if let bound = bindings[s], bound.size != size {
                        throw KilnError(.invalidArgument, "input shape for '\(name)': dim \(axis) ('\(s)') is given \(size), but '\(bound.input)' gives '\(s)' \(bound.size)")
                    }
                    bindings[s] = (size, name)
                default: break
                }
            }
        }
        func fixed(_ value: Value, _ given: [Int]?) -> Value {
            guard case .tensor(let type)? = value.type else { return value }
            var result = value
            if let given {
                result.type = .tensor(TensorType(type.dtype, fixed: given))
            } else if let shape = type.shape {
                result.type = .tensor(TensorType(type.dtype, shape.map { dim in
                    if case .symbol(let s) = dim, let bound = bindings[s] { return .fixed(bound.size) }
                    return dim
                }))
            }
            return result
        }
        graph.inputs = graph.inputs.map { fixed($0, shapes[$0.name]) }
        graph.outputs = graph.outputs.map { fixed($0, nil) }
    }

    /// `NAME=D,D,…` (as `--input-shape` and the compile option write it; `NAME=` for a scalar) parsed.
    /// A malformed one is `.invalidArgument` naming it.
    public static func parse(_ text: String) throws -> (name: String, dims: [Int]) {
        guard let eq = text.lastIndex(of: "="), eq != text.startIndex else {
            throw KilnError(.invalidArgument, "input shape '\(text)': expected NAME=D,D,… (e.g. images=1,3,224,224)")
        }
        return (String(text[..<eq]), try dims(String(text[text.index(after: eq)...]), of: String(text[..<eq])))
    }

    /// `D,D,…` parsed as the dims of input `name` (empty text: a scalar).
    public static func dims(_ text: String, of name: String) throws -> [Int] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: " ") }
        if items == [""] { return [] }
        return try items.map { item in
            guard let v = Int(item), v >= 0 else {
                throw KilnError(.invalidArgument, "input shape for '\(name)': '\(item)' is not a size (expected D,D,… of non-negative integers)")
            }
            return v
        }
    }
}

private extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}
