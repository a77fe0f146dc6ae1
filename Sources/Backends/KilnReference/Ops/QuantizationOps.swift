import KilnIR

enum QuantizationOps {
    static func register(into table: inout KernelTable) {
    }
}
