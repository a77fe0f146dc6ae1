import KilnBackend
import KilnIR

/// Which graphs `kiln.cpu` runs: the ops it has kernels for, in float32 (with int64/int32/bool only
/// where data is moved or indexed), and shape inputs known before running.
enum Support {
    /// Ops computed in float32.
    static let floatOps: Set<String> = [
        "Conv", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
        "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Gemm", "MatMul", "LayerNormalization", "Softmax", "LogSoftmax",
        "Erf", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "LeakyRelu", "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal",
    ]
    /// Recurrent ops: float32, except sequence_lens (input 4, int32 or int64).
    static let recurrentOps: Set<String> = ["LSTM", "GRU", "RNN"]
    /// Ops that move or index data of any supported element type.
    static let dataOps: Set<String> = ["Gather", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Concat", "Shape", "Cast", "Constant"]
    /// Element types values may have (float32 for arithmetic; the others only in data ops).
    static let elementTypes: Set<DType> = [.float32, .int64, .int32, .bool]

    /// Every op `kiln.cpu` has a kernel for.
    static var ops: Set<String> { floatOps.union(dataOps).union(recurrentOps) }

    /// The element type of every value whose type can be inferred.
    static func elementTypes(of graph: Graph) -> [String: DType] {
        var types: [String: DType] = [:]
        for v in graph.inputs { if case .tensor(let t)? = v.type { types[v.name] = t.dtype } }
        for (name, t) in graph.initializers { types[name] = t.dtype }
        for (name, t) in graph.valueTypes { if let tt = t.tensorType { types[name] = tt.dtype } }
        for node in graph.nodes {
            guard let out = node.outputs.first, !out.isEmpty else { continue }
            switch node.op.name {
            case "Cast": if let code = try? node.int("to", 1), let t = DType(onnxCode: code) { types[out] = t }
            case "Shape": types[out] = .int64
            case "Constant": if let t = constantTensor(node) { types[out] = t.dtype }
            case "Gather", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Concat":
                if let t = types[node.input(0)] { types[out] = t }
            default:
                if types[out] == nil, let t = types[node.input(0)] { types[out] = t }
            }
            if node.op.name == "LayerNormalization" || node.op.name == "BatchNormalization" {
                for o in node.outputs where !o.isEmpty { types[o] = types[o] ?? .float32 }
            }
        }
        return types
    }

    /// Values known before running: constants, shapes, and data ops over them — computed by nodes other
    /// than `excluded` (nodes kiln.cpu rejects run elsewhere, so it cannot know their outputs in advance).
    static func knownBeforeRunning(_ graph: Graph, excluding excluded: Set<Int> = []) -> Set<String> {
        let inputNames = Set(graph.inputs.map(\.name))
        var known = Set(graph.initializers.keys.filter { !inputNames.contains($0) })
        for (index, node) in graph.nodes.enumerated() where !excluded.contains(index) {
            let ins = node.inputs.filter { !$0.isEmpty }
            switch node.op.name {
            case "Constant", "Shape": known.formUnion(node.outputs)
            case "Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Concat", "Gather":
                if ins.allSatisfy(known.contains) { known.formUnion(node.outputs) }
            default: break
            }
        }
        return known
    }

    /// The tensor of a Constant node, or nil when it holds something else (a sparse tensor, strings).
    static func constantTensor(_ node: Node) -> Tensor? {
        switch (node.attributes["value"], node.attributes["value_float"], node.attributes["value_floats"],
                node.attributes["value_int"], node.attributes["value_ints"]) {
        case (.tensor(let t)?, _, _, _, _): return t.dtype == .string ? nil : t
        case (_, .float(let v)?, _, _, _): return Tensor(scalar: v)
        case (_, _, .floats(let v)?, _, _): return Tensor(shape: [v.count], v)
        case (_, _, _, .int(let v)?, _): return Tensor(scalar: Int64(v))
        case (_, _, _, _, .ints(let v)?): return Tensor(int64s: v)
        default: return nil
        }
    }

    /// The nodes of `graph` that `kiln.cpu` cannot run, with reasons.
    static func rejections(in graph: Graph) -> [Rejection] {
        // A shape computed by a node kiln.cpu rejects is not known to kiln.cpu: reject again until that settles
        // (each round only adds rejections), so that the claim agrees with what lowering will accept.
        var result = rejections(in: graph, excluding: [])
        for _ in 0..<8 {
            let again = rejections(in: graph, excluding: Set(result.map(\.node)))
            if again.count == result.count { break }
            result = again
        }
        return result
    }

    private static func rejections(in graph: Graph, excluding excluded: Set<Int>) -> [Rejection] {
        let types = elementTypes(of: graph)
        let known = knownBeforeRunning(graph, excluding: excluded)
        // Values that are sequences, maps or optionals: kiln.cpu runs dense tensors only.
        var nonTensors = Set<String>()
        for v in graph.inputs + graph.outputs {
            if let t = v.type, t.tensorType == nil { nonTensors.insert(v.name) }
        }
        for (name, t) in graph.valueTypes where t.tensorType == nil { nonTensors.insert(name) }
        var result: [Rejection] = []
        for (index, node) in graph.nodes.enumerated() {
            if let value = (node.inputs + node.outputs).first(where: nonTensors.contains) {
                result.append(Rejection(node: index, reason: "'\(value)' is not a tensor; kiln.cpu runs dense tensors only"))
            } else if let reason = reason(node, types: types, known: known) {
                result.append(Rejection(node: index, reason: reason))
            }
        }
        return result
    }

    private static func reason(_ node: Node, types: [String: DType], known: Set<String>) -> String? {
        let name = node.op.name
        guard node.op.domain.isEmpty, ops.contains(name) else { return "no kiln.cpu kernel for \(node.op)" }
        let ins = node.inputs.filter { !$0.isEmpty }
        for value in ins + node.outputs.filter({ !$0.isEmpty }) {
            if let t = types[value], !elementTypes.contains(t) {
                return "\(t) not supported (kiln.cpu computes in float32; value '\(value)')"
            }
        }
        if floatOps.contains(name) {
            for value in ins {
                if let t = types[value], t != .float32 { return "\(name) on \(t) not supported (float32 only; input '\(value)')" }
            }
        }
        switch name {
        case "LSTM", "GRU", "RNN":
            for (i, value) in node.inputs.enumerated() where !value.isEmpty {
                if let t = types[value], i == 4 ? t != .int32 && t != .int64 : t != .float32 {
                    return "\(name) input '\(value)' is \(t) (float32, and int32 or int64 sequence_lens, expected)"
                }
            }
            return RecurrentOperation.rejection(node)
        case "Reshape", "Unsqueeze":
            if !known.contains(node.input(1)) { return "\(name)'s shape/axes input '\(node.input(1))' must be a constant or computed from shapes" }
        case "Squeeze":
            if !node.input(1).isEmpty, !known.contains(node.input(1)) { return "Squeeze's axes input must be a constant" }
        case "Clip":
            for i in 1..<min(3, node.inputs.count) where !node.inputs[i].isEmpty && !known.contains(node.inputs[i]) {
                return "Clip's min/max inputs must be constants"
            }
        case "MaxPool":
            if node.outputs.count > 1, !node.outputs[1].isEmpty { return "MaxPool's Indices output is not supported" }
            if let k = try? node.ints("kernel_shape"), k.count > 2 { return "\(k.count)-D pooling is not supported" }
        case "AveragePool":
            if let k = try? node.ints("kernel_shape"), k.count > 2 { return "\(k.count)-D pooling is not supported" }
        case "Conv":
            if let k = try? node.ints("kernel_shape"), k.count > 2 { return "\(k.count)-D convolution is not supported" }
        case "BatchNormalization":
            if (try? node.int("training_mode", 0)) ?? 0 != 0 || node.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
                return "BatchNormalization in training mode is not supported"
            }
        case "Constant":
            if constantTensor(node) == nil { return "Constant of this kind (sparse or strings) is not supported" }
        case "Cast":
            if let code = try? node.int("to", 1), let t = DType(onnxCode: code), !elementTypes.contains(t) {
                return "Cast to \(t) not supported"
            }
        case "Gather":
            if let t = types[node.input(1)], t != .int64, t != .int32 { return "Gather indices of type \(t) not supported" }
        default: break
        }
        if ["Conv", "MaxPool", "AveragePool"].contains(name), let reason = Window.rejection(of: node) { return reason }
        return nil
    }
}
