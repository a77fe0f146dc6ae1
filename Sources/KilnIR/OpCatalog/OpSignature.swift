/// What ONNX allows at each input of an op: the kinds of value (tensor, sequence, optional, map) and the
/// element types, merged over every version of the op, and which inputs must share one element type.
///
/// It is the signature part of an op's `OpSchema`. kiln.reference checks a node's inputs against it before
/// its kernel runs, so that a malformed model gets an error naming the input and the types it may have,
/// instead of a kernel reading, say, a string tensor as numbers.
package struct OpSignature: Sendable {
    /// What one input position accepts.
    package struct Input: Sendable {
        /// Bit `c` set: a tensor of ONNX element type code `c` is accepted.
        package let tensorTypes: UInt32
        /// Bit `c` set: a sequence of tensors of element type code `c` is accepted.
        package let sequenceTypes: UInt32
        /// Whether an optional value is accepted.
        package let acceptsOptional: Bool
        /// Whether a map is accepted.
        package let acceptsMap: Bool
        /// Whether a sequence of maps is accepted.
        package let acceptsSequenceOfMaps: Bool
        /// The earlier input position whose element type this input must have, if any.
        package let sameTypeAs: Int?
    }

    /// The input positions, in order.
    package let inputs: [Input]
    /// Whether the last input is variadic (positions past `inputs` follow its rule).
    package let variadic: Bool
    /// Whether every input of the variadic tail must have the same element type.
    package let homogeneousTail: Bool
    /// How many inputs a node may have (positions, absent optional ones included): at least the canonical
    /// form's minimum, at most the largest of any version (newer versions keep their extra inputs); `upperBound`
    /// nil means no limit. The canonical form is the
    /// version in force at `OpCatalog.canonicalOpset` (default domain; the newest elsewhere), into which
    /// the importer rewrites older versions (Pad's, Slice's and Reshape's attributes become inputs).
    package let inputCount: (lowerBound: Int, upperBound: Int?)
    /// How many outputs a node of the canonical form may have.
    package let outputCount: (lowerBound: Int, upperBound: Int?)
    /// Bit `k` set: input position `k` must name a value (an optional position may be `""`, absent).
    package let requiredInputs: UInt64
    /// Bit `k` set: output position `k` must name a value.
    package let requiredOutputs: UInt64

    /// The rule for input `position`, or nil when ONNX defines none (the kernel checks the count).
    package func input(_ position: Int) -> Input? {
        if position < inputs.count { return inputs[position] }
        guard variadic, let last = inputs.last else { return nil }
        return Input(tensorTypes: last.tensorTypes, sequenceTypes: last.sequenceTypes, acceptsOptional: last.acceptsOptional,
                     acceptsMap: last.acceptsMap, acceptsSequenceOfMaps: last.acceptsSequenceOfMaps,
                     sameTypeAs: homogeneousTail ? inputs.count - 1 : nil)
    }

    /// The signatures of every ONNX op (default, ai.onnx.ml and preview domains), by op: the catalog's
    /// starting point (read them through `OpCatalog`).
    static let onnx: [OpID: OpSignature] = {
        var table: [OpID: OpSignature] = [:]
        for line in table_.split(separator: "\n") {
            let fields = line.split(separator: "|", omittingEmptySubsequences: false)
            guard fields.count == 5 else { continue }
            let countFields = fields[3].split(separator: ",")
            let counts = countFields.prefix(4).map { Int($0) ?? -1 }
            let masks = countFields.dropFirst(4).map { UInt64($0, radix: 16) ?? 0 }
            func bound(_ value: Int) -> Int? { value < 0 ? nil : value }
            let rules = fields[4].split(separator: ";").map { rule -> Input in
                let parts = rule.split(separator: ",")
                let flags = Array(parts[2])
                let same = Int(parts[3]) ?? -1
                return Input(tensorTypes: UInt32(parts[0], radix: 16) ?? 0, sequenceTypes: UInt32(parts[1], radix: 16) ?? 0,
                             acceptsOptional: flags[0] == "1", acceptsMap: flags[1] == "1", acceptsSequenceOfMaps: flags[2] == "1",
                             sameTypeAs: same >= 0 ? same : nil)
            }
            table[OpID(String(fields[0]), String(fields[1]))] =
                OpSignature(inputs: rules, variadic: fields[2].contains("v"), homogeneousTail: fields[2].contains("h"),
                            inputCount: (counts[0], bound(counts[1])), outputCount: (counts[2], bound(counts[3])),
                            requiredInputs: masks[0], requiredOutputs: masks[1])
        }
        return table
    }()

    /// The names of the element types in `mask`, for messages.
    package static func typeNames(_ mask: UInt32) -> String {
        DType.allCases.filter { mask & (1 << UInt32($0.onnxCode)) != 0 }.map(\.description).joined(separator: ", ")
    }
}

// One line per op: domain|name|flags|counts|rules, flags `v` (variadic tail) and `h` (homogeneous tail); counts
// `minInputs,maxInputs,minOutputs,maxOutputs,requiredInputs,requiredOutputs` of the canonical form (-1: no limit;
// the last two are hex masks of the positions that must name a value); each rule
// is `tensorTypes,sequenceTypes,OMS,sameAs` (hex masks over ONNX element type codes; O, M, S: optional, map and
// sequence-of-maps accepted; sameAs: the earlier position whose type this one shares, or -1).
// Generated from onnx.defs (onnx 1.22) by the script at the end of this file.
private let table_ = """
|Abs||1,1,1,1,1,1|13cfe,0,000,-1
|Acos||1,1,1,1,1,1|10c02,0,000,-1
|Acosh||1,1,1,1,1,1|10c02,0,000,-1
|Add||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|AffineGrid||2,2,1,1,3,1|10c02,0,000,-1;80,0,000,-1
|And||2,2,1,1,3,1|200,0,000,-1;200,0,000,0
|ArgMax||1,1,1,1,1,1|13cfe,0,000,-1
|ArgMin||1,1,1,1,1,1|13cfe,0,000,-1
|Asin||1,1,1,1,1,1|10c02,0,000,-1
|Asinh||1,1,1,1,1,1|10c02,0,000,-1
|Atan||1,1,1,1,1,1|10c02,0,000,-1
|Atanh||1,1,1,1,1,1|10c02,0,000,-1
|Attention||3,7,1,4,7,1|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,-1;13efe,0,000,-1;10c02,0,000,0;10c02,0,000,2;80,0,000,-1
|AveragePool||1,1,1,1,1,1|10c02,0,000,-1
|BatchNormalization||5,5,1,5,1f,1|10c02,0,000,-1;10c02,0,000,-1;10c02,0,000,1;10c02,0,000,-1;10c02,0,000,3
|Bernoulli||1,1,1,1,1,1|10c02,0,000,-1
|BitCast||1,1,1,1,1,1|7fffefe,0,000,-1
|BitShift||2,2,1,1,3,1|3014,0,000,-1;3014,0,000,0
|BitwiseAnd||2,2,1,1,3,1|30fc,0,000,-1;30fc,0,000,0
|BitwiseNot||1,1,1,1,1,1|30fc,0,000,-1
|BitwiseOr||2,2,1,1,3,1|30fc,0,000,-1;30fc,0,000,0
|BitwiseXor||2,2,1,1,3,1|30fc,0,000,-1;30fc,0,000,0
|BlackmanWindow||1,1,1,1,1,1|c0,0,000,-1
|Cast||1,1,1,1,1,1|7ff3ffe,0,000,-1
|CastLike||2,2,1,1,3,1|7ff3ffe,0,000,-1;7ff3ffe,0,000,-1
|CausalConvWithState||2,4,2,2,3,3|10402,0,000,-1;10402,0,000,0;10402,0,000,0;10402,0,000,0
|Ceil||1,1,1,1,1,1|10c02,0,000,-1
|Celu||1,1,1,1,1,1|2,0,000,-1
|CenterCropPad||2,2,1,1,3,1|1fffe,0,000,-1;c0,0,000,-1
|Clip||1,3,1,1,1,1|13cfe,0,000,-1;13cfe,0,000,0;13cfe,0,000,0
|Col2Im||3,3,1,1,7,1|1fffe,0,000,-1;80,0,000,-1;80,0,000,1
|Compress||2,2,1,1,3,1|fffe,0,000,-1;200,0,000,-1
|Concat|vh|1,-1,1,1,7fffffffffffffff,1|1fffe,0,000,-1
|ConcatFromSequence||1,1,1,1,1,1|0,fffe,000,-1
|Constant||0,0,1,1,0,1|
|ConstantOfShape||1,1,1,1,1,1|80,0,000,-1
|Conv||2,3,1,1,3,1|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|ConvInteger||2,4,1,1,3,1|c,0,000,-1;c,0,000,-1;c,0,000,0;c,0,000,1
|ConvTranspose||2,3,1,1,3,1|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|Cos||1,1,1,1,1,1|10c02,0,000,-1
|Cosh||1,1,1,1,1,1|10c02,0,000,-1
|CumProd||2,2,1,1,3,1|13cc2,0,000,-1;c0,0,000,-1
|CumSum||2,2,1,1,3,1|13cc2,0,000,-1;c0,0,000,-1
|DFT||1,3,1,1,1,1|10c02,0,000,-1;c0,0,000,-1;80,0,000,-1
|DeformConv||3,5,1,1,7,1|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0
|DepthToSpace||1,1,1,1,1,1|1fffe,0,000,-1
|DequantizeLinear||2,3,1,1,3,1|6fe007c,0,000,-1;1010402,0,000,-1;6fe007c,0,000,0
|Det||1,1,1,1,1,1|10c02,0,000,-1
|Div||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|Dropout||1,3,1,2,1,1|1f0c02,0,000,-1;1f0c02,0,000,-1;200,0,000,-1
|DynamicQuantizeLinear||1,1,3,3,1,7|2,0,000,-1
|Einsum|vh|1,-1,1,1,7fffffffffffffff,1|3cfe,0,000,-1
|Elu||1,1,1,1,1,1|10c02,0,000,-1
|Equal||2,2,1,1,3,1|13ffe,0,000,-1;13ffe,0,000,0
|Erf||1,1,1,1,1,1|13cfe,0,000,-1
|Exp||1,1,1,1,1,1|10c02,0,000,-1
|Expand||2,2,1,1,3,1|1fffe,0,000,-1;80,0,000,-1
|EyeLike||1,1,1,1,1,1|13efe,0,000,-1
|Flatten||1,1,1,1,1,1|7fffffe,0,000,-1
|Floor||1,1,1,1,1,1|10c02,0,000,-1
|GRU||3,6,0,2,7,0|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0;40,0,000,-1;10c02,0,000,0
|Gather||2,2,1,1,3,1|1fffe,0,000,-1;c0,0,000,-1
|GatherElements||2,2,1,1,3,1|1fffe,0,000,-1;c0,0,000,-1
|GatherND||2,2,1,1,3,1|1fffe,0,000,-1;80,0,000,-1
|Gelu||1,1,1,1,1,1|10c02,0,000,-1
|Gemm||2,3,1,1,3,1|13cc2,0,000,-1;13cc2,0,000,0;13cc2,0,000,0
|GlobalAveragePool||1,1,1,1,1,1|10c02,0,000,-1
|GlobalLpPool||1,1,1,1,1,1|10c02,0,000,-1
|GlobalMaxPool||1,1,1,1,1,1|10c02,0,000,-1
|Greater||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|GreaterOrEqual||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|GridSample||2,2,1,1,3,1|1fffe,0,000,-1;10c02,0,000,-1
|GroupNormalization||3,3,1,1,7,1|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|HammingWindow||1,1,1,1,1,1|c0,0,000,-1
|HannWindow||1,1,1,1,1,1|c0,0,000,-1
|HardSigmoid||1,1,1,1,1,1|10c02,0,000,-1
|HardSwish||1,1,1,1,1,1|10c02,0,000,-1
|Hardmax||1,1,1,1,1,1|10c02,0,000,-1
|Identity||1,1,1,1,1,1|7fffffe,fffe,100,-1
|If||1,1,1,-1,1,0|200,0,000,-1
|ImageDecoder||1,1,1,1,1,1|4,0,000,-1
|InstanceNormalization||3,3,1,1,7,1|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|IsInf||1,1,1,1,1,1|1f0c02,0,000,-1
|IsNaN||1,1,1,1,1,1|1f0c02,0,000,-1
|LRN||1,1,1,1,1,1|10c02,0,000,-1
|LSTM||3,8,0,3,7,0|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0;40,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0
|LayerNormalization||2,3,1,3,3,1|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|LeakyRelu||1,1,1,1,1,1|10c02,0,000,-1
|Less||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|LessOrEqual||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|LinearAttention||3,6,2,2,7,3|10402,0,000,-1;10402,0,000,0;10402,0,000,0;10402,0,000,-1;10402,0,000,0;10402,0,000,0
|Log||1,1,1,1,1,1|10c02,0,000,-1
|LogSoftmax||1,1,1,1,1,1|10c02,0,000,-1
|Loop|v|2,-1,1,-1,7ffffffffffffffc,0|80,0,000,-1;200,0,000,-1;7fffffe,7fffffe,100,-1
|LpNormalization||1,1,1,1,1,1|10c02,0,000,-1
|LpPool||1,1,1,1,1,1|10c02,0,000,-1
|MatMul||2,2,1,1,3,1|13cc2,0,000,-1;13cc2,0,000,0
|MatMulInteger||2,4,1,1,3,1|c,0,000,-1;c,0,000,-1;c,0,000,0;c,0,000,1
|Max|vh|1,-1,1,1,7fffffffffffffff,1|13cfe,0,000,-1
|MaxPool||1,1,1,2,1,1|10c0e,0,000,-1
|MaxRoiPool||2,2,1,1,3,1|10c02,0,000,-1;10c02,0,000,0
|MaxUnpool||2,3,1,1,3,1|10c02,0,000,-1;80,0,000,-1;80,0,000,1
|Mean|vh|1,-1,1,1,7fffffffffffffff,1|10c02,0,000,-1
|MeanVarianceNormalization||1,1,1,1,1,1|10c02,0,000,-1
|MelWeightMatrix||5,5,1,1,1f,1|c0,0,000,-1;c0,0,000,0;c0,0,000,0;10c02,0,000,-1;10c02,0,000,3
|Min|vh|1,-1,1,1,7fffffffffffffff,1|13cfe,0,000,-1
|Mish||1,1,1,1,1,1|10c02,0,000,-1
|Mod||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|Mul||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|Multinomial||1,1,1,1,1,1|10c02,0,000,-1
|Neg||1,1,1,1,1,1|10cea,0,000,-1
|NegativeLogLikelihoodLoss||2,3,1,1,3,1|10c02,0,000,-1;c0,0,000,-1;10c02,0,000,0
|NonMaxSuppression||2,5,1,1,3,1|2,0,000,-1;2,0,000,0;80,0,000,-1;2,0,000,0;2,0,000,0
|NonZero||1,1,1,1,1,1|1fffe,0,000,-1
|Not||1,1,1,1,1,1|200,0,000,-1
|OneHot||3,3,1,1,7,1|3cfe,0,000,-1;3cfe,0,000,-1;fffe,0,000,-1
|Optional||0,1,1,1,0,1|fffe,fffe,000,-1
|OptionalGetElement||1,1,1,1,1,1|fffe,fffe,100,-1
|OptionalHasElement||0,1,1,1,0,1|fffe,fffe,100,-1
|Or||2,2,1,1,3,1|200,0,000,-1;200,0,000,0
|PRelu||2,2,1,1,3,1|13cc2,0,000,-1;13cc2,0,000,0
|Pad||2,4,1,1,3,1|7fffffe,0,000,-1;80,0,000,-1;7fffffe,0,000,0;c0,0,000,-1
|Pow||2,2,1,1,3,1|10cc2,0,000,-1;13cfe,0,000,-1
|QLinearConv||8,9,1,1,ff,1|c,0,000,-1;2,0,000,-1;c,0,000,0;c,0,000,-1;2,0,000,1;c,0,000,3;2,0,000,1;c,0,000,-1;40,0,000,-1
|QLinearMatMul||8,8,1,1,ff,1|1e000c,0,000,-1;10402,0,000,-1;1e000c,0,000,0;1e000c,0,000,-1;10402,0,000,1;1e000c,0,000,3;10402,0,000,1;1e000c,0,000,-1
|QuantizeLinear||2,3,1,1,3,1|10442,0,000,-1;1010442,0,000,-1;6fe003c,0,000,-1
|RMSNormalization||2,2,1,1,3,1|10c02,0,000,-1;10c02,0,000,-1
|RNN||3,6,0,2,7,0|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0;40,0,000,-1;10c02,0,000,0
|RandomNormal||0,0,1,1,0,1|
|RandomNormalLike||1,1,1,1,1,1|1fffe,0,000,-1
|RandomUniform||0,0,1,1,0,1|
|RandomUniformLike||1,1,1,1,1,1|1fffe,0,000,-1
|Range||3,3,1,1,7,1|10ce2,0,000,-1;10ce2,0,000,0;10ce2,0,000,0
|Reciprocal||1,1,1,1,1,1|10c02,0,000,-1
|ReduceL1||1,2,1,1,1,1|13cc2,0,000,-1;80,0,000,-1
|ReduceL2||1,2,1,1,1,1|13cc2,0,000,-1;80,0,000,-1
|ReduceLogSum||1,2,1,1,1,1|13cc2,0,000,-1;80,0,000,-1
|ReduceLogSumExp||1,2,1,1,1,1|13cc2,0,000,-1;80,0,000,-1
|ReduceMax||1,2,1,1,1,1|13ece,0,000,-1;80,0,000,-1
|ReduceMean||1,2,1,1,1,1|13cc2,0,000,-1;80,0,000,-1
|ReduceMin||1,2,1,1,1,1|13ece,0,000,-1;80,0,000,-1
|ReduceProd||1,2,1,1,1,1|13cc2,0,000,-1;80,0,000,-1
|ReduceSum||1,2,1,1,1,1|13cc2,0,000,-1;80,0,000,-1
|ReduceSumSquare||1,2,1,1,1,1|13cc2,0,000,-1;80,0,000,-1
|RegexFullMatch||1,1,1,1,1,1|100,0,000,-1
|Relu||1,1,1,1,1,1|10cea,0,000,-1
|Reshape||2,2,1,1,3,1|7fffffe,0,000,-1;80,0,000,-1
|Resize||1,4,1,1,1,1|1fffe,0,000,-1;c02,0,000,-1;2,0,000,-1;80,0,000,-1
|ReverseSequence||2,2,1,1,3,1|fffe,0,000,-1;80,0,000,-1
|RoiAlign||3,3,1,1,7,1|10c02,0,000,-1;10c02,0,000,0;80,0,000,-1
|RotaryEmbedding||3,4,1,1,7,1|10402,0,000,-1;10402,0,000,0;10402,0,000,0;80,0,000,-1
|Round||1,1,1,1,1,1|10c02,0,000,-1
|STFT||2,4,1,1,3,1|10c02,0,000,-1;c0,0,000,-1;10c02,0,000,0;c0,0,000,1
|Scan|v|1,-1,1,-1,7fffffffffffffff,0|7fffffe,0,000,-1;7fffffe,0,000,-1
|Scatter||3,3,1,1,7,1|fffe,0,000,-1;c0,0,000,-1;fffe,0,000,0
|ScatterElements||3,3,1,1,7,1|1fffe,0,000,-1;c0,0,000,-1;1fffe,0,000,0
|ScatterND||3,3,1,1,7,1|1fffe,0,000,-1;80,0,000,-1;1fffe,0,000,0
|Selu||1,1,1,1,1,1|10c02,0,000,-1
|SequenceAt||2,2,1,1,3,1|0,fffe,000,-1;c0,0,000,-1
|SequenceConstruct|vh|1,-1,1,1,7fffffffffffffff,1|fffe,0,000,-1
|SequenceEmpty||0,0,1,1,0,1|
|SequenceErase||1,2,1,1,1,1|0,fffe,000,-1;c0,0,000,-1
|SequenceInsert||2,3,1,1,3,1|0,fffe,000,-1;fffe,0,000,-1;c0,0,000,-1
|SequenceLength||1,1,1,1,1,1|0,fffe,000,-1
|SequenceMap|v|1,-1,1,-1,7fffffffffffffff,0|0,fffe,000,-1;fffe,fffe,000,-1
|Shape||1,1,1,1,1,1|7fffffe,0,000,-1
|Shrink||1,1,1,1,1,1|3cfe,0,000,-1
|Sigmoid||1,1,1,1,1,1|10c02,0,000,-1
|Sign||1,1,1,1,1,1|13cfe,0,000,-1
|Sin||1,1,1,1,1,1|10c02,0,000,-1
|Sinh||1,1,1,1,1,1|10c02,0,000,-1
|Size||1,1,1,1,1,1|7fffffe,0,000,-1
|Slice||3,5,1,1,7,1|1fffe,0,000,-1;c0,0,000,-1;c0,0,000,1;c0,0,000,1;c0,0,000,1
|Softmax||1,1,1,1,1,1|10c02,0,000,-1
|SoftmaxCrossEntropyLoss||2,3,1,2,3,1|10c02,0,000,-1;c0,0,000,-1;10c02,0,000,0
|Softplus||1,1,1,1,1,1|10c02,0,000,-1
|Softsign||1,1,1,1,1,1|10c02,0,000,-1
|SpaceToDepth||1,1,1,1,1,1|1fffe,0,000,-1
|Split||1,2,1,-1,1,0|1fffe,0,000,-1;c82,0,000,-1
|SplitToSequence||1,2,1,1,1,1|1fffe,0,000,-1;c0,0,000,-1
|Sqrt||1,1,1,1,1,1|10c02,0,000,-1
|Squeeze||1,2,1,1,1,1|7fffffe,0,000,-1;80,0,000,-1
|StringConcat||2,2,1,1,3,1|100,0,000,-1;100,0,000,0
|StringNormalizer||1,1,1,1,1,1|100,0,000,-1
|StringSplit||1,1,2,2,1,3|100,0,000,-1
|Sub||2,2,1,1,3,1|13cfe,0,000,-1;13cfe,0,000,0
|Sum|vh|1,-1,1,1,7fffffffffffffff,1|10c02,0,000,-1
|Swish||1,1,1,1,1,1|10c02,0,000,-1
|Tan||1,1,1,1,1,1|10c02,0,000,-1
|Tanh||1,1,1,1,1,1|10c02,0,000,-1
|TensorScatter||2,3,1,1,3,1|1fffffe,0,000,-1;1fffffe,0,000,0;80,0,000,-1
|TfIdfVectorizer||1,1,1,1,1,1|1c0,0,000,-1
|ThresholdedRelu||1,1,1,1,1,1|10c02,0,000,-1
|Tile||2,3,1,1,3,1|1fffe,0,000,-1;c82,0,000,-1;c02,0,000,0
|TopK||2,2,2,2,3,3|13cfe,0,000,-1;80,0,000,-1
|Transpose||1,1,1,1,1,1|7fffffe,0,000,-1
|Trilu||1,2,1,1,1,1|1fffe,0,000,-1;80,0,000,-1
|Unique||1,1,1,4,1,1|fffe,0,000,-1
|Unsqueeze||2,2,1,1,3,1|7fffffe,0,000,-1;80,0,000,-1
|Upsample||2,2,1,1,3,1|fffe,0,000,-1;2,0,000,-1
|Where||3,3,1,1,7,1|200,0,000,-1;1fffe,0,000,-1;1fffe,0,000,1
|Xor||2,2,1,1,3,1|200,0,000,-1;200,0,000,0
ai.onnx.ml|ArrayFeatureExtractor||2,2,1,1,3,1|9c2,0,000,-1;80,0,000,-1
ai.onnx.ml|Binarizer||1,1,1,1,1,1|8c2,0,000,-1
ai.onnx.ml|CastMap||1,1,1,1,1,1|0,0,010,-1
ai.onnx.ml|CategoryMapper||1,1,1,1,1,1|180,0,000,-1
ai.onnx.ml|DictVectorizer||1,1,1,1,1,1|0,0,010,-1
ai.onnx.ml|FeatureVectorizer|vh|1,-1,1,1,7fffffffffffffff,1|8c2,0,000,-1
ai.onnx.ml|Imputer||1,1,1,1,1,1|8c2,0,000,-1
ai.onnx.ml|LabelEncoder||1,1,1,1,1,1|9e2,0,000,-1
ai.onnx.ml|LinearClassifier||1,1,2,2,1,3|8c2,0,000,-1
ai.onnx.ml|LinearRegressor||1,1,1,1,1,1|8c2,0,000,-1
ai.onnx.ml|Normalizer||1,1,1,1,1,1|8c2,0,000,-1
ai.onnx.ml|OneHotEncoder||1,1,1,1,1,1|9c2,0,000,-1
ai.onnx.ml|SVMClassifier||1,1,2,2,1,3|8c2,0,000,-1
ai.onnx.ml|SVMRegressor||1,1,1,1,1,1|8c2,0,000,-1
ai.onnx.ml|Scaler||1,1,1,1,1,1|8c2,0,000,-1
ai.onnx.ml|TreeEnsemble||1,1,1,1,1,1|c02,0,000,-1
ai.onnx.ml|TreeEnsembleClassifier||1,1,2,2,1,3|8c2,0,000,-1
ai.onnx.ml|TreeEnsembleRegressor||1,1,1,1,1,1|8c2,0,000,-1
ai.onnx.ml|ZipMap||1,1,1,1,1,1|2,0,000,-1
ai.onnx.preview|FlexAttention||3,3,1,1,7,1|10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
ai.onnx.preview.training|Adagrad|v|3,-1,1,-1,7fffffffffffffff,0|802,0,000,-1;80,0,000,-1;802,0,000,-1
ai.onnx.preview.training|Adam|v|3,-1,1,-1,7fffffffffffffff,0|802,0,000,-1;80,0,000,-1;802,0,000,-1
ai.onnx.preview.training|Gradient|v|1,-1,1,-1,7fffffffffffffff,0|fffe,0,000,-1
ai.onnx.preview.training|Momentum|v|3,-1,1,-1,7fffffffffffffff,0|802,0,000,-1;80,0,000,-1;802,0,000,-1
"""

// The table above is generated by scripts/generate-op-signatures from the installed onnx package.
