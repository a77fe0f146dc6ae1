import KilnIR

enum PoolingOps {
    static func register(into table: inout KernelTable) {
    }
}
