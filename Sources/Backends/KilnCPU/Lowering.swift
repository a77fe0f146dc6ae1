import CKilnKernels
import KilnBackend
import KilnIR

/// Lowers a graph to a `Program`: recognizes fusable patterns — Conv(+BatchNormalization)(+Add)(+activation),
/// MatMul/Gemm(+scale)(+bias)(+Add)(+activation), GELU written out with Erf, chains of elementwise ops with
/// scalar constants — and packs constant weights once.
struct Lowering {
    let graph: Graph
    let program = Program()
    private var producer: [String: Int] = [:]
    private var consumers: [String: [Int]] = [:]
    private var graphOutputs: Set<String>
    private var absorbed = Set<Int>()
    /// Constant values by name (initializers that are not inputs, Constant nodes).
    private(set) var constants: [String: Tensor] = [:]
    private var gelu: [String: (nodes: [Int], output: String)] = [:]
    /// Zero Pads folded into the Conv that reads them: by Conv node, the Pad node, its input and its
    /// spatial pads (begins then ends).
    private var padFolds: [Int: (pad: Int, source: String, pads: [Int])] = [:]
    private var placed: [(position: Int, sequence: Int, op: any Operation)] = []
    /// DequantizeLinear nodes left computed by a QDQ fusion, with the fused nodes that read their quantized input
    /// instead (dropDequantizedUnread).
    private var quantizedReaders: [Int: Set<Int>] = [:]
    /// Element types of the graph's values, where known.
    let types: [String: DType]

    init(graph: Graph) {
        self.graph = graph
        graphOutputs = Set(graph.outputs.map(\.name))
        types = Support.elementTypes(of: graph)
        let inputNames = Set(graph.inputs.map(\.name))
        for (name, t) in graph.initializers where !inputNames.contains(name) { constants[name] = t }
        for (i, node) in graph.nodes.enumerated() {
            for o in node.outputs where !o.isEmpty { producer[o] = i }
            // Values a node's bodies read from here count as read by the node (they must be materialized).
            for v in node.valuesRead { consumers[v, default: []].append(i) }
            if node.op.name == "Constant", let t = Support.constantTensor(node), let o = node.outputs.first {
                constants[o] = t
            }
        }
    }

    /// The program for the graph.
    mutating func lower() throws -> Program {
        for (name, t) in constants { program.constants[program.id(name)] = t }
        for input in graph.inputs {
            program.inputs.append((program.id(input.name), input.name, graph.initializers[input.name]))
        }
        for (i, node) in graph.nodes.enumerated() where node.op.name == "Erf" { matchGELU(erf: i) }
        for (i, node) in graph.nodes.enumerated() where node.op.name == "QuantizeLinear" { matchQDQ(quantize: i) }
        for (i, node) in graph.nodes.enumerated() where node.op.name == "QuantizeLinear" { matchQDQAdd(quantize: i) }
        dropDequantizedUnread()
        for (i, node) in graph.nodes.enumerated() where node.op.name == "Pad" { matchPadConv(pad: i) }
        for (i, node) in graph.nodes.enumerated() where !absorbed.contains(i) {
            do {
                try lower(node, at: i)
            } catch let error as KilnError where error.code == .unsupported {
                throw CompileRefusal(backend: CPUBackend.descriptor.info.name, rejections: [Rejection(node: i, reason: error.message)], in: graph)
            }
        }
        program.outputs = graph.outputs.map { program.id($0.name) }
        program.operations = placed.sorted { ($0.position, $0.sequence) < ($1.position, $1.sequence) }.map(\.op)
        program.finish()
        return program
    }

    // MARK: graph queries

    /// The only node that reads `value`, when exactly one node reads it once and it is not a graph output.
    private func soleConsumer(_ value: String) -> Int? {
        guard !graphOutputs.contains(value), let c = consumers[value], c.count == 1, !absorbed.contains(c[0]) else { return nil }
        return c[0]
    }

    private func scalar(_ name: String) -> Float? {
        guard let t = constants[name], t.count == 1, t.dtype == .float32 else { return nil }
        return t.elements(as: Float.self)[0]
    }

    private func id(_ name: String) -> Int { program.id(name) }

    private mutating func place(_ op: any Operation, nodes: [Int]) {
        absorbed.formUnion(nodes)
        placed.append((nodes.max()!, placed.count, op))
    }

    /// Places `op`, which computes `nodes`, for lowerings defined outside this file.
    mutating func placeOperation(_ op: any Operation, nodes: [Int]) { place(op, nodes: nodes) }

    private func label(_ nodes: [Int]) -> String {
        nodes.sorted().map { graph.nodes[$0].displayName }.joined(separator: "+")
    }

    /// The activation node `i` computes on its single variable input, if it is one.
    private func activation(_ i: Int) -> (Activation, input: String)? {
        let node = graph.nodes[i]
        guard case .activation(let make)? = CPUKernelTable[node.op]?.lowering,
              let activation = make(node, { scalar($0) }) else { return nil }
        return (activation, node.input(0))
    }

    /// Records the GELU pattern around Erf node `e`: x·0.5·(1 + erf(x/√2)) in either association.
    private mutating func matchGELU(erf e: Int) {
        func near(_ v: Float?, _ target: Float) -> Bool { v.map { abs($0 - target) <= 1e-4 * target } ?? false }
        /// The variable operand and the scalar constant of a binary node, either order.
        func split(_ n: Node) -> (String, Float)? {
            if let c = scalar(n.input(1)), constants[n.input(0)] == nil { return (n.input(0), c) }
            if n.op.name != "Div", let c = scalar(n.input(0)), constants[n.input(1)] == nil { return (n.input(1), c) }
            return nil
        }
        let erf = graph.nodes[e]
        guard let d = producer[erf.input(0)], soleConsumer(erf.input(0)) == e else { return }
        let dn = graph.nodes[d]
        guard let (h, c) = split(dn),
              (dn.op.name == "Div" && near(c, 1.4142135)) || (dn.op.name == "Mul" && near(c, 0.70710677)) else { return }
        guard let a = soleConsumer(erf.outputs[0]), graph.nodes[a].op.name == "Add",
              let (ain, one) = split(graph.nodes[a]), ain == erf.outputs[0], one == 1 else { return }
        guard let p = soleConsumer(graph.nodes[a].outputs[0]), graph.nodes[p].op.name == "Mul" else { return }
        let pn = graph.nodes[p]
        let other = pn.input(0) == graph.nodes[a].outputs[0] ? pn.input(1) : pn.input(0)
        let hConsumers = Set(consumers[h] ?? [])
        if other == h {
            // (x · (1 + erf)) · 0.5
            guard let r = soleConsumer(pn.outputs[0]), graph.nodes[r].op.name == "Mul",
                  let (rin, half) = split(graph.nodes[r]), rin == pn.outputs[0], half == 0.5,
                  hConsumers == [d, p], consumers[h]!.count == 2 else { return }
            gelu[h] = ([d, e, a, p, r], graph.nodes[r].outputs[0])
        } else if let q = producer[other], graph.nodes[q].op.name == "Mul", soleConsumer(other) == p,
                  let (qin, half) = split(graph.nodes[q]), qin == h, half == 0.5,
                  hConsumers == [d, q], consumers[h]!.count == 2 {
            // (x · 0.5) · (1 + erf)
            gelu[h] = ([d, e, a, q, p], pn.outputs[0])
        }
    }

    /// Fuses the QDQ form of an int8 layer ending at QuantizeLinear node `q` into one `QuantizedLinearOperation`:
    /// DequantizeLinear(x_q) and DequantizeLinear(constant w_q) → Conv / MatMul / Gemm (+ bias: constant float32,
    /// or DequantizeLinear of a constant int32) (→ Relu) → QuantizeLinear, as ONNX Runtime's quantize_static
    /// writes it. Per-tensor activation scales, per-tensor or per-output-channel weight scales and zero points.
    /// The dequantized activation stays computed when another node reads it. Anything else is left unfused.
    private mutating func matchQDQ(quantize q: Int) {
        let qn = graph.nodes[q]
        guard let yq = plainQuantize(q) else { return }
        // The float value quantized: a linear node, optionally through Relu.
        var nodes = [q]
        var value = qn.input(0), relu = false
        guard var p = producer[value], soleConsumer(value) == q else { return }
        if graph.nodes[p].op.name == "Relu" {
            relu = true
            nodes.append(p)
            value = graph.nodes[p].input(0)
            guard let lp = producer[value], soleConsumer(value) == p else { return }
            p = lp
        }
        let ln = graph.nodes[p]
        let op = ln.op.name
        guard ln.op.domain.isEmpty, ["Conv", "MatMul", "Gemm"].contains(op), ln.outputs.count == 1 else { return }
        nodes.append(p)
        // Gemm: alpha = beta = 1, A not transposed.
        var transB = false
        if op == "Gemm" {
            guard (try? ln.float("alpha", 1)) == 1, (try? ln.float("beta", 1)) == 1, (try? ln.int("transA", 0)) == 0 else { return }
            transB = (try? ln.int("transB", 0)) == 1
        }
        // Both operands dequantized, the weight from a constant.
        guard let (dx, dxn) = plainDequantize(ln.input(0)) else { return }
        guard let (dw, dwn) = dequantize(ln.input(1)), let wq = constant(dwn.input(0)), wq.dtype == .uint8 || wq.dtype == .int8,
              let ws = constant(dwn.input(1)), ws.dtype == .float32 else { return }
        let channels: Int, channelAxis: Int
        switch op {
        case "Conv":
            guard wq.rank == 3 || wq.rank == 4, (try? ln.int("group", 1)).map({ $0 >= 1 }) == true,
                  Window.rejection(of: ln) == nil else { return }
            (channels, channelAxis) = (wq.shape[0], 0)
        default:
            guard wq.rank == 2 else { return }
            (channels, channelAxis) = transB ? (wq.shape[0], 0) : (wq.shape[1], 1)
        }
        let axis = (try? dwn.int("axis", 1)) ?? 1
        if ws.count != 1 {
            guard ws.count == channels, axis == channelAxis || axis == channelAxis - wq.rank else { return }
        }
        if !dwn.input(2).isEmpty {
            guard let wz = constant(dwn.input(2)), wz.dtype == wq.dtype, wz.count == 1 || wz.count == ws.count else { return }
        }
        // The bias: float32 constant, or DequantizeLinear of an int32 constant (kept in int32 when its scale is
        // exactly x_scale · w_scale, as quantize_static writes it).
        var intBias = -1, floatBias: [Float]? = nil, biasNode: Int? = nil
        let biasName = op == "MatMul" ? "" : ln.input(2)
        if !biasName.isEmpty {
            if let t = constant(biasName), t.dtype == .float32, t.count == channels {
                floatBias = t.elements(as: Float.self)
            } else if let (db, dbn) = dequantize(biasName), soleConsumer(biasName) == p, let bq = constant(dbn.input(0)),
                      bq.dtype == .int32, bq.count == channels, let bs = constant(dbn.input(1)), bs.dtype == .float32,
                      bs.count == 1 || bs.count == channels,
                      dbn.input(2).isEmpty || (constant(dbn.input(2)).map { $0.dtype == .int32 && $0.elements(as: Int32.self).allSatisfy { $0 == 0 } } ?? false) {
                let xs = constants[dxn.input(1)]!.elements(as: Float.self)[0]
                let wsv = ws.elements(as: Float.self), bsv = bs.elements(as: Float.self), bqv = bq.elements(as: Int32.self)
                let exact = (0..<channels).allSatisfy { bsv[bs.count == 1 ? 0 : $0] == xs * wsv[ws.count == 1 ? 0 : $0] }
                if exact {
                    intBias = id(dbn.input(0))
                } else {
                    floatBias = (0..<channels).map { Float(bqv[$0]) * bsv[bs.count == 1 ? 0 : $0] }
                }
                biasNode = db
            } else {
                return
            }
        }
        let form: QuantizedLinearOperation.Form = op == "Conv"
            ? .conv(node: ln, group: (try? ln.int("group", 1)) ?? 1) : .matmul(transB: transB)
        let operation = QuantizedLinearOperation(
            kind: "QDQ(\(op)\(relu ? "+Relu" : ""))", label: label(nodes), form: form, output: .fused(relu: relu),
            x: id(dxn.input(0)), xScale: id(dxn.input(1)), xZero: dxn.input(2).isEmpty ? -1 : id(dxn.input(2)),
            w: id(dwn.input(0)), wScale: id(dwn.input(1)), wZero: dwn.input(2).isEmpty ? -1 : id(dwn.input(2)),
            yScale: id(qn.input(1)), yZero: qn.input(2).isEmpty ? -1 : id(qn.input(2)), bias: intBias, floatBias: floatBias,
            y: id(yq), constantWeight: wq, constantWeightZero: dwn.input(2).isEmpty ? nil : constants[dwn.input(2)])
        // The dequantized operands are absorbed when nothing else reads them.
        if soleConsumer(ln.input(0)) == p { nodes.append(dx) } else { quantizedReaders[dx, default: []].insert(p) }
        if soleConsumer(ln.input(1)) == p { nodes.append(dw) }
        if let biasNode { nodes.append(biasNode) }
        place(operation, nodes: nodes)
    }

    /// A constant, or nil for an absent input.
    private func constant(_ name: String) -> Tensor? { name.isEmpty ? nil : constants[name] }
    private func scalarScale(_ name: String) -> Bool { constant(name).map { $0.dtype == .float32 && $0.count == 1 } ?? false }
    private func byteType(_ name: String) -> DType? { types[name].flatMap { $0 == .uint8 || $0 == .int8 ? $0 : nil } }

    /// The output of QuantizeLinear node `q` when it quantizes per tensor to uint8 or int8 with a constant scale and
    /// zero point (what the QDQ fusions take), and it is not taken yet.
    private func plainQuantize(_ q: Int) -> String? {
        let qn = graph.nodes[q]
        guard !absorbed.contains(q), let yq = qn.outputs.first, !yq.isEmpty, scalarScale(qn.input(1)),
              (try? qn.int("block_size", 0)) == 0, ((try? qn.int("output_dtype", 0)) ?? 1) == 0 || !qn.input(2).isEmpty,
              qn.input(2).isEmpty || (constant(qn.input(2)).map { $0.count == 1 && ($0.dtype == .uint8 || $0.dtype == .int8) } ?? false)
        else { return nil }
        return yq
    }

    /// The DequantizeLinear node (not blocked) that computes `name`, when not taken yet.
    private func dequantize(_ name: String) -> (node: Int, Node)? {
        guard let d = producer[name], graph.nodes[d].op.name == "DequantizeLinear", !absorbed.contains(d) else { return nil }
        let dn = graph.nodes[d]
        guard (try? dn.int("block_size", 0)) == 0 else { return nil }
        return (d, dn)
    }

    /// `dequantize(name)` when it dequantizes per tensor from uint8 or int8 with a constant scale and zero point.
    private func plainDequantize(_ name: String) -> (node: Int, Node)? {
        guard let (d, dn) = dequantize(name), let xType = byteType(dn.input(0)), scalarScale(dn.input(1)),
              dn.input(2).isEmpty || (constant(dn.input(2)).map { $0.count == 1 && $0.dtype == xType } ?? false) else { return nil }
        return (d, dn)
    }

    /// Fuses DequantizeLinear(a) + DequantizeLinear(b) → QuantizeLinear node `q` (per tensor, a and b of one static
    /// shape: a residual sum as quantize_static writes it) into one `QuantizedAddOperation`.
    private mutating func matchQDQAdd(quantize q: Int) {
        let qn = graph.nodes[q]
        guard let yq = plainQuantize(q), let p = producer[qn.input(0)], soleConsumer(qn.input(0)) == q else { return }
        let an = graph.nodes[p]
        guard an.op.name == "Add", an.op.domain.isEmpty, an.inputs.count == 2, an.outputs.count == 1,
              let (da, dan) = plainDequantize(an.input(0)), let (db, dbn) = plainDequantize(an.input(1)),
              let sa = graph.valueTypes[an.input(0)]?.tensorType?.fixedShape,
              let sb = graph.valueTypes[an.input(1)]?.tensorType?.fixedShape, sa == sb else { return }
        let operation = QuantizedAddOperation(
            label: label([q, p]), a: id(dan.input(0)), aScale: id(dan.input(1)), aZero: dan.input(2).isEmpty ? -1 : id(dan.input(2)),
            b: id(dbn.input(0)), bScale: id(dbn.input(1)), bZero: dbn.input(2).isEmpty ? -1 : id(dbn.input(2)),
            yScale: id(qn.input(1)), yZero: qn.input(2).isEmpty ? -1 : id(qn.input(2)), y: id(yq))
        var nodes = [q, p]
        for (d, name) in da == db ? [(da, an.input(0))] : [(da, an.input(0)), (db, an.input(1))] {
            if soleConsumer(name) == p { nodes.append(d) } else { quantizedReaders[d, default: []].insert(p) }
        }
        place(operation, nodes: nodes)
    }

    /// Drops the DequantizeLinear nodes that QDQ fusions left computed once every node reading their output is a
    /// fused one that reads the quantized input instead.
    private mutating func dropDequantizedUnread() {
        for (d, readers) in quantizedReaders where !absorbed.contains(d) {
            let out = graph.nodes[d].outputs[0]
            if !graphOutputs.contains(out), Set(consumers[out] ?? []).isSubset(of: readers) { absorbed.insert(d) }
        }
    }

    /// The GELU pattern that reads `value`, when none of its nodes is taken yet.
    private func geluPattern(_ value: String) -> (nodes: [Int], output: String)? {
        guard let g = gelu[value], !graphOutputs.contains(value), g.nodes.allSatisfy({ !absorbed.contains($0) }) else { return nil }
        return g
    }

    // MARK: lowering

    private mutating func lower(_ node: Node, at i: Int) throws {
        let name = node.op.name
        // A node that starts a GELU pattern becomes one activation.
        if let (h, g) = gelu.first(where: { $0.value.nodes.contains(i) }), geluPattern(h) != nil {
            try chain(x: h, links: [.activation(Activation(kind: .geluErf))], shapes: [], nodes: g.nodes, output: g.output)
            return
        }
        guard let kernel = CPUKernelTable[node.op] else {
            throw KilnError(.unsupported, "kiln.cpu has no kernel for \(node.op) (node '\(node.displayName)')")
        }
        // Clip with bounds that are not constant scalars, or over integers.
        if name == "Clip", activation(i) == nil || node.inputs.contains(where: { !$0.isEmpty && types[$0] != nil && types[$0] != .float32 }) {
            lowerPlanned(node, at: i, SwiftOps.clip)
            return
        }
        // The C kernels compute in float32: other element types take the Swift elementwise path.
        switch kernel.lowering {
        case .unary, .binary, .activation:
            if node.inputs.contains(where: { !$0.isEmpty && types[$0] != nil && types[$0] != .float32 }) {
                try lowerMap(node, at: i)
                return
            }
        default: break
        }
        switch kernel.lowering {
        case .constant:
            absorbed.insert(i)
        case .activation:
            guard let (a, x) = activation(i) else { throw KilnError(.unsupported, "node '\(node.displayName)': Clip bounds must be scalar constants") }
            try chain(x: x, links: [.activation(a)], shapes: [], nodes: [i], output: node.outputs[0])
        case .unary(let op):
            try chain(x: node.input(0), links: [.unary(op, name: name)], shapes: [], nodes: [i], output: node.outputs[0])
        case .binary(let op):
            if let (a, b) = channelScale(node) {
                place(ChannelScaleOperation(label: node.displayName, a: id(a), b: id(b), output: id(node.outputs[0])), nodes: [i])
            } else if let link = scalarLink(node) {
                try chain(x: link.x, links: [link.link], shapes: [link.shape], nodes: [i], output: node.outputs[0])
            } else {
                let operands = node.inputs.filter { !$0.isEmpty }.map(id)
                guard !operands.isEmpty else { throw KilnError(.invalidModel, "node '\(node.displayName)' (\(name)) has no inputs") }
                place(BinaryOperation(node: node, operands: operands, output: id(node.outputs[0]), op: op), nodes: [i])
            }
        case .custom(let lower):
            try lower(&self, node, i)
        }
    }

    // MARK: lowerings of single ops (see `CPUKernelTable`)

    /// An op planned by a `NodePlanner` (`SwiftOps`): one operation over the node's inputs and outputs.
    mutating func lowerPlanned(_ node: Node, at i: Int, _ planner: @escaping NodePlanner) {
        place(NodeOperation(node: node, inputs: node.inputs.map(id), outputs: node.outputs.map(id), planner: planner), nodes: [i])
    }

    /// Elementwise ops in plain Swift, for any element type (`MapOperation`).
    mutating func lowerMap(_ node: Node, at i: Int) throws {
        let operands = node.inputs.filter { !$0.isEmpty }
        guard !operands.isEmpty else { throw KilnError(.invalidModel, "node '\(node.displayName)' (\(node.op.name)) has no inputs") }
        let operandTypes = operands.map { types[$0] ?? .float32 }
        // Pow(x, 2) of float32 x (a power spectrum, say) is x · x, vectorized, rather than powf per element.
        if node.op == OpID("", "Pow"), operands.count == 2, operandTypes[0] == .float32, constants[operands[0]] == nil,
           let e = constants[operands[1]], e.count == 1, e.rank == 0 || e.shape == [1], e.dtype == .float32,
           e.elements(as: Float.self)[0] == 2 {
            place(BinaryOperation(node: node, operands: [id(operands[0]), id(operands[0])], output: id(node.outputs[0]), op: KILN_BINARY_MUL),
                  nodes: [i])
            return
        }
        guard let function = try MapOperation.function(node, types: operandTypes) else {
            throw KilnError(.unsupported, "kiln.cpu: \(node.op.name) on \(operandTypes) is not supported (node '\(node.displayName)')")
        }
        place(MapOperation(node: node, operands: operands.map(id), output: id(node.outputs[0]), function: function), nodes: [i])
    }

    mutating func lowerBatchNormalization(_ node: Node, at i: Int) throws {
        let params = (1...4).map { node.input($0) }
        let op = try BatchNormOperation(node: node, x: id(node.input(0)), parameters: params.map(id),
                                        constants: params.map { constants[$0] }, output: id(node.outputs[0]))
        place(op, nodes: [i])
    }

    mutating func lowerLayerNormalization(_ node: Node, at i: Int) throws {
        let op = try LayerNormOperation(node: node, x: id(node.input(0)), gamma: id(node.input(1)), beta: id(node.input(2)),
                                        outputs: node.outputs.map(id))
        place(op, nodes: [i])
    }

    mutating func lowerSoftmax(_ node: Node, at i: Int) throws {
        place(try SoftmaxOperation(node: node, x: id(node.input(0)), output: id(node.outputs[0])), nodes: [i])
    }

    mutating func lowerPool(_ node: Node, at i: Int) throws {
        place(try PoolOperation(node: node, x: id(node.input(0)), output: id(node.outputs[0])), nodes: [i])
    }

    mutating func lowerGlobalPool(_ node: Node, at i: Int) {
        place(GlobalPoolOperation(node: node, x: id(node.input(0)), output: id(node.outputs[0])), nodes: [i])
    }

    /// Reshape, Unsqueeze, Squeeze, Flatten and Identity: views of their input.
    mutating func lowerView(_ node: Node, at i: Int) {
        place(ViewOperation(node: node, x: id(node.input(0)), shapeInput: id(node.input(1)), output: id(node.outputs[0])), nodes: [i])
    }

    mutating func lowerShape(_ node: Node, at i: Int) throws {
        place(try ShapeOperation(node: node, x: id(node.input(0)), output: id(node.outputs[0])), nodes: [i])
    }

    mutating func lowerTranspose(_ node: Node, at i: Int) throws {
        // A swap of the last two axes that only feeds a matrix product is folded into it there.
        if swapsLastTwo(node), let j = soleConsumer(node.outputs[0]), ["MatMul", "Gemm"].contains(graph.nodes[j].op.name) {
            return
        }
        place(try TransposeOperation(node: node, x: id(node.input(0)), output: id(node.outputs[0])), nodes: [i])
    }

    mutating func lowerGather(_ node: Node, at i: Int) throws {
        place(try GatherOperation(node: node, data: id(node.input(0)), indices: id(node.input(1)), output: id(node.outputs[0])), nodes: [i])
    }

    mutating func lowerConcat(_ node: Node, at i: Int) throws {
        place(try ConcatOperation(node: node, operands: node.inputs.filter { !$0.isEmpty }.map(id), output: id(node.outputs[0])), nodes: [i])
    }

    mutating func lowerCast(_ node: Node, at i: Int) throws {
        place(try CastOperation(node: node, x: id(node.input(0)), output: id(node.outputs[0])), nodes: [i])
    }

    mutating func lowerRecurrent(_ node: Node, at i: Int) throws {
        place(try RecurrentOperation(node: node, inputs: node.inputs.map(id), outputs: node.outputs.map(id),
                                     constants: node.inputs.map { constants[$0] }), nodes: [i])
    }

    private func unaryLink(_ node: Node) -> ChainLink? {
        guard case .unary(let op)? = CPUKernelTable[node.op]?.lowering else { return nil }
        return .unary(op, name: node.op.name)
    }

    /// A float Mul of two variable operands that are not scalars by their declared types: it may be an image
    /// [N, C, H, W] times a per-channel [N, C, 1, 1] value (squeeze-and-excitation), which the plan decides.
    private func channelScale(_ node: Node) -> (a: String, b: String)? {
        guard node.op == OpID("", "Mul"), node.inputs.count == 2, node.outputs.count == 1,
              types[node.input(0)] == .float32, types[node.input(1)] == .float32,
              constants[node.input(0)] == nil, constants[node.input(1)] == nil else { return nil }
        for v in node.inputs {
            if case .tensor(let t)? = graph.type(of: v), let shape = t.shape, shape.count != 4 { return nil }
        }
        return (node.input(0), node.input(1))
    }

    /// A binary node with one variable operand and one scalar float constant, as a chain link.
    private func scalarLink(_ node: Node) -> (x: String, link: ChainLink, shape: [Int])? {
        guard node.inputs.count == 2, case .binary(let op)? = CPUKernelTable[node.op]?.lowering else { return nil }
        if let c = scalar(node.input(1)), constants[node.input(0)] == nil {
            return (node.input(0), .scalar(op, c, swap: false, name: node.op.name), constants[node.input(1)]!.shape)
        }
        if let c = scalar(node.input(0)), constants[node.input(1)] == nil {
            return (node.input(1), .scalar(op, c, swap: true, name: node.op.name), constants[node.input(0)]!.shape)
        }
        return nil
    }

    /// The chain link node `j` adds after `value`, if it is an elementwise op on `value` alone.
    private func link(_ j: Int, after value: String) -> (link: ChainLink, shape: [Int])? {
        let node = graph.nodes[j]
        if let (a, x) = activation(j), x == value { return (.activation(a), []) }
        if let l = unaryLink(node), node.input(0) == value { return (l, []) }
        if let s = scalarLink(node), s.x == value { return (s.link, s.shape) }
        return nil
    }

    /// Places a chain starting with `links` on `x`, extended by the elementwise nodes that follow.
    private mutating func chain(x: String, links: [ChainLink], shapes: [[Int]], nodes: [Int], output: String) throws {
        var links = links, shapes = shapes, nodes = nodes, output = output
        absorbed.formUnion(nodes)
        while true {
            if let g = geluPattern(output) {
                links.append(.activation(Activation(kind: .geluErf)))
                nodes += g.nodes
                absorbed.formUnion(g.nodes)
                output = g.output
                continue
            }
            guard let j = soleConsumer(output), let (l, s) = link(j, after: output) else { break }
            links.append(l)
            shapes.append(s)
            nodes.append(j)
            absorbed.insert(j)
            output = graph.nodes[j].outputs[0]
        }
        place(ChainOperation(label: label(nodes), x: id(x), output: id(output), links: links, constantShapes: shapes), nodes: nodes)
    }

    /// The activation (or GELU) that follows `value`, absorbing its nodes.
    private mutating func fusedActivation(after value: inout String, nodes: inout [Int], kinds: inout [String]) -> Activation {
        /// Absorbs a matched pattern's nodes, moves `value` to its output and names it.
        func take(_ matched: [Int], _ output: String, _ kind: String, _ activation: Activation) -> Activation {
            nodes += matched
            absorbed.formUnion(matched)
            value = output
            kinds.append(kind)
            return activation
        }
        if let g = geluPattern(value) { return take(g.nodes, g.output, "Gelu", Activation(kind: .geluErf)) }
        if let j = soleConsumer(value), let (a, x) = activation(j), x == value {
            return take([j], graph.nodes[j].outputs[0], graph.nodes[j].op.name, a)
        }
        if let (s, m) = swishPattern(value) { return take([s, m], graph.nodes[m].outputs[0], "SiLU", Activation(kind: .silu)) }
        if let h = hardSwishPattern(value) { return take(h.nodes, h.output, "HardSwish", Activation(kind: .hardSwish)) }
        return .none
    }

    /// Hard-swish written out, as PaddlePaddle exports it: x · Clip(x + 3, 0, 6) / 6 (or · 1/6), or
    /// x · HardSigmoid(x) with alpha 1/6 and beta 0.5. Its nodes and output when `value` is read by exactly
    /// the gate (the Add, or the HardSigmoid) and the Mul, and every inner value by the next node alone.
    /// The fused form computes x · clamp(x/6 + 1/2, 0, 1), equal to within float rounding.
    private func hardSwishPattern(_ value: String) -> (nodes: [Int], output: String)? {
        guard !graphOutputs.contains(value), let c = consumers[value], c.count == 2, c[0] != c[1],
              !c.contains(where: absorbed.contains) else { return nil }
        // A constant of rank ≤ 1 broadcasts without changing the result's shape; a higher-rank one could.
        func near(_ v: Float?, _ target: Float) -> Bool { v.map { abs($0 - target) <= 1e-6 * abs(target) } ?? false }
        func constant(_ name: String, _ target: Float) -> Bool { (constants[name]?.rank ?? 2) <= 1 && near(scalar(name), target) }
        for (g, m) in [(c[0], c[1]), (c[1], c[0])] {
            let gate = graph.nodes[g], mul = graph.nodes[m]
            var gateNodes: [Int], gateOutput: String, divided: Bool
            if gate.op == OpID("", "Add"), let s = scalarLink(gate), s.x == value,
               constant(gate.input(0) == value ? gate.input(1) : gate.input(0), 3),
               let k = soleConsumer(gate.outputs[0]), let (a, x) = activation(k), x == gate.outputs[0],
               a.kind == .clip, a.alpha == 0, a.beta == 6 {
                (gateNodes, gateOutput, divided) = ([g, k], graph.nodes[k].outputs[0], false)
            } else if gate.op == OpID("", "HardSigmoid"), let (a, x) = activation(g), x == value,
                      near(a.alpha, 1 / 6), near(a.beta, 0.5) {
                (gateNodes, gateOutput, divided) = ([g], gate.outputs[0], true)
            } else {
                continue
            }
            guard mul.op == OpID("", "Mul"), mul.inputs.count == 2, mul.outputs.count == 1,
                  Set(mul.inputs) == Set([value, gateOutput]), !graphOutputs.contains(gateOutput),
                  consumers[gateOutput] == [m] else { return nil }
            if divided { return (gateNodes + [m], mul.outputs[0]) }
            guard let d = soleConsumer(mul.outputs[0]) else { return nil }
            let div = graph.nodes[d]
            guard div.inputs.count == 2, div.outputs.count == 1, div.input(0) == mul.outputs[0],
                  (div.op == OpID("", "Div") && constant(div.input(1), 6))
                    || (div.op == OpID("", "Mul") && constant(div.input(1), 1 / 6)) else { return nil }
            return (gateNodes + [m, d], div.outputs[0])
        }
        return nil
    }

    /// Swish written out, x · Sigmoid(x) (as TensorFlow exports it): the Sigmoid and Mul nodes when `value`
    /// is read by exactly those two and the Sigmoid only by the Mul.
    private func swishPattern(_ value: String) -> (sigmoid: Int, mul: Int)? {
        guard !graphOutputs.contains(value), let c = consumers[value], c.count == 2, c[0] != c[1],
              !c.contains(where: absorbed.contains) else { return nil }
        let (s, m) = graph.nodes[c[0]].op.name == "Sigmoid" ? (c[0], c[1]) : (c[1], c[0])
        let sig = graph.nodes[s], mul = graph.nodes[m]
        guard sig.op == OpID("", "Sigmoid"), sig.inputs.count == 1,
              sig.input(0) == value, sig.outputs.count == 1, mul.op == OpID("", "Mul"),
              mul.inputs.count == 2, mul.outputs.count == 1, Set([mul.input(0), mul.input(1)]) == Set([value, sig.outputs[0]]),
              !graphOutputs.contains(sig.outputs[0]), consumers[sig.outputs[0]] == [m] else { return nil }
        return (s, m)
    }

    /// The per-channel PReLU slope of a convolution's epilogue, absorbing its nodes: a LeakyRelu already
    /// fused as `activation` (which becomes a slope repeating alpha), or a PRelu whose constant slope is a
    /// scalar or one value per output channel (shape [C, 1, 1], [1, C, 1, 1], …). Then Max/Min with a
    /// scalar constant after it (or after ReLU/Clip) folds into `activation` as a Clip. Nil for no slope.
    private mutating func fusedSlope(after value: inout String, activation: inout Activation, channels: Int,
                                     outputRank: Int, nodes: inout [Int], kinds: inout [String]) -> [Float]? {
        var slope: [Float]? = nil
        if activation.kind == .leakyRelu {
            slope = Array(repeating: activation.alpha, count: channels)
            activation = .none
        } else if activation.kind == .none, let j = soleConsumer(value), graph.nodes[j].op.name == "PRelu",
                  graph.nodes[j].inputs.count == 2, graph.nodes[j].input(0) == value,
                  let t = constants[graph.nodes[j].input(1)], t.dtype == .float32, t.rank <= outputRank {
            // Right-aligned against the output [N, C, spatial…]: only the channel axis may exceed 1.
            let aligned = Array(repeating: 1, count: outputRank - t.rank) + t.shape
            let perChannel = aligned.enumerated().allSatisfy { $0.offset == 1 ? ($0.element == channels || $0.element == 1) : $0.element == 1 }
            if perChannel {
                let v = t.elements(as: Float.self)
                slope = v.count == 1 ? Array(repeating: v[0], count: channels) : v
                nodes.append(j)
                absorbed.insert(j)
                value = graph.nodes[j].outputs[0]
                kinds.append("PRelu")
            }
        }
        // Max(·, c) and Min(·, c) with a scalar c narrow the clamp [lo, hi] of None/ReLU/Clip.
        var lo: Float, hi: Float
        switch activation.kind {
        case .none: (lo, hi) = (-.infinity, .infinity)
        case .relu: (lo, hi) = (0, .infinity)
        case .clip: (lo, hi) = (activation.alpha, activation.beta)
        default: return slope
        }
        var folded = false
        while let j = soleConsumer(value), ["Max", "Min"].contains(graph.nodes[j].op.name), graph.nodes[j].inputs.count == 2 {
            let m = graph.nodes[j]
            let other = m.input(0) == value ? m.input(1) : m.input(0)
            guard other != value, let c = scalar(other), constants[other]!.rank <= outputRank, !c.isNaN else { break }
            if m.op.name == "Max" { (lo, hi) = (max(lo, c), max(hi, c)) } else { (lo, hi) = (min(lo, c), min(hi, c)) }
            nodes.append(j)
            absorbed.insert(j)
            value = m.outputs[0]
            kinds.append(m.op.name)
            folded = true
        }
        if folded { activation = Activation(kind: .clip, alpha: lo, beta: hi) }
        return slope
    }

    /// A constant Pad of zeros over the spatial axes only, read by one Conv (explicit pads) alone, becomes that
    /// Conv's pads (as TensorFlow exports ZeroPadding2D before a strided convolution): one copy less.
    private mutating func matchPadConv(pad i: Int) {
        let pad = graph.nodes[i]
        guard (try? pad.string("mode", "constant")) == "constant", pad.outputs.count == 1,
              let j = soleConsumer(pad.outputs[0]), graph.nodes[j].op.name == "Conv", graph.nodes[j].input(0) == pad.outputs[0],
              graph.nodes[j].input(1) != pad.outputs[0], graph.nodes[j].input(2) != pad.outputs[0],
              ["NOTSET", ""].contains((try? graph.nodes[j].string("auto_pad", "NOTSET")) ?? "?") else { return }
        var pads: [Int]
        if pad.inputs.count > 1 {
            guard let t = constants[pad.input(1)], t.dtype == .int64 else { return }
            pads = t.elements(as: Int64.self).map { Int($0) }
            if pad.inputs.count > 2, !pad.input(2).isEmpty {
                guard let v = scalar(pad.input(2)), v == 0 else { return }
            }
            if pad.inputs.count > 3, !pad.input(3).isEmpty { return }
        } else {
            guard let a = (try? pad.ints("pads")) ?? nil, ((try? pad.float("value", 0)) ?? 1) == 0 else { return }
            pads = a
        }
        let rank = pads.count / 2
        guard rank >= 3, rank <= 4, pads.count == 2 * rank, pads.allSatisfy({ $0 >= 0 }),
              pads[0] == 0, pads[1] == 0, pads[rank] == 0, pads[rank + 1] == 0 else { return }
        if let w = constants[graph.nodes[j].input(1)], w.rank != rank { return }
        padFolds[j] = (i, pad.input(0), Array(pads[2..<rank]) + Array(pads[(rank + 2)...]))
        absorbed.insert(i)
    }

    mutating func lowerConv(_ node: Node, at i: Int) throws {
        var nodes = [i], kinds = ["Conv"]
        var input = node.input(0)
        let group = try node.int("group", 1)
        let weightName = node.input(1)
        guard group >= 1 else { throw KilnError(.invalidModel, "node '\(node.displayName)' (Conv): group must be ≥ 1") }
        let constWeight = constants[weightName].flatMap { $0.dtype == .float32 && ($0.rank == 3 || $0.rank == 4) ? $0 : nil }
        var weightShape: [Int]
        if let constWeight {
            weightShape = constWeight.shape
        } else if let t = graph.type(of: weightName)?.tensorType?.fixedShape, t.count >= 3 {
            weightShape = t
        } else {
            throw KilnError(.unsupported, "node '\(node.displayName)' (Conv): the weight's shape must be known")
        }
        let kernel = try node.ints("kernel_shape") ?? Array(weightShape[2...])
        guard kernel == Array(weightShape[2...]), kernel.count <= 2 else {
            throw KilnError(.unsupported, "node '\(node.displayName)' (Conv): kernel \(kernel) with weight \(weightShape) (kiln.cpu runs 1-D and 2-D convolutions)")
        }
        var window = try Window(node: node, kernel: kernel)
        if let fold = padFolds[i] {
            let r = kernel.count
            guard fold.pads.count == 2 * r else { throw KilnError(.invalidModel, "node '\(node.displayName)' (Conv): a Pad of rank \(r + 2) feeds a \(r)-D kernel") }
            let own = window.pads ?? Array(repeating: 0, count: 2 * r)
            window.pads = zip(own, fold.pads).map { $0 + $1 }
            input = fold.source
            nodes.append(fold.pad)
            if let reason = Window.rejection(kernel: window.kernel, strides: window.strides, dilations: window.dilations, pads: window.pads) {
                throw KilnError(.unsupported, "node '\(node.displayName)' (Conv): \(reason)")
            }
        }
        let cout = weightShape[0]
        var weight = constWeight // packed from the artifact's bytes unless BatchNormalization folds into it
        var bias: [Float]? = nil
        let biasName = node.input(2)
        if !biasName.isEmpty, let b = constants[biasName], b.dtype == .float32, b.count == cout {
            bias = b.elements(as: Float.self)
        }
        let biasIsConstant = biasName.isEmpty || bias != nil
        var value = node.outputs[0]
        // BatchNormalization folds into constant weights.
        if weight != nil, biasIsConstant, let j = soleConsumer(value), graph.nodes[j].op.name == "BatchNormalization",
           graph.nodes[j].input(0) == value, graph.nodes[j].outputs.dropFirst().allSatisfy(\.isEmpty),
           (try? graph.nodes[j].int("training_mode", 0)) == 0 {
            let bn = graph.nodes[j]
            let params = (1...4).map { constants[bn.input($0)] }
            if params.allSatisfy({ $0?.dtype == .float32 && $0?.count == cout }) {
                let (scale, shift) = try BatchNormOperation.fold(params.map { $0!.elements(as: Float.self) },
                                                                 epsilon: try bn.float("epsilon", 1e-5), node: bn)
                var folded = weight!.elements(as: Float.self)
                let per = folded.count / cout
                for c in 0..<cout { for k in 0..<per { folded[c * per + k] *= scale[c] } }
                weight = Tensor(shape: weightShape, folded)
                bias = (0..<cout).map { c in (bias?[c] ?? 0) * scale[c] + shift[c] }
                nodes.append(j)
                absorbed.insert(j)
                value = bn.outputs[0]
                kinds.append("BatchNormalization")
            }
        }
        // Add: a per-channel constant joins the bias; anything else is a residual.
        var residual = ""
        if let j = soleConsumer(value), graph.nodes[j].op.name == "Add", graph.nodes[j].inputs.count == 2 {
            let add = graph.nodes[j]
            let other = add.input(0) == value ? add.input(1) : add.input(0)
            if other != value {
                if let c = constants[other], c.dtype == .float32, c.shape == [cout, 1, 1] || c.shape == [1, cout, 1, 1],
                   kernel.count == 2, biasIsConstant {
                    let extra = c.elements(as: Float.self)
                    bias = (0..<cout).map { (bias?[$0] ?? 0) + extra[$0] }
                } else {
                    residual = other
                }
                nodes.append(j)
                absorbed.insert(j)
                value = add.outputs[0]
                kinds.append("Add")
            }
        }
        var act = fusedActivation(after: &value, nodes: &nodes, kinds: &kinds)
        let slope = fusedSlope(after: &value, activation: &act, channels: cout, outputRank: 2 + kernel.count,
                               nodes: &nodes, kinds: &kinds)
        let op = ConvOperation(kind: kinds.joined(separator: "+"), label: label(nodes), x: id(input),
                               weightShape: weightShape, weight: weight, weightValue: id(weightName),
                               bias: bias, biasValue: biasIsConstant ? -1 : id(biasName), residual: id(residual),
                               output: id(value), window: window, group: group, activation: act, slope: slope)
        place(op, nodes: nodes)
    }

    /// `perm` swaps the last two axes and keeps the others.
    private func swapsLastTwo(_ node: Node) -> Bool {
        guard node.op.name == "Transpose", let perm = try? node.ints("perm"), perm.count >= 2 else { return false }
        let r = perm.count
        return perm == Array(0..<(r - 2)) + [r - 1, r - 2]
    }

    mutating func lowerMatMul(_ node: Node, at i: Int) throws {
        let isGemm = node.op.name == "Gemm"
        var nodes = [i], kinds = [node.op.name]
        var a = node.input(0), b = node.input(1)
        var transA = isGemm ? try node.int("transA", 0) != 0 : false
        var transB = isGemm ? try node.int("transB", 0) != 0 : false
        var alpha: Float = isGemm ? try node.float("alpha", 1) : 1
        let beta: Float = isGemm ? try node.float("beta", 1) : 1
        // Transposes of the last two axes fold into the product.
        if let p = producer[a], swapsLastTwo(graph.nodes[p]), soleConsumer(a) == i, !absorbed.contains(p) {
            nodes.append(p)
            a = graph.nodes[p].input(0)
            transA.toggle()
        }
        if let p = producer[b], swapsLastTwo(graph.nodes[p]), soleConsumer(b) == i, !absorbed.contains(p) {
            nodes.append(p)
            b = graph.nodes[p].input(0)
            transB.toggle()
        }
        let constB = constants[b].flatMap { $0.rank == 2 && $0.dtype == .float32 ? $0 : nil }
        let n: Int? = constB.map { transB ? $0.shape[0] : $0.shape[1] }
        var bias: [Float]? = nil
        var addend = ""
        /// A constant that broadcasts as one row of N: [N] or [1, …, 1, N].
        func rowVector(_ t: Tensor) -> [Float]? {
            guard t.dtype == .float32, let n, t.rank >= 1, t.shape.last == n, t.shape.dropLast().allSatisfy({ $0 == 1 }) else { return nil }
            return t.elements(as: Float.self)
        }
        if isGemm, !node.input(2).isEmpty {
            let c = node.input(2)
            if let t = constants[c], let row = rowVector(t), t.rank <= 2 {
                bias = row.map { $0 * beta }
            } else if let t = constants[c], t.dtype == .float32 {
                let scaled = Tensor(shape: t.shape, t.elements(as: Float.self).map { $0 * beta })
                let cid = program.fresh("\(c)#scaled")
                program.constants[cid] = scaled
                addend = program.names[cid]
                constants[addend] = scaled
            } else if beta == 1 {
                addend = c
            } else {
                let scaledID = program.fresh("\(c)#scaled")
                let scaledName = program.names[scaledID]
                placed.append((i, placed.count, ChainOperation(label: node.displayName, x: id(c), output: id(scaledName),
                                                               links: [.scalar(KILN_BINARY_MUL, beta, swap: false, name: "Mul")],
                                                               constantShapes: [])))
                addend = scaledName
            }
        }
        var value = node.outputs[0]
        // A scale by a scalar constant becomes alpha (MatMul only; before any bias).
        if !isGemm, let j = soleConsumer(value), ["Mul", "Div"].contains(graph.nodes[j].op.name),
           let s = scalarLink(graph.nodes[j]), s.x == value, s.shape.count <= 2,
           case .scalar(let op, let c, let swap, _) = s.link, !swap || op == KILN_BINARY_MUL {
            alpha = op == KILN_BINARY_MUL ? alpha * c : alpha / c
            nodes.append(j)
            absorbed.insert(j)
            value = graph.nodes[j].outputs[0]
            kinds.append(graph.nodes[j].op.name)
        }
        // Bias and residual additions.
        while addend.isEmpty || bias == nil {
            guard let j = soleConsumer(value), graph.nodes[j].op.name == "Add", graph.nodes[j].inputs.count == 2 else { break }
            let add = graph.nodes[j]
            let other = add.input(0) == value ? add.input(1) : add.input(0)
            guard other != value else { break }
            if bias == nil, let t = constants[other], let row = rowVector(t) {
                bias = row
            } else if addend.isEmpty, scalar(other) == nil {
                addend = other
            } else {
                break
            }
            nodes.append(j)
            absorbed.insert(j)
            value = add.outputs[0]
            kinds.append("Add")
        }
        let act = fusedActivation(after: &value, nodes: &nodes, kinds: &kinds)
        let op = MatMulOperation(kind: kinds.joined(separator: "+"), label: label(nodes), a: id(a), b: id(b), constantB: constB,
                                 output: id(value), transA: transA, transB: transB, alpha: alpha, bias: bias,
                                 addend: addend.isEmpty ? -1 : id(addend), activation: act, isGemm: isGemm)
        place(op, nodes: nodes)
    }
}
