import KilnIR

/// A float32 value of a fixed shape.
public func f32(_ name: String, _ shape: [Int]) -> Value { Value(name: name, type: .tensor(TensorType(.float32, fixed: shape))) }

/// A default-domain node.
public func node(_ op: String, _ inputs: [String], _ outputs: [String], _ attributes: [String: Attribute] = [:],
                 name: String = "") -> Node {
    Node(name: name, op: OpID("", op), inputs: inputs, outputs: outputs, attributes: attributes)
}
