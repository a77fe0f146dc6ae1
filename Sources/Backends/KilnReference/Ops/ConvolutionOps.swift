import KilnIR

enum ConvolutionOps {
    static func register(into table: inout KernelTable) {
    }
}
