/// String ops.
extension OpCatalog {
    static func registerText(into catalog: inout OpCatalog) {
        catalog.define(["RegexFullMatch"]) { $0.set(0, .bool, $0.shape(0)) }
        catalog.define(["StringConcat"]) { $0.set(0, .string, try $0.broadcastShape([0, 1])) }
        catalog.define(["StringSplit"]) { inference in
            inference.set(0, .string, inference.shape(0).map { $0 + [.unknown] })
            inference.set(1, .int64, inference.shape(0))
        }
        catalog.define(["StringNormalizer"]) { inference in
            inference.set(0, .string, inference.shape(0).map { s in s.count == 2 ? [s[0], .unknown] : s.map { _ in .unknown } })
        }
    }
}
