import KilnIR

enum NormalizationOps {
    static func register(into table: inout KernelTable) {
    }
}
