import KilnBackend
import KilnIR

/// Which graphs `kiln.cpu` runs: the ops it has kernels for (`CPUKernelTable`), in float32 (with
/// int64/int32/bool only where data is moved or indexed), and shape inputs known before running.
enum Support {
    /// Element types values may have (float32 for arithmetic; the others only in data ops).
    static let elementTypes: Set<DType> = [.float32, .int64, .int32, .bool]
    /// Element types Cast and CastLike convert between (byte-wide and wider; no float8, sub-byte or strings):
    /// values of these types may exist only as their inputs and outputs.
    static let castTypes: Set<DType> = elementTypes.union([.float64, .float16, .bfloat16, .int8, .int16, .uint8, .uint16, .uint32, .uint64,
                                                           .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0,
                                                           .float4e2m1, .int4, .uint4, .int2, .uint2])

    /// The element type of every value whose type can be inferred.
    static func elementTypes(of graph: Graph) -> [String: DType] {
        var types: [String: DType] = [:]
        for v in graph.inputs { if case .tensor(let t)? = v.type { types[v.name] = t.dtype } }
        for (name, t) in graph.initializers { types[name] = t.dtype }
        for (name, t) in graph.valueTypes { if let tt = t.tensorType { types[name] = tt.dtype } }
        for node in graph.nodes {
            guard let out = node.outputs.first, !out.isEmpty else { continue }
            let resultType = CPUKernelTable[node.op]?.resultType ?? .inferred
            switch resultType {
            case .computed(let type):
                if let t = type(node) { types[out] = t }
            case .firstInput:
                if let t = types[node.input(0)] { types[out] = t }
            case .ofInput(let k):
                if let t = types[node.input(k)] { types[out] = t }
            case .inferred, .float32Statistics:
                if types[out] == nil, let t = types[node.input(0)] { types[out] = t }
            }
            // If, Loop and Scan: the types their bodies declare for every output.
            if let declared = ControlFlow.outputTypes(of: node) {
                for (o, t) in zip(node.outputs, declared) where !o.isEmpty && types[o] == nil { if let t { types[o] = t } }
            }
            if case .float32Statistics = resultType {
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
            switch CPUKernelTable[node.op]?.knownBeforeRunning ?? .never {
            case .always: known.formUnion(node.outputs)
            case .whenInputsAre: if ins.allSatisfy(known.contains) { known.formUnion(node.outputs) }
            case .never: break
            }
        }
        return known
    }

    /// The constant values of `graph` by name: initializers that are not inputs, and Constant nodes' tensors
    /// (what `Lowering` makes program constants).
    static func constants(of graph: Graph) -> [String: Tensor] {
        let inputNames = Set(graph.inputs.map(\.name))
        var result = graph.initializers.filter { !inputNames.contains($0.key) }
        for node in graph.nodes where node.op == OpID("", "Constant") {
            if let t = constantTensor(node), let o = node.outputs.first, !o.isEmpty { result[o] = t }
        }
        return result
    }

    /// The element type a Cast node converts to, when its `to` attribute names one.
    @Sendable static func castType(_ node: Node) -> DType? {
        guard let code = try? node.int("to", 1) else { return nil }
        return DType(onnxCode: code)
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
        // A control-flow node's verdict judges its bodies (recursively), which no round changes: judge each
        // once, or nested bodies would be judged once per round per level (exponential in the nesting).
        var verdicts: [Int: String?] = [:]
        var result = rejections(in: graph, excluding: [], verdicts: &verdicts)
        for _ in 0..<8 {
            let again = rejections(in: graph, excluding: Set(result.map(\.node)), verdicts: &verdicts)
            if again.count == result.count { break }
            result = again
        }
        return result
    }

    private static func rejections(in graph: Graph, excluding excluded: Set<Int>, verdicts: inout [Int: String?]) -> [Rejection] {
        let types = elementTypes(of: graph)
        let known = knownBeforeRunning(graph, excluding: excluded)
        let constants = constants(of: graph)
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
            } else if ControlFlow.isControlFlow(node.op) {
                if verdicts[index] == nil { verdicts[index] = .some(reason(node, types: types, known: known, constants: constants)) }
                if let reason = verdicts[index] ?? nil { result.append(Rejection(node: index, reason: reason)) }
            } else if let reason = reason(node, types: types, known: known, constants: constants) {
                result.append(Rejection(node: index, reason: reason))
            }
        }
        return result
    }

    private static func reason(_ node: Node, types: [String: DType], known: Set<String>, constants: [String: Tensor]) -> String? {
        guard let kernel = CPUKernelTable[node.op] else { return "no kiln.cpu kernel for \(node.op)" }
        // Lowering names each operation's results by the node's outputs: a node that produces nothing is malformed.
        guard node.outputs.contains(where: { !$0.isEmpty }) else { return "\(node.op.name) has no output" }
        let ins = node.inputs.filter { !$0.isEmpty }
        var allowed = elementTypes
        if case .conversion = kernel.family { allowed = castTypes }
        if case .anyOf(let types) = kernel.family { allowed.formUnion(types) }
        for value in ins + node.outputs.filter({ !$0.isEmpty }) {
            if let t = types[value], !allowed.contains(t) {
                return "\(t) not supported (kiln.cpu computes in float32; value '\(value)')"
            }
        }
        if case .float = kernel.family {
            for value in ins {
                if let t = types[value], t != .float32 { return "\(node.op.name) on \(t) not supported (float32 only; input '\(value)')" }
            }
        }
        if case .anyOf(let allowed) = kernel.family {
            for value in ins {
                if let t = types[value], !allowed.contains(t) {
                    return "\(node.op.name) on \(t) not supported (\(allowed.map { "\($0)" }.sorted().joined(separator: ", ")) only; input '\(value)')"
                }
            }
        }
        return kernel.rejection?(node, SupportFacts(types: types, known: known, constants: constants))
    }
}
