import KilnIR

enum SignalOps {
    static func register(into table: inout KernelTable) {
    }
}
