import KilnIR

enum CastOps {
    static func register(into table: inout KernelTable) {
    }
}
