import KilnBackend
import KilnIR

/// One kernel argument of a launch: a value's device buffer, or a float scalar.
enum LaunchArgument: Sendable {
    case value(String)
    case float(Float)
}

/// What one node becomes: a kernel launch, or a view (its output is its first input's buffer, reshaped).
enum NodeLowering: Sendable {
    /// A kernel `kernel` of `source` built with `options`, run over `global` (rounded to `local` when set).
    case launch(kernel: String, source: String, options: String, arguments: [LaunchArgument], global: [Int], local: [Int]?)
    /// The output shares the input's buffer.
    case view(input: String, output: String)
}

/// Turns nodes into launches; what it cannot lower it refuses with `.unsupported` and the reason, so that
/// claiming (`rejections`) and preparing share one set of rules.
struct Lowering {
    /// The ops kiln.gpu runs (float32 only).
    static let unaryOps: [String: String] = [
        "Relu": "fmax(v, 0.0f)", "Sigmoid": "(1.0f / (1.0f + exp(-v)))", "Tanh": "tanh(v)", "Abs": "fabs(v)",
        "Neg": "(-v)", "Exp": "exp(v)", "LeakyRelu": "(v >= 0.0f ? v : alpha * v)",
        "Sqrt": "sqrt(v)", "Reciprocal": "(1.0f / v)", "Floor": "floor(v)", "Ceil": "ceil(v)", "Round": "rint(v)",
        "Log": "log(v)", "Erf": "erf(v)", "Sin": "sin(v)", "Cos": "cos(v)", "Tan": "tan(v)", "Asin": "asin(v)",
        "Acos": "acos(v)", "Atan": "atan(v)", "Sinh": "sinh(v)", "Cosh": "cosh(v)", "Asinh": "asinh(v)", "Acosh": "acosh(v)",
        "Atanh": "atanh(v)", "Sign": "(v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : v)", "Softsign": "(v / (1.0f + fabs(v)))",
        "Softplus": "(v > 20.0f ? v : log1p(exp(v)))", "Mish": "(v * tanh(v > 20.0f ? v : log1p(exp(v))))",
    ]
    /// Unary ops whose attributes are baked into the expression (`attributeExpression`).
    static let attributeUnaryOps: Set<String> = ["Elu", "Selu", "HardSigmoid", "HardSwish", "ThresholdedRelu", "Celu", "Gelu", "Shrink", "Clip"]
    static let binaryOps: [String: String] = [
        "Add": "(x + z)", "Sub": "(x - z)", "Mul": "(x * z)", "Div": "(x / z)", "Pow": "pow(x, z)",
        "Max": "((x > z || isnan(x)) ? x : z)", "Min": "((x < z || isnan(x)) ? x : z)", "PRelu": "(x < 0.0f ? x * z : x)",
        "Sum": "(x + z)", "Mean": "((x + z) * 0.5f)",
    ]
    static let viewOps: Set<String> = ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"]
    /// Ops that are views in some forms: Max/Min/Sum/Mean of one input, Dropout without training_mode.
    static let sometimesViewOps: Set<String> = ["Dropout"]
    static let otherOps: Set<String> = ["MatMul", "Gemm", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Softmax", "LogSoftmax", "Transpose",
                                        "BatchNormalization", "LayerNormalization", "Concat", "Slice", "Expand",
                                        "Pad", "Resize", "Split", "ConvTranspose"]
    /// Reductions: (initial value, accumulate(a, v), finish(a)) as OpenCL C expressions.
    static let reductions: [String: (String, String, String)] = [
        "ReduceSum": ("0.0f", "(a + v)", "(a)"), "ReduceMean": ("0.0f", "(a + v)", "(a / (float)RCOUNT)"),
        "ReduceMax": ("-INFINITY", "((v > a || isnan(v)) ? v : a)", "(a)"), "ReduceMin": ("INFINITY", "((v < a || isnan(v)) ? v : a)", "(a)"),
        "ReduceProd": ("1.0f", "(a * v)", "(a)"), "ReduceSumSquare": ("0.0f", "(a + v * v)", "(a)"), "ReduceL1": ("0.0f", "(a + fabs(v))", "(a)"),
        "ReduceL2": ("0.0f", "(a + v * v)", "sqrt(a)"), "ReduceLogSum": ("0.0f", "(a + v)", "log(a)"), "ReduceLogSumExp": ("0.0f", "(a + exp(v))", "log(a)"),
    ]
    /// Every op name kiln.gpu claims, sorted.
    static var supported: [String] { (Array(unaryOps.keys) + Array(attributeUnaryOps) + Array(binaryOps.keys) + Array(viewOps) + Array(sometimesViewOps) + Array(otherOps) + Array(reductions.keys)).sorted() }

    /// Unary ops fused into the launch that produces their input (those without an attribute).
    static let fusible: Set<String> = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp"]

    /// Fuses each fusible unary node into the launch producing its input when that value has no other
    /// reader and is not a graph output: the producer writes `unary(result)` straight into the unary's
    /// output (chains compose). Fused nodes become nil.
    static func fuseActivations(_ plans: [NodeLowering], graph: Graph) -> [NodeLowering?] {
        var readers: [String: Int] = [:]
        for node in graph.nodes { for input in node.inputs where !input.isEmpty { readers[input, default: 0] += 1 } }
        let graphOutputs = Set(graph.outputs.map(\.name))
        var result: [NodeLowering?] = plans
        var producer: [String: Int] = [:]
        var activations: [Int: [String]] = [:]
        for (index, plan) in plans.enumerated() {
            let node = graph.nodes[index]
            if Self.fusible.contains(node.op.name), let input = node.inputs.first, readers[input] == 1, !graphOutputs.contains(input),
               let source = producer[input], case .launch(let kernel, let text, let options, var arguments, let global, let local)? = result[source],
               let slot = arguments.lastIndex(where: { if case .value(input) = $0 { return true }; return false }) {
                arguments[slot] = .value(node.outputs[0])
                activations[source, default: []].append(unaryOps[node.op.name]!)
                result[source] = .launch(kernel: kernel, source: text, options: options, arguments: arguments, global: global, local: local)
                result[index] = nil
                producer[node.outputs[0]] = source
                continue
            }
            // Split writes several outputs from one launch: an activation of one of them cannot fuse into it.
            if case .launch = plan, node.op.name != "Split" { producer[node.outputs[0]] = index }
        }
        for (index, chain) in activations {
            guard case .launch(let kernel, let text, let options, let arguments, let global, let local)? = result[index] else { continue }
            var prelude = ""
            for (i, expression) in chain.enumerated() { prelude += "#define ACT\(i)(v) \(expression)\n" }
            prelude += "#define ACT(v) " + chain.indices.reduce("v") { "ACT\($1)(\($0))" } + "\n"
            result[index] = .launch(kernel: kernel, source: prelude + text, options: options, arguments: arguments, global: global, local: local)
        }
        return result
    }

    let graph: Graph
    /// The work-group edge of the tiled kernels (TS×TS ≤ the device's largest work-group).
    let tile: Int

    /// The static float32 shape of `name`, or `.unsupported` saying why it has none.
    func shape(_ name: String) throws -> [Int] {
        if let t = graph.initializers[name] {
            guard t.dtype == .float32 else { throw unsupported("value '\(name)' is \(t.dtype); kiln.gpu runs float32 only") }
            return try checked(name, t.shape)
        }
        guard let type = graph.type(of: name)?.tensorType else { throw unsupported("value '\(name)' has no known tensor type") }
        guard type.dtype == .float32 else { throw unsupported("value '\(name)' is \(type.dtype); kiln.gpu runs float32 only") }
        guard let fixed = type.fixedShape else { throw unsupported("value '\(name)' has no static shape; kiln.gpu specializes kernels for static shapes") }
        return try checked(name, fixed)
    }

    /// `fixed` when it is non-empty and small enough for the kernels' 32-bit indexing.
    private func checked(_ name: String, _ fixed: [Int]) throws -> [Int] {
        guard fixed.allSatisfy({ $0 > 0 }) else { throw unsupported("value '\(name)' is empty") }
        // Checked: a hostile artifact's dims must not overflow; kernels index with 32-bit ints.
        var elements = 1
        for dim in fixed {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
            guard !overflow, product < Int(Int32.max) / 4 else { throw unsupported("value '\(name)' has 2^29 or more elements; kiln.gpu indexes with 32-bit integers") }
            elements = product
        }
        return fixed
    }

    private func unsupported(_ reason: String) -> KilnError { KilnError(.unsupported, reason) }

    private func int(_ node: Node, _ name: String, _ fallback: Int) throws -> Int {
        switch node.attributes[name] {
        case nil: return fallback
        case .int(let v)?: return v
        default: throw unsupported("\(node.op.name): attribute \(name) is not an integer")
        }
    }

    private func ints(_ node: Node, _ name: String) throws -> [Int]? {
        switch node.attributes[name] {
        case nil: return nil
        case .ints(let v)?: return v
        default: throw unsupported("\(node.op.name): attribute \(name) is not a list of integers")
        }
    }

    private func float(_ node: Node, _ name: String, _ fallback: Float) throws -> Float {
        switch node.attributes[name] {
        case nil: return fallback
        case .float(let v)?: guard v.isFinite else { throw unsupported("\(node.op.name): attribute \(name) is not finite") }; return v
        default: throw unsupported("\(node.op.name): attribute \(name) is not a float")
        }
    }

    private static func count(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    private static func list(_ values: [Int]) -> String { "{" + values.map(String.init).joined(separator: ",") + "}" }

    private static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for d in shape.indices.reversed() { s[d] = acc; acc *= shape[d] }
        return s
    }

    /// The lowering of `node`, or `.unsupported` with the reason kiln.gpu does not run it.
    func lower(_ node: Node) throws -> NodeLowering {
        guard node.op.domain.isEmpty || node.op.domain == "ai.onnx" else { throw unsupported("op \(node.op) is not supported by kiln.gpu") }
        let op = node.op.name
        guard node.subgraphs.isEmpty else { throw unsupported("\(op) has subgraphs") }
        guard let output = node.outputs.first, !output.isEmpty else { throw unsupported("\(op) has no output") }
        guard op == "LayerNormalization" || op == "Split" || node.outputs.dropFirst().allSatisfy(\.isEmpty) else { throw unsupported("\(op): only its first output is supported") }
        let y = try shape(output)
        if ["Max", "Min", "Sum", "Mean"].contains(op), node.inputs.count == 1, !node.inputs[0].isEmpty {
            guard try shape(node.inputs[0]) == y else { throw unsupported("\(op): shapes differ") }
            return .view(input: node.inputs[0], output: output)
        }
        if op == "Dropout" {
            // Inference: the identity, unless training_mode is given (then it is random, and refused).
            guard node.inputs.count < 3 || node.inputs[2].isEmpty else { throw unsupported("Dropout: training_mode is not supported") }
            guard try shape(node.inputs[0]) == y else { throw unsupported("Dropout: shapes differ") }
            return .view(input: node.inputs[0], output: output)
        }
        if Self.viewOps.contains(op) {
            guard let x = node.inputs.first, !x.isEmpty else { throw unsupported("\(op) has no data input") }
            guard try Self.count(shape(x)) == Self.count(y) else { throw unsupported("\(op): element count changes") }
            return .view(input: x, output: output)
        }
        let inputs = node.inputs.filter { !$0.isEmpty }
        if op == "Clip", [1, 2].contains(where: { node.inputs.count > $0 && !node.inputs[$0].isEmpty && graph.initializers[node.inputs[$0]] == nil }) {
            return try runtimeClip(node, y)
        }
        if Self.unaryOps[op] != nil || Self.attributeUnaryOps.contains(op) {
            let expression = try Self.unaryOps[op] ?? attributeExpression(node)
            guard inputs.count == 1 || (op == "Clip" && node.inputs.first.map { !$0.isEmpty } == true) else { throw unsupported("\(op) takes one input") }
            let n = Self.count(y)
            return .launch(kernel: "unary", source: "#define OP(v) \(expression)\n" + Kernels.unary, options: "-DCOUNT=\(n)",
                           arguments: [.value(node.inputs[0]), .value(output), .float(op == "LeakyRelu" ? try float(node, "alpha", 0.01) : 0)],
                           global: [n], local: nil)
        }
        if let expression = Self.binaryOps[op] {
            let variadic = ["Max", "Min", "Sum", "Mean"].contains(op) && node.inputs.count > 2
            guard (inputs.count == 2 && node.inputs.count == 2) || (variadic && inputs.count == node.inputs.count && inputs.count <= 16) else {
                throw unsupported("\(op): kiln.gpu runs it with two inputs (Max, Min, Sum, Mean: up to 16)")
            }
            let out = y.isEmpty ? [1] : y
            func broadcastStrides(_ s: [Int]) throws -> [Int] {
                guard s.count <= out.count else { throw unsupported("\(op): an input has a higher rank than the output") }
                let padded = [Int](repeating: 1, count: out.count - s.count) + s
                let natural = Self.strides(padded)
                return try out.indices.map { d in
                    if padded[d] == out[d] { return out[d] == 1 ? 0 : natural[d] }
                    guard padded[d] == 1 else { throw unsupported("\(op): shapes do not broadcast") }
                    return 0
                }
            }
            if variadic {
                // One generated kernel folding every input with the op's two-input expression (Mean: the sum, then / count).
                let combine = op == "Mean" ? Self.binaryOps["Sum"]! : expression
                var prelude = "#define OP(x, z) \(combine)\n#define RANK \(out.count)\n__constant int ODIM[RANK] = \(Self.list(out));\n"
                for (k, input) in inputs.enumerated() { prelude += "__constant int S\(k)[RANK] = \(Self.list(try broadcastStrides(shape(input))));\n" }
                let params = inputs.indices.map { "__global const T* x\($0)" }.joined(separator: ", ")
                let offsets = inputs.indices.map { "o\($0) = 0" }.joined(separator: ", ")
                let steps = inputs.indices.map { "o\($0) += c * S\($0)[d];" }.joined(separator: " ")
                let folds = inputs.indices.dropFirst().map { "        { const float x = acc, z = LD(x\($0), o\($0)); acc = OP(x, z); }\n" }.joined()
                let source = prelude + """
                #ifndef ACT
                #define ACT(v) (v)
                #endif
                __kernel void variadic(\(params), __global T* y) {
                    const int i = get_global_id(0);
                    if (i >= COUNT) return;
                    int r = i, \(offsets);
                    for (int d = RANK - 1; d >= 0; --d) { const int c = r % ODIM[d]; r /= ODIM[d]; \(steps) }
                    float acc = LD(x0, o0);
                \(folds)    ST(y, i, ACT(\(op == "Mean" ? "acc / \(inputs.count).0f" : "acc")));
                }

                """
                let n = Self.count(out)
                return .launch(kernel: "variadic", source: source, options: "-DCOUNT=\(n)",
                               arguments: inputs.map { .value($0) } + [.value(output)], global: [n], local: nil)
            }
            let a = try broadcastStrides(shape(inputs[0])), b = try broadcastStrides(shape(inputs[1]))
            let prelude = "#define OP(x, z) \(expression)\n#define RANK \(out.count)\n#define ODIM_INIT \(Self.list(out))\n#define ASTR_INIT \(Self.list(a))\n#define BSTR_INIT \(Self.list(b))\n"
            let n = Self.count(out)
            return .launch(kernel: "binary", source: prelude + Kernels.binary, options: "-DCOUNT=\(n)",
                           arguments: [.value(inputs[0]), .value(inputs[1]), .value(output)], global: [n], local: nil)
        }
        switch op {
        case "Concat": return try concat(node, y)
        case "Split": return try split(node)
        case "Pad": return try pad(node, y)
        case "Resize": return try resize(node, y)
        case "ConvTranspose": return try convTranspose(node, y)
        case "Slice": return try slice(node, y)
        case "Expand":
            let x = try shape(node.inputs[0])
            guard node.inputs.count == 2, !y.isEmpty, x.count <= y.count else { throw unsupported("Expand: shapes do not broadcast") }
            let padded = [Int](repeating: 1, count: y.count - x.count) + x, natural = Self.strides(padded)
            let istr = try y.indices.map { d -> Int in
                if padded[d] == y[d] { return natural[d] }
                guard padded[d] == 1 else { throw unsupported("Expand: shapes do not broadcast") }
                return 0
            }
            return stridedCopy(node, y, istr: istr, base: 0)
        case _ where Self.reductions[op] != nil: return try reduce(node, y)
        case "BatchNormalization": return try batchNormalization(node, y)
        case "LayerNormalization": return try layerNormalization(node, y)
        case "MatMul": return try matMul(node, y)
        case "Gemm": return try gemm(node, y)
        case "Conv": return try conv(node, y)
        case "MaxPool", "AveragePool": return try pool(node, y)
        case "GlobalAveragePool", "GlobalMaxPool":
            let x = try shape(node.inputs[0])
            guard x.count >= 3 else { throw unsupported("\(op) needs rank ≥ 3") }
            let planes = x[0] * x[1]
            return .launch(kernel: "global_pool", source: Kernels.globalPool,
                           options: "-DCOUNT=\(planes) -DS=\(Self.count(x) / planes) -DIS_MAX=\(op == "GlobalMaxPool" ? 1 : 0)",
                           arguments: [.value(node.inputs[0]), .value(output)], global: [planes], local: nil)
        case "Softmax", "LogSoftmax":
            let rank = y.count
            var axis = try int(node, "axis", -1)
            if axis < 0 { axis += rank }
            guard axis >= 0, axis < rank else { throw unsupported("\(op): axis out of range") }
            let outer = Self.count(Array(y[..<axis])), inner = Self.count(Array(y[(axis + 1)...]))
            return .launch(kernel: "softmax", source: Kernels.softmax,
                           options: "-DOUTER=\(outer) -DINNER=\(inner) -DA=\(y[axis]) -DIS_LOG=\(op == "LogSoftmax" ? 1 : 0)",
                           arguments: [.value(node.inputs[0]), .value(output)], global: [outer * inner], local: nil)
        case "Transpose":
            let x = try shape(node.inputs[0])
            let perm = try ints(node, "perm") ?? Array(x.indices.reversed())
            guard perm.count == x.count, Set(perm) == Set(x.indices) else { throw unsupported("Transpose: perm is not a permutation of the input's axes") }
            let inStrides = Self.strides(x)
            let out = y.isEmpty ? [1] : y
            let istr = y.isEmpty ? [0] : perm.map { inStrides[$0] }
            let prelude = "#define RANK \(out.count)\n#define ODIM_INIT \(Self.list(out))\n#define ISTR_INIT \(Self.list(istr))\n"
            return .launch(kernel: "transpose", source: prelude + Kernels.transpose, options: "-DCOUNT=\(Self.count(out))",
                           arguments: [.value(node.inputs[0]), .value(output)], global: [Self.count(out)], local: nil)
        default:
            throw unsupported("op \(op) is not supported by kiln.gpu (supported: \(Self.supported.joined(separator: ", ")))")
        }
    }

    /// A float as an OpenCL C literal (the shortest decimal that reads back as the same float).
    /// Infinities (a Clip bound of ±inf, as exporters write an open side) are INFINITY, never `inf`.
    private static func literal(_ v: Float) -> String { v.isInfinite ? (v < 0 ? "(-INFINITY)" : "INFINITY") : "((float)\(v))" }

    /// The float in a constant scalar input `name` (a bound of Clip), or nil when the input is absent.
    private func constantScalar(_ node: Node, _ index: Int) throws -> Float? {
        guard node.inputs.count > index, !node.inputs[index].isEmpty else { return nil }
        let name = node.inputs[index]
        guard let t = graph.initializers[name], t.dtype == .float32, t.shape.reduce(1, *) == 1 else {
            throw unsupported("\(node.op.name): kiln.gpu needs input '\(name)' to be a float32 constant scalar")
        }
        let v = t.elements(as: Float.self)[0]
        guard !v.isNaN else { throw unsupported("\(node.op.name): bound '\(name)' is NaN") }
        return v
    }

    /// The expression of a unary op with attributes, their values baked in as literals.
    private func attributeExpression(_ node: Node) throws -> String {
        let L = Self.literal
        switch node.op.name {
        case "Elu":
            return "(v >= 0.0f ? v : \(L(try float(node, "alpha", 1))) * (exp(v) - 1.0f))"
        case "Selu":
            let a = try float(node, "alpha", 1.67326319217681884765625), g = try float(node, "gamma", 1.05070102214813232421875)
            return "(v > 0.0f ? \(L(g)) * v : \(L(g)) * (\(L(a)) * exp(v) - \(L(a))))"
        case "HardSigmoid":
            return "fmax(0.0f, fmin(1.0f, \(L(try float(node, "alpha", 0.2))) * v + \(L(try float(node, "beta", 0.5)))))"
        case "HardSwish":
            return "(v * fmax(0.0f, fmin(1.0f, v * (1.0f / 6.0f) + 0.5f)))"
        case "ThresholdedRelu":
            return "(v > \(L(try float(node, "alpha", 1))) ? v : 0.0f)"
        case "Celu":
            let a = try float(node, "alpha", 1)
            guard a != 0 else { throw unsupported("Celu: alpha is 0") }
            return "(fmax(0.0f, v) + fmin(0.0f, \(L(a)) * (exp(v / \(L(a))) - 1.0f)))"
        case "Gelu":
            let approximate: String
            switch node.attributes["approximate"] {
            case nil: approximate = "none"
            case .string(let s)?: approximate = s
            default: throw unsupported("Gelu: approximate is not a string")
            }
            switch approximate {
            case "none": return "(0.5f * v * (1.0f + erf(v * 0.70710678118654752f)))"
            case "tanh": return "(0.5f * v * (1.0f + tanh(0.79788456080286536f * (v + 0.044715f * v * v * v))))"
            default: throw unsupported("Gelu: approximate '\(approximate)' is not supported")
            }
        case "Shrink":
            let lambd = try float(node, "lambd", 0.5), bias = try float(node, "bias", 0)
            return "(v < -\(L(lambd)) ? v + \(L(bias)) : v > \(L(lambd)) ? v - \(L(bias)) : 0.0f)"
        case "Clip":
            let lo = try constantScalar(node, 1), hi = try constantScalar(node, 2)
            // ONNX Clip: min(max(x, lo), hi); NaN stays NaN.
            let low = lo.map { "(v < \(L($0)) ? \(L($0)) : v)" } ?? "v"
            return hi.map { "((\(low)) > \(L($0)) ? \(L($0)) : (\(low)))" } ?? "(\(low))"
        default:
            throw unsupported("op \(node.op.name) is not supported by kiln.gpu")
        }
    }

    /// A launch of the `transpose` kernel reading element i of the output from `base` + Σ coordinate·istr.
    private func stridedCopy(_ node: Node, _ y: [Int], istr: [Int], base: Int) -> NodeLowering {
        let prelude = "#define RANK \(y.count)\n#define ODIM_INIT \(Self.list(y))\n#define ISTR_INIT \(Self.list(istr))\n"
        return .launch(kernel: "transpose", source: prelude + Kernels.transpose, options: "-DCOUNT=\(Self.count(y)) -DBASE=\(base)",
                       arguments: [.value(node.inputs[0]), .value(node.outputs[0])], global: [Self.count(y)], local: nil)
    }

    /// The int64 values of constant input `index`, or nil when it is absent.
    private func constantInts(_ node: Node, _ index: Int) throws -> [Int]? {
        guard node.inputs.count > index, !node.inputs[index].isEmpty else { return nil }
        guard let t = graph.initializers[node.inputs[index]], t.dtype == .int64 || t.dtype == .int32, t.shape.count <= 1 else {
            throw unsupported("\(node.op.name): kiln.gpu needs input '\(node.inputs[index])' to be a constant list of integers")
        }
        return t.dtype == .int64 ? t.elements(as: Int64.self).map { Int(clamping: $0) } : t.elements(as: Int32.self).map { Int($0) }
    }

    /// Slice with constant starts, ends, axes and steps: a strided copy whose start is the base offset.
    private func slice(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let x = try shape(node.inputs[0])
        guard let starts = try constantInts(node, 1), let ends = try constantInts(node, 2), starts.count == ends.count else {
            throw unsupported("Slice: kiln.gpu needs constant starts and ends of one length")
        }
        let axes = try constantInts(node, 3) ?? Array(starts.indices)
        let steps = try constantInts(node, 4) ?? [Int](repeating: 1, count: starts.count)
        guard axes.count == starts.count, steps.count == starts.count, steps.allSatisfy({ $0 != 0 }), !y.isEmpty, y.count == x.count else {
            throw unsupported("Slice: malformed axes or steps")
        }
        var begin = [Int](repeating: 0, count: x.count), step = [Int](repeating: 1, count: x.count), seen = Set<Int>()
        for (k, a) in axes.enumerated() {
            let axis = a < 0 ? a + x.count : a
            guard axis >= 0, axis < x.count, seen.insert(axis).inserted else { throw unsupported("Slice: axes out of range or repeated") }
            let dim = x[axis]
            var start = starts[k] < 0 ? starts[k] &+ dim : starts[k], end = ends[k] < 0 ? ends[k] &+ dim : ends[k]
            if steps[k] > 0 {
                start = min(max(start, 0), dim); end = min(max(end, 0), dim)
            } else {
                start = min(max(start, 0), dim - 1); end = min(max(end, -1), dim - 1)
            }
            let size = steps[k] > 0 ? max(0, (end - start + steps[k] - 1) / steps[k]) : max(0, (start - end + (-steps[k]) - 1) / (-steps[k]))
            guard size == y[axis] else { throw unsupported("Slice: the output shape does not match the slice") }
            begin[axis] = start
            step[axis] = steps[k]
        }
        let strides = Self.strides(x)
        let base = x.indices.reduce(0) { $0 + begin[$1] * strides[$1] }
        return stridedCopy(node, y, istr: x.indices.map { step[$0] * strides[$0] }, base: base)
    }

    /// Concat of any number of inputs: a kernel generated for their count, one work-item per output element.
    private func concat(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let parts = node.inputs
        guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty }), parts.count <= 64 else { throw unsupported("Concat: kiln.gpu needs 1 to 64 present inputs") }
        var axis = try int(node, "axis", 0)
        if axis < 0 { axis += y.count }
        guard axis >= 0, axis < y.count else { throw unsupported("Concat: axis out of range") }
        let inner = Self.count(Array(y[(axis + 1)...])), total = y[axis]
        var body = "", start = 0
        for (k, part) in parts.enumerated() {
            let s = try shape(part)
            guard s.count == y.count, s.indices.allSatisfy({ $0 == axis || s[$0] == y[$0] }) else { throw unsupported("Concat: input shapes do not agree") }
            let size = s[axis]
            body += "    \(k == 0 ? "" : "else ")if (a < \(start + size)) v = LD(x\(k), (o * \(size) + (a - \(start))) * INNER + r);\n"
            start += size
        }
        guard start == total else { throw unsupported("Concat: sizes along the axis do not add up") }
        let params = parts.indices.map { "__global const T* x\($0)" }.joined(separator: ", ")
        let source = """
        #ifndef ACT
        #define ACT(v) (v)
        #endif
        __kernel void concat(\(params), __global T* y) {
            const int i = get_global_id(0);
            if (i >= COUNT) return;
            const int r = i % INNER, a = (i / INNER) % AT, o = i / (INNER * AT);
            float v = 0.0f;
        \(body)    ST(y, i, ACT(v));
        }

        """
        let n = Self.count(y)
        return .launch(kernel: "concat", source: source, options: "-DCOUNT=\(n) -DINNER=\(inner) -DAT=\(total)",
                       arguments: parts.map { .value($0) } + [.value(node.outputs[0])], global: [n], local: nil)
    }

    /// Reductions over constant axes (the attribute, or a constant second input): one work-item per output
    /// element, looping over the reduced elements with their strides.
    private func reduce(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let op = node.op.name
        let x = try shape(node.inputs[0])
        var axes: [Int]
        if node.inputs.count > 1, !node.inputs[1].isEmpty {
            guard let t = graph.initializers[node.inputs[1]], t.dtype == .int64, t.shape.count <= 1 else {
                throw unsupported("\(op): kiln.gpu needs the axes to be a constant")
            }
            axes = t.elements(as: Int64.self).map { Int($0) }
        } else {
            axes = try ints(node, "axes") ?? []
        }
        if axes.isEmpty {
            if try int(node, "noop_with_empty_axes", 0) != 0 {
                guard x == y else { throw unsupported("\(op): shapes differ") }
                return .view(input: node.inputs[0], output: node.outputs[0])
            }
            axes = Array(x.indices)
        }
        axes = axes.map { $0 < 0 ? $0 + x.count : $0 }
        guard axes.allSatisfy({ $0 >= 0 && $0 < x.count }), Set(axes).count == axes.count else { throw unsupported("\(op): axes out of range or repeated") }
        let strides = Self.strides(x)
        let kept = x.indices.filter { !axes.contains($0) }, reduced = x.indices.filter { axes.contains($0) }
        let odim = kept.isEmpty ? [1] : kept.map { x[$0] }, ostr = kept.isEmpty ? [0] : kept.map { strides[$0] }
        let rdim = reduced.map { x[$0] }, rstr = reduced.map { strides[$0] }
        let n = Self.count(odim)
        guard Self.count(y) == n else { throw unsupported("\(op): output shape does not match the reduction") }
        let (initial, accumulate, finish) = Self.reductions[op]!
        let prelude = "#define ORANK \(odim.count)\n#define RRANK \(rdim.count)\n#define ODIM_INIT \(Self.list(odim))\n#define OSTR_INIT \(Self.list(ostr))\n"
            + "#define RDIM_INIT \(Self.list(rdim))\n#define RSTR_INIT \(Self.list(rstr))\n#define INIT \(initial)\n#define ACC(a, v) \(accumulate)\n#define FIN(a) \(finish)\n"
        return .launch(kernel: "reduce", source: prelude + Kernels.reduce, options: "-DCOUNT=\(n) -DRCOUNT=\(Self.count(rdim))",
                       arguments: [.value(node.inputs[0]), .value(node.outputs[0])], global: [n], local: nil)
    }

    /// BatchNormalization (inference): y = (x − mean[c]) / sqrt(var[c] + ε) · scale[c] + B[c] over (N, C, …).
    private func batchNormalization(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        guard node.inputs.count == 5, node.inputs.allSatisfy({ !$0.isEmpty }) else { throw unsupported("BatchNormalization needs its five inputs") }
        guard try int(node, "training_mode", 0) == 0 else { throw unsupported("BatchNormalization: training_mode is not supported") }
        let x = try shape(node.inputs[0])
        guard x.count >= 2, x == y else { throw unsupported("BatchNormalization: input of rank ≥ 2 expected") }
        for p in node.inputs.dropFirst() { guard try shape(p) == [x[1]] else { throw unsupported("BatchNormalization: parameters must have one value per channel") } }
        let n = Self.count(x), inner = Self.count(Array(x.dropFirst(2)))
        return .launch(kernel: "batch_norm", source: Kernels.batchNorm, options: "-DCOUNT=\(n) -DCH=\(x[1]) -DINNER=\(inner)",
                       arguments: node.inputs.map { .value($0) } + [.value(node.outputs[0]), .float(try float(node, "epsilon", 1e-5))],
                       global: [n], local: nil)
    }

    /// LayerNormalization over the dims from `axis` on: one work-item per row; scale (and bias) hold one
    /// value per element of a row.
    private func layerNormalization(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let x = try shape(node.inputs[0])
        guard node.inputs.count >= 2, !node.inputs[1].isEmpty, x == y, !x.isEmpty else { throw unsupported("LayerNormalization needs X and Scale") }
        var axis = try int(node, "axis", -1)
        if axis < 0 { axis += x.count }
        guard axis >= 0, axis < x.count else { throw unsupported("LayerNormalization: axis out of range") }
        guard try int(node, "stash_type", 1) == 1 else { throw unsupported("LayerNormalization: stash_type other than float is not supported") }
        let rows = Self.count(Array(x[..<axis])), width = Self.count(Array(x[axis...]))
        guard try Self.count(shape(node.inputs[1])) == width else { throw unsupported("LayerNormalization: Scale must have one value per normalized element") }
        var bias: String? = nil
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            guard try Self.count(shape(node.inputs[2])) == width else { throw unsupported("LayerNormalization: B must have one value per normalized element") }
            bias = node.inputs[2]
        }
        // The optional Mean and InvStdDev outputs: one value per row.
        var extra: [String?] = [nil, nil]
        for k in 1...2 where node.outputs.count > k && !node.outputs[k].isEmpty {
            guard try Self.count(shape(node.outputs[k])) == rows else { throw unsupported("LayerNormalization: output #\(k) is not one value per row") }
            extra[k - 1] = node.outputs[k]
        }
        guard node.outputs.count <= 3 else { throw unsupported("LayerNormalization has at most three outputs") }
        let options = "-DROWS=\(rows) -DWIDTH=\(width) -DHAS_BIAS=\(bias == nil ? 0 : 1) -DHAS_MEAN=\(extra[0] == nil ? 0 : 1) -DHAS_INV=\(extra[1] == nil ? 0 : 1)"
        return .launch(kernel: "layer_norm", source: Kernels.layerNorm, options: options,
                       arguments: [.value(node.inputs[0]), .value(node.inputs[1]), .value(bias ?? node.inputs[1]),
                                   .value(extra[0] ?? node.outputs[0]), .value(extra[1] ?? node.outputs[0]), .value(node.outputs[0]),
                                   .float(try float(node, "epsilon", 1e-5))],
                       global: [rows], local: nil)
    }

    private func gemmLaunch(a: String, b: String, c: String?, output: String, m: Int, n: Int, k: Int, batch: Int,
                            strides: (sam: Int, sak: Int, sbk: Int, sbn: Int, abs: Int, bbs: Int, csm: Int, csn: Int),
                            alpha: Float, beta: Float) -> NodeLowering {
        let s = strides
        let options = "-DTS=\(tile) -DM=\(m) -DN=\(n) -DK=\(k) -DSAM=\(s.sam) -DSAK=\(s.sak) -DSBK=\(s.sbk) -DSBN=\(s.sbn) -DABS=\(s.abs) -DBBS=\(s.bbs) -DHAS_C=\(c == nil ? 0 : 1) -DCSM=\(s.csm) -DCSN=\(s.csn)"
        let round = { (v: Int) in (v + tile - 1) / tile * tile }
        return .launch(kernel: "gemm", source: Kernels.gemm, options: options,
                       arguments: [.value(a), .value(b), .value(c ?? a), .value(output), .float(alpha), .float(beta)],
                       global: [round(n), round(m), batch], local: [tile, tile, 1])
    }

    private func matMul(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let a = try shape(node.inputs[0]), b = try shape(node.inputs[1])
        guard a.count >= 2, b.count >= 2 else { throw unsupported("MatMul: kiln.gpu needs both inputs of rank ≥ 2") }
        let m = a[a.count - 2], k = a[a.count - 1], n = b[b.count - 1]
        guard b[b.count - 2] == k else { throw unsupported("MatMul: inner dims differ") }
        let batchDims = Array(y.dropLast(2)), batch = Self.count(batchDims)
        func batchStride(_ s: [Int], _ matrix: Int) throws -> Int {
            let dims = Array(s.dropLast(2))
            if Self.count(dims) == 1 { return 0 }
            guard [Int](repeating: 1, count: batchDims.count - dims.count) + dims == batchDims else {
                throw unsupported("MatMul: kiln.gpu broadcasts a batch only when it is shared whole")
            }
            return matrix
        }
        return gemmLaunch(a: node.inputs[0], b: node.inputs[1], c: nil, output: node.outputs[0], m: m, n: n, k: k, batch: batch,
                          strides: (k, 1, n, 1, try batchStride(a, m * k), try batchStride(b, k * n), 0, 0), alpha: 1, beta: 0)
    }

    private func gemm(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let a = try shape(node.inputs[0]), b = try shape(node.inputs[1])
        guard a.count == 2, b.count == 2, y.count == 2 else { throw unsupported("Gemm: inputs must be matrices") }
        let transA = try int(node, "transA", 0) != 0, transB = try int(node, "transB", 0) != 0
        let m = transA ? a[1] : a[0], k = transA ? a[0] : a[1], n = transB ? b[0] : b[1]
        guard (transB ? b[1] : b[0]) == k else { throw unsupported("Gemm: inner dims differ") }
        var c: String? = nil, csm = 0, csn = 0
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            let cs = try shape(node.inputs[2])
            guard cs.count <= 2 else { throw unsupported("Gemm: C has rank > 2") }
            let padded = [Int](repeating: 1, count: 2 - cs.count) + cs
            guard padded[0] == 1 || padded[0] == m, padded[1] == 1 || padded[1] == n else { throw unsupported("Gemm: C does not broadcast to (M, N)") }
            c = node.inputs[2]
            csm = padded[0] == 1 ? 0 : padded[1]
            csn = padded[1] == 1 ? 0 : 1
        }
        return gemmLaunch(a: node.inputs[0], b: node.inputs[1], c: c, output: node.outputs[0], m: m, n: n, k: k, batch: 1,
                          strides: (transA ? 1 : k, transA ? m : 1, transB ? 1 : n, transB ? k : 1, 0, 0, csm, csn),
                          alpha: try float(node, "alpha", 1), beta: try float(node, "beta", 1))
    }

    /// Pads (begin, end) per spatial dim from explicit `pads` or `auto_pad` and the static output size.
    private func pads(_ node: Node, input: [Int], output: [Int], kernel: [Int], strides: [Int], dilations: [Int]) throws -> [(Int, Int)] {
        let spatial = kernel.count
        let autoPad: String
        switch node.attributes["auto_pad"] {
        case nil: autoPad = "NOTSET"
        case .string(let s)?: autoPad = s
        default: throw unsupported("\(node.op.name): auto_pad is not a string")
        }
        switch autoPad {
        case "NOTSET", "":
            let p = try ints(node, "pads") ?? [Int](repeating: 0, count: 2 * spatial)
            guard p.count == 2 * spatial, p.allSatisfy({ $0 >= 0 }) else { throw unsupported("\(node.op.name): pads are malformed") }
            return (0..<spatial).map { (p[$0], p[$0 + spatial]) }
        case "VALID": return [(Int, Int)](repeating: (0, 0), count: spatial)
        case "SAME_UPPER", "SAME_LOWER":
            return (0..<spatial).map { d in
                let total = max(0, (output[d] - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 - input[d])
                let small = total / 2
                return autoPad == "SAME_UPPER" ? (small, total - small) : (total - small, small)
            }
        default: throw unsupported("\(node.op.name): auto_pad \(autoPad) is not supported")
        }
    }

    private func conv(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        var x = try shape(node.inputs[0]), w = try shape(node.inputs[1]), y = y
        var node = node
        if x.count == 3, w.count == 3, y.count == 3 {
            // A 1-D convolution is the 2-D one over rows of height 1 (the same memory layout): the
            // attributes gain a leading 1 (strides, dilations, kernel) or 0 (pads) for that height.
            x.insert(1, at: 2); w.insert(1, at: 2); y.insert(1, at: 2)
            for (name, value) in [("strides", 1), ("dilations", 1), ("kernel_shape", 1)] {
                if let v = try ints(node, name) { node.attributes[name] = .ints([value] + v) }
            }
            if let p = try ints(node, "pads") {
                guard p.count == 2 else { throw unsupported("Conv: pads are malformed") }
                node.attributes["pads"] = .ints([0, p[0], 0, p[1]])
            }
        }
        guard x.count == 4, w.count == 4, y.count == 4 else { throw unsupported("Conv: kiln.gpu runs 1-D and 2-D convolutions (rank-3 and rank-4 tensors) only") }
        let group = try int(node, "group", 1)
        guard group >= 1, x[1] % group == 0, w[0] % group == 0, w[1] * group == x[1], y[1] == w[0] else {
            throw unsupported("Conv: channels and group do not agree")
        }
        let kernel = [w[2], w[3]]
        if let ks = try ints(node, "kernel_shape"), ks != kernel { throw unsupported("Conv: kernel_shape differs from the weight's") }
        let strides = try ints(node, "strides") ?? [1, 1], dilations = try ints(node, "dilations") ?? [1, 1]
        guard strides.count == 2, dilations.count == 2, strides.allSatisfy({ $0 >= 1 }), dilations.allSatisfy({ $0 >= 1 }) else {
            throw unsupported("Conv: strides or dilations are malformed")
        }
        let p = try pads(node, input: [x[2], x[3]], output: [y[2], y[3]], kernel: kernel, strides: strides, dilations: dilations)
        var bias: String? = nil
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            guard try shape(node.inputs[2]) == [w[0]] else { throw unsupported("Conv: bias is not one value per output channel") }
            bias = node.inputs[2]
        }
        let mg = w[0] / group, kk = w[1] * w[2] * w[3], pixels = y[2] * y[3]
        let options = "-DTS=\(tile) -DG=\(group) -DC=\(x[1]) -DCG=\(w[1]) -DH=\(x[2]) -DW=\(x[3]) -DM=\(w[0]) -DMG=\(mg) -DKK=\(kk) -DKH=\(w[2]) -DKW=\(w[3]) -DOW=\(y[3]) -DP=\(pixels) -DSH=\(strides[0]) -DSW=\(strides[1]) -DDH=\(dilations[0]) -DDW=\(dilations[1]) -DPT=\(p[0].0) -DPL=\(p[1].0) -DHAS_BIAS=\(bias == nil ? 0 : 1)"
        let round = { (v: Int) in (v + tile - 1) / tile * tile }
        return .launch(kernel: "conv", source: Kernels.conv, options: options,
                       arguments: [.value(node.inputs[0]), .value(node.inputs[1]), .value(bias ?? node.inputs[1]), .value(node.outputs[0])],
                       global: [round(pixels), round(mg), x[0] * group], local: [tile, tile, 1])
    }

    private func pool(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let x = try shape(node.inputs[0])
        guard x.count == 4, y.count == 4 else { throw unsupported("\(node.op.name): kiln.gpu pools 2-D (rank-4 tensors) only") }
        guard let kernel = try ints(node, "kernel_shape"), kernel.count == 2, kernel.allSatisfy({ $0 >= 1 }) else {
            throw unsupported("\(node.op.name): kernel_shape must give two sizes")
        }
        guard try int(node, "storage_order", 0) == 0 else { throw unsupported("MaxPool: storage_order 1 is not supported") }
        let strides = try ints(node, "strides") ?? [1, 1], dilations = try ints(node, "dilations") ?? [1, 1]
        guard strides.count == 2, dilations.count == 2, strides.allSatisfy({ $0 >= 1 }), dilations.allSatisfy({ $0 >= 1 }) else {
            throw unsupported("\(node.op.name): strides or dilations are malformed")
        }
        let p = try pads(node, input: [x[2], x[3]], output: [y[2], y[3]], kernel: kernel, strides: strides, dilations: dilations)
        let isMax = node.op.name == "MaxPool"
        let countPad = isMax ? 0 : try int(node, "count_include_pad", 0)
        let n = Self.count(y)
        let options = "-DCOUNT=\(n) -DH=\(x[2]) -DW=\(x[3]) -DOH=\(y[2]) -DOW=\(y[3]) -DKH=\(kernel[0]) -DKW=\(kernel[1]) -DSH=\(strides[0]) -DSW=\(strides[1]) -DDH=\(dilations[0]) -DDW=\(dilations[1]) -DPT=\(p[0].0) -DPB=\(p[0].1) -DPL=\(p[1].0) -DPR=\(p[1].1) -DIS_MAX=\(isMax ? 1 : 0) -DCOUNT_PAD=\(countPad != 0 ? 1 : 0)"
        return .launch(kernel: "pool", source: Kernels.pool, options: options,
                       arguments: [.value(node.inputs[0]), .value(node.outputs[0])], global: [n], local: nil)
    }

    /// Split along an axis into its outputs' sizes (their static shapes, checked against a constant `split`
    /// input when there is one): one work-item per input element, writing it to the output it falls in.
    private func split(_ node: Node) throws -> NodeLowering {
        let x = try shape(node.inputs[0])
        var axis = try int(node, "axis", 0)
        if axis < 0 { axis += x.count }
        guard axis >= 0, axis < x.count else { throw unsupported("Split: axis out of range") }
        let outputs = node.outputs
        guard !outputs.isEmpty, outputs.count <= 64, outputs.allSatisfy({ !$0.isEmpty }), Set(outputs).count == outputs.count else {
            throw unsupported("Split: kiln.gpu needs 1 to 64 distinct outputs, all of them used")
        }
        var sizes: [Int] = []
        for output in outputs {
            let s = try shape(output)
            guard s.count == x.count, s.indices.allSatisfy({ $0 == axis || s[$0] == x[$0] }) else { throw unsupported("Split: output shapes do not agree with the input") }
            sizes.append(s[axis])
        }
        guard sizes.reduce(0, +) == x[axis] else { throw unsupported("Split: sizes along the axis do not add up") }
        if let given = try constantInts(node, 1), given != sizes { throw unsupported("Split: the split input disagrees with the output shapes") }
        var body = "", start = 0
        for (k, size) in sizes.enumerated() {
            body += "    \(k == 0 ? "" : "else ")if (a < \(start + size)) ST(y\(k), (o * \(size) + (a - \(start))) * INNER + r, v);\n"
            start += size
        }
        let params = outputs.indices.map { "__global T* y\($0)" }.joined(separator: ", ")
        let source = """
        __kernel void split(__global const T* x, \(params)) {
            const int i = get_global_id(0);
            if (i >= COUNT) return;
            const int r = i % INNER, a = (i / INNER) % AT, o = i / (INNER * AT);
            const float v = LD(x, i);
        \(body)}

        """
        let n = Self.count(x)
        return .launch(kernel: "split", source: source, options: "-DCOUNT=\(n) -DINNER=\(Self.count(Array(x[(axis + 1)...]))) -DAT=\(x[axis])",
                       arguments: [.value(node.inputs[0])] + outputs.map { .value($0) }, global: [n], local: nil)
    }

    /// A string attribute, or `fallback` when absent.
    private func text(_ node: Node, _ name: String, _ fallback: String) throws -> String {
        switch node.attributes[name] {
        case nil: return fallback
        case .string(let s)?: return s
        default: throw unsupported("\(node.op.name): attribute \(name) is not a string")
        }
    }

    /// Pad with constant pads (and axes): constant, edge, reflect or wrap; one work-item per output element
    /// maps each coordinate back into the input.
    private func pad(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let x = try shape(node.inputs[0])
        guard x.count == y.count, !x.isEmpty else { throw unsupported("Pad: input and output ranks differ") }
        let mode = try text(node, "mode", "constant")
        guard ["constant", "edge", "reflect", "wrap"].contains(mode) else { throw unsupported("Pad: mode '\(mode)' is not supported") }
        guard let pads = try constantInts(node, 1) else { throw unsupported("Pad: kiln.gpu needs constant pads") }
        let axes = try (constantInts(node, 3) ?? Array(x.indices)).map { $0 < 0 ? $0 + x.count : $0 }
        guard axes.allSatisfy({ $0 >= 0 && $0 < x.count }), Set(axes).count == axes.count, pads.count == 2 * axes.count,
              pads.allSatisfy({ abs($0) < 1 << 30 }) else {
            throw unsupported("Pad: pads or axes are malformed")
        }
        var begin = [Int](repeating: 0, count: x.count), end = begin
        for (j, a) in axes.enumerated() { begin[a] = pads[j]; end[a] = pads[j + axes.count] }
        for d in x.indices {
            guard x[d] + begin[d] + end[d] == y[d] else { throw unsupported("Pad: the output shape does not match the pads") }
            guard mode == "constant" || (begin[d] >= 0 && end[d] >= 0) else { throw unsupported("Pad: negative pads in mode \(mode)") }
            guard mode != "reflect" || (begin[d] < x[d] && end[d] < x[d]) else { throw unsupported("Pad: reflect pads as wide as the input") }
        }
        let value = mode == "constant" ? try constantScalar(node, 2) ?? 0 : 0
        let istr = Self.strides(x)
        var body = ""
        for d in x.indices.reversed() {
            let n = x[d]
            body += "    { const int c = r % \(y[d]); r /= \(y[d]); int q = c - (\(begin[d]));\n"
            if begin[d] != 0 || end[d] != 0 {
                switch mode {
                case "constant": body += "      if (q < 0 || q >= \(n)) inside = 0;\n"
                case "edge": body += "      q = clamp(q, 0, \(n - 1));\n"
                case "reflect": body += "      if (q < 0) q = -q; else if (q >= \(n)) q = \(2 * (n - 1)) - q;\n"
                default: body += "      q = ((q % \(n)) + \(n)) % \(n);\n"
                }
            }
            body += "      src += q * \(istr[d]); }\n"
        }
        let source = """
        #ifndef ACT
        #define ACT(v) (v)
        #endif
        __kernel void pad(__global const T* x, __global T* y) {
            const int i = get_global_id(0);
            if (i >= COUNT) return;
            int r = i, src = 0, inside = 1;
        \(body)    ST(y, i, ACT(inside ? LD(x, src) : \(Self.literal(value))));
        }

        """
        let n = Self.count(y)
        return .launch(kernel: "pad", source: source, options: "-DCOUNT=\(n)",
                       arguments: [.value(node.inputs[0]), .value(node.outputs[0])], global: [n], local: nil)
    }

    /// Resize, nearest or linear (without antialias), with constant scales or sizes: the source indices
    /// (and linear weights) of every output coordinate along each resized axis are computed here in double,
    /// as ONNX defines them, and baked into the kernel as tables; linear interpolates over up to 3 axes.
    private func resize(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let x = try shape(node.inputs[0])
        guard x.count == y.count, !x.isEmpty else { throw unsupported("Resize: input and output ranks differ") }
        let mode = try text(node, "mode", "nearest"), transform = try text(node, "coordinate_transformation_mode", "half_pixel")
        let nearest = try text(node, "nearest_mode", "round_prefer_floor")
        guard mode == "nearest" || mode == "linear" else { throw unsupported("Resize: mode '\(mode)' is not supported") }
        guard ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"].contains(transform) else {
            throw unsupported("Resize: coordinate_transformation_mode '\(transform)' is not supported")
        }
        guard ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(nearest) else { throw unsupported("Resize: nearest_mode '\(nearest)' is not supported") }
        guard try int(node, "antialias", 0) == 0 else { throw unsupported("Resize: antialias is not supported") }
        guard try text(node, "keep_aspect_ratio_policy", "stretch") == "stretch" else { throw unsupported("Resize: keep_aspect_ratio_policy other than stretch") }
        let axes = try (ints(node, "axes") ?? Array(x.indices)).map { $0 < 0 ? $0 + x.count : $0 }
        guard axes.allSatisfy({ $0 >= 0 && $0 < x.count }), Set(axes).count == axes.count else { throw unsupported("Resize: axes out of range or repeated") }
        var scales = [Double](repeating: 1, count: x.count)
        if node.inputs.count > 3, !node.inputs[3].isEmpty {
            guard let sizes = try constantInts(node, 3), sizes.count == axes.count else { throw unsupported("Resize: kiln.gpu needs constant sizes, one per axis") }
            for (i, a) in axes.enumerated() {
                guard sizes[i] == y[a] else { throw unsupported("Resize: the output shape does not match sizes") }
                scales[a] = Double(y[a]) / Double(x[a])
            }
        } else if node.inputs.count > 2, !node.inputs[2].isEmpty {
            guard let t = graph.initializers[node.inputs[2]], t.dtype == .float32, t.shape.count <= 1, t.shape.reduce(1, *) == axes.count else {
                throw unsupported("Resize: kiln.gpu needs constant scales, one per axis")
            }
            for (i, given) in t.elements(as: Float.self).enumerated() {
                let s = Double(given), a = axes[i]
                guard s > 0, s * Double(x[a]) < 1e12, Int((s * Double(x[a])).rounded(.down)) == y[a] else {
                    throw unsupported("Resize: the output shape does not match the scales")
                }
                scales[a] = s
            }
        } else {
            throw unsupported("Resize: neither scales nor sizes is given")
        }
        for d in x.indices where !axes.contains(d) { guard x[d] == y[d] else { throw unsupported("Resize: an axis not resized changes size") } }
        let resized = x.indices.filter { abs(scales[$0] - 1) >= 1e-9 || x[$0] != y[$0] }
        guard mode == "nearest" || resized.count <= 3 else { throw unsupported("Resize: linear over more than 3 axes") }
        guard resized.reduce(0, { $0 + y[$1] * (mode == "linear" ? 3 : 1) }) <= 8192 else { throw unsupported("Resize: the output is too large for kiln.gpu's index tables") }
        var tables = "", body = ""
        let istr = Self.strides(x)
        for d in x.indices.reversed() {
            body += "    const int c\(d) = r % \(y[d]); r /= \(y[d]);\n"
            guard resized.contains(d) else { continue }
            let taps = Self.resizeTaps(input: x[d], output: y[d], scale: scales[d], transform: transform)
            if mode == "nearest" {
                let index = taps.map { tap -> Int in
                    let up: Bool
                    switch nearest {
                    case "round_prefer_floor": up = tap.ratio > 0.5
                    case "round_prefer_ceil": up = tap.ratio >= 0.5
                    case "floor": up = tap.ratio == 1
                    default: up = true
                    }
                    return min(max(tap.start + (up ? 1 : 0), 0), x[d] - 1)
                }
                tables += "__constant int N\(d)[\(y[d])] = \(Self.list(index));\n"
                body += "    const int q\(d) = N\(d)[c\(d)];\n"
            } else {
                tables += "__constant int A\(d)[\(y[d])] = \(Self.list(taps.map { min(max($0.start, 0), x[d] - 1) }));\n"
                tables += "__constant int B\(d)[\(y[d])] = \(Self.list(taps.map { min(max($0.start + 1, 0), x[d] - 1) }));\n"
                tables += "__constant float F\(d)[\(y[d])] = {" + taps.map { "\(Float($0.ratio))f" }.joined(separator: ",") + "};\n"
                body += "    const int a\(d) = A\(d)[c\(d)], b\(d) = B\(d)[c\(d)];\n    const float f\(d) = F\(d)[c\(d)];\n"
            }
        }
        let fixed = x.indices.filter { !resized.contains($0) }.map { "c\($0) * \(istr[$0])" }
        if mode == "nearest" {
            let index = (fixed + resized.map { "q\($0) * \(istr[$0])" }).joined(separator: " + ")
            body += "    const float v = LD(x, \(index.isEmpty ? "0" : index));\n"
        } else {
            body += "    float v = 0.0f;\n"
            for corner in 0..<(1 << resized.count) {
                let pick = resized.enumerated().map { (corner >> $0.offset) & 1 == 1 }
                let weight = zip(resized, pick).map { $1 ? "f\($0)" : "(1.0f - f\($0))" }.joined(separator: " * ")
                let index = (fixed + zip(resized, pick).map { "\($1 ? "b" : "a")\($0) * \(istr[$0])" }).joined(separator: " + ")
                body += "    v += \(weight.isEmpty ? "1.0f" : weight) * LD(x, \(index.isEmpty ? "0" : index));\n"
            }
        }
        let source = tables + """
        #ifndef ACT
        #define ACT(v) (v)
        #endif
        __kernel void resize(__global const T* x, __global T* y) {
            const int i = get_global_id(0);
            if (i >= COUNT) return;
            int r = i;
        \(body)    ST(y, i, ACT(v));
        }

        """
        let n = Self.count(y)
        return .launch(kernel: "resize", source: source, options: "-DCOUNT=\(n)",
                       arguments: [.value(node.inputs[0]), .value(node.outputs[0])], global: [n], local: nil)
    }

    /// For each output coordinate along an axis: the input coordinate ONNX maps it to, as the lower of two
    /// neighbours `start` and `start + 1` (unclamped) and the weight `ratio` ∈ (0, 1] of the upper one.
    static func resizeTaps(input: Int, output: Int, scale: Double, transform: String) -> [(start: Int, ratio: Double)] {
        let inW = Double(input), outF = scale * inW
        return (0..<output).map { o in
            let od = Double(o)
            var c: Double
            switch transform {
            case "pytorch_half_pixel": c = outF == 1 ? -0.5 : (od + 0.5) / scale - 0.5
            case "align_corners": c = outF == 1 ? 0 : od * (inW - 1) / (outF - 1)
            case "asymmetric": c = od / scale
            case "half_pixel_symmetric": c = inW / 2 * (1 - Double(output) / outF) + (od + 0.5) / scale - 0.5
            default: c = (od + 0.5) / scale - 0.5
            }
            if !c.isFinite { c = 0 }
            c = min(max(c, -0x1p40), 0x1p40)
            let c0 = c.rounded(.down), frac = c - c0
            return (Int(c0) + (frac == 0 ? -1 : 0), frac == 0 ? 1 : frac)
        }
    }

    /// 2-D ConvTranspose with explicit pads (and output_padding): one work-item per output element gathers
    /// the input pixels whose strided footprint covers it.
    private func convTranspose(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        let x = try shape(node.inputs[0]), w = try shape(node.inputs[1])
        guard x.count == 4, w.count == 4, y.count == 4 else { throw unsupported("ConvTranspose: kiln.gpu runs 2-D (rank-4 tensors) only") }
        let group = try int(node, "group", 1)
        guard group >= 1, x[1] == w[0], w[0] % group == 0, y[1] == w[1] * group, y[0] == x[0] else {
            throw unsupported("ConvTranspose: channels and group do not agree")
        }
        if let ks = try ints(node, "kernel_shape"), ks != [w[2], w[3]] { throw unsupported("ConvTranspose: kernel_shape differs from the weight's") }
        guard node.attributes["output_shape"] == nil else { throw unsupported("ConvTranspose: output_shape is not supported") }
        let autoPad = try text(node, "auto_pad", "NOTSET")
        guard ["NOTSET", "", "VALID"].contains(autoPad) else { throw unsupported("ConvTranspose: auto_pad \(autoPad) is not supported") }
        let strides = try ints(node, "strides") ?? [1, 1], dilations = try ints(node, "dilations") ?? [1, 1]
        let outputPadding = try ints(node, "output_padding") ?? [0, 0]
        let p = autoPad == "VALID" ? [0, 0, 0, 0] : try ints(node, "pads") ?? [0, 0, 0, 0]
        guard strides.count == 2, dilations.count == 2, outputPadding.count == 2, p.count == 4, strides.allSatisfy({ $0 >= 1 && $0 < 1 << 20 }),
              dilations.allSatisfy({ $0 >= 1 && $0 < 1 << 20 }), p.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }), outputPadding.allSatisfy({ $0 >= 0 && $0 < 1 << 20 }) else {
            throw unsupported("ConvTranspose: strides, dilations, pads or output_padding are malformed")
        }
        for d in 0..<2 {
            let size = strides[d] * (x[2 + d] - 1) + outputPadding[d] + (w[2 + d] - 1) * dilations[d] + 1 - p[d] - p[d + 2]
            guard size == y[2 + d] else { throw unsupported("ConvTranspose: the output shape does not match the attributes") }
        }
        var bias: String? = nil
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            guard try shape(node.inputs[2]) == [y[1]] else { throw unsupported("ConvTranspose: bias is not one value per output channel") }
            bias = node.inputs[2]
        }
        let n = Self.count(y)
        let options = "-DCOUNT=\(n) -DC=\(x[1]) -DCG=\(x[1] / group) -DH=\(x[2]) -DW=\(x[3]) -DM=\(y[1]) -DMG=\(w[1]) -DOH=\(y[2]) -DOW=\(y[3]) -DKH=\(w[2]) -DKW=\(w[3]) -DSH=\(strides[0]) -DSW=\(strides[1]) -DDH=\(dilations[0]) -DDW=\(dilations[1]) -DPT=\(p[0]) -DPL=\(p[1]) -DHAS_BIAS=\(bias == nil ? 0 : 1)"
        return .launch(kernel: "conv_transpose", source: Kernels.convTranspose, options: options,
                       arguments: [.value(node.inputs[0]), .value(node.inputs[1]), .value(bias ?? node.inputs[1]), .value(node.outputs[0])],
                       global: [n], local: nil)
    }

    /// Clip with a bound computed at run time (a one-element float32 value, e.g. the maximum less a range):
    /// the bounds are read from their device buffers; a constant bound is read the same way.
    private func runtimeClip(_ node: Node, _ y: [Int]) throws -> NodeLowering {
        guard let x = node.inputs.first, !x.isEmpty, try shape(x) == y else { throw unsupported("Clip: shapes differ") }
        var bounds: [String?] = [nil, nil]
        for k in 1...2 where node.inputs.count > k && !node.inputs[k].isEmpty {
            guard try Self.count(shape(node.inputs[k])) == 1 else { throw unsupported("Clip: bound '\(node.inputs[k])' is not a scalar") }
            bounds[k - 1] = node.inputs[k]
        }
        let n = Self.count(y)
        let source = """
        #ifndef ACT
        #define ACT(v) (v)
        #endif
        __kernel void clip(__global const T* x, __global const T* lo, __global const T* hi, __global T* y) {
            const int i = get_global_id(0);
            if (i >= COUNT) return;
            float v = LD(x, i);
        #if HAS_LO
            { const float b = LD(lo, 0); v = v < b ? b : v; }
        #endif
        #if HAS_HI
            { const float b = LD(hi, 0); v = v > b ? b : v; }
        #endif
            ST(y, i, ACT(v));
        }

        """
        return .launch(kernel: "clip", source: source, options: "-DCOUNT=\(n) -DHAS_LO=\(bounds[0] == nil ? 0 : 1) -DHAS_HI=\(bounds[1] == nil ? 0 : 1)",
                       arguments: [.value(x), .value(bounds[0] ?? x), .value(bounds[1] ?? x), .value(node.outputs[0])], global: [n], local: nil)
    }
}
