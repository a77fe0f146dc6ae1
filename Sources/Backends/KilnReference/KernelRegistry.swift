/// Every op family of the reference backend. Each family lives in `Ops/<Family>.swift` and
/// registers its kernels in one `register(into:)` function.
extension KernelTable {
    static let reference: KernelTable = {
        var table = KernelTable()
        ElementwiseOps.register(into: &table)
        CastOps.register(into: &table)
        ShapeOps.register(into: &table)
        IndexingOps.register(into: &table)
        ReductionOps.register(into: &table)
        NormalizationOps.register(into: &table)
        LinearAlgebraOps.register(into: &table)
        QuantizationOps.register(into: &table)
        ContribQuantizationOps.register(into: &table)
        ContribRecurrentOps.register(into: &table)
        ConvolutionOps.register(into: &table)
        PoolingOps.register(into: &table)
        ImageOps.register(into: &table)
        ControlFlowOps.register(into: &table)
        SequenceOps.register(into: &table)
        RecurrentOps.register(into: &table)
        AttentionOps.register(into: &table)
        SignalOps.register(into: &table)
        TextOps.register(into: &table)
        MLOps.register(into: &table)
        TrainingOps.register(into: &table)
        TreeOps.register(into: &table)
        return table
    }()
}
