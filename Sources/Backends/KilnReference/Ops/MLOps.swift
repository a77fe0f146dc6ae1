import KilnIR

enum MLOps {
    static func register(into table: inout KernelTable) {
    }
}
