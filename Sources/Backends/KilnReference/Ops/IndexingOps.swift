import KilnIR

enum IndexingOps {
    static func register(into table: inout KernelTable) {
    }
}
