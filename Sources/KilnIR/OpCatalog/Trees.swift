/// Kiln's own tree-ensemble op (`kiln.TreeEnsemble`, see `TreeEnsemble`).
extension OpCatalog {
    static func registerTrees(into catalog: inout OpCatalog) {
        catalog.define([TreeEnsemble.op.name], domain: TreeEnsemble.op.domain) { inference in
            guard let dtype = inference.dtype(0), dtype == .float32 else {
                if let dtype = inference.dtype(0) { throw inference.failure("X must be float32, not \(dtype)") }
                inference.set(0, .float32, nil)
                return
            }
            let columns = inference.string("post_transform", "NONE") == "ARGMAX" ? 1 : inference.int("n_targets", 1)
            guard let shape = inference.shape(0) else {
                inference.set(0, .float32, nil)
                return
            }
            guard shape.count == 2 else { throw inference.failure("X must be [rows, features], not \(inference.describe(shape))") }
            inference.set(0, .float32, [shape[0], .fixed(columns)])
        }
    }
}
