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
            guard fields.count == 4 else { continue }
            let rules = fields[3].split(separator: ";").map { rule -> Input in
                let parts = rule.split(separator: ",")
                let flags = Array(parts[2])
                let same = Int(parts[3]) ?? -1
                return Input(tensorTypes: UInt32(parts[0], radix: 16) ?? 0, sequenceTypes: UInt32(parts[1], radix: 16) ?? 0,
                             acceptsOptional: flags[0] == "1", acceptsMap: flags[1] == "1", acceptsSequenceOfMaps: flags[2] == "1",
                             sameTypeAs: same >= 0 ? same : nil)
            }
            table[OpID(String(fields[0]), String(fields[1]))] =
                OpSignature(inputs: rules, variadic: fields[2].contains("v"), homogeneousTail: fields[2].contains("h"))
        }
        return table
    }()

    /// The names of the element types in `mask`, for messages.
    package static func typeNames(_ mask: UInt32) -> String {
        DType.allCases.filter { mask & (1 << UInt32($0.onnxCode)) != 0 }.map(\.description).joined(separator: ", ")
    }
}

// One line per op: domain|name|flags|rules, flags `v` (variadic tail) and `h` (homogeneous tail); each rule
// is `tensorTypes,sequenceTypes,OMS,sameAs` (hex masks over ONNX element type codes; O, M, S: optional, map and
// sequence-of-maps accepted; sameAs: the earlier position whose type this one shares, or -1).
// Generated from onnx.defs (onnx 1.22) by the script at the end of this file.
private let table_ = """
|Abs||13cfe,0,000,-1
|Acos||10c02,0,000,-1
|Acosh||10c02,0,000,-1
|Add||13cfe,0,000,-1;13cfe,0,000,0
|AffineGrid||10c02,0,000,-1;80,0,000,-1
|And||200,0,000,-1;200,0,000,0
|ArgMax||13cfe,0,000,-1
|ArgMin||13cfe,0,000,-1
|Asin||10c02,0,000,-1
|Asinh||10c02,0,000,-1
|Atan||10c02,0,000,-1
|Atanh||10c02,0,000,-1
|Attention||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,-1;13efe,0,000,-1;10c02,0,000,0;10c02,0,000,2;80,0,000,-1
|AveragePool||10c02,0,000,-1
|BatchNormalization||10c02,0,000,-1;10c02,0,000,-1;10c02,0,000,1;10c02,0,000,-1;10c02,0,000,3
|Bernoulli||10c02,0,000,-1
|BitCast||7fffefe,0,000,-1
|BitShift||3014,0,000,-1;3014,0,000,0
|BitwiseAnd||30fc,0,000,-1;30fc,0,000,0
|BitwiseNot||30fc,0,000,-1
|BitwiseOr||30fc,0,000,-1;30fc,0,000,0
|BitwiseXor||30fc,0,000,-1;30fc,0,000,0
|BlackmanWindow||c0,0,000,-1
|Cast||7ff3ffe,0,000,-1
|CastLike||7ff3ffe,0,000,-1;7ff3ffe,0,000,-1
|CausalConvWithState||10402,0,000,-1;10402,0,000,0;10402,0,000,0;10402,0,000,0
|Ceil||10c02,0,000,-1
|Celu||2,0,000,-1
|CenterCropPad||1fffe,0,000,-1;c0,0,000,-1
|Clip||13cfe,0,000,-1;13cfe,0,000,0;13cfe,0,000,0
|Col2Im||1fffe,0,000,-1;80,0,000,-1;80,0,000,1
|Compress||fffe,0,000,-1;200,0,000,-1
|Concat|vh|1fffe,0,000,-1
|ConcatFromSequence||0,fffe,000,-1
|Constant||
|ConstantOfShape||80,0,000,-1
|Conv||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|ConvInteger||c,0,000,-1;c,0,000,-1;c,0,000,0;c,0,000,1
|ConvTranspose||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|Cos||10c02,0,000,-1
|Cosh||10c02,0,000,-1
|CumProd||13cc2,0,000,-1;c0,0,000,-1
|CumSum||13cc2,0,000,-1;c0,0,000,-1
|DFT||10c02,0,000,-1;c0,0,000,-1;80,0,000,-1
|DeformConv||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0
|DepthToSpace||1fffe,0,000,-1
|DequantizeLinear||6fe007c,0,000,-1;1010402,0,000,-1;6fe007c,0,000,0
|Det||10c02,0,000,-1
|Div||13cfe,0,000,-1;13cfe,0,000,0
|Dropout||1f0c02,0,000,-1;1f0c02,0,000,-1;200,0,000,-1
|DynamicQuantizeLinear||2,0,000,-1
|Einsum|vh|3cfe,0,000,-1
|Elu||10c02,0,000,-1
|Equal||13ffe,0,000,-1;13ffe,0,000,0
|Erf||13cfe,0,000,-1
|Exp||10c02,0,000,-1
|Expand||1fffe,0,000,-1;80,0,000,-1
|EyeLike||13efe,0,000,-1
|Flatten||7fffffe,0,000,-1
|Floor||10c02,0,000,-1
|GRU||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0;40,0,000,-1;10c02,0,000,0
|Gather||1fffe,0,000,-1;c0,0,000,-1
|GatherElements||1fffe,0,000,-1;c0,0,000,-1
|GatherND||1fffe,0,000,-1;80,0,000,-1
|Gelu||10c02,0,000,-1
|Gemm||13cc2,0,000,-1;13cc2,0,000,0;13cc2,0,000,0
|GlobalAveragePool||10c02,0,000,-1
|GlobalLpPool||10c02,0,000,-1
|GlobalMaxPool||10c02,0,000,-1
|Greater||13cfe,0,000,-1;13cfe,0,000,0
|GreaterOrEqual||13cfe,0,000,-1;13cfe,0,000,0
|GridSample||1fffe,0,000,-1;10c02,0,000,-1
|GroupNormalization||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|HammingWindow||c0,0,000,-1
|HannWindow||c0,0,000,-1
|HardSigmoid||10c02,0,000,-1
|HardSwish||10c02,0,000,-1
|Hardmax||10c02,0,000,-1
|Identity||7fffffe,fffe,100,-1
|If||200,0,000,-1
|ImageDecoder||4,0,000,-1
|InstanceNormalization||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|IsInf||1f0c02,0,000,-1
|IsNaN||1f0c02,0,000,-1
|LRN||10c02,0,000,-1
|LSTM||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0;40,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0
|LayerNormalization||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
|LeakyRelu||10c02,0,000,-1
|Less||13cfe,0,000,-1;13cfe,0,000,0
|LessOrEqual||13cfe,0,000,-1;13cfe,0,000,0
|LinearAttention||10402,0,000,-1;10402,0,000,0;10402,0,000,0;10402,0,000,-1;10402,0,000,0;10402,0,000,0
|Log||10c02,0,000,-1
|LogSoftmax||10c02,0,000,-1
|Loop|v|80,0,000,-1;200,0,000,-1;7fffffe,7fffffe,100,-1
|LpNormalization||10c02,0,000,-1
|LpPool||10c02,0,000,-1
|MatMul||13cc2,0,000,-1;13cc2,0,000,0
|MatMulInteger||c,0,000,-1;c,0,000,-1;c,0,000,0;c,0,000,1
|Max|vh|13cfe,0,000,-1
|MaxPool||10c0e,0,000,-1
|MaxRoiPool||10c02,0,000,-1;10c02,0,000,0
|MaxUnpool||10c02,0,000,-1;80,0,000,-1;80,0,000,1
|Mean|vh|10c02,0,000,-1
|MeanVarianceNormalization||10c02,0,000,-1
|MelWeightMatrix||c0,0,000,-1;c0,0,000,0;c0,0,000,0;10c02,0,000,-1;10c02,0,000,3
|Min|vh|13cfe,0,000,-1
|Mish||10c02,0,000,-1
|Mod||13cfe,0,000,-1;13cfe,0,000,0
|Mul||13cfe,0,000,-1;13cfe,0,000,0
|Multinomial||10c02,0,000,-1
|Neg||10cea,0,000,-1
|NegativeLogLikelihoodLoss||10c02,0,000,-1;c0,0,000,-1;10c02,0,000,0
|NonMaxSuppression||2,0,000,-1;2,0,000,0;80,0,000,-1;2,0,000,0;2,0,000,0
|NonZero||1fffe,0,000,-1
|Not||200,0,000,-1
|OneHot||3cfe,0,000,-1;3cfe,0,000,-1;fffe,0,000,-1
|Optional||fffe,fffe,000,-1
|OptionalGetElement||fffe,fffe,100,-1
|OptionalHasElement||fffe,fffe,100,-1
|Or||200,0,000,-1;200,0,000,0
|PRelu||13cc2,0,000,-1;13cc2,0,000,0
|Pad||7fffffe,0,000,-1;80,0,000,-1;7fffffe,0,000,0;c0,0,000,-1
|Pow||10cc2,0,000,-1;13cfe,0,000,-1
|QLinearConv||c,0,000,-1;2,0,000,-1;c,0,000,0;c,0,000,-1;2,0,000,1;c,0,000,3;2,0,000,1;c,0,000,-1;40,0,000,-1
|QLinearMatMul||1e000c,0,000,-1;10402,0,000,-1;1e000c,0,000,0;1e000c,0,000,-1;10402,0,000,1;1e000c,0,000,3;10402,0,000,1;1e000c,0,000,-1
|QuantizeLinear||10442,0,000,-1;1010442,0,000,-1;6fe003c,0,000,-1
|RMSNormalization||10c02,0,000,-1;10c02,0,000,-1
|RNN||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0;10c02,0,000,0;40,0,000,-1;10c02,0,000,0
|RandomNormal||
|RandomNormalLike||1fffe,0,000,-1
|RandomUniform||
|RandomUniformLike||1fffe,0,000,-1
|Range||10ce2,0,000,-1;10ce2,0,000,0;10ce2,0,000,0
|Reciprocal||10c02,0,000,-1
|ReduceL1||13cc2,0,000,-1;80,0,000,-1
|ReduceL2||13cc2,0,000,-1;80,0,000,-1
|ReduceLogSum||13cc2,0,000,-1;80,0,000,-1
|ReduceLogSumExp||13cc2,0,000,-1;80,0,000,-1
|ReduceMax||13ece,0,000,-1;80,0,000,-1
|ReduceMean||13cc2,0,000,-1;80,0,000,-1
|ReduceMin||13ece,0,000,-1;80,0,000,-1
|ReduceProd||13cc2,0,000,-1;80,0,000,-1
|ReduceSum||13cc2,0,000,-1;80,0,000,-1
|ReduceSumSquare||13cc2,0,000,-1;80,0,000,-1
|RegexFullMatch||100,0,000,-1
|Relu||10cea,0,000,-1
|Reshape||7fffffe,0,000,-1;80,0,000,-1
|Resize||1fffe,0,000,-1;c02,0,000,-1;2,0,000,-1;80,0,000,-1
|ReverseSequence||fffe,0,000,-1;80,0,000,-1
|RoiAlign||10c02,0,000,-1;10c02,0,000,0;80,0,000,-1
|RotaryEmbedding||10402,0,000,-1;10402,0,000,0;10402,0,000,0;80,0,000,-1
|Round||10c02,0,000,-1
|STFT||10c02,0,000,-1;c0,0,000,-1;10c02,0,000,0;c0,0,000,1
|Scan|v|7fffffe,0,000,-1;7fffffe,0,000,-1
|Scatter||fffe,0,000,-1;c0,0,000,-1;fffe,0,000,0
|ScatterElements||1fffe,0,000,-1;c0,0,000,-1;1fffe,0,000,0
|ScatterND||1fffe,0,000,-1;80,0,000,-1;1fffe,0,000,0
|Selu||10c02,0,000,-1
|SequenceAt||0,fffe,000,-1;c0,0,000,-1
|SequenceConstruct|vh|fffe,0,000,-1
|SequenceEmpty||
|SequenceErase||0,fffe,000,-1;c0,0,000,-1
|SequenceInsert||0,fffe,000,-1;fffe,0,000,-1;c0,0,000,-1
|SequenceLength||0,fffe,000,-1
|SequenceMap|v|0,fffe,000,-1;fffe,fffe,000,-1
|Shape||7fffffe,0,000,-1
|Shrink||3cfe,0,000,-1
|Sigmoid||10c02,0,000,-1
|Sign||13cfe,0,000,-1
|Sin||10c02,0,000,-1
|Sinh||10c02,0,000,-1
|Size||7fffffe,0,000,-1
|Slice||1fffe,0,000,-1;c0,0,000,-1;c0,0,000,1;c0,0,000,1;c0,0,000,1
|Softmax||10c02,0,000,-1
|SoftmaxCrossEntropyLoss||10c02,0,000,-1;c0,0,000,-1;10c02,0,000,0
|Softplus||10c02,0,000,-1
|Softsign||10c02,0,000,-1
|SpaceToDepth||1fffe,0,000,-1
|Split||1fffe,0,000,-1;c82,0,000,-1
|SplitToSequence||1fffe,0,000,-1;c0,0,000,-1
|Sqrt||10c02,0,000,-1
|Squeeze||7fffffe,0,000,-1;80,0,000,-1
|StringConcat||100,0,000,-1;100,0,000,0
|StringNormalizer||100,0,000,-1
|StringSplit||100,0,000,-1
|Sub||13cfe,0,000,-1;13cfe,0,000,0
|Sum|vh|10c02,0,000,-1
|Swish||10c02,0,000,-1
|Tan||10c02,0,000,-1
|Tanh||10c02,0,000,-1
|TensorScatter||1fffffe,0,000,-1;1fffffe,0,000,0;80,0,000,-1
|TfIdfVectorizer||1c0,0,000,-1
|ThresholdedRelu||10c02,0,000,-1
|Tile||1fffe,0,000,-1;c82,0,000,-1;c02,0,000,0
|TopK||13cfe,0,000,-1;80,0,000,-1
|Transpose||7fffffe,0,000,-1
|Trilu||1fffe,0,000,-1;80,0,000,-1
|Unique||fffe,0,000,-1
|Unsqueeze||7fffffe,0,000,-1;80,0,000,-1
|Upsample||fffe,0,000,-1;2,0,000,-1
|Where||200,0,000,-1;1fffe,0,000,-1;1fffe,0,000,1
|Xor||200,0,000,-1;200,0,000,0
ai.onnx.ml|ArrayFeatureExtractor||9c2,0,000,-1;80,0,000,-1
ai.onnx.ml|Binarizer||8c2,0,000,-1
ai.onnx.ml|CastMap||0,0,010,-1
ai.onnx.ml|CategoryMapper||180,0,000,-1
ai.onnx.ml|DictVectorizer||0,0,010,-1
ai.onnx.ml|FeatureVectorizer|vh|8c2,0,000,-1
ai.onnx.ml|Imputer||8c2,0,000,-1
ai.onnx.ml|LabelEncoder||9e2,0,000,-1
ai.onnx.ml|LinearClassifier||8c2,0,000,-1
ai.onnx.ml|LinearRegressor||8c2,0,000,-1
ai.onnx.ml|Normalizer||8c2,0,000,-1
ai.onnx.ml|OneHotEncoder||9c2,0,000,-1
ai.onnx.ml|SVMClassifier||8c2,0,000,-1
ai.onnx.ml|SVMRegressor||8c2,0,000,-1
ai.onnx.ml|Scaler||8c2,0,000,-1
ai.onnx.ml|TreeEnsemble||c02,0,000,-1
ai.onnx.ml|TreeEnsembleClassifier||8c2,0,000,-1
ai.onnx.ml|TreeEnsembleRegressor||8c2,0,000,-1
ai.onnx.ml|ZipMap||2,0,000,-1
ai.onnx.preview|FlexAttention||10c02,0,000,-1;10c02,0,000,0;10c02,0,000,0
ai.onnx.preview.training|Adagrad|v|802,0,000,-1;80,0,000,-1;802,0,000,-1
ai.onnx.preview.training|Adam|v|802,0,000,-1;80,0,000,-1;802,0,000,-1
ai.onnx.preview.training|Gradient|v|fffe,0,000,-1
ai.onnx.preview.training|Momentum|v|802,0,000,-1;80,0,000,-1;802,0,000,-1
"""

// The table above is generated by scripts/generate-op-signatures from the installed onnx package.
