import KilnIR

enum ShapeOps {
    static func register(into table: inout KernelTable) {
    }
}
