import KilnIR
import Testing
@testable import KilnFormat

/// A numeric tensor of `dtype` whose bytes follow a pattern (bool: 0/1), `count` elements.
func patterned(_ dtype: DType, shape: [Int], seed: Int = 0) -> Tensor {
    if dtype == .string { return Tensor(shape: shape, strings: (0..<shape.reduce(1, *)).map { "s\($0 + seed)é" }) }
    let n = shape.reduce(1, *) * dtype.byteWidth!
    let storage = TensorStorage(byteCount: n) { buffer in
        for i in 0..<n { buffer[i] = dtype == .bool ? UInt8((i + seed) % 2) : UInt8(truncatingIfNeeded: i &* 131 &+ seed &* 7 &+ 1) }
    }
    return Tensor(dtype: dtype, shape: shape, storage: storage)
}

/// True when `a` and `b` have the same dtype, shape and bytes (or strings).
func sameTensor(_ a: Tensor, _ b: Tensor) -> Bool {
    guard a.dtype == b.dtype, a.shape == b.shape else { return false }
    if a.dtype == .string { return a.strings == b.strings }
    return a.rawBytes!.elementsEqual(b.rawBytes!)
}

/// Every tensor of a graph and its subgraphs (initializers, tensor attributes), with a path, in a fixed order.
func allTensors(_ graph: Graph, path: String = "") -> [(String, Tensor)] {
    var out: [(String, Tensor)] = graph.initializers.sorted { $0.key < $1.key }.map { ("\(path)\(graph.name)/\($0.key)", $0.value) }
    for (i, node) in graph.nodes.enumerated() {
        for (name, attribute) in node.attributes.sorted(by: { $0.key < $1.key }) {
            let here = "\(path)\(graph.name)/\(i).\(name)"
            switch attribute {
            case .tensor(let t): out.append((here, t))
            case .tensors(let ts): out += ts.enumerated().map { ("\(here)[\($0.offset)]", $0.element) }
            case .graph(let g): out += allTensors(g, path: here + "/")
            case .graphs(let gs): for (j, g) in gs.enumerated() { out += allTensors(g, path: "\(here)[\(j)]/") }
            default: break
            }
        }
    }
    return out
}

/// Every attribute of a graph and its subgraphs, printed exactly (floats by bit pattern), for comparisons
/// finer than the printer's.
func attributeFingerprint(_ graph: Graph) -> [String] {
    var out: [String] = []
    for node in graph.nodes {
        for (name, attribute) in node.attributes.sorted(by: { $0.key < $1.key }) {
            switch attribute {
            case .float(let f): out.append("\(name)=f\(f.bitPattern)")
            case .floats(let fs): out.append("\(name)=fs\(fs.map(\.bitPattern))")
            case .int(let i): out.append("\(name)=i\(i)")
            case .ints(let i): out.append("\(name)=is\(i)")
            case .string(let s): out.append("\(name)=s\(s.debugDescription)")
            case .strings(let s): out.append("\(name)=ss\(s.map(\.debugDescription))")
            case .type(let t): out.append("\(name)=t\(t)")
            case .types(let t): out.append("\(name)=ts\(t)")
            case .tensor: out.append("\(name)=T")
            case .tensors(let t): out.append("\(name)=Ts\(t.count)")
            case .graph(let g): out.append("\(name)=G{" + attributeFingerprint(g).joined(separator: ";") + "}")
            case .graphs(let gs): out.append("\(name)=Gs{" + gs.map { attributeFingerprint($0).joined(separator: ";") }.joined(separator: "|") + "}")
            }
        }
        out.append("|\(node.name)|\(node.op)|\(node.inputs)|\(node.outputs)")
    }
    let valueTypes = graph.valueTypes.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }
    return out + valueTypes + graph.inputs.map(\.description) + graph.outputs.map(\.description)
}

/// Checks that `decoded` is `original`: printed IR, exact attributes, and every tensor bit for bit.
func expectSame(_ original: Model, _ decoded: Model, _ label: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(original.printed() == decoded.printed(), "\(label): printed IR differs", sourceLocation: sourceLocation)
    #expect(attributeFingerprint(original.graph) == attributeFingerprint(decoded.graph), "\(label): attributes differ",
            sourceLocation: sourceLocation)
    let a = allTensors(original.graph), b = allTensors(decoded.graph)
    #expect(a.map(\.0) == b.map(\.0), "\(label): tensor sets differ", sourceLocation: sourceLocation)
    for ((name, x), (_, y)) in zip(a, b) where !sameTensor(x, y) {
        Issue.record("\(label): tensor \(name) differs", sourceLocation: sourceLocation)
    }
}

/// Recomputes every section checksum and the header checksum of a (mutated) artifact whose table
/// is still readable, so that the reader's checks behind the checksums are exercised.
func reseal(_ bytes: inout [UInt8]) {
    guard bytes.count >= ArtifactFormat.headerSize else { return }
    let count = bytes.withUnsafeBytes { $0.loadLE(ArtifactLayout.sectionCountOffset, as: UInt32.self) }
    let entrySize = bytes.withUnsafeBytes { $0.loadLE(ArtifactLayout.entrySizeOffset, as: UInt32.self) }
    guard entrySize >= 48, entrySize < 4096, count < 1000,
          ArtifactFormat.headerSize + Int(count) * Int(entrySize) <= bytes.count else { return }
    for i in 0..<Int(count) {
        let at = ArtifactFormat.headerSize + i * Int(entrySize)
        let (offset, length): (UInt64, UInt64) = bytes.withUnsafeBytes { ($0.loadLE(at + 8), $0.loadLE(at + 16)) }
        guard offset <= UInt64(bytes.count), length <= UInt64(bytes.count) - offset else { continue }
        let crc = CRC32C.checksum(Array(bytes[Int(offset)..<Int(offset + length)]))
        bytes.storeLE(crc, at: at + 32)
    }
    bytes.storeLE(ArtifactLayout.headerChecksum(bytes), at: ArtifactLayout.headerChecksumOffset)
}

/// A model exercising every attribute kind, every dtype (small and large), symbolic and unknown dims,
/// unknown ranks, sequence/optional/map/sparse types and nested subgraphs.
func showcaseModel(large: Bool = true) -> Model {
    var initializers: [String: Tensor] = [:]
    for (i, dtype) in DType.allCases.enumerated() {
        initializers["small_\(dtype)"] = patterned(dtype, shape: [2, 3], seed: i)
        if large, dtype != .string { initializers["large_\(dtype)"] = patterned(dtype, shape: [40, 33], seed: i) }
    }
    initializers["scalar"] = Tensor(scalar: Float(-0.0))
    initializers["empty"] = patterned(.float32, shape: [0, 4])
    initializers["empty_strings"] = Tensor(shape: [0], strings: [])
    initializers["big_strings"] = patterned(.string, shape: [300])
    let seqType = ValueType.sequence(.tensor(TensorType(.float32, [.symbol("n"), .unknown])))
    let optType = ValueType.optional(.sequence(.tensor(TensorType(.int64, nil))))
    let mapType = ValueType.map(key: .string, value: .tensor(TensorType(.float64, [.fixed(1)])))
    let sparse = ValueType.sparseTensor(TensorType(.float16, [.fixed(10), .symbol("k")]))
    let thenBranch = Graph(name: "then_body", outputs: [Value(name: "t_out", type: .tensor(TensorType(.float32, [.symbol("batch")])))],
                           initializers: ["t_c": patterned(.float32, shape: [600])],
                           nodes: [Node(name: "inner", op: OpID("", "Identity"), inputs: ["t_c"], outputs: ["t_out"])])
    let innerMost = Graph(name: "deep", nodes: [Node(op: OpID("kiln", "Nop"), inputs: [], outputs: [],
                                                     attributes: ["x": .tensor(patterned(.int8, shape: [2000]))])])
    let elseBranch = Graph(name: "else_body", outputs: [Value(name: "e_out")],
                           nodes: [Node(name: "nested", op: OpID("", "If"), inputs: ["cond"], outputs: ["e_out"],
                                        attributes: ["then_branch": .graph(innerMost), "else_branch": .graph(innerMost)])],
                           valueTypes: ["e_out": optType])
    let attributes: [String: Attribute] = [
        "f": .float(.nan), "f_neg0": .float(-0.0), "f_inf": .float(-.infinity), "f_sub": .float(.leastNonzeroMagnitude),
        "i": .int(Int.min), "i2": .int(Int.max), "s": .string("héllo\u{0}wörld"), "s_empty": .string(""),
        "t": .tensor(patterned(.bfloat16, shape: [3])), "t_large": .tensor(patterned(.float32, shape: [1000])),
        "g": .graph(thenBranch), "type": .type(mapType),
        "floats": .floats([1.5, -2, .infinity, Float(bitPattern: 0x7FC0_1234)]), "floats_empty": .floats([]),
        "ints": .ints([0, -1, 1 << 40]), "ints_empty": .ints([]), "strings": .strings(["a", "", "ß"]), "strings_empty": .strings([]),
        "tensors": .tensors([patterned(.int4, shape: [5]), patterned(.string, shape: [2]), patterned(.uint64, shape: [300])]),
        "tensors_empty": .tensors([]), "graphs": .graphs([thenBranch, elseBranch]), "graphs_empty": .graphs([]),
        "types": .types([seqType, optType, sparse, mapType]), "types_empty": .types([]),
    ]
    let graph = Graph(
        name: "main",
        inputs: [Value(name: "x", type: .tensor(TensorType(.float32, [.symbol("batch"), .fixed(3), .unknown]))),
                 Value(name: "seq", type: seqType), Value(name: "opt", type: optType), Value(name: "m", type: mapType),
                 Value(name: "sp", type: sparse), Value(name: "untyped"), Value(name: "scalar", type: .tensor(TensorType(.float32, [])))],
        outputs: [Value(name: "y", type: .tensor(TensorType(.float32, nil))), Value(name: "z")],
        initializers: initializers,
        nodes: [
            Node(name: "everything", op: OpID("ai.onnx", "Custom"), inputs: ["x", "", "seq"], outputs: ["y", ""], attributes: attributes),
            Node(name: "", op: OpID("ai.onnx.ml", "LabelEncoder"), inputs: ["y"], outputs: ["z"]),
            Node(op: OpID("acme", "Nothing"), inputs: [], outputs: []),
        ],
        valueTypes: ["v1": .tensor(TensorType(.uint2, [.fixed(0)])), "v2": sparse, "v0": seqType])
    return Model(graph: graph, opsets: ["": 23, "ai.onnx.ml": 5, "acme": 1], producer: "kiln-tests 1.0",
                 sourceIRVersion: 10, metadata: ["author": "me", "": "empty key", "ключ": "значение"])
}
