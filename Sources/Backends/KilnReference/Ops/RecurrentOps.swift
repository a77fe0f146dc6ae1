import KilnIR

enum RecurrentOps {
    static func register(into table: inout KernelTable) {
    }
}
