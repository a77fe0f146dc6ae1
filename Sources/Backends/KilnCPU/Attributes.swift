import KilnIR

extension Node {
    /// A readable identity for messages: the node's name, or its op.
    var displayName: String { name.isEmpty ? op.name : name }

    /// Integer attribute `key`, or `defaultValue`.
    func int(_ key: String, _ defaultValue: Int) throws -> Int {
        switch attributes[key] {
        case nil: return defaultValue
        case .int(let v): return v
        default: throw KilnError(.invalidModel, "node '\(displayName)' (\(op)): attribute '\(key)' must be an int")
        }
    }

    /// Float attribute `key`, or `defaultValue`.
    func float(_ key: String, _ defaultValue: Float) throws -> Float {
        switch attributes[key] {
        case nil: return defaultValue
        case .float(let v): return v
        case .int(let v): return Float(v)
        default: throw KilnError(.invalidModel, "node '\(displayName)' (\(op)): attribute '\(key)' must be a float")
        }
    }

    /// String attribute `key`, or `defaultValue`.
    func string(_ key: String, _ defaultValue: String) throws -> String {
        switch attributes[key] {
        case nil: return defaultValue
        case .string(let v): return v
        default: throw KilnError(.invalidModel, "node '\(displayName)' (\(op)): attribute '\(key)' must be a string")
        }
    }

    /// Integer-list attribute `key`, or nil.
    func ints(_ key: String) throws -> [Int]? {
        switch attributes[key] {
        case nil: return nil
        case .ints(let v): return v
        case .int(let v): return [v]
        default: throw KilnError(.invalidModel, "node '\(displayName)' (\(op)): attribute '\(key)' must be a list of ints")
        }
    }

    /// Input `i`, or `""` when absent.
    func input(_ i: Int) -> String { i < inputs.count ? inputs[i] : "" }
}

/// An activation applied elementwise (alone, or fused after a convolution or matrix product).
struct Activation: Equatable {
    var kind: ActivationKind
    var alpha: Float = 0
    var beta: Float = 0

    static let none = Activation(kind: .none)

    /// The name used in fused operation kinds.
    var name: String {
        switch kind {
        case .none: "None"
        case .relu: "Relu"
        case .clip: "Clip"
        case .sigmoid: "Sigmoid"
        case .silu: "SiLU"
        case .hardSigmoid: "HardSigmoid"
        case .hardSwish: "HardSwish"
        case .geluErf: "Gelu"
        case .geluTanh: "GeluTanh"
        case .tanh: "Tanh"
        case .leakyRelu: "LeakyRelu"
        }
    }
}

/// The activations of `kiln_kernels.h` (`kiln_activation`), named in Swift.
enum ActivationKind: Equatable {
    case none, relu, clip, sigmoid, silu, hardSigmoid, hardSwish, geluErf, geluTanh, tanh, leakyRelu
}
