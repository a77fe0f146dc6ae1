import KilnIR

enum ImageOps {
    static func register(into table: inout KernelTable) {
    }
}
