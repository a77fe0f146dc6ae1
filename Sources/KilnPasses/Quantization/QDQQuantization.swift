import KilnIR

/// The integer type activations are quantized to.
public enum ActivationType: String, Sendable, CaseIterable {
    /// Asymmetric: scale and zero point cover `[min(lower, 0), max(upper, 0)]` with 0…255.
    case uint8
    /// Symmetric: zero point 0, scale `max(|lower|, |upper|) / 127`.
    case int8
}

/// What post-training quantization does to a graph.
public struct QuantizationConfig: Sendable {
    /// The ops quantized by default: `Conv`, `Gemm`, `MatMul`.
    public static let defaultOps: Set<String> = ["Conv", "Gemm", "MatMul"]
    /// The op types that may be quantized (default-domain names; `Add` and `Mul` may be added).
    public var ops: Set<String>
    /// Op types kept in float even when listed in `ops`.
    public var keepFloat: Set<String>
    /// How activation ranges are picked from the calibration statistics.
    public var method: CalibrationMethod
    /// The percentile of |x| kept by `CalibrationMethod.percentile`.
    public var percentile: Double
    /// The type activations are quantized to.
    public var activationType: ActivationType
    /// Whether the float outputs of quantized nodes get a QuantizeLinear/DequantizeLinear pair too (the
    /// `DequantizeLinear → op → QuantizeLinear` pattern integer kernels fuse); without, only their inputs.
    public var quantizeOutputs: Bool

    /// A configuration; by default Conv, Gemm and MatMul, min-max ranges, uint8 activations, outputs quantized.
    public init(ops: Set<String> = QuantizationConfig.defaultOps, keepFloat: Set<String> = [], method: CalibrationMethod = .minmax,
                percentile: Double = 99.99, activationType: ActivationType = .uint8, quantizeOutputs: Bool = true) {
        self.ops = ops
        self.keepFloat = keepFloat
        self.method = method
        self.percentile = percentile
        self.activationType = activationType
        self.quantizeOutputs = quantizeOutputs
    }

    /// Whether nodes of `op` are quantized.
    public func quantizes(_ op: OpID) -> Bool {
        op.domain.isEmpty && ops.contains(op.name) && !keepFloat.contains(op.name)
    }
}

/// A scale and zero point.
public struct QuantizationParameters: Sendable, Equatable {
    /// The scale (> 0).
    public var scale: Float
    /// The zero point, in the quantized type's range.
    public var zeroPoint: Int

    /// Parameters for `[lower, upper]` as `type` says; the range is widened to include 0 so that 0 is
    /// exact (zero padding), and an empty range gets scale 1.
    public init(lower: Float, upper: Float, type: ActivationType) {
        let lo = min(lower, 0), hi = max(upper, 0)
        switch type {
        case .uint8:
            let s = (hi - lo) / 255
            scale = s > 0 && s.isFinite ? s : 1
            zeroPoint = Int(max(0, min(255, (-lo / scale).rounded(.toNearestOrEven))))
        case .int8:
            let s = max(-lo, hi) / 127
            scale = s > 0 && s.isFinite ? s : 1
            zeroPoint = 0
        }
    }

    /// Parameters given directly.
    public init(scale: Float, zeroPoint: Int) {
        self.scale = scale
        self.zeroPoint = zeroPoint
    }
}

/// Symmetric int8 quantization of a constant weight, per channel along `axis` (per tensor when nil):
/// each channel's scale is its max |w| / 127 (1 for an all-zero channel), values are rounded half to
/// even and clipped to −127…127, zero points are 0.
public func quantizeWeight(_ weight: Tensor, axis: Int?) -> (values: Tensor, scales: [Float]) {
    let w = weight.asDoubles().map { Float($0) }
    let channels = axis.map { weight.shape[$0] } ?? 1
    let inner = axis.map { weight.shape[($0 + 1)...].reduce(1, *) } ?? w.count
    func channel(_ i: Int) -> Int { axis == nil ? 0 : (i / inner) % channels }
    var top = [Float](repeating: 0, count: channels)
    for i in w.indices where w[i].isFinite { top[channel(i)] = max(top[channel(i)], abs(w[i])) }
    let scales = top.map { $0 > 0 ? $0 / 127 : 1 }
    let q: [Int8] = w.indices.map { i in
        let r = (w[i] / scales[channel(i)]).rounded(.toNearestOrEven)
        return Int8(r.isNaN ? 0 : max(-127, min(127, r)))
    }
    return (Tensor(shape: weight.shape, q), scales)
}

/// What post-training quantization did.
public struct QuantizationReport: Sendable {
    /// Nodes quantized, by op type.
    public var quantized: [String: Int] = [:]
    /// Nodes of a quantizable op left in float, by op type, with why (`--keep-float`, no statistics…).
    public var keptFloat: [String: Int] = [:]
    /// Activations given a QuantizeLinear/DequantizeLinear pair.
    public var activations = 0
    /// Weights stored as int8.
    public var weights = 0
    /// Biases stored as int32.
    public var biases = 0

    /// An empty report.
    public init() {}

    /// One line: `quantized 12 nodes (Conv 10, Gemm 2), 14 activations, 12 int8 weights, 12 int32 biases; kept float: MatMul 1`.
    public var summary: String {
        func list(_ d: [String: Int]) -> String { d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
        let total = quantized.values.reduce(0, +)
        var line = "quantized \(total) node\(total == 1 ? "" : "s")\(quantized.isEmpty ? "" : " (\(list(quantized)))"), \(activations) activations, \(weights) int8 weights, \(biases) int32 biases"
        if !keptFloat.isEmpty { line += "; kept float: \(list(keptFloat))" }
        return line
    }
}

/// Post-training quantization in QDQ form: the graph keeps ONNX semantics (kiln.reference runs it) with
/// every quantized node reading dequantized values.
///
/// For each node whose op `config` quantizes (main graph; subgraphs stay float):
/// * each float activation it reads and each float value it writes gets one QuantizeLinear →
///   DequantizeLinear pair (shared by all readers; a graph output keeps its float value), with the
///   scale and zero point of `config.activationType` over the range `config.method` picks from
///   `statistics`;
/// * a constant float weight (Conv `W`, Gemm `B`, MatMul `B`) becomes an int8 initializer with symmetric
///   per-output-channel scales (Conv: axis 0; Gemm: the output axis of `B`; MatMul: the last axis) read
///   through a DequantizeLinear;
/// * a constant bias (Conv `B`, a 1-D Gemm `C` with `beta` 1) becomes an int32 initializer with scale
///   `x_scale · w_scale[c]` and zero point 0, read through a DequantizeLinear.
/// A node some of whose float activations have no statistics stays float. Float constants it reads
/// that are neither (an Add's or Mul's operand, a Gemm `C` of another shape) stay float. The weights'
/// float initializers are left for dead-code elimination.
public struct QDQQuantization: Pass {
    /// `quantize-qdq`.
    public let name = "quantize-qdq"
    /// What to quantize and how.
    public var config: QuantizationConfig
    /// Calibration statistics by value name.
    public var statistics: [String: TensorStatistics]
    /// The pass for `config` over `statistics`.
    public init(config: QuantizationConfig, statistics: [String: TensorStatistics]) {
        self.config = config
        self.statistics = statistics
    }

    /// The indices of weight-like constant inputs of `node` (with their per-channel axis) and of its bias.
    static func roles(of node: Node, constants: [String: Tensor]) -> (weights: [Int: Int?], bias: Int?) {
        func constant(_ i: Int) -> Tensor? {
            guard i < node.inputs.count, !node.inputs[i].isEmpty, let t = constants[node.inputs[i]], t.dtype == .float32 else { return nil }
            return t
        }
        switch node.op.name {
        case "Conv":
            guard let w = constant(1), w.rank >= 3 else { return ([:], nil) }
            let bias = constant(2).flatMap { $0.rank == 1 && $0.count == w.shape[0] ? 2 : nil }
            return ([1: 0], bias)
        case "Gemm":
            guard let b = constant(1), b.rank == 2 else { return ([:], nil) }
            let axis = node.int("transB", 0) != 0 ? 0 : 1
            let bias = constant(2).flatMap { c in
                c.rank == 1 && c.count == b.shape[axis] && node.float("beta", 1) == 1 && node.float("alpha", 1) == 1 ? 2 : nil
            }
            return ([1: axis], bias)
        case "MatMul":
            var weights: [Int: Int?] = [:]
            if let b = constant(1), b.rank >= 2 { weights[1] = b.rank - 1 }
            if let a = constant(0), a.rank >= 1 { weights.updateValue(nil, forKey: 0) }  // per tensor
            return (weights, nil)
        default:
            return ([:], nil)
        }
    }

    /// The float activations calibration must measure for `config` in `graph`: the non-constant inputs
    /// and the outputs of every node that would be quantized, in graph order.
    public static func calibrationTargets(in graph: Graph, config: QuantizationConfig) -> [String] {
        let constants = graph.constantInitializers
        var seen = Set<String>(), order: [String] = []
        func add(_ name: String) {
            guard !name.isEmpty, constants[name] == nil, seen.insert(name).inserted else { return }
            order.append(name)
        }
        for node in graph.nodes where config.quantizes(node.op) {
            for input in node.inputs { add(input) }
            if config.quantizeOutputs { for output in node.outputs { add(output) } }
        }
        return order
    }

    /// Quantizes `graph`; true if any node was quantized.
    public func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
        !quantize(&graph).quantized.isEmpty
    }

    /// Quantizes `graph` and says what was done.
    public func quantize(_ graph: inout Graph) -> QuantizationReport {
        var report = QuantizationReport()
        var names = NameMaker(used: graph.allNames)
        let constants = graph.constantInitializers
        let graphInputs = Set(graph.inputs.map(\.name))
        // Activations: value name → parameters, decided once.
        var activation: [String: QuantizationParameters] = [:]
        func parameters(_ name: String) -> QuantizationParameters? {
            if let p = activation[name] { return p }
            guard let stats = statistics[name], stats.count > 0 else { return nil }
            let (lo, hi) = stats.range(method: config.method, percentile: config.percentile)
            let p = QuantizationParameters(lower: lo, upper: hi, type: config.activationType)
            activation[name] = p
            return p
        }

        // Decide which nodes are quantized, and rewrite their constant inputs.
        var quantizedNodes = Set<Int>()
        var toQuantize: [String] = []  // activations, in first-use order
        var queued = Set<String>()
        var newInitializers: [String: Tensor] = [:]
        var weightNodes: [Node] = []  // DequantizeLinear of weights and biases (they read only initializers)
        var dequantizedWeight: [String: (name: String, scales: [Float])] = [:]
        for (index, node) in graph.nodes.enumerated() where node.op.domain.isEmpty && config.ops.contains(node.op.name) {
            if config.keepFloat.contains(node.op.name) {
                report.keptFloat[node.op.name, default: 0] += 1
                continue
            }
            let (weights, bias) = Self.roles(of: node, constants: constants)
            let activations = node.inputs.enumerated().filter { i, name in
                !name.isEmpty && weights[i] == nil && i != bias && constants[name] == nil
            }.map(\.element)
            // Every activation read or written must have been measured as float32.
            let outputs = config.quantizeOutputs ? node.outputs.filter { !$0.isEmpty } : []
            let measured = (activations + outputs).allSatisfy { parameters($0) != nil }
            guard measured, !activations.isEmpty else {
                report.keptFloat[node.op.name, default: 0] += 1
                continue
            }
            quantizedNodes.insert(index)
            report.quantized[node.op.name, default: 0] += 1
            for name in activations + outputs where queued.insert(name).inserted { toQuantize.append(name) }

            var rewritten = node
            for (i, axis) in weights.sorted(by: { $0.key < $1.key }) {
                let source = node.inputs[i]
                let key = "\(source)#\(axis.map { String($0) } ?? "t")"
                if dequantizedWeight[key] == nil {
                    let (values, scales) = quantizeWeight(constants[source]!, axis: axis)
                    let q = names.make(source + "_quantized"), s = names.make(source + "_scale")
                    let z = names.make(source + "_zero_point"), dq = names.make(source + "_dequantized")
                    newInitializers[q] = values
                    newInitializers[s] = axis == nil ? Tensor(scalar: scales[0]) : Tensor(shape: [scales.count], scales)
                    newInitializers[z] = axis == nil ? Tensor(scalar: Int8(0)) : Tensor(shape: [scales.count], [Int8](repeating: 0, count: scales.count))
                    var attributes: [String: Attribute] = [:]
                    if let axis { attributes["axis"] = .int(axis) }
                    weightNodes.append(Node(name: dq, op: OpID("", "DequantizeLinear"), inputs: [q, s, z], outputs: [dq], attributes: attributes))
                    dequantizedWeight[key] = (dq, scales)
                    report.weights += 1
                }
                rewritten.inputs[i] = dequantizedWeight[key]!.name
            }
            let weightKey = weights[1].map { axis in "\(node.inputs[1])#\(axis.map { String($0) } ?? "t")" }
            if let bias, let weightKey, let w = dequantizedWeight[weightKey], let x = parameters(node.inputs[0]) {
                let b = constants[node.inputs[bias]]!.asDoubles()
                let scales = (0..<b.count).map { x.scale * w.scales[w.scales.count == 1 ? 0 : $0] }
                let q: [Int32] = b.indices.map { c in
                    let r = (b[c] / Double(scales[c])).rounded(.toNearestOrEven)
                    return Int32(r.isNaN ? 0 : max(Double(Int32.min), min(Double(Int32.max), r)))
                }
                let source = node.inputs[bias]
                let qn = names.make(source + "_quantized"), sn = names.make(source + "_scale")
                let zn = names.make(source + "_zero_point"), dq = names.make(source + "_dequantized")
                newInitializers[qn] = Tensor(shape: [q.count], q)
                newInitializers[sn] = Tensor(shape: [scales.count], scales)
                newInitializers[zn] = Tensor(shape: [q.count], [Int32](repeating: 0, count: q.count))
                weightNodes.append(Node(name: dq, op: OpID("", "DequantizeLinear"), inputs: [qn, sn, zn], outputs: [dq], attributes: ["axis": .int(0)]))
                rewritten.inputs[bias] = dq
                report.biases += 1
            }
            graph.nodes[index] = rewritten
        }
        guard !quantizedNodes.isEmpty else { return report }

        // One QuantizeLinear → DequantizeLinear pair per activation, right after its producer.
        let zeroType: DType = config.activationType == .uint8 ? .uint8 : .int8
        var pairs: [String: [Node]] = [:]
        var renamed: [String: String] = [:]
        for name in toQuantize {
            let p = activation[name]!
            let q = names.make(name + "_quantized"), s = names.make(name + "_scale")
            let z = names.make(name + "_zero_point"), dq = names.make(name + "_dequantized")
            newInitializers[s] = Tensor(scalar: p.scale)
            newInitializers[z] = zeroType == .uint8 ? Tensor(scalar: UInt8(p.zeroPoint)) : Tensor(scalar: Int8(p.zeroPoint))
            pairs[name] = [Node(name: q, op: OpID("", "QuantizeLinear"), inputs: [name, s, z], outputs: [q]),
                           Node(name: dq, op: OpID("", "DequantizeLinear"), inputs: [q, s, z], outputs: [dq])]
            renamed[name] = dq
            report.activations += 1
        }
        var nodes = weightNodes
        for name in toQuantize where graphInputs.contains(name) { nodes += pairs[name]! }
        for var node in graph.nodes {
            // Every reader sees the dequantized value (subgraphs keep reading the float one).
            if node.inputs.contains(where: { renamed[$0] != nil }) { node.inputs = node.inputs.map { renamed[$0] ?? $0 } }
            nodes.append(node)
            for output in node.outputs where pairs[output] != nil { nodes += pairs[output]! }
        }
        graph.nodes = nodes
        for (name, tensor) in newInitializers { graph.initializers[name] = tensor }
        return report
    }
}
