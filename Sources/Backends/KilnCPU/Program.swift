import CKilnKernels
import KilnIR

/// An operation of a lowered program: one graph node, or several fused into one.
protocol Operation: AnyObject {
    /// What it computes (`Conv+BatchNormalization+Relu`), for profiles.
    var kind: String { get }
    /// The name(s) of the graph node(s) it comes from.
    var label: String { get }
    /// Value ids it reads (-1 for an omitted optional input).
    var inputs: [Int] { get }
    /// Value ids it defines (-1 for an output nobody wants).
    var outputs: [Int] { get }
    /// Resolves output shapes for the input shapes in `builder`, defines the outputs and adds steps.
    func plan(_ builder: PlanBuilder) throws
}

/// An operation that reads and writes image values (rank ≥ 3, NCHW…) in either the plain or the blocked
/// (NCHW16c) layout. The plan builder gives every other operation the plain form of its inputs; a
/// layout-aware one chooses with `PlanBuilder.blockedForm`, `requireBlocked`, `requirePlain` and
/// `defineBlocked`.
protocol LayoutAware: Operation {
    /// The image values (inputs and outputs) that may have a blocked form.
    var imageValues: [Int] { get }
}

/// A graph lowered for `kiln.cpu`: values by id, constants, and fused operations in execution order.
final class Program: @unchecked Sendable {
    /// Name of each value id.
    private(set) var names: [String] = []
    private var ids: [String: Int] = [:]
    /// Constant values (initializers that are not inputs, Constant nodes, folded weights).
    var constants: [Int: Tensor] = [:]
    /// The graph inputs, in graph order, with the initializer a caller may override.
    var inputs: [(id: Int, name: String, defaultValue: Tensor?)] = []
    /// The graph outputs.
    var outputs: [Int] = []
    /// Operations in an order where each runs after the producers of its inputs.
    var operations: [any Operation] = []
    /// For each value id, the index of the last operation that reads it; `Int.max` for graph outputs.
    private(set) var lastUse: [Int] = []
    /// The blocked-layout (NCHW16c) twin of each image value a `LayoutAware` operation reads or writes:
    /// the id under which the value is stored blocked, while the original id names its plain NCHW form.
    /// A plan defines either form or both (see `PlanBuilder.defineBlocked`).
    private(set) var blockedTwin: [Int: Int] = [:]

    /// The id of value `name` (created on first use); -1 for `""` (an omitted optional value).
    func id(_ name: String) -> Int {
        if name.isEmpty { return -1 }
        if let id = ids[name] { return id }
        names.append(name)
        ids[name] = names.count - 1
        return names.count - 1
    }

    /// A new value with a unique name derived from `base`.
    func fresh(_ base: String) -> Int {
        var name = base
        var n = 1
        while ids[name] != nil {
            name = "\(base)#\(n)"
            n += 1
        }
        return id(name)
    }

    /// Number of value ids.
    var valueCount: Int { names.count }

    /// Creates the blocked twins and computes `lastUse` once the operations are final. A twin lives as
    /// long as its value.
    func finish() {
        for case let op as any LayoutAware in operations {
            for v in op.imageValues where v >= 0 && blockedTwin[v] == nil { blockedTwin[v] = fresh("\(names[v])#nchw16c") }
        }
        lastUse = Array(repeating: -1, count: names.count)
        for (index, op) in operations.enumerated() {
            for v in op.inputs where v >= 0 { lastUse[v] = index }
        }
        for v in outputs { lastUse[v] = Int.max }
        for (v, twin) in blockedTwin { lastUse[twin] = lastUse[v] }
    }
}

/// Resolves a program for concrete input shapes: shapes and element types of every value, plan-time
/// values (shapes, folded constants), storage and lifetimes, and the steps that run.
final class PlanBuilder {
    let program: Program
    let pool: ThreadPool
    var threads: Int { pool.threadCount }

    private(set) var shapes: [[Int]?]
    private(set) var dtypes: [DType?]
    /// Values known while planning (constants, shapes and what folds from them).
    private(set) var known: [Tensor?]

    enum Storage {
        case none
        case buffer(Int)
        case input(Int)
        case constant(Tensor)
    }
    private(set) var storage: [Storage]

    struct Buffer {
        var bytes: Int
        var first: Int
        var values: [Int]
        /// The operation whose steps last touch a scratch buffer (nil for value buffers).
        var scratchOperation: Int?
    }
    private var buffers: [Buffer] = []
    private var scratchBuffers: [Int] = []
    private(set) var steps: [Step] = []
    private var operationIndex = 0
    private var operationEndStep: [Int: Int] = [:]
    private var current: (any Operation)?

    /// The most bytes the arena may take (kiln.cpu's `memory_budget_mb` option); nil for no budget.
    var memoryBudget: Int?
    /// The first operation this builder plans (later stages of a staged run start past 0).
    let start: Int

    /// `bytes` as MiB with two decimals, for messages.
    static func megabytes(_ bytes: Int) -> String {
        let hundredths = (bytes * 100 + (1 << 19)) >> 20
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100) MiB"
    }

    /// A builder for `inputs` (the graph inputs' shapes and types). `carried` are values an earlier stage
    /// computed (see `CPUExecutable`): they are read as extra inputs, numbered after the graph's, and are
    /// known while planning when `known` says so; planning starts at operation `start`. `memoryBudget` caps
    /// the arena (nil: no budget).
    init(program: Program, pool: ThreadPool, inputs: [(shape: [Int], dtype: DType)],
         carried: [(id: Int, tensor: Tensor, known: Bool)] = [], start: Int = 0, memoryBudget: Int? = nil) {
        self.start = start
        self.memoryBudget = memoryBudget
        self.program = program
        self.pool = pool
        shapes = Array(repeating: nil, count: program.valueCount)
        dtypes = Array(repeating: nil, count: program.valueCount)
        known = Array(repeating: nil, count: program.valueCount)
        storage = Array(repeating: .none, count: program.valueCount)
        for (id, tensor) in program.constants {
            shapes[id] = tensor.shape
            dtypes[id] = tensor.dtype
            known[id] = tensor
            storage[id] = .constant(tensor)
        }
        for (k, input) in program.inputs.enumerated() {
            shapes[input.id] = inputs[k].shape
            dtypes[input.id] = inputs[k].dtype
            known[input.id] = nil
            storage[input.id] = .input(k)
        }
        for (j, c) in carried.enumerated() {
            shapes[c.id] = c.tensor.shape
            dtypes[c.id] = c.tensor.dtype
            known[c.id] = c.known ? c.tensor : nil
            storage[c.id] = .input(program.inputs.count + j)
        }
    }

    // MARK: reading values

    /// The shape of value `id`.
    func shape(_ id: Int) throws -> [Int] {
        guard id >= 0, let s = shapes[id] else { throw KilnError(.internal, "kiln.cpu: value '\(name(id))' has no shape yet") }
        return s
    }

    /// The element type of value `id`.
    func dtype(_ id: Int) throws -> DType {
        guard id >= 0, let t = dtypes[id] else { throw KilnError(.internal, "kiln.cpu: value '\(name(id))' has no type yet") }
        return t
    }

    /// The value of `id` when it is known while planning.
    func knownValue(_ id: Int) -> Tensor? { id >= 0 ? known[id] : nil }

    /// The name of value `id`.
    func name(_ id: Int) -> String { id >= 0 && id < program.names.count ? program.names[id] : "(none)" }

    /// An `.unsupported` error about the operation being planned.
    func unsupported(_ message: String) -> KilnError {
        KilnError(.unsupported, "kiln.cpu: \(current?.kind ?? "?") '\(current?.label ?? "")': \(message)")
    }

    /// An `.invalidModel` error about the operation being planned.
    func invalid(_ message: String) -> KilnError {
        KilnError(.invalidModel, "kiln.cpu: \(current?.kind ?? "?") '\(current?.label ?? "")': \(message)")
    }

    /// Requires value `id` to be float32.
    func requireFloat(_ id: Int) throws {
        let t = try dtype(id)
        guard t == .float32 else { throw unsupported("input '\(name(id))' is \(t); kiln.cpu computes in float32 only") }
    }

    // MARK: defining values

    /// The most bytes one value or scratch buffer may take: 2^31 floats, as kiln.reference allows.
    static let maxBufferBytes = 1 << 33

    /// Bytes of a buffer of `shape` × `width`, or an `.unsupported` error naming `name` when a dimension is
    /// negative, the product overflows or it exceeds `maxBufferBytes` (a model asking for terabytes gets an
    /// error, not a failed allocation).
    func checkedBytes(_ shape: [Int], width: Int, name: String) throws -> Int {
        var bytes = width
        for d in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard d >= 0, !overflow, product <= Self.maxBufferBytes else {
                throw unsupported("'\(name)' of shape \(shape) would need more than \(Self.maxBufferBytes >> 30) GiB (kiln.cpu's limit for one value)")
            }
            bytes = product
        }
        return bytes
    }

    /// Bytes of the index tables lowerings have built while planning (see `indexTable`).
    private var indexTableBytes = 0

    /// A table of `count` indices, `f(0)..<f(count)`, that a lowering keeps for the plan's lifetime (the
    /// per-axis maps of Slice, Split, Pad, Tile, Expand, Gather and nearest Resize). The tables count against
    /// the memory budget (with none, against one value's limit) before they are built: their lengths come
    /// from declared shapes, so a model declaring a [2^32] input must get an error, not a 32 GB array.
    func indexTable(_ count: Int, _ f: (Int) -> Int) throws -> [Int] {
        let (bytes, overflow) = max(count, 0).multipliedReportingOverflow(by: MemoryLayout<Int>.stride)
        let (total, overflow2) = indexTableBytes.addingReportingOverflow(bytes)
        let cap = memoryBudget ?? Self.maxBufferBytes
        guard !overflow, !overflow2, total <= cap else {
            let limit = memoryBudget.map { "the memory budget of \(Self.megabytes($0)) (option memory_budget_mb)" }
                ?? "\(Self.maxBufferBytes >> 30) GiB (kiln.cpu's limit for one value)"
            throw unsupported("index tables of \(count) entries would take the plan's index tables past \(limit)")
        }
        indexTableBytes = total
        return (0..<max(count, 0)).map(f)
    }

    /// The identity maps of a value of `shape` (one `0..<d` table per axis), counted as `indexTable` counts.
    func identityMaps(_ shape: [Int]) throws -> [[Int]] {
        try shape.map { d in try indexTable(d) { $0 } }
    }

    /// Defines `id` as a new arena buffer.
    func define(_ id: Int, shape: [Int], dtype: DType = .float32) throws {
        guard id >= 0 else { return }
        let bytes = try checkedBytes(shape, width: dtype.byteWidth ?? 1, name: name(id))
        shapes[id] = shape
        dtypes[id] = dtype
        buffers.append(Buffer(bytes: bytes, first: steps.count, values: [id]))
        storage[id] = .buffer(buffers.count - 1)
    }

    /// Defines `id` as the bytes of `source` seen with another shape (no copy).
    func defineView(_ id: Int, of source: Int, shape: [Int]) throws {
        guard id >= 0 else { return }
        shapes[id] = shape
        dtypes[id] = try dtype(source)
        if let k = known[source] { known[id] = k.reshaped(shape) }
        switch storage[source] {
        case .buffer(let b):
            buffers[b].values.append(id)
            storage[id] = .buffer(b)
        case .constant(let t): storage[id] = .constant(t.reshaped(shape))
        case .input(let k): storage[id] = .input(k)
        case .none: throw KilnError(.internal, "kiln.cpu: view of '\(name(source))', which has no storage")
        }
    }

    /// Defines `id` as a value known while planning.
    func defineKnown(_ id: Int, _ tensor: Tensor) {
        guard id >= 0 else { return }
        shapes[id] = tensor.shape
        dtypes[id] = tensor.dtype
        known[id] = tensor
        storage[id] = .constant(tensor)
    }

    /// Whether the current operation may overwrite `source` with its output: `source` is an arena buffer
    /// whose every view dies at this operation, and none of them is a graph output.
    func canOverwrite(_ source: Int) -> Bool {
        guard source >= 0, case .buffer(let b) = storage[source], buffers[b].scratchOperation == nil else { return false }
        return buffers[b].values.allSatisfy { program.lastUse[$0] <= operationIndex }
    }

    /// Defines `id` in the buffer of the first of `candidates` that it may overwrite and that has the
    /// same byte size; otherwise as a new buffer. Returns the candidate reused, if any.
    @discardableResult
    func defineInPlace(_ id: Int, shape: [Int], dtype: DType = .float32, reusing candidates: [Int]) throws -> Int? {
        guard id >= 0 else { return nil }
        let bytes = try checkedBytes(shape, width: dtype.byteWidth ?? 1, name: name(id))
        for c in candidates where canOverwrite(c) {
            guard case .buffer(let b) = storage[c], buffers[b].bytes == bytes else { continue }
            shapes[id] = shape
            dtypes[id] = dtype
            buffers[b].values.append(id)
            storage[id] = .buffer(b)
            return c
        }
        try define(id, shape: shape, dtype: dtype)
        return nil
    }

    /// Scratch bytes for the current operation's steps; the result indexes `Frame.scratch`.
    func scratch(bytes: Int) throws -> Int {
        guard bytes >= 0, bytes <= Self.maxBufferBytes else {
            throw unsupported("scratch of \(bytes) bytes is more than kiln.cpu's limit of \(Self.maxBufferBytes >> 30) GiB")
        }
        buffers.append(Buffer(bytes: bytes, first: steps.count, values: [], scratchOperation: operationIndex))
        scratchBuffers.append(buffers.count - 1)
        return scratchBuffers.count - 1
    }

    /// Adds a step of the current operation.
    func step(_ kind: String? = nil, _ body: @escaping (Frame) throws -> Void) {
        steps.append(Step(kind: kind ?? current?.kind ?? "?", label: current?.label ?? "", body: body))
    }

    // MARK: the blocked layout

    /// Whether value `id` is stored in its plain form (its own id has storage).
    func hasPlain(_ id: Int) -> Bool {
        guard id >= 0 else { return false }
        if case .none = storage[id] { return false }
        return true
    }

    /// The blocked twin of `id` when the plan has defined it.
    func blockedForm(_ id: Int) -> Int? {
        guard id >= 0, let twin = program.blockedTwin[id] else { return nil }
        if case .none = storage[twin] { return nil }
        return twin
    }

    /// Defines value `id` (logical shape `shape`, float32) in the blocked layout only: its twin gets an
    /// arena buffer of shape [N, ceil(C/16), spatial…, 16]; the plain form is made on demand.
    /// Returns the twin's id.
    @discardableResult
    func defineBlocked(_ id: Int, shape: [Int]) throws -> Int {
        guard let twin = program.blockedTwin[id], shape.count >= 3 else {
            throw KilnError(.internal, "kiln.cpu: value '\(name(id))' has no blocked form")
        }
        let blocked = [shape[0], (shape[1] + Int(KILN_BLOCK) - 1) / Int(KILN_BLOCK)] + Array(shape[2...]) + [Int(KILN_BLOCK)]
        _ = try checkedBytes(blocked, width: 4, name: name(id))
        shapes[id] = shape
        dtypes[id] = .float32
        try define(twin, shape: blocked)
        return twin
    }

    /// The blocked twin of `id`, adding a reorder step from the plain form when the plan has only that.
    func requireBlocked(_ id: Int) throws -> Int {
        if let twin = blockedForm(id) { return twin }
        let shape = try shape(id)
        guard program.blockedTwin[id] != nil, shape.count >= 3 else {
            throw KilnError(.internal, "kiln.cpu: value '\(name(id))' has no blocked form")
        }
        try requireFloat(id)
        let twin = try defineBlocked(id, shape: shape)
        try addReorder(id, toBlocked: true)
        return twin
    }

    /// Makes the plain form of `id` exist, adding a reorder step from its blocked twin when needed.
    func requirePlain(_ id: Int) throws {
        guard id >= 0, !hasPlain(id), blockedForm(id) != nil, let shape = shapes[id] else { return }
        try define(id, shape: shape)
        try addReorder(id, toBlocked: false)
    }

    /// Adds a step that copies value `id` between its plain form and its blocked twin (both defined),
    /// in the direction given.
    func addReorder(_ id: Int, toBlocked: Bool) throws {
        guard let twin = program.blockedTwin[id] else { throw KilnError(.internal, "kiln.cpu: value '\(name(id))' has no blocked form") }
        let shape = try self.shape(id), blocked = try self.shape(twin)
        let (n, c, hw) = (shape[0], shape[1], shape[2...].reduce(1, *))
        let image = c * hw, blockedImage = blocked[1...].reduce(1, *)
        step("Reorder") { frame in
            let plain = frame.f(id), blocked = frame.f(twin)
            for i in 0..<n {
                if toBlocked {
                    kiln_reorder_to_blocked(c, hw, plain + i * image, blocked + i * blockedImage)
                } else {
                    kiln_reorder_from_blocked(c, hw, blocked + i * blockedImage, plain + i * image)
                }
            }
        }
    }

    // MARK: building

    /// Plans every operation from `start` on and lays out the arena. Throws `PlanNeedsValue` (with the
    /// operation's index) when an operation needs the value of something not known while planning.
    func build() throws -> Plan {
        try build(until: program.operations.count).plan
    }

    /// Plans operations `start..<end` and lays out the arena. When `end` stops short of the program, the
    /// plan's outputs are every value that later operations (or the graph's outputs) read, and `known`
    /// says which of them were known while planning.
    func build(until end: Int) throws -> (plan: Plan, known: Set<Int>) {
        for index in start..<end {
            let op = program.operations[index]
            operationIndex = index
            current = op
            do {
                // Operations that read only plain NCHW get it from the blocked form first.
                if !(op is any LayoutAware) { for v in op.inputs { try requirePlain(v) } }
                try op.plan(self)
            } catch var need as PlanNeedsValue {
                need.operation = index
                throw need
            } catch var run as PlanRunsOperation {
                run.operation = index
                throw run
            }
            operationEndStep[index] = steps.count
        }
        operationIndex = end
        let complete = end == program.operations.count
        var kept: [Int] = program.outputs
        if !complete {
            let twins = Set(program.blockedTwin.values), graphInputs = Set(program.inputs.map(\.id))
            kept = (0..<program.valueCount).filter { v in
                program.lastUse[v] >= end && (hasPlain(v) || blockedForm(v) != nil) && !twins.contains(v)
                    && !graphInputs.contains(v) && program.constants[v] == nil
            }
        }
        for v in kept { try requirePlain(v) }
        current = nil
        // Lifetimes in steps: from the step that first writes a buffer to the last step that reads it.
        var requests: [MemoryPlan.Request] = []
        for buffer in buffers {
            var last = buffer.first
            if let op = buffer.scratchOperation {
                last = max(last, (operationEndStep[op] ?? steps.count) - 1)
            } else {
                for v in buffer.values {
                    let use = program.lastUse[v]
                    if use == Int.max || use >= end { last = steps.count } else if use >= 0, let e = operationEndStep[use] { last = max(last, e - 1) }
                }
            }
            requests.append(MemoryPlan.Request(bytes: buffer.bytes, first: buffer.first, last: last))
        }
        let memory = MemoryPlan(requests)
        if let memoryBudget, memory.arenaBytes + indexTableBytes > memoryBudget {
            // Name the largest buffers so the caller sees what to shrink (a batch dim, a sequence length).
            let largest = buffers.indices.sorted { buffers[$0].bytes > buffers[$1].bytes }.prefix(3).map { b in
                let what = buffers[b].values.isEmpty ? "scratch of operation #\(buffers[b].scratchOperation ?? 0)"
                    : buffers[b].values.map { "'\(name($0))'" }.joined(separator: "/")
                return "\(what) \(Self.megabytes(buffers[b].bytes))"
            }
            throw KilnError(.unsupported, "kiln.cpu: the memory plan needs \(Self.megabytes(memory.arenaBytes + indexTableBytes)), more than the memory budget of \(Self.megabytes(memoryBudget)) (option memory_budget_mb); largest values: \(largest.joined(separator: ", "))")
        }
        var retained: [Tensor] = []
        var locations = [Location](repeating: .none, count: program.valueCount)
        for id in 0..<program.valueCount {
            switch storage[id] {
            case .none: break
            case .buffer(let b): locations[id] = .arena(memory.offsets[b])
            case .input(let k): locations[id] = .input(k)
            case .constant(let t):
                retained.append(t)
                locations[id] = .constant(t.rawBytes?.baseAddress ?? UnsafeRawPointer(bitPattern: 64)!)
            }
        }
        var outputs: [(id: Int, shape: [Int], dtype: DType)] = []
        var knownOutputs = Set<Int>()
        for id in kept {
            guard let shape = shapes[id], let dtype = dtypes[id] else {
                throw KilnError(.internal, "kiln.cpu: graph output '\(name(id))' was never computed")
            }
            outputs.append((id, shape, dtype))
            if known[id] != nil { knownOutputs.insert(id) }
        }
        let plan = try Plan(steps: steps, locations: locations, scratchOffsets: scratchBuffers.map { memory.offsets[$0] },
                        arenaBytes: memory.arenaBytes, unsharedBytes: memory.unsharedBytes, outputs: outputs,
                        retained: retained, pool: pool)
        return (plan, knownOutputs)
    }
}

extension Tensor {
    /// Calls `body` with this float32 tensor's elements: in place when its storage allows (an artifact's
    /// weights section, 64-byte aligned), else from a copy. Packing a weight this way reads it once.
    func withFloats<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        if let raw = rawBytes, let base = raw.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
            // The bytes belong to this tensor's storage: keep it alive until `body` is done with them.
            return try withExtendedLifetime(self) { try body(base.assumingMemoryBound(to: Float.self)) }
        }
        let values = elements(as: Float.self)
        return try values.withUnsafeBufferPointer { try body($0.baseAddress ?? UnsafePointer(bitPattern: 64)!) }
    }
}

/// Floats in 64-byte-aligned memory that this object owns (packed weights, folded biases).
final class FloatBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    /// `count` zeroed floats.
    init(count: Int) {
        self.count = count
        // AlignedMemory gives large buffers huge pages (packed weights of 10-100 MB fill them at load); like
        // Swift's allocate, running out of memory here ends the process.
        guard let raw = try? AlignedMemory.allocate(byteCount: max(count, 16) * 4, what: "packed weights") else {
            fatalError("kiln.cpu: cannot allocate \(count) floats for packed weights")
        }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 16) * 4)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 16))
    }

    /// A copy of `values`.
    convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { if let b = $0.baseAddress { pointer.update(from: b, count: values.count) } }
    }

    deinit { AlignedMemory.free(UnsafeMutableRawPointer(pointer)) }
}
