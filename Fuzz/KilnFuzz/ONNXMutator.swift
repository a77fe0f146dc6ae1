/// A structure-aware mutator for ONNX models, on the protobuf wire format (so it needs no generated
/// code): it decodes the ModelProto fields that matter to the importer, changes one thing a byte-level
/// mutator rarely gets right, and re-encodes. Mutations: a dim (tensor shapes, declared value types),
/// a dim turned symbolic or fixed, an attribute's int or ints, an element or data type, the opset
/// version, a node's input or output name (rewiring a graph edge), a node's op type, a node deleted,
/// duplicated or moved, and an initializer's raw data cut or grown.
///
/// Field numbers are onnx.proto's: ModelProto.graph 7, opset_import 8 (version 2); GraphProto.node 1,
/// initializer 5, input 11, output 12, value_info 13; NodeProto.input 1, output 2, op_type 4,
/// attribute 5; AttributeProto.f 2, i 3, t 5, g 6, ints 8, graphs 11, type 20; ValueInfoProto.name 1,
/// type 2; TypeProto.tensor_type 1; TypeProto.Tensor.elem_type 1, shape 2; TensorShapeProto.dim 1;
/// Dimension.dim_value 1, dim_param 2; TensorProto.dims 1, data_type 2, name 8, raw_data 9.
enum ONNXMutator {
    /// `input` mutated once, or nil when it is not a ModelProto this mutator can decode.
    static func mutate(_ input: [UInt8], using generator: inout SplitMix) -> [UInt8]? {
        guard var fields = Wire.parse(input[...], as: .model) else { return nil }
        var sites: [Site] = []
        var names: [String] = []
        var ops: [String] = []
        collect(fields, kind: .model, path: [], sites: &sites, names: &names, ops: &ops)
        guard !sites.isEmpty else { return nil }
        let site = sites[Int(generator.next() % UInt64(sites.count))]
        apply(site, to: &fields, names: names, ops: ops, using: &generator)
        return Wire.encode(fields)
    }

    /// Something the mutator can change, by its position in the field tree.
    struct Site {
        enum Kind { case integer, packedIntegers, name, opType, list, dimension, rawData }
        var kind: Kind
        /// Indices into the nested field arrays; the last one is the field itself.
        var path: [Int]
    }

    private static func collect(_ fields: [WireField], kind: MessageKind, path: [Int], sites: inout [Site],
                                names: inout [String], ops: inout [String]) {
        for (i, field) in fields.enumerated() {
            let here = path + [i]
            switch (kind, field.number, field.value) {
            case (.opset, 2, .varint), (.attribute, 3, .varint), (.attribute, 20, .varint), (.attribute, 8, .varint),
                 (.dimension, 1, .varint), (.tensorType, 1, .varint), (.tensor, 1, .varint), (.tensor, 2, .varint):
                sites.append(Site(kind: .integer, path: here))
            case (.attribute, 8, .bytes), (.tensor, 1, .bytes):
                sites.append(Site(kind: .packedIntegers, path: here))
            case (.node, 1, .bytes(let b)), (.node, 2, .bytes(let b)):
                names.append(String(decoding: b, as: UTF8.self))
                sites.append(Site(kind: .name, path: here))
            case (.node, 4, .bytes(let b)):
                ops.append(String(decoding: b, as: UTF8.self))
                sites.append(Site(kind: .opType, path: here))
            case (.valueInfo, 1, .bytes(let b)), (.tensor, 8, .bytes(let b)):
                names.append(String(decoding: b, as: UTF8.self))
            case (.tensor, 9, .bytes):
                sites.append(Site(kind: .rawData, path: here))
            case (.graph, 1, .message):
                sites.append(Site(kind: .list, path: here))
            case (.shape, 1, .message):
                sites.append(Site(kind: .dimension, path: here))
            default: break
            }
            if case .message(let children) = field.value, let child = kind.child(field.number) {
                collect(children, kind: child, path: here, sites: &sites, names: &names, ops: &ops)
            }
        }
    }

    /// Values that find overflow, zero-size and negative-size bugs, as two's-complement varints.
    static let interesting: [Int64] = [0, 1, 2, 3, 4, 7, 8, 16, 255, 256, 1024, 65535, 65536, Int64(Int32.max), 1 << 31,
                                       1 << 32, 1 << 40, 1 << 62, Int64.max, -1, -2, -3, -1024, Int64(Int32.min), Int64.min]
    static let opTypes = ["Add", "Mul", "MatMul", "Gemm", "Conv", "Relu", "Reshape", "Transpose", "Concat", "Slice", "Gather",
                          "Squeeze", "Unsqueeze", "Expand", "Tile", "Pad", "Resize", "Split", "ReduceSum", "Softmax", "Shape",
                          "ConstantOfShape", "Range", "Cast", "Where", "If", "Loop", "Scan", "TopK", "Einsum", "Identity",
                          "BatchNormalization", "MaxPool", "AveragePool", "Flatten", "NonZero", "OneHot", "CumSum", "Trilu"]

    private static func newInteger(_ old: Int64, using g: inout SplitMix) -> Int64 {
        switch g.next() % 4 {
        case 0: return old &+ 1
        case 1: return old &- 1
        case 2: return Int64(g.next() % 64) - 8
        default: return interesting[Int(g.next() % UInt64(interesting.count))]
        }
    }

    private static func apply(_ site: Site, to fields: inout [WireField], names: [String], ops: [String], using g: inout SplitMix) {
        Wire.modify(&fields, path: site.path[...]) { siblings, index in
            switch site.kind {
            case .integer:
                if case .varint(let v) = siblings[index].value {
                    siblings[index].value = .varint(UInt64(bitPattern: newInteger(Int64(bitPattern: v), using: &g)))
                }
            case .packedIntegers:
                guard case .bytes(let b) = siblings[index].value, var values = Wire.packedVarints(b[...]) else { return }
                if values.isEmpty || g.next() % 5 == 0 {
                    values.insert(UInt64(bitPattern: newInteger(1, using: &g)), at: values.isEmpty ? 0 : Int(g.next() % UInt64(values.count)))
                } else if g.next() % 5 == 0 {
                    values.remove(at: Int(g.next() % UInt64(values.count)))
                } else {
                    let k = Int(g.next() % UInt64(values.count))
                    values[k] = UInt64(bitPattern: newInteger(Int64(bitPattern: values[k]), using: &g))
                }
                var packed: [UInt8] = []
                for v in values { Wire.putVarint(v, into: &packed) }
                siblings[index].value = .bytes(packed)
            case .name:
                let choice = g.next() % 8
                let name = choice == 0 ? "" : choice == 1 ? "fuzz_\(g.next() % 4)" : names.isEmpty ? "" : names[Int(g.next() % UInt64(names.count))]
                siblings[index].value = .bytes(Array(name.utf8))
            case .opType:
                let pool = g.next() % 3 == 0 && !ops.isEmpty ? ops : opTypes
                siblings[index].value = .bytes(Array(pool[Int(g.next() % UInt64(pool.count))].utf8))
            case .list:
                switch g.next() % 3 {
                case 0: siblings.remove(at: index)
                case 1: siblings.insert(siblings[index], at: Int(g.next() % UInt64(siblings.count + 1)))
                default:
                    let field = siblings.remove(at: index)
                    siblings.insert(field, at: Int(g.next() % UInt64(siblings.count + 1)))
                }
            case .dimension:
                // dim_value ↔ dim_param (or a dim with neither).
                let which = g.next() % 3
                let value: WireValue = .message(which == 0 ? [WireField(number: 2, value: .bytes(Array("n\(g.next() % 3)".utf8)))]
                                                : which == 1 ? [WireField(number: 1, value: .varint(UInt64(bitPattern: newInteger(1, using: &g))))]
                                                : [])
                siblings[index].value = value
            case .rawData:
                guard case .bytes(var b) = siblings[index].value else { return }
                if b.isEmpty || g.next() % 2 == 0 {
                    b += [UInt8](repeating: UInt8(truncatingIfNeeded: g.next()), count: Int(g.next() % 16) + 1)
                } else {
                    b.removeLast(Int(g.next() % UInt64(b.count)) + 1)
                }
                siblings[index].value = .bytes(b)
            }
        }
    }
}

/// The ModelProto messages the mutator looks inside, and which field of each holds which child.
enum MessageKind {
    case model, opset, graph, node, attribute, valueInfo, type, tensorType, shape, dimension, tensor

    func child(_ field: Int) -> MessageKind? {
        switch (self, field) {
        case (.model, 7): .graph
        case (.model, 8): .opset
        case (.graph, 1): .node
        case (.graph, 5): .tensor
        case (.graph, 11), (.graph, 12), (.graph, 13): .valueInfo
        case (.node, 5): .attribute
        case (.attribute, 5): .tensor
        case (.attribute, 6), (.attribute, 11): .graph
        case (.valueInfo, 2): .type
        case (.type, 1): .tensorType
        case (.tensorType, 2): .shape
        case (.shape, 1): .dimension
        default: nil
        }
    }
}

/// One protobuf field as it is on the wire.
struct WireField {
    var number: Int
    var value: WireValue
}

indirect enum WireValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case fixed32(UInt32)
    case bytes([UInt8])
    case message([WireField])
}

/// Protobuf wire-format decoding and encoding (varint, 64-bit, length-delimited, 32-bit; no groups).
enum Wire {
    /// The fields of a message of `kind`; length-delimited fields that `kind` says are messages are
    /// decoded too. Nil when the bytes are not a well-formed message.
    static func parse(_ bytes: ArraySlice<UInt8>, as kind: MessageKind) -> [WireField]? {
        var fields: [WireField] = []
        var at = bytes.startIndex
        while at < bytes.endIndex {
            guard let tag = varint(bytes, &at), tag >> 3 > 0, tag >> 3 < 1 << 29 else { return nil }
            let number = Int(tag >> 3)
            switch tag & 7 {
            case 0:
                guard let v = varint(bytes, &at) else { return nil }
                fields.append(WireField(number: number, value: .varint(v)))
            case 1:
                guard bytes.endIndex - at >= 8 else { return nil }
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(bytes[at + k]) << (8 * k) }
                at += 8
                fields.append(WireField(number: number, value: .fixed64(v)))
            case 2:
                guard let length = varint(bytes, &at), length <= UInt64(bytes.endIndex - at) else { return nil }
                let body = bytes[at..<(at + Int(length))]
                at += Int(length)
                if let child = kind.child(number) {
                    guard let children = parse(body, as: child) else { return nil }
                    fields.append(WireField(number: number, value: .message(children)))
                } else {
                    fields.append(WireField(number: number, value: .bytes(Array(body))))
                }
            case 5:
                guard bytes.endIndex - at >= 4 else { return nil }
                var v: UInt32 = 0
                for k in 0..<4 { v |= UInt32(bytes[at + k]) << (8 * k) }
                at += 4
                fields.append(WireField(number: number, value: .fixed32(v)))
            default:
                return nil
            }
        }
        return fields
    }

    static func varint(_ bytes: ArraySlice<UInt8>, _ at: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while at < bytes.endIndex, shift < 64 {
            let byte = bytes[at]
            at += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }

    static func packedVarints(_ bytes: ArraySlice<UInt8>) -> [UInt64]? {
        var values: [UInt64] = []
        var at = bytes.startIndex
        while at < bytes.endIndex {
            guard let v = varint(bytes, &at) else { return nil }
            values.append(v)
        }
        return values
    }

    static func putVarint(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func encode(_ fields: [WireField]) -> [UInt8] {
        var out: [UInt8] = []
        for field in fields {
            let number = UInt64(field.number) << 3
            switch field.value {
            case .varint(let v):
                putVarint(number, into: &out)
                putVarint(v, into: &out)
            case .fixed64(let v):
                putVarint(number | 1, into: &out)
                for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) }
            case .fixed32(let v):
                putVarint(number | 5, into: &out)
                for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(k)))) }
            case .bytes(let b):
                putVarint(number | 2, into: &out)
                putVarint(UInt64(b.count), into: &out)
                out += b
            case .message(let children):
                let body = encode(children)
                putVarint(number | 2, into: &out)
                putVarint(UInt64(body.count), into: &out)
                out += body
            }
        }
        return out
    }

    /// Calls `body` with the array that holds the field at `path` and its index there.
    static func modify(_ fields: inout [WireField], path: ArraySlice<Int>, _ body: (inout [WireField], Int) -> Void) {
        guard let first = path.first else { return }
        if path.count == 1 {
            body(&fields, first)
            return
        }
        guard case .message(var children) = fields[first].value else { return }
        modify(&children, path: path.dropFirst(), body)
        fields[first].value = .message(children)
    }
}

/// A small seeded generator (SplitMix64), so that a mutation is reproducible from libFuzzer's seed.
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
