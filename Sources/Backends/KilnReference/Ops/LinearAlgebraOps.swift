import KilnIR

enum LinearAlgebraOps {
    static func register(into table: inout KernelTable) {
    }
}
