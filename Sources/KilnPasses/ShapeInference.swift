import KilnIR

/// Infers the element type and shape of every value of a graph and records them in
/// `Graph.valueTypes` (and on graph outputs whose type is unknown or only partly known).
///
/// Symbolic dims flow through: `batch` in an input reaches every value it determines. Broadcasting a
/// symbol against 1 keeps the symbol, against a fixed size above 1 gives that size, and two different
/// symbols give an unknown dim. Shape-carrying inputs (Reshape's shape, Slice's starts, Unsqueeze's
/// axes, …) are read from constants, and from a table of *known values*: small integer tensors whose
/// elements (fixed or symbolic) follow from `Shape`, `Constant`, `Gather`, `Concat`, `Unsqueeze`,
/// `Slice`, `Cast`, `Squeeze` and simple arithmetic, so that `Shape → Gather → Concat → Reshape`
/// chains resolve. Subgraphs (If branches, Loop and Scan bodies) are inferred too.
///
/// An op without a rule leaves its outputs unknown (or with only the element type, when that follows
/// from its inputs): nothing is guessed. Shapes that are provably inconsistent (fixed MatMul inner
/// dims that differ, fixed dims that do not broadcast, …) throw `KilnError(.invalidModel)` naming
/// the node. Types already declared (`value_info`) are kept where inference knows less.
public struct ShapeInference: Pass {
    /// `shape-inference`.
    public let name = "shape-inference"

    /// The pass.
    public init() {}

    /// Infers types in `graph` and its subgraphs; true if any recorded type changed.
    public func run(_ graph: inout Graph, context: PassContext) throws -> Bool {
        try GraphInference.infer(&graph)
    }
}
