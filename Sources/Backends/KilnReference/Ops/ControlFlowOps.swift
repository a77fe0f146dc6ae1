import KilnIR

enum ControlFlowOps {
    static func register(into table: inout KernelTable) {
    }
}
