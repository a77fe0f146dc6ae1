import KilnIR

enum SequenceOps {
    static func register(into table: inout KernelTable) {
    }
}
