import CKilnKernels
import KilnIR

/// What `kiln.cpu` does with one op: the element types it computes in, what else it needs of a node to
/// run it, and how a node is lowered. `Support` and `Lowering` read these entries; an op without one is
/// rejected with "no kiln.cpu kernel".
struct CPUKernel: Sendable {
    /// The element types the op's values may have.
    enum Family: Sendable {
        /// Arithmetic in float32: every input must be float32.
        case float
        /// Moves or indexes data of any element type `Support.elementTypes` lists.
        case data
        /// RNN, GRU and LSTM: float32, except sequence_lens (input 4, int32 or int64); checked by the rejection.
        case recurrent
        /// Every input is one of these types (float32 goes to the C kernels where the op has one).
        case anyOf(Set<DType>)
        /// Cast and CastLike: inputs and outputs of any of `Support.castTypes`.
        case conversion
    }

    /// The element type of output 0, where the graph does not say.
    enum ResultType: Sendable {
        /// Input 0's, unless the output's type is known.
        case inferred
        /// Input 0's, always (data movement keeps the type).
        case firstInput
        /// Computed from the node (Cast's `to`, Shape's int64, a Constant's tensor), when it can be.
        case computed(@Sendable (Node) -> DType?)
        /// Input 0's for output 0, and float32 for every other output (the statistics of normalizations).
        case float32Statistics
        /// Input k's (Where's x).
        case ofInput(Int)
    }

    /// Whether output 0 is known before running (so it can serve as a shape or axes input).
    enum KnownBeforeRunning: Sendable {
        case never
        /// Always (Constant, Shape).
        case always
        /// When every input is.
        case whenInputsAre
    }

    /// How a node is lowered to an `Operation`.
    enum LoweringRule: Sendable {
        /// Nothing to run: the value is a program constant.
        case constant
        /// An activation, fused into the chain or epilogue before it. It builds the `Activation` from the node,
        /// reading scalar constants through its second argument; nil when the node's constants do not allow it.
        case activation(@Sendable (Node, (String) -> Float?) -> Activation?)
        /// A unary elementwise op of the C kernels, chained with its neighbours.
        case unary(kiln_unary_op)
        /// A broadcasting binary (or variadic) op of the C kernels; with a scalar constant operand it is chained.
        case binary(kiln_binary_op)
        /// Its own lowering.
        case custom(@Sendable (inout Lowering, Node, Int) throws -> Void)
    }

    /// The element types of the op's values.
    let family: Family
    /// The element type of the op's output.
    var resultType: ResultType = .inferred
    /// Whether the op's output is known before running.
    var knownBeforeRunning: KnownBeforeRunning = .never
    /// Why a node of this op cannot run here (beyond its element types), or nil.
    var rejection: (@Sendable (Node, SupportFacts) -> String?)? = nil
    /// How a node is lowered.
    let lowering: LoweringRule
}

/// What `Support` knows about a graph's values when it judges a node.
struct SupportFacts {
    /// Element types by value name.
    let types: [String: DType]
    /// Values known before running.
    let known: Set<String>
    /// Constant values by name (initializers that are not inputs, Constant nodes).
    var constants: [String: Tensor] = [:]
}

/// The ops `kiln.cpu` runs, by op: the one list of them.
enum CPUKernelTable {
    /// The entry of `op`, or nil when `kiln.cpu` has no kernel for it.
    static subscript(op: OpID) -> CPUKernel? { kernels[op] }

    static let kernels: [OpID: CPUKernel] = {
        var table: [OpID: CPUKernel] = [:]
        func add(_ names: [String], _ kernel: CPUKernel) {
            for name in names {
                precondition(table[OpID("", name)] == nil, "two kiln.cpu kernels for \(name)")
                table[OpID("", name)] = kernel
            }
        }
        let numeric: Set<DType> = [.float32, .int32, .int64]
        /// Integer types of elementwise arithmetic and comparisons (uint64 is left out: its values exceed Int64).
        let integers: Set<DType> = [.int8, .int16, .int32, .int64, .uint8, .uint16, .uint32]
        let arithmetic = integers.union([.float32])
        func custom(_ lower: @escaping @Sendable (inout Lowering, Node, Int) throws -> Void) -> CPUKernel.LoweringRule { .custom(lower) }

        // Arithmetic in float32.
        add(["Conv"], CPUKernel(family: .float, rejection: { node, _ in
            Window.rejection(of: node)
        }, lowering: custom { (lowering: inout Lowering, node: Node, i: Int) in
            // 1-D and 2-D windows take ConvOperation's C kernels; larger ones the Swift path.
            let weightRank = lowering.constants[node.input(1)]?.rank ?? lowering.graph.type(of: node.input(1))?.tensorType?.shape?.count
            if let k = try node.ints("kernel_shape")?.count ?? weightRank.map({ $0 - 2 }), k > 2 {
                lowering.lowerPlanned(node, at: i, SwiftOps.convND)
            } else {
                try lowering.lowerConv(node, at: i)
            }
        }))
        add(["MatMul", "Gemm"], CPUKernel(family: .float, lowering: custom { try $0.lowerMatMul($1, at: $2) }))
        add(["BatchNormalization"], CPUKernel(family: .float, resultType: .float32Statistics, rejection: { node, _ in
            if (try? node.int("training_mode", 0)) ?? 0 != 0 || node.outputs.dropFirst().contains(where: { !$0.isEmpty }) {
                return "BatchNormalization in training mode is not supported"
            }
            return nil
        }, lowering: custom { try $0.lowerBatchNormalization($1, at: $2) }))
        add(["LayerNormalization"], CPUKernel(family: .float, resultType: .float32Statistics,
                                              lowering: custom { try $0.lowerLayerNormalization($1, at: $2) }))
        add(["Softmax", "LogSoftmax"], CPUKernel(family: .float, lowering: custom { try $0.lowerSoftmax($1, at: $2) }))
        // 1-D and 2-D windows take the C kernels; larger ones the Swift path (PoolingSwiftOperations.swift).
        let pool: CPUKernel.LoweringRule = custom { (lowering: inout Lowering, node: Node, i: Int) in
            if let k = try node.ints("kernel_shape"), k.count > 2 {
                lowering.lowerPlanned(node, at: i, SwiftOps.poolND)
            } else {
                try lowering.lowerPool(node, at: i)
            }
        }
        add(["MaxPool"], CPUKernel(family: .float, rejection: { node, _ in
            if node.outputs.count > 1, !node.outputs[1].isEmpty { return "MaxPool's Indices output is not supported" }
            return Window.rejection(of: node)
        }, lowering: pool))
        add(["AveragePool"], CPUKernel(family: .float, rejection: { node, _ in
            Window.rejection(of: node)
        }, lowering: pool))
        add(["LpPool"], CPUKernel(family: .float, rejection: SwiftOps.lpPoolRejection, lowering: custom { (lowering: inout Lowering, node: Node, i: Int) in
            lowering.lowerPlanned(node, at: i, SwiftOps.poolND)
        }))
        add(["GlobalAveragePool", "GlobalMaxPool"], CPUKernel(family: .float, lowering: custom { $0.lowerGlobalPool($1, at: $2) }))
        let binary: [(String, kiln_binary_op)] = [
            ("Add", KILN_BINARY_ADD), ("Sum", KILN_BINARY_ADD), ("Sub", KILN_BINARY_SUB), ("Mul", KILN_BINARY_MUL),
            ("Div", KILN_BINARY_DIV), ("Max", KILN_BINARY_MAX), ("Min", KILN_BINARY_MIN),
        ]
        // float64 and uint64 operands take the Swift path (`MapOperation.doubleFunction`, `uint64Function`).
        for (name, op) in binary {
            add([name], CPUKernel(family: .anyOf(arithmetic.union([.float64, .uint64])), knownBeforeRunning: .whenInputsAre, lowering: .binary(op)))
        }
        let unary: [(String, kiln_unary_op)] = [
            ("Erf", KILN_UNARY_ERF), ("Exp", KILN_UNARY_EXP), ("Log", KILN_UNARY_LOG), ("Sqrt", KILN_UNARY_SQRT),
            ("Abs", KILN_UNARY_ABS), ("Neg", KILN_UNARY_NEG), ("Reciprocal", KILN_UNARY_RECIPROCAL),
        ]
        for (name, op) in unary {
            var types: Set<DType> = name == "Abs" || name == "Neg" ? arithmetic : [.float32]
            if name != "Erf" { types.insert(.float64) }
            add([name], CPUKernel(family: .anyOf(types), knownBeforeRunning: .whenInputsAre, lowering: .unary(op)))
        }
        // Elementwise ops in plain Swift (`MapOperation`), any broadcast, computed while planning when
        // their inputs are known (shape arithmetic).
        let map = custom { try $0.lowerMap($1, at: $2) }
        add(["Mean", "PRelu", "Floor", "Ceil", "Round", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
             "Asinh", "Acosh", "Atanh", "Softsign", "Softplus", "Mish", "Elu", "Selu", "Celu", "ThresholdedRelu", "Shrink", "Gelu"],
            CPUKernel(family: .float, knownBeforeRunning: .whenInputsAre, lowering: map))
        add(["IsNaN", "IsInf"], CPUKernel(family: .float, resultType: .computed { _ in .bool }, knownBeforeRunning: .whenInputsAre, lowering: map))
        add(["Sign"], CPUKernel(family: .anyOf(arithmetic), knownBeforeRunning: .whenInputsAre, lowering: map))
        add(["Mod"], CPUKernel(family: .anyOf(arithmetic.union([.float64, .uint64])), knownBeforeRunning: .whenInputsAre, rejection: { node, facts -> String? in
            let fmod: Int = (try? node.int("fmod", 0)) ?? 0
            if let t = facts.types[node.input(0)], t == .float32 || t == .float64, fmod == 0 { return "Mod of floats needs fmod=1" }
            return nil
        }, lowering: map))
        add(["Pow"], CPUKernel(family: .anyOf(numeric), resultType: .firstInput, knownBeforeRunning: .whenInputsAre, lowering: map))
        add(["BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot"],
            CPUKernel(family: .anyOf(integers), knownBeforeRunning: .whenInputsAre, lowering: map))
        add(["BitShift"], CPUKernel(family: .anyOf([.uint8, .uint16, .uint32, .uint64]), knownBeforeRunning: .whenInputsAre, lowering: map))
        add(["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"],
            CPUKernel(family: .anyOf(arithmetic.union([.bool, .uint64])), resultType: .computed { _ in .bool },
                      knownBeforeRunning: .whenInputsAre, lowering: map))
        add(["And", "Or", "Xor", "Not"], CPUKernel(family: .anyOf([.bool]), resultType: .computed { _ in .bool },
                                                   knownBeforeRunning: .whenInputsAre, lowering: map))
        add(["Where"], CPUKernel(family: .data, resultType: .ofInput(1), knownBeforeRunning: .whenInputsAre, rejection: { node, facts -> String? in
            if let t = facts.types[node.input(0)], t != .bool { return "Where's condition is \(t) (bool expected)" }
            return nil
        }, lowering: map))
        let activations: [(String, @Sendable (Node, (String) -> Float?) -> Activation?)] = [
            ("Relu", { _, _ in Activation(kind: .relu) }),
            ("Sigmoid", { _, _ in Activation(kind: .sigmoid) }),
            ("Tanh", { _, _ in Activation(kind: .tanh) }),
            ("HardSwish", { _, _ in Activation(kind: .hardSwish) }),
            ("HardSigmoid", { node, _ in
                guard let a = try? node.float("alpha", 0.2), let b = try? node.float("beta", 0.5) else { return nil }
                return Activation(kind: .hardSigmoid, alpha: a, beta: b)
            }),
            ("LeakyRelu", { node, _ in
                guard let a = try? node.float("alpha", 0.01) else { return nil }
                return Activation(kind: .leakyRelu, alpha: a)
            }),
        ]
        for (name, make) in activations { add([name], CPUKernel(family: .float, lowering: .activation(make))) }
        // Clip with constant scalar float bounds is an activation; other bounds and integer types take
        // `SwiftOps.clip` (see `Lowering.lower`).
        add(["Clip"], CPUKernel(family: .anyOf(numeric), lowering: .activation({ node, scalar in
            let lo = node.input(1).isEmpty ? -Float.infinity : scalar(node.input(1))
            let hi = node.input(2).isEmpty ? Float.infinity : scalar(node.input(2))
            guard let lo, let hi else { return nil }
            return Activation(kind: .clip, alpha: lo, beta: hi)
        })))

        // Recurrent layers.
        add(["LSTM", "GRU", "RNN"], CPUKernel(family: .recurrent, rejection: { node, facts in
            for (i, value) in node.inputs.enumerated() where !value.isEmpty {
                if let t = facts.types[value], i == 4 ? t != .int32 && t != .int64 : t != .float32 {
                    return "\(node.op.name) input '\(value)' is \(t) (float32, and int32 or int64 sequence_lens, expected)"
                }
            }
            return RecurrentOperation.rejection(node)
        }, lowering: custom { try $0.lowerRecurrent($1, at: $2) }))

        // Data movement and indexing, in any supported element type.
        // Shape, axes and index inputs computed at run time are fine: the executable plans what follows
        // them once they are known (`CPUExecutable.Stage`).
        add(["Reshape", "Unsqueeze", "Squeeze"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre,
                                                          lowering: custom { $0.lowerView($1, at: $2) }))
        func planned(_ planner: @escaping NodePlanner) -> CPUKernel.LoweringRule {
            .custom { (lowering: inout Lowering, node: Node, i: Int) in lowering.lowerPlanned(node, at: i, planner) }
        }
        add(["Slice"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, lowering: planned(SwiftOps.slice)))
        add(["Split"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, lowering: planned(SwiftOps.split)))
        add(["Pad"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, rejection: { node, _ -> String? in
            let mode: String = (try? node.string("mode", "constant")) ?? "?"
            return ["constant", "edge", "wrap", "reflect"].contains(mode) ? nil : "Pad mode '\(mode)' is not supported"
        }, lowering: planned(SwiftOps.pad)))
        add(["Expand"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, lowering: planned(SwiftOps.expand)))
        add(["Tile"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, lowering: planned(SwiftOps.tile)))
        add(["ConstantOfShape"], CPUKernel(family: .data, resultType: .computed { (node: Node) -> DType? in
            if case .tensor(let t)? = node.attributes["value"] { return t.dtype }
            return .float32
        }, knownBeforeRunning: .whenInputsAre, lowering: planned(SwiftOps.constantOfShape)))
        add(["Range"], CPUKernel(family: .anyOf(numeric), resultType: .firstInput, knownBeforeRunning: .whenInputsAre,
                                 lowering: planned(SwiftOps.range)))
        add(["Size"], CPUKernel(family: .data, resultType: .computed { _ in .int64 }, knownBeforeRunning: .always,
                                lowering: planned(SwiftOps.size)))
        add(["NonZero"], CPUKernel(family: .data, resultType: .computed { _ in .int64 }, knownBeforeRunning: .whenInputsAre,
                                   lowering: planned(SwiftOps.nonZero)))
        // Views of the bytes, so any element type kiln.cpu holds (a quantized uint8 value, say).
        add(["Flatten", "Identity"], CPUKernel(family: .anyOf(Support.castTypes), resultType: .firstInput, knownBeforeRunning: .whenInputsAre,
                                               lowering: custom { $0.lowerView($1, at: $2) }))
        add(["Transpose"], CPUKernel(family: .data, resultType: .firstInput, lowering: custom { try $0.lowerTranspose($1, at: $2) }))
        add(["Gather"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, rejection: { node, facts in
            if let t = facts.types[node.input(1)], t != .int64, t != .int32 { return "Gather indices of type \(t) not supported" }
            return nil
        }, lowering: custom { try $0.lowerGather($1, at: $2) }))
        add(["Concat"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre,
                                  lowering: custom { try $0.lowerConcat($1, at: $2) }))
        add(["Shape"], CPUKernel(family: .data, resultType: .computed { _ in .int64 }, knownBeforeRunning: .always,
                                 lowering: custom { try $0.lowerShape($1, at: $2) }))
        add(["Cast"], CPUKernel(family: .conversion, resultType: .computed(Support.castType), knownBeforeRunning: .whenInputsAre, rejection: { node, _ in
            if let code = try? node.int("to", 1), let t = DType(onnxCode: code), !Support.castTypes.contains(t) || t == .float8e8m0 {
                return "Cast to \(t) not supported"
            }
            return nil
        }, lowering: custom { try $0.lowerCast($1, at: $2) }))
        add(["Constant"], CPUKernel(family: .data, resultType: .computed { Support.constantTensor($0)?.dtype }, knownBeforeRunning: .always,
                                    rejection: { node, _ in
            Support.constantTensor(node) == nil ? "Constant of this kind (sparse or strings) is not supported" : nil
        }, lowering: .constant))
        add(["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
             "ReduceLogSumExp", "ReduceSumSquare"],
            CPUKernel(family: .anyOf([.float32, .float64, .int64]), rejection: { node, facts -> String? in
                if let t = facts.types[node.input(0)], t != .float32, t != .float64 {
                    return "\(node.op.name) over \(t) is not supported (float32 and float64 only)"
                }
                return nil
            }, lowering: planned(SwiftOps.reduce)))
        add(["ArgMax", "ArgMin"], CPUKernel(family: .anyOf(numeric), resultType: .computed { _ in .int64 }, lowering: planned(SwiftOps.argReduce)))
        add(["CumSum", "CumProd"], CPUKernel(family: .anyOf(numeric.union([.float64])), resultType: .firstInput, lowering: planned(SwiftOps.cumSum)))
        add(["TopK"], CPUKernel(family: .anyOf(numeric), resultType: .firstInput, lowering: planned(SwiftOps.topK)))
        let indexRejection: @Sendable (Node, SupportFacts) -> String? = { node, facts in
            if let t = facts.types[node.input(1)], t != .int64, t != .int32 { return "\(node.op.name) indices of type \(t) not supported" }
            return nil
        }
        add(["GatherElements", "GatherND"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre,
                                                      rejection: indexRejection, lowering: .custom { (l: inout Lowering, n: Node, i: Int) in
            l.lowerPlanned(n, at: i, n.op.name == "GatherND" ? SwiftOps.gatherND : SwiftOps.gatherElements)
        }))
        add(["ScatterElements", "ScatterND"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, rejection: { node, facts -> String? in
            let r: String = (try? node.string("reduction", "none")) ?? "?"
            guard ["none", "add", "mul", "max", "min"].contains(r) else { return "reduction '\(r)' is not supported" }
            if r != "none", let t = facts.types[node.input(0)], t == .bool { return "reduction over bool is not supported" }
            return indexRejection(node, facts)
        }, lowering: .custom { (l: inout Lowering, n: Node, i: Int) in
            l.lowerPlanned(n, at: i, n.op.name == "ScatterND" ? SwiftOps.scatterND : SwiftOps.scatterElements)
        }))
        add(["Trilu"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, lowering: planned(SwiftOps.trilu)))
        add(["DepthToSpace", "SpaceToDepth"], CPUKernel(family: .data, resultType: .firstInput, lowering: planned(SwiftOps.depthSpace)))
        add(["InstanceNormalization"], CPUKernel(family: .float, lowering: planned(SwiftOps.instanceNormalization)))
        add(["Resize"], CPUKernel(family: .data, resultType: .firstInput, rejection: SwiftOps.resizeRejection, lowering: planned(SwiftOps.resize)))
        add(["HannWindow", "HammingWindow", "BlackmanWindow"], CPUKernel(family: .anyOf(Support.castTypes), resultType: .computed(SwiftOps.windowType),
                                                                         knownBeforeRunning: .whenInputsAre, rejection: SwiftOps.windowRejection,
                                                                         lowering: planned(SwiftOps.window)))
        add(["AffineGrid"], CPUKernel(family: .anyOf([.float32, .int64]), resultType: .firstInput, rejection: { node, facts -> String? in
            if let t = facts.types[node.input(0)], t != .float32 { return "AffineGrid of \(t) theta is not supported (float32 only)" }
            return nil
        }, lowering: planned(SwiftOps.affineGrid)))
        add(["CenterCropPad"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre,
                                         lowering: planned(SwiftOps.centerCropPad)))
        add(["Col2Im"], CPUKernel(family: .anyOf([.float32, .int64]), resultType: .firstInput, rejection: { node, facts -> String? in
            if let t = facts.types[node.input(0)], t != .float32 { return "Col2Im of \(t) is not supported (float32 only)" }
            return nil
        }, lowering: planned(SwiftOps.col2Im)))
        add(["GridSample"], CPUKernel(family: .float, rejection: SwiftOps.gridSampleRejection, lowering: planned(SwiftOps.gridSample)))
        add(["ConvTranspose"], CPUKernel(family: .float, lowering: planned(SwiftOps.convTranspose)))
        add(["Dropout"], CPUKernel(family: .data, resultType: .firstInput, knownBeforeRunning: .whenInputsAre, rejection: { node, _ -> String? in
            node.input(2).isEmpty ? nil : "Dropout with a training_mode input is not supported (inference only)"
        }, lowering: planned(SwiftOps.dropout)))
        add(["Einsum"], CPUKernel(family: .anyOf([.float32, .float64]), rejection: { node, facts -> String? in
            let equation: String = (try? node.string("equation", "")) ?? ""
            let types = Set(node.inputs.filter { !$0.isEmpty }.compactMap { facts.types[$0] })
            if !types.isSubset(of: [.float32, .float64]) || types.count > 1 {
                return "Einsum over \(types.map { "\($0)" }.sorted().joined(separator: ", ")) is not supported (float32 or float64, one type)"
            }
            return SwiftOps.einsumTerms(equation, operands: node.inputs.filter { !$0.isEmpty }.count) == nil
                ? "Einsum equation '\(equation)' is not supported (no ellipses)" : nil
        }, lowering: planned(SwiftOps.einsum)))
        add(["RMSNormalization"], CPUKernel(family: .float, lowering: planned(SwiftOps.rmsNormalization)))
        add(["Hardmax"], CPUKernel(family: .float, lowering: planned(SwiftOps.hardmax)))
        add(["CastLike"], CPUKernel(family: .conversion, resultType: .ofInput(1), knownBeforeRunning: .whenInputsAre, rejection: { node, facts -> String? in
            // float8e8m0's rounding mode is an attribute kiln.cpu does not implement.
            facts.types[node.input(1)] == .float8e8m0 ? "CastLike to float8e8m0 not supported" : nil
        }, lowering: planned(SwiftOps.castLike)))
        add(["Attention"], CPUKernel(family: .data, resultType: .firstInput, rejection: SwiftOps.attentionRejection,
                                     lowering: planned(SwiftOps.attention)))
        add(["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"], CPUKernel(family: .data, resultType: .firstInput, rejection: { node, facts -> String? in
            for (i, v) in node.inputs.enumerated() where !v.isEmpty {
                guard let t = facts.types[v] else { continue }
                if i == 1 ? t != .int64 && t != .int32 : t != .float32 { return "\(node.op.name) input '\(v)' is \(t)" }
            }
            return nil
        }, lowering: planned(SwiftOps.loss)))
        add(["LpNormalization"], CPUKernel(family: .float, rejection: { node, _ -> String? in
            let p: Int = (try? node.int("p", 2)) ?? 0
            return p == 1 || p == 2 ? nil : "LpNormalization with p = \(p) is not supported (1 and 2 are)"
        }, lowering: planned(SwiftOps.lpNormalization)))
        add(["OneHot"], CPUKernel(family: .data, resultType: .ofInput(2), knownBeforeRunning: .whenInputsAre, lowering: planned(SwiftOps.oneHot)))
        add(["EyeLike"], CPUKernel(family: .data, resultType: .computed { (node: Node) -> DType? in
            (try? node.ints("dtype"))??.first.flatMap { DType(onnxCode: $0) }
        }, knownBeforeRunning: .always, rejection: { node, facts -> String? in
            if let code = (try? node.ints("dtype"))??.first, let t = DType(onnxCode: code), !Support.elementTypes.contains(t) {
                return "EyeLike to \(t) is not supported"
            }
            return nil
        }, lowering: planned(SwiftOps.eyeLike)))
        add(["Compress"], CPUKernel(family: .data, resultType: .firstInput, lowering: planned(SwiftOps.compress)))
        // Linear quantization (QuantizationOperations.swift): the result type is the zero point's (or
        // output_dtype's, uint8 by default) for QuantizeLinear and the scale's for DequantizeLinear.
        add(["QuantizeLinear"], CPUKernel(family: .anyOf(Support.castTypes), resultType: .ofInput(2),
                                          rejection: SwiftOps.quantizationRejection, lowering: planned(SwiftOps.quantizeLinear)))
        add(["DequantizeLinear"], CPUKernel(family: .anyOf(Support.castTypes), resultType: .ofInput(1),
                                            rejection: SwiftOps.quantizationRejection, lowering: planned(SwiftOps.dequantizeLinear)))
        add(["DynamicQuantizeLinear"], CPUKernel(family: .anyOf([.float32, .uint8]), resultType: .computed { _ in .uint8 },
                                                 rejection: { node, facts -> String? in
            if let t = facts.types[node.input(0)], t != .float32 { return "DynamicQuantizeLinear of \(t) is not supported (float32 only)" }
            return nil
        }, lowering: planned(SwiftOps.dynamicQuantizeLinear)))
        // Integer products (QuantizedLinearOperation.swift): the int8 kernels of CKilnKernels.
        let quantizedLinear: CPUKernel.LoweringRule = custom { try $0.lowerQuantizedLinear($1, at: $2) }
        let quantizedTypes: Set<DType> = [.uint8, .int8, .float32, .float16, .int32]
        add(["QLinearMatMul", "QLinearConv"], CPUKernel(family: .anyOf(quantizedTypes), resultType: .ofInput(7),
                                                        rejection: QuantizedLinearOperation.rejection, lowering: quantizedLinear))
        add(["MatMulInteger", "ConvInteger"], CPUKernel(family: .anyOf(quantizedTypes), resultType: .computed { _ in .int32 },
                                                        rejection: QuantizedLinearOperation.rejection, lowering: quantizedLinear))
        add(["BitCast"], CPUKernel(family: .conversion, resultType: .computed(Support.castType), knownBeforeRunning: .whenInputsAre,
                                   rejection: SwiftOps.bitCastRejection, lowering: planned(SwiftOps.bitCast)))
        // Control flow: each body is lowered by kiln.cpu into its own program (ControlFlowOperations.swift).
        add(["If", "Loop", "Scan"], CPUKernel(family: .anyOf(Support.castTypes), resultType: .computed { (node: Node) -> DType? in
            ControlFlow.outputTypes(of: node)?.first ?? nil
        }, rejection: ControlFlow.rejection, lowering: custom { try $0.lowerControlFlow($1, at: $2) }))
        // ONNX Runtime's dynamically quantized LSTM, which onnxruntime.quantization.quantize_dynamic writes.
        table[QuantizedLSTMWeights.op] = CPUKernel(family: .anyOf([.float32, .int8, .uint8]), rejection: QuantizedLSTMWeights.rejection,
                                                   lowering: custom { try $0.lowerRecurrent($1, at: $2) })
        // Kiln's tree-ensemble op (domain `kiln`): the forest is compiled once, when the program is lowered.
        table[TreeEnsemble.op] = CPUKernel(family: .float, lowering: custom { lowering, node, i in
            lowering.lowerPlanned(node, at: i, SwiftOps.treeEnsemble(try CompiledForest(node: node)))
        })
        return table
    }()
}
