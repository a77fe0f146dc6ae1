import KilnIR

enum AttentionOps {
    static func register(into table: inout KernelTable) {
    }
}
