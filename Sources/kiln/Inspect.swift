import ArgumentParser
import Kiln

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a model: inputs, outputs, ops, parameters.")

    @Argument(help: "The model file (.onnx).")
    var model: String

    func run() throws {
        try diagnosing {
            let m = try Kiln.importONNX(path: model)
            for input in m.graph.inputs { print("input  \(input)") }
            for output in m.graph.outputs { print("output \(output)") }
        }
    }
}
