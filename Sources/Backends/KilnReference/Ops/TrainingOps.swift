import KilnIR

enum TrainingOps {
    static func register(into table: inout KernelTable) {
    }
}
