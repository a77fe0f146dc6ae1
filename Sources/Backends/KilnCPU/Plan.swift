import KilnIR
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a value lives while a plan runs.
enum Location {
    /// Not materialized (never read).
    case none
    /// In the arena, this many bytes in.
    case arena(Int)
    /// The caller's input tensor number `k`.
    case input(Int)
    /// Constant bytes that the plan keeps alive.
    case constant(UnsafeRawPointer)
}

/// What a step sees while it runs: where each value is, scratch memory, the thread pool.
final class Frame: @unchecked Sendable {
    let arena: UnsafeMutableRawPointer
    let locations: [Location]
    let scratchOffsets: [Int]
    let pool: ThreadPool
    var inputs: [UnsafeRawPointer] = []

    init(arena: UnsafeMutableRawPointer, locations: [Location], scratchOffsets: [Int], pool: ThreadPool) {
        self.arena = arena
        self.locations = locations
        self.scratchOffsets = scratchOffsets
        self.pool = pool
    }

    /// The bytes of value `id`. Steps write only to values they define (which live in the arena).
    @inline(__always)
    func raw(_ id: Int) -> UnsafeMutableRawPointer {
        switch locations[id] {
        case .arena(let offset): return arena + offset
        case .input(let k): return UnsafeMutableRawPointer(mutating: inputs[k])
        case .constant(let p): return UnsafeMutableRawPointer(mutating: p)
        case .none: preconditionFailure("kiln.cpu: value #\(id) has no storage")
        }
    }

    /// Value `id` as floats.
    @inline(__always)
    func f(_ id: Int) -> UnsafeMutablePointer<Float> { raw(id).assumingMemoryBound(to: Float.self) }

    /// Value `id` as floats, or nil for an omitted optional value (-1).
    @inline(__always)
    func optionalF(_ id: Int) -> UnsafeMutablePointer<Float>? { id < 0 ? nil : f(id) }

    /// Scratch buffer `k` of the current plan.
    @inline(__always)
    func scratch(_ k: Int) -> UnsafeMutableRawPointer { arena + scratchOffsets[k] }
}

/// One unit of work of a plan: usually one fused operation, sometimes a part of one.
struct Step {
    /// What it computes (`Conv+BatchNormalization+Relu`), for profiles.
    var kind: String
    /// The node name(s) it comes from.
    var label: String
    /// Does the work.
    var body: (Frame) throws -> Void
}

/// A program bound to concrete input shapes: shapes of every value, an arena layout and the steps.
final class Plan: @unchecked Sendable {
    let steps: [Step]
    let frame: Frame
    let arenaBytes: Int
    let unsharedBytes: Int
    let outputs: [(id: Int, shape: [Int], dtype: DType)]
    /// Plan-time tensors (folded values, packed weights) that locations point into.
    let retained: [Tensor]
    private let arenaMemory: UnsafeMutableRawPointer

    init(steps: [Step], locations: [Location], scratchOffsets: [Int], arenaBytes: Int, unsharedBytes: Int,
         outputs: [(id: Int, shape: [Int], dtype: DType)], retained: [Tensor], pool: ThreadPool) throws {
        self.steps = steps
        self.arenaBytes = arenaBytes
        self.unsharedBytes = unsharedBytes
        self.outputs = outputs
        self.retained = retained
        // The arena's size follows from the model's shapes: a failed allocation is an error, not a trap.
        arenaMemory = try AlignedMemory.allocate(byteCount: arenaBytes, what: "kiln.cpu's value arena")
        frame = Frame(arena: arenaMemory, locations: locations, scratchOffsets: scratchOffsets, pool: pool)
    }

    deinit { AlignedMemory.free(arenaMemory) }

    /// Runs every step on `inputs` (pointers to the caller's tensors, in program input order) and copies
    /// the outputs out. `profile`, when given, receives each step's start and duration in nanoseconds.
    func run(inputs: [UnsafeRawPointer], profile: ((Int, UInt64, UInt64) -> Void)? = nil) throws -> [Tensor] {
        frame.inputs = inputs
        defer { frame.inputs = [] }
        if let deadline = RunDeadline.current {
            // A deadline is checked between steps (one clock read each).
            for (i, step) in steps.enumerated() {
                try deadline.check()
                let start = profile != nil ? monotonicNanoseconds() : 0
                try step.body(frame)
                profile?(i, start, monotonicNanoseconds() - start)
            }
        } else if let profile {
            for (i, step) in steps.enumerated() {
                let start = monotonicNanoseconds()
                try step.body(frame)
                profile(i, start, monotonicNanoseconds() - start)
            }
        } else {
            try runSteps()
        }
        return try outputs.map { output in
            let bytes = output.shape.reduce(1, *) * output.dtype.byteWidth!
            let source = frame.raw(output.id)
            let storage = try TensorStorage(byteCount: bytes, what: "a kiln.cpu output") { dst in
                if bytes > 0 { dst.baseAddress!.copyMemory(from: source, byteCount: bytes) }
            }
            return Tensor(dtype: output.dtype, shape: output.shape, storage: storage)
        }
    }
}

extension Plan {
    /// Runs every step on the inputs already in `frame.inputs`, with no deadline and no profile.
    @inline(__always)
    func runSteps() throws {
        for step in steps { try step.body(frame) }
    }
}

/// Nanoseconds of the monotonic clock.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
