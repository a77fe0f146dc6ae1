import KilnIR

/// Evaluates one node on constant inputs, for constant folding. The tensors are the values of the
/// node's non-empty inputs, in order; the result holds one tensor per non-empty output, in order,
/// or is nil when the evaluator cannot (or will not) evaluate the node.
public typealias NodeEvaluator = @Sendable (Node, [Tensor]) throws -> [Tensor]?

/// What passes may use besides the graph: options and services injected by the caller, so that
/// `KilnPasses` depends on no backend.
public struct PassContext: Sendable {
    /// Evaluates a node whose inputs are all constants (nil disables constant folding).
    public var evaluator: NodeEvaluator?
    /// Constant folding leaves a node alone when its outputs would take more than this many bytes.
    public var maxFoldedBytes: Int

    /// A context; by default nothing can be evaluated and folded constants are capped at 1 MiB.
    public init(evaluator: NodeEvaluator? = nil, maxFoldedBytes: Int = 1 << 20) {
        self.evaluator = evaluator
        self.maxFoldedBytes = maxFoldedBytes
    }
}

/// A graph rewrite. Passes keep the graph valid (see `Verifier`) and keep the names of graph outputs.
public protocol Pass: Sendable {
    /// A short stable name (`dce`), used in reports and in `PassManager.printIRAfter`.
    var name: String { get }
    /// Rewrites `graph` (and, where sound, its subgraphs); returns true if anything changed.
    func run(_ graph: inout Graph, context: PassContext) throws -> Bool
}

/// One run of one pass, as recorded by the pass manager.
public struct PassRecord: Sendable {
    /// The pass's name.
    public var name: String
    /// Which round of the pipeline this run belongs to (from 1).
    public var round: Int
    /// Whether the pass changed the graph.
    public var changed: Bool
    /// Wall time the pass took (verification and printing excluded).
    public var duration: Duration
    /// Node count (main graph and subgraphs) after the pass.
    public var nodesAfter: Int
}

/// What a pipeline did: every pass run, in order.
public struct PassReport: Sendable, CustomStringConvertible {
    /// The pass runs in order.
    public var records: [PassRecord] = []
    /// Node count (main graph and subgraphs) before the pipeline ran.
    public var nodesBefore: Int = 0

    /// An empty report.
    public init() {}

    /// Total time spent per pass name, summed over rounds.
    public var timeByPass: [String: Duration] {
        records.reduce(into: [:]) { $0[$1.name, default: .zero] += $1.duration }
    }

    /// One line per pass run: name, round, changed or not, time and node count.
    public var description: String {
        records.map { r in
            "\(r.name) (round \(r.round)): \(r.changed ? "changed" : "unchanged"), \(r.duration), \(r.nodesAfter) nodes"
        }.joined(separator: "\n")
    }
}

/// Runs a sequence of passes over a graph, optionally verifying and printing the IR after each.
public struct PassManager: Sendable {
    /// The passes, in order.
    public var passes: [any Pass]
    /// Verify the IR (`Verifier`) after every pass; a failure is a `.internal` error naming the pass.
    public var verifyAfterEachPass: Bool
    /// Names of passes after which the IR is printed through `printer`.
    public var printIRAfter: Set<String>
    /// Receives `(pass name, IR text)` for every pass named in `printIRAfter`.
    public var printer: (@Sendable (String, String) -> Void)?
    /// The pipeline is repeated while some pass changes the graph, at most this many times.
    public var maxRounds: Int

    /// A pass manager for an explicit list of passes.
    public init(passes: [any Pass], verifyAfterEachPass: Bool = false, printIRAfter: Set<String> = [],
                printer: (@Sendable (String, String) -> Void)? = nil, maxRounds: Int = 3) {
        self.passes = passes
        self.verifyAfterEachPass = verifyAfterEachPass
        self.printIRAfter = printIRAfter
        self.printer = printer
        self.maxRounds = max(1, maxRounds)
    }

    /// The standard pipeline for optimization level `level` (clamped to 0...3):
    /// 0 runs nothing; 1 algebraic simplification and dead-code elimination; 2 and 3 add constant
    /// folding, BatchNormalization folding and common-subexpression elimination.
    public init(level: Int, verifyAfterEachPass: Bool = false, printIRAfter: Set<String> = [],
                printer: (@Sendable (String, String) -> Void)? = nil) {
        self.init(passes: PassManager.pipeline(level: level), verifyAfterEachPass: verifyAfterEachPass,
                  printIRAfter: printIRAfter, printer: printer)
    }

    /// The passes of optimization level `level` (see `init(level:)`).
    public static func pipeline(level: Int) -> [any Pass] {
        switch min(max(level, 0), 3) {
        case 0: []
        case 1: [AlgebraicSimplification(), DeadCodeElimination()]
        default: [AlgebraicSimplification(), ConstantFolding(), BatchNormFolding(),
                  CommonSubexpressionElimination(), DeadCodeElimination()]
        }
    }

    /// Runs the passes over `graph` and reports what each did.
    public func run(_ graph: inout Graph, context: PassContext = PassContext()) throws -> PassReport {
        var report = PassReport()
        report.nodesBefore = graph.allNodes.count
        guard !passes.isEmpty else { return report }
        let clock = ContinuousClock()
        for round in 1...maxRounds {
            var anyChange = false
            for pass in passes {
                let start = clock.now
                let changed = try pass.run(&graph, context: context)
                let duration = clock.now - start
                anyChange = anyChange || changed
                report.records.append(PassRecord(name: pass.name, round: round, changed: changed, duration: duration,
                                                 nodesAfter: graph.allNodes.count))
                if verifyAfterEachPass {
                    do {
                        try Verifier.verify(graph)
                    } catch let error as KilnError {
                        throw KilnError(.internal, "pass '\(pass.name)' produced invalid IR: \(error.message)")
                    }
                }
                if printIRAfter.contains(pass.name), let printer {
                    printer(pass.name, Printer.print(graph))
                }
            }
            if !anyChange { break }
        }
        return report
    }

    /// Runs the passes over the main graph of `model`.
    public func run(_ model: inout Model, context: PassContext = PassContext()) throws -> PassReport {
        try run(&model.graph, context: context)
    }
}
