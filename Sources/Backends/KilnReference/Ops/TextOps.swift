import KilnIR

enum TextOps {
    static func register(into table: inout KernelTable) {
    }
}
