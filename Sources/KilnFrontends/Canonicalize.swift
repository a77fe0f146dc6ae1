import KilnIR

/// Rewrites ONNX nodes written against an older opset into the canonical form (the newest opset Kiln
/// knows), so that passes and backends see one form per op: attributes that later became inputs
/// (Split, Squeeze/Unsqueeze, Reduce*, Clip, Pad, Slice, TopK, DFT, …) become constant inputs,
/// Upsample and Resize-10 become Resize, Scatter becomes ScatterElements, legacy broadcasting and
/// coerce-to-2D Softmax become explicit reshapes, and removed attributes are dropped.
enum Canonicalizer {
    /// The canonical nodes for `node` of ONNX domain version `opset`. New constant inputs are added
    /// to `constants` under fresh names. `types` holds the value types known at this point of the
    /// graph (graph inputs, initializers, `value_info`); they let some rewrites avoid run-time shape
    /// arithmetic, and give new constants the element type of the value they pair with.
    static func canonicalize(_ node: Node, opset: Int, constants: inout [String: Tensor],
                             names: inout NameGenerator, types: [String: ValueType] = [:]) throws -> [Node] {
        let (nodes, added) = try rewrite(node, opset: opset, names: &names, known: constants, types: types)
        // The rewriter that read `constants` is gone, so this write does not copy the dictionary.
        for (name, tensor) in added { constants[name] = tensor }
        return nodes
    }

    /// Runs a `Rewriter` on `node`: the replacement nodes and the constants they need. The name set
    /// is swapped in and out rather than copied.
    private static func rewrite(_ node: Node, opset: Int, names: inout NameGenerator, known: [String: Tensor],
                                types: [String: ValueType]) throws -> (nodes: [Node], added: [String: Tensor]) {
        var rewriter = Rewriter(node: node, opset: opset, names: NameGenerator(used: []), known: known, types: types)
        swap(&rewriter.names, &names)
        defer { swap(&rewriter.names, &names) }
        try rewriter.run()
        return (rewriter.emitted, rewriter.added)
    }

    /// ONNX `TensorProto.DataType` names, as Cast-1 spells its `to` attribute.
    static let castTypeNames: [String: Int] = [
        "FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5, "INT32": 6, "INT64": 7, "STRING": 8,
        "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11, "UINT32": 12, "UINT64": 13, "COMPLEX64": 14, "COMPLEX128": 15,
        "BFLOAT16": 16,
    ]

    /// The rewriting of one node: accumulates the nodes and constants that replace it.
    struct Rewriter {
        /// The node being rewritten (its attributes are edited in place as rewrites apply).
        var node: Node
        /// The ONNX default-domain version the node was written against.
        let opset: Int
        /// Fresh-name source (returned to the caller afterwards).
        var names: NameGenerator
        /// Constants visible to the node (initializers of its graph).
        let known: [String: Tensor]
        /// Known value types.
        let types: [String: ValueType]
        /// Constants this rewrite adds.
        var added: [String: Tensor] = [:]
        /// The replacement nodes, in order.
        var emitted: [Node] = []

        /// A rewriter for `node`.
        init(node: Node, opset: Int, names: NameGenerator, known: [String: Tensor], types: [String: ValueType]) {
            self.node = node
            self.opset = opset
            self.names = names
            self.known = known
            self.types = types
        }

        // MARK: driver

        /// Applies every rewrite that `node`'s op and opset call for, then emits the node (unless a
        /// rewrite replaced it entirely).
        mutating func run() throws {
            let op = node.op.name
            let canonical = OpCatalog.standard[node.op]?.canonical ?? CanonicalForm()
            if opset < 7 { node.attributes["consumed_inputs"] = nil }
            if opset < 7, canonical.legacyBroadcasting {
                try legacyBinary()
            }
            try attributesToInputs(canonical.attributeInputs)
            if let replacement = canonical.replacement { node.op = replacement }
            switch op {
            case "Gemm" where opset < 7:
                node.attributes["broadcast"] = nil
            case "PRelu" where opset < 7:
                try preluLegacy()
            case "Concat" where opset < 4:
                if node.attributes["axis"] == nil { node.attributes["axis"] = .int(1) }
            case "Softmax", "LogSoftmax", "Hardmax":
                if opset < 13 { try coerceTo2D(); return }
            case "Split":
                splitToInput()
            case "Clip" where opset < 11:
                try clipToInputs()
            case "Pad" where opset < 11:
                try padToInputs()
            case "Upsample":
                try upsample()
            case "Resize":
                try resize()
            case "BatchNormalization":
                if try batchNormalization() { return }
            case "Dropout":
                dropout()
            case "Cast" where opset < 6:
                try castNames()
            case "ConstantFill":
                try constantFill()
                return
            case "Tile" where opset < 6:
                try tileToRepeats()
                return
            case "DFT" where opset < 20:
                dftAxisToInput()
            case "RNN", "GRU", "LSTM":
                node.attributes["output_sequence"] = nil
            case "Scan" where opset < 9:
                if try scanWithBatch() { return }
            case "LpPool", "GlobalLpPool":
                if case .float? = node.attributes["p"], let p = try intAttribute("p") { node.attributes["p"] = .int(p) }
            case "ImageScaler":
                try imageScaler()
                return
            default:
                break
            }
            emitted.append(node)
        }

        // MARK: helpers

        /// Integer attribute `name`, or nil (a float that is integral also counts).
        func intAttribute(_ name: String) throws -> Int? {
            switch node.attributes[name] {
            case nil: return nil
            case .int(let v)?: return v
            case .float(let f)? where ElementCount.exactInt(f) != nil: return ElementCount.exactInt(f)
            default: throw malformed("attribute '\(name)' must be an int")
            }
        }

        /// Integer-list attribute `name`, or nil.
        func intsAttribute(_ name: String) throws -> [Int]? {
            switch node.attributes[name] {
            case nil: return nil
            case .ints(let v)?: return v
            case .int(let v)?: return [v]
            default: throw malformed("attribute '\(name)' must be a list of ints")
            }
        }

        /// Float attribute `name`, or nil.
        func floatAttribute(_ name: String) throws -> Float? {
            switch node.attributes[name] {
            case nil: return nil
            case .float(let v)?: return v
            case .int(let v)?: return Float(v)
            default: throw malformed("attribute '\(name)' must be a float")
            }
        }

        /// Float-list attribute `name`, or nil.
        func floatsAttribute(_ name: String) throws -> [Float]? {
            switch node.attributes[name] {
            case nil: return nil
            case .floats(let v)?: return v
            case .float(let v)?: return [v]
            case .ints(let v)?: return v.map(Float.init)
            default: throw malformed("attribute '\(name)' must be a list of floats")
            }
        }

        /// String attribute `name`, or nil.
        func stringAttribute(_ name: String) throws -> String? {
            switch node.attributes[name] {
            case nil: return nil
            case .string(let v)?: return v
            default: throw malformed("attribute '\(name)' must be a string")
            }
        }

        /// An error about this node.
        func malformed(_ message: String) -> KilnError {
            let label = node.name.isEmpty ? node.op.name : "\(node.op.name) node '\(node.name)'"
            return KilnError(.invalidModel, "\(label) (opset \(opset)): \(message)")
        }

        /// Sets input `position` to `name`, padding skipped optional inputs with "".
        mutating func setInput(_ position: Int, _ name: String) {
            while node.inputs.count <= position { node.inputs.append("") }
            node.inputs[position] = name
        }

        /// Input `position`, or "" when the node omits it.
        func input(_ position: Int) -> String {
            position < node.inputs.count ? node.inputs[position] : ""
        }

        /// Drops trailing omitted inputs.
        mutating func trimInputs() {
            while let last = node.inputs.last, last.isEmpty { node.inputs.removeLast() }
        }

        /// Adds `tensor` as a new constant and returns its name.
        mutating func constant(_ tensor: Tensor, _ base: String) -> String {
            let name = names.fresh(base)
            added[name] = tensor
            return name
        }

        /// A new 1-D int64 constant.
        mutating func int64s(_ values: [Int], _ base: String) -> String {
            constant(Tensor(int64s: values), base)
        }

        /// A new int64 scalar constant.
        mutating func int64Scalar(_ value: Int, _ base: String) -> String {
            constant(Tensor(dtype: .int64, shape: [], int64s: [Int64(value)]), base)
        }

        /// The element type of `name` if known.
        func dtype(of name: String) -> DType? {
            if let t = types[name]?.tensorType { return t.dtype }
            if let c = known[name] ?? added[name] { return c.dtype }
            return nil
        }

        /// The rank of `name` if known.
        func rank(of name: String) -> Int? {
            if let shape = types[name]?.tensorType?.shape { return shape.count }
            if let c = known[name] ?? added[name] { return c.rank }
            return nil
        }

        /// The value of `name` if it is a constant.
        func constantValue(_ name: String) -> Tensor? {
            name.isEmpty ? nil : (known[name] ?? added[name])
        }

        /// A constant of `shape` holding `values`, with the element type of `like`: a constant of that
        /// type when it is known, else a float32 constant cast at run time with CastLike.
        mutating func constant(_ values: [Double], shape: [Int], like: String, _ base: String) -> String {
            if let dtype = dtype(of: like), dtype != .string {
                return constant(Tensor(dtype: dtype, shape: shape, doubles: values), base)
            }
            let raw = constant(Tensor(dtype: .float32, shape: shape, doubles: values), base)
            return emit("CastLike", [raw, like], base: base)
        }

        /// Emits a helper node of `op` and returns its (fresh) first output name.
        @discardableResult
        mutating func emit(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:],
                           base: String) -> String {
            emitMany(op, inputs, attributes, outputs: 1, base: base)[0]
        }

        /// Emits a helper node of `op` with `outputs` fresh outputs.
        mutating func emitMany(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:],
                               outputs: Int, base: String) -> [String] {
            let outs = (0..<outputs).map { _ in names.fresh(base) }
            let prefix = node.name.isEmpty ? (node.outputs.first ?? op) : node.name
            emitted.append(Node(name: "\(prefix)/\(op)", op: OpID("", op), inputs: inputs, outputs: outs,
                                attributes: attributes))
            return outs
        }

        /// A fresh base name for values made for this node.
        var base: String { node.outputs.first.map { $0.isEmpty ? node.op.name : $0 } ?? node.op.name }

        // MARK: broadcasting

        /// Add/Sub/… before opset 7: with `broadcast=1` and `axis`, B's dims align with A's starting at
        /// `axis`; rewrite by appending trailing 1-dims to B so that NumPy broadcasting agrees.
        mutating func legacyBinary() throws {
            let broadcast = try intAttribute("broadcast") ?? 0
            let axis = try intAttribute("axis")
            node.attributes["broadcast"] = nil
            node.attributes["axis"] = nil
            guard broadcast != 0, let axis, node.inputs.count >= 2 else { return }
            let b = try alignForLegacyBroadcast(a: node.inputs[0], b: node.inputs[1], axis: axis)
            node.inputs[1] = b
        }

        /// PRelu before opset 7: a 1-D slope applies per channel (axis 1).
        mutating func preluLegacy() throws {
            guard node.inputs.count >= 2 else { return }
            if let r = rank(of: node.inputs[1]), r != 1 { return }
            if let c = constantValue(node.inputs[1]), c.count == 1 { return }
            // A slope that cannot be per-channel but broadcasts NumPy-style is taken as NumPy-style.
            if let x = types[node.inputs[0]]?.tensorType?.fixedShape, x.count >= 2,
               let slope = types[node.inputs[1]]?.tensorType?.fixedShape ?? constantValue(node.inputs[1])?.shape,
               slope.count == 1, slope[0] != x[1], slope[0] == x[x.count - 1] { return }
            node.inputs[1] = try alignForLegacyBroadcast(a: node.inputs[0], b: node.inputs[1], axis: 1)
        }

        /// `b` reshaped so that its dims line up with `a`'s dims `axis..<axis+rank(b)` under NumPy
        /// broadcasting (i.e. with `rank(a) - axis - rank(b)` trailing 1-dims appended).
        mutating func alignForLegacyBroadcast(a: String, b: String, axis: Int) throws -> String {
            let base = "\(b).aligned"
            let rankB = rank(of: b)
            var trailing: Int? = nil
            if axis < 0, let rankB { trailing = -axis - rankB }
            else if let rankA = rank(of: a), let rankB { trailing = rankA - axis - rankB }
            if let trailing {
                guard trailing > 0 else { return b }
                let axes = int64s(Array((-trailing)...(-1)), "\(base).axes")
                return emit("Unsqueeze", [b, axes], base: base)
            }
            // Ranks unknown until run time: new shape = shape(b) ++ ones(rank(a) - axis - rank(b)).
            let shapeA = emit("Shape", [a], base: "\(base).shapeA")
            let shapeB = emit("Shape", [b], base: "\(base).shapeB")
            let rankAValue = emit("Size", [shapeA], base: "\(base).rankA")
            let rankBValue = emit("Size", [shapeB], base: "\(base).rankB")
            let axisValue = int64Scalar(axis < 0 ? 0 : axis, "\(base).axis")
            var count = emit("Sub", [rankAValue, axisValue], base: "\(base).n")
            if axis >= 0 {
                count = emit("Sub", [count, rankBValue], base: "\(base).n")
            } else {
                // Negative axis: the trailing count is -axis - rank(b), whatever rank(a) is.
                let minusAxis = int64Scalar(-axis, "\(base).minusAxis")
                count = emit("Sub", [minusAxis, rankBValue], base: "\(base).n")
            }
            let zero = int64Scalar(0, "\(base).zero")
            let clamped = emit("Max", [count, zero], base: "\(base).n")
            let oneDim = int64s([1], "\(base).one")
            let count1D = emit("Reshape", [clamped, oneDim], base: "\(base).n")
            let ones = emit("ConstantOfShape", [count1D], ["value": .tensor(Tensor(int64s: [1]))], base: "\(base).ones")
            let shape = emit("Concat", [shapeB, ones], ["axis": .int(0)], base: "\(base).shape")
            return emit("Reshape", [b, shape], base: base)
        }

        // MARK: Softmax family

        /// Softmax/LogSoftmax/Hardmax before opset 13 coerce the input to 2-D at `axis` (default 1):
        /// Flatten(axis) → op(axis=1) → Reshape back to the input's shape.
        mutating func coerceTo2D() throws {
            let axis = try intAttribute("axis") ?? 1
            let x = input(0)
            if axis == -1 || (rank(of: x).map { axis == $0 - 1 } ?? false) {
                node.attributes["axis"] = .int(-1)
                emitted.append(node)
                return
            }
            let flat = emit("Flatten", [x], ["axis": .int(axis)], base: "\(base).2d")
            let shape = emit("Shape", [x], base: "\(base).shape")
            let result = names.fresh("\(base).2dresult")
            var inner = node
            inner.inputs = [flat]
            inner.outputs = [result]
            inner.attributes["axis"] = .int(1)
            emitted.append(inner)
            emitted.append(Node(name: "\(node.name)/Reshape", op: OpID("", "Reshape"), inputs: [result, shape],
                                outputs: node.outputs))
        }

        // MARK: attributes that became inputs

        /// Split: `split` attribute → input (opset < 13); when neither `split` nor `num_outputs` is
        /// given, `num_outputs` = the number of outputs (required since opset 18).
        mutating func splitToInput() {
            if let split = try? intsAttribute("split") {
                node.attributes["split"] = nil
                if input(1).isEmpty { setInput(1, int64s(split, "\(base).split")) }
            }
            if input(1).isEmpty && node.attributes["num_outputs"] == nil {
                node.attributes["num_outputs"] = .int(node.outputs.count)
                trimInputs()
            }
        }

        /// Integer (list) attributes of older opsets that the canonical form takes as 1-D int64 inputs (Squeeze's
        /// and the reductions' `axes`, Reshape's `shape`, Slice's `starts`/`ends`/`axes`, TopK's `k`), as the op
        /// catalog lists them.
        mutating func attributesToInputs(_ moved: [AttributeInput]) throws {
            for a in moved where opset < a.since {
                guard let values = try intsAttribute(a.attribute) else {
                    if a.required { throw malformed("\(node.op.name) needs a '\(a.attribute)' attribute") }
                    continue
                }
                node.attributes[a.attribute] = nil
                setInput(a.input, int64s(values, "\(base).\(a.attribute)"))
            }
        }

        /// Clip before opset 11: `min`/`max` attributes → inputs of the input's type.
        mutating func clipToInputs() throws {
            let min = try floatAttribute("min")
            let max = try floatAttribute("max")
            node.attributes["min"] = nil
            node.attributes["max"] = nil
            let x = input(0)
            if let min { setInput(1, constant([Double(min)], shape: [], like: x, "\(base).min")) }
            if let max { setInput(2, constant([Double(max)], shape: [], like: x, "\(base).max")) }
        }

        /// Pad before opset 11: `pads` (`paddings` in opset 1) and `value` attributes → inputs.
        mutating func padToInputs() throws {
            let pads = try intsAttribute("pads") ?? intsAttribute("paddings")
            let value = try floatAttribute("value")
            node.attributes["pads"] = nil
            node.attributes["paddings"] = nil
            node.attributes["value"] = nil
            guard let pads else { throw malformed("Pad needs a 'pads' attribute") }
            setInput(1, int64s(pads, "\(base).pads"))
            if let value, value != 0 {
                setInput(2, constant([Double(value)], shape: [], like: input(0), "\(base).value"))
            }
        }

        /// DFT before opset 20: the `axis` attribute (default 1) → a scalar input.
        mutating func dftAxisToInput() {
            let axis: Int = ((try? intAttribute("axis")) ?? nil) ?? 1
            node.attributes["axis"] = nil
            setInput(2, int64Scalar(axis, "\(base).axis"))
        }

        /// Cast before opset 6 names its target type (`"FLOAT"`); later opsets use the type code.
        mutating func castNames() throws {
            guard case .string(let name)? = node.attributes["to"] else { return }
            guard let code = Canonicalizer.castTypeNames[name.uppercased()] else {
                throw malformed("Cast to '\(name)', which is not an ONNX type name")
            }
            node.attributes["to"] = .int(code)
        }

        /// Tile before opset 6: inputs (input, tiles, axis) → (input, repeats) with `tiles` at `axis`
        /// and 1 elsewhere.
        mutating func tileToRepeats() throws {
            guard node.inputs.count >= 3 else { throw malformed("Tile needs inputs (input, tiles, axis)") }
            let x = node.inputs[0], tiles = node.inputs[1], axis = node.inputs[2]
            let b = "\(base).repeats"
            let shape = emit("Shape", [x], base: "\(b).shape")
            let rankValue = emit("Shape", [shape], base: "\(b).rank")
            let ones = emit("ConstantOfShape", [rankValue], ["value": .tensor(Tensor(int64s: [1]))], base: "\(b).ones")
            let oneDim = int64s([1], "\(b).dim")
            let index = emit("Reshape", [emit("Cast", [axis], ["to": .int(DType.int64.onnxCode)], base: "\(b).axis"), oneDim],
                             base: "\(b).index")
            let count = emit("Reshape", [emit("Cast", [tiles], ["to": .int(DType.int64.onnxCode)], base: "\(b).tiles"), oneDim],
                             base: "\(b).count")
            let repeats = emit("ScatterElements", [ones, index, count], ["axis": .int(0)], base: b)
            var tile = node
            tile.inputs = [x, repeats]
            emitted.append(tile)
        }

        // MARK: Resize family

        /// Upsample (deprecated) → Resize with asymmetric coordinates; nearest rounds down.
        mutating func upsample() throws {
            var mode = try stringAttribute("mode") ?? "nearest"
            if mode == "bilinear" { mode = "linear" }
            var scales = input(1)
            if scales.isEmpty {
                if let s = try floatsAttribute("scales") {
                    scales = constant(Tensor(shape: [s.count], s), "\(base).scales")
                } else if let h = try floatAttribute("height_scale"), let w = try floatAttribute("width_scale") {
                    scales = constant(Tensor(shape: [4], [Float(1), 1, h, w]), "\(base).scales")
                } else {
                    throw malformed("Upsample needs scales")
                }
            }
            node.op = OpID("", "Resize")
            node.inputs = [input(0), "", scales]
            node.attributes = resizeLegacyAttributes(mode: mode)
        }

        /// The Resize attributes that reproduce Upsample / Resize-10 for `mode`.
        func resizeLegacyAttributes(mode: String) -> [String: Attribute] {
            var attributes: [String: Attribute] = ["mode": .string(mode),
                                                   "coordinate_transformation_mode": .string("asymmetric")]
            if mode == "nearest" { attributes["nearest_mode"] = .string("floor") }
            return attributes
        }

        /// Resize-10 (X, scales) → Resize(X, "", scales) with asymmetric coordinates; in later opsets,
        /// empty constant roi/scales/sizes inputs mean "not given".
        mutating func resize() throws {
            if opset < 11 {
                let mode = try stringAttribute("mode") ?? "nearest"
                node.inputs = [input(0), "", input(1)]
                node.attributes = resizeLegacyAttributes(mode: mode)
                return
            }
            // A Resize without inputs is the verifier's to refuse; 1..<0 would trap (found by fuzzing).
            for i in 1..<max(1, min(node.inputs.count, 4)) {
                if let c = constantValue(node.inputs[i]), c.count == 0 { node.inputs[i] = "" }
            }
            // roi only matters for tf_crop_and_resize.
            if (try? stringAttribute("coordinate_transformation_mode")) != "tf_crop_and_resize", node.inputs.count > 1 {
                node.inputs[1] = ""
            }
            trimInputs()
        }

        // MARK: normalization and dropout

        /// BatchNormalization: drops removed attributes; before opset 9, `spatial=0` (per-element
        /// statistics) becomes explicit arithmetic; before opset 14, a node asking for the extra
        /// training outputs becomes `training_mode=1`. Returns true if the node was replaced.
        mutating func batchNormalization() throws -> Bool {
            let spatial = try intAttribute("spatial") ?? 1
            let isTest = try intAttribute("is_test")
            node.attributes["spatial"] = nil
            node.attributes["is_test"] = nil
            if opset < 9, spatial == 0, node.inputs.count >= 5 {
                let x = node.inputs[0], scale = node.inputs[1], bias = node.inputs[2]
                let mean = node.inputs[3], variance = node.inputs[4]
                let epsilon = try floatAttribute("epsilon") ?? 1e-5
                let eps = constant([Double(epsilon)], shape: [], like: x, "\(base).epsilon")
                let centered = emit("Sub", [x, mean], base: "\(base).centered")
                let denominator = emit("Sqrt", [emit("Add", [variance, eps], base: "\(base).var")], base: "\(base).std")
                let normalized = emit("Div", [centered, denominator], base: "\(base).normalized")
                let scaled = emit("Mul", [normalized, scale], base: "\(base).scaled")
                emitted.append(Node(name: "\(node.name)/Add", op: OpID("", "Add"), inputs: [scaled, bias],
                                    outputs: [node.outputs.first ?? ""]))
                return true
            }
            if opset < 14 {
                let wantsStatistics = node.outputs.dropFirst().contains { !$0.isEmpty }
                if wantsStatistics && isTest != 1 {
                    node.attributes["training_mode"] = .int(1)
                    node.outputs = Array(node.outputs.prefix(3))
                } else {
                    node.outputs = Array(node.outputs.prefix(1))
                }
            }
            return false
        }

        /// Dropout: drops `is_test`; before opset 12, the `ratio` attribute → input.
        mutating func dropout() {
            node.attributes["is_test"] = nil
            if opset < 12, let ratio = try? floatAttribute("ratio") {
                node.attributes["ratio"] = nil
                setInput(1, constant(Tensor(scalar: ratio), "\(base).ratio"))
            }
        }

        // MARK: ops that no longer exist

        /// ConstantFill (experimental, removed): ConstantOfShape of the input (input_as_shape=1) or a
        /// constant of the `shape` attribute.
        mutating func constantFill() throws {
            let code = try intAttribute("dtype") ?? DType.float32.onnxCode
            guard let dtype = DType(onnxCode: code), dtype != .string else { throw malformed("ConstantFill dtype \(code)") }
            let value = Double(try floatAttribute("value") ?? 0)
            let fill = Tensor(dtype: dtype, shape: [1], doubles: [value])
            if !input(0).isEmpty {
                guard try intAttribute("input_as_shape") == 1 else {
                    throw KilnError(.unsupported, "ConstantFill with input_as_shape=0 is not supported")
                }
                var shape = input(0)
                if let extra = try intsAttribute("extra_shape"), !extra.isEmpty {
                    let cast = emit("Cast", [shape], ["to": .int(DType.int64.onnxCode)], base: "\(base).shape")
                    shape = emit("Concat", [cast, int64s(extra, "\(base).extra")], ["axis": .int(0)], base: "\(base).shape")
                }
                emitted.append(Node(name: node.name, op: OpID("", "ConstantOfShape"), inputs: [shape],
                                    outputs: node.outputs, attributes: ["value": .tensor(fill)]))
                return
            }
            let shape = (try intsAttribute("shape") ?? []) + (try intsAttribute("extra_shape") ?? [])
            let count = shape.reduce(1, *)
            let tensor = Tensor(dtype: dtype, shape: shape, doubles: Array(repeating: value, count: count))
            emitted.append(Node(name: node.name, op: OpID("", "Constant"), inputs: [], outputs: node.outputs,
                                attributes: ["value": .tensor(tensor)]))
        }

        /// ImageScaler (experimental, removed): `scale * x + bias[c]` over NCHW input.
        mutating func imageScaler() throws {
            let scale = try floatAttribute("scale") ?? 1
            let bias = try floatsAttribute("bias") ?? []
            let x = input(0)
            let s = constant([Double(scale)], shape: [], like: x, "\(base).scale")
            let scaled = emit("Mul", [x, s], base: "\(base).scaled")
            let b = constant(bias.map(Double.init), shape: [1, bias.count, 1, 1], like: x, "\(base).bias")
            emitted.append(Node(name: node.name, op: OpID("", "Add"), inputs: [scaled, b], outputs: node.outputs))
        }

        /// Scan before opset 9 works on a batch (axis 0 of every input and output): it becomes a Loop
        /// over the batch whose body slices one batch item and runs the opset-9 Scan on it. A node with
        /// a `sequence_lens` input is left in its opset-8 form. Returns true if the node was replaced.
        mutating func scanWithBatch() throws -> Bool {
            guard input(0).isEmpty, node.inputs.count >= 2 else { return false }
            guard case .graph(let body)? = node.attributes["body"] else { throw malformed("Scan needs a 'body' graph") }
            let carried = Array(node.inputs.dropFirst())
            let directions = try intsAttribute("directions")
            let b = "\(base).batch"
            let iteration = names.fresh("\(b).i")
            let conditionIn = names.fresh("\(b).cond")
            let conditionOut = names.fresh("\(b).cond")
            var bodyNodes: [Node] = [Node(name: "\(node.name)/cond", op: OpID("", "Identity"), inputs: [conditionIn],
                                          outputs: [conditionOut])]
            let items = carried.map { value -> String in
                let item = names.fresh("\(value).item")
                bodyNodes.append(Node(name: "\(node.name)/Gather", op: OpID("", "Gather"), inputs: [value, iteration],
                                      outputs: [item], attributes: ["axis": .int(0)]))
                return item
            }
            let results = node.outputs.map { names.fresh("\($0.isEmpty ? b : $0).item") }
            var scanAttributes: [String: Attribute] = ["body": .graph(body)]
            scanAttributes["num_scan_inputs"] = node.attributes["num_scan_inputs"]
            if let directions { scanAttributes["scan_input_directions"] = .ints(directions) }
            bodyNodes.append(Node(name: node.name, op: OpID("", "Scan"), inputs: items, outputs: results,
                                  attributes: scanAttributes))
            let loopBody = Graph(
                name: "\(body.name).batch",
                inputs: [Value(name: iteration, type: .tensor(TensorType(.int64, fixed: []))),
                         Value(name: conditionIn, type: .tensor(TensorType(.bool, fixed: [])))],
                outputs: [Value(name: conditionOut, type: .tensor(TensorType(.bool, fixed: [])))]
                    + results.map { Value(name: $0) },
                nodes: bodyNodes)
            let shape = emit("Shape", [carried[0]], base: "\(b).shape")
            let count = emit("Gather", [shape, int64Scalar(0, "\(b).zero")], ["axis": .int(0)], base: "\(b).count")
            emitted.append(Node(name: "\(node.name)/Loop", op: OpID("", "Loop"), inputs: [count, ""],
                                outputs: node.outputs, attributes: ["body": .graph(loopBody)]))
            return true
        }
    }
}

/// Makes value names that do not clash with any name in the model.
struct NameGenerator {
    private var used: Set<String>
    private var counter = 0

    /// A generator that avoids every name in `used`.
    init(used: Set<String>) { self.used = used }

    /// A fresh name starting with `base`.
    mutating func fresh(_ base: String) -> String {
        while true {
            counter += 1
            let name = "\(base)__kiln\(counter)"
            if used.insert(name).inserted { return name }
        }
    }

    /// Records `name` as taken.
    mutating func reserve(_ name: String) { used.insert(name) }
}
