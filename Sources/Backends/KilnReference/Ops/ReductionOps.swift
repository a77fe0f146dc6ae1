import KilnIR

enum ReductionOps {
    static func register(into table: inout KernelTable) {
    }
}
