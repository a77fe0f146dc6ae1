/// Control flow (If, Loop, Scan), optionals and sequences.
extension OpCatalog {
    static func registerControlFlow(into catalog: inout OpCatalog) {
        catalog.define(["If"]) { $0.ifOp() }
        catalog.define(["Loop"], subgraphs: { rule, key, body, environment in
            if key == "body" { NodeInference.prepareLoopBody(body, rule: rule, environment: &environment) }
        }) { $0.loop() }
        catalog.define(["Scan"], subgraphs: { rule, key, body, environment in
            if key == "body" { NodeInference.prepareScanBody(body, rule: rule, environment: &environment) }
        }) { $0.scan() }
        catalog.define(["Optional"]) { inference in
            if case .type(let t)? = inference.node.attributes["type"] {
                inference.set(0, TypeFact(other: .optional(t)))
            } else if let t = inference.fact(0).valueType {
                inference.set(0, TypeFact(other: .optional(t)))
            }
        }
        catalog.define(["OptionalHasElement"]) { $0.set(0, .bool, []) }
        catalog.define(["OptionalGetElement"]) { inference in
            let input = inference.fact(0)
            if case .optional(let t)? = input.other { inference.set(0, TypeFact(t)) } else { inference.set(0, input) }
        }
        catalog.define(["SequenceEmpty"]) { inference in
            inference.set(0, TypeFact(other: .sequence(.tensor(TensorType(inference.dtypeAttribute("dtype", .float32)!, nil)))))
        }
        catalog.define(["SequenceConstruct"]) { $0.sequenceConstruct() }
        catalog.define(["SequenceAt"]) { inference in
            if case .sequence(let t)? = inference.fact(0).other { inference.set(0, TypeFact(t)) }
        }
        catalog.define(["SequenceLength"]) { $0.set(0, .int64, []) }
        catalog.define(["SequenceInsert", "SequenceErase"]) { inference in
            if let seq = inference.fact(0).other { inference.set(0, TypeFact(other: seq)) }
        }
        catalog.define(["SplitToSequence"]) { inference in
            if let d = inference.dtype(0) { inference.set(0, TypeFact(other: .sequence(.tensor(TensorType(d, nil))))) }
        }
        catalog.define(["ConcatFromSequence"]) { inference in
            if case .sequence(.tensor(let t))? = inference.fact(0).other {
                let rank = t.shape.map { $0.count + (inference.int("new_axis", 0) != 0 ? 1 : 0) }
                inference.set(0, t.dtype, rank.map { Array(repeating: Dim.unknown, count: $0) })
            }
        }
    }
}

extension NodeInference {
    /// If: each output joins the two branches' outputs.
    mutating func ifOp() {
        guard let thenOut = subgraphOutputs["then_branch"], let elseOut = subgraphOutputs["else_branch"] else { return }
        for i in 0..<min(outputCount, thenOut.count, elseOut.count) {
            let (a, b) = (thenOut[i], elseOut[i])
            if a.other != nil || b.other != nil {
                if a.other == b.other { set(i, a) }
                continue
            }
            set(i, a.dtype == b.dtype ? a.dtype : nil, DimMath.join(a.shape, b.shape))
        }
    }

    /// Loop: carried values join their initial value and the body's result; scan outputs gain a
    /// leading dim of unknown size.
    mutating func loop() {
        guard let body = subgraphOutputs["body"] else { return }
        let carried = node.inputs.count - 2
        for i in 0..<outputCount {
            let j = i + 1  // body output 0 is the condition
            guard j < body.count else { continue }
            if i < carried {
                let (initial, result) = (fact(i + 2), body[j])
                if initial.other != nil || result.other != nil {
                    if let other = result.other ?? initial.other { set(i, TypeFact(other: other)) }
                    continue
                }
                set(i, result.dtype ?? initial.dtype, DimMath.join(initial.shape, result.shape))
            } else if body[j].other == nil {
                set(i, body[j].dtype, body[j].shape.map { [.unknown] + $0 })
            }
        }
    }

    /// Scan: final states join initial and body results; scan outputs stack the body's per-step outputs.
    mutating func scan() {
        guard let body = subgraphOutputs["body"] else { return }
        let scanInputs = int("num_scan_inputs", 0)
        guard scanInputs >= 0, scanInputs <= node.inputs.count else { return }
        let states = node.inputs.count - scanInputs
        var length: Dim = .unknown
        if scanInputs > 0, let s = shape(states) {
            let axis = ints("scan_input_axes")?.first ?? 0
            let a = axis < 0 ? axis + s.count : axis
            if (0..<s.count).contains(a) { length = s[a] }
        }
        let outputAxes = ints("scan_output_axes")
        for i in 0..<min(outputCount, body.count) {
            if i < states {
                set(i, body[i].dtype ?? dtype(i), DimMath.join(shape(i), body[i].shape))
            } else if var s = body[i].shape {
                let raw = outputAxes.map { $0.count > i - states ? $0[i - states] : 0 } ?? 0
                let a = raw < 0 ? raw + s.count + 1 : raw
                guard (0...s.count).contains(a) else { continue }
                s.insert(length, at: a)
                set(i, body[i].dtype, s)
            } else {
                set(i, body[i].dtype, nil)
            }
        }
    }

    /// SequenceConstruct: a sequence whose element type joins the inputs' types.
    mutating func sequenceConstruct() {
        var element: TypeFact? = nil
        for i in node.inputs.indices {
            let f = fact(i)
            guard f.other == nil, let d = f.dtype else { return }
            if let e = element {
                guard e.dtype == d else { return }
                element = TypeFact(d, DimMath.join(e.shape, f.shape))
            } else {
                element = f
            }
        }
        if let element, let t = element.valueType { set(0, TypeFact(other: .sequence(t))) }
    }
}

extension NodeInference {
    /// Types for a Loop body's inputs that the body does not declare: iteration number (i64 scalar),
    /// condition (bool scalar) and loop-carried values (element type of the initial value; the shape
    /// may change from one iteration to the next, so it is left unknown).
    static func prepareLoopBody(_ body: Graph, rule: NodeInference, environment: inout InferenceEnvironment) {
        for (j, input) in body.inputs.enumerated() where input.type == nil {
            switch j {
            case 0: environment.facts[input.name] = TypeFact(.int64, [])
            case 1: environment.facts[input.name] = TypeFact(.bool, [])
            default:
                let initial = rule.fact(j)
                environment.facts[input.name] = initial.other != nil ? TypeFact(other: initial.other!)
                                                                     : TypeFact(initial.dtype, nil)
            }
        }
    }

    /// Types for a Scan body's inputs that the body does not declare: state variables get the element
    /// type of their initial value, scan inputs the element type and the shape of one slice.
    static func prepareScanBody(_ body: Graph, rule: NodeInference, environment: inout InferenceEnvironment) {
        let scanInputs = rule.int("num_scan_inputs", 0)
        guard scanInputs >= 0, scanInputs <= body.inputs.count else { return }
        let stateCount = body.inputs.count - scanInputs
        let axes = rule.ints("scan_input_axes")
        for (j, input) in body.inputs.enumerated() where input.type == nil {
            let outer = rule.fact(j)
            if j < stateCount {
                environment.facts[input.name] = TypeFact(outer.dtype, nil)
            } else {
                var shape = outer.shape
                if let s = shape {
                    let axis = axes.map { $0.count > j - stateCount ? $0[j - stateCount] : 0 } ?? 0
                    let a = axis < 0 ? axis + s.count : axis
                    shape = (0..<s.count).contains(a) ? Array(s[..<a] + s[(a + 1)...]) : nil
                }
                environment.facts[input.name] = TypeFact(outer.dtype, shape)
            }
        }
    }
}
