import KilnIR

/// Control flow: If, Loop and Scan. Their bodies run through `KernelContext.runSubgraph`, which
/// lets them read the enclosing graphs' values by name.
enum ControlFlowOps {
    static func register(into table: inout KernelTable) {
        table.add("If") { ctx in
            let cond = try ctx.tensor(0)
            guard cond.count == 1 else { throw ctx.fail("cond must hold one element") }
            let branch = try ctx.graph(cond.asDoubles()[0] != 0 ? "then_branch" : "else_branch")
            return try ctx.runSubgraph(branch, []).map { $0 }
        }
        table.add("Loop") { ctx in try loop(ctx) }
        table.add("Scan") { ctx in try scan(ctx) }
    }

    // MARK: Loop

    /// The most iterations a Loop's scan outputs may stack (2^24).
    static let maxScanSlices = 1 << 24

    /// Loop: runs the body while the iteration count is below `M` (if given) and `cond` holds (if given);
    /// carries values from one iteration to the next and stacks scan outputs along a new axis 0.
    static func loop(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let body = try ctx.graph("body")
        var maxTrips: Int64? = nil
        if let m = try ctx.optionalTensor(0) {
            guard m.count == 1 else { throw ctx.fail("M must hold one element") }
            maxTrips = m.asInt64s()[0]
        }
        var cond = true
        if let c = try ctx.optionalTensor(1) {
            guard c.count == 1 else { throw ctx.fail("cond must hold one element") }
            cond = c.asDoubles()[0] != 0
        }
        var carried: [RuntimeValue] = try (2..<max(ctx.inputCount, 2)).map { try ctx.value($0) }
        let carriedCount = carried.count
        guard body.inputs.count == carriedCount + 2 else {
            throw ctx.fail("body takes \(body.inputs.count) inputs, expected \(carriedCount + 2)")
        }
        let scanCount = body.outputs.count - 1 - carriedCount
        guard scanCount >= 0 else { throw ctx.fail("body has too few outputs") }
        var scans = [[Tensor]](repeating: [], count: scanCount)
        var iteration: Int64 = 0
        let deadline = RunDeadline.current
        while cond, maxTrips.map({ iteration < $0 }) ?? true {
            try deadline?.check()
            let args: [RuntimeValue] = [.tensor(Tensor(scalar: iteration)), .tensor(Tensor(scalar: cond))] + carried
            let results = try ctx.runSubgraph(body, args)
            guard let c = results[0].tensor, c.count == 1 else { throw ctx.fail("body's cond output must be a one-element tensor") }
            cond = try ctx.numbers(c, "the body's cond output")[0] != 0
            carried = Array(results[1..<(1 + carriedCount)])
            for k in 0..<scanCount {
                guard let t = results[1 + carriedCount + k].tensor else { throw ctx.fail("scan outputs must be tensors") }
                scans[k].append(t)
                // Stacked, the scan output holds every iteration's slice: stop once it outgrows the element cap,
                // or keeps more slices than `maxScanSlices` (each costs bookkeeping, however small).
                // A large M alone is no error: loops exported from while-loops end on `cond` long before it.
                try ctx.checkedCount([scans[k].count] + t.shape, "scan output \(k)")
                guard scans[k].count <= maxScanSlices else {
                    throw ctx.fail("scan output \(k) would stack more than \(maxScanSlices) iterations")
                }
            }
            iteration += 1
        }
        var outputs: [RuntimeValue?] = carried
        for k in 0..<scanCount {
            if scans[k].isEmpty {
                outputs.append(.tensor(emptyStack(body.outputs[1 + carriedCount + k].type)))
            } else {
                outputs.append(.tensor(try SequenceOps.stack(ctx, scans[k], axis: 0)))
            }
        }
        return outputs
    }

    /// A stack of zero slices of type `type` (shape `[0, dims...]` when the slice shape is known).
    static func emptyStack(_ type: ValueType?) -> Tensor {
        guard case .tensor(let t)? = type else { return Tensor(zeros: .float32, shape: [0]) }
        return Tensor(zeros: t.dtype, shape: [0] + (t.fixedShape ?? []))
    }

    // MARK: Scan

    /// Scan (opset 9+ form), and the opset 8 form (a leading `sequence_lens` input and a batch axis),
    /// recognized by having one more node input than the body has inputs.
    static func scan(_ ctx: KernelContext) throws -> [RuntimeValue?] {
        let body = try ctx.graph("body")
        if ctx.inputCount == body.inputs.count + 1 { return try scanOpset8(ctx, body: body) }
        let m = try ctx.int("num_scan_inputs") ?? 0
        guard m > 0, m <= ctx.inputCount else { throw ctx.fail("num_scan_inputs must be in 1...\(ctx.inputCount)") }
        let n = ctx.inputCount - m
        let states = try (0..<n).map { try ctx.value($0) }
        let scanInputs = try (n..<ctx.inputCount).map { try ctx.tensor($0) }
        let k = body.outputs.count - n
        guard k >= 0 else { throw ctx.fail("body has too few outputs") }
        let inputAxes = try ctx.ints("scan_input_axes") ?? Array(repeating: 0, count: m)
        let inputDirections = try ctx.ints("scan_input_directions") ?? Array(repeating: 0, count: m)
        let outputAxes = try ctx.ints("scan_output_axes") ?? Array(repeating: 0, count: k)
        let outputDirections = try ctx.ints("scan_output_directions") ?? Array(repeating: 0, count: k)
        guard inputAxes.count == m, inputDirections.count == m, outputAxes.count == k, outputDirections.count == k else {
            throw ctx.fail("scan axis/direction attributes do not match the number of scan inputs/outputs")
        }
        for t in scanInputs where t.rank == 0 { throw ctx.fail("scan inputs must have rank >= 1") }
        let axes = try zip(scanInputs, inputAxes).map { try ctx.axis($1, rank: $0.rank) }
        let results = try runScan(ctx, body: body, states: states, scanInputs: scanInputs, axes: axes,
                                  reversed: inputDirections.map { $0 != 0 }, length: nil)
        var outputs: [RuntimeValue?] = results.states
        for j in 0..<k {
            var slices = results.scans[j]
            if outputDirections[j] != 0 { slices.reverse() }
            if slices.isEmpty {
                outputs.append(.tensor(emptyStack(body.outputs[n + j].type)))
                continue
            }
            let axis = try ctx.axis(outputAxes[j], rank: slices[0].rank + 1)
            outputs.append(.tensor(try SequenceOps.stack(ctx, slices, axis: axis)))
        }
        return outputs
    }

    /// One scan over `scanInputs` along `axes`: the final states and, per scan output, its slices in
    /// iteration order. `length` limits the number of iterations (opset 8's sequence_lens).
    static func runScan(_ ctx: KernelContext, body: Graph, states initial: [RuntimeValue], scanInputs: [Tensor],
                        axes: [Int], reversed: [Bool], length: Int?) throws -> (states: [RuntimeValue], scans: [[Tensor]]) {
        let n = initial.count
        let lengths = zip(scanInputs, axes).map { $0.shape[$1] }
        guard let full = lengths.first, lengths.allSatisfy({ $0 == full }) else {
            throw ctx.fail("scan inputs have different sequence lengths \(lengths)")
        }
        let steps = max(0, min(length ?? full, full))
        let slices = zip(scanInputs, axes).map { SequenceOps.unstack($0, axis: $1) }
        var states = initial
        var scans = [[Tensor]](repeating: [], count: body.outputs.count - n)
        let deadline = RunDeadline.current
        for step in 0..<steps {
            try deadline?.check()
            let args = states + slices.indices.map { i -> RuntimeValue in
                .tensor(slices[i][reversed[i] ? steps - 1 - step : step])
            }
            let results = try ctx.runSubgraph(body, args)
            states = Array(results[0..<n])
            for j in 0..<scans.count {
                guard let t = results[n + j].tensor else { throw ctx.fail("scan outputs must be tensors") }
                scans[j].append(t)
            }
        }
        return (states, scans)
    }

    /// Scan-8: inputs are `sequence_lens` (optional), states and scan inputs, all with a leading batch
    /// axis (scan inputs scan along axis 1); `directions` reverses scan inputs.
    static func scanOpset8(_ ctx: KernelContext, body: Graph) throws -> [RuntimeValue?] {
        let m = try ctx.int("num_scan_inputs") ?? 0
        guard m > 0, m <= ctx.inputCount - 1 else { throw ctx.fail("num_scan_inputs must be in 1...\(ctx.inputCount - 1)") }
        let n = ctx.inputCount - 1 - m
        let states = try (1..<(1 + n)).map { try ctx.tensor($0) }
        let scanInputs = try ((1 + n)..<ctx.inputCount).map { try ctx.tensor($0) }
        let directions = try ctx.ints("directions") ?? Array(repeating: 0, count: m)
        guard directions.count == m else { throw ctx.fail("directions has \(directions.count) entries for \(m) scan inputs") }
        guard let batch = (states + scanInputs).first?.shape.first else { throw ctx.fail("inputs need a batch axis") }
        for t in states + scanInputs where t.shape.first != batch { throw ctx.fail("inputs must share the batch dim \(batch)") }
        for t in scanInputs where t.rank < 2 { throw ctx.fail("scan inputs need batch and sequence axes") }
        let lens = try ctx.optionalTensor(0).map { try ctx.integers($0, "sequence_lens") }
        guard lens == nil || lens?.count == batch else { throw ctx.fail("sequence_lens must have one entry per batch entry") }
        let statesByBatch = states.map { SequenceOps.unstack($0, axis: 0) }
        let scansByBatch = scanInputs.map { SequenceOps.unstack($0, axis: 0) }
        var finalStates = [[Tensor]](repeating: [], count: n)
        let k = body.outputs.count - n
        var scanOut = [[Tensor]](repeating: [], count: k)
        for b in 0..<batch {
            let result = try runScan(ctx, body: body, states: statesByBatch.map { .tensor($0[b]) },
                                     scanInputs: scansByBatch.map { $0[b] }, axes: Array(repeating: 0, count: m),
                                     reversed: directions.map { $0 != 0 }, length: lens?[b])
            for i in 0..<n {
                guard let t = result.states[i].tensor else { throw ctx.fail("states must be tensors") }
                finalStates[i].append(t)
            }
            let full = scanInputs.first?.shape[1] ?? 0
            for j in 0..<k {
                guard let sample = result.scans[j].first else { throw ctx.fail("empty scan (sequence length 0)") }
                var slices = result.scans[j]
                // Steps beyond this batch entry's length are padded with zeros.
                while slices.count < full { slices.append(Tensor(zeros: sample.dtype, shape: sample.shape)) }
                scanOut[j].append(try SequenceOps.stack(ctx, slices, axis: 0))
            }
        }
        var outputs: [RuntimeValue?] = try finalStates.map { .tensor(try SequenceOps.stack(ctx, $0, axis: 0)) }
        for j in 0..<k { outputs.append(.tensor(try SequenceOps.stack(ctx, scanOut[j], axis: 0))) }
        return outputs
    }
}
